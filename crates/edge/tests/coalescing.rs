#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Ten thousand viewers blocked on the next part cost one upstream request
//! (the edge coalesces identical requests): 1,000 concurrent blocking playlist requests for
//! the next part, and 1,000 concurrent requests for the preload-hinted
//! part, through `Coalescing<HttpUpstream>` against the real packager
//! origin over loopback HTTP, each reach the origin once.
//!
//! The media is real: ffmpeg encodes H.264, `ferrocast_media::ts::Demuxer`
//! turns it into access units, and they are published on an in-process bus
//! the way ingest publishes them. The origin's router is wrapped in a
//! middleware that counts requests by path and query.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocast_bus::{BusConfig, InProcessBus};
use ferrocast_edge::coalesce::{Coalescing, CoalescingConfig};
use ferrocast_edge::http_upstream::{HttpUpstream, HttpUpstreamConfig};
use ferrocast_edge::upstream::{Upstream, UpstreamRequest, UpstreamResponse};
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, Time90k, TrackInfo};
use ferrocast_packager::{Origin, PackagerConfig};

/// Encode 4 s of H.264 (320×180, 25 fps, a keyframe every second, no
/// B-frames) into MPEG-TS.
fn encode(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("cam.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-bf",
            "0",
        ])
        .args(["-force_key_frames", "expr:gte(t,n_forced*1)"])
        .args(["-t", "4", "-an", "-f", "mpegts"])
        .arg(&file)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg (Debian's) is installed");
    assert!(status.success(), "ffmpeg failed");
    file
}

fn demux(path: &std::path::Path) -> (Vec<TrackInfo>, Vec<AccessUnit>) {
    let bytes = std::fs::read(path).unwrap();
    let mut demuxer = Demuxer::new();
    let mut events = Vec::new();
    demuxer.push(&bytes, &mut events);
    demuxer.finish(&mut events);
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut units = Vec::new();
    for event in events {
        match event {
            DemuxEvent::Track(track) => {
                tracks.retain(|t| t.id != track.id);
                tracks.push(track);
            }
            DemuxEvent::Unit(unit) => units.push(unit),
            _ => {}
        }
    }
    (tracks, units)
}

/// Requests the origin saw, by path and query, and a running total.
#[derive(Clone)]
struct Counter {
    by_target: Arc<Mutex<HashMap<String, usize>>>,
    total: tokio::sync::watch::Sender<usize>,
}

impl Counter {
    fn new() -> Self {
        Self {
            by_target: Arc::default(),
            total: tokio::sync::watch::channel(0).0,
        }
    }

    fn count(&self, target: &str) -> usize {
        self.by_target
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> usize {
        *self.total.borrow()
    }

    /// Resolves once the origin has seen `n` requests in all.
    async fn reached(&self, n: usize) {
        let mut rx = self.total.subscribe();
        rx.wait_for(|&total| total >= n).await.unwrap();
    }
}

/// The packager origin's router behind a request counter, served on
/// loopback.
async fn serve_origin(origin: Origin, counter: Counter) -> ferrocast_packager::http::HttpServer {
    let app = ferrocast_packager::http::router(origin).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counter = counter.clone();
            async move {
                let target = request
                    .uri()
                    .path_and_query()
                    .map(|pq| pq.as_str().to_owned())
                    .unwrap_or_default();
                *counter.by_target.lock().unwrap().entry(target).or_default() += 1;
                counter.total.send_modify(|n| *n += 1);
                next.run(request).await
            }
        },
    ));
    ferrocast_packager::http::serve("127.0.0.1:0".parse().unwrap(), app)
        .await
        .unwrap()
}

fn req(path: &str, query: Option<&str>) -> UpstreamRequest {
    UpstreamRequest {
        path: path.into(),
        query: query.map(Into::into),
    }
}

fn text(response: &UpstreamResponse) -> String {
    String::from_utf8(response.body.to_vec()).unwrap()
}

