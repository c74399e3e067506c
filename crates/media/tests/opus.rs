#![allow(clippy::unwrap_used)]

//! Opus in MPEG-TS: control-header framing, TOC durations, typed warnings,
//! chunking invariance, arbitrary input, and real libopus output from
//! Debian's ffmpeg checked against ffprobe.

mod common;

use std::process::Command;

use common::*;
use ferrocast_media::opus::OpusError;
use ferrocast_media::ts::{DemuxEvent, DemuxWarning, Demuxer};
use ferrocast_media::{CodecParams, OpusParams, TrackKind};
use proptest::prelude::*;

/// `Opus` registration descriptor and the DVB extension descriptor 0x80
/// with `channel_config_code`, as ffmpeg writes them.
fn opus_descriptors(channel_config: Option<u8>) -> Vec<u8> {
    let mut d = vec![0x05, 4, b'O', b'p', b'u', b's'];
    if let Some(code) = channel_config {
        d.extend_from_slice(&[0x7f, 2, 0x80, code]);
    }
    d
}

/// An `opus_control_header` for `size` bytes (au_size as 0xFF runs, like
/// ffmpeg writes it) with an optional start_trim, then the packet.
fn opus_au(packet: &[u8], start_trim: Option<u16>) -> Vec<u8> {
    let mut au = vec![0x7f, 0xe0 | if start_trim.is_some() { 0x10 } else { 0 }];
    let mut n = packet.len() as i64;
    loop {
        au.push(n.min(255) as u8);
        n -= 255;
        if n < 0 {
            break;
        }
    }
    if let Some(trim) = start_trim {
        au.extend_from_slice(&trim.to_be_bytes());
    }
    au.extend_from_slice(packet);
    au
}

/// A CELT packet of `len` bytes: TOC config 31 (20 ms, 960 samples) code 0,
/// or config 29 (5 ms, 240 samples) when `short`.
fn packet(len: usize, short: bool) -> Vec<u8> {
    let toc = if short { 29 << 3 } else { 31 << 3 };
    let mut p = vec![toc];
    p.extend((1..len).map(|i| (i * 13 % 256) as u8));
    p
}

/// PAT, PMT with one Opus stream, and the given PES payloads at 90 kHz PTS.
fn opus_stream(channel_config: Option<u8>, pes: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    let desc = opus_descriptors(channel_config);
    w.pmt(PMT_PID, 0, &[(0x06, AUDIO_PID, &desc)]);
    for (pts, payload) in pes {
        w.pes(AUDIO_PID, 0xbd, *pts, None, payload, true);
    }
    w.out
}

