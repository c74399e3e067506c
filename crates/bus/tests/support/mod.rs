//! Helpers shared by the bus's integration tests.
#![allow(dead_code, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use ferrocast_bus::{BusMessage, Subscriber};
use ferrocast_media::{
    AacParams, AccessUnit, CodecParams, H264Params, Time90k, TrackId, TrackInfo, TrackKind,
};

pub const VIDEO: TrackId = TrackId(256);
pub const AUDIO: TrackId = TrackId(257);

pub fn video_track() -> TrackInfo {
    TrackInfo {
        id: VIDEO,
        params: CodecParams::H264(H264Params {
            sps: Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xee, 0x3c, 0x80]),
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 31,
            width: 1280,
            height: 720,
            frame_rate: Some((30, 1)),
        }),
    }
}

pub fn audio_track(sample_rate: u32) -> TrackInfo {
    TrackInfo {
        id: AUDIO,
        params: CodecParams::Aac(AacParams {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate,
            channels: 2,
        }),
    }
}

pub fn av_tracks() -> Arc<[TrackInfo]> {
    Arc::from(vec![video_track(), audio_track(48_000)])
}

pub fn audio_only_tracks() -> Arc<[TrackInfo]> {
    Arc::from(vec![audio_track(48_000)])
}

/// A video unit whose pts is its sequence number, so tests can spot holes.
pub fn video(seq: i64, keyframe: bool, len: usize) -> AccessUnit {
    AccessUnit {
        track: VIDEO,
        kind: TrackKind::Video,
        pts: Time90k(seq),
        dts: Time90k(seq),
        keyframe,
        data: payload(len),
        captured_unix_ms: None,
        trace: None,
    }
}

/// An audio unit whose pts is its sequence number (every audio unit is a keyframe).
pub fn audio(seq: i64, len: usize) -> AccessUnit {
    AccessUnit {
        track: AUDIO,
        kind: TrackKind::Audio,
        pts: Time90k(seq),
        dts: Time90k(seq),
        keyframe: true,
        data: payload(len),
        captured_unix_ms: None,
        trace: None,
    }
}

/// `len` bytes, all sharing one allocation so big tests stay small.
pub fn payload(len: usize) -> Bytes {
    static BIG: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let big = BIG.get_or_init(|| Bytes::from(vec![0xAB; 1 << 20]));
    if len <= big.len() {
        big.slice(..len)
    } else {
        Bytes::from(vec![0xAB; len])
    }
}

/// One message if one is ready: `Some(Some(m))`, `Some(None)` after `End`,
/// `None` if the subscriber would wait.
pub fn try_recv(sub: &mut Subscriber) -> Option<Option<BusMessage>> {
    match sub.poll_recv(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(m) => Some(m),
        Poll::Pending => None,
    }
}

/// Every message ready now.
pub fn drain(sub: &mut Subscriber) -> Vec<BusMessage> {
    let mut out = Vec::new();
    while let Some(Some(m)) = try_recv(sub) {
        out.push(m);
    }
    out
}

/// A compact rendering for assertions: `T` tracks, `K5` video keyframe with
/// pts 5, `v6` other video, `a7` audio, `D`, `G`, `E`.
pub fn show(messages: &[BusMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m {
            BusMessage::Tracks(_) => "T".to_owned(),
            BusMessage::Unit(u) => match (u.kind, u.keyframe) {
                (TrackKind::Video, true) => format!("K{}", u.pts.0),
                (TrackKind::Video, false) => format!("v{}", u.pts.0),
                (TrackKind::Audio, _) => format!("a{}", u.pts.0),
            },
            BusMessage::Discontinuity => "D".to_owned(),
            BusMessage::Gap => "G".to_owned(),
            BusMessage::HandedOver(at) => format!("H{}", at.0),
            BusMessage::End => "E".to_owned(),
        })
        .collect()
}

/// Check what one subscriber received against the bus's promises, given the
/// pts of every unit published in order. Returns how many units it got.
///
/// - units arrive in publication order;
/// - the first unit, and the first after every `Gap`, starts a GOP (a video
///   keyframe, or any audio unit when `audio_only`);
/// - any other unit directly follows the previous one received: no unit
///   inside a GOP is ever missing.
pub fn check_delivery(received: &[BusMessage], published: &[i64], audio_only: bool) -> usize {
    let position = |pts: i64| {
        published
            .iter()
            .position(|&p| p == pts)
            .unwrap_or_else(|| panic!("unit {pts} was never published"))
    };
    let mut previous: Option<usize> = None;
    let mut after_gap = true;
    let mut units = 0;
    for (i, message) in received.iter().enumerate() {
        match message {
            BusMessage::Unit(u) => {
                units += 1;
                let at = position(u.pts.0);
                let starts_gop = u.keyframe && (audio_only || u.kind == TrackKind::Video);
                if after_gap {
                    assert!(
                        starts_gop,
                        "message {i}: first unit after a start or a gap is not a keyframe: {:?}",
                        show(received)
                    );
                } else {
                    assert_eq!(
                        Some(at),
                        previous.map(|p| p + 1),
                        "message {i}: a unit is missing or out of order without a gap: {:?}",
                        show(received)
                    );
                }
                if let Some(p) = previous {
                    assert!(at > p, "message {i}: out of order");
                }
                previous = Some(at);
                after_gap = false;
            }
            BusMessage::Gap => after_gap = true,
            BusMessage::End => assert_eq!(i, received.len() - 1, "End is not last"),
            BusMessage::Tracks(_) | BusMessage::Discontinuity | BusMessage::HandedOver(_) => {}
        }
    }
    units
}

/// A waker that counts its wakes.
#[derive(Default)]
pub struct CountingWaker(pub AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Check that no GOP this subscriber received lost its tail to a `Gap`: the
/// last unit before each `Gap` must be the last of its GOP, that is, the
/// next unit published after it starts a GOP. (Holds whenever the hard bound
/// was not reached; only then may a GOP be cut short.)
///
/// `published` holds every unit's pts in order, `starts_gop` whether each
/// began a GOP.
pub fn check_whole_gops(received: &[BusMessage], published: &[i64], starts_gop: &[bool]) {
    let mut last_unit: Option<usize> = None;
    for (i, message) in received.iter().enumerate() {
        match message {
            BusMessage::Unit(u) => {
                last_unit = published.iter().position(|&p| p == u.pts.0);
            }
            BusMessage::Gap => {
                if let Some(p) = last_unit.take() {
                    assert!(
                        starts_gop.get(p + 1).copied().unwrap_or(true),
                        "message {i}: the GOP before this gap lost its tail: {:?}",
                        show(received)
                    );
                }
            }
            _ => {}
        }
    }
}
