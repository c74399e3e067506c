//! The load generator's raw SRT caller against a real srt-tokio listener:
//! the handshake carries the streamid, every message arrives once and in
//! order, and messages "lost" on the way come back through the listener's
//! NAKs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrocast_benches::srt_raw::RawCaller;
use futures::StreamExt;
use srt_tokio::SrtListener;

const MESSAGES: usize = 200;
const LOSE_EVERY: usize = 40;

fn payload(i: usize) -> Bytes {
    let mut data = vec![(i % 251) as u8; 1316];
    data[..8].copy_from_slice(&(i as u64).to_be_bytes());
    Bytes::from(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_caller_delivers_every_message_and_retransmits_what_was_lost() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (_listener, mut incoming) = SrtListener::builder()
        .socket(socket)
        .latency(Duration::from_millis(120))
        .bind(addr)
        .await
        .unwrap();

    let received_all = Arc::new(AtomicBool::new(false));
    let done = received_all.clone();
    let sender = tokio::task::spawn_blocking(move || {
        let mut caller = RawCaller::connect(
            addr,
            "publish:live/raw",
            Duration::from_millis(120),
            Duration::from_secs(10),
        )
        .expect("handshake");
        for i in 0..MESSAGES {
            let now = Instant::now();
            if i % LOSE_EVERY == LOSE_EVERY / 2 {
                caller.lose(payload(i), now).unwrap();
            } else {
                caller.send(payload(i), now).unwrap();
            }
            caller.poll_control(now).unwrap();
            // Pacing like a live source, so the listener's NAKs come while
            // the stream still flows.
            std::thread::sleep(Duration::from_millis(1));
        }
        // Answer NAKs until the receiver has everything.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
            caller.poll_control(Instant::now()).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        caller.counts()
    });

    let request = tokio::time::timeout(Duration::from_secs(10), incoming.incoming().next())
        .await
        .expect("a caller within 10 s")
        .expect("listener open");
    assert_eq!(
        request.stream_id().map(|s| s.to_string()).as_deref(),
        Some("publish:live/raw")
    );
    let mut socket = request.accept(None).await.expect("accept");
    let mut got = Vec::new();
    while got.len() < MESSAGES {
        let (_, data) = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {MESSAGES} messages in time", got.len()))
            .expect("stream open")
            .expect("no socket error");
        got.push(data);
    }
    received_all.store(true, Ordering::Relaxed);
    let counts = sender.await.unwrap();

    for (i, data) in got.iter().enumerate() {
        assert_eq!(data, &payload(i), "message {i} out of order or altered");
    }
    let lost = MESSAGES / LOSE_EVERY;
    assert_eq!(counts.sent, MESSAGES as u64);
    assert!(
        counts.retransmitted >= lost as u64,
        "{} retransmitted, {lost} lost: {counts:?}",
        counts.retransmitted
    );
    assert!(counts.naks >= 1 && counts.acks >= 1, "{counts:?}");
    assert_eq!(counts.lost, 0, "{counts:?}");
}
