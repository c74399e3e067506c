//! AV1 from Debian's encoders (libaom, SVT-AV1), made at test time: the
//! sequence header parser, codec strings and random access detection checked
//! against ffprobe, and the MPEG-TS demuxer fed the OBUs in the start-code
//! framing of "Carriage of AV1 in MPEG-2 TS" by a test-only TS writer.
//!
//! Debian's ffmpeg 5.1 cannot write that framing itself: its `-f mpegts`
//! puts AV1 in stream_type 0x06 with no registration descriptor and no
//! start codes, which is not the AOM carriage (and ffprobe 5.1 reads it back
//! as `bin_data`). [`ffmpeg_51_mpegts_av1_is_not_recognised`] pins that.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use ferrocast_media::av1::{
    self, Av1Params, obu_type, obus, params_from_temporal_unit, temporal_unit_from_ts,
    temporal_unit_to_ts,
};
use ferrocast_media::ts::DemuxEvent;
use ferrocast_media::{CodecParams, TrackKind};

/// Encodes 320x240-class test video to a low overhead AV1 file (`-f obu`)
/// and returns its bytes.
fn encode(dir: &Path, name: &str, size: &str, seconds: &str, codec_args: &[&str]) -> Vec<u8> {
    let source = format!("testsrc2=size={size}:rate=25");
    let mut args = vec!["-f", "lavfi", "-i", &source, "-t", seconds];
    args.extend_from_slice(codec_args);
    args.extend_from_slice(&["-f", "obu"]);
    std::fs::read(ffmpeg(dir, name, &args)).unwrap()
}

fn libaom<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "-c:v",
        "libaom-av1",
        "-usage",
        "realtime",
        "-cpu-used",
        "8",
        "-g",
        "25",
    ];
    args.extend_from_slice(extra);
    args
}

/// Splits a low overhead bitstream into temporal units: each starts at a
/// temporal delimiter (AV1 §7.5: "The first OBU in a temporal unit must be
/// a temporal delimiter").
fn temporal_units(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for obu in obus(data) {
        let obu = obu.unwrap();
        if obu.header.obu_type == obu_type::TEMPORAL_DELIMITER || out.is_empty() {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().extend_from_slice(obu.bytes);
    }
    out
}

fn probe_video(path: &Path) -> HashMap<String, String> {
    ffprobe_streams(path)
        .into_iter()
        .find(|s| s.get("codec_type").map(String::as_str) == Some("video"))
        .expect("a video stream")
}

/// ffprobe's per-packet key flags of an `-f obu` file.
fn probe_key_flags(path: &Path) -> Vec<bool> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_packets",
            "-of",
            "csv=p=0",
            "-show_entries",
        ])
        .arg("packet=flags")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.starts_with('K'))
        .collect()
}

/// `seq_profile` for ffprobe's AV1 profile name (AV1 Annex A.2).
fn profile(name: &str) -> u8 {
    match name {
        "Main" => 0,
        "High" => 1,
        "Professional" => 2,
        other => panic!("unexpected AV1 profile {other}"),
    }
}