/// The `URI` of the playlist's `EXT-X-PRELOAD-HINT:TYPE=PART`.
fn preload_hint(playlist: &str) -> Option<&str> {
    playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:") && l.contains("TYPE=PART"))?
        .split("URI=\"")
        .nth(1)?
        .split('"')
        .next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_blocked_on_the_next_part_cost_one_upstream_request() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("the scenario finishes in time");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (tracks, units) = demux(&encode(dir.path()));
    assert_eq!(tracks.len(), 1);
    assert!(units.len() >= 100, "{} units", units.len());

    let bus = InProcessBus::new(BusConfig {
        subscriber_queue_bytes: 64 << 20,
        subscriber_hard_limit_bytes: 128 << 20,
        ..BusConfig::default()
    });
    let config = PackagerConfig {
        part_target: Time90k::from_millis(200),
        segment_min: Time90k::from_millis(1000),
        target_duration_secs: 2,
        window_segments: 6,
        max_hold: Duration::from_secs(20),
        reconnect_grace: Duration::from_secs(30),
        part_hold_back_parts: 3,
        separate_audio: false,
        rendition_wait: Duration::from_secs(1),
    };
    let publisher = bus.publish("cam").unwrap();
    let origin = Origin::start(
        Arc::new(bus.clone()),
        config,
        Arc::new(ferrocast_telemetry::Metrics::new()),
    )
    .unwrap();
    let counter = Counter::new();
    let server = serve_origin(origin, counter.clone()).await;
    let base = format!("http://{}", server.local_addr());
    let upstream_config = HttpUpstreamConfig {
        blocking_timeout_ms: 30_000,
        ..HttpUpstreamConfig::new(&base)
    };
    let direct = HttpUpstream::new(upstream_config.clone()).unwrap();
    let edge = Coalescing::new(
        HttpUpstream::new(upstream_config).unwrap(),
        // Playlists: blocking answers kept longer than the test runs, the
        // others not at all, so what is asserted below does not depend on
        // how fast this machine is.
        CoalescingConfig {
            playlist_ttl_ms: 0,
            blocking_playlist_ttl_ms: 120_000,
            ..CoalescingConfig::default()
        },
    );

    // Publish the first 2.7 s: segments of 1 s (one GOP), parts of 200 ms,
    // so part 2.2 (2.4–2.6 s) completes and part 2.3 is being written
    // and cannot complete before more media comes.
    let first = units[0].dts;
    let (now, later): (Vec<_>, Vec<_>) = units
        .into_iter()
        .partition(|u| (u.dts - first).0 < 2_700 * 90);
    publisher.send_tracks(tracks.clone());
    for unit in now {
        publisher.send_unit(unit);
    }
    let playlist_path = "/live/cam/stream.m3u8";
    // The origin packages what was sent in its own task: wait until it has
    // the stream (404 before: no event to await from here) and its first
    // part, so that asking for part 2.2 is not "more than two segments
    // ahead" of what it has so far (400).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let first = direct
            .fetch(req(playlist_path, Some("_HLS_msn=0&_HLS_part=0")))
            .await
            .unwrap();
        if first.status == 200 {
            break;
        }
        assert_eq!(first.status, 404, "{}", text(&first));
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reached = direct
        .fetch(req(playlist_path, Some("_HLS_msn=2&_HLS_part=2")))
        .await
        .unwrap();
    assert_eq!(reached.status, 200, "{}", text(&reached));
    let reached = text(&reached);
    assert_eq!(preload_hint(&reached), Some("part2.3.m4s"), "{reached}");
    assert!(reached.contains("URI=\"part2.2.m4s\""), "{reached}");

    // 1,000 viewers block on part 2.3 (parameters in either order, other
    // parameters dropped), and 1,000 ask for the preload-hinted part.
    let before = counter.total();
    let mut playlists = Vec::new();
    let mut parts = Vec::new();
    for i in 0..1_000 {
        let query = if i % 2 == 0 {
            "_HLS_msn=2&_HLS_part=3"
        } else {
            "_HLS_part=3&player=hls.js&_HLS_msn=2"
        };
        playlists.push(tokio::spawn(edge.fetch(req(playlist_path, Some(query)))));
        parts.push(tokio::spawn(edge.fetch(req("/live/cam/part2.3.m4s", None))));
    }
    // Both fetches are at the origin, held; every viewer is waiting on one.
    counter.reached(before + 2).await;
    let stats = edge.stats();
    assert_eq!(
        (stats.misses, stats.coalesced, stats.in_flight),
        (2, 1_998, 2)
    );
    assert!(playlists.iter().chain(&parts).all(|t| !t.is_finished()));

    // The next part's media arrives.
    for unit in later {
        publisher.send_unit(unit);
    }
    let mut playlist_bodies = Vec::new();
    for task in playlists {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status, 200);
        playlist_bodies.push(response.body);
    }
    let mut part_bodies = Vec::new();
    for task in parts {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status, 200);
        part_bodies.push(response.body);
    }
    assert!(playlist_bodies.iter().all(|b| *b == playlist_bodies[0]));
    assert!(part_bodies.iter().all(|b| *b == part_bodies[0]));
    let playlist = String::from_utf8(playlist_bodies[0].to_vec()).unwrap();
    assert!(playlist.contains("URI=\"part2.3.m4s\""), "{playlist}");
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    let part = &part_bodies[0];
    assert!(matches!(&part[4..8], b"moof" | b"styp"), "{:?}", &part[..8]);

    // Exactly one upstream request each.
    let playlist_target = "/live/cam/stream.m3u8?_HLS_msn=2&_HLS_part=3";
    assert_eq!(counter.count(playlist_target), 1);
    assert_eq!(counter.count("/live/cam/part2.3.m4s"), 1);
    assert_eq!(counter.total(), before + 2);
    let stats = edge.stats();
    assert_eq!(
        (stats.misses, stats.coalesced, stats.in_flight),
        (2, 1_998, 0)
    );
    assert_eq!(stats.errors, 0);

    // The part was still being written when its headers left (no-cache):
    // not cached. Asked again now that it is complete (immutable), it is.
    for _ in 0..3 {
        let again = edge
            .fetch(req("/live/cam/part2.3.m4s", None))
            .await
            .unwrap();
        assert_eq!(again.body, *part);
    }
    assert_eq!(counter.count("/live/cam/part2.3.m4s"), 2);
    // A finished segment: one upstream request for any number of viewers.
    for _ in 0..3 {
        let segment = edge.fetch(req("/live/cam/seg1.m4s", None)).await.unwrap();
        assert_eq!(segment.status, 200);
    }
    assert_eq!(counter.count("/live/cam/seg1.m4s"), 1);
    // A blocking playlist answers the same request again from memory
    // (within `blocking_playlist_ttl_ms`); with `playlist_ttl_ms` 0, a
    // non-blocking one is fetched every time.
    let again = edge
        .fetch(req(playlist_path, Some("_HLS_msn=2&_HLS_part=3")))
        .await
        .unwrap();
    assert_eq!(again.body, playlist_bodies[0]);
    assert_eq!(counter.count(playlist_target), 1);
    for _ in 0..2 {
        let again = edge.fetch(req(playlist_path, Some(""))).await.unwrap();
        assert_eq!(again.status, 200);
    }
    assert_eq!(counter.count(playlist_path), 2);
    let stats = edge.stats();
    assert_eq!(stats.hits, 5, "{stats:?}");
    drop(publisher);
}
