//! A bounded spool on local disk between the live path and the object
//! store, so that a store outage loses nothing while the spool has room.
//!
//! [`Spool::enqueue`] writes an object to its own file (`SEQ.part`, then
//! renamed to `SEQ.obj`, so a crash never leaves half an entry that looks
//! whole) and returns; it never waits on the store. The [`Uploader`]
//! sends the entries to the [`ObjectStore`] oldest first, one at a time,
//! and deletes each file once the store has taken it. A store that is
//! unavailable is tried again with backoff (250 ms doubling to 10 s), the
//! entry kept; entries enqueued meanwhile wait behind it, on disk.
//!
//! **Bounds.** The files' total size never exceeds
//! [`SpoolConfig::max_bytes`]: an enqueue that would pass it is refused
//! with [`SpoolError::Full`], counted, and logged once at warn until the
//! spool has drained to half. The caller decides what a refusal means.
//!
//! **Restarts.** [`Spool::open`] takes up the entries a previous process
//! left (`.obj` files, in order) and deletes unfinished `.part` files, so
//! what was enqueued before a crash is uploaded after it.
//!
//! **Entries the store refuses for good** (a bad key, access denied) are
//! moved aside as `SEQ.refused` and logged at error: retrying them would
//! hold up everything behind them.
//!
//! File format: the key's length (4 bytes, big-endian), the key, the body.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::store::{ObjectStore, StoreError, check_key};

/// How long one upload may take before it counts as failed and is tried
/// again.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// First wait after a failed upload; doubled per failure up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Longest wait between attempts while the store is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where the spool keeps its files and how much it may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Its directory (made if missing); nothing else should write there.
    pub dir: PathBuf,
    /// The most bytes of entries on disk at once.
    pub max_bytes: u64,
}

/// Why an entry was not spooled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool holds `held` bytes of `max` and the entry needs `needed`
    /// more.
    #[error("spool full: {held} of {max} bytes held, {needed} more needed")]
    Full {
        /// Bytes held.
        held: u64,
        /// [`SpoolConfig::max_bytes`].
        max: u64,
        /// The entry's size on disk.
        needed: u64,
    },
    /// The key is not one the store takes.
    #[error(transparent)]
    Key(#[from] StoreError),
    /// The spool's directory could not be read or written.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Counters and levels of a spool, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries waiting for the store.
    pub queued: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Entries the store has taken.
    pub uploaded: u64,
    /// Failed upload attempts (each tried again).
    pub retries: u64,
    /// Entries refused because the spool was full.
    pub refused_full: u64,
    /// Entries the store refused for good, moved aside.
    pub refused_by_store: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    size: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Written entries, oldest first.
    queue: VecDeque<Entry>,
    /// Bytes of the written entries plus those being written.
    bytes: u64,
    next_seq: u64,
    /// A refusal for fullness was logged and the spool has not drained
    /// to half since.
    full_warned: bool,
}

#[derive(Debug)]
struct Inner {
    config: SpoolConfig,
    state: Mutex<State>,
    /// Woken when an entry is written.
    added: Notify,
    /// Woken when an entry leaves the queue.
    removed: Notify,
    uploaded: AtomicU64,
    retries: AtomicU64,
    refused_full: AtomicU64,
    refused_by_store: AtomicU64,
}

/// The spool; clones share it.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn entry_path(dir: &Path, seq: u64, extension: &str) -> PathBuf {
    dir.join(format!("{seq:020}.{extension}"))
}

