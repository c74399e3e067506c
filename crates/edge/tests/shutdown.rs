#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Graceful shutdown over real sockets: requests in flight when the edge
//! starts draining (a response the origin has not given yet, a part still
//! being streamed) finish whole over HTTP/1.1, HTTP/2 and HTTP/3 while new
//! connections are refused; a request held past the drain deadline is cut
//! off and counted.
//!
//! The origin is an axum router called in process whose answers the test
//! holds and releases.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use bytes::{Buf, Bytes};
use ferrocast_edge::server::{EdgeMetrics, EdgeServer, ShutdownReport};
use ferrocast_edge::{EdgeConfig, EdgeTokens, InProcessUpstream};
use tokio::sync::{mpsc, watch};

const SEGMENT: &str = "SEGMENT-ONE";
const PART_HEAD: &str = "PART-HEAD-";
const PART_TAIL: &str = "PART-TAIL";

/// The origin: `seg1.m4s` answers once released; `part1.0.m4s` sends its
/// first bytes at once and the rest once released. Each request announces
/// itself on `arrived`.
struct Origin {
    arrived: mpsc::Receiver<String>,
    release: watch::Sender<bool>,
    router: Router,
}

fn origin() -> Origin {
    let (arrived_tx, arrived) = mpsc::channel(16);
    let (release, released) = watch::channel(false);
    let router = Router::new().route(
        "/live/{name}/{file}",
        get(move |Path((_, file)): Path<(String, String)>| {
            let arrived = arrived_tx.clone();
            let mut released = released.clone();
            async move {
                arrived.send(file.clone()).await.unwrap();
                match file.as_str() {
                    "seg1.m4s" => {
                        let _ = released.wait_for(|r| *r).await;
                        Body::from(SEGMENT)
                    }
                    _ => {
                        let head = futures::stream::once(async { Ok(Bytes::from(PART_HEAD)) });
                        let tail = futures::stream::once(async move {
                            let _ = released.wait_for(|r| *r).await;
                            Ok::<_, std::io::Error>(Bytes::from(PART_TAIL))
                        });
                        Body::from_stream(futures::StreamExt::chain(head, tail))
                    }
                }
            }
        }),
    );
    Origin {
        arrived,
        release,
        router,
    }
}

fn config() -> EdgeConfig {
    toml::from_str(
        r#"
        https_listen = "127.0.0.1:0"
        [jwt]
        audience = "a"
        [[jwt.keys]]
        kid = "k"
        algorithm = "HS256"
        secret = "shutdown-test-hs256-secret-shutdown"
        [token]
        keys = [{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }]
        "#,
    )
    .unwrap()
}

async fn start(config: &EdgeConfig, router: Router) -> EdgeServer {
    let upstream = Arc::new(InProcessUpstream::new(router, Duration::from_secs(60)));
    EdgeServer::start(config, upstream, EdgeMetrics::new().unwrap())
        .await
        .unwrap()
}

fn token(config: &EdgeConfig) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    EdgeTokens::new(&config.token)
        .unwrap()
        .sign("cam", now + 600, None)
}

fn client(http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().danger_accept_invalid_certs(true);
    if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    }
    .build()
    .unwrap()
}

