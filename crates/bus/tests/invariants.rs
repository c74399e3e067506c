//! Random interleavings of publishing, reconnecting, joining and reading:
//! whatever happens, every subscriber's view keeps the bus's promises.
#![allow(clippy::unwrap_used)] // tests unwrap; helpers outside #[test] fns too

mod support;

use std::sync::Arc;

use ferrocast_bus::{BusConfig, BusMessage, InProcessBus, MESSAGE_OVERHEAD_BYTES, Subscriber};
use ferrocast_media::Time90k;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::*;

const SOFT: usize = 8_000;
const HARD: usize = 32_000;
const MAX_UNIT: usize = 4_000;

#[derive(Debug, Clone)]
enum Op {
    Video {
        keyframe: bool,
        len: usize,
    },
    Audio {
        len: usize,
    },
    /// Switch between two track sets (both with video and audio).
    ChangeTracks,
    Discontinuity,
    /// Drop the publisher and publish again.
    Reconnect,
    /// A new subscriber joins.
    Join,
    /// Subscriber `who` (modulo how many there are) reads up to `n` messages.
    Read {
        who: usize,
        n: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (prop::bool::weighted(0.15), 0..MAX_UNIT).prop_map(|(keyframe, len)| Op::Video { keyframe, len }),
        4 => (0..MAX_UNIT / 8).prop_map(|len| Op::Audio { len }),
        1 => Just(Op::ChangeTracks),
        1 => Just(Op::Discontinuity),
        1 => Just(Op::Reconnect),
        1 => Just(Op::Join),
        6 => (0usize..8, 0usize..12).prop_map(|(who, n)| Op::Read { who, n }),
    ]
}

struct Reader {
    sub: Subscriber,
    got: Vec<BusMessage>,
    /// Subscribed before any unit was published.
    from_the_start: bool,
}

impl Reader {
    fn new(sub: Subscriber, from_the_start: bool) -> Self {
        Reader {
            sub,
            got: Vec::new(),
            from_the_start,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// With a hard bound that slow readers do reach.
    #[test]
    fn every_subscriber_sees_gops_from_their_keyframe_in_order_within_bounds(
        ops in prop::collection::vec(op(), 1..400)
    ) {
        run(ops, HARD)?;
    }

    /// With a hard bound no reader can reach, only whole GOPs are ever lost.
    #[test]
    fn below_the_hard_bound_only_whole_gops_are_lost(ops in prop::collection::vec(op(), 1..400)) {
        run(ops, UNREACHABLE)?;
    }
}

/// A hard bound above anything 400 steps can queue.
const UNREACHABLE: usize = 1 << 30;

fn run(ops: Vec<Op>, hard: usize) -> Result<(), TestCaseError> {
    let bus = InProcessBus::new(BusConfig {
        subscriber_queue_bytes: SOFT,
        subscriber_hard_limit_bytes: hard,
        gop_cache_bytes: 20_000,
        gop_cache_max_duration: Time90k(50),
        ..BusConfig::default()
    });
    let tracks_a = av_tracks();
    let tracks_b: Arc<[_]> = Arc::from(vec![video_track(), audio_track(44_100)]);
    let mut use_b = false;

    let mut publisher = bus.publish("s").unwrap();
    publisher.send_tracks(tracks_a.clone());
    // Drained after every step: must lose nothing.
    let mut fast = Reader::new(bus.subscribe("s").unwrap(), true);
    let mut readers = vec![Reader::new(bus.subscribe("s").unwrap(), true)];
    let mut published: Vec<i64> = Vec::new();
    let mut starts_gop: Vec<bool> = Vec::new();
    let mut seq = 0i64;

    for op in ops {
        match op {
            Op::Video { keyframe, len } => {
                publisher.send_unit(video(seq, keyframe, len));
                published.push(seq);
                starts_gop.push(keyframe);
                seq += 1;
            }
            Op::Audio { len } => {
                publisher.send_unit(audio(seq, len));
                published.push(seq);
                starts_gop.push(false);
                seq += 1;
            }
            Op::ChangeTracks => {
                use_b = !use_b;
                publisher.send_tracks(if use_b {
                    tracks_b.clone()
                } else {
                    tracks_a.clone()
                });
            }
            Op::Discontinuity => publisher.send(BusMessage::Discontinuity),
            Op::Reconnect => {
                drop(publisher);
                publisher = bus.publish("s").unwrap();
            }
            Op::Join => readers.push(Reader::new(
                bus.subscribe("s").unwrap(),
                published.is_empty(),
            )),
            Op::Read { who, n } => {
                let count = readers.len();
                let reader = &mut readers[who % count];
                for _ in 0..n {
                    match try_recv(&mut reader.sub) {
                        Some(Some(m)) => reader.got.push(m),
                        _ => break,
                    }
                }
            }
        }
        fast.got.extend(drain(&mut fast.sub));
        for r in &readers {
            let queued = r.sub.stats().queued_bytes;
            prop_assert!(
                queued <= hard + MAX_UNIT + MESSAGE_OVERHEAD_BYTES,
                "{queued} bytes queued"
            );
        }
    }
    publisher.end();

    // Everything from the first video keyframe on is what a reader that
    // joined before any unit may receive.
    let first_video_key = starts_gop
        .iter()
        .position(|&s| s)
        .unwrap_or(published.len());
    let entitled = (published.len() - first_video_key) as u64;

    fast.got.extend(drain(&mut fast.sub));
    prop_assert_eq!(fast.sub.dropped_units(), 0);
    prop_assert!(!fast.got.contains(&BusMessage::Gap));
    prop_assert_eq!(
        check_delivery(&fast.got, &published, false) as u64,
        entitled
    );

    for mut r in readers.into_iter().chain(std::iter::once(fast)) {
        r.got.extend(drain(&mut r.sub));
        prop_assert_eq!(r.got.last(), Some(&BusMessage::End));
        prop_assert_eq!(try_recv(&mut r.sub), Some(None));
        let units = check_delivery(&r.got, &published, false) as u64;
        if r.from_the_start {
            // Every unit it was entitled to was delivered or counted as dropped.
            prop_assert_eq!(units + r.sub.dropped_units(), entitled);
        }
        if hard == UNREACHABLE {
            check_whole_gops(&r.got, &published, &starts_gop);
        }
    }
    Ok(())
}
