#![allow(clippy::unwrap_used)]

//! The edge server over real sockets with a self-signed certificate, in
//! front of an axum router called in process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ferrocast_edge::server::{EdgeMetrics, EdgeServer};
use ferrocast_edge::{EdgeConfig, EdgeTokens, InProcessUpstream};

fn config() -> EdgeConfig {
    toml::from_str(
        r#"
        https_listen = "127.0.0.1:0"
        plain_http_listen = "127.0.0.1:0"
        [jwt]
        audience = "a"
        [[jwt.keys]]
        kid = "k"
        algorithm = "HS256"
        secret = "server-test-hs256-secret-server-test"
        [token]
        keys = [{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }]
        "#,
    )
    .unwrap()
}

/// An HTTPS client accepting the edge's test certificate, speaking HTTP/2
/// with prior knowledge or HTTP/1.1 only.
fn https_client(http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10));
    if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    }
    .build()
    .unwrap()
}

fn origin() -> Router {
    Router::new().route(
        "/live/{name}/{file}",
        get(|| async { ([("content-type", "video/mp4")], "SEGMENT") }),
    )
}

#[tokio::test]
async fn self_signed_https_h1_h2_and_plain_http() {
    let config = config();
    let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
    let server = EdgeServer::start(&config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap();
    let spki = server.spki_sha256().unwrap();
    assert_eq!(spki.len(), 44, "base64 of 32 bytes: {spki}");
    let https = server.https_addr();
    assert_eq!(
        server.h3_addr().unwrap().port(),
        https.port(),
        "UDP on the same port"
    );
    // Something is bound on UDP at that port.
    assert!(std::net::UdpSocket::bind(server.h3_addr().unwrap()).is_err());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = EdgeTokens::new(&config.token)
        .unwrap()
        .sign("cam", now + 60, None);
    for http2 in [false, true] {
        let client = https_client(http2);
        let response = client
            .get(format!("https://{https}/live/cam/seg3.m4s?token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["alt-svc"],
            format!("h3=\":{}\"; ma=86400", https.port()).as_str()
        );
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(&response.bytes().await.unwrap()[..], b"SEGMENT");
        let response = client
            .get(format!("https://{https}/live/cam/seg3.m4s"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }

    let plain = server.plain_http_addr().unwrap();
    let response = reqwest::get(format!("http://{plain}/live/cam/seg3.m4s?token={token}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("alt-svc"));

    let metrics = server.metrics().render();
    assert!(
        metrics.contains(
            r#"ferrocast_edge_requests_total{kind="segment",protocol="h2",status="401"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused() {
    let mut config = config();
    config.tls_cert = Some("/nonexistent/cert.pem".into());
    let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
    let error = EdgeServer::start(&config, upstream.clone(), EdgeMetrics::new().unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("tls_cert and tls_key"),
        "{error}"
    );
    config.tls_key = Some("/nonexistent/key.pem".into());
    let error = EdgeServer::start(&config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/cert.pem"),
        "{error}"
    );
}

/// A certificate for `localhost` written as PEM files into `dir`, the DER
/// of the certificate, and the expected base64 SHA-256 of its SPKI,
/// computed from the key pair (not from the certificate).
fn pem_identity(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>, String) {
    use base64::Engine;
    use rcgen::PublicKeyData;
    use sha2::Digest;
    let leaf = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    // A second certificate after the leaf, as in a chain file: not hashed.
    let other = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, format!("{}{}", leaf.cert.pem(), other.cert.pem())).unwrap();
    std::fs::write(&key, leaf.signing_key.serialize_pem()).unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(
        leaf.signing_key.subject_public_key_info(),
    ));
    (cert, key, leaf.cert.der().to_vec(), expected)
}

/// What `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256
/// | base64` says about the first certificate of `cert`.
fn openssl_spki_sha256(cert: &std::path::Path) -> String {
    use std::process::{Command, Stdio};
    let pubkey = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(cert)
        .output()
        .expect("openssl is installed");
    assert!(pubkey.status.success());
    let mut der = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "der"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut der.stdin.take().unwrap(), &pubkey.stdout).unwrap();
    let der = der.wait_with_output().unwrap();
    assert!(der.status.success());
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&der.stdout))
}

#[tokio::test]
async fn a_configured_pem_certificate_has_its_spki_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _, expected) = pem_identity(dir.path());
    assert_eq!(openssl_spki_sha256(&cert), expected, "openssl agrees");
    let mut config = config();
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
    let server = EdgeServer::start(&config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap();
    assert_eq!(server.spki_sha256(), Some(expected.as_str()));

    // Garbage where the certificate should be: a clear error naming the file.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    config.tls_cert = Some(garbage.clone());
    let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
    let error = EdgeServer::start(&config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains(&garbage.display().to_string()),
        "{error}"
    );
}

mod limits {
    use std::net::SocketAddr;

    use ferrocast_edge::server::{ClientAddr, Handler, Protocol};
    use ferrocast_edge::{EdgeTokens, SessionId};
    use http::Request;

    use super::*;

    const NOW: u64 = 1_750_000_000;

    fn handler(limits: &str) -> (Handler, EdgeMetrics, EdgeTokens) {
        let mut config = config();
        config.limits = toml::from_str(limits).unwrap();
        let metrics = EdgeMetrics::new().unwrap();
        let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
        let handler =
            Handler::with_clock(&config, upstream, metrics.clone(), Arc::new(|| NOW)).unwrap();
        (handler, metrics, EdgeTokens::new(&config.token).unwrap())
    }

    async fn get(handler: &Handler, from: &str, uri: &str) -> http::Response<bytes::Bytes> {
        let mut request = Request::get(uri).body(()).unwrap();
        let addr: SocketAddr = from.parse().unwrap();
        request.extensions_mut().insert(ClientAddr(addr));
        handler.handle(Protocol::Http2, request).await
    }

    fn refused_by(metrics: &EdgeMetrics, by: &str) -> u64 {
        metrics.rate_limited.with_label_values(&[by]).get()
    }

    // Time is paused: the buckets refill only when the test advances it.
    #[tokio::test(start_paused = true)]
    async fn per_token_buckets_follow_the_session_and_never_a_forger() {
        let (handler, metrics, tokens) =
            handler("per_ip = { enabled = false }\nper_token = { rate_per_sec = 1, burst = 2 }");
        let viewer = "192.0.2.1:5000";
        let session = SessionId::new("viewer-session-1").unwrap();
        let a = tokens.sign("cam", NOW + 60, Some(&session));
        let b = tokens.sign("cam", NOW + 120, Some(&session));
        assert_ne!(a, b);
        // A forged token naming the same session (its tag broken) draws
        // from a bucket of its own, not the session's.
        let mut forged = a.clone().into_bytes();
        // A character inside the tag (not the last, whose spare bits
        // would make the token malformed rather than forged).
        let i = forged.len() - 5;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for expected in [401, 401, 429] {
            let response = get(
                &handler,
                viewer,
                &format!("/live/cam/seg1.m4s?token={forged}"),
            )
            .await;
            assert_eq!(response.status(), expected);
        }
        // The session's two tokens share one bucket of two.
        for (token, expected) in [(&a, 200), (&b, 200), (&a, 429)] {
            let response = get(
                &handler,
                viewer,
                &format!("/live/cam/seg1.m4s?token={token}"),
            )
            .await;
            assert_eq!(response.status(), expected, "{token}");
        }
        let response = get(&handler, viewer, &format!("/live/cam/seg1.m4s?token={b}")).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            std::str::from_utf8(response.body()).unwrap(),
            "too many requests for this session\n"
        );
        assert!(!std::str::from_utf8(response.body()).unwrap().contains(&*b));
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        // Another session is not affected.
        let other = tokens.sign("cam", NOW + 60, Some(&SessionId::new("viewer-2").unwrap()));
        let response = get(
            &handler,
            viewer,
            &format!("/live/cam/seg1.m4s?token={other}"),
        )
        .await;
        assert_eq!(response.status(), 200);
        // A viewer JWT on a Multivariant Playlist request counts against
        // itself (here one that does not verify: 401 until its bucket is
        // empty).
        for expected in [401, 401, 429] {
            let response = get(&handler, viewer, "/live/cam/index.m3u8?token=not.a.jwt").await;
            assert_eq!(response.status(), expected);
        }
        assert_eq!(refused_by(&metrics, "token"), 4);
        assert_eq!(refused_by(&metrics, "ip"), 0);
        // One second later the session has one request again.
        tokio::time::advance(Duration::from_secs(1)).await;
        let response = get(&handler, viewer, &format!("/live/cam/seg1.m4s?token={a}")).await;
        assert_eq!(response.status(), 200);
        let response = get(&handler, viewer, &format!("/live/cam/seg1.m4s?token={a}")).await;
        assert_eq!(response.status(), 429);
    }

    #[tokio::test(start_paused = true)]
    async fn per_ip_buckets_group_ipv6_by_prefix() {
        let (handler, metrics, tokens) = handler(
            "per_token = { enabled = false }\nper_ip = { rate_per_sec = 1, burst = 1 }\nipv6_prefix_len = 64",
        );
        let token = tokens.sign("cam", NOW + 60, None);
        let uri = format!("/live/cam/seg1.m4s?token={token}");
        assert_eq!(get(&handler, "[2001:db8::1]:1", &uri).await.status(), 200);
        // The same /64: the same bucket.
        let response = get(&handler, "[2001:db8::2]:2", &uri).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            std::str::from_utf8(response.body()).unwrap(),
            "too many requests from this address\n"
        );
        // Another /64, and an IPv4 address, have their own.
        assert_eq!(
            get(&handler, "[2001:db8:0:1::1]:1", &uri).await.status(),
            200
        );
        assert_eq!(get(&handler, "192.0.2.1:1", &uri).await.status(), 200);
        // Health checks and CORS preflights are never limited.
        assert_eq!(
            get(&handler, "[2001:db8::3]:3", "/healthz").await.status(),
            200
        );
        let mut preflight = Request::options(&uri).body(()).unwrap();
        preflight
            .extensions_mut()
            .insert(ClientAddr("[2001:db8::3]:3".parse().unwrap()));
        assert_eq!(
            handler.handle(Protocol::Http1, preflight).await.status(),
            204
        );
        // Without a client address (a caller that is not a listener) there
        // is no per-IP limit.
        let request = Request::get(&uri).body(()).unwrap();
        assert_eq!(handler.handle(Protocol::Http1, request).await.status(), 200);
        assert_eq!(refused_by(&metrics, "ip"), 1);
        assert!(
            metrics
                .render()
                .contains(r#"ferrocast_edge_rate_limited_total{by="ip"} 1"#)
        );
    }

    #[test]
    fn bad_limits_are_refused_at_start() {
        let mut config = config();
        config.limits = toml::from_str("per_ip = { burst = 10 }").unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("edge.limits.per_ip"), "{error}");
        assert!(
            toml::from_str::<ferrocast_edge::LimitsConfig>(
                "per_ip = { rate_per_sec = 1, burts = 1 }"
            )
            .is_err()
        );
    }
}