#[test]
fn libaom_sequence_headers_match_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (size, encoder arguments, bit depth, expected codec string suffix
    // after the level): 8-bit 4:2:0; an odd size in 10 bits; 4:4:4 (High
    // profile); BT.709 full range, which puts the optional fields in.
    let cases: &[(&str, &[&str], u8, &str)] = &[
        ("320x240", &["-pix_fmt", "yuv420p"], 8, "M.08"),
        ("322x182", &["-pix_fmt", "yuv420p10le"], 10, "M.10"),
        (
            "320x240",
            &["-pix_fmt", "yuv444p"],
            8,
            "M.08.0.000.01.01.01.0",
        ),
        (
            "320x240",
            &[
                "-pix_fmt",
                "yuvj420p",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
                "-colorspace",
                "bt709",
                "-color_range",
                "pc",
            ],
            8,
            "M.08.0.110.01.01.01.1",
        ),
    ];
    for (i, (size, extra, depth, suffix)) in cases.iter().enumerate() {
        let name = format!("case{i}.obu");
        let data = encode(dir.path(), &name, size, "2", &libaom(extra));
        let path = dir.path().join(&name);
        let v = probe_video(&path);
        let tus = temporal_units(&data);
        assert_eq!(tus.len(), 50, "case {i}");
        let p: Av1Params = params_from_temporal_unit(&tus[0])
            .expect("a sequence header in the first temporal unit")
            .unwrap();
        assert_eq!(format!("{}x{}", p.width, p.height), *size, "case {i}");
        assert_eq!(
            (p.width.to_string(), p.height.to_string()),
            (v["width"].clone(), v["height"].clone())
        );
        assert_eq!(p.seq_profile, profile(&v["profile"]), "case {i}");
        assert_eq!(p.seq_level_idx_0.to_string(), v["level"], "case {i}");
        assert_eq!(p.color.bit_depth, *depth, "case {i}");
        assert_eq!(
            p.codec_string(),
            format!("av01.{}.{:02}{suffix}", p.seq_profile, p.seq_level_idx_0),
            "case {i}"
        );
        // libaom writes no timing info by default: no frame rate from the
        // bitstream.
        assert_eq!(p.frame_rate, None);
        // The av1C record starts with the sequence header's fields.
        let record = p.configuration_record();
        assert_eq!(record[0], 0x81);
        assert_eq!(record[1], (p.seq_profile << 5) | p.seq_level_idx_0);
        assert_eq!(&record[4..], &p.sequence_header[..]);

        // Random access points agree with ffprobe's key flags (-g 25: two).
        let ours: Vec<bool> = tus.iter().map(|t| av1::is_random_access_point(t)).collect();
        assert_eq!(ours, probe_key_flags(&path), "case {i}");
        assert_eq!(ours.iter().filter(|k| **k).count(), 2, "case {i}");
        assert!(ours[0] && ours[25], "case {i}");
    }
}

#[test]
fn svt_av1_hidden_frames_and_keyframes() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // SVT-AV1's random access structure: hidden alternate reference frames
    // and shown existing frames inside temporal units.
    let data = encode(
        dir.path(),
        "svt.obu",
        "320x240",
        "1",
        &["-c:v", "libsvtav1", "-preset", "12", "-g", "25"],
    );
    let tus = temporal_units(&data);
    assert_eq!(tus.len(), 25);
    let frame_headers = |tu: &[u8]| {
        obus(tu)
            .map(Result::unwrap)
            .filter(|o| matches!(o.header.obu_type, obu_type::FRAME | obu_type::FRAME_HEADER))
            .count()
    };
    assert!(
        tus.iter().any(|t| frame_headers(t) > 1),
        "expected a temporal unit with several frames"
    );
    let p = params_from_temporal_unit(&tus[0]).unwrap().unwrap();
    assert_eq!((p.width, p.height), (320, 240));
    assert!(av1::is_random_access_point(&tus[0]));
    let ours: Vec<bool> = tus.iter().map(|t| av1::is_random_access_point(t)).collect();
    assert_eq!(ours, probe_key_flags(&dir.path().join("svt.obu")));
}

/// A TS with one AV1 stream (PID 0x100) carrying `tus` at 25 fps from PTS
/// 90000, start-code framed, and the PMT descriptors given.
fn av1_ts(tus: &[Vec<u8>], descriptors: &[u8]) -> Vec<u8> {
    let framed: Vec<Vec<u8>> = tus
        .iter()
        .map(|tu| temporal_unit_to_ts(tu).unwrap())
        .collect();
    av1_ts_framed(&framed, descriptors)
}

/// As [`av1_ts`] with PES payloads given as they go on the wire.
fn av1_ts_framed(payloads: &[Vec<u8>], descriptors: &[u8]) -> Vec<u8> {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x06, VIDEO_PID, descriptors)]);
    for (i, payload) in payloads.iter().enumerate() {
        let pts = 90_000 + i as u64 * 3600;
        // "using the stream_id 0xBD (private_stream_id_1)".
        w.pes(VIDEO_PID, 0xbd, pts, None, payload, false);
    }
    w.out
}

/// The PMT descriptors of the AOM carriage: registration `AV01` first, then
/// the AV1 video descriptor (the first four bytes of `av1C`).
fn aom_descriptors(p: &Av1Params) -> Vec<u8> {
    let mut d = vec![0x05, 0x04, b'A', b'V', b'0', b'1', 0x80, 0x04];
    d.extend_from_slice(&p.configuration_record()[..4]);
    d
}

