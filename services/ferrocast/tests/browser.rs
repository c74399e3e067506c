#![allow(clippy::unwrap_used)]

//! hls.js in headless Chromium plays the live stream.
//!
//! Needs Node.js, Debian's Chromium and `npm ci` in `tests/browser`
//! (`scripts/test.sh` does all three). When they are missing the test says
//! so and passes, unless `REQUIRE_BROWSER_TESTS=1` (set by the test
//! script and CI), where it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Server, client, ffmpeg_push, playlist_with_segment};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

fn browser_available() -> bool {
    let ready = browser_dir().join("node_modules/hls.js").exists()
        && browser_dir().join("node_modules/playwright-core").exists()
        && std::path::Path::new("/usr/bin/chromium").exists()
        && common::have("node");
    if !ready {
        assert!(
            std::env::var("REQUIRE_BROWSER_TESTS").as_deref() != Ok("1"),
            "browser test required but Chromium, Node.js or tests/browser/node_modules is missing"
        );
        eprintln!(
            "SKIP: Chromium, Node.js or tests/browser/node_modules missing (run scripts/test.sh)"
        );
    }
    ready
}

/// Play `url` for `seconds` with hls.js; returns its JSON report.
pub fn play(url: &str, seconds: u32) -> serde_json::Value {
    let (ok, out, err) = common::run_with_timeout(
        Command::new("node")
            .arg(browser_dir().join("play.mjs"))
            .arg(url)
            .arg(seconds.to_string())
            .current_dir(browser_dir()),
        Duration::from_secs(u64::from(seconds) + 60),
    );
    assert!(ok, "player failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad report {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_without_stalls() {
    if !browser_available() {
        return;
    }
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/browser", 60);
    playlist_with_segment(&client(), &server, "browser", 2).await;

    let report = play(&server.url("browser", "index.m3u8"), 15);
    assert_eq!(report["supported"], true, "{report}");
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(report["stalls"], 0, "playback stalled: {report}");

    // Playback advanced in step with the wall clock once it started.
    let samples = report["samples"].as_array().unwrap();
    let started = report["firstPlayingMs"].as_f64().unwrap();
    let played: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| (s["t"].as_f64().unwrap(), s["currentTime"].as_f64().unwrap()))
        .filter(|(t, _)| *t > started + 1000.0)
        .collect();
    let (t0, c0) = played[0];
    let (t1, c1) = *played.last().unwrap();
    let wall = (t1 - t0) / 1000.0;
    let media = c1 - c0;
    assert!(wall > 8.0, "too little playback observed: {report}");
    assert!(
        media > wall * 0.9 && media < wall * 1.1,
        "played {media:.2} s of media in {wall:.2} s"
    );
    assert!(
        played.windows(2).all(|w| w[1].1 >= w[0].1),
        "currentTime went backwards"
    );

    // hls.js' own live latency estimate, for the record (measured, not asserted).
    let latencies: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["latency"].as_f64())
        .filter(|l| *l > 0.0)
        .collect();
    assert!(
        !latencies.is_empty(),
        "hls.js reported no latency: {report}"
    );
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    eprintln!(
        "hls.js latency: mean {mean:.3} s over {} samples",
        latencies.len()
    );
}
