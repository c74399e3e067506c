#![allow(clippy::unwrap_used)]

//! The edge server over real sockets with a self-signed certificate, in
//! front of an axum router called in process.

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
        let builder = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10));
        let client = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        }
        .build()
        .unwrap();
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
