//! End to end for HEVC: a real libx265 stream (B-frames, IDR then CRA) in
//! MPEG-TS, demuxed, written as `hvc1` init segment + one chunk per frame,
//! then checked by ffprobe and decoded by ffmpeg.
//!
//! Skipped, with a message, only when ffmpeg/ffprobe are not installed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{probe, run, tools_present};

use std::path::Path;
use std::process::Command;

use ferrocast_cmaf::{Sample, TrackFragment, video_sample_from_annexb, write_fragment, write_init};
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, CodecParams, TrackInfo};
use mp4_atom::{Codec, Decode, Ftyp, Moov};

/// 2 s of 25 fps HEVC from libx265 in MPEG-TS, demuxed: the track and its
/// access units.
fn hevc_source(dir: &Path, size: &str, extra: &[&str]) -> (TrackInfo, Vec<AccessUnit>) {
    let ts = dir.join(format!("{size}.ts"));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-t", "2", "-c:v", "libx265"])
        .args(extra)
        .args(["-x265-params", "keyint=25:log-level=error", "-f", "mpegts"])
        .arg(&ts));
    let mut demux = Demuxer::new();
    let mut events = Vec::new();
    demux.push(&std::fs::read(&ts).unwrap(), &mut events);
    demux.finish(&mut events);
    let mut track = None;
    let mut units = Vec::new();
    for e in events {
        match e {
            DemuxEvent::Track(t) => {
                assert!(track.replace(t).is_none(), "one track announcement");
            }
            DemuxEvent::Unit(u) => units.push(u),
            other => panic!("unexpected {other:?}"),
        }
    }
    (track.unwrap(), units)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Packet {
    pts: i64,
    dts: i64,
    keyframe: bool,
    size: usize,
}

fn write(track: &TrackInfo, units: &[AccessUnit]) -> (Vec<u8>, Vec<Packet>) {
    let mut file = write_init(std::slice::from_ref(track)).unwrap().to_vec();
    let dts0 = units[0].dts.0;
    let mut expected = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let dts = u.dts.0 - dts0;
        let next = units.get(i + 1).map_or(dts + 3600, |n| n.dts.0 - dts0);
        let cto = u.pts.0 - u.dts.0;
        let data = video_sample_from_annexb(&track.params, &u.data).unwrap();
        expected.push(Packet {
            pts: dts + cto,
            dts,
            keyframe: u.keyframe,
            size: data.len(),
        });
        let chunk = write_fragment(
            i as u32 + 1,
            &[TrackFragment {
                track_id: 1,
                base_media_decode_time: dts as u64,
                samples: vec![Sample {
                    duration: (next - dts) as u32,
                    composition_offset: cto as i32,
                    keyframe: u.keyframe,
                    data,
                }],
            }],
        )
        .unwrap();
        file.extend_from_slice(&chunk);
    }
    (file, expected)
}

/// The init segment read back by `mp4-atom` in strict mode: the `hvcC`
/// fields must be the SPS's, with complete VPS/SPS/PPS arrays (ISO/IEC
/// 14496-15 §8.3.3.1, `hvc1`: array_completeness 1).
fn check_hvcc(track: &TrackInfo) {
    let CodecParams::H265(p) = &track.params else {
        panic!("not HEVC");
    };
    let init = write_init(std::slice::from_ref(track)).unwrap();
    let mut buf = &init[..];
    Ftyp::decode(&mut buf).unwrap();
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty());
    let [Codec::Hvc1(hvc1)] = &moov.trak[0].mdia.minf.stbl.stsd.codecs[..] else {
        panic!("unexpected sample entries");
    };
    assert_eq!(
        (u32::from(hvc1.visual.width), u32::from(hvc1.visual.height)),
        (p.width, p.height)
    );
    let c = &hvc1.hvcc;
    assert_eq!(c.configuration_version, 1);
    assert_eq!(c.general_profile_space, p.general_profile_space);
    assert_eq!(c.general_tier_flag, p.general_tier_flag);
    assert_eq!(c.general_profile_idc, p.general_profile_idc);
    assert_eq!(
        u32::from_be_bytes(c.general_profile_compatibility_flags),
        p.general_profile_compatibility_flags
    );
    assert_eq!(
        c.general_constraint_indicator_flags,
        p.general_constraint_indicator_flags
    );
    assert_eq!(c.general_level_idc, p.general_level_idc);
    assert_eq!(c.chroma_format_idc, p.chroma_format_idc);
    assert_eq!(c.bit_depth_luma_minus8 + 8, p.bit_depth_luma);
    assert_eq!(c.bit_depth_chroma_minus8 + 8, p.bit_depth_chroma);
    assert_eq!((c.num_temporal_layers, c.temporal_id_nested), (1, true));
    assert_eq!(c.length_size_minus_one, 3);
    let arrays: Vec<(bool, u8, Vec<Vec<u8>>)> = c
        .arrays
        .iter()
        .map(|a| (a.completeness, a.nal_unit_type, a.nalus.clone()))
        .collect();
    assert_eq!(
        arrays,
        vec![
            (true, 32, vec![p.vps.to_vec()]),
            (true, 33, vec![p.sps.to_vec()]),
            (true, 34, vec![p.pps.to_vec()]),
        ]
    );
}

#[test]
fn hvc1_from_x265_probes_and_decodes() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (size, encoder arguments, ffprobe profile, pixel format)
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("320x240", &[], "Main", "yuv420p"),
        (
            "322x182",
            &["-pix_fmt", "yuv420p10le"],
            "Main 10",
            "yuv420p10le",
        ),
    ];
    for (size, extra, profile, pix_fmt) in cases {
        let (track, units) = hevc_source(dir.path(), size, extra);
        let CodecParams::H265(params) = &track.params else {
            panic!("not HEVC: {:?}", track.params);
        };
        assert_eq!(units.len(), 50);
        check_hvcc(&track);
        let (file, expected) = write(&track, &units);
        assert!(expected.iter().any(|p| p.pts != p.dts), "B-frames");
        let path = dir.path().join(format!("{size}.mp4"));
        std::fs::write(&path, &file).unwrap();

        let json = probe(&path);
        let streams = json["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 1);
        let v = &streams[0];
        assert_eq!(v["codec_name"], "hevc", "{size}");
        assert_eq!(v["codec_tag_string"], "hvc1", "{size}");
        assert_eq!(v["profile"], *profile, "{size}");
        assert_eq!(v["pix_fmt"], *pix_fmt, "{size}");
        assert_eq!(
            v["level"].as_i64(),
            Some(i64::from(params.general_level_idc))
        );
        let (w, h) = size.split_once('x').unwrap();
        assert_eq!(v["width"].as_i64(), Some(w.parse().unwrap()), "{size}");
        assert_eq!(v["height"].as_i64(), Some(h.parse().unwrap()), "{size}");
        assert_eq!(v["time_base"], "1/90000");

        let got: Vec<Packet> = json["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Packet {
                pts: p["pts"].as_i64().unwrap(),
                dts: p["dts"].as_i64().unwrap(),
                keyframe: p["flags"].as_str().unwrap().starts_with('K'),
                size: p["size"].as_str().unwrap().parse().unwrap(),
            })
            .collect();
        assert_eq!(got.len(), 50);
        assert_eq!(got, expected, "{size}");
        assert_eq!(got.iter().filter(|p| p.keyframe).count(), 2);

        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stderr.is_empty(),
            "{size}: ffmpeg decode errors: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
