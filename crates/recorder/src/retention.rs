//! Retention: recordings older than the retention period are deleted.
//!
//! A recording's age is read from its id (its start time, to the second),
//! so a sweep lists the store one level at a time (streams, then their
//! recordings: S3's `/`-delimited listing) and reads nothing else. An open
//! recording (one with a marker, or one this process writes) is never
//! deleted. A recording's playlists and summary go first, so a half-done
//! deletion leaves nothing playable that misses segments; the next sweep
//! finishes it.

use std::time::Duration;

use ferrocast_media::StreamName;
use ferrocast_storage::{ObjectStore, StoreError};
use tracing::info;

use crate::layout::{Layout, PLAYLIST_NAME, RecordingId, SUMMARY_NAME};

/// Deletes the recordings under `layout` that started more than their
/// stream's `keep` before `now_ms` (a stream whose `keep` is `None` keeps
/// them all), except open ones (`writing`, or a marker in the store);
/// returns what it deleted.
pub async fn delete_expired(
    store: &dyn ObjectStore,
    layout: &Layout,
    keep: &(dyn Fn(&StreamName) -> Option<Duration> + Sync),
    now_ms: i64,
    writing: impl Fn(&StreamName, &RecordingId) -> bool,
) -> Result<Vec<(StreamName, RecordingId)>, StoreError> {
    let mut deleted = Vec::new();
    for stream_dir in store.list_dirs(layout.prefix()).await? {
        let name = stream_dir[layout.prefix().len()..].trim_end_matches('/');
        // `.open` (the markers) is not a stream name.
        let Ok(stream) = StreamName::new(name) else {
            continue;
        };
        let Some(keep) = keep(&stream) else {
            continue;
        };
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        for recording_dir in store.list_dirs(&stream_dir).await? {
            let id = recording_dir[stream_dir.len()..].trim_end_matches('/');
            let Some(id) = RecordingId::parse(id) else {
                continue;
            };
            let Some(started) = id.started_ms() else {
                continue;
            };
            if now_ms.saturating_sub(started) <= keep_ms || writing(&stream, &id) {
                continue;
            }
            if store.get(&layout.marker(&stream, &id)).await?.is_some() {
                continue;
            }
            let mut keys = store.list(&recording_dir).await?;
            // Playlists and the summary first: nothing playable is left
            // half deleted.
            keys.sort_by_key(|k| !(k.ends_with(PLAYLIST_NAME) || k.ends_with(SUMMARY_NAME)));
            for key in &keys {
                store.delete(key).await?;
            }
            info!(stream = %stream, recording = %id, objects = keys.len(), "recording past retention deleted");
            deleted.push((stream.clone(), id));
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrocast_storage::MemoryStore;

    #[tokio::test]
    async fn old_closed_recordings_go_and_nothing_else() {
        let store = MemoryStore::default();
        let layout = Layout::new("rec");
        let day = 86_400_000;
        let now = 1_700_000_000_000;
        let stream = StreamName::new("cam").unwrap();
        let old = RecordingId::new(now - 3 * day);
        let old_open = RecordingId::new(now - 3 * day + 1000);
        let old_writing = RecordingId::new(now - 3 * day + 2000);
        let recent = RecordingId::new(now - day / 2);
        for id in [&old, &old_open, &old_writing, &recent] {
            for file in [
                "index.m3u8",
                "recording.json",
                "720p/index.m3u8",
                "720p/s1.m4s",
            ] {
                let key = format!("{}{file}", layout.root(&stream, id));
                store.put(&key, Bytes::from_static(b"x")).await.unwrap();
            }
        }
        store
            .put(
                &layout.marker(&stream, &old_open),
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
        store
            .put("rec/notes.txt", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let deleted = delete_expired(
            &store,
            &layout,
            &|_| Some(Duration::from_millis(day as u64)),
            now,
            |_, id| *id == old_writing,
        )
        .await
        .unwrap();
        assert_eq!(deleted, [(stream.clone(), old.clone())]);
        assert!(
            store
                .list(&layout.root(&stream, &old))
                .await
                .unwrap()
                .is_empty()
        );
        for id in [&old_open, &old_writing, &recent] {
            assert_eq!(
                store.list(&layout.root(&stream, id)).await.unwrap().len(),
                4
            );
        }
        assert!(store.get("rec/notes.txt").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn each_stream_keeps_its_recordings_as_long_as_its_own_retention_says() {
        let store = MemoryStore::default();
        let layout = Layout::new("rec");
        let day = 86_400_000;
        let now = 1_700_000_000_000;
        let cam = StreamName::new("cam").unwrap();
        let talks = StreamName::new("talks").unwrap();
        let week_old = RecordingId::new(now - 7 * day);
        for stream in [&cam, &talks] {
            let key = format!("{}index.m3u8", layout.root(stream, &week_old));
            store.put(&key, Bytes::from_static(b"x")).await.unwrap();
        }
        // `cam` keeps a day, `talks` for ever.
        let keep = |stream: &StreamName| {
            (stream.as_str() == "cam").then(|| Duration::from_millis(day as u64))
        };
        let deleted = delete_expired(&store, &layout, &keep, now, |_, _| false)
            .await
            .unwrap();
        assert_eq!(deleted, [(cam.clone(), week_old.clone())]);
        assert_eq!(store.list("rec/talks/").await.unwrap().len(), 1);
        assert!(store.list("rec/cam/").await.unwrap().is_empty());
    }
}
