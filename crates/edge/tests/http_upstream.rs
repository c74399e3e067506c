#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! `HttpUpstream` against local axum servers on loopback: retries with
//! backoff, time limits, the circuit breaker (its cool-down driven by an
//! injected clock, never by sleeping), and streamed bodies (each chunk
//! passed on as the server writes it, a body cut off mid-way an error
//! item, retries only before the head).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_edge::http_upstream::{
    Backoff, BreakerConfig, BreakerState, Clock, HttpUpstream, HttpUpstreamConfig,
};
use ferrocast_edge::upstream::{Upstream, UpstreamError, UpstreamRequest};

/// A server that answers `503` to its first `failures` requests (all of
/// them while `healthy` is false), holds requests while `hold` is set, and
/// counts them.
#[derive(Clone)]
struct Flaky {
    seen: tokio::sync::watch::Sender<usize>,
    failures: usize,
    healthy: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
    /// The status of a failure (default 503).
    failure_status: StatusCode,
}

impl Flaky {
    fn new(failures: usize) -> Self {
        Self {
            seen: tokio::sync::watch::channel(0).0,
            failures,
            healthy: Arc::new(AtomicBool::new(true)),
            hold: Arc::default(),
            release: Arc::default(),
            failure_status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn seen(&self) -> usize {
        *self.seen.borrow()
    }

    /// Resolves once `n` requests have arrived.
    async fn reached(&self, n: usize) {
        let mut rx = self.seen.subscribe();
        rx.wait_for(|&seen| seen >= n).await.unwrap();
    }

    async fn serve(&self) -> SocketAddr {
        let state = self.clone();
        let handler = move |uri: axum::http::Uri| {
            let state = state.clone();
            async move {
                let mut n = 0;
                state.seen.send_modify(|seen| {
                    n = *seen;
                    *seen += 1;
                });
                if state.hold.load(Ordering::SeqCst) {
                    state.release.notified().await;
                }
                if n < state.failures || !state.healthy.load(Ordering::SeqCst) {
                    return (state.failure_status, "try later\n").into_response();
                }
                if uri.path().ends_with("missing.m4s") {
                    return (StatusCode::NOT_FOUND, "no such part\n").into_response();
                }
                (
                    [
                        ("cache-control", "public, max-age=3600, immutable"),
                        ("content-type", "video/mp4"),
                    ],
                    format!("{uri}"),
                )
                    .into_response()
            }
        };
        let app = Router::new().fallback(get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
}

/// A clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(Mutex<Instant>);

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

fn config(addr: SocketAddr) -> HttpUpstreamConfig {
    HttpUpstreamConfig {
        max_retries: 3,
        backoff: Backoff {
            initial_ms: 2,
            max_ms: 10,
        },
        breaker: BreakerConfig {
            failure_threshold: 100,
            cool_down_ms: 10_000,
        },
        ..HttpUpstreamConfig::new(format!("http://{addr}"))
    }
}

fn req(path: &str, query: Option<&str>) -> UpstreamRequest {
    UpstreamRequest {
        path: path.into(),
        query: query.map(Into::into),
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finishes in time")
}

#[tokio::test]
async fn retries_503s_then_succeeds() {
    let server = Flaky::new(2);
    let upstream = HttpUpstream::new(config(server.serve().await)).unwrap();
    let response = within(upstream.fetch(req("/live/cam/seg3.m4s", None)))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"/live/cam/seg3.m4s");
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| n == "cache-control" && v.contains("immutable"))
    );
    assert!(!response.headers.iter().any(|(n, _)| n == "content-length"));
    assert_eq!(server.seen(), 3);
    let stats = upstream.stats();
    // Retried, but a 503 is about a stream, not counted against the origin.
    assert_eq!((stats.attempts, stats.retries, stats.failures), (3, 2, 0));
    assert_eq!(stats.breaker, BreakerState::Closed);
}

#[tokio::test]
async fn gives_the_last_5xx_when_retries_run_out_and_never_retries_a_4xx() {
    let server = Flaky::new(usize::MAX);
    let upstream = HttpUpstream::new(config(server.serve().await)).unwrap();
    let response = within(upstream.fetch(req("/live/cam/seg4.m4s", None)))
        .await
        .unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(&response.body[..], b"try later\n");
    assert_eq!(server.seen(), 4, "one try and three retries");
    assert_eq!(upstream.stats().failures, 0);
    // A 503 to a request the origin holds (a blocking one, or any
    // playlist, which waits for the stream's first media) is the origin's
    // "not in time": at once, and no failure for the breaker.
    for query in [Some("_HLS_msn=4"), None] {
        let response = within(upstream.fetch(req("/live/cam/stream.m3u8", query)))
            .await
            .unwrap();
        assert_eq!(response.status, 503);
    }
    assert_eq!(server.seen(), 6);
    assert_eq!(upstream.stats().failures, 0);

    let server = Flaky::new(0);
    let upstream = HttpUpstream::new(config(server.serve().await)).unwrap();
    let response = within(upstream.fetch(req("/live/cam/missing.m4s", None)))
        .await
        .unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(server.seen(), 1);
}

#[tokio::test]
async fn a_closed_port_is_unreachable_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let upstream = HttpUpstream::new(config(addr)).unwrap();
    let e = within(upstream.fetch(req("/live/cam/seg1.m4s", None))).await;
    assert!(matches!(e, Err(UpstreamError::Unreachable(_))), "{e:?}");
    assert_eq!(upstream.stats().attempts, 4);
}

#[tokio::test]
async fn a_request_held_past_its_limit_times_out() {
    let server = Flaky::new(0);
    server.hold.store(true, Ordering::SeqCst);
    let addr = server.serve().await;
    let upstream = HttpUpstream::new(HttpUpstreamConfig {
        timeout_ms: 200,
        blocking_timeout_ms: 400,
        ..config(addr)
    })
    .unwrap();
    let started = tokio::time::Instant::now();
    let e = within(upstream.fetch(req("/live/cam/seg1.m4s", None))).await;
    assert_eq!(e, Err(UpstreamError::Timeout));
    let plain = started.elapsed();
    // A blocking playlist request gets the longer limit.
    let started = tokio::time::Instant::now();
    let e = within(upstream.fetch(req("/live/cam/stream.m3u8", Some("_HLS_msn=9")))).await;
    assert_eq!(e, Err(UpstreamError::Timeout));
    let blocking = started.elapsed();
    assert!(plain >= Duration::from_millis(200), "{plain:?}");
    assert!(blocking >= Duration::from_millis(400), "{blocking:?}");
    // Timeouts are not retried: the request used its wait.
    assert_eq!(server.seen(), 2);
    assert_eq!(upstream.stats().retries, 0);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_a_trial_closes_it() {
    let mut server = Flaky::new(0);
    server.failure_status = StatusCode::BAD_GATEWAY;
    server.healthy.store(false, Ordering::SeqCst);
    let addr = server.serve().await;
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let upstream = HttpUpstream::with_clock(
        HttpUpstreamConfig {
            max_retries: 0,
            breaker: BreakerConfig {
                failure_threshold: 3,
                cool_down_ms: 5_000,
            },
            ..config(addr)
        },
        clock.clone(),
    )
    .unwrap();
    let get = || within(upstream.fetch(req("/live/cam/seg1.m4s", None)));
    // Three consecutive 502s open it.
    for _ in 0..3 {
        assert_eq!(get().await.unwrap().status, 502);
    }
    assert_eq!(upstream.breaker_state(), BreakerState::Open);
    // Open: refused without touching the network.
    for _ in 0..5 {
        let e = get().await;
        assert_eq!(e, Err(UpstreamError::CircuitOpen(addr.to_string())));
    }
    assert_eq!(server.seen(), 3);
    clock.advance(Duration::from_millis(4_999));
    assert!(matches!(get().await, Err(UpstreamError::CircuitOpen(_))));
    assert_eq!(server.seen(), 3);

    // Cool-down over: half-open. The trial is held at the server; a second
    // request meanwhile is refused.
    clock.advance(Duration::from_millis(1));
    assert_eq!(upstream.breaker_state(), BreakerState::HalfOpen);
    server.healthy.store(true, Ordering::SeqCst);
    server.hold.store(true, Ordering::SeqCst);
    let trial = tokio::spawn(upstream.fetch(req("/live/cam/seg2.m4s", None)));
    within(server.reached(4)).await;
    assert!(matches!(get().await, Err(UpstreamError::CircuitOpen(_))));
    assert_eq!(server.seen(), 4);
    server.hold.store(false, Ordering::SeqCst);
    server.release.notify_one();
    let response = within(trial).await.unwrap().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(upstream.breaker_state(), BreakerState::Closed);
    assert_eq!(get().await.unwrap().status, 200);
    assert_eq!(server.seen(), 5);
    let stats = upstream.stats();
    assert_eq!((stats.rejected, stats.breaker_opened), (7, 1));
}

#[tokio::test]
async fn a_failed_trial_opens_the_breaker_again() {
    let mut server = Flaky::new(0);
    server.failure_status = StatusCode::BAD_GATEWAY;
    server.healthy.store(false, Ordering::SeqCst);
    let addr = server.serve().await;
    let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
    let upstream = HttpUpstream::with_clock(
        HttpUpstreamConfig {
            max_retries: 0,
            breaker: BreakerConfig {
                failure_threshold: 1,
                cool_down_ms: 1_000,
            },
            ..config(addr)
        },
        clock.clone(),
    )
    .unwrap();
    let get = || within(upstream.fetch(req("/live/cam/seg1.m4s", None)));
    assert_eq!(get().await.unwrap().status, 502);
    assert_eq!(upstream.breaker_state(), BreakerState::Open);
    clock.advance(Duration::from_secs(1));
    // The trial fails: open for another cool-down.
    assert_eq!(get().await.unwrap().status, 502);
    assert_eq!(upstream.breaker_state(), BreakerState::Open);
    assert!(matches!(get().await, Err(UpstreamError::CircuitOpen(_))));
    assert_eq!(server.seen(), 2);
    assert_eq!(upstream.stats().breaker_opened, 2);
}

/// A server that answers `503` to its first `failures` requests, then
/// `200` with a body the test writes chunk by chunk through the returned
/// sender (an `Err` cuts the body off mid-way: hyper closes the
/// connection before the last chunk).
async fn streaming_server(
    failures: usize,
) -> (
    SocketAddr,
    tokio::sync::watch::Receiver<usize>,
    tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
) {
    let (seen_tx, seen) = tokio::sync::watch::channel(0usize);
    let (body_tx, body_rx) = tokio::sync::mpsc::channel(4);
    let body_rx = Arc::new(Mutex::new(Some(body_rx)));
    let handler = move || {
        let body_rx = body_rx.clone();
        let mut n = 0;
        seen_tx.send_modify(|seen| {
            n = *seen;
            *seen += 1;
        });
        async move {
            if n < failures {
                return (StatusCode::SERVICE_UNAVAILABLE, "try later\n").into_response();
            }
            let Some(rx) = body_rx.lock().unwrap().take() else {
                return (StatusCode::GONE, "one body only\n").into_response();
            };
            let chunks = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|chunk| (chunk, rx))
            });
            (
                [("cache-control", "no-cache"), ("content-type", "video/mp4")],
                axum::body::Body::from_stream(chunks),
            )
                .into_response()
        }
    };
    let app = Router::new().fallback(get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen, body_tx)
}

