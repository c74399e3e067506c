//! The transcoder on real media made by Debian's ffmpeg at test time,
//! demuxed by our MPEG-TS demuxer (or, for AV1, split into temporal units
//! here), with the output checked by our SPS parser and independently by
//! ffprobe.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind, av1, h264};
use ferrocast_transcode::gpu::StreamEncoders;
use ferrocast_transcode::ladder::{Ladder, Rung, X264Preset};
use ferrocast_transcode::plan::SourceCodec;
use ferrocast_transcode::{Output, Transcoder, plan};

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !ok {
        eprintln!("SKIP: ffmpeg/ffprobe not installed; real-media test not run");
    }
    ok
}

fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// `ffprobe` of the first stream with `-count_frames`, and the picture
/// type of every frame.
fn probe(path: &Path) -> (HashMap<String, String>, Vec<String>) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-of",
            "default",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "frame=pict_type",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success());
    let types = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .collect();
    (stream, types)
}

struct Demuxed {
    tracks: Vec<TrackInfo>,
    units: Vec<AccessUnit>,
}

fn demux(path: &Path) -> Demuxed {
    let bytes = std::fs::read(path).expect("read clip");
    let mut demux = Demuxer::new();
    let mut events = Vec::new();
    demux.push(&bytes, &mut events);
    demux.finish(&mut events);
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut units = Vec::new();
    for event in events {
        match event {
            DemuxEvent::Track(t) => {
                tracks.retain(|old| old.id != t.id);
                tracks.push(t);
            }
            DemuxEvent::Unit(u) => units.push(u),
            DemuxEvent::Warning(w) => panic!("demux warning on ffmpeg's output: {w}"),
            _ => {}
        }
    }
    Demuxed { tracks, units }
}

fn video_track(tracks: &[TrackInfo]) -> &TrackInfo {
    tracks
        .iter()
        .find(|t| t.kind() == TrackKind::Video)
        .expect("a video track")
}

fn run(transcoder: &mut Transcoder, units: &[AccessUnit]) -> Vec<Output> {
    let mut out = Vec::new();
    for unit in units {
        transcoder.push(unit, &mut out).expect("push");
    }
    transcoder.finish(&mut out).expect("finish");
    out
}

/// Where the cadence puts IDRs, worked out here independently of the
/// crate: the first frame, then the first frame on or after each multiple
/// of `interval` on the 90 kHz clock.
fn cadence_keys(sorted_pts: &[i64], interval: i64) -> Vec<i64> {
    let mut keys = vec![sorted_pts[0]];
    for pair in sorted_pts.windows(2) {
        if pair[1].div_euclid(interval) != pair[0].div_euclid(interval) {
            keys.push(pair[1]);
        }
    }
    keys
}

fn rung_units(out: &[Output], index: usize) -> Vec<&AccessUnit> {
    out.iter()
        .filter_map(|o| match o {
            Output::Video { rung, unit } if *rung == index => Some(unit),
            _ => None,
        })
        .collect()
}

