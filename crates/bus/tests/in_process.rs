//! Behaviour of the in-process bus, through its public API only.
#![allow(clippy::unwrap_used)] // tests unwrap; helpers outside #[test] fns too

mod support;

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use ferrocast_bus::{
    BusConfig, BusError, BusMessage, InProcessBus, MESSAGE_OVERHEAD_BYTES, MediaBus, StreamEvent,
};
use ferrocast_media::TrackId;
use support::*;
use tokio::sync::broadcast::error::TryRecvError;

fn small_bus(queue: usize, hard: usize) -> InProcessBus {
    InProcessBus::new(BusConfig {
        subscriber_queue_bytes: queue,
        subscriber_hard_limit_bytes: hard,
        ..BusConfig::default()
    })
}

#[tokio::test]
async fn a_subscriber_joining_mid_stream_starts_with_tracks_then_the_current_gop() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    publisher.send_unit(video(0, true, 100));
    publisher.send_unit(audio(1, 10));
    publisher.send_unit(video(2, false, 100));
    publisher.send_unit(video(3, true, 100));
    publisher.send_unit(audio(4, 10));
    publisher.send_unit(video(5, false, 100));

    let mut late = bus.subscribe("cam").unwrap();
    assert_eq!(show(&drain(&mut late)), ["T", "K3", "a4", "v5"]);

    publisher.send_unit(audio(6, 10));
    assert_eq!(show(&[late.recv().await.unwrap()]), ["a6"]);
}

#[tokio::test]
async fn a_subscriber_joining_before_any_keyframe_starts_at_the_first_one() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    publisher.send_unit(audio(0, 10));
    let mut early = bus.subscribe("cam").unwrap();
    publisher.send_unit(audio(1, 10));
    publisher.send_unit(video(2, false, 10));
    publisher.send_unit(video(3, true, 10));
    publisher.send_unit(audio(4, 10));
    assert_eq!(show(&drain(&mut early)), ["T", "K3", "a4"]);
    assert_eq!(early.dropped_units(), 0, "joining is not a loss");
}

#[tokio::test]
async fn audio_only_streams_start_at_any_audio_frame() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("radio").unwrap();
    publisher.send_tracks(audio_only_tracks());
    for seq in 0..5 {
        publisher.send_unit(audio(seq, 10));
    }
    let mut late = bus.subscribe("radio").unwrap();
    assert_eq!(show(&drain(&mut late)), ["T", "a4"]);
}

#[tokio::test]
async fn a_track_change_restarts_the_cache_at_the_next_keyframe() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    publisher.send_unit(video(0, true, 10));
    let changed: Arc<[_]> = Arc::from(vec![video_track(), audio_track(44_100)]);
    publisher.send_tracks(changed.clone());
    publisher.send_unit(video(1, false, 10));

    let mut late = bus.subscribe("cam").unwrap();
    publisher.send_unit(video(2, true, 10));
    let got = drain(&mut late);
    assert_eq!(show(&got), ["T", "K2"]);
    assert_eq!(got[0], BusMessage::Tracks(changed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_arrive_in_order_across_threads() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(message) = sub.recv().await {
            got.push(message);
        }
        (got, sub.dropped_units())
    });
    let producer = tokio::task::spawn_blocking(move || {
        publisher.send_tracks(av_tracks());
        for seq in 0..20_000 {
            if seq % 3 == 2 {
                publisher.send_unit(audio(seq, 16));
            } else {
                publisher.send_unit(video(seq, seq % 60 == 0, 128));
            }
        }
        publisher.end();
    });
    producer.await.unwrap();
    // Not synchronisation: a guard so a lost wake-up fails instead of hanging.
    let (got, dropped) = tokio::time::timeout(std::time::Duration::from_secs(60), consumer)
        .await
        .expect("the subscriber was never woken for the last messages")
        .unwrap();
    // The queue bound is far above what 20 000 small units need, so
    // nothing may be lost whatever the interleaving.
    assert_eq!(dropped, 0);
    let published: Vec<i64> = (0..20_000).collect();
    assert_eq!(check_delivery(&got, &published, false), 20_000);
    assert_eq!(got.last(), Some(&BusMessage::End));
}

