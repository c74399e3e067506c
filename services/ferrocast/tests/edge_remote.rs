#![allow(clippy::unwrap_used)]

//! End-to-end: `ferrocast edge`, the edge as a process of its own, in
//! front of `ferrocast up` (the origin alone, no `[edge]`) over HTTP: viewer
//! JWTs and edge tokens over HTTPS (HTTP/1.1, HTTP/2) and HTTP/3 (aioquic),
//! blocking reload, a preload-hinted part passed on chunk by chunk through
//! the HTTP upstream, concurrent identical requests coalesced into one
//! origin request (the origin's own request counter), and, with the origin
//! gone, 502s and the circuit breaker opening (the edge's metrics); SIGTERM
//! stops it.

mod common;

use common::edge::{
    EdgeKeys, HS256_SECRET, RemoteEdge, assert_preload_hinted_part_streams, assert_signed, claims,
    edge_refuses, h3_available, h3_fetch, hs256_jwt, live_multivariant, metric_sum, next_msn,
    token_of, uris,
};
use common::{Server, get_text};

/// Concurrent identical blocking requests in the coalescing check.
const VIEWERS: usize = 8;

async fn origin_metrics(origin: &Server) -> String {
    reqwest::get(format!("http://{}/metrics", origin.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[test]
fn ferrocast_edge_without_an_origin_or_keys_says_what_is_missing() {
    let keys = EdgeKeys::generate();
    let error = edge_refuses(&keys.config_toml(), &["--http-listen", "127.0.0.1:0"]);
    assert!(
        error.contains("--origin") && error.contains("[edge.origin]"),
        "{error}"
    );
    let error = edge_refuses("", &["--origin", "http://127.0.0.1:9"]);
    assert!(error.contains("[edge.jwt]"), "{error}");
    let error = edge_refuses(
        &keys.config_toml(),
        &["--origin", "packager:8080", "--http-listen", "127.0.0.1:0"],
    );
    assert!(error.contains("base_url"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_edge_serves_an_origin_over_http() {
    let keys = EdgeKeys::generate();
    let origin = Server::start("");
    // The URL from the flag, the client's knobs from the file: no retries
    // and a breaker that opens after three failures and stays open.
    let config = format!(
        "{}\n[edge.origin]\nmax_retries = 0\nbreaker = {{ failure_threshold = 3, cool_down_ms = 600000 }}\n",
        keys.config_toml()
    );
    let mut edge = RemoteEdge::start(&config, &format!("http://{}", origin.http));
    let push = common::ffmpeg_push_with(
        origin.srt,
        "publish:live/remote",
        90,
        &["-pes_payload_size", "0"],
    );
    let log = || format!("origin:\n{}\nedge:\n{}", origin.log(), edge.log());
    let h1 = keys.client(false);
    let h2 = keys.client(true);
    let base = edge.base();
    let stream_base = format!("{base}/live/remote");
    let jwt = hs256_jwt(&claims(&["remote"]), HS256_SECRET);

    // The multivariant playlist with a JWT: a token on every URI, h1 and h2.
    let text = live_multivariant(&h1, &base, "remote", &jwt, log).await;
    assert!(text.starts_with("#EXTM3U"), "{text}");
    assert_signed(&text);
    let response = h2
        .get(format!("{stream_base}/index.m3u8"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_signed(&response.text().await.unwrap());
    let (status, _) = get_text(&h1, &format!("{stream_base}/index.m3u8")).await;
    assert_eq!(status, 401, "no JWT");
    let media_uri = uris(&text)
        .into_iter()
        .find(|u| u.contains(".m3u8"))
        .unwrap();
    let session = token_of(&media_uri).unwrap().to_owned();

    // A blocking media playlist request, held at the origin until the
    // next segment is complete.
    let (status, playlist) = get_text(&h2, &format!("{stream_base}/{media_uri}")).await;
    assert_eq!(status, 200, "{playlist}");
    let msn = next_msn(&playlist);
    let (status, playlist) = get_text(
        &h2,
        &format!("{stream_base}/stream.m3u8?_HLS_msn={msn}&token={session}"),
    )
    .await;
    assert_eq!(status, 200, "{playlist}");
    assert_signed(&playlist);
    assert!(next_msn(&playlist) > msn, "returned too early:\n{playlist}");
    // A segment and the init segment through the HTTP upstream.
    for prefix in ["seg", "init"] {
        let uri = uris(&playlist)
            .into_iter()
            .find(|u| u.starts_with(prefix))
            .unwrap();
        let response = h1.get(format!("{stream_base}/{uri}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(response.bytes().await.unwrap().len() > 8, "{uri}");
    }

    // The preload-hinted part starts reaching the viewer before the origin
    // says it is complete.
    let origin_base = format!("http://{}/live/remote", origin.http);
    for client in [&h1, &h2] {
        assert_preload_hinted_part_streams(client, &stream_base, &media_uri, Some(&origin_base))
            .await;
    }

    // Concurrent identical blocking requests for a segment a little ahead
    // cost the origin one request (its own counter says so).
    let (_, playlist) = get_text(&h2, &format!("{stream_base}/{media_uri}")).await;
    let ahead = next_msn(&playlist) + 1;
    let url = format!("{stream_base}/stream.m3u8?_HLS_msn={ahead}&token={session}");
    let origin_playlists = |text: &str| {
        metric_sum(
            text,
            "ferrocast_http_requests_total",
            &["kind=\"playlist\""],
        )
    };
    let coalesced = |text: &str| {
        metric_sum(
            text,
            "ferrocast_edge_coalesce_requests_total",
            &["outcome=\"coalesced\""],
        )
    };
    let origin_before = origin_playlists(&origin_metrics(&origin).await);
    let coalesced_before = coalesced(&edge.metrics_text().await);
    let answers = futures::future::join_all((0..VIEWERS).map(|_| get_text(&h2, &url))).await;
    for (status, playlist) in &answers {
        assert_eq!(*status, 200, "{playlist}");
        assert!(next_msn(playlist) > ahead, "{playlist}");
    }
    assert_eq!(
        origin_playlists(&origin_metrics(&origin).await) - origin_before,
        1,
        "{VIEWERS} identical blocking requests, one origin request"
    );
    assert_eq!(
        coalesced(&edge.metrics_text().await) - coalesced_before,
        VIEWERS as u64 - 1
    );

    // HTTP/3 with an independent client: a blocking playlist request.
    if h3_available() {
        let (_, playlist) = get_text(&h1, &format!("{stream_base}/{media_uri}")).await;
        let msn = next_msn(&playlist);
        let report = h3_fetch(
            &keys.cert_path,
            &[format!(
                "{stream_base}/stream.m3u8?_HLS_msn={msn}&token={session}"
            )],
        );
        assert_eq!(report[0]["status"], 200, "{report:?}");
        let text = report[0]["text"].as_str().unwrap();
        assert_signed(text);
        assert!(next_msn(text) > msn, "{text}");
    }

    let metrics = edge.metrics_text().await;
    let origin_label = format!("origin=\"{}\"", origin.http);
    for series in [
        r#"ferrocast_edge_requests_total{kind="multivariant",protocol="h1",status="200"}"#,
        r#"ferrocast_edge_requests_total{kind="playlist",protocol="h2",status="200"}"#,
        r#"ferrocast_edge_requests_total{kind="part",protocol="h2",status="200"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    assert_eq!(
        metric_sum(
            &metrics,
            "ferrocast_edge_origin_breaker_state",
            &[&origin_label, "state=\"closed\""]
        ),
        1,
        "{metrics}"
    );

    // The origin goes away: the edge answers 502 with a short reason, and
    // after three failed connections its breaker opens and it stops trying.
    drop(push);
    drop(origin);
    let playlist_url = format!("{stream_base}/{media_uri}");
    let mut reasons = Vec::new();
    while reasons.last().map(String::as_str) != Some("upstream unavailable") {
        assert!(reasons.len() < 10, "the breaker never opened: {reasons:?}");
        let (status, body) = get_text(&h1, &playlist_url).await;
        assert_eq!(status, 502, "{body}");
        reasons.push(body.trim().to_owned());
    }
    assert_eq!(reasons[0], "upstream unreachable", "{reasons:?}");
    let metrics = edge.metrics_text().await;
    for (name, labels) in [
        (
            "ferrocast_edge_origin_breaker_state",
            vec![origin_label.as_str(), "state=\"open\""],
        ),
        ("ferrocast_edge_origin_breaker_opened_total", vec![]),
        (
            "ferrocast_edge_upstream_errors_total",
            vec!["error=\"circuit_open\""],
        ),
    ] {
        assert!(
            metric_sum(&metrics, name, &labels) >= 1,
            "{name} {labels:?}:\n{metrics}"
        );
    }
    assert_eq!(
        metric_sum(&metrics, "ferrocast_edge_origin_failures_total", &[]),
        3,
        "{metrics}"
    );

    // SIGTERM stops it cleanly.
    let status = edge.terminate();
    assert!(status.success(), "{status:?}; log:\n{}", edge.log());
    assert!(edge.log().contains("shutting down"), "{}", edge.log());
}

/// SIGTERM drains: a viewer's blocking playlist request already held at
/// the origin is answered in full, new connections are refused and
/// `/readyz` answers 503 meanwhile, and the process exits cleanly once
/// nothing is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_held_requests_finish_and_refuses_new_ones() {
    let keys = EdgeKeys::generate();
    let origin = Server::start("");
    let mut edge = RemoteEdge::start(&keys.config_toml(), &format!("http://{}", origin.http));
    let _push = common::ffmpeg_push_with(
        origin.srt,
        "publish:live/drain",
        90,
        &["-pes_payload_size", "0"],
    );
    let log = || format!("origin:\n{}\nedge:\n{}", origin.log(), edge.log());
    let client = keys.client(true);
    let base = edge.base();
    let jwt = hs256_jwt(&claims(&["drain"]), HS256_SECRET);
    let text = live_multivariant(&client, &base, "drain", &jwt, log).await;
    let media_uri = uris(&text)
        .into_iter()
        .find(|u| u.contains(".m3u8"))
        .unwrap();
    let session = token_of(&media_uri).unwrap().to_owned();
    let (status, playlist) = get_text(&client, &format!("{base}/live/drain/{media_uri}")).await;
    assert_eq!(status, 200, "{playlist}");
    // Two segments ahead: held for a few seconds.
    let wanted = next_msn(&playlist) + 1;
    let held = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/live/drain/stream.m3u8?_HLS_msn={wanted}&token={session}");
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    // The request is in flight once the origin holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric_sum(
        &origin_metrics(&origin).await,
        "ferrocast_http_held_requests",
        &[],
    ) == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never held; {}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!held.is_finished(), "answered before the segment existed");
    let readyz = format!("http://{}/readyz", edge.metrics);
    let plain = reqwest::Client::new();
    assert_eq!(get_text(&plain, &readyz).await, (200, "ready\n".into()));

    edge.send_sigterm();
    // New connections are refused while the held request drains.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(edge.https).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM; {}",
            log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Meanwhile the operator listener says it is out of rotation.
    assert_eq!(
        get_text(&plain, &readyz).await,
        (503, "not ready: draining\n".into())
    );
    let (status, playlist) = tokio::time::timeout(std::time::Duration::from_secs(20), held)
        .await
        .expect("the held request is answered")
        .unwrap();
    assert_eq!(status, 200, "{playlist}");
    assert!(next_msn(&playlist) > wanted, "{playlist}");
    assert_signed(&playlist);
    let status = edge.wait_exit();
    assert!(status.success(), "{status:?}; edge:\n{}", edge.log());
    assert!(
        edge.log().contains("every request finished"),
        "{}",
        edge.log()
    );
}