impl Spool {
    /// Opens the spool in `config.dir`, taking up the entries a previous
    /// process left there.
    pub async fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = config.dir.clone();
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let mut found = Vec::new();
        let mut listing = tokio::fs::read_dir(&dir).await.map_err(io(&dir))?;
        while let Some(item) = listing.next_entry().await.map_err(io(&dir))? {
            let path = item.path();
            let Some((stem, extension)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('.'))
            else {
                continue;
            };
            let Ok(seq) = stem.parse::<u64>() else {
                continue;
            };
            match extension {
                "part" => tokio::fs::remove_file(&path).await.map_err(io(&path))?,
                "obj" => {
                    let size = item.metadata().await.map_err(io(&path))?.len();
                    found.push(Entry { seq, size });
                }
                _ => {}
            }
        }
        found.sort_by_key(|e| e.seq);
        let state = State {
            bytes: found.iter().map(|e| e.size).sum(),
            next_seq: found.last().map_or(0, |e| e.seq + 1),
            queue: found.into(),
            full_warned: false,
        };
        if !state.queue.is_empty() {
            info!(
                dir = %dir.display(),
                entries = state.queue.len(),
                bytes = state.bytes,
                "spool: uploading what an earlier process left"
            );
        }
        Ok(Spool {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
                added: Notify::new(),
                removed: Notify::new(),
                uploaded: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                refused_full: AtomicU64::new(0),
                refused_by_store: AtomicU64::new(0),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `body`, to be stored at `key`, to the spool. Returns once it
    /// is on disk; the store is not asked here.
    pub async fn enqueue(&self, key: &str, body: Bytes) -> Result<(), SpoolError> {
        check_key(key)?;
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        let size = 4 + key.len() as u64 + body.len() as u64;
        let seq = {
            let mut state = self.state();
            let max = self.inner.config.max_bytes;
            if state.bytes.saturating_add(size) > max {
                self.inner.refused_full.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut state.full_warned, true) {
                    warn!(
                        dir = %self.inner.config.dir.display(),
                        held = state.bytes,
                        max,
                        "spool full: the object store has not taken what was spooled; \
                         new objects are refused until it drains"
                    );
                }
                return Err(SpoolError::Full {
                    held: state.bytes,
                    max,
                    needed: size,
                });
            }
            state.bytes += size;
            state.next_seq += 1;
            state.next_seq - 1
        };
        let written = self.write(seq, key, len, &body).await;
        let mut state = self.state();
        match written {
            Ok(()) => {
                let at = state.queue.partition_point(|e| e.seq < seq);
                state.queue.insert(at, Entry { seq, size });
                drop(state);
                self.inner.added.notify_one();
                Ok(())
            }
            Err(e) => {
                state.bytes -= size;
                Err(e)
            }
        }
    }

    async fn write(&self, seq: u64, key: &str, len: u32, body: &[u8]) -> Result<(), SpoolError> {
        let dir = &self.inner.config.dir;
        let part = entry_path(dir, seq, "part");
        let mut data = Vec::with_capacity(4 + key.len() + body.len());
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(key.as_bytes());
        data.extend_from_slice(body);
        let result = async {
            tokio::fs::write(&part, &data).await.map_err(io(&part))?;
            let obj = entry_path(dir, seq, "obj");
            tokio::fs::rename(&part, &obj).await.map_err(io(&obj))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    /// Counters and levels now.
    pub fn stats(&self) -> SpoolStats {
        let state = self.state();
        SpoolStats {
            queued: state.queue.len() as u64,
            bytes: state.bytes,
            uploaded: self.inner.uploaded.load(Ordering::Relaxed),
            retries: self.inner.retries.load(Ordering::Relaxed),
            refused_full: self.inner.refused_full.load(Ordering::Relaxed),
            refused_by_store: self.inner.refused_by_store.load(Ordering::Relaxed),
        }
    }

    /// Resolves once no entry waits (every one enqueued so far has been
    /// taken by the store or moved aside).
    pub async fn drained(&self) {
        loop {
            let removed = self.inner.removed.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            if self.state().queue.is_empty() {
                return;
            }
            removed.await;
        }
    }

    /// A mark of everything enqueued so far, for
    /// [`Spool::uploaded_through`].
    pub fn mark(&self) -> u64 {
        self.state().next_seq
    }

    /// Resolves once every entry enqueued before `mark` was taken
    /// ([`Spool::mark`]) has been taken by the store or moved aside; later
    /// entries may still wait.
    pub async fn uploaded_through(&self, mark: u64) {
        loop {
            let removed = self.inner.removed.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            if self.state().queue.front().is_none_or(|e| e.seq >= mark) {
                return;
            }
            removed.await;
        }
    }

    /// Starts sending the entries to `store`; dropping the [`Uploader`]
    /// stops it (what is not uploaded stays on disk). Start one per spool.
    pub fn start_uploader(&self, store: Arc<dyn ObjectStore>) -> Uploader {
        let spool = self.clone();
        Uploader {
            task: tokio::spawn(async move { spool.upload_forever(store.as_ref()).await }),
        }
    }

    /// The oldest entry, once there is one.
    async fn oldest(&self) -> Entry {
        loop {
            let added = self.inner.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(entry) = self.state().queue.front().copied() {
                return entry;
            }
            added.await;
        }
    }

    async fn upload_forever(&self, store: &dyn ObjectStore) {
        let dir = self.inner.config.dir.clone();
        let mut failures: u32 = 0;
        loop {
            let entry = self.oldest().await;
            let path = entry_path(&dir, entry.seq, "obj");
            let outcome = match read_entry(&path).await {
                Ok((key, body)) => {
                    match tokio::time::timeout(UPLOAD_TIMEOUT, store.put(&key, body)).await {
                        Ok(result) => result.map_err(|e| (key, e)),
                        Err(_) => Err((
                            key,
                            StoreError::Unavailable(format!("no answer within {UPLOAD_TIMEOUT:?}")),
                        )),
                    }
                }
                Err(e) => Err((String::new(), StoreError::Refused(e.to_string()))),
            };
            match outcome {
                Ok(()) => {
                    if failures > 0 {
                        info!(
                            failures,
                            "object store reachable again: uploading the spool"
                        );
                    }
                    failures = 0;
                    if let Err(e) = tokio::fs::remove_file(&path).await {
                        warn!(path = %path.display(), error = %e, "spool: uploaded entry not deleted");
                    }
                    self.inner.uploaded.fetch_add(1, Ordering::Relaxed);
                    self.remove_front(entry);
                }
                Err((key, StoreError::Unavailable(reason))) => {
                    self.inner.retries.fetch_add(1, Ordering::Relaxed);
                    if failures == 0 {
                        warn!(%key, %reason, "object store unavailable: objects wait in the spool");
                    } else {
                        debug!(%key, %reason, failures, "upload failed again");
                    }
                    let backoff = FIRST_BACKOFF
                        .saturating_mul(1u32 << failures.min(6))
                        .min(MAX_BACKOFF);
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(backoff).await;
                }
                Err((key, StoreError::Refused(reason))) => {
                    let aside = entry_path(&dir, entry.seq, "refused");
                    error!(%key, %reason, aside = %aside.display(), "object refused by the store for good: moved aside");
                    if let Err(e) = tokio::fs::rename(&path, &aside).await {
                        error!(path = %path.display(), error = %e, "spool: refused entry not moved aside; deleted");
                        let _ = tokio::fs::remove_file(&path).await;
                    }
                    self.inner.refused_by_store.fetch_add(1, Ordering::Relaxed);
                    self.remove_front(entry);
                }
            }
        }
    }

    fn remove_front(&self, entry: Entry) {
        let mut state = self.state();
        if state.queue.front().is_some_and(|e| e.seq == entry.seq) {
            state.queue.pop_front();
            state.bytes = state.bytes.saturating_sub(entry.size);
        }
        if state.full_warned && state.bytes <= self.inner.config.max_bytes / 2 {
            state.full_warned = false;
            info!(
                held = state.bytes,
                "spool drained to half: taking objects again"
            );
        }
        drop(state);
        self.inner.removed.notify_waiters();
    }
}

/// The key and body of the entry file at `path`.
async fn read_entry(path: &Path) -> Result<(String, Bytes), SpoolError> {
    let data = tokio::fs::read(path).await.map_err(io(path))?;
    let bad = || SpoolError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a spool entry"),
    };
    let len: [u8; 4] = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let end = 4 + u32::from_be_bytes(len) as usize;
    let key = data
        .get(4..end)
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or_else(bad)?
        .to_owned();
    let body = Bytes::from(data).slice(end..);
    Ok((key, body))
}

/// The running upload task of a spool; dropping it stops it.
#[derive(Debug)]
pub struct Uploader {
    task: JoinHandle<()>,
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::MemoryStore;

    fn config(dir: &Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes,
        }
    }

    #[tokio::test]
    async fn an_outage_loses_nothing_and_the_order_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(config(dir.path(), 1 << 20)).await.unwrap();
        let store = MemoryStore::default();
        store.set_available(false);
        let _uploader = spool.start_uploader(Arc::new(store.clone()));
        for i in 0..20 {
            let body = Bytes::from(vec![i as u8; 1000]);
            spool
                .enqueue(&format!("rec/seg{i:03}"), body)
                .await
                .unwrap();
        }
        // Down: everything waits on disk, retried.
        tokio::time::timeout(Duration::from_secs(5), async {
            while spool.stats().retries < 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(spool.stats().queued, 20);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 20);
        store.set_available(true);
        tokio::time::timeout(Duration::from_secs(30), spool.drained())
            .await
            .unwrap();
        let keys = store.list("rec/").await.unwrap();
        assert_eq!(keys.len(), 20);
        for (i, key) in keys.iter().enumerate() {
            let body = store.get(key).await.unwrap().unwrap();
            assert_eq!(body.len(), 1000);
            assert!(body.iter().all(|b| *b == i as u8));
        }
        let stats = spool.stats();
        assert_eq!((stats.queued, stats.bytes, stats.uploaded), (0, 0, 20));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn uploaded_through_waits_for_what_came_before_the_mark_only() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(config(dir.path(), 1 << 20)).await.unwrap();
        let store = MemoryStore::default();
        for i in 0..3 {
            spool
                .enqueue(&format!("a/{i}"), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let mark = spool.mark();
        // Nothing uploads yet: the wait does not end.
        let early = tokio::time::timeout(Duration::from_millis(100), spool.uploaded_through(mark));
        assert!(early.await.is_err());
        // An entry after the mark, stuck behind a refused store, does not
        // hold the wait up once those before it are taken.
        let _uploader = spool.start_uploader(Arc::new(store.clone()));
        tokio::time::timeout(Duration::from_secs(10), spool.uploaded_through(mark))
            .await
            .unwrap();
        store.set_available(false);
        spool
            .enqueue("b/0", Bytes::from_static(b"y"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), spool.uploaded_through(mark))
            .await
            .unwrap();
        let stats = spool.stats();
        assert_eq!((stats.uploaded, stats.queued), (3, 1));
    }

    #[tokio::test]
    async fn a_full_spool_refuses_and_takes_again_once_drained() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(config(dir.path(), 3_000)).await.unwrap();
        let entry = |i: u32| (format!("k/{i}"), Bytes::from(vec![0u8; 990]));
        for i in 0..3 {
            let (key, body) = entry(i);
            spool.enqueue(&key, body).await.unwrap();
        }
        let (key, body) = entry(3);
        match spool.enqueue(&key, body).await {
            Err(SpoolError::Full { held, max, needed }) => {
                assert_eq!((held, max, needed), (2_991, 3_000, 997));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(spool.stats().refused_full, 1);
        let store = MemoryStore::default();
        let _uploader = spool.start_uploader(Arc::new(store.clone()));
        tokio::time::timeout(Duration::from_secs(10), spool.drained())
            .await
            .unwrap();
        let (key, body) = entry(3);
        spool.enqueue(&key, body).await.unwrap();
        assert!(matches!(
            spool.enqueue("bad//key", Bytes::new()).await,
            Err(SpoolError::Key(_))
        ));
    }

    #[tokio::test]
    async fn a_new_process_uploads_what_the_last_one_left() {
        let dir = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(config(dir.path(), 1 << 20)).await.unwrap();
            spool
                .enqueue("a/1", Bytes::from_static(b"one"))
                .await
                .unwrap();
            spool
                .enqueue("a/2", Bytes::from_static(b"two"))
                .await
                .unwrap();
        }
        // A write cut off by a crash.
        std::fs::write(entry_path(dir.path(), 7, "part"), b"half").unwrap();
        let spool = Spool::open(config(dir.path(), 1 << 20)).await.unwrap();
        assert_eq!(spool.stats().queued, 2);
        assert!(!entry_path(dir.path(), 7, "part").exists());
        // New entries number on after the old ones.
        spool.enqueue("a/3", Bytes::new()).await.unwrap();
        assert!(entry_path(dir.path(), 2, "obj").exists());
        let store = MemoryStore::default();
        let _uploader = spool.start_uploader(Arc::new(store.clone()));
        tokio::time::timeout(Duration::from_secs(10), spool.drained())
            .await
            .unwrap();
        assert_eq!(store.get("a/2").await.unwrap().unwrap(), &b"two"[..]);
        assert_eq!(store.list("a/").await.unwrap(), ["a/1", "a/2", "a/3"]);
    }
}