#[test]
fn a_waiting_subscriber_is_woken_by_the_next_message() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    let waker = Arc::new(CountingWaker::default());
    let as_waker = Waker::from(waker.clone());
    let mut cx = Context::from_waker(&as_waker);

    assert!(sub.poll_recv(&mut cx).is_pending());
    assert_eq!(waker.count(), 0);
    publisher.send_tracks(av_tracks());
    assert_eq!(waker.count(), 1);
    assert!(matches!(
        sub.poll_recv(&mut cx),
        Poll::Ready(Some(BusMessage::Tracks(_)))
    ));
    // No waker is left behind once a message was taken.
    publisher.send_unit(video(0, true, 10));
    assert_eq!(waker.count(), 1);
}

#[test]
fn a_slow_subscriber_loses_whole_gops_and_a_fast_one_loses_nothing() {
    const GOP: i64 = 30;
    const UNIT: usize = 1000;
    let bound = 64 * 1024;
    let bus = small_bus(bound, 4 * bound);
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    let mut fast = bus.subscribe("cam").unwrap();
    let mut slow = bus.subscribe("cam").unwrap();

    let mut fast_got = drain(&mut fast);
    let mut slow_got = Vec::new();
    let mut published = Vec::new();
    let mut starts_gop = Vec::new();
    for seq in 0..3000 {
        if seq % 4 == 3 {
            publisher.send_unit(audio(seq, UNIT / 4));
        } else {
            publisher.send_unit(video(seq, seq % GOP == 0, UNIT));
        }
        published.push(seq);
        starts_gop.push(seq % GOP == 0);
        fast_got.extend(drain(&mut fast));
        // The slow one reads one message for every four sent.
        if seq % 4 == 0 {
            slow_got.extend(try_recv(&mut slow).flatten());
        }
    }
    publisher.end();
    fast_got.extend(drain(&mut fast));
    slow_got.extend(drain(&mut slow));

    assert_eq!(
        check_delivery(&fast_got, &published, false),
        published.len()
    );
    assert_eq!(fast.dropped_units(), 0);
    assert!(!fast_got.contains(&BusMessage::Gap));

    let slow_units = check_delivery(&slow_got, &published, false);
    assert!(slow_got.contains(&BusMessage::Gap), "{:?}", show(&slow_got));
    assert!(slow.dropped_units() > 0);
    // Well under the hard bound, so no GOP lost its tail either.
    check_whole_gops(&slow_got, &published, &starts_gop);
    // Every unit was delivered or counted as dropped.
    assert_eq!(
        slow_units as u64 + slow.dropped_units(),
        published.len() as u64
    );
    assert_eq!(slow_got.last(), Some(&BusMessage::End));
    // After each gap the very next message is a video keyframe.
    for pair in slow_got.windows(2) {
        if pair[0] == BusMessage::Gap {
            assert!(
                matches!(&pair[1], BusMessage::Unit(u) if u.keyframe && u.pts.0 % GOP == 0),
                "{:?}",
                show(pair)
            );
        }
    }
    let stats = bus.stats();
    assert_eq!(stats.dropped_units, slow.dropped_units());
    assert_eq!(stats.gaps, slow.stats().gaps);
}

#[tokio::test]
async fn a_stuck_subscriber_never_blocks_the_publisher_and_stays_bounded() {
    const GOP: i64 = 25;
    const UNIT: usize = 64 * 1024;
    let bound = 1 << 20;
    let gop_bytes = GOP as usize * (UNIT + MESSAGE_OVERHEAD_BYTES);
    let bus = small_bus(bound, 4 * bound);
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    let stuck = bus.subscribe("cam").unwrap();

    // 5000 units of 64 KiB: 320 MiB through a subscriber that never reads.
    for seq in 0..5000 {
        publisher.send_unit(video(seq, seq % GOP == 0, UNIT));
        let queued = stuck.stats().queued_bytes;
        assert!(
            queued <= bound + gop_bytes,
            "unit {seq}: {queued} bytes queued"
        );
    }
    assert!(stuck.dropped_units() > 4000);
}

