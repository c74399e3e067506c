#![allow(clippy::unwrap_used)]

//! hls.js in headless Chromium plays the live stream through the edge:
//! the viewer JWT on the multivariant URL, edge tokens on everything after,
//! the edge's self-signed certificate pinned by its SPKI hash (printed on
//! the ready line), once over each protocol: HTTP/2 (what Chromium picks by
//! ALPN), HTTP/1.1 (`--disable-http2`) and HTTP/3 (Chromium speaks QUIC to
//! an origin only when `--origin-to-force-quic-on` names it, and accepts a
//! self-signed certificate over QUIC only with its SPKI pinned). Which
//! protocol carried the media is checked on the server side, from the
//! edge's request counter.
//!
//! Needs Node.js, Debian's Chromium and `npm ci` in `tests/browser`; when
//! they are missing the tests say so and pass, unless
//! `REQUIRE_BROWSER_TESTS=1`.

mod common;

use common::edge::{EdgeKeys, HS256_SECRET, claims, hs256_jwt};
use common::{Server, browser, client, ffmpeg_push, playlist_with_segment};

/// How long the player plays.
const PLAY_SECONDS: u32 = 12;

/// The sum of `ferrocast_edge_requests_total` for `protocol` and `kind`
/// with status 200, from the process's `/metrics`.
async fn edge_requests(server: &Server, protocol: &str, kind: &str) -> u64 {
    let metrics = common::get_text(&client(), &format!("http://{}/metrics", server.http))
        .await
        .1;
    let labels = format!(r#"{{kind="{kind}",protocol="{protocol}",status="200"}}"#);
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("ferrocast_edge_requests_total"))
        .filter_map(|rest| rest.strip_prefix(labels.as_str()))
        .map(|value| value.trim().parse::<f64>().unwrap() as u64)
        .sum()
}

/// Parts and segments the edge served over `protocol` with status 200.
async fn media_requests(server: &Server, protocol: &str) -> u64 {
    edge_requests(server, protocol, "part").await + edge_requests(server, protocol, "segment").await
}

/// Starts `ferrocast up` with an edge on a generated certificate and a
/// publisher on `name`; returns the server and the player's URL (the JWT
/// in the query, as a browser without a custom header sends it).
async fn live_edge(keys: &EdgeKeys, name: &str) -> (Server, common::Sender, String) {
    let server = Server::start(&keys.config_toml_self_signed());
    assert!(
        server.spki_sha256.is_some(),
        "no spki_sha256 on the ready line; log:\n{}",
        server.log()
    );
    let push = ffmpeg_push(server.srt, &format!("publish:live/{name}"), 60);
    playlist_with_segment(&client(), &server, name, 2).await;
    let jwt = hs256_jwt(&claims(&[name]), HS256_SECRET);
    let url = format!(
        "https://{}/live/{name}/index.m3u8?token={jwt}",
        server.https.unwrap()
    );
    (server, push, url)
}

/// hls.js played without a fatal error, at the source's size, without a
/// rebuffering event once playing (see `tests/browser.rs`).
fn assert_played(report: &serde_json::Value) {
    assert_eq!(report["supported"], true, "{report}");
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    assert_eq!(
        report["stalls"],
        0,
        "playback stalled:\n{}",
        browser::timeline(report)
    );
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(320), Some(240)),
        "{report}"
    );
    let times = browser::current_times(report);
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "currentTime went backwards: {report}"
    );
    let played = browser::played_seconds(&times);
    assert!(played > 4.0, "played only {played:.1} s: {report}");
}

/// hls.js plays through the edge over TLS with `chromium_args` added, and
/// the media came over `protocol` (`h1` or `h2`) only.
async fn plays_over_tcp(name: &str, protocol: &str, chromium_args: &[&str]) {
    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let keys = EdgeKeys::generate();
    let (server, _push, url) = live_edge(&keys, name).await;
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        server.spki_sha256.as_deref().unwrap()
    );
    let mut args = vec!["--chromium-arg", pin.as_str()];
    for arg in chromium_args {
        args.extend(["--chromium-arg", arg]);
    }

    let report = browser::play(&url, PLAY_SECONDS, &args);
    assert_played(&report);
    let other = if protocol == "h1" { "h2" } else { "h1" };
    let used = media_requests(&server, protocol).await;
    let unused = media_requests(&server, other).await;
    assert!(
        used > 0 && unused == 0,
        "media over {protocol}: {used}, over {other}: {unused}; log:\n{}",
        server.log()
    );
    assert!(edge_requests(&server, protocol, "multivariant").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_through_the_edge_over_http2() {
    plays_over_tcp("edgeh2", "h2", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_through_the_edge_over_http1() {
    plays_over_tcp("edgeh1", "h1", &["--disable-http2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_through_the_edge_over_http3() {
    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let keys = EdgeKeys::generate();
    let (server, _push, url) = live_edge(&keys, "edgequic").await;
    let https = server.https.unwrap();
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        server.spki_sha256.as_deref().unwrap()
    );
    let force = format!("--origin-to-force-quic-on=127.0.0.1:{}", https.port());
    let before = media_requests(&server, "h3").await;
    assert_eq!(before, 0);

    let report = browser::play(
        &url,
        PLAY_SECONDS,
        &["--chromium-arg", &pin, "--chromium-arg", &force],
    );
    assert_played(&report);
    // QUIC carried the media: the server counted parts or segments over h3.
    let after = media_requests(&server, "h3").await;
    assert!(
        after > before,
        "no part or segment request over HTTP/3; log:\n{}",
        server.log()
    );
    assert!(edge_requests(&server, "h3", "playlist").await > 0);
}