#[test]
fn three_rung_ladder_from_h264_with_b_frames() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 5 s of 720p30 with B-frames and a 1.5 s GOP (off our 2 s cadence,
    // so the output keyframes can only come from the cadence), plus AAC.
    let clip = ffmpeg(
        dir.path(),
        "clip.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "5",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-g",
            "45",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-f",
            "mpegts",
        ],
    );
    let source = demux(&clip);
    let video = video_track(&source.tracks).clone();
    let source_video: Vec<&AccessUnit> = source
        .units
        .iter()
        .filter(|u| u.kind == TrackKind::Video)
        .collect();
    let source_audio: Vec<&AccessUnit> = source
        .units
        .iter()
        .filter(|u| u.kind == TrackKind::Audio)
        .collect();
    assert_eq!(source_video.len(), 150);
    assert!(
        source_video.iter().any(|u| u.dts != u.pts),
        "the source must have B-frames (reordered timestamps)"
    );

    let ladder = Ladder {
        name: "test".into(),
        rungs: vec![
            Rung::new("720p", 720, 2500),
            Rung::new("480p", 480, 1200),
            Rung::new("360p", 360, 700),
        ],
        keyframe_interval_ms: 2000,
        source_passthrough: false,
        audio_bitrate_kbps: 128,
    };
    let plan = plan(&ladder, &video).unwrap();
    assert!(
        plan.rungs
            .iter()
            .all(|r| r.x264_preset == X264Preset::Veryfast)
    );
    let cadence = plan.cadence;
    let sizes: Vec<(u32, u32)> = plan.rungs.iter().map(|r| (r.width, r.height)).collect();
    assert_eq!(sizes, [(1280, 720), (854, 480), (640, 360)]);

    let mut transcoder = Transcoder::new(plan, StreamEncoders::cpu("test: CPU")).unwrap();
    transcoder.set_tracks(&source.tracks).unwrap();
    let out = run(&mut transcoder, &source.units);

    // The source's presentation times, and where the cadence puts IDRs:
    // the first frame, then the first frame on or after each multiple of
    // 2 s on the 90 kHz clock.
    let source_pts: Vec<i64> = {
        let set: BTreeSet<i64> = source_video.iter().map(|u| u.pts.0).collect();
        set.into_iter().collect()
    };
    let expected_keys = cadence_keys(&source_pts, cadence.interval.0);
    assert!(expected_keys.len() >= 3, "{expected_keys:?}");

    let tracks = transcoder.tracks();
    for (index, &(width, height)) in sizes.iter().enumerate() {
        let units = rung_units(&out, index);
        // No frame lost or invented, and the source's timeline kept.
        let mut pts: Vec<i64> = units.iter().map(|u| u.pts.0).collect();
        pts.sort_unstable();
        assert_eq!(
            pts, source_pts,
            "rung {index}: pts differ from the source's"
        );
        // Decode order: DTS strictly increasing, never after PTS.
        for pair in units.windows(2) {
            assert!(
                pair[1].dts > pair[0].dts,
                "rung {index}: DTS not increasing"
            );
        }
        assert!(units.iter().all(|u| u.dts <= u.pts && u.track == video.id));
        // IDRs exactly on the cadence, the same on every rung.
        let keys: Vec<i64> = units
            .iter()
            .filter(|u| u.keyframe)
            .map(|u| u.pts.0)
            .collect();
        assert_eq!(
            keys, expected_keys,
            "rung {index}: keyframes off the cadence"
        );
        for unit in &units {
            assert_eq!(
                unit.keyframe,
                h264::is_keyframe(&unit.data),
                "keyframe flag vs IDR NAL"
            );
        }
        // The SPS of every keyframe says the rung's size.
        for unit in units.iter().filter(|u| u.keyframe) {
            let params = h264::params_from_access_unit(&unit.data)
                .expect("SPS+PPS on keyframes")
                .unwrap();
            assert_eq!((params.width, params.height), (width, height));
        }
        let track = tracks.rungs[index].as_ref().expect("rung track known");
        assert_eq!(track.params.resolution(), Some((width, height)));
        assert!(matches!(&track.params, CodecParams::H264(p) if p.profile_idc == 100));

        // An independent decoder agrees: write the rung as an Annex-B file.
        let path = dir.path().join(format!("rung{index}.h264"));
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.data.iter().copied()).collect();
        std::fs::write(&path, bytes).unwrap();
        let (stream, types) = probe(&path);
        assert_eq!(stream["codec_name"], "h264");
        assert_eq!(stream["width"], width.to_string());
        assert_eq!(stream["height"], height.to_string());
        assert_eq!(stream["nb_read_frames"], "150", "rung {index}");
        assert_eq!(
            types.iter().filter(|t| *t == "I").count(),
            expected_keys.len(),
            "rung {index}: {types:?}"
        );
    }

    // AAC passes through untouched.
    let audio_out: Vec<&AccessUnit> = out
        .iter()
        .filter_map(|o| match o {
            Output::Audio(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(audio_out, source_audio);
    assert_eq!(tracks.audio.len(), 1);
    assert!(matches!(tracks.audio[0].params, CodecParams::Aac(_)));
    assert_eq!(tracks.passthrough, None);

    let stats = transcoder.stats();
    assert_eq!(stats.video_units_in, 150);
    assert_eq!(stats.frames_decoded, 150);
    assert_eq!(stats.decode_errors, 0);
    assert_eq!(stats.audio_passed, source_audio.len() as u64);
    for rung in &stats.rungs {
        assert_eq!(
            (rung.frames_in, rung.frames_out, rung.frames_decimated),
            (150, 150, 0)
        );
        assert_eq!(rung.keyframes_forced, expected_keys.len() as u64);
        assert!(rung.latency_max >= rung.latency_last);
    }
    eprintln!(
        "3-rung ladder (720p/480p/360p, veryfast/zerolatency): {:.1} source fps of capacity ({} frames in {:?}); max latency per rung {:?}",
        stats.fps_capacity(),
        stats.frames_decoded,
        stats.busy,
        stats
            .rungs
            .iter()
            .map(|r| r.latency_max)
            .collect::<Vec<_>>()
    );
}

/// Opus in MPEG-TS becomes AAC; a 60 fps source is capped at 30 on one
/// rung and not on the other, with the keyframes still shared.
#[test]
fn opus_to_aac_and_frame_rate_cap() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = ffmpeg(
        dir.path(),
        "opus.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=60",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            // Source keyframes every 0.7 s, off the ladder's 1 s grid: with
            // the source passed through, the rungs must follow them.
            "-g",
            "42",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-ac",
            "2",
            "-f",
            "mpegts",
        ],
    );
    let source = demux(&clip);
    let video = video_track(&source.tracks).clone();
    assert!(
        source
            .tracks
            .iter()
            .any(|t| matches!(t.params, CodecParams::Opus(_)))
    );
    let source_pts: BTreeSet<i64> = source
        .units
        .iter()
        .filter(|u| u.kind == TrackKind::Video)
        .map(|u| u.pts.0)
        .collect();
    assert_eq!(source_pts.len(), 180);

    let mut fast = Rung::new("360p60", 360, 800);
    fast.max_fps = 60;
    fast.x264_preset = X264Preset::Ultrafast;
    let mut slow = Rung::new("240p", 240, 400);
    slow.x264_preset = X264Preset::Ultrafast;
    let ladder = Ladder {
        name: "test".into(),
        rungs: vec![fast, slow],
        keyframe_interval_ms: 1000,
        source_passthrough: true,
        audio_bitrate_kbps: 96,
    };
    let plan = plan(&ladder, &video).unwrap();
    assert_eq!(plan.rungs[0].frame_rate, (60, 1));
    assert_eq!(plan.rungs[1].frame_rate, (30, 1));
    let mut transcoder = Transcoder::new(plan, StreamEncoders::cpu("test: CPU")).unwrap();
    transcoder.set_tracks(&source.tracks).unwrap();
    let out = run(&mut transcoder, &source.units);

    let full: Vec<i64> = rung_units(&out, 0).iter().map(|u| u.pts.0).collect();
    let capped: Vec<i64> = rung_units(&out, 1).iter().map(|u| u.pts.0).collect();
    assert_eq!(full.iter().copied().collect::<BTreeSet<_>>(), source_pts);
    assert_eq!(capped.len(), 90, "60 fps capped to 30");
    assert!(
        capped.windows(2).all(|w| w[1] - w[0] == 3000),
        "even 30 fps spacing"
    );
    let keys = |i| -> Vec<i64> {
        rung_units(&out, i)
            .iter()
            .filter(|u| u.keyframe)
            .map(|u| u.pts.0)
            .collect()
    };
    assert_eq!(keys(0), keys(1));
    // `source_passthrough`: IDRs exactly on the source's keyframes
    // (KeyframeMode::FollowSource), not on the 1 s cadence, so that rung
    // segments line up with the source rendition's.
    let mut source_keys: Vec<i64> = source
        .units
        .iter()
        .filter(|u| u.kind == TrackKind::Video && u.keyframe)
        .map(|u| u.pts.0)
        .collect();
    source_keys.sort_unstable();
    assert_eq!(source_keys.len(), 5, "{source_keys:?}");
    assert_eq!(keys(0), source_keys);
    let sorted: Vec<i64> = source_pts.iter().copied().collect();
    assert_ne!(keys(0), cadence_keys(&sorted, 90_000));

    // The passthrough rendition is the source video, untouched.
    let passthrough: Vec<&AccessUnit> = out
        .iter()
        .filter_map(|o| match o {
            Output::Passthrough(u) => Some(u),
            _ => None,
        })
        .collect();
    let source_video: Vec<&AccessUnit> = source
        .units
        .iter()
        .filter(|u| u.kind == TrackKind::Video)
        .collect();
    assert_eq!(passthrough, source_video);

    // Audio: AAC at 48 kHz, frames 1024 samples (1920 ticks) apart,
    // covering the source's duration.
    let tracks = transcoder.tracks();
    let aac = match &tracks.audio[..] {
        [
            TrackInfo {
                params: CodecParams::Aac(p),
                ..
            },
        ] => p.clone(),
        other => panic!("expected one AAC track, got {other:?}"),
    };
    assert_eq!(
        (aac.sample_rate, aac.channels, aac.object_type),
        (48_000, 2, 2)
    );
    let audio: Vec<&AccessUnit> = out
        .iter()
        .filter_map(|o| match o {
            Output::Audio(u) => Some(u),
            _ => None,
        })
        .collect();
    assert!(
        audio.windows(2).all(|w| w[1].pts.0 - w[0].pts.0 == 1920),
        "AAC frames not contiguous"
    );
    // 3 s is 140.6 frames of 1024 samples; the encoder adds one of priming
    // and the last partial one.
    assert!(
        (140..=144).contains(&audio.len()),
        "{} AAC frames",
        audio.len()
    );
    let source_audio_start = source
        .units
        .iter()
        .find(|u| u.kind == TrackKind::Audio)
        .unwrap()
        .pts
        .0;
    // Priming: the first packet starts 1024 samples before the audio.
    assert!(
        (audio[0].pts.0 - (source_audio_start - 1920)).abs() <= 1920,
        "{} vs {source_audio_start}",
        audio[0].pts.0
    );

    // ffprobe decodes it (as ADTS).
    let mut adts = Vec::new();
    for unit in &audio {
        let len = unit.data.len() + 7;
        adts.extend_from_slice(&[
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (2 << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1f,
            0xfc,
        ]);
        adts.extend_from_slice(&unit.data);
    }
    let path = dir.path().join("audio.aac");
    std::fs::write(&path, adts).unwrap();
    let (stream, _) = probe(&path);
    assert_eq!(stream["codec_name"], "aac");
    assert_eq!(stream["sample_rate"], "48000");
    assert_eq!(stream["nb_read_frames"], audio.len().to_string());
    assert_eq!(transcoder.stats().audio_encoded, audio.len() as u64);
}

/// An AV1 source (libaom, made at test time) as the bus carries it:
/// temporal units in the low overhead format with every OBU sized, the
/// track described by its sequence header. libdav1d decodes it; the rungs
/// come out as H.264 that ffprobe reads back, frame for frame.
#[test]
fn av1_source_to_h264_rungs() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = ffmpeg(
        dir.path(),
        "clip.obu",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "25",
            "-f",
            "obu",
        ],
    );
    let data = std::fs::read(&clip).unwrap();
    // Temporal units: each starts at a temporal delimiter (AV1 §7.5); the
    // OBUs are re-written sized, as the MPEG-TS demuxer hands them on.
    let mut tus: Vec<Vec<u8>> = Vec::new();
    for obu in av1::obus(&data) {
        let obu = obu.unwrap();
        if obu.header.obu_type == av1::obu_type::TEMPORAL_DELIMITER || tus.is_empty() {
            tus.push(Vec::new());
        }
        obu.write_sized(tus.last_mut().unwrap());
    }
    assert_eq!(tus.len(), 50);
    let params = av1::params_from_temporal_unit(&tus[0])
        .expect("a sequence header first")
        .unwrap();
    assert_eq!((params.width, params.height), (320, 240));
    let video = TrackInfo {
        id: TrackId(256),
        params: CodecParams::Av1(params),
    };
    // 25 fps on the 90 kHz clock, from 1 s; no reordering in AV1 TUs.
    let units: Vec<AccessUnit> = tus
        .iter()
        .enumerate()
        .map(|(k, tu)| {
            let pts = Time90k(90_000 + 3600 * k as i64);
            AccessUnit {
                track: video.id,
                kind: TrackKind::Video,
                pts,
                dts: pts,
                keyframe: av1::is_random_access_point(tu),
                data: Bytes::copy_from_slice(tu),
                captured_unix_ms: None,
                trace: None,
            }
        })
        .collect();
    assert!(units[0].keyframe);

    let mut small = Rung::new("180p", 180, 250);
    small.x264_preset = X264Preset::Ultrafast;
    let mut full = Rung::new("240p", 240, 400);
    full.x264_preset = X264Preset::Ultrafast;
    let ladder = Ladder {
        name: "av1".into(),
        rungs: vec![full, small],
        keyframe_interval_ms: 1000,
        source_passthrough: false,
        audio_bitrate_kbps: 96,
    };
    let plan = plan(&ladder, &video).unwrap();
    assert_eq!(plan.source_codec, SourceCodec::Av1);
    let sizes: Vec<(u32, u32)> = plan.rungs.iter().map(|r| (r.width, r.height)).collect();
    assert_eq!(sizes, [(320, 240), (240, 180)]);
    let mut transcoder = Transcoder::new(plan, StreamEncoders::cpu("test: CPU")).unwrap();
    transcoder.set_tracks(std::slice::from_ref(&video)).unwrap();
    let out = run(&mut transcoder, &units);
    let stats = transcoder.stats();
    assert_eq!((stats.frames_decoded, stats.decode_errors), (50, 0));

    let source_pts: Vec<i64> = units.iter().map(|u| u.pts.0).collect();
    let expected_keys = cadence_keys(&source_pts, 90_000);
    assert_eq!(expected_keys, [90_000, 180_000]);
    let tracks = transcoder.tracks();
    for (index, &(width, height)) in sizes.iter().enumerate() {
        let units = rung_units(&out, index);
        let pts: Vec<i64> = units.iter().map(|u| u.pts.0).collect();
        assert_eq!(pts, source_pts, "rung {index}");
        let keys: Vec<i64> = units
            .iter()
            .filter(|u| u.keyframe)
            .map(|u| u.pts.0)
            .collect();
        assert_eq!(keys, expected_keys, "rung {index}");
        let track = tracks.rungs[index].as_ref().expect("rung track known");
        assert!(
            matches!(&track.params, CodecParams::H264(p) if (p.width, p.height) == (width, height))
        );
        let path = dir.path().join(format!("av1-rung{index}.h264"));
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.data.iter().copied()).collect();
        std::fs::write(&path, bytes).unwrap();
        let (stream, types) = probe(&path);
        assert_eq!(stream["codec_name"], "h264");
        assert_eq!(stream["width"], width.to_string());
        assert_eq!(stream["height"], height.to_string());
        assert_eq!(stream["nb_read_frames"], "50", "rung {index}");
        assert_eq!(types.iter().filter(|t| *t == "I").count(), 2, "{types:?}");
    }
}