#[tokio::test]
async fn without_keyframes_the_hard_bound_holds_and_the_subscriber_skips_to_the_next() {
    const UNIT: usize = 64 * 1024;
    let bound = 1 << 20;
    let hard = 4 * bound;
    let bus = small_bus(bound, hard);
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    let mut stuck = bus.subscribe("cam").unwrap();
    publisher.send_unit(video(0, true, UNIT));
    for seq in 1..2000 {
        publisher.send_unit(video(seq, false, UNIT));
        let queued = stuck.stats().queued_bytes;
        assert!(queued <= hard, "unit {seq}: {queued} bytes queued");
    }
    publisher.send_unit(video(2000, true, UNIT));
    publisher.send_unit(video(2001, false, UNIT));
    let got = drain(&mut stuck);
    let published: Vec<i64> = (0..2002).collect();
    let units = check_delivery(&got, &published, false);
    assert_eq!(units as u64 + stuck.dropped_units(), 2002);
    let shown = show(&got);
    assert_eq!(shown[shown.len() - 3..], ["G", "K2000", "v2001"]);
}

#[tokio::test]
async fn a_second_publisher_of_a_live_name_is_refused() {
    let bus = InProcessBus::default();
    let first = bus.publish("cam").unwrap();
    assert_eq!(
        bus.publish("cam").unwrap_err(),
        BusError::AlreadyPublished {
            stream: "cam".into()
        }
    );
    drop(first);
    assert!(bus.publish("cam").is_ok());
    assert_eq!(bus.publish("").unwrap_err(), BusError::EmptyStreamName);
}

#[tokio::test]
async fn a_dropped_publisher_that_comes_back_continues_the_same_stream() {
    let bus = InProcessBus::default();
    let mut events = bus.announcements();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    publisher.send_tracks(av_tracks());
    publisher.send_unit(video(0, true, 10));
    drop(publisher);

    assert_eq!(bus.streams().len(), 1);
    assert!(!bus.streams()[0].publisher_live);
    // Joining while the publisher is away still works.
    let mut during_grace = bus.subscribe("cam").unwrap();

    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    publisher.send_unit(video(1, true, 10));

    assert_eq!(show(&drain(&mut sub)), ["T", "K0", "D", "T", "K1"]);
    assert_eq!(show(&drain(&mut during_grace)), ["T", "K0", "D", "T", "K1"]);
    assert_eq!(
        events.try_recv().unwrap(),
        StreamEvent::Started("cam".into())
    );
    assert_eq!(
        events.try_recv().unwrap(),
        StreamEvent::PublisherGone("cam".into())
    );
    assert_eq!(
        events.try_recv().unwrap(),
        StreamEvent::Resumed("cam".into())
    );
    assert_eq!(events.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[tokio::test]
async fn end_delivers_end_and_frees_the_name() {
    let bus = InProcessBus::default();
    let mut events = bus.announcements();
    let publisher = bus.publish("cam").unwrap();
    publisher.send_tracks(av_tracks());
    publisher.send_unit(video(0, true, 10));
    let mut sub = bus.subscribe("cam").unwrap();
    publisher.end();

    assert_eq!(show(&drain(&mut sub)), ["T", "K0", "E"]);
    assert_eq!(sub.recv().await, None);
    assert_eq!(sub.recv().await, None);
    assert!(bus.subscribe("cam").is_none());
    assert!(bus.streams().is_empty());

    // A brand-new stream: no old GOP, no Discontinuity, the old subscriber
    // stays finished.
    let again = bus.publish("cam").unwrap();
    again.send_tracks(av_tracks());
    let mut fresh = bus.subscribe("cam").unwrap();
    assert_eq!(show(&drain(&mut fresh)), ["T"]);
    assert_eq!(try_recv(&mut sub), Some(None));

    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(
        seen,
        [
            StreamEvent::Started("cam".into()),
            StreamEvent::Ended("cam".into()),
            StreamEvent::Started("cam".into()),
        ]
    );
}

#[tokio::test]
async fn end_stream_ends_only_streams_whose_publisher_has_gone() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    assert_eq!(
        bus.end_stream("cam").unwrap_err(),
        BusError::StillPublished {
            stream: "cam".into()
        }
    );
    publisher.detach();
    bus.end_stream("cam").unwrap();
    assert_eq!(sub.recv().await, Some(BusMessage::End));
    assert_eq!(sub.recv().await, None);
    assert_eq!(
        bus.end_stream("cam").unwrap_err(),
        BusError::NotFound {
            stream: "cam".into()
        }
    );
    // The name is free again.
    let _publisher = bus.publish("cam").unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_ends_streams_nobody_can_resume() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    drop(bus);
    // The publisher still holds the bus: the stream is live.
    publisher.send_tracks(av_tracks());
    assert_eq!(show(&drain(&mut sub)), ["T"]);
    drop(publisher);
    assert_eq!(sub.recv().await, Some(BusMessage::End));
    assert_eq!(sub.recv().await, None);
}

#[tokio::test]
async fn publishers_are_held_to_the_stream_contract() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    let unit = |seq| BusMessage::Unit(Arc::new(video(seq, true, 10)));

    assert!(matches!(
        publisher.try_send(unit(0)),
        Err(BusError::NoTracks { .. })
    ));
    assert!(matches!(
        publisher.try_send(BusMessage::Tracks(Arc::from(vec![]))),
        Err(BusError::InvalidTracks { .. })
    ));
    assert!(matches!(
        publisher.try_send(BusMessage::Tracks(Arc::from(vec![
            video_track(),
            video_track()
        ]))),
        Err(BusError::InvalidTracks { .. })
    ));
    publisher.send_tracks(audio_only_tracks());
    assert_eq!(
        publisher.try_send(unit(1)),
        Err(BusError::UnknownTrack {
            stream: "cam".into(),
            track: TrackId(256)
        })
    );
    assert!(matches!(
        publisher.try_send(BusMessage::Gap),
        Err(BusError::NotPublishable { message: "gap", .. })
    ));
    // `send` drops what `try_send` refuses, without panicking.
    publisher.send(unit(2));
    publisher.try_send(BusMessage::End).unwrap();
    assert!(matches!(
        publisher.try_send(BusMessage::Discontinuity),
        Err(BusError::Ended { .. })
    ));
    assert_eq!(show(&drain(&mut sub)), ["T", "E"]);
    drop(publisher);
    assert!(bus.streams().is_empty(), "an ended stream is not resumable");
}

