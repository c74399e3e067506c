//! End to end for AV1: real libaom output (`-f obu`, made at test time),
//! split into temporal units, written as an `av01` init segment + one chunk
//! per temporal unit, then read back by `mp4-atom` in strict mode, checked by
//! ffprobe and decoded by ffmpeg with libdav1d.
//!
//! Skipped, with a message, only when ffmpeg/ffprobe are not installed.

#![allow(clippy::unwrap_used)]

mod common;

use common::{probe, run, tools_present};

use std::path::Path;
use std::process::Command;

use ferrocast_cmaf::{Sample, TrackFragment, video_sample_from_annexb, write_fragment, write_init};
use ferrocast_media::av1::{self, obu_type, obus};
use ferrocast_media::{Av1Params, CodecParams, TrackId, TrackInfo};
use mp4_atom::{Codec, Colr, Decode, FourCC, Ftyp, Moov};

/// 2 s of 25 fps AV1 from libaom as temporal units (each from a temporal
/// delimiter to the next), and the track they make.
fn av1_source(dir: &Path, size: &str, extra: &[&str]) -> (TrackInfo, Vec<Vec<u8>>) {
    let path = dir.join(format!("{size}.obu"));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25"))
        .args(["-t", "2", "-c:v", "libaom-av1", "-usage", "realtime"])
        .args(["-cpu-used", "8", "-g", "25"])
        .args(extra)
        .args(["-f", "obu"])
        .arg(&path));
    let data = std::fs::read(&path).unwrap();
    let mut tus: Vec<Vec<u8>> = Vec::new();
    for obu in obus(&data) {
        let obu = obu.unwrap();
        if obu.header.obu_type == obu_type::TEMPORAL_DELIMITER || tus.is_empty() {
            tus.push(Vec::new());
        }
        tus.last_mut().unwrap().extend_from_slice(obu.bytes);
    }
    let params = av1::params_from_temporal_unit(&tus[0]).unwrap().unwrap();
    let track = TrackInfo {
        id: TrackId(256),
        params: CodecParams::Av1(params),
    };
    (track, tus)
}

/// Init segment + one chunk per temporal unit, 3600 ticks (25 fps) each.
fn write(track: &TrackInfo, tus: &[Vec<u8>]) -> Vec<u8> {
    let mut file = write_init(std::slice::from_ref(track)).unwrap().to_vec();
    for (i, tu) in tus.iter().enumerate() {
        let data = video_sample_from_annexb(&track.params, tu).unwrap();
        // §"AV1 Sample Format": no temporal delimiters in samples.
        assert!(obus(&data).all(|o| o.unwrap().header.obu_type != obu_type::TEMPORAL_DELIMITER));
        let chunk = write_fragment(
            i as u32 + 1,
            &[TrackFragment {
                track_id: 1,
                base_media_decode_time: i as u64 * 3600,
                samples: vec![Sample {
                    duration: 3600,
                    composition_offset: 0,
                    keyframe: av1::is_random_access_point(tu),
                    data,
                }],
            }],
        )
        .unwrap();
        file.extend_from_slice(&chunk);
    }
    file
}