fn chunk(bytes: &'static [u8]) -> Result<bytes::Bytes, std::io::Error> {
    Ok(bytes::Bytes::from_static(bytes))
}

async fn next_item(
    body: &mut ferrocast_edge::BodyStream,
) -> Option<Result<bytes::Bytes, UpstreamError>> {
    use futures::StreamExt;
    within(body.next()).await
}

#[tokio::test]
async fn a_streamed_body_arrives_chunk_by_chunk_before_it_is_complete() {
    let (addr, seen, body) = streaming_server(0).await;
    let upstream = HttpUpstream::new(config(addr)).unwrap();
    // The head comes back while the origin has written no body at all.
    let mut response = within(upstream.fetch_stream(req("/live/cam/part3.1.m4s", None)))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response
            .headers
            .iter()
            .any(|(n, v)| n == "cache-control" && v == "no-cache")
    );
    assert!(
        !response
            .headers
            .iter()
            .any(|(n, _)| n == "transfer-encoding")
    );
    // Each chunk is passed on before the origin writes the next one.
    body.send(chunk(b"moof1")).await.unwrap();
    assert_eq!(
        &next_item(&mut response.body).await.unwrap().unwrap()[..],
        b"moof1"
    );
    body.send(chunk(b"moof2")).await.unwrap();
    assert_eq!(
        &next_item(&mut response.body).await.unwrap().unwrap()[..],
        b"moof2"
    );
    drop(body);
    assert!(next_item(&mut response.body).await.is_none(), "complete");
    assert_eq!(*seen.borrow(), 1);
    let stats = upstream.stats();
    assert_eq!(
        (stats.requests, stats.attempts, stats.broken_bodies),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn retries_happen_before_the_head_and_a_body_cut_off_is_an_error_item() {
    let (addr, seen, body) = streaming_server(1).await;
    let upstream = HttpUpstream::new(config(addr)).unwrap();
    // The first attempt's 503 is retried: nothing was passed on yet.
    let mut response = within(upstream.fetch_stream(req("/live/cam/seg3.m4s", None)))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(*seen.borrow(), 2);
    body.send(chunk(b"moof1")).await.unwrap();
    assert_eq!(
        &next_item(&mut response.body).await.unwrap().unwrap()[..],
        b"moof1"
    );
    // The origin breaks off: the viewer's copy must not end as if whole.
    body.send(Err(std::io::Error::other("encoder gone")))
        .await
        .unwrap();
    let item = next_item(&mut response.body).await.unwrap();
    assert!(
        matches!(item, Err(UpstreamError::Unreachable(_))),
        "{item:?}"
    );
    assert!(next_item(&mut response.body).await.is_none());
    // Never retried once body bytes were passed on.
    assert_eq!(*seen.borrow(), 2);
    let stats = upstream.stats();
    assert_eq!((stats.retries, stats.broken_bodies), (1, 1));
    assert_eq!(stats.breaker, BreakerState::Closed);
}

/// A raw HTTP/1.1 server that declares a `Content-Length` it never
/// delivers: it writes the head and part of the body, then closes.
async fn short_body_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-this")
                .await;
        }
    });
    addr
}

