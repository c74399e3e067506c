#![allow(clippy::unwrap_used)]

//! hls.js in headless Chromium plays the live stream.
//!
//! Needs Node.js, Debian's Chromium and `npm ci` in `tests/browser`
//! (`scripts/test.sh` does all three). When they are missing the test says
//! so and passes, unless `REQUIRE_BROWSER_TESTS=1` (set by the test
//! script and CI), where it fails.

mod common;

use std::time::Duration;

use common::{Server, browser, client, ffmpeg_push, playlist_with_segment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_without_stalls() {
    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/browser", 60);
    playlist_with_segment(&client(), &server, "browser", 2).await;

    let report = browser::play(&server.url("browser", "index.m3u8"), 15, &[]);
    assert_eq!(report["supported"], true, "{report}");
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(320), Some(240))
    );
    // No rebuffering once playing (hls.js's own seeks at the start are not
    // stalls; `play.mjs` leaves them out). A blocking playlist request is
    // answered as of the part that satisfied it, one part per reload, so
    // hls.js never learns of a segment's last part and that segment's
    // close in one reload (which made it skip the last part while it was
    // appending the one before, and stall at the hole).
    assert_eq!(
        report["stalls"],
        0,
        "playback stalled:\n{}",
        browser::timeline(&report)
    );

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_keeps_playing_across_a_publisher_reconnect() {
    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let server = Server::start("");
    let first = ffmpeg_push(server.srt, "publish:live/again", 10);
    playlist_with_segment(&client(), &server, "again", 2).await;

    let url = server.url("again", "index.m3u8");
    let player = std::thread::spawn(move || browser::play(&url, 28, &[]));
    // The first publisher runs out; a new one takes up the stream once the
    // server has seen the first leave (before that, a second caller for the
    // stream is refused as a duplicate publisher: no publish keys here).
    first.wait(Duration::from_secs(30));
    assert!(
        server.wait_for_log("publisher left", Duration::from_secs(15)),
        "the first publisher's session did not end: {}",
        server.log()
    );
    let _second = ffmpeg_push(server.srt, "publish:live/again", 40);
    let report = player.join().unwrap();

    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    let samples = report["samples"].as_array().unwrap();
    let times: Vec<f64> = samples
        .iter()
        .map(|s| s["currentTime"].as_f64().unwrap())
        .collect();
    let started = times.iter().copied().find(|&t| t > 0.0).unwrap();
    let end = *times.last().unwrap();
    // The first publisher alone can give at most ~8 s from where playback
    // began; more than 12 s means playback went on with the second one.
    assert!(
        end - started > 12.0,
        "played only {:.1} s across the reconnect:\n{}\nserver log:\n{}",
        end - started,
        browser::timeline(&report),
        server.log()
    );
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "currentTime went backwards"
    );
    let playlist = common::get_text(&client(), &server.url("again", "stream.m3u8"))
        .await
        .1;
    // The discontinuity is listed, or has already left the window.
    assert!(
        playlist.contains("#EXT-X-DISCONTINUITY\n")
            || !playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0"),
        "{playlist}"
    );
}