/// The init segment read back by `mp4-atom` in strict mode: the `av01`
/// entry's size and `av1C` fields are the sequence header's, `configOBUs`
/// is the sequence header OBU, and `colr` is there exactly when the
/// sequence header describes its colours.
fn check_init(p: &Av1Params) {
    let track = TrackInfo {
        id: TrackId(256),
        params: CodecParams::Av1(p.clone()),
    };
    let init = write_init(std::slice::from_ref(&track)).unwrap();
    let mut buf = &init[..];
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    assert!(ftyp.compatible_brands.contains(&FourCC::new(b"av01")));
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty());
    let [Codec::Av01(av01)] = &moov.trak[0].mdia.minf.stbl.stsd.codecs[..] else {
        panic!("unexpected sample entries");
    };
    assert_eq!(
        (u32::from(av01.visual.width), u32::from(av01.visual.height)),
        (p.width, p.height)
    );
    let c = &av01.av1c;
    assert_eq!(c.seq_profile, p.seq_profile);
    assert_eq!(c.seq_level_idx_0, p.seq_level_idx_0);
    assert_eq!(c.seq_tier_0, p.seq_tier_0);
    assert_eq!(c.high_bitdepth, p.color.bit_depth > 8);
    assert_eq!(c.twelve_bit, p.color.bit_depth == 12);
    assert_eq!(c.monochrome, p.color.mono_chrome);
    assert_eq!(c.chroma_subsampling_x, p.color.subsampling_x);
    assert_eq!(c.chroma_subsampling_y, p.color.subsampling_y);
    assert_eq!(c.initial_presentation_delay, None);
    assert_eq!(c.config_obus, p.sequence_header.to_vec());
    if p.color.color_description_present {
        assert_eq!(
            av01.colr,
            Some(Colr::Nclx {
                colour_primaries: u16::from(p.color.color_primaries),
                transfer_characteristics: u16::from(p.color.transfer_characteristics),
                matrix_coefficients: u16::from(p.color.matrix_coefficients),
                full_range_flag: p.color.full_range,
            })
        );
    } else {
        assert_eq!(av01.colr, None);
    }
}

/// Frames ffmpeg decodes with libdav1d, checking it reports no errors.
fn dav1d_frames(path: &Path) -> usize {
    let out = run(Command::new("ffmpeg")
        .args(["-v", "error", "-c:v", "libdav1d", "-i"])
        .arg(path)
        .args(["-f", "framemd5", "-"]));
    assert!(
        out.stderr.is_empty(),
        "decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count()
}

#[test]
fn av01_from_libaom_probes_and_decodes() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // (size, encoder arguments, ffprobe pixel format)
    let cases: &[(&str, &[&str], &str)] = &[
        ("320x240", &[], "yuv420p"),
        ("322x182", &["-pix_fmt", "yuv420p10le"], "yuv420p10le"),
        (
            "320x240",
            &[
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
                "-colorspace",
                "bt709",
            ],
            "yuv420p",
        ),
    ];
    for (size, extra, pix_fmt) in cases {
        let (track, tus) = av1_source(dir.path(), size, extra);
        let CodecParams::Av1(params) = &track.params else {
            unreachable!()
        };
        assert_eq!(tus.len(), 50);
        check_init(params);
        let file = write(&track, &tus);
        let path = dir.path().join(format!("{size}-{}.mp4", extra.len()));
        std::fs::write(&path, &file).unwrap();

        let json = probe(&path);
        let streams = json["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 1);
        let v = &streams[0];
        assert_eq!(v["codec_name"], "av1", "{size}");
        assert_eq!(v["codec_tag_string"], "av01", "{size}");
        assert_eq!(v["pix_fmt"], *pix_fmt, "{size}");
        let (w, h) = size.split_once('x').unwrap();
        assert_eq!(v["width"].as_i64(), Some(w.parse().unwrap()), "{size}");
        assert_eq!(v["height"].as_i64(), Some(h.parse().unwrap()), "{size}");
        assert_eq!(v["time_base"], "1/90000");
        if params.color.color_description_present {
            assert_eq!(v["color_primaries"], "bt709");
            assert_eq!(v["color_space"], "bt709");
        }
        let packets = json["packets"].as_array().unwrap();
        assert_eq!(packets.len(), 50);
        let keys: Vec<i64> = packets
            .iter()
            .filter(|p| p["flags"].as_str().unwrap().starts_with('K'))
            .map(|p| p["pts"].as_i64().unwrap())
            .collect();
        assert_eq!(keys, [0, 90_000], "{size}");

        assert_eq!(dav1d_frames(&path), 50, "{size}");
    }
}
