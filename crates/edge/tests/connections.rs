#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The edge's connection limits over real sockets: TCP (HTTPS) and QUIC
//! (HTTP/3) connections past the per-client cap are refused and counted, a
//! slowloris on plain HTTP is cut at the header-read timeout, and an HTTP/3
//! connection kept alive by PINGs but sending no request is closed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ferrocast_edge::server::{EdgeMetrics, EdgeServer};
use ferrocast_edge::{EdgeConfig, InProcessUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An edge config with a certificate of its own (PEM files in `dir`) and
/// `connections` as `[edge.connections]`; returns the certificate's DER.
fn config(dir: &std::path::Path, connections: &str) -> (EdgeConfig, Vec<u8>) {
    let leaf = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, leaf.cert.pem()).unwrap();
    std::fs::write(&key, leaf.signing_key.serialize_pem()).unwrap();
    let config = toml::from_str(&format!(
        r#"
        https_listen = "127.0.0.1:0"
        plain_http_listen = "127.0.0.1:0"
        tls_cert = "{}"
        tls_key = "{}"
        [jwt]
        audience = "a"
        [[jwt.keys]]
        kid = "k"
        algorithm = "HS256"
        secret = "server-test-hs256-secret-server-test"
        [token]
        keys = [{{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }}]
        [connections]
        {connections}
        "#,
        cert.display(),
        key.display()
    ))
    .unwrap();
    (config, leaf.cert.der().to_vec())
}

async fn start(config: &EdgeConfig) -> EdgeServer {
    let origin = Router::new().route("/live/{name}/{file}", get(|| async { "SEGMENT" }));
    let upstream = Arc::new(InProcessUpstream::new(origin, Duration::from_secs(5)));
    EdgeServer::start(config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap()
}

/// True if the server closes `stream` within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all).await.is_ok()
}

#[tokio::test]
async fn tcp_and_quic_connections_past_the_per_client_cap_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (config, cert_der) = config(dir.path(), "max_connections_per_client = 2");
    let server = start(&config).await;
    let https = server.https_addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(https).await.unwrap());
    }
    let mut third = TcpStream::connect(https).await.unwrap();
    assert!(closed_by_server(&mut third, Duration::from_secs(5)).await);
    for stream in &mut held {
        assert!(!closed_by_server(stream, Duration::from_millis(100)).await);
    }

    let endpoint = common::h3_endpoint(&cert_der);
    let h3 = server.h3_addr().unwrap();
    let first = endpoint.connect(h3, "localhost").unwrap().await.unwrap();
    let second = endpoint.connect(h3, "localhost").unwrap().await.unwrap();
    let third = endpoint.connect(h3, "localhost").unwrap().await;
    assert!(
        matches!(third, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "{third:?}"
    );
    let text = server.metrics().render();
    for listener in ["https", "h3"] {
        let line = format!(
            "ferrocast_edge_connections_refused_total{{listener=\"{listener}\",reason=\"client_full\"}} 1"
        );
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    drop((first, second, held));
}

#[tokio::test]
async fn a_slowloris_on_plain_http_is_cut_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config(dir.path(), "header_read_timeout_ms = 300");
    let server = start(&config).await;
    let mut slow = TcpStream::connect(server.plain_http_addr().unwrap())
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await);
    // Served throughout.
    let response = reqwest::Client::new()
        .get(format!(
            "http://{}/healthz",
            server.plain_http_addr().unwrap()
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_http3_connection_without_requests_is_closed_though_it_pings() {
    let dir = tempfile::tempdir().unwrap();
    let (config, cert_der) = config(dir.path(), "idle_timeout_ms = 400");
    let server = start(&config).await;
    let mut endpoint = common::h3_endpoint(&cert_der);
    // The client keeps QUIC alive with PINGs, so QUIC's own idle timer
    // never fires; only the edge's request-idle close can end it.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_millis(50)));
    let mut client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(common::h3_tls(&cert_der)).unwrap(),
    ));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let connection = endpoint
        .connect(server.h3_addr().unwrap(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let (_driver, _send) = h3::client::new(h3_quinn::Connection::new(connection.clone()))
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .expect("closed by the edge");
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason:?}"
    );
    assert!(
        server
            .metrics()
            .render()
            .contains("ferrocast_edge_connections_closed_idle_total{listener=\"h3\"} 1")
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_cut_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config(dir.path(), "header_read_timeout_ms = 300");
    let server = start(&config).await;
    let mut silent = TcpStream::connect(server.https_addr()).await.unwrap();
    // A ClientHello begun and never finished.
    silent
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(10)).await);
}