#[test]
fn demuxes_start_code_framed_av1_from_libaom() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = encode(dir.path(), "ts.obu", "320x240", "2", &libaom(&[]));
    let tus = temporal_units(&data);
    let expected = params_from_temporal_unit(&tus[0]).unwrap().unwrap();
    let ts = av1_ts(&tus, &aom_descriptors(&expected));

    let events = demux(&ts);
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    let tracks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Track(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].params, CodecParams::Av1(expected.clone()));
    assert_eq!(tracks[0].id.0, VIDEO_PID);
    let units = units(&events);
    assert_eq!(units.len(), 50);
    for (i, (u, tu)) in units.iter().zip(&tus).enumerate() {
        assert_eq!(u.kind, TrackKind::Video);
        // The framing is undone: the unit is the temporal unit, every OBU
        // sized.
        assert_eq!(u.data, temporal_unit_from_ts(tu).unwrap(), "unit {i}");
        assert_eq!(u.pts.0, 90_000 + i as i64 * 3600);
        assert_eq!(u.dts, u.pts);
        assert_eq!(u.keyframe, i % 25 == 0, "unit {i}");
    }

    // Chunking invariance: every split gives the same events.
    let mut splits: Vec<usize> = (0..8).flat_map(|k| [k * 188, k * 188 + 1]).collect();
    splits.extend((0..ts.len()).step_by(ts.len() / 61 + 1));
    for at in splits {
        assert_eq!(demux_split(&ts, at.min(ts.len())), events, "split at {at}");
    }
    assert_eq!(demux_chunks(&ts, &[1]), events, "byte by byte");
    assert_eq!(demux_chunks(&ts, &[7, 1316, 100, 188, 189]), events);

    // The registration descriptor alone identifies AV1 too; so does the
    // AV1 video descriptor alone.
    let reg_only = av1_ts(&tus, b"\x05\x04AV01");
    assert_eq!(units_of(&demux(&reg_only)), 50);
    let desc_only = av1_ts(&tus, &aom_descriptors(&expected)[6..]);
    assert_eq!(units_of(&demux(&desc_only)), 50);
    // Private data without either is not taken for AV1.
    assert_eq!(units_of(&demux(&av1_ts(&tus, &[]))), 0);

    // Starting mid-stream: units before the next random access point are
    // dropped, and the track is announced there.
    let late = av1_ts(&tus[3..], &aom_descriptors(&expected));
    let events = demux(&late);
    let first_unit = events
        .iter()
        .position(|e| matches!(e, DemuxEvent::Unit(_)))
        .unwrap();
    assert!(matches!(events[first_unit - 1], DemuxEvent::Track(_)));
    assert_eq!(units_of(&events), 50 - 25);
}

fn units_of(events: &[DemuxEvent]) -> usize {
    units(events).len()
}

#[test]
fn damaged_av1_access_units_are_warned_and_dropped() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = encode(dir.path(), "bad.obu", "160x120", "1", &libaom(&[]));
    let tus = temporal_units(&data);
    let p = params_from_temporal_unit(&tus[0]).unwrap().unwrap();
    let mut framed: Vec<Vec<u8>> = tus
        .iter()
        .map(|tu| temporal_unit_to_ts(tu).unwrap())
        .collect();
    // Unit 5: a frame OBU whose size runs past the end.
    framed[5] = vec![0, 0, 1, 0x12, 0x00, 0, 0, 1, 0x32, 0x7f, 0x01];
    let events = demux(&av1_ts_framed(&framed, &aom_descriptors(&p)));
    let w = warnings(&events);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        matches!(
            w[0],
            ferrocast_media::ts::DemuxWarning::BadAv1 { pid: VIDEO_PID, .. }
        ),
        "{w:?}"
    );
    assert_eq!(units_of(&events), 24);
}

#[test]
fn ffmpeg_51_mpegts_av1_is_not_recognised() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ts = ffmpeg(
        dir.path(),
        "ffmpeg.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-t",
            "1",
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-f",
            "mpegts",
        ],
    );
    let events = demux(&std::fs::read(&ts).unwrap());
    // 5.1: no registration descriptor, no AV1 descriptor: unnamed private
    // data, neither a track nor an "unsupported codec" report. A later
    // ffmpeg that writes the AOM carriage must come through as AV1.
    if !events.is_empty() {
        assert!(
            events.iter().any(|e| matches!(
                e,
                DemuxEvent::Track(t) if matches!(t.params, CodecParams::Av1(_))
            )),
            "{events:?}"
        );
        assert_eq!(units_of(&events), 25);
    }
}
