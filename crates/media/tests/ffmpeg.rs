//! The demuxer and parameter parsers on real media made by Debian's ffmpeg
//! at test time, checked against ffprobe.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use ferrocast_media::ts::DemuxEvent;
use ferrocast_media::{CodecParams, H264Params, TrackKind};

/// (profile_idc, constraint flags) x264 writes for the profile name ffprobe
/// prints. x264 sets constraint_set0 for Baseline and constraint_set1 for
/// Baseline and Main.
fn x264_profile(name: &str) -> (u8, u8) {
    match name {
        "Constrained Baseline" => (66, 0xc0),
        "Main" => (77, 0x40),
        "High" => (100, 0),
        "High 10" => (110, 0),
        "High 4:2:2" => (122, 0),
        "High 4:4:4 Predictive" => (244, 0),
        other => panic!("unexpected profile {other}"),
    }
}

/// The codec string ffprobe's profile and level imply.
fn expected_avc1(stream: &HashMap<String, String>) -> String {
    let (profile, constraints) = x264_profile(&stream["profile"]);
    let level: u8 = stream["level"].parse().expect("numeric level");
    format!("avc1.{profile:02x}{constraints:02x}{level:02x}")
}

fn video_params(events: &[DemuxEvent]) -> Vec<&H264Params> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Track(t) => match &t.params {
                CodecParams::H264(p) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn probe_kind(path: &Path, kind: &str) -> HashMap<String, String> {
    ffprobe_streams(path)
        .into_iter()
        .find(|s| s.get("codec_type").map(String::as_str) == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} stream"))
}

#[test]
fn ffmpeg_h264_aac_stream() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ts = ffmpeg(
        dir.path(),
        "av.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ],
    );
    let data = std::fs::read(&ts).unwrap();
    let events = demux(&data);
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));

    let all = units(&events);
    let video: Vec<_> = all.iter().filter(|u| u.kind == TrackKind::Video).collect();
    assert_eq!(video.len(), 100);
    let keyframes: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, u)| u.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, vec![0, 25, 50, 75]);
    assert!(
        video.windows(2).all(|w| w[0].dts < w[1].dts),
        "dts increases"
    );
    assert!(video.iter().any(|u| u.pts != u.dts), "B-frames reorder");
    assert!(
        video.windows(2).any(|w| w[1].pts < w[0].pts),
        "pts order differs from decode order"
    );
    assert!(video.iter().all(|u| u.pts >= u.dts));
    for u in &video {
        assert!(u.data.starts_with(&[0, 0, 0, 1]) || u.data.starts_with(&[0, 0, 1]));
    }

    let audio: Vec<_> = all.iter().filter(|u| u.kind == TrackKind::Audio).collect();
    // 4 s × 48000 / 1024 = 187.5 frames, plus the encoder's priming frame.
    assert!(
        (186..=190).contains(&audio.len()),
        "{} audio frames",
        audio.len()
    );
    assert!(audio.windows(2).all(|w| w[1].pts.0 - w[0].pts.0 == 1920));

    let v = probe_kind(&ts, "video");
    let params = video_params(&events);
    assert_eq!(params.len(), 1, "parameters announced once");
    assert_eq!(params[0].codec_string(), expected_avc1(&v));
    assert_eq!(params[0].width.to_string(), v["width"]);
    assert_eq!(params[0].height.to_string(), v["height"]);
    assert_eq!(params[0].frame_rate, Some((25, 1)));

    let a = probe_kind(&ts, "audio");
    let aac = events
        .iter()
        .find_map(|e| match e {
            DemuxEvent::Track(t) => match &t.params {
                CodecParams::Aac(p) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(a["profile"], "LC");
    assert_eq!(aac.codec_string(), "mp4a.40.2");
    assert_eq!(aac.sample_rate.to_string(), a["sample_rate"]);
    assert_eq!(aac.channels.to_string(), a["channels"]);
}

#[test]
fn sps_matches_ffprobe_across_profiles_and_sizes() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (size, extra encoder arguments): cropping, fields, chroma formats,
    // bit depth and scaling matrices all change the SPS syntax.
    let cases: &[(&str, &[&str])] = &[
        ("320x240", &["-profile:v", "baseline"]),
        ("352x288", &["-profile:v", "main"]),
        ("1920x1080", &[]),
        ("322x182", &[]),
        (
            "640x480",
            &["-flags", "+ildct+ilme", "-x264opts", "interlaced=1"],
        ),
        ("320x240", &["-pix_fmt", "yuv422p"]),
        ("320x240", &["-pix_fmt", "yuv444p"]),
        ("320x240", &["-pix_fmt", "yuv420p10le"]),
        ("320x240", &["-x264opts", "cqm=jvt"]),
        ("320x240", &["-pix_fmt", "yuv444p", "-x264opts", "cqm=jvt"]),
    ];
    for (i, (size, extra)) in cases.iter().enumerate() {
        let source = format!("testsrc2=size={size}:rate=30000/1001");
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            &source,
            "-frames:v",
            "3",
            "-c:v",
            "libx264",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-f", "mpegts"]);
        let ts = ffmpeg(dir.path(), &format!("case{i}.ts"), &args);
        let events = demux(&std::fs::read(&ts).unwrap());
        let v = probe_kind(&ts, "video");
        let params = video_params(&events);
        assert_eq!(params.len(), 1, "case {size} {extra:?}");
        let p = params[0];
        assert_eq!(p.codec_string(), expected_avc1(&v), "case {size} {extra:?}");
        assert_eq!(
            (p.width.to_string(), p.height.to_string()),
            (v["width"].clone(), v["height"].clone()),
            "case {size} {extra:?}"
        );
        if !extra.contains(&"+ildct+ilme") {
            assert_eq!(p.frame_rate, Some((30000, 1001)), "case {size} {extra:?}");
        }
        assert_eq!(units(&events).len(), 3, "case {size} {extra:?}");
    }
}

#[test]
fn ffmpeg_stream_chunking_invariance() {
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
            "libx264",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
        ],
    );
    let data = std::fs::read(&ts).unwrap();
    let whole = demux(&data);
    assert!(units(&whole).len() > 60);
    // Every packet boundary ±1 for the first packets, then a spread sample.
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
