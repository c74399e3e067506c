#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The origin's listener under hostile clients, over real sockets: a
//! slowloris is cut at the header-read timeout, an idle HTTP/2 connection
//! at the idle timeout, a connection flood from one address stops at the
//! per-client cap while another client is still served, and HTTP/2
//! advertises the stream cap.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use ferrocast_connections::{ConnectionLimits, ConnectionMetrics};
use ferrocast_packager::http::{HttpServer, serve_with_limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn start(limits: ConnectionLimits) -> (HttpServer, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let metrics = ConnectionMetrics::new("http", &registry).unwrap();
    let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    let server = serve_with_limits("127.0.0.1:0".parse().unwrap(), app, &limits, &metrics)
        .await
        .unwrap();
    (server, registry)
}

fn render(registry: &prometheus::Registry) -> String {
    let mut out = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut out,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset); false if
/// it is still open after `within`.
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

async fn healthz_from(from: &str, server: SocketAddr) -> String {
    let mut stream = connect_from(from, server).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("answered")
    .unwrap();
    response
}

#[tokio::test]
async fn a_slowloris_is_cut_at_the_header_read_timeout() {
    let (server, _) = start(ConnectionLimits {
        header_read_timeout_ms: 300,
        ..ConnectionLimits::default()
    })
    .await;
    let mut slow = connect_from("127.0.0.1", server.local_addr()).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: origin\r\n")
        .await
        .unwrap();
    // ...and the rest of the headers never come.
    assert!(closed_by_server(&mut slow, Duration::from_secs(10)).await);
    assert!(
        healthz_from("127.0.0.2", server.local_addr())
            .await
            .ends_with("ok\n")
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let (server, registry) = start(ConnectionLimits {
        idle_timeout_ms: 300,
        ..ConnectionLimits::default()
    })
    .await;
    let mut idle = connect_from("127.0.0.1", server.local_addr()).await;
    // HTTP/2 with prior knowledge: preface and an empty SETTINGS, then nothing.
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    assert!(closed_by_server(&mut idle, Duration::from_secs(10)).await);
    assert!(
        render(&registry)
            .contains("ferrocast_http_connections_closed_idle_total{listener=\"http\"} 1")
    );
}

#[tokio::test]
async fn a_connection_flood_from_one_address_leaves_room_for_others() {
    let (server, registry) = start(ConnectionLimits {
        max_connections: 8,
        max_connections_per_client: 4,
        ..ConnectionLimits::default()
    })
    .await;
    let addr = server.local_addr();
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(connect_from("127.0.0.1", addr).await);
    }
    // Four are held open; the others are closed at once.
    let mut closed = 0;
    for stream in &mut flood {
        if closed_by_server(stream, Duration::from_secs(2)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 46);
    assert_eq!(server.open_connections(), 4);
    assert!(healthz_from("127.0.0.2", addr).await.ends_with("ok\n"));
    // Overall: 4 from .1, 4 held from .3, and .4 is refused.
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(connect_from("127.0.0.3", addr).await);
    }
    let mut refused = connect_from("127.0.0.4", addr).await;
    assert!(closed_by_server(&mut refused, Duration::from_secs(5)).await);
    let text = render(&registry);
    assert!(text.contains(
        "ferrocast_http_connections_refused_total{listener=\"http\",reason=\"client_full\"} 46"
    ));
    assert!(text.contains(
        "ferrocast_http_connections_refused_total{listener=\"http\",reason=\"listener_full\"} 1"
    ));
    drop(flood);
    drop(others);
}

#[tokio::test]
async fn http2_advertises_the_stream_cap() {
    let (server, _) = start(ConnectionLimits {
        max_streams_per_connection: 7,
        ..ConnectionLimits::default()
    })
    .await;
    let mut h2 = connect_from("127.0.0.1", server.local_addr()).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // The server's first frame is its SETTINGS (RFC 9113 §3.4).
    let mut header = [0u8; 9];
    h2.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 0x4, "SETTINGS frame");
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    h2.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3)
    assert!(settings.contains(&(0x3, 7)), "{settings:?}");
}