fn opus_tracks(events: &[DemuxEvent]) -> Vec<&OpusParams> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Track(t) => match &t.params {
                CodecParams::Opus(p) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn packets_become_units_timed_by_their_toc() {
    // Three packets in one PES (20, 5, 20 ms; the middle one 300 bytes so its
    // au_size needs a 0xFF run), then a second PES.
    let mut first = opus_au(&packet(40, false), Some(312));
    first.extend(opus_au(&packet(300, true), None));
    first.extend(opus_au(&packet(255, false), None));
    let second = opus_au(&packet(50, false), None);
    let data = opus_stream(Some(2), &[(90_000, first), (90_000 + 4050, second)]);
    let events = demux(&data);
    assert!(warnings(&events).is_empty(), "{events:?}");
    // The Track event comes first, with the first start_trim as pre-skip.
    assert!(matches!(events[0], DemuxEvent::Track(_)), "{events:?}");
    assert_eq!(
        opus_tracks(&events),
        vec![&OpusParams {
            channels: 2,
            sample_rate: 48_000,
            pre_skip: 312,
            channel_mapping_family: 0,
        }]
    );
    let units = units(&events);
    let pts: Vec<i64> = units.iter().map(|u| u.pts.0).collect();
    // 960 samples are 1800 ticks, 240 are 450.
    assert_eq!(pts, vec![90_000, 91_800, 92_250, 94_050]);
    let sizes: Vec<usize> = units.iter().map(|u| u.data.len()).collect();
    assert_eq!(sizes, vec![40, 300, 255, 50]);
    assert!(
        units
            .iter()
            .all(|u| u.keyframe && u.kind == TrackKind::Audio)
    );
    assert!(units.iter().all(|u| u.pts == u.dts));
    assert_eq!(units[1].data[0], 29 << 3, "control header stripped");
}

#[test]
fn channels_come_from_the_extension_descriptor() {
    for (code, channels) in [(None, Some(2)), (Some(1), Some(1)), (Some(2), Some(2))] {
        let data = opus_stream(code, &[(0, opus_au(&packet(10, false), None))]);
        let events = demux(&data);
        let got = opus_tracks(&events).first().map(|p| p.channels);
        assert_eq!(got, channels, "channel_config_code {code:?}");
    }
    // Dual mono and multichannel need mapping families 255 / 1: reported
    // as unsupported rather than packaged wrongly.
    for code in [0, 6, 0x81] {
        let data = opus_stream(Some(code), &[(0, opus_au(&packet(10, false), None))]);
        let events = demux(&data);
        assert!(
            matches!(
                events[..],
                [DemuxEvent::Unsupported { stream_type: 0x06, codec, .. }] if codec.starts_with("Opus")
            ),
            "code {code}: {events:?}"
        );
    }
}

#[test]
fn malformed_access_units_are_typed_warnings() {
    let good = opus_au(&packet(20, false), None);
    let cases: Vec<(Vec<u8>, DemuxWarning)> = vec![
        // No control header prefix.
        (
            [&[0xfc, 0x01][..], &good].concat(),
            DemuxWarning::BadOpus {
                pid: AUDIO_PID,
                error: OpusError::BadPrefix,
            },
        ),
        // au_size runs past the end of the PES.
        (
            [&good[..], &[0x7f, 0xe0, 0x30, 0xfc]].concat(),
            DemuxWarning::TruncatedOpus {
                pid: AUDIO_PID,
                bytes: 4,
            },
        ),
        // The PES ends inside the control header.
        (
            [&good[..], &[0x7f, 0xe0, 0xff]].concat(),
            DemuxWarning::TruncatedOpus {
                pid: AUDIO_PID,
                bytes: 3,
            },
        ),
        // Code 3 with a frame count of zero.
        (
            [&good[..], &opus_au(&[0xfb, 0x00, 1, 2], None)].concat(),
            DemuxWarning::BadOpus {
                pid: AUDIO_PID,
                error: OpusError::BadFrameCount,
            },
        ),
        // An empty access unit.
        (
            [&good[..], &[0x7f, 0xe0, 0x00]].concat(),
            DemuxWarning::BadOpus {
                pid: AUDIO_PID,
                error: OpusError::EmptyPacket,
            },
        ),
    ];
    for (payload, want) in cases {
        let data = opus_stream(None, &[(0, payload.clone()), (9000, good.clone())]);
        let events = demux(&data);
        assert_eq!(warnings(&events), vec![&want], "{payload:02x?}");
        // What came before the damage and the next PES survive.
        let good_units = units(&events).len();
        let expected = if matches!(
            want,
            DemuxWarning::BadOpus {
                error: OpusError::BadPrefix,
                ..
            }
        ) {
            1
        } else {
            2
        };
        assert_eq!(good_units, expected, "{payload:02x?}");
    }
}

#[test]
fn opus_chunking_invariance() {
    let mut pes = Vec::new();
    for i in 0..12u64 {
        let mut payload = Vec::new();
        for k in 0..(1 + i % 3) {
            payload.extend(opus_au(
                &packet(30 + (i as usize * 41 + k as usize * 97) % 400, k == 1),
                (i == 0 && k == 0).then_some(312),
            ));
        }
        pes.push((i * 5400, payload));
    }
    let data = opus_stream(Some(2), &pes);
    let whole = demux(&data);
    assert!(warnings(&whole).is_empty());
    assert_eq!(units(&whole).len(), 24);
    for at in 0..=data.len() {
        assert_eq!(demux_split(&data, at), whole, "split at {at}");
    }
    assert_eq!(demux_chunks(&data, &[1]), whole, "byte by byte");
    assert_eq!(demux_chunks(&data, &[7, 1316, 100, 188, 189]), whole);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary PES payloads on an Opus PID never panic and give the same
    /// events however they are chunked.
    #[test]
    fn arbitrary_opus_payloads_never_panic(
        payloads in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    3 => Just(vec![0x7fu8, 0xe0]),
                    2 => Just(vec![0x7fu8, 0xf8, 0xff]),
                    1 => Just(vec![0x7fu8, 0xe4, 0x03]),
                    4 => prop::collection::vec(any::<u8>(), 0..40),
                ],
                0..8,
            ),
            0..8,
        ),
        at in any::<prop::sample::Index>(),
    ) {
        let pes: Vec<(u64, Vec<u8>)> = payloads
            .into_iter()
            .enumerate()
            .map(|(i, parts)| (i as u64 * 1800, parts.concat()))
            .collect();
        let data = opus_stream(Some(2), &pes);
        let whole = demux(&data);
        prop_assert_eq!(&demux_split(&data, at.index(data.len() + 1)), &whole);
        let mut demux = Demuxer::new();
        let mut out = Vec::new();
        for piece in data.chunks(97) {
            demux.push(piece, &mut out);
        }
        demux.finish(&mut out);
        prop_assert_eq!(out, whole);
    }
}

