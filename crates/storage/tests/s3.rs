#![allow(clippy::unwrap_used)]

//! The S3 store and the spool against a real S3-compatible server (moto's,
//! started here on a free loopback port): objects in and out, a multipart
//! upload, a bucket that does not exist refused for good, and a store that
//! stops answering while objects are spooled: nothing is lost, the order
//! is kept.
//!
//! Skipped (with a message) without moto's server, unless
//! `REQUIRE_S3_TESTS` is set.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_storage::{ObjectStore, S3Options, S3Store, Spool, SpoolConfig, StoreError};
use ferrocast_testkit::S3Server;

fn options(server: &S3Server, bucket: &str) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint()),
        path_style: true,
        credentials: Some(("test-key-id".into(), "test-secret-key".into())),
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        operation_timeout: Duration::from_secs(2),
        ..S3Options::new(bucket, "us-east-1")
    }
}

async fn store(server: &S3Server, bucket: &str) -> S3Store {
    let store = S3Store::new(options(server, bucket)).await.unwrap();
    store.create_bucket().await.unwrap();
    store
}

/// Bytes that differ at every offset, so a misplaced part shows.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_go_in_and_out_whole_also_in_parts() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let store = store(&server, "recordings").await;
    store
        .put("live/cam/a.m4s", Bytes::from_static(b"a"))
        .await
        .unwrap();
    store
        .put("live/cam/b.m4s", Bytes::from_static(b"bb"))
        .await
        .unwrap();
    store
        .put("live/other/c.m4s", Bytes::from_static(b"c"))
        .await
        .unwrap();
    assert_eq!(
        store.list("live/cam/").await.unwrap(),
        ["live/cam/a.m4s", "live/cam/b.m4s"]
    );
    assert_eq!(
        store.get("live/cam/b.m4s").await.unwrap().unwrap(),
        &b"bb"[..]
    );
    assert_eq!(store.get("live/cam/none.m4s").await.unwrap(), None);
    // One level at a time, as the delimiter listing gives it.
    assert_eq!(store.list_dirs("").await.unwrap(), ["live/"]);
    assert_eq!(
        store.list_dirs("live/").await.unwrap(),
        ["live/cam/", "live/other/"]
    );
    assert!(store.list_dirs("live/cam/").await.unwrap().is_empty());
    store.delete("live/cam/a.m4s").await.unwrap();
    assert_eq!(store.list("live/cam/").await.unwrap(), ["live/cam/b.m4s"]);

    // 12 MiB: three parts of 5, 5 and 2 MiB.
    let big = pattern(12 << 20, 7);
    store.put("vod/big.mp4", big.clone()).await.unwrap();
    let back = store.get("vod/big.mp4").await.unwrap().unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "the parts came back out of order or changed");

    // A key we would never make is refused before it is sent.
    assert!(matches!(
        store.put("../etc", Bytes::new()).await,
        Err(StoreError::Refused(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_refused_for_good() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let store = S3Store::new(options(&server, "no-such-bucket"))
        .await
        .unwrap();
    match store.put("a/b", Bytes::from_static(b"x")).await {
        Err(StoreError::Refused(text)) => {
            assert!(text.contains("NoSuchBucket"), "{text}");
            assert!(!text.contains("test-secret-key"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_loses_nothing_spooled() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let store = store(&server, "spooled").await;
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(SpoolConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 64 << 20,
    })
    .await
    .unwrap();
    let _uploader = spool.start_uploader(Arc::new(store.clone()));
    spool
        .enqueue("rec/seg000.m4s", pattern(100_000, 0))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), spool.drained())
        .await
        .unwrap();

    // The server hangs: uploads time out and are retried; enqueueing
    // goes on without waiting for it.
    server.signal("-STOP");
    for i in 1..=10u8 {
        spool
            .enqueue(&format!("rec/seg{i:03}.m4s"), pattern(100_000, i))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while spool.stats().retries < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap();
    assert!(spool.stats().queued >= 10, "{:?}", spool.stats());
    server.signal("-CONT");
    tokio::time::timeout(Duration::from_secs(60), spool.drained())
        .await
        .unwrap();
    let keys = store.list("rec/").await.unwrap();
    assert_eq!(keys.len(), 11, "{keys:?}");
    for (i, key) in keys.iter().enumerate() {
        let body = store.get(key).await.unwrap().unwrap();
        assert!(body == pattern(100_000, i as u8), "{key} changed");
    }
    let stats = spool.stats();
    assert_eq!((stats.queued, stats.bytes, stats.uploaded), (0, 0, 11));
}
