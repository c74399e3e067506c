#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The SRT listener's supervisor: when srt-tokio's listener task ends (as a
//! panic in the SRT stack would end it), the port is bound again and new
//! publishers get in; the failure is visible in the health report and the
//! metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocast_bus::InProcessBus;
use ferrocast_ingest::{SrtConfig, SrtIngest, StaticAuthorizer};
use ferrocast_telemetry::Metrics;
use srt_tokio::SrtSocket;

async fn start() -> (SrtIngest, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let ingest = SrtIngest::start(
        SrtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            latency: Duration::from_millis(120),
            idle_timeout: Duration::from_secs(5),
            interleave: Default::default(),
        },
        Arc::new(InProcessBus::default()),
        Arc::new(StaticAuthorizer::default()),
        metrics.clone(),
    )
    .await
    .unwrap();
    (ingest, metrics)
}

/// An SRT caller publishing `stream`; `Err` if the handshake fails.
async fn call(ingest: &SrtIngest, stream: &str) -> std::io::Result<SrtSocket> {
    tokio::time::timeout(
        Duration::from_secs(10),
        SrtSocket::builder().call(ingest.local_addr(), Some(&format!("publish:{stream}"))),
    )
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other("handshake timed out")))
}

/// Wait (bounded) until the ingest lists `stream` as a connected publisher.
async fn wait_for_publisher(ingest: &SrtIngest, stream: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if ingest.publishers().iter().any(|p| p.stream == stream) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_dies_is_restarted_on_the_same_port() {
    let (ingest, metrics) = start().await;
    let port = ingest.local_addr();
    let _first = call(&ingest, "live/before")
        .await
        .expect("first caller gets in");
    assert!(wait_for_publisher(&ingest, "before").await);
    assert!(ingest.health().up);
    assert_eq!(ingest.health().restarts, 0);

    ingest.inject_listener_failure();

    // The supervisor notices, reports it and binds the port again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ingest.health().restarts == 0 || !ingest.health().up {
        assert!(
            Instant::now() < deadline,
            "listener not restarted: {:?}",
            ingest.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = ingest.health();
    assert_eq!(health.restarts, 1);
    assert!(
        health
            .last_failure
            .is_some_and(|r| r.contains("fault injection"))
    );
    assert_eq!(ingest.local_addr(), port);
    let text = metrics.render();
    assert!(
        text.contains("ferrocast_ingest_srt_listener_restarts_total 1"),
        "{text}"
    );
    assert!(
        text.contains("ferrocast_ingest_srt_listener_up 1"),
        "{text}"
    );

    // A new publisher gets in on the same port.
    let _second = call(&ingest, "live/after")
        .await
        .expect("a caller gets in after the restart");
    assert!(wait_for_publisher(&ingest, "after").await);
}