#[tokio::test]
async fn requests_in_flight_finish_over_h1_and_h2_and_new_connections_are_refused() {
    let config = config();
    let mut origin = origin();
    let server = start(&config, origin.router.clone()).await;
    let https = server.https_addr();
    let token = token(&config);

    // HTTP/1.1: a part whose first bytes have arrived, the rest not yet.
    let mut part = client(false)
        .get(format!(
            "https://{https}/live/cam/part1.0.m4s?token={token}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 200);
    assert_eq!(origin.arrived.recv().await.unwrap(), "part1.0.m4s");
    let mut part_body = part.chunk().await.unwrap().unwrap().to_vec();
    assert_eq!(part_body, PART_HEAD.as_bytes());
    // HTTP/2: a segment the origin has not answered.
    let segment = tokio::spawn(
        client(true)
            .get(format!("https://{https}/live/cam/seg1.m4s?token={token}"))
            .send(),
    );
    assert_eq!(origin.arrived.recv().await.unwrap(), "seg1.m4s");
    assert_eq!(server.requests_in_flight(), 2);

    let shutdown = server.shutdown(Duration::from_secs(60));
    shutdown.stopped_accepting().await;
    let refused = tokio::net::TcpStream::connect(https).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    origin.release.send(true).unwrap();
    while let Some(chunk) = part.chunk().await.unwrap() {
        part_body.extend_from_slice(&chunk);
    }
    assert_eq!(part_body, format!("{PART_HEAD}{PART_TAIL}").as_bytes());
    let segment = segment.await.unwrap().unwrap();
    assert_eq!(segment.status(), 200);
    assert_eq!(segment.version(), reqwest::Version::HTTP_2);
    assert_eq!(segment.bytes().await.unwrap(), SEGMENT);

    let report: ShutdownReport = shutdown.await;
    assert_eq!(report.in_flight, 2);
    assert_eq!(report.cut_off, 0);
}

#[tokio::test]
async fn a_request_held_past_the_deadline_is_cut_off_and_counted() {
    let config = config();
    let mut origin = origin();
    let server = start(&config, origin.router.clone()).await;
    let https = server.https_addr();
    let token = token(&config);
    let held = tokio::spawn(
        client(true)
            .get(format!("https://{https}/live/cam/seg1.m4s?token={token}"))
            .send(),
    );
    assert_eq!(origin.arrived.recv().await.unwrap(), "seg1.m4s");
    // Idle connections do not hold the drain up.
    let idle = client(false);
    let response = idle
        .get(format!("https://{https}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let report = server.shutdown(Duration::from_millis(50)).await;
    assert_eq!(report.in_flight, 1);
    assert_eq!(report.cut_off, 1);
    // The viewer sees a broken connection, not a made-up answer.
    let held = held.await.unwrap();
    assert!(held.is_err(), "{held:?}");
    // The origin is released only now; nothing is left to answer.
    origin.release.send(true).unwrap();
}

/// An HTTP/3 client (h3 over quinn) trusting `cert_der` only.
async fn h3_connect(
    addr: std::net::SocketAddr,
    cert_der: &[u8],
) -> Result<h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>, quinn::ConnectionError> {
    let endpoint = common::h3_endpoint(cert_der);
    let connection = endpoint.connect(addr, "localhost").unwrap().await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _endpoint = endpoint;
        std::future::poll_fn(|cx| driver.poll_close(cx)).await
    });
    Ok(send)
}

/// GET `uri` over HTTP/3: the status and the whole body.
async fn h3_get(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    uri: &str,
) -> (u16, Vec<u8>) {
    let request = http::Request::get(uri).body(()).unwrap();
    let mut stream = send.send_request(request).await.unwrap();
    stream.finish().await.unwrap();
    let response = stream.recv_response().await.unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.unwrap() {
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            body.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    (response.status().as_u16(), body)
}

#[tokio::test]
async fn http3_requests_in_flight_finish_and_new_quic_connections_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let cert_der = generated.cert.der().to_vec();
    let mut config = config();
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    let mut origin = origin();
    let server = start(&config, origin.router.clone()).await;
    let h3_addr = server.h3_addr().unwrap();
    let token = token(&config);

    let mut send = h3_connect(h3_addr, &cert_der).await.unwrap();
    let uri = format!("https://localhost/live/cam/seg1.m4s?token={token}");
    let held = tokio::spawn(async move { h3_get(&mut send, &uri).await });
    assert_eq!(origin.arrived.recv().await.unwrap(), "seg1.m4s");
    assert_eq!(server.requests_in_flight(), 1);

    let shutdown = server.shutdown(Duration::from_secs(60));
    shutdown.stopped_accepting().await;
    assert!(
        h3_connect(h3_addr, &cert_der).await.is_err(),
        "a new QUIC connection is refused while draining"
    );

    origin.release.send(true).unwrap();
    let (status, body) = held.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, SEGMENT.as_bytes());
    let report = shutdown.await;
    assert_eq!(report.in_flight, 1);
    assert_eq!(report.cut_off, 0);
}
