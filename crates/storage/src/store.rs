//! [`ObjectStore`]: what recording needs of an object store, and
//! [`MemoryStore`], the in-memory one unit tests use behind the same
//! trait as the S3 store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

/// Why an object store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached, or answered with an error that may
    /// pass (a timeout, a 5xx, throttling): the caller tries again later.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request for good (no such bucket, access
    /// denied, a bad key): trying again changes nothing.
    #[error("object store refused the request: {0}")]
    Refused(String),
}

/// An object key: 1 to 1024 bytes of `A-Z a-z 0-9 / . _ -`, no empty
/// path segment, no `.` or `..` segment. Keys are made by Ferrocast from
/// stream names and numbers; anything else is a bug, refused here.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(StoreError::Refused(format!("bad object key {key:?}")))
    }
}

/// What recording needs of an object store. Implementations: S3
/// ([`crate::S3Store`]) and in memory ([`MemoryStore`]).
pub trait ObjectStore: Send + Sync {
    /// Store `body` at `key`, replacing what was there.
    fn put(&self, key: &str, body: Bytes) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The object at `key`, or `None` if there is none.
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>>;

    /// Every key under `prefix`, in key order.
    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>>;

    /// Remove the object at `key` (no error if there is none).
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The "directories" one level under `prefix` (which ends with `/` or
    /// is empty): every distinct `prefix + NAME + "/"` that starts a key,
    /// in order; S3's listing with the `/` delimiter. Lists a level
    /// without reading every key under it.
    fn list_dirs(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>>;
}

/// The directories one level under `prefix` among `keys` (what
/// [`ObjectStore::list_dirs`] answers), for stores that list keys only.
pub fn dirs_of<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut dirs: Vec<String> = keys
        .into_iter()
        .filter_map(|key| {
            let rest = key.strip_prefix(prefix)?;
            let (name, _) = rest.split_once('/')?;
            Some(format!("{prefix}{name}/"))
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// An [`ObjectStore`] in memory, for unit tests. Clones share the objects.
/// [`MemoryStore::set_available`] makes it fail every call with
/// [`StoreError::Unavailable`], as an S3 outage would.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
    down: Arc<AtomicBool>,
}

impl MemoryStore {
    /// Up (`true`) or failing every call (`false`).
    pub fn set_available(&self, available: bool) {
        self.down.store(!available, Ordering::SeqCst);
    }

    fn up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("memory store set down".into()))
        } else {
            Ok(())
        }
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ObjectStore for MemoryStore {
    fn put(&self, key: &str, body: Bytes) -> BoxFuture<'static, Result<(), StoreError>> {
        let done = self.up().and_then(|()| check_key(key)).map(|()| {
            self.objects().insert(key.to_owned(), body);
        });
        async move { done }.boxed()
    }

    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Bytes>, StoreError>> {
        let found = self.up().map(|()| self.objects().get(key).cloned());
        async move { found }.boxed()
    }

    fn list(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let keys = self.up().map(|()| {
            self.objects()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        });
        async move { keys }.boxed()
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let done = self.up().map(|()| {
            self.objects().remove(key);
        });
        async move { done }.boxed()
    }

    fn list_dirs(&self, prefix: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let dirs = self.up().map(|()| dirs_of(prefix, self.objects().keys()));
        async move { dirs }.boxed()
    }
}

#[cfg(test)]
mod dirs_tests {
    use super::*;

    #[test]
    fn one_level_under_the_prefix() {
        let keys: Vec<String> = ["a/x/1", "a/x/2", "a/y/1", "a/z", "b/x/1", "a/"]
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        assert_eq!(dirs_of("a/", &keys), ["a/x/", "a/y/"]);
        assert_eq!(dirs_of("", &keys), ["a/", "b/"]);
        assert!(dirs_of("c/", &keys).is_empty());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["live/cam/rec-1/e3/720p/seg00000041.m4s", "a", "a.b-c_d/e"] {
            assert_eq!(check_key(good), Ok(()), "{good}");
        }
        let long = "a".repeat(1025);
        for bad in [
            "", "/a", "a/", "a//b", "a/../b", "./a", "a b", "a\nb", "ä", &long,
        ] {
            assert!(
                matches!(check_key(bad), Err(StoreError::Refused(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_memory_store_stores_lists_deletes_and_can_be_down() {
        let store = MemoryStore::default();
        store.put("r/b", Bytes::from_static(b"2")).await.unwrap();
        store.put("r/a", Bytes::from_static(b"1")).await.unwrap();
        store.put("s/a", Bytes::from_static(b"3")).await.unwrap();
        assert_eq!(store.list("r/").await.unwrap(), ["r/a", "r/b"]);
        assert_eq!(store.get("r/a").await.unwrap().unwrap(), &b"1"[..]);
        store.delete("r/a").await.unwrap();
        assert_eq!(store.get("r/a").await.unwrap(), None);
        store.set_available(false);
        assert!(matches!(
            store.put("r/c", Bytes::new()).await,
            Err(StoreError::Unavailable(_))
        ));
        store.set_available(true);
        assert_eq!(store.list("").await.unwrap(), ["r/b", "s/a"]);
    }
}
