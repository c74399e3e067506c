#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! `Coalescing` over a scripted in-memory upstream: what is shared, what is
//! cached, what is not, and that the cache stays within its bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_edge::coalesce::{Coalescing, CoalescingConfig};
use ferrocast_edge::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};
use futures::FutureExt;
use futures::future::BoxFuture;

/// Answers from a script; counts what it was asked; holds every fetch
/// until the gate opens (when `gated`).
#[derive(Clone)]
struct Scripted {
    asked: Arc<Mutex<HashMap<UpstreamRequest, usize>>>,
    gate: Arc<tokio::sync::Semaphore>,
    gated: bool,
    started: Arc<tokio::sync::Notify>,
}

impl Default for Scripted {
    fn default() -> Self {
        Self {
            asked: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            gated: false,
            started: Arc::default(),
        }
    }
}

impl Scripted {
    fn gated() -> Self {
        Self {
            gated: true,
            ..Self::default()
        }
    }

    fn asked(&self, path: &str, query: Option<&str>) -> usize {
        let key = UpstreamRequest {
            path: path.into(),
            query: query.map(Into::into),
        };
        self.asked.lock().unwrap().get(&key).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.asked.lock().unwrap().values().sum()
    }

    fn open(&self) {
        self.gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

fn answer(req: &UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
    let file = req.path.rsplit('/').next().unwrap();
    let (status, cache_control, size) = match file {
        "down.m4s" => return Err(UpstreamError::Unreachable("connection refused".into())),
        f if f.starts_with("missing") => (404, "no-cache", 10),
        f if f.ends_with(".m3u8") => (200, "no-cache", 100),
        f if f.starts_with("big") => (200, "public, max-age=3600, immutable", 5_000),
        f if f.contains("short") => (200, "max-age=2", 1_000),
        _ => (200, "public, max-age=3600, immutable", 1_000),
    };
    Ok(UpstreamResponse {
        status,
        headers: vec![
            ("content-type".into(), "video/mp4".into()),
            ("cache-control".into(), cache_control.into()),
        ],
        body: {
            // Exactly `size` bytes (or the name, if longer), unique per request.
            let mut body = format!("{}?{:?}", req.path, req.query).into_bytes();
            body.resize(size.max(body.len()), b' ');
            Bytes::from(body)
        },
    })
}

impl Upstream for Scripted {
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        *self.asked.lock().unwrap().entry(req.clone()).or_default() += 1;
        self.started.notify_one();
        let this = self.clone();
        async move {
            if this.gated {
                this.gate.acquire().await.unwrap().forget();
            }
            answer(&req)
        }
        .boxed()
    }
}

fn req(path: &str, query: Option<&str>) -> UpstreamRequest {
    UpstreamRequest {
        path: path.into(),
        query: query.map(Into::into),
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finishes in time")
}

#[tokio::test]
async fn a_segment_fetched_twice_costs_one_upstream_request() {
    let upstream = Scripted::default();
    let edge = Coalescing::new(upstream.clone(), CoalescingConfig::default());
    let a = within(edge.fetch(req("/live/cam/seg7.m4s", Some("token=x"))))
        .await
        .unwrap();
    let b = within(edge.fetch(req("/live/cam/seg7.m4s", None)))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(upstream.asked("/live/cam/seg7.m4s", None), 1);
    let stats = edge.stats();
    assert_eq!((stats.misses, stats.hits, stats.stored), (1, 1, 1));
    assert!(stats.cached_bytes >= 1_000 && stats.cached_objects == 1);
}

#[tokio::test]
async fn the_cache_stays_within_its_bound_and_evicts_the_least_recently_used() {
    let upstream = Scripted::default();
    let edge = Coalescing::new(
        upstream.clone(),
        CoalescingConfig {
            cache_bytes: 4_500,
            max_object_bytes: 3_000,
            ..CoalescingConfig::default()
        },
    );
    let get = |path: &'static str| within(edge.fetch(req(path, None)));
    for i in 0..3 {
        get(["/s/seg0.m4s", "/s/seg1.m4s", "/s/seg2.m4s"][i])
            .await
            .unwrap();
    }
    assert_eq!(edge.stats().evictions, 0);
    // seg0 used again; seg3 needs room: seg1, the least recently used, goes.
    get("/s/seg0.m4s").await.unwrap();
    get("/s/seg3.m4s").await.unwrap();
    let stats = edge.stats();
    assert!(stats.cached_bytes <= 4_500, "{stats:?}");
    assert_eq!(stats.evictions, 1, "{stats:?}");
    get("/s/seg0.m4s").await.unwrap();
    get("/s/seg1.m4s").await.unwrap();
    assert_eq!(upstream.asked("/s/seg0.m4s", None), 1);
    assert_eq!(upstream.asked("/s/seg1.m4s", None), 2);
    // Larger than max_object_bytes: served, never cached.
    get("/s/big0.m4s").await.unwrap();
    get("/s/big0.m4s").await.unwrap();
    assert_eq!(upstream.asked("/s/big0.m4s", None), 2);
    // Many objects later, still within the bound.
    for i in 0..50 {
        let path = format!("/s/part{i}.0.m4s");
        within(edge.fetch(req(&path, None))).await.unwrap();
        assert!(edge.stats().cached_bytes <= 4_500);
    }
    let stats = edge.stats();
    assert!(stats.evictions >= 50, "{stats:?}");
    assert!(stats.cached_objects <= 4, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn errors_and_404s_are_not_cached_playlists_only_briefly() {
    let upstream = Scripted::default();
    let edge = Coalescing::new(upstream.clone(), CoalescingConfig::default());
    for _ in 0..2 {
        let r = within(edge.fetch(req("/live/cam/missing3.m4s", None)))
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        let e = within(edge.fetch(req("/live/cam/down.m4s", None))).await;
        assert!(matches!(e, Err(UpstreamError::Unreachable(_))), "{e:?}");
    }
    assert_eq!(upstream.asked("/live/cam/missing3.m4s", None), 2);
    assert_eq!(upstream.asked("/live/cam/down.m4s", None), 2);
    let stats = edge.stats();
    assert_eq!((stats.hits, stats.stored, stats.errors), (0, 0, 2));

    // A blocking request's playlist answers the same request for
    // `blocking_playlist_ttl_ms`, not a moment longer.
    let blocking = CoalescingConfig::default().blocking_playlist_ttl_ms;
    let fetch = |query: Option<&'static str>| {
        let edge = edge.clone();
        async move {
            let p = within(edge.fetch(req("/live/cam/stream.m3u8", query)))
                .await
                .unwrap();
            assert_eq!(p.status, 200);
            p.body
        }
    };
    let first = fetch(Some("_HLS_msn=4")).await;
    tokio::time::advance(Duration::from_millis(blocking - 1)).await;
    assert_eq!(fetch(Some("token=x&_HLS_msn=4")).await, first);
    assert_eq!(fetch(Some("_HLS_msn=4")).await, first);
    assert_eq!(
        upstream.asked("/live/cam/stream.m3u8", Some("_HLS_msn=4")),
        1
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    fetch(Some("_HLS_msn=4")).await;
    assert_eq!(
        upstream.asked("/live/cam/stream.m3u8", Some("_HLS_msn=4")),
        2
    );

    // Any other playlist request: `playlist_ttl_ms` from the fetch's start.
    let ttl = CoalescingConfig::default().playlist_ttl_ms;
    fetch(None).await;
    tokio::time::advance(Duration::from_millis(ttl - 1)).await;
    fetch(None).await;
    assert_eq!(upstream.asked("/live/cam/stream.m3u8", None), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    fetch(None).await;
    assert_eq!(upstream.asked("/live/cam/stream.m3u8", None), 2);

    // Off: every playlist request goes upstream.
    let upstream = Scripted::default();
    let edge = Coalescing::new(
        upstream.clone(),
        CoalescingConfig {
            playlist_ttl_ms: 0,
            blocking_playlist_ttl_ms: 0,
            ..CoalescingConfig::default()
        },
    );
    for query in [None, None, Some("_HLS_msn=4"), Some("_HLS_msn=4")] {
        within(edge.fetch(req("/live/cam/stream.m3u8", query)))
            .await
            .unwrap();
    }
    assert_eq!(upstream.total(), 4);
    assert_eq!(edge.stats().stored, 0);
}

#[tokio::test(start_paused = true)]
async fn cached_media_expires_with_its_max_age() {
    let upstream = Scripted::default();
    let edge = Coalescing::new(upstream.clone(), CoalescingConfig::default());
    within(edge.fetch(req("/s/seg-short1.m4s", None)))
        .await
        .unwrap();
    within(edge.fetch(req("/s/seg-short1.m4s", None)))
        .await
        .unwrap();
    assert_eq!(upstream.asked("/s/seg-short1.m4s", None), 1);
    tokio::time::advance(Duration::from_secs(3)).await;
    within(edge.fetch(req("/s/seg-short1.m4s", None)))
        .await
        .unwrap();
    assert_eq!(upstream.asked("/s/seg-short1.m4s", None), 2);
    assert_eq!(edge.stats().expirations, 1);
}

#[tokio::test]
async fn concurrent_equal_requests_share_one_fetch_and_its_error() {
    let upstream = Scripted::gated();
    let edge = Coalescing::new(upstream.clone(), CoalescingConfig::default());
    // Blocking playlist requests with the same directives in any order.
    let queries = [
        "_HLS_msn=9&_HLS_part=1",
        "_HLS_part=1&_HLS_msn=9",
        "token=abc&_HLS_part=1&_HLS_msn=9",
    ];
    let playlists: Vec<_> = (0..300)
        .map(|i| edge.fetch(req("/live/cam/stream.m3u8", Some(queries[i % 3]))))
        .collect();
    // Another part is another request.
    let other = edge.fetch(req("/live/cam/stream.m3u8", Some("_HLS_msn=9&_HLS_part=2")));
    let errors: Vec<_> = (0..10)
        .map(|_| edge.fetch(req("/live/cam/down.m4s", None)))
        .collect();
    let stats = edge.stats();
    assert_eq!(
        (stats.misses, stats.coalesced, stats.in_flight),
        (3, 308, 3)
    );
    upstream.open();
    let playlists = within(futures::future::join_all(playlists)).await;
    assert!(playlists.iter().all(|r| r == &playlists[0]));
    assert_eq!(playlists[0].as_ref().unwrap().status, 200);
    assert_ne!(within(other).await, playlists[0]);
    for e in within(futures::future::join_all(errors)).await {
        assert!(matches!(e, Err(UpstreamError::Unreachable(_))), "{e:?}");
    }
    assert_eq!(
        upstream.asked("/live/cam/stream.m3u8", Some("_HLS_msn=9&_HLS_part=1")),
        1
    );
    assert_eq!(upstream.total(), 3);
    // The two blocking playlists are kept for a while, the error is not.
    let stats = edge.stats();
    assert_eq!((stats.in_flight, stats.errors, stats.stored), (0, 1, 2));
}

#[tokio::test]
async fn a_waiter_that_goes_away_does_not_cancel_the_fetch_for_the_others() {
    let upstream = Scripted::gated();
    let edge = Coalescing::new(upstream.clone(), CoalescingConfig::default());
    let first = edge.fetch(req("/live/cam/part4.2.m4s", None));
    let second = edge.fetch(req("/live/cam/part4.2.m4s", None));
    // The first viewer (the one that started the fetch) leaves.
    drop(first);
    upstream.open();
    let response = within(second).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(upstream.total(), 1);

    // Every viewer leaves: the fetch still completes and fills the cache.
    let upstream = Scripted::gated();
    let edge = Coalescing::new(upstream.clone(), CoalescingConfig::default());
    drop(edge.fetch(req("/live/cam/seg4.m4s", None)));
    upstream.open();
    // Wait for the fetch to land in the cache.
    let mut stored = false;
    within(async {
        while !stored {
            tokio::task::yield_now().await;
            stored = edge.stats().stored == 1;
        }
    })
    .await;
    within(edge.fetch(req("/live/cam/seg4.m4s", None)))
        .await
        .unwrap();
    assert_eq!(upstream.total(), 1);
    assert_eq!(edge.stats().hits, 1);
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_go_upstream_on_their_own() {
    let upstream = Scripted::gated();
    let edge = Coalescing::new(
        upstream.clone(),
        CoalescingConfig {
            max_in_flight: 2,
            ..CoalescingConfig::default()
        },
    );
    let held: Vec<_> = [
        "/a/part1.0.m4s",
        "/a/part1.1.m4s",
        "/a/part1.2.m4s",
        "/a/part1.2.m4s",
    ]
    .iter()
    .map(|p| edge.fetch(req(p, None)))
    .collect();
    let stats = edge.stats();
    assert_eq!((stats.misses, stats.bypassed, stats.in_flight), (2, 2, 2));
    upstream.open();
    for r in within(futures::future::join_all(held)).await {
        assert_eq!(r.unwrap().status, 200);
    }
    assert_eq!(edge.stats().in_flight, 0);
}