#[tokio::test]
async fn a_body_shorter_than_its_length_is_an_error_item_and_a_failed_fetch() {
    let addr = short_body_server().await;
    let upstream = HttpUpstream::new(config(addr)).unwrap();
    let mut response = within(upstream.fetch_stream(req("/live/cam/seg1.m4s", None)))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let mut received = Vec::new();
    let error = loop {
        match next_item(&mut response.body).await {
            Some(Ok(chunk)) => received.extend_from_slice(&chunk),
            Some(Err(e)) => break e,
            None => panic!("a short body ended as if complete"),
        }
    };
    assert!(matches!(error, UpstreamError::Unreachable(_)), "{error:?}");
    assert!(b"only-this".starts_with(&received));
    // The whole-body fetch fails rather than giving nine bytes of 100.
    let whole = within(upstream.fetch(req("/live/cam/seg1.m4s", None))).await;
    assert!(
        matches!(whole, Err(UpstreamError::Unreachable(_))),
        "{whole:?}"
    );
    assert_eq!(upstream.stats().broken_bodies, 2);
}

#[tokio::test]
async fn a_streamed_body_has_an_idle_limit_per_chunk_and_a_size_limit() {
    let (addr, _, body) = streaming_server(0).await;
    let upstream = HttpUpstream::new(HttpUpstreamConfig {
        idle_timeout_ms: 200,
        ..config(addr)
    })
    .unwrap();
    let mut response = within(upstream.fetch_stream(req("/live/cam/part1.0.m4s", None)))
        .await
        .unwrap();
    body.send(chunk(b"moof1")).await.unwrap();
    assert!(next_item(&mut response.body).await.unwrap().is_ok());
    // The origin stalls (the sender stays open): the body ends in a timeout.
    let item = next_item(&mut response.body).await.unwrap();
    assert_eq!(item, Err(UpstreamError::Timeout));
    assert!(next_item(&mut response.body).await.is_none());
    drop(body);

    let (addr, _, body) = streaming_server(0).await;
    let upstream = HttpUpstream::new(HttpUpstreamConfig {
        max_body_bytes: 12,
        ..config(addr)
    })
    .unwrap();
    let mut response = within(upstream.fetch_stream(req("/live/cam/part1.0.m4s", None)))
        .await
        .unwrap();
    let mut passed = 0;
    let error = loop {
        body.send(chunk(b"0123456")).await.unwrap();
        match next_item(&mut response.body).await.unwrap() {
            Ok(c) => passed += c.len(),
            Err(e) => break e,
        }
    };
    assert!(matches!(error, UpstreamError::Unreachable(_)), "{error:?}");
    assert!(passed <= 12, "{passed} bytes passed on");
}

