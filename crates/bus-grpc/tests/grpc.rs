#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The bus across a real TCP connection: a remote subscriber gets exactly
//! what was published, starts at a keyframe, receives keyframes past
//! tonic's 4 MiB default, and when it falls behind loses whole GOPs (a
//! `Gap`, then a keyframe) without ever holding the publisher up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_bus::{BusConfig, BusMessage, InProcessBus, Subscriber};
use ferrocast_bus_grpc::{RemoteError, serve, subscribe};
use ferrocast_media::{AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind};

/// x264's 1280x720 High@3.2 SPS and a matching PPS.
const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x20, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x06, 0x40, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn tracks() -> BusMessage {
    let video = ferrocast_media::h264::params_from_parameter_sets(
        Bytes::from_static(&SPS),
        Bytes::from_static(&PPS),
    )
    .unwrap();
    let audio = ferrocast_media::aac::parse_audio_specific_config(&[0x11, 0x90]).unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 2));
    BusMessage::Tracks(Arc::from(vec![
        TrackInfo {
            id: TrackId(256),
            params: CodecParams::H264(video),
        },
        TrackInfo {
            id: TrackId(257),
            params: CodecParams::Aac(audio),
        },
    ]))
}

fn video(n: i64, keyframe: bool, size: usize) -> BusMessage {
    BusMessage::Unit(Arc::new(AccessUnit {
        track: TrackId(256),
        kind: TrackKind::Video,
        pts: Time90k(n * 3600 + 7200),
        dts: Time90k(n * 3600),
        keyframe,
        data: Bytes::from(vec![(n % 251) as u8; size]),
        // Stamped and traced video, unstamped untraced audio: both must
        // come across as sent.
        captured_unix_ms: Some(1_765_000_000_000 + n * 40),
        trace: ferrocast_media::TraceContext::new([0x5a; 16], [(n % 250) as u8 + 1; 8], n % 2 == 0),
    }))
}

fn audio(n: i64) -> BusMessage {
    BusMessage::Unit(Arc::new(AccessUnit {
        track: TrackId(257),
        kind: TrackKind::Audio,
        pts: Time90k(n * 1920),
        dts: Time90k(n * 1920),
        keyframe: true,
        data: Bytes::from_static(&[0x21, 0x10, 0x05]),
        captured_unix_ms: None,
        trace: None,
    }))
}

async fn next(subscriber: &mut Subscriber) -> Option<BusMessage> {
    tokio::time::timeout(Duration::from_secs(10), subscriber.recv())
        .await
        .expect("a message in time")
}

async fn remote(bus: &InProcessBus, stream: &str) -> Subscriber {
    // The server task (detached) lives as long as the test's runtime.
    let (addr, _server) = serve(bus.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    subscribe(&format!("http://{addr}"), stream).await.unwrap()
}

#[tokio::test]
async fn a_remote_subscriber_gets_exactly_what_was_published() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sent = vec![tracks()];
    for n in 0..50 {
        sent.push(video(n, n % 25 == 0, 2_000));
        sent.push(audio(n));
    }
    sent.push(BusMessage::Discontinuity);
    sent.push(video(50, true, 2_000));
    let mut subscriber = remote(&bus, "cam").await;
    for message in &sent {
        publisher.send(message.clone());
    }
    publisher.end();
    let mut got = Vec::new();
    while let Some(message) = next(&mut subscriber).await {
        got.push(message);
    }
    sent.push(BusMessage::End);
    assert_eq!(got, sent);
}

#[tokio::test]
async fn a_late_subscriber_starts_at_a_keyframe_and_big_keyframes_pass() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    publisher.send(tracks());
    // GOP 1, then GOP 2 begun with a 6 MiB keyframe (above tonic's 4 MiB).
    for n in 0..5 {
        publisher.send(video(n, n == 0, 1_000));
    }
    publisher.send(video(5, true, 6 * 1024 * 1024));
    publisher.send(video(6, false, 1_000));
    let mut subscriber = remote(&bus, "cam").await;
    assert_eq!(next(&mut subscriber).await, Some(tracks()));
    match next(&mut subscriber).await {
        Some(BusMessage::Unit(unit)) => {
            assert!(unit.keyframe);
            assert_eq!(unit.data.len(), 6 * 1024 * 1024);
        }
        other => panic!("expected the keyframe, got {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_remote_reader_loses_whole_gops_and_never_holds_the_publisher() {
    let bus = InProcessBus::new(BusConfig {
        subscriber_queue_bytes: 512 * 1024,
        subscriber_hard_limit_bytes: 1024 * 1024,
        ..BusConfig::default()
    });
    let publisher = bus.publish("cam").unwrap();
    publisher.send(tracks());
    let mut subscriber = remote(&bus, "cam").await;
    // 40 GOPs of 10 × 100 KB while nobody reads: 40 MB, far past the
    // HTTP/2 window and the subscription's queue (`send` never waits).
    for n in 0..400 {
        publisher.send(video(n, n % 10 == 0, 100_000));
    }
    publisher.end();
    let mut gaps = 0;
    let mut after_gap = false;
    let mut units = 0;
    while let Some(message) = next(&mut subscriber).await {
        match message {
            BusMessage::Gap => {
                gaps += 1;
                after_gap = true;
            }
            BusMessage::Unit(unit) => {
                units += 1;
                if after_gap {
                    assert!(unit.keyframe, "after a gap, a keyframe first");
                    after_gap = false;
                }
            }
            _ => {}
        }
    }
    assert!(gaps >= 1, "no gap: the reader was not slow enough");
    assert!(units < 400, "{units}");
}

#[tokio::test]
async fn an_unknown_stream_is_not_found() {
    let bus = InProcessBus::default();
    let (addr, server) = serve(bus, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let error = subscribe(&format!("http://{addr}"), "nope").await.err();
    assert_eq!(error, Some(RemoteError::NotFound("nope".into())));
    server.abort();
    let error = subscribe("http://127.0.0.1:1", "cam").await.err();
    assert!(
        matches!(error, Some(RemoteError::Unreachable(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_publisher_leaving_is_noticed_remotely_after_its_last_messages() {
    use ferrocast_bus_grpc::{Delivery, connect};
    use futures::StreamExt;

    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let (addr, _server) = serve(bus.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut frames = connect(&format!("http://{addr}"), "cam").await.unwrap();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await
            .expect("a frame in time")
            .expect("the subscription goes on")
            .expect("a valid frame")
    };
    publisher.send(tracks());
    publisher.send(video(0, true, 100));
    publisher.detach();
    assert_eq!(next().await, Delivery::Message(tracks()));
    assert_eq!(next().await, Delivery::Message(video(0, true, 100)));
    assert_eq!(next().await, Delivery::PublisherGone);
    // It comes back: a discontinuity, then what the new publisher sends.
    let publisher = bus.publish("cam").unwrap();
    publisher.send(tracks());
    assert_eq!(next().await, Delivery::Message(BusMessage::Discontinuity));
    assert_eq!(next().await, Delivery::Message(tracks()));
    publisher.end();
    assert_eq!(next().await, Delivery::Message(BusMessage::End));

    // Subscribing while the publisher is away: told at once.
    let publisher = bus.publish("away").unwrap();
    publisher.send(tracks());
    publisher.detach();
    let mut frames = connect(&format!("http://{addr}"), "away").await.unwrap();
    let first = frames.next().await.unwrap().unwrap();
    assert_eq!(first, Delivery::Message(tracks()));
    let second = frames.next().await.unwrap().unwrap();
    assert_eq!(second, Delivery::PublisherGone);
}
