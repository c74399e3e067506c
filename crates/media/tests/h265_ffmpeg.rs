//! HEVC from Debian's libx265, made at test time: the demuxer's tracks and
//! access units and the SPS parser, checked against ffprobe.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use ferrocast_media::ts::DemuxEvent;
use ferrocast_media::{CodecParams, H265Params, TrackKind};

fn hevc_params(events: &[DemuxEvent]) -> Vec<&H265Params> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Track(t) => match &t.params {
                CodecParams::H265(p) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn probe_video(path: &Path) -> HashMap<String, String> {
    ffprobe_streams(path)
        .into_iter()
        .find(|s| s.get("codec_type").map(String::as_str) == Some("video"))
        .expect("a video stream")
}

/// `general_profile_idc` for the profile name ffprobe prints (H.265 A.3).
fn profile_idc(name: &str) -> u8 {
    match name {
        "Main" => 1,
        "Main 10" => 2,
        "Main Still Picture" => 3,
        "Rext" => 4,
        other => panic!("unexpected HEVC profile {other}"),
    }
}

/// The `hvc1` string ffprobe's profile and level imply, with the
/// compatibility and constraint fields libx265 writes: Main sets
/// general_profile_compatibility_flag[ 1 ] and [ 2 ] (Main streams also
/// conform to Main 10), reversed → `6`; Main 10 sets [ 2 ] → `4`; the
/// constraint byte is progressive_source + frame_only_constraint = `90`.
fn expected_hvc1(stream: &HashMap<String, String>) -> String {
    let idc = profile_idc(&stream["profile"]);
    let compat = match idc {
        1 => "6",
        2 => "4",
        other => panic!("no compatibility flags known for profile {other}"),
    };
    let level: u8 = stream["level"].parse().expect("numeric level");
    format!("hvc1.{idc}.{compat}.L{level}.90")
}

fn x265_ts(dir: &Path, name: &str, size: &str, extra: &[&str]) -> std::path::PathBuf {
    let source = format!("testsrc2=size={size}:rate=25");
    let mut args = vec!["-f", "lavfi", "-i", &source, "-t", "2", "-c:v", "libx265"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-x265-params", "keyint=25:log-level=error", "-f", "mpegts"]);
    ffmpeg(dir, name, &args)
}

#[test]
fn x265_sps_matches_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (size, extra encoder arguments, luma bit depth): a plain size, a
    // conformance window (322x182 codes as 328x184 with min CU 8), Main 10,
    // a 1080p level-4-class stream.
    let cases: &[(&str, &[&str], u8)] = &[
        ("320x240", &[], 8),
        ("322x182", &[], 8),
        ("320x240", &["-pix_fmt", "yuv420p10le"], 10),
        ("1920x1080", &["-preset", "ultrafast"], 8),
    ];
    for (i, (size, extra, depth)) in cases.iter().enumerate() {
        let ts = x265_ts(dir.path(), &format!("case{i}.ts"), size, extra);
        let events = demux(&std::fs::read(&ts).unwrap());
        assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
        let v = probe_video(&ts);
        let params = hevc_params(&events);
        assert_eq!(params.len(), 1, "case {size} {extra:?}: announced once");
        let p = params[0];
        assert_eq!(p.codec_string(), expected_hvc1(&v), "case {size} {extra:?}");
        assert_eq!(
            (p.width.to_string(), p.height.to_string()),
            (v["width"].clone(), v["height"].clone()),
            "case {size} {extra:?}"
        );
        assert_eq!(format!("{}x{}", p.width, p.height), *size);
        assert_eq!((p.bit_depth_luma, p.bit_depth_chroma), (*depth, *depth));
        assert_eq!(p.chroma_format_idc, 1);
        assert_eq!(p.frame_rate, Some((25, 1)), "case {size} {extra:?}");
        assert_eq!(v["r_frame_rate"], "25/1");

        let video: Vec<_> = units(&events)
            .into_iter()
            .filter(|u| u.kind == TrackKind::Video)
            .collect();
        assert_eq!(video.len(), 50, "case {size} {extra:?}");
        assert!(video[0].keyframe);
        // keyint=25: an IRAP picture (IDR, then CRA with open GOP) every 25
        // frames in presentation order, i.e. one second apart in PTS.
        let keyframes: Vec<_> = video.iter().filter(|u| u.keyframe).collect();
        assert_eq!(keyframes.len(), 2, "case {size} {extra:?}");
        assert_eq!(keyframes[1].pts.0 - keyframes[0].pts.0, 90_000);
        assert!(video.windows(2).all(|w| w[0].dts < w[1].dts));
        assert!(video.iter().any(|u| u.pts != u.dts), "B-frames reorder");
    }
}

#[test]
fn hevc_aac_chunking_invariance() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ts = ffmpeg(
        dir.path(),
        "short.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=44100",
            "-t",
            "1",
            "-c:v",
            "libx265",
            "-x265-params",
            "keyint=10:log-level=error",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ],
    );
    let data = std::fs::read(&ts).unwrap();
    let whole = demux(&data);
    assert_eq!(hevc_params(&whole).len(), 1);
    let video = units(&whole)
        .iter()
        .filter(|u| u.kind == TrackKind::Video)
        .count();
    assert_eq!(video, 25);
    let mut splits: Vec<usize> = (0..12)
        .flat_map(|k| [k * 188, k * 188 + 1, k * 188 + 187])
        .collect();
    splits.extend((0..data.len()).step_by(data.len() / 97 + 1));
    for at in splits {
        assert_eq!(
            demux_split(&data, at.min(data.len())),
            whole,
            "split at {at}"
        );
    }
    assert_eq!(demux_chunks(&data, &[1]), whole, "byte by byte");
    assert_eq!(demux_chunks(&data, &[7, 1316, 100, 188, 189]), whole);
}