#[tokio::test]
async fn streamed_fetches_count_for_the_breaker_at_the_head() {
    let mut server = Flaky::new(0);
    server.failure_status = StatusCode::BAD_GATEWAY;
    server.healthy.store(false, Ordering::SeqCst);
    let addr = server.serve().await;
    let upstream = HttpUpstream::new(HttpUpstreamConfig {
        max_retries: 0,
        breaker: BreakerConfig {
            failure_threshold: 2,
            cool_down_ms: 60_000,
        },
        ..config(addr)
    })
    .unwrap();
    for _ in 0..2 {
        // The origin's 5xx is the answer, its body passed on whole.
        let mut response = within(upstream.fetch_stream(req("/live/cam/seg1.m4s", None)))
            .await
            .unwrap();
        assert_eq!(response.status, 502);
        assert_eq!(
            &next_item(&mut response.body).await.unwrap().unwrap()[..],
            b"try later\n"
        );
    }
    assert_eq!(upstream.breaker_state(), BreakerState::Open);
    let e = within(upstream.fetch_stream(req("/live/cam/seg1.m4s", None))).await;
    assert_eq!(e.unwrap_err(), UpstreamError::CircuitOpen(addr.to_string()));
    assert_eq!(server.seen(), 2);
}

/// One stalled stream must not cut the others off: its `503`s (no media
/// yet) and its held part requests that outlive their wait are about that
/// stream, not the origin's health.
#[tokio::test]
async fn a_stalled_stream_never_opens_the_breaker_for_the_others() {
    let app = Router::new().fallback(get(|uri: axum::http::Uri| async move {
        let path = uri.path().to_owned();
        if path.starts_with("/live/stalled/part") {
            // held, and the part never comes
            std::future::pending::<()>().await;
        }
        if path.starts_with("/live/stalled/") {
            return (StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n").into_response();
        }
        (StatusCode::OK, path).into_response()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let upstream = HttpUpstream::new(HttpUpstreamConfig {
        max_retries: 0,
        blocking_timeout_ms: 100,
        breaker: BreakerConfig {
            failure_threshold: 3,
            cool_down_ms: 60_000,
        },
        ..config(addr)
    })
    .unwrap();
    for n in 0..10 {
        let answer = within(upstream.fetch(req("/live/stalled/stream.m3u8", None))).await;
        assert_eq!(answer.unwrap().status, 503);
        let held = within(upstream.fetch(req(&format!("/live/stalled/part{n}.0.m4s"), None))).await;
        assert_eq!(held, Err(UpstreamError::Timeout));
    }
    assert_eq!(upstream.breaker_state(), BreakerState::Closed);
    let other = within(upstream.fetch(req("/live/other/seg1.m4s", None))).await;
    assert_eq!(other.unwrap().status, 200);
    assert_eq!(upstream.stats().breaker_opened, 0);
}
