#![allow(clippy::unwrap_used)]

//! The recorder behind the packager's sink, on the in-memory store (the
//! same `ObjectStore` trait as S3): what is recorded under which key, the
//! VOD playlists at the end, an outage absorbed by the spool, and a
//! recording left open closed by the next process.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_hls::RenditionName;
use ferrocast_media::{AacParams, CodecParams, StreamName, Time90k, TrackId, TrackInfo};
use ferrocast_packager::{Recorded, RecordedSegment, RecordingSink};
use ferrocast_recorder::manifest::{ClosedBy, Summary};
use ferrocast_recorder::{Layout, Recorder, RecorderConfig, RecorderTasks, StreamList};
use ferrocast_storage::{MemoryStore, ObjectStore, Spool, SpoolConfig};

fn tracks() -> Arc<[TrackInfo]> {
    Arc::from(vec![TrackInfo {
        id: TrackId(257),
        params: CodecParams::Aac(AacParams {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
        }),
    }])
}

fn segment(msn: u64, discontinuity: bool) -> Recorded {
    Recorded::Segment(RecordedSegment {
        msn,
        duration: Time90k::from_millis(2000),
        discontinuity,
        init_generation: 0,
        program_date_time_ms: 1_700_000_000_000 + msn as i64 * 2000,
        chunks: vec![
            Bytes::from(vec![msn as u8; 100]),
            Bytes::from_static(b"tail"),
        ],
    })
}

async fn recorder(
    store: &MemoryStore,
    dir: &std::path::Path,
    stale_after: Duration,
) -> (Recorder, RecorderTasks) {
    let spool = Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
    })
    .await
    .unwrap();
    let mut config = RecorderConfig::new(Layout::new("rec"));
    config.stale_after = stale_after;
    config.heartbeat = Duration::from_millis(200);
    Recorder::start(
        config,
        spool,
        Arc::new(store.clone()),
        Arc::new(StreamList::default()),
        ferrocast_telemetry::Metrics::new().recording,
    )
}

/// Waits (bounded) until `key_suffix` is stored under `rec/`; its key.
async fn stored(store: &MemoryStore, key_suffix: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(keys) = store.list("rec/").await
                && let Some(key) = keys.into_iter().find(|k| k.ends_with(key_suffix))
            {
                return key;
            }
            // The spool uploads from another task; nothing to await on the
            // in-memory store itself.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("stored in time")
}

/// Waits (bounded) until no open marker is left: the writer deletes one
/// once its recording's playlists are uploaded.
async fn markers_gone(store: &MemoryStore) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !store.list("rec/.open/").await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("marker deleted");
}

async fn text(store: &MemoryStore, key: &str) -> String {
    String::from_utf8(store.get(key).await.unwrap().unwrap().to_vec()).unwrap()
}