/// `(pts, duration)` of every audio packet, from ffprobe.
fn probe_packets(path: &std::path::Path) -> Vec<(i64, i64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a"])
        .args(["-show_entries", "packet=pts,duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            let mut f = l.split(',');
            let pts = f.next().unwrap().parse().unwrap();
            let duration = f.next().unwrap().parse().unwrap();
            (pts, duration)
        })
        .collect()
}

#[test]
fn ffmpeg_libopus_matches_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("mono.ts", &[][..]),
        ("stereo.ts", &["-ac", "2", "-frame_duration", "10"][..]),
    ] {
        let mut args = vec!["-f", "lavfi", "-i", "sine", "-t", "3", "-c:a", "libopus"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-f", "mpegts"]);
        let ts = ffmpeg(dir.path(), name, &args);
        let data = std::fs::read(&ts).unwrap();
        let events = demux(&data);
        assert!(
            warnings(&events).is_empty(),
            "{name}: {:?}",
            warnings(&events)
        );
        let probe = probe_streams_audio(&ts);
        let tracks = opus_tracks(&events);
        assert_eq!(tracks.len(), 1, "{name}");
        assert_eq!(tracks[0].channels.to_string(), probe["channels"], "{name}");
        // libopus's pre-skip at 48 kHz, sent as the first start_trim.
        assert_eq!(tracks[0].pre_skip, 312, "{name}");
        let packets = probe_packets(&ts);
        let units = units(&events);
        assert_eq!(units.len(), packets.len(), "{name}: packet count");
        for (i, (u, (pts, duration))) in units.iter().zip(&packets).enumerate() {
            assert_eq!(u.pts.0, *pts, "{name}: packet {i} pts");
            let samples = tracks[0].clone();
            let ours = CodecParams::Opus(samples).unit_samples(&u.data).unwrap();
            assert_eq!(
                i64::from(ours) * 90_000 / 48_000,
                *duration,
                "{name}: packet {i}"
            );
        }
        // Chunking does not change real media either.
        assert_eq!(demux_chunks(&data, &[7, 1316, 100, 188, 189]), events);
    }
}

fn probe_streams_audio(path: &std::path::Path) -> std::collections::HashMap<String, String> {
    ffprobe_streams(path)
        .into_iter()
        .find(|s| s.get("codec_name").map(String::as_str) == Some("opus"))
        .expect("an opus stream")
}
