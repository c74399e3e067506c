//! The packager's assembler (parts, segments, LL-HLS window) fed access
//! units with hostile timestamps: jumps forwards and backwards, pts before
//! dts, keyframes anywhere, breaks and ends in between. No panic, every
//! rendered playlist starts with `#EXTM3U`, and its media sequence number
//! never goes backwards.
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use ferrocast_hls::{RenderOptions, WindowConfig};
use ferrocast_media::{
    AacParams, AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind,
};
use ferrocast_packager::assembler::{Assembler, CutConfig};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// x264's 1280x720 High@3.2 SPS and a matching PPS (as in the packager's tests).
const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x20, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x06, 0x40, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

#[derive(Debug, Arbitrary)]
enum Op {
    Video { dts_step: i32, pts_offset: i16, keyframe: bool },
    Audio { dts_step: i32 },
    Discontinuity,
    Gap,
    PublisherGone,
    Tracks,
    End,
}

fn tracks() -> Option<Arc<[TrackInfo]>> {
    let video = ferrocast_media::h264::params_from_parameter_sets(
        Bytes::from_static(&SPS),
        Bytes::from_static(&PPS),
    )
    .ok()?;
    Some(Arc::from(vec![
        TrackInfo { id: TrackId(256), params: CodecParams::H264(video) },
        TrackInfo {
            id: TrackId(257),
            params: CodecParams::Aac(AacParams {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
            }),
        },
    ]))
}

fn video(dts: i64, pts: i64, keyframe: bool) -> AccessUnit {
    let mut data = vec![0, 0, 0, 1, 0x09, 0xf0];
    if keyframe {
        data.extend_from_slice(&[0, 0, 0, 1]);
        data.extend_from_slice(&SPS);
        data.extend_from_slice(&[0, 0, 0, 1]);
        data.extend_from_slice(&PPS);
        data.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84, 0x21]);
    } else {
        data.extend_from_slice(&[0, 0, 1, 0x41, 0x9a, 0x02, 0x03]);
    }
    AccessUnit {
        track: TrackId(256),
        kind: TrackKind::Video,
        pts: Time90k(pts),
        dts: Time90k(dts),
        keyframe,
        data: Bytes::from(data), captured_unix_ms: None, trace: None,
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let Some(tracks) = tracks() else { return };
    let part_target = Time90k::from_millis(200);
    let cut = CutConfig {
        part_target,
        segment_min: Time90k::from_millis(1000),
        segment_max: Time90k::from_millis(2000),
    };
    let window = WindowConfig { window_segments: 6, ..WindowConfig::new(part_target, 2) };
    let Ok(mut assembler) = Assembler::new(cut, window) else { return };
    let _ = assembler.on_tracks(tracks.clone());
    let (mut video_dts, mut audio_dts) = (0i64, 0i64);
    let mut now_ms = 1_700_000_000_000i64;
    let mut last_msn = 0u64;
    for op in ops.iter().take(2000) {
        now_ms += 40;
        let _ = match *op {
            Op::Video { dts_step, pts_offset, keyframe } => {
                video_dts = video_dts.saturating_add(i64::from(dts_step));
                let pts = video_dts.saturating_add(i64::from(pts_offset));
                assembler.on_unit(&video(video_dts, pts, keyframe), now_ms)
            }
            Op::Audio { dts_step } => {
                audio_dts = audio_dts.saturating_add(i64::from(dts_step));
                let unit = AccessUnit {
                    track: TrackId(257),
                    kind: TrackKind::Audio,
                    pts: Time90k(audio_dts),
                    dts: Time90k(audio_dts),
                    keyframe: true,
                    data: Bytes::from_static(&[0x21, 0x10, 0x05]), captured_unix_ms: None, trace: None,
                };
                assembler.on_unit(&unit, now_ms)
            }
            Op::Discontinuity => assembler.on_discontinuity(),
            Op::Gap => assembler.on_gap(),
            Op::PublisherGone => assembler.on_publisher_gone(),
            Op::Tracks => assembler.on_tracks(tracks.clone()),
            Op::End => assembler.on_end(),
        };
        let playlist = assembler.window.render(&RenderOptions::default());
        assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
        if let Some(msn) = playlist
            .lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .and_then(|v| v.parse::<u64>().ok())
        {
            assert!(msn >= last_msn, "media sequence went back: {last_msn} then {msn}");
            last_msn = msn;
        }
    }
});