#[tokio::test]
async fn a_recorded_stream_ends_as_vod_playlists_and_its_marker_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let (recorder, _tasks) = recorder(&store, dir.path(), Duration::from_secs(60)).await;
    let stream = StreamName::new("cam").unwrap();
    let source = RenditionName::source();
    let hd = RenditionName::new("720p").unwrap();
    assert!(recorder.wants(&stream));
    for rendition in [&source, &hd] {
        recorder.record(
            &stream,
            rendition,
            Recorded::Init {
                generation: 0,
                tracks: tracks(),
                bytes: Bytes::from_static(b"init"),
            },
        );
    }
    // While S3 is away the spool holds everything.
    store.set_available(false);
    for msn in 0..3 {
        recorder.record(&stream, &source, segment(msn, false));
        recorder.record(&stream, &hd, segment(msn, false));
    }
    recorder.record(&stream, &source, segment(3, true));
    recorder.record(&stream, &source, Recorded::End);
    store.set_available(true);
    recorder.record(&stream, &hd, Recorded::End);

    let summary_key = stored(&store, "/recording.json").await;
    let summary: Summary = ferrocast_recorder::manifest::read(
        &summary_key,
        &store.get(&summary_key).await.unwrap().unwrap(),
    )
    .unwrap();
    assert_eq!(summary.closed_by, ClosedBy::Writer);
    assert_eq!(summary.duration_ms, 8000);
    let root = summary_key.trim_end_matches("recording.json").to_owned();
    assert!(root.starts_with("rec/cam/"), "{root}");

    let source_playlist = text(&store, &format!("{root}source/index.m3u8")).await;
    assert_eq!(
        source_playlist.matches("#EXTINF:2.000,").count(),
        4,
        "{source_playlist}"
    );
    assert_eq!(source_playlist.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    assert!(source_playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
    assert!(source_playlist.ends_with("#EXT-X-ENDLIST\n"));
    // Every listed segment is stored, whole.
    for line in source_playlist.lines().filter(|l| l.ends_with(".m4s")) {
        let body = store
            .get(&format!("{root}source/{line}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body.len(), 104, "{line}");
    }
    let init = store
        .get(&format!("{root}720p/init-g0-e0.mp4"))
        .await
        .unwrap();
    assert_eq!(init.as_deref(), Some(&b"init"[..]));
    let multivariant = text(&store, &format!("{root}index.m3u8")).await;
    assert!(
        multivariant.contains("CODECS=\"mp4a.40.2\""),
        "{multivariant}"
    );
    assert!(
        multivariant.contains("\n720p/index.m3u8\n")
            && multivariant.contains("\nsource/index.m3u8\n")
    );

    // The open marker is deleted once the playlists are stored.
    markers_gone(&store).await;
}

#[tokio::test]
async fn a_recording_left_open_is_closed_by_the_next_process() {
    let store = MemoryStore::default();
    let stream = StreamName::new("cam").unwrap();
    let rendition = RenditionName::source();
    // The first process records two segments and stops without an end;
    // one segment never left its spool.
    let first_spool = tempfile::tempdir().unwrap();
    {
        let (recorder, mut tasks) =
            recorder(&store, first_spool.path(), Duration::from_secs(60)).await;
        recorder.record(
            &stream,
            &rendition,
            Recorded::Init {
                generation: 0,
                tracks: tracks(),
                bytes: Bytes::from_static(b"init"),
            },
        );
        recorder.record(&stream, &rendition, segment(0, false));
        stored(&store, "-b104-t1700000000000.m4s").await;
        store.set_available(false);
        recorder.record(&stream, &rendition, segment(1, false));
        drop(recorder);
        tasks.writer_finished().await;
    }
    store.set_available(true);
    assert!(!store.list("rec/.open/").await.unwrap().is_empty());

    // The next process, on the same spool, uploads what was left, then
    // closes the recording once its marker is stale.
    let (_recorder, _tasks) =
        recorder(&store, first_spool.path(), Duration::from_millis(500)).await;
    let summary_key = stored(&store, "/recording.json").await;
    let summary: Summary = ferrocast_recorder::manifest::read(
        &summary_key,
        &store.get(&summary_key).await.unwrap().unwrap(),
    )
    .unwrap();
    assert_eq!(summary.closed_by, ClosedBy::Recovery);
    assert_eq!(summary.renditions[0].segments, 2);
    let root = summary_key.trim_end_matches("recording.json").to_owned();
    let playlist = text(&store, &format!("{root}source/index.m3u8")).await;
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    assert!(!playlist.contains("DISCONTINUITY"), "{playlist}");
    markers_gone(&store).await;
}

#[tokio::test]
async fn streams_outside_the_policy_are_not_recorded() {
    let policy = StreamList {
        only: Some(["cam".to_owned()].into()),
    };
    use ferrocast_recorder::RecordingPolicy;
    assert!(policy.records(&StreamName::new("cam").unwrap()));
    assert!(!policy.records(&StreamName::new("other").unwrap()));
}

#[tokio::test]
async fn keys_carry_the_epoch_the_stream_is_held_under() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let (recorder, _tasks) = recorder(&store, dir.path(), Duration::from_secs(60)).await;
    let stream = StreamName::new("held").unwrap();
    recorder.set_epoch(&stream, 7);
    let source = RenditionName::source();
    recorder.record(
        &stream,
        &source,
        Recorded::Init {
            generation: 0,
            tracks: tracks(),
            bytes: Bytes::from_static(b"init"),
        },
    );
    recorder.record(&stream, &source, segment(0, false));
    recorder.record(&stream, &source, Recorded::End);
    let summary_key = stored(&store, "/recording.json").await;
    let root = summary_key.trim_end_matches("recording.json").to_owned();
    let keys = store.list(&root).await.unwrap();
    assert!(
        keys.iter().any(|k| k.ends_with("source/init-g0-e7.mp4")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.contains("source/s0000000000-e7-")),
        "{keys:?}"
    );
    let playlist = text(&store, &format!("{root}source/index.m3u8")).await;
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init-g0-e7.mp4\""),
        "{playlist}"
    );
    // Another stream, not held under a lease, writes epoch 0.
    let other = StreamName::new("other").unwrap();
    recorder.record(&other, &source, segment(0, false));
    stored(&store, "-e0-g0-d180000-b104-t1700000000000.m4s").await;
}