#[tokio::test]
async fn streams_and_stats_describe_the_bus() {
    let bus = InProcessBus::default();
    let b = bus.publish("b").unwrap();
    let a = bus.publish("a").unwrap();
    a.send_tracks(av_tracks());
    let sub1 = bus.subscribe("a").unwrap();
    let _sub2 = bus.subscribe("a").unwrap();
    drop(b);

    let streams = bus.streams();
    let names: Vec<_> = streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(streams[0].subscribers, 2);
    assert_eq!(streams[0].tracks.as_deref(), Some(&*av_tracks()));
    assert!(streams[0].publisher_live && !streams[1].publisher_live);

    drop(sub1);
    let stats = bus.stats();
    assert_eq!(
        (stats.streams, stats.live_publishers, stats.subscribers),
        (2, 1, 1)
    );
    assert!(bus.subscribe("nope").is_none());
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let bus = InProcessBus::default();
    let publisher = bus.publish("cam").unwrap();
    let mut sub = bus.subscribe("cam").unwrap();
    // Cancel a pending recv, then send: the message is still there.
    tokio::select! {
        biased;
        _ = sub.recv() => panic!("nothing was sent yet"),
        () = std::future::ready(()) => {}
    }
    publisher.send_tracks(av_tracks());
    assert!(matches!(sub.recv().await, Some(BusMessage::Tracks(_))));
}

#[tokio::test]
async fn the_bus_is_usable_as_a_trait_object() {
    let bus: Arc<dyn MediaBus> = Arc::new(InProcessBus::default());
    let publisher = bus.publish("cam").unwrap();
    assert_eq!(
        bus.subscribe("other").await.unwrap_err(),
        BusError::NotFound {
            stream: "other".into()
        }
    );
    let mut sub = bus.subscribe("cam").await.unwrap();
    publisher.send_tracks(av_tracks());
    assert_eq!(show(&drain(&mut sub)), ["T"]);
    assert_eq!(sub.stream(), "cam");
    assert_eq!(publisher.stream(), "cam");
}
