#![allow(clippy::unwrap_used)]

//! End-to-end: the edge in front of the origin, over HTTPS (HTTP/1.1 and
//! HTTP/2, reqwest pinned to a certificate made here) and HTTP/3 (aioquic,
//! an independent client): viewer JWTs on the multivariant playlist, edge
//! tokens on every URI and every later request, blocking reload, parts and
//! segments through the edge.

mod common;

use common::edge::{
    EdgeKeys, HS256_SECRET, assert_signed, claims, h3_available, h3_fetch, h3_fetch_with,
    hs256_jwt, next_msn, now, token_of, uris,
};
use common::{Server, ffmpeg_push};

fn base(server: &Server) -> String {
    format!("https://{}", server.https.expect("edge is on"))
}

/// The multivariant playlist through the edge, once the stream is live.
async fn multivariant(client: &reqwest::Client, server: &Server, name: &str, jwt: &str) -> String {
    common::edge::live_multivariant(client, &base(server), name, jwt, || server.log()).await
}

fn absolute(server: &Server, name: &str, uri: &str) -> String {
    format!("{}/live/{name}/{uri}", base(server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_h1_and_h2_sign_every_uri_and_check_every_request() {
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml());
    let https = server.https.unwrap();
    let _push = ffmpeg_push(server.srt, "publish:live/cam", 40);
    let h1 = keys.client(false);
    let h2 = keys.client(true);

    // A valid HS256 JWT in the query, on HTTP/1.1.
    let jwt = hs256_jwt(&claims(&["cam"]), HS256_SECRET);
    let text = multivariant(&h1, &server, "cam", &jwt).await;
    assert!(text.starts_with("#EXTM3U"), "{text}");
    assert_signed(&text);
    let response = h1
        .get(format!("{}/live/cam/index.m3u8?token={jwt}", base(&server)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(
        headers["alt-svc"],
        format!("h3=\":{}\"; ma=86400", https.port()).as_str()
    );
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    let text = response.text().await.unwrap();
    assert_signed(&text);

    // An ES256 JWT in the header, on HTTP/2.
    let es_jwt = keys.es256_jwt(&claims(&["ca*"]));
    let response = h2
        .get(format!("{}/live/cam/index.m3u8", base(&server)))
        .bearer_auth(&es_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("alt-svc"));
    let multivariant_h2 = response.text().await.unwrap();
    assert_signed(&multivariant_h2);

    // Refusals: 401 (403 for a stream outside the scope), never echoing the token.
    let mut expired = claims(&["cam"]);
    expired["exp"] = (now() - 3600).into();
    let mut wrong_audience = claims(&["cam"]);
    wrong_audience["aud"] = "someone-else".into();
    let refusals = [
        ("missing", String::new(), 401),
        ("expired", hs256_jwt(&expired, HS256_SECRET), 401),
        (
            "forged",
            hs256_jwt(&claims(&["cam"]), "not-the-secret-not-the-secret-not"),
            401,
        ),
        (
            "wrong audience",
            hs256_jwt(&wrong_audience, HS256_SECRET),
            401,
        ),
        (
            "other stream",
            hs256_jwt(&claims(&["news"]), HS256_SECRET),
            403,
        ),
        ("garbage", "not.a.jwt".to_owned(), 401),
    ];
    for client in [&h1, &h2] {
        for (what, bad, status) in &refusals {
            let mut request = client.get(format!("{}/live/cam/index.m3u8", base(&server)));
            if !bad.is_empty() {
                request = request.bearer_auth(bad);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), *status, "{what}");
            let body = response.text().await.unwrap();
            assert!(!body.is_empty() && body.len() < 100, "{what}: {body}");
            if !bad.is_empty() {
                assert!(
                    !body.contains(bad.as_str()),
                    "{what}: body echoes the token"
                );
            }
        }
    }

    // The media playlist from the signed URI, then a blocking reload for the
    // next segment: rewritten with a fresh media token.
    let media_uri = uris(&text)
        .into_iter()
        .find(|u| u.contains(".m3u8"))
        .unwrap();
    let session = token_of(&media_uri).unwrap().to_owned();
    let (status, playlist) = get(&h2, &absolute(&server, "cam", &media_uri)).await;
    assert_eq!(status, 200, "{playlist}");
    assert_signed(&playlist);
    let msn = next_msn(&playlist);
    let blocking = absolute(
        &server,
        "cam",
        &format!("stream.m3u8?_HLS_msn={msn}&token={session}"),
    );
    let (status, playlist) = get(&h2, &blocking).await;
    assert_eq!(status, 200, "{playlist}");
    assert_signed(&playlist);
    assert!(
        next_msn(&playlist) > msn,
        "blocking reload returned too early:\n{playlist}"
    );
    let media_token = token_of(&uris(&playlist)[0]).unwrap().to_owned();
    assert_ne!(media_token, session, "media URIs carry a media token");

    // A part, a segment and the init segment from the signed URIs.
    let part = uris(&playlist)
        .into_iter()
        .find(|u| u.starts_with("part"))
        .unwrap();
    let segment = uris(&playlist)
        .into_iter()
        .find(|u| u.starts_with("seg"))
        .unwrap();
    let init = uris(&playlist)
        .into_iter()
        .find(|u| u.starts_with("init"))
        .unwrap();
    for (uri, client) in [(&part, &h1), (&segment, &h2), (&init, &h1)] {
        let response = client
            .get(absolute(&server, "cam", uri))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        let cache = response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_owned();
        if !uri.starts_with("part") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{uri}");
        }
        let body = response.bytes().await.unwrap();
        assert!(body.len() > 8, "{uri}");
    }

    // Without a token, with a broken one, or with stream A's token on
    // stream B: 401 before anything reaches the origin.
    let bare = part.split_once('?').unwrap().0;
    // One character of the tag changed (not the last: it carries unused
    // padding bits, and it may already be the replacement).
    let mut forged = media_token.clone().into_bytes();
    let at = forged.len() - 4;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{bare}?token={}", String::from_utf8(forged).unwrap());
    for url in [
        absolute(&server, "cam", bare),
        absolute(&server, "cam", &tampered),
        absolute(&server, "other", &part),
        absolute(&server, "other", &media_uri),
        absolute(&server, "other", &format!("index.m3u8?token={session}")),
    ] {
        let (status, body) = get(&h1, &url).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(!body.contains(&media_token) && !body.contains(&session));
    }

    // Paths outside the origin's grammar: 404, whatever the token.
    for path in [
        format!("/live/cam/..%2Fcam/stream.m3u8?token={session}"),
        format!("/live/cam%2Fx/stream.m3u8?token={session}"),
        format!("/live/cam/%2e%2e/stream.m3u8?token={session}"),
        format!("/live/cam/stream.txt?token={session}"),
        format!("/live/cam/720p/extra/stream.m3u8?token={session}"),
        "/etc/passwd".to_owned(),
    ] {
        let (status, _) = get(&h1, &format!("{}{path}", base(&server))).await;
        assert_eq!(status, 404, "{path}");
    }

    // CORS preflight for players that send Authorization.
    let response = h1
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/live/cam/index.m3u8", base(&server)),
        )
        .header("origin", "https://player.example")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );

    // The edge's metrics are on the process's /metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", server.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        r#"ferrocast_edge_requests_total{kind="multivariant",protocol="h1",status="200"}"#,
        r#"ferrocast_edge_requests_total{kind="multivariant",protocol="h2",status="403"}"#,
        r#"ferrocast_edge_requests_total{kind="part",protocol="h1",status="200"}"#,
        r#"ferrocast_edge_requests_total{kind="playlist",protocol="h2",status="200"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_with_an_independent_client() {
    if !h3_available() {
        return;
    }
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml());
    let _push = ffmpeg_push(server.srt, "publish:live/h3cam", 40);
    let h1 = keys.client(false);
    let jwt = hs256_jwt(&claims(&["h3cam"]), HS256_SECRET);
    // Live yet? (HTTP/1.1; the rest goes over HTTP/3.)
    multivariant(&h1, &server, "h3cam", &jwt).await;

    let cafile = keys.cert_path.clone();
    let index = format!("{}/live/h3cam/index.m3u8?token={jwt}", base(&server));
    let forbidden = format!(
        "{}/live/h3cam/index.m3u8?token={}",
        base(&server),
        hs256_jwt(&claims(&["news"]), HS256_SECRET)
    );
    let report = h3_fetch(&cafile, &[index, forbidden]);
    assert_eq!(report[0]["status"], 200, "{report:?}");
    let text = report[0]["text"].as_str().unwrap().to_owned();
    assert_signed(&text);
    assert_eq!(report[1]["status"], 403, "{report:?}");

    let media_uri = uris(&text)
        .into_iter()
        .find(|u| u.contains(".m3u8"))
        .unwrap();
    let session = token_of(&media_uri).unwrap().to_owned();
    let report = h3_fetch(&cafile, &[absolute(&server, "h3cam", &media_uri)]);
    let playlist = report[0]["text"].as_str().unwrap().to_owned();
    let msn = next_msn(&playlist);
    let blocking = absolute(
        &server,
        "h3cam",
        &format!("stream.m3u8?_HLS_msn={msn}&token={session}"),
    );
    let report = h3_fetch(&cafile, &[blocking]);
    assert_eq!(report[0]["status"], 200, "{report:?}");
    let playlist = report[0]["text"].as_str().unwrap().to_owned();
    assert_signed(&playlist);
    assert!(next_msn(&playlist) > msn, "{playlist}");

    let part = uris(&playlist)
        .into_iter()
        .find(|u| u.starts_with("part"))
        .unwrap();
    let part_url = absolute(&server, "h3cam", &part);
    let unsigned = absolute(&server, "h3cam", part.split_once('?').unwrap().0);
    let report = h3_fetch(&cafile, &[part_url.clone(), unsigned]);
    assert_eq!(report[0]["status"], 200, "{report:?}");
    assert!(report[0]["length"].as_u64().unwrap() > 8);
    assert_eq!(report[1]["status"], 401, "{report:?}");
    // The same bytes as over HTTP/1.1.
    let over_h1 = h1
        .get(&part_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let digest = sha256_hex(&over_h1);
    assert_eq!(report[0]["sha256"].as_str().unwrap(), digest);

    let metrics = reqwest::get(format!("http://{}/metrics", server.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"ferrocast_edge_requests_total{kind="part",protocol="h3",status="200"}"#),
        "{metrics}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A part still being written is passed on chunk by chunk: over HTTP/1.1
/// and HTTP/2, the first bytes of the preload-hinted part reach the viewer
/// before a blocking playlist request for that very part (answered when
/// the origin has completed it) does. Events in order, no timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preload_hinted_part_streams_before_it_is_complete() {
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml());
    // One PES per audio frame: ingest interleaves by decode time, so with
    // ffmpeg's default 0.37 s audio PES video leaves ingest in bursts and
    // a part can start and complete in one burst, leaving nothing to
    // stream early.
    let _push = common::ffmpeg_push_with(
        server.srt,
        "publish:live/early",
        40,
        &["-pes_payload_size", "0"],
    );
    let jwt = hs256_jwt(&claims(&["early"]), HS256_SECRET);
    for http2 in [false, true] {
        let client = keys.client(http2);
        let text = multivariant(&client, &server, "early", &jwt).await;
        let media_uri = uris(&text)
            .into_iter()
            .find(|u| u.contains(".m3u8"))
            .unwrap();
        // The origin itself says when the part is complete.
        common::edge::assert_preload_hinted_part_streams(
            &client,
            &format!("{}/live/early", base(&server)),
            &media_uri,
            Some(&format!("http://{}/live/early", server.http)),
        )
        .await;
    }
}

/// The same over HTTP/3 (aioquic): the part's first DATA arrives before
/// the blocking playlist request for it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preload_hinted_part_streams_over_http3() {
    if !h3_available() {
        return;
    }
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml());
    // One PES per audio frame, as in the HTTP/1.1 and HTTP/2 test above.
    let _push = common::ffmpeg_push_with(
        server.srt,
        "publish:live/earlyq",
        40,
        &["-pes_payload_size", "0"],
    );
    let h1 = keys.client(false);
    let jwt = hs256_jwt(&claims(&["earlyq"]), HS256_SECRET);
    let text = multivariant(&h1, &server, "earlyq", &jwt).await;
    let media_uri = uris(&text)
        .into_iter()
        .find(|u| u.contains(".m3u8"))
        .unwrap();
    // fetch.py waits for the hinted part to complete, then asks for the
    // next hinted one and the blocking playlist for it at once (in the
    // client: starting a Python process takes longer than a part).
    // A hint for the part after a segment's last is never produced (404;
    // see common::edge::assert_preload_hinted_part_streams): try the next.
    let mut report = Vec::new();
    for _ in 0..4 {
        report = h3_fetch_with(
            &keys.cert_path,
            &[absolute(&server, "earlyq", &media_uri)],
            &["--follow-hint"],
        );
        if report[0]["status"] != 404 {
            break;
        }
    }
    let name = report[0]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .split_once('?')
        .unwrap()
        .0
        .to_owned();
    assert_eq!(report[0]["status"], 200, "{report:?}");
    assert_eq!(report[1]["status"], 200, "{report:?}");
    let text = report[1]["text"].as_str().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&name)),
        "{name} not complete in\n{text}"
    );
    let first_bytes = report[0]["first_data_event"].as_u64().unwrap();
    let complete = report[1]["end_event"].as_u64().unwrap();
    assert!(
        first_bytes < complete,
        "the part's first bytes came after it was complete: {report:?}"
    );
}