/// The rungs run on worker threads: between units, `poll` hands out every
/// frame pushed so far; a shed rung stops at once while the others go on in
/// order; `finish` drains them all.
#[test]
fn poll_shed_and_finish_with_rung_workers() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // No B-frames: every pushed unit decodes at once.
    let clip = ffmpeg(
        dir.path(),
        "clip.ts",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "25",
            "-f",
            "mpegts",
        ],
    );
    let source = demux(&clip);
    let video = video_track(&source.tracks).clone();
    let rungs = ["240p", "180p", "144p"]
        .iter()
        .zip([240, 180, 144])
        .map(|(name, height)| {
            let mut r = Rung::new(name, height, 200);
            r.x264_preset = X264Preset::Ultrafast;
            r
        })
        .collect();
    let ladder = Ladder {
        name: "workers".into(),
        rungs,
        keyframe_interval_ms: 1000,
        source_passthrough: false,
        audio_bitrate_kbps: 96,
    };
    let mut transcoder =
        Transcoder::new(plan(&ladder, &video).unwrap(), StreamEncoders::cpu("test")).unwrap();
    transcoder.set_tracks(&source.tracks).unwrap();
    let mut out = Vec::new();
    let video_units: Vec<&AccessUnit> = source
        .units
        .iter()
        .filter(|u| u.kind == TrackKind::Video)
        .collect();
    assert_eq!(video_units.len(), 50);
    for (k, unit) in video_units.iter().enumerate() {
        transcoder.push(unit, &mut out).unwrap();
        // Each poll returns once a rung finished a frame; the timeout is
        // generous (it waits only as long as the encoders take).
        while transcoder.pending() > 0 {
            transcoder
                .poll(&mut out, std::time::Duration::from_secs(60))
                .unwrap();
        }
        // zerolatency, no B-frames: each rung has output every frame so far.
        for rung in 0..3 {
            let expected = if rung == 2 && k >= 20 { 20 } else { k + 1 };
            assert_eq!(
                rung_units(&out, rung).len(),
                expected,
                "rung {rung}, unit {k}"
            );
        }
        if k == 19 {
            assert!(transcoder.shed_rung(2));
            assert!(!transcoder.shed_rung(2));
            assert_eq!(transcoder.active_rungs(), [true, true, false]);
        }
    }
    transcoder.finish(&mut out).unwrap();
    let stats = transcoder.stats();
    for rung in 0..3 {
        let units = rung_units(&out, rung);
        let expected = if rung == 2 { 20 } else { 50 };
        assert_eq!(units.len(), expected, "rung {rung}");
        assert!(
            units.windows(2).all(|w| w[1].dts > w[0].dts),
            "rung {rung} in order"
        );
        assert_eq!(stats.rungs[rung].frames_out, expected as u64);
    }
    assert_eq!(transcoder.pending(), 0);
}