/// GET each of `paths` over one HTTP/3 connection (h3 over quinn,
/// trusting `cert_der` only): the status and `retry-after` of each.
async fn h3_get(
    addr: std::net::SocketAddr,
    cert_der: &[u8],
    paths: &[String],
) -> Vec<(u16, Option<String>)> {
    h3_heads(addr, cert_der, paths)
        .await
        .into_iter()
        .map(|(status, headers)| {
            let retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after)
        })
        .collect()
}

/// GET each of `paths` over one HTTP/3 connection, as [`h3_get`]: the
/// status and headers of each.
async fn h3_heads(
    addr: std::net::SocketAddr,
    cert_der: &[u8],
    paths: &[String],
) -> Vec<(u16, http::HeaderMap)> {
    let endpoint = common::h3_endpoint(cert_der);
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(connection))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut answers = Vec::new();
    for path in paths {
        let request = http::Request::get(format!("https://localhost{path}"))
            .body(())
            .unwrap();
        let mut stream = send.send_request(request).await.unwrap();
        stream.finish().await.unwrap();
        let response = stream.recv_response().await.unwrap();
        while stream.recv_data().await.unwrap().is_some() {}
        answers.push((response.status().as_u16(), response.headers().clone()));
    }
    driver.abort();
    answers
}

/// Every listener tells the handler who the client is: with a per-IP
/// limit of one request a second, the second of two back-to-back requests
/// is refused on HTTP/1.1, HTTP/2 and HTTP/3 alike (all from 127.0.0.1,
/// one bucket).
#[tokio::test]
async fn the_per_ip_limit_applies_on_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_der, _) = pem_identity(dir.path());
    let mut config = config();
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    config.limits =
        toml::from_str("per_token = { enabled = false }\nper_ip = { rate_per_sec = 1, burst = 1 }")
            .unwrap();
    let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
    let server = EdgeServer::start(&config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap();
    let https = server.https_addr();
    let path = "/live/cam/seg3.m4s".to_owned();
    for http2 in [false, true] {
        let client = https_client(http2);
        let url = format!("https://{https}{path}");
        client.get(&url).send().await.unwrap();
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 429, "http2: {http2}");
        assert_eq!(response.headers()["retry-after"], "1");
    }
    let answers = h3_get(server.h3_addr().unwrap(), &cert_der, &[path.clone(), path]).await;
    assert_eq!(answers[1], (429, Some("1".to_owned())));
    // The three second requests at least (a first one may have found the
    // shared bucket empty too).
    let refused = server
        .metrics()
        .rate_limited
        .with_label_values(&["ip"])
        .get();
    assert!(refused >= 3, "{refused}");
}

/// An origin that labels everything as something a browser would run, or
/// not at all.
fn hostile_origin() -> Router {
    use axum::http::{Response, StatusCode};
    Router::new().route(
        "/live/{*rest}",
        get(
            |axum::extract::Path(rest): axum::extract::Path<String>| async move {
                let file = rest.rsplit('/').next().unwrap_or("");
                let (status, content_type, body) = match file {
                    "stream.m3u8" => (
                        StatusCode::OK,
                        Some("text/html"),
                        "#EXTM3U\n#EXTINF:1.0,\nseg3.m4s\n",
                    ),
                    "seg3.m4s" => (StatusCode::OK, Some("text/html"), "<script>x()</script>"),
                    "part3.0.m4s" => (StatusCode::OK, Some("image/svg+xml"), "<svg/>"),
                    "part3.1.m4s" => (StatusCode::OK, None, "<html>"),
                    "init0.mp4" => (StatusCode::OK, Some("application/javascript"), "x()"),
                    _ => (StatusCode::NOT_FOUND, Some("text/html"), "<b>gone</b>"),
                };
                let mut response = Response::builder().status(status);
                if let Some(content_type) = content_type {
                    response = response.header("content-type", content_type);
                }
                response.body(axum::body::Body::from(body)).unwrap()
            },
        ),
    )
}

/// Playlists and media carry the `Content-Type` the edge chooses from the
/// file name, never the origin's, and `X-Content-Type-Options: nosniff`,
/// over HTTP/1.1, HTTP/2 and HTTP/3, for GET and HEAD; refusals carry
/// `nosniff` too.
#[tokio::test]
async fn media_types_are_the_edges_and_never_sniffed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_der, _) = pem_identity(dir.path());
    let mut config = config();
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    let upstream = Arc::new(InProcessUpstream::new(
        hostile_origin(),
        Duration::from_secs(5),
    ));
    let server = EdgeServer::start(&config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = EdgeTokens::new(&config.token)
        .unwrap()
        .sign("cam", now + 60, None);
    let expected = [
        (
            format!("/live/cam/stream.m3u8?token={token}"),
            200,
            "application/vnd.apple.mpegurl",
        ),
        (
            format!("/live/cam/720p/stream.m3u8?token={token}"),
            200,
            "application/vnd.apple.mpegurl",
        ),
        (
            format!("/live/cam/seg3.m4s?token={token}"),
            200,
            "video/iso.segment",
        ),
        (
            format!("/live/cam/part3.0.m4s?token={token}"),
            200,
            "video/iso.segment",
        ),
        (
            format!("/live/cam/part3.1.m4s?token={token}"),
            200,
            "video/iso.segment",
        ),
        (
            format!("/live/cam/init0.mp4?token={token}"),
            200,
            "video/mp4",
        ),
        // Refusals: the origin's, and the edge's own.
        (
            format!("/live/cam/seg9.m4s?token={token}"),
            404,
            "text/plain; charset=utf-8",
        ),
        (
            "/live/cam/seg3.m4s".to_owned(),
            401,
            "text/plain; charset=utf-8",
        ),
    ];
    let https = server.https_addr();
    for http2 in [false, true] {
        let client = https_client(http2);
        for (path, status, content_type) in &expected {
            for head in [false, true] {
                let url = format!("https://{https}{path}");
                let request = if head {
                    client.head(&url)
                } else {
                    client.get(&url)
                };
                let response = request.send().await.unwrap();
                let context = format!("{path} http2={http2} head={head}");
                assert_eq!(response.status(), *status, "{context}");
                assert_eq!(
                    response.headers()["content-type"],
                    *content_type,
                    "{context}"
                );
                assert_eq!(
                    response.headers()["x-content-type-options"],
                    "nosniff",
                    "{context}"
                );
            }
        }
    }
    let paths: Vec<String> = expected.iter().map(|(path, _, _)| path.clone()).collect();
    let answers = h3_heads(server.h3_addr().unwrap(), &cert_der, &paths).await;
    for ((path, status, content_type), (got_status, headers)) in expected.iter().zip(&answers) {
        assert_eq!(got_status, status, "{path} h3");
        assert_eq!(headers["content-type"], *content_type, "{path} h3");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path} h3");
    }
}
