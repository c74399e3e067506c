#![allow(clippy::unwrap_used)]

//! The assembler, driven with synthetic access units and no I/O: part and
//! segment cutting, timestamp jumps, reconnects and the end of a stream.

use std::sync::Arc;

use bytes::Bytes;
use ferrocast_hls::{RenderOptions, WindowConfig};
use ferrocast_media::{
    AacParams, AccessUnit, CodecParams, OpusParams, Time90k, TrackId, TrackInfo, TrackKind,
};
use ferrocast_packager::assembler::{Assembler, CutConfig, TrackSet};

/// x264's 1280x720 High@3.2 SPS and a matching PPS.
const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x20, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
    0x10, 0x00, 0x00, 0x06, 0x40, 0xf1, 0x83, 0x19, 0x60,
];
const PPS: [u8; 6] = [0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
const FRAME: i64 = 3600; // 25 fps

fn tracks() -> Arc<[TrackInfo]> {
    let video = ferrocast_media::h264::params_from_parameter_sets(
        Bytes::from_static(&SPS),
        Bytes::from_static(&PPS),
    )
    .unwrap();
    Arc::from(vec![
        TrackInfo {
            id: TrackId(256),
            params: CodecParams::H264(video),
        },
        TrackInfo {
            id: TrackId(257),
            params: CodecParams::Aac(AacParams {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
            }),
        },
    ])
}

fn video(dts: i64, keyframe: bool) -> AccessUnit {
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
        pts: Time90k(dts),
        dts: Time90k(dts),
        keyframe,
        data: Bytes::from(data),
        captured_unix_ms: None,
        trace: None,
    }
}

fn audio(pts: i64) -> AccessUnit {
    AccessUnit {
        track: TrackId(257),
        kind: TrackKind::Audio,
        pts: Time90k(pts),
        dts: Time90k(pts),
        keyframe: true,
        data: Bytes::from_static(&[0x21, 0x10, 0x05]),
        captured_unix_ms: None,
        trace: None,
    }
}

/// 200 ms parts, segments cut at the first keyframe after 1 s (2 s at
/// most), 20 segments listed.
fn settings() -> (CutConfig, WindowConfig) {
    let part_target = Time90k::from_millis(200);
    let cut = CutConfig {
        part_target,
        segment_min: Time90k::from_millis(1000),
        segment_max: Time90k::from_millis(2000),
    };
    let window = WindowConfig {
        window_segments: 20,
        ..WindowConfig::new(part_target, 2)
    };
    (cut, window)
}

fn assembler() -> Assembler {
    let (cut, window) = settings();
    Assembler::new(cut, window).unwrap()
}

/// Feed `frames` video frames (keyframe every 25) from source time `start`,
/// each followed by the audio frames that start while it plays, one unit
/// at a time: the order ingest's interleaver puts a steady sender's units
/// in.
fn feed(a: &mut Assembler, start: i64, frames: i64) {
    let mut next_audio = start;
    for i in 0..frames {
        let dts = start + i * FRAME;
        a.on_unit(&video(dts, i % 25 == 0), 1_700_000_000_000);
        while next_audio < dts + FRAME {
            a.on_unit(&audio(next_audio), 1_700_000_000_000);
            next_audio += 1920; // 1024 samples at 48 kHz
        }
    }
}

fn playlist(a: &Assembler) -> String {
    a.window.render(&RenderOptions::default())
}

fn durations_ms(playlist: &str, prefix: &str) -> Vec<i64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| {
            let value = rest.split([',', '\n']).next().unwrap();
            let value = value.trim_start_matches("DURATION=");
            let (s, ms) = value.split_once('.').unwrap();
            s.parse::<i64>().unwrap() * 1000 + ms[..3].parse::<i64>().unwrap()
        })
        .collect()
}

#[test]
fn parts_and_segments_follow_the_cut_rules() {
    let mut a = assembler();
    a.on_tracks(tracks());
    feed(&mut a, 900_000, 25 * 4 + 5);
    let text = playlist(&a);
    // Four whole 1 s segments of five 200 ms parts, the first of each
    // independent, and the fifth segment's first part.
    assert_eq!(durations_ms(&text, "#EXTINF:"), vec![1000; 4], "{text}");
    let parts = durations_ms(&text, "#EXT-X-PART:");
    assert!(parts.iter().all(|&d| d == 200), "{text}");
    let independent = text
        .lines()
        .filter(|l| l.contains("INDEPENDENT=YES"))
        .count();
    assert!(independent >= 4, "{text}");
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    // Part 4.0 closed as soon as its fifth frame and the audio that plays
    // during it were in, without waiting for a sixth frame: it is listed
    // and the preload hint names the next part.
    let text = playlist(&a);
    assert!(
        text.contains("URI=\"part4.0.m4s\",INDEPENDENT=YES"),
        "{text}"
    );
    assert!(
        text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part4.1.m4s\""),
        "{text}"
    );
    assert!(a.store.part(4, 0).unwrap().complete);
    // The store holds every listed segment, complete.
    for msn in 0..4 {
        let segment = a.store.segment(msn).unwrap();
        assert!(segment.complete && segment.parts.len() == 5);
    }
}

#[test]
fn a_segment_is_listed_with_the_next_segments_first_part() {
    let mut a = assembler();
    a.on_tracks(tracks());
    // Segment 0 and the keyframe that starts segment 1: segment 0 is
    // complete, but its parts stay listed as if it were still open.
    feed(&mut a, 0, 26);
    assert!(a.store.segment(0).unwrap().complete);
    let text = playlist(&a);
    assert!(!text.contains("#EXTINF"), "{text}");
    assert!(text.contains("URI=\"part0.4.m4s\"\n"), "{text}");
    assert!(
        text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\"\n"),
        "{text}"
    );
    // Part 1.0 complete: segment 0 is listed in the same playlist version.
    feed(&mut a, 26 * FRAME, 4);
    let text = playlist(&a);
    assert!(
        text.contains("seg0.m4s\n#EXT-X-PROGRAM-DATE-TIME:"),
        "{text}"
    );
    assert!(
        text.contains("URI=\"part1.0.m4s\",INDEPENDENT=YES\n"),
        "{text}"
    );

    // When the publisher leaves right after a keyframe, both segments are
    // listed at once: the whole one and the keyframe's one frame.
    let mut a = assembler();
    a.on_tracks(tracks());
    feed(&mut a, 0, 26);
    a.on_publisher_gone();
    assert_eq!(durations_ms(&playlist(&a), "#EXTINF:"), [1000, 40]);
}

/// Every part of `a` (in order) as its video span `[start, end)` in 90 kHz
/// ticks and the start times of its audio frames, converted to 90 kHz
/// (1024 samples at 48 kHz are 1920 ticks).
fn parts_with_audio(a: &Assembler) -> Vec<((u64, u64), Vec<u64>)> {
    let mut out = Vec::new();
    let mut msn = 0;
    while let Some(segment) = a.store.segment(msn) {
        for part in &segment.parts {
            let video = audio_runs(part.chunks.iter(), 1);
            let start = video.first().unwrap().0;
            let end = video
                .iter()
                .map(|r| r.0 + r.1.iter().map(|&d| u64::from(d)).sum::<u64>())
                .max()
                .unwrap();
            let audio = audio_runs(part.chunks.iter(), 2)
                .into_iter()
                .flat_map(|(tfdt, durations)| {
                    durations.into_iter().scan(tfdt, |at, d| {
                        let this = *at;
                        *at += u64::from(d);
                        Some(this * 15 / 8)
                    })
                })
                .collect();
            out.push(((start, end), audio));
        }
        msn += 1;
    }
    out
}

#[test]
fn every_part_carries_the_audio_of_its_own_media_time() {
    // How the units reach the packager: in decode order with each frame's
    // audio after it (ingest's interleaver), with audio only up to each
    // video frame's start before it (a sender whose audio lags, released
    // by the video that follows), and with audio running 300 ms ahead of
    // the video (a transcoder's rung, its encoder delaying the video).
    for lead in [None, Some(0), Some(300)] {
        let mut a = assembler();
        a.on_tracks(tracks());
        let start = 900_000;
        let frames = 25 * 3 + 10;
        let mut fed_audio = Vec::new();
        let mut before_start = 0;
        match lead {
            None => {
                feed(&mut a, start, frames);
                fed_audio.extend(
                    (0..)
                        .map(|k| start + k * 1920)
                        .take_while(|&t| t < start + frames * FRAME),
                );
            }
            Some(lead_ms) => {
                let mut next_audio = start;
                for i in 0..frames {
                    let dts = start + i * FRAME;
                    while next_audio <= dts + lead_ms * 90 {
                        a.on_unit(&audio(next_audio), 1_700_000_000_000);
                        fed_audio.push(next_audio);
                        next_audio += 1920;
                        before_start += usize::from(i == 0);
                    }
                    a.on_unit(&video(dts, i % 25 == 0), 1_700_000_000_000);
                }
            }
        }
        a.on_end();
        let parts = parts_with_audio(&a);
        assert!(parts.len() >= 15, "{lead:?}: {} parts", parts.len());
        let last = parts.len() - 1;
        for (i, ((start, end), audio)) in parts.iter().enumerate() {
            // Audio that came before the first keyframe is not packaged:
            // with a lead, the first `lead` ms have none.
            let unheard = lead.map_or(0, |ms| ms as u64 * 90);
            assert!(
                !audio.is_empty() || *start < unheard,
                "{lead:?}: part {i} has no audio"
            );
            // The part at the end also takes what came after its video.
            let bound = if i == last { u64::MAX } else { *end };
            assert!(
                audio.iter().all(|&t| t >= *start && t < bound),
                "{lead:?}: part {i} spans [{start}, {end}) but has audio at {audio:?}"
            );
        }
        // Nothing lost: every audio frame from the first keyframe to the
        // video's end is in, once, back to back.
        let all: Vec<Bytes> = (0..)
            .map_while(|msn| a.store.segment(msn))
            .flat_map(|s| s.chunks().cloned().collect::<Vec<_>>())
            .collect();
        let runs = audio_runs(all.iter(), 2);
        assert_contiguous(&runs);
        let packaged: usize = runs.iter().map(|r| r.1.len()).sum();
        // Audio that came before the first keyframe is not packaged, nor
        // is audio after the video's end once the last part has closed
        // (with a lead, about 300 ms of it).
        let video_end = start + frames * FRAME;
        let expected = fed_audio.iter().filter(|&&t| t < video_end).count() - before_start;
        assert_eq!(packaged, expected, "{lead:?}");
    }
}

#[test]
fn a_part_waits_for_its_audio_only_until_the_next_video_frame() {
    let mut a = assembler();
    a.on_tracks(tracks());
    // A part's five frames, the audio only up to each frame's start.
    let mut next_audio = 0;
    for i in 0..5 {
        let dts = i * FRAME;
        while next_audio <= dts {
            a.on_unit(&audio(next_audio), 1_700_000_000_000);
            next_audio += 1920;
        }
        a.on_unit(&video(dts, i == 0), 1_700_000_000_000);
    }
    assert!(!playlist(&a).contains("part0.0.m4s\","), "waits for audio");
    // The audio stops; the next video frame closes the part anyway.
    a.on_unit(&video(5 * FRAME, false), 1_700_000_000_000);
    let text = playlist(&a);
    assert!(
        text.contains("URI=\"part0.0.m4s\",INDEPENDENT=YES"),
        "{text}"
    );
}

#[test]
fn with_a_steady_gop_the_hint_names_the_part_that_really_comes_next() {
    let mut a = assembler();
    a.on_tracks(tracks());
    // The first segment's last part: one keyframe seen, no cadence yet, so
    // the hint names the part after it in the same segment.
    feed(&mut a, 0, 25);
    let text = playlist(&a);
    assert!(
        text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part0.5.m4s\"\n"),
        "{text}"
    );
    // Keyframes at 0, 1 and 2 s: steady. After segment 3's last part the
    // next frame is due to be a keyframe that starts segment 4.
    feed(&mut a, 25 * FRAME, 25 * 3);
    let text = playlist(&a);
    assert!(text.contains("URI=\"part3.4.m4s\"\n"), "{text}");
    assert!(
        text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part4.0.m4s\"\n"),
        "{text}"
    );
    // Mid-segment, the hint is the next part as usual.
    feed(&mut a, 100 * FRAME, 5);
    assert!(playlist(&a).ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part4.1.m4s\"\n"));
}

#[test]
fn a_timestamp_jump_becomes_a_discontinuity_not_a_gap() {
    for jump in [90_000 * 30, -90_000 * 30] {
        let mut a = assembler();
        a.on_tracks(tracks());
        feed(&mut a, 900_000, 50);
        // The source clock jumps (encoder restart) mid-GOP: the frames
        // before the next keyframe are dropped, then the stream continues.
        let restart = 900_000 + 50 * FRAME + jump;
        a.on_unit(&video(restart - 3 * FRAME, false), 0);
        // Two segments and the first part of a third, which lists the
        // second (segments are listed with the next one's first part).
        feed(&mut a, restart, 55);
        assert_eq!(a.timestamp_jumps(), 1, "jump {jump}");
        let text = playlist(&a);
        assert!(text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        // No segment carries the jump as its duration.
        let segments = durations_ms(&text, "#EXTINF:");
        assert!(segments.iter().all(|&d| d <= 1000), "{segments:?}\n{text}");
        assert_eq!(segments.len(), 4, "{text}");
    }
}

#[test]
fn small_backward_steps_drop_the_frame_only() {
    let mut a = assembler();
    a.on_tracks(tracks());
    feed(&mut a, 0, 30);
    a.on_unit(&video(28 * FRAME, false), 0);
    feed(&mut a, 30 * FRAME, 21);
    assert_eq!(a.timestamp_jumps(), 0);
    assert!(!playlist(&a).contains("#EXT-X-DISCONTINUITY\n"));
}

#[test]
fn reconnect_continues_the_sequence_and_end_closes_it() {
    let mut a = assembler();
    a.on_tracks(tracks());
    feed(&mut a, 0, 60);
    a.on_publisher_gone();
    let gone = playlist(&a);
    // What was received is servable: the last, short segment is closed.
    assert_eq!(
        durations_ms(&gone, "#EXTINF:"),
        vec![1000, 1000, 400],
        "{gone}"
    );
    // A new publisher with its own clock continues the same playlist.
    a.on_discontinuity();
    a.on_tracks(tracks());
    feed(&mut a, 5_000_000, 26);
    a.on_end();
    let ended = playlist(&a);
    assert!(ended.contains("#EXT-X-DISCONTINUITY\n"), "{ended}");
    assert!(ended.ends_with("#EXT-X-ENDLIST\n"), "{ended}");
    assert!(!ended.contains("PRELOAD-HINT"), "{ended}");
    let numbers: Vec<&str> = ended.lines().filter(|l| l.starts_with("seg")).collect();
    assert_eq!(
        numbers,
        ["seg0.m4s", "seg1.m4s", "seg2.m4s", "seg3.m4s", "seg4.m4s"],
        "{ended}"
    );
    // Nothing is accepted after the end.
    let before = ended.clone();
    feed(&mut a, 9_000_000, 30);
    assert_eq!(playlist(&a), before);
}

#[test]
fn new_codec_parameters_get_a_new_init_segment() {
    let mut a = assembler();
    a.on_tracks(tracks());
    feed(&mut a, 0, 30);
    assert!(a.store.init(0).is_some());
    // Same track set again (a reconnect with the same encoder): same init.
    a.on_tracks(tracks());
    assert_eq!(a.generation(), 0);
    // Audio goes away: a new generation, a new EXT-X-MAP after a discontinuity.
    a.on_tracks(Arc::from(vec![tracks()[0].clone()]));
    assert_eq!(a.generation(), 1);
    feed(&mut a, 30 * FRAME, 30);
    let text = playlist(&a);
    assert!(text.contains("#EXT-X-MAP:URI=\"init1.mp4\""), "{text}");
    assert!(a.store.init(1).is_some());
}

fn opus_track() -> TrackInfo {
    TrackInfo {
        id: TrackId(257),
        params: CodecParams::Opus(OpusParams {
            channels: 2,
            sample_rate: 48_000,
            pre_skip: 312,
            channel_mapping_family: 0,
        }),
    }
}

/// An Opus packet: TOC config 31 (CELT 20 ms, 960 samples) or, when
/// `short`, config 29 (5 ms, 240 samples), code 0.
fn opus(pts: i64, short: bool) -> AccessUnit {
    let toc = if short { 29 << 3 } else { 31 << 3 };
    AccessUnit {
        track: TrackId(257),
        kind: TrackKind::Audio,
        pts: Time90k(pts),
        dts: Time90k(pts),
        keyframe: true,
        data: Bytes::from(vec![toc, 0x01, 0x02]),
        captured_unix_ms: None,
        trace: None,
    }
}

/// Every `traf` of mp4 `track_id` in `chunks`:
/// (`tfdt`, sample durations), read with a small box walk.
fn audio_runs<'a>(chunks: impl Iterator<Item = &'a Bytes>, track_id: u32) -> Vec<(u64, Vec<u32>)> {
    fn boxes(d: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 8 <= d.len() {
            let size = u32::from_be_bytes(d[pos..pos + 4].try_into().unwrap()) as usize;
            out.push((
                d[pos + 4..pos + 8].try_into().unwrap(),
                &d[pos + 8..pos + size],
            ));
            pos += size;
        }
        out
    }
    let be32 = |d: &[u8], at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    let mut runs = Vec::new();
    for chunk in chunks {
        for (kind, moof) in boxes(chunk) {
            if &kind != b"moof" {
                continue;
            }
            for (kind, traf) in boxes(moof) {
                if &kind != b"traf" {
                    continue;
                }
                let children = boxes(traf);
                let tfhd = children.iter().find(|b| &b.0 == b"tfhd").unwrap().1;
                if be32(tfhd, 4) != track_id {
                    continue;
                }
                let tfdt = children.iter().find(|b| &b.0 == b"tfdt").unwrap().1;
                let tfdt = if tfdt[0] == 1 {
                    u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
                } else {
                    u64::from(be32(tfdt, 4))
                };
                let trun = children.iter().find(|b| &b.0 == b"trun").unwrap().1;
                let flags = be32(trun, 0) & 0xff_ffff;
                let count = be32(trun, 4) as usize;
                let mut at = 8;
                at += 4 * usize::from(flags & 0x1 != 0) + 4 * usize::from(flags & 0x4 != 0);
                assert!(flags & 0x100 != 0, "per-sample durations");
                let per_sample = 4 * [0x100, 0x200, 0x400, 0x800]
                    .iter()
                    .filter(|&&f| flags & f != 0)
                    .count();
                let durations = (0..count)
                    .map(|i| be32(trun, at + i * per_sample))
                    .collect();
                runs.push((tfdt, durations));
            }
        }
    }
    runs
}

/// The audio decode times of `runs` are gap-free: each run starts where the
/// previous one ended.
fn assert_contiguous(runs: &[(u64, Vec<u32>)]) {
    for w in runs.windows(2) {
        let end = w[0].0 + w[0].1.iter().map(|&d| u64::from(d)).sum::<u64>();
        assert_eq!(w[1].0, end, "{runs:?}");
    }
}

#[test]
fn opus_audio_advances_by_each_packets_toc_duration() {
    let mut a = assembler();
    a.on_tracks(Arc::from(vec![tracks()[0].clone(), opus_track()]));
    // 20 ms packets, with a run of 5 ms ones, plus 25 fps video.
    let start = 900_000;
    let mut next_audio = start;
    let mut k = 0;
    // (The sixth frame of segment 2 closes its first part, which lists
    // segment 1; that part's audio has not all come.)
    for i in 0..(25 * 2 + 6) {
        let dts = start + i * FRAME;
        while next_audio <= dts {
            let short = (40..48).contains(&k);
            a.on_unit(&opus(next_audio, short), 1_700_000_000_000);
            next_audio += if short { 450 } else { 1800 };
            k += 1;
        }
        a.on_unit(&video(dts, i % 25 == 0), 1_700_000_000_000);
    }
    let text = playlist(&a);
    assert_eq!(durations_ms(&text, "#EXTINF:"), vec![1000; 2], "{text}");
    let chunks: Vec<Bytes> = (0..2)
        .flat_map(|msn| {
            a.store
                .segment(msn)
                .unwrap()
                .chunks()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let runs = audio_runs(chunks.iter(), 2);
    let durations: Vec<u32> = runs.iter().flat_map(|r| r.1.clone()).collect();
    assert!(durations.len() > 80, "{durations:?}");
    // Each sample lasts what its TOC says, at the 48 kHz timescale. The
    // first packet came before the first keyframe and is not packaged, so
    // sample i is packet i + 1.
    for (i, &d) in durations.iter().enumerate() {
        let want = if (40..48).contains(&(i + 1)) {
            240
        } else {
            960
        };
        assert_eq!(d, want, "sample {i}: {durations:?}");
    }
    // The keyframe is output time zero; the first packaged packet is 20 ms
    // after it.
    assert_eq!(runs[0].0, 960);
    assert_contiguous(&runs);
}

#[test]
fn opus_only_stream_cuts_parts_on_packet_durations() {
    let mut a = assembler();
    a.on_tracks(Arc::from(vec![opus_track()]));
    for i in 0..(50 * 2 + 10) {
        a.on_unit(&opus(90_000 + i * 1800, false), 1_700_000_000_000);
    }
    let text = playlist(&a);
    // 200 ms parts of ten 20 ms packets; segments of a second.
    assert_eq!(durations_ms(&text, "#EXTINF:"), vec![1000; 2], "{text}");
    let parts = durations_ms(&text, "#EXT-X-PART:");
    assert!(parts.iter().all(|&d| d == 200), "{text}");
    let runs = audio_runs(a.store.segment(0).unwrap().chunks(), 1);
    assert_eq!(runs.len(), 50);
    assert!(runs.iter().all(|r| r.1 == [960]), "{runs:?}");
    assert_contiguous(&runs);
}

/// A rendition on the timeline `align`, cutting at the first keyframe
/// after 2 s (so with 1 s GOPs every other keyframe starts a segment).
fn rendition(align: &ferrocast_packager::alignment::SharedAlignment) -> Assembler {
    let part_target = Time90k::from_millis(200);
    let cut = CutConfig {
        part_target,
        segment_min: Time90k::from_millis(2000),
        segment_max: Time90k::from_millis(3000),
    };
    let window = WindowConfig {
        window_segments: 20,
        ..WindowConfig::new(part_target, 3)
    };
    let mut a = Assembler::with_alignment(cut, window, align.clone()).unwrap();
    a.on_tracks(tracks());
    a
}

/// Video `tfdt` of the first fragment of segment `msn`.
fn segment_tfdt(a: &Assembler, msn: u64) -> Option<u64> {
    let bytes: Vec<u8> = a
        .store
        .segment(msn)?
        .chunks()
        .next()?
        .iter()
        .copied()
        .collect();
    let at = bytes.windows(4).position(|w| w == b"tfdt")?;
    let version = bytes[at + 4];
    let body = &bytes[at + 8..];
    Some(if version == 1 {
        u64::from_be_bytes(body[..8].try_into().unwrap())
    } else {
        u64::from(u32::from_be_bytes(body[..4].try_into().unwrap()))
    })
}

/// `(msn, EXTINF ms)` of every completed segment of a playlist.
fn segments(playlist: &str) -> Vec<(u64, i64)> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    (first..).zip(durations_ms(playlist, "#EXTINF:")).collect()
}

#[test]
fn renditions_share_offset_cuts_and_numbers_and_a_late_one_joins_at_a_boundary() {
    let align = ferrocast_packager::alignment::Alignment::shared();
    let mut first = rendition(&align);
    let mut late = rendition(&align);
    // The first rendition: 8 s from source time 10 s.
    feed(&mut first, 900_000, 200);
    // The late one starts at source 13 s, inside the others' segment 1
    // (2 s to 4 s): it waits for segment 2, at 4 s.
    feed(&mut late, 900_000 + 3 * 90_000, 125);
    let (a, b) = (playlist(&first), playlist(&late));
    assert_eq!(segments(&a), vec![(0, 2000), (1, 2000), (2, 2000)], "{a}");
    assert_eq!(segments(&b), vec![(2, 2000)], "{b}");
    for msn in 2..=3 {
        assert_eq!(
            segment_tfdt(&first, msn),
            segment_tfdt(&late, msn),
            "segment {msn}"
        );
    }
    assert_eq!(segment_tfdt(&late, 2), Some(4 * 90_000));
    assert_eq!(first.window.last_part(), late.window.last_part());
}

#[test]
fn a_gap_in_one_rendition_is_listed_as_gap_segments_and_numbers_stay_aligned() {
    let align = ferrocast_packager::alignment::Alignment::shared();
    let mut whole = rendition(&align);
    let mut lossy = rendition(&align);
    feed(&mut whole, 0, 250);
    feed(&mut lossy, 0, 75);
    // The bus dropped 3 s of this rendition's media.
    lossy.on_gap();
    feed(&mut lossy, 6 * 90_000, 100);
    let (a, b) = (playlist(&whole), playlist(&lossy));
    assert_eq!(segment_tfdt(&lossy, 3), Some(6 * 90_000), "{b}");
    assert_eq!(segment_tfdt(&whole, 3), segment_tfdt(&lossy, 3));
    assert_eq!(segment_tfdt(&whole, 4), segment_tfdt(&lossy, 4));
    // Segment 1 ended at the loss; segment 2 (4 s to 6 s) is a gap.
    assert_eq!(
        segments(&b),
        vec![(0, 2000), (1, 1000), (2, 2000), (3, 2000)],
        "{b}"
    );
    assert!(b.contains("#EXT-X-GAP\n#EXTINF:2.000,\nseg2.m4s\n"), "{b}");
    assert_eq!(&segments(&a)[3..], &[(3, 2000)], "{a}");
}

#[test]
fn after_a_publisher_break_every_rendition_moves_to_the_same_new_offset() {
    let align = ferrocast_packager::alignment::Alignment::shared();
    let mut one = rendition(&align);
    let mut two = rendition(&align);
    feed(&mut one, 900_000, 100);
    feed(&mut two, 900_000, 100);
    one.on_discontinuity();
    two.on_discontinuity();
    // The publisher came back with a clock that starts at 1 s.
    feed(&mut one, 90_000, 100);
    feed(&mut two, 90_000, 100);
    let (a, b) = (playlist(&one), playlist(&two));
    assert_eq!(segments(&a), segments(&b), "{a}\n{b}");
    let after = segments(&a).last().unwrap().0;
    for msn in 0..=after {
        assert_eq!(
            segment_tfdt(&one, msn),
            segment_tfdt(&two, msn),
            "segment {msn}"
        );
    }
    assert_eq!(
        a.matches("#EXT-X-DISCONTINUITY\n").count(),
        b.matches("#EXT-X-DISCONTINUITY\n").count()
    );
}

#[test]
fn recording_collects_inits_closed_segments_and_the_end() {
    use ferrocast_packager::Recorded;
    let mut a = assembler();
    a.set_recording(true);
    a.on_tracks(tracks());
    feed(&mut a, 900_000, 25 * 3);
    a.on_discontinuity();
    feed(&mut a, 9_000_000, 25 * 2);
    a.on_end();
    let recorded = a.take_recorded();
    assert!(a.take_recorded().is_empty(), "taken once");
    let Recorded::Init {
        generation: 0,
        bytes,
        ..
    } = &recorded[0]
    else {
        panic!("an init first: {recorded:?}");
    };
    assert_eq!(bytes, a.store.init(0).unwrap());
    let segments: Vec<_> = recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::Segment(s) => Some(s),
            _ => None,
        })
        .collect();
    // Every segment of the playlist, numbered in turn, with its duration
    // and the discontinuity of the reconnect.
    let text = playlist(&a);
    let listed = durations_ms(&text, "#EXTINF:");
    assert_eq!(segments.len(), listed.len(), "{text}");
    for (i, (segment, ms)) in segments.iter().zip(&listed).enumerate() {
        assert_eq!(segment.msn, i as u64);
        assert_eq!(segment.duration, Time90k::from_millis(*ms));
        assert_eq!(segment.discontinuity, i == 3, "segment {i}");
        assert_eq!(segment.init_generation, 0);
        assert!(!segment.is_empty());
    }
    assert!(matches!(recorded.last(), Some(Recorded::End)));
    // Off: nothing is collected.
    let mut quiet = assembler();
    quiet.on_tracks(tracks());
    feed(&mut quiet, 0, 60);
    quiet.on_end();
    assert!(quiet.take_recorded().is_empty());
}

/// How a stream's audio reaches the packager beside its video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AudioArrival {
    /// Each video frame's audio right after it (ingest's interleaver).
    Steady,
    /// About 0.37 s of audio at a time, after the video it plays with
    /// (ffmpeg's default of 18 AAC frames per PES).
    Batched,
    /// 300 ms ahead of the video (a transcoder's rung).
    Ahead,
}

/// An assembler of `set` on the timeline `align`, with [`settings`], its
/// tracks known.
fn on_timeline(align: &ferrocast_packager::alignment::SharedAlignment, set: TrackSet) -> Assembler {
    let (cut, window) = settings();
    let mut a = Assembler::with_tracks(cut, window, align.clone(), set).unwrap();
    a.on_tracks(tracks());
    a
}

/// The video and audio assemblers of a stream whose audio is a rendition
/// of its own, on one timeline.
fn separate_pair() -> (Assembler, Assembler) {
    let align = ferrocast_packager::alignment::Alignment::shared();
    (
        on_timeline(&align, TrackSet::WithoutAudio),
        on_timeline(&align, TrackSet::AudioBesideVideo),
    )
}

/// Complete parts in `a`'s store.
fn complete_parts(a: &Assembler) -> usize {
    (0..)
        .map_while(|msn| a.store.segment(msn))
        .map(|s| s.parts.iter().filter(|p| p.complete).count())
        .sum()
}

/// Feeds `frames` video frames (a keyframe every 25) from source time
/// `start` and their audio, arriving as `arrival` says, each unit to
/// `video` and then to `audio` (as the packager's stream task does).
/// Returns the source times of the audio frames fed and the complete video
/// parts after each video frame.
fn feed_separately(
    video: &mut Assembler,
    audio: &mut Assembler,
    start: i64,
    frames: i64,
    arrival: AudioArrival,
) -> (Vec<i64>, Vec<usize>) {
    let now = 1_700_000_000_000;
    let deliver = |video: &mut Assembler, audio: &mut Assembler, unit: AccessUnit| {
        video.on_unit(&unit, now);
        audio.on_unit(&unit, now);
    };
    let mut fed = Vec::new();
    let mut batch = Vec::new();
    let mut next_audio = start;
    let mut parts = Vec::new();
    for i in 0..frames {
        let dts = start + i * FRAME;
        if arrival == AudioArrival::Ahead {
            while next_audio <= dts + 300 * 90 {
                batch.push(next_audio);
                next_audio += 1920;
            }
        }
        for t in batch.drain(..) {
            deliver(video, audio, self::audio(t));
            fed.push(t);
        }
        deliver(video, audio, self::video(dts, i % 25 == 0));
        while arrival != AudioArrival::Ahead && next_audio < dts + FRAME {
            batch.push(next_audio);
            next_audio += 1920;
        }
        if arrival == AudioArrival::Steady || batch.len() >= 18 {
            for t in batch.drain(..) {
                deliver(video, audio, self::audio(t));
                fed.push(t);
            }
        }
        parts.push(complete_parts(video));
    }
    for t in batch.drain(..) {
        deliver(video, audio, self::audio(t));
        fed.push(t);
    }
    parts.push(complete_parts(video));
    (fed, parts)
}

#[test]
fn separate_audio_starts_each_segment_where_the_video_does_and_video_parts_never_wait() {
    for arrival in [
        AudioArrival::Steady,
        AudioArrival::Batched,
        AudioArrival::Ahead,
    ] {
        let (mut video, mut audio) = separate_pair();
        let start = 900_000;
        let frames = 25 * 4 + 10;
        let (fed, parts) = feed_separately(&mut video, &mut audio, start, frames, arrival);

        // A video part is complete with its fifth frame, whatever the audio
        // does: no part waits.
        for (i, &complete) in parts.iter().take(frames as usize).enumerate() {
            assert_eq!(complete, (i + 1) / 5, "{arrival:?}: after video frame {i}");
        }
        let (v, a) = (playlist(&video), playlist(&audio));
        // The same segments, by number; each audio segment starts with the
        // audio frame nearest the video's boundary (within half a frame,
        // 960 ticks at 90 kHz).
        let video_segments = segments(&v);
        assert_eq!(video_segments.len(), 4, "{arrival:?}: {v}");
        assert_eq!(
            segments(&a).iter().map(|s| s.0).collect::<Vec<_>>(),
            video_segments.iter().map(|s| s.0).collect::<Vec<_>>(),
            "{arrival:?}: {a}"
        );
        for (msn, _) in &video_segments {
            let v = segment_tfdt(&video, *msn).unwrap() as i64;
            let a = segment_tfdt(&audio, *msn).unwrap() as i64 * 15 / 8;
            assert!(
                (a - v).abs() <= 960,
                "{arrival:?}: segment {msn}: video {v}, audio {a}"
            );
        }
        // Video segments hold no audio, audio segments no video: one track
        // each.
        let chunks = |a: &Assembler| -> Vec<Bytes> {
            (0..)
                .map_while(|msn| a.store.segment(msn))
                .flat_map(|s| s.chunks().cloned().collect::<Vec<_>>())
                .collect()
        };
        assert!(audio_runs(chunks(&video).iter(), 2).is_empty());
        let runs = audio_runs(chunks(&audio).iter(), 1);
        assert!(runs.iter().all(|r| r.1.iter().all(|&d| d == 1024)));
        // The audio is whole and back to back from the first keyframe to
        // where the video has got (a frame whose middle is not before it
        // waits: a boundary there may be yet to come).
        assert_contiguous(&runs);
        let video_end = start + frames * FRAME;
        let expected = fed.iter().filter(|&&t| t + 960 < video_end).count();
        let packaged: usize = runs.iter().map(|r| r.1.len()).sum();
        assert_eq!(packaged, expected, "{arrival:?}");
        // Each audio part ends at the audio frame boundary nearest the end
        // of a video part (200 ms): 9 or 10 frames of 21.3 ms, never a
        // frame or two left over at the end of a segment; the audio
        // playlist's part target allows for the one frame more.
        assert!(a.contains("#EXT-X-PART-INF:PART-TARGET=0.225\n"), "{a}");
        let audio_parts = durations_ms(&a, "#EXT-X-PART:");
        assert!(
            audio_parts.len() >= 15 && audio_parts.iter().all(|&d| d == 192 || d == 213),
            "{arrival:?}: {a}"
        );
        assert_eq!(
            durations_ms(&a, "#EXTINF:").len() * 5,
            audio_parts.len() - audio_parts.len() % 5,
            "five parts a segment, as the video: {a}"
        );
        assert!(a.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"), "{a}");
    }
}

#[test]
fn muxed_parts_wait_for_batched_audio() {
    // The same batched sender with the audio muxed: video parts complete
    // only as their audio comes, in bursts.
    let mut a = assembler();
    a.on_tracks(tracks());
    let mut silent = assembler();
    let (_, parts) = feed_separately(&mut a, &mut silent, 900_000, 60, AudioArrival::Batched);
    let waited = parts
        .iter()
        .take(60)
        .enumerate()
        .filter(|(i, complete)| **complete < (i + 1) / 5)
        .count();
    assert!(waited > 10, "{parts:?}");
}

#[test]
fn separate_audio_waits_for_the_video_to_start_and_follows_it_after_a_break() {
    let (mut video, mut audio) = separate_pair();
    let now = 1_700_000_000_000;
    // Audio before any video has no place on the timeline.
    for k in 0..5 {
        audio.on_unit(&self::audio(900_000 - 10_000 + k * 1920), now);
    }
    assert!(audio.store.segment(0).is_none());
    feed_separately(&mut video, &mut audio, 900_000, 60, AudioArrival::Steady);
    video.on_discontinuity();
    audio.on_discontinuity();
    // The publisher came back with a clock that starts at 1 s; its audio
    // comes first this time.
    feed_separately(&mut video, &mut audio, 90_000, 60, AudioArrival::Ahead);
    let (v, a) = (playlist(&video), playlist(&audio));
    assert_eq!(
        segments(&a).iter().map(|s| s.0).collect::<Vec<_>>(),
        segments(&v).iter().map(|s| s.0).collect::<Vec<_>>(),
        "{v}\n{a}"
    );
    assert_eq!(
        a.matches("#EXT-X-DISCONTINUITY\n").count(),
        v.matches("#EXT-X-DISCONTINUITY\n").count()
    );
    assert_eq!(v.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{v}");
    for (msn, _) in segments(&v) {
        let v = segment_tfdt(&video, msn).unwrap() as i64;
        let a = segment_tfdt(&audio, msn).unwrap() as i64 * 15 / 8;
        assert!((a - v).abs() <= 960, "segment {msn}: video {v}, audio {a}");
    }
}

#[test]
fn separate_audio_follows_the_source_where_a_rung_cuts_at_other_times() {
    // The source's keyframes come every 1.6 s; a rung's every second,
    // 0.4 s later (meeting the source's at 6.4 s): their segments start
    // at different times and are numbered at different rates. The audio
    // follows the source, the rendition it is packaged beside.
    let align = ferrocast_packager::alignment::Alignment::shared();
    let mut rung = on_timeline(&align, TrackSet::WithoutAudio);
    let mut source = on_timeline(&align, TrackSet::WithoutAudio);
    let mut audio = on_timeline(&align, TrackSet::AudioBesideVideo);
    source.lead_audio();
    let now = 1_700_000_000_000;
    let start = 900_000;
    let mut next_audio = start;
    for i in 0..(40 * 5 + 10) {
        let dts = start + i * FRAME;
        rung.on_unit(&video(dts, i % 25 == 10), now);
        source.on_unit(&video(dts, i % 40 == 0), now);
        while next_audio < dts + FRAME {
            audio.on_unit(&self::audio(next_audio), now);
            next_audio += 1920;
        }
    }
    let (s, r, a) = (playlist(&source), playlist(&rung), playlist(&audio));
    // Each numbers its own segments, with no gap where they meet.
    assert_eq!(
        segments(&s),
        (0..5).map(|msn| (msn, 1600)).collect::<Vec<_>>(),
        "{s}"
    );
    assert!(segments(&r).iter().all(|s| s.1 == 1000), "{r}");
    assert!(!format!("{s}{r}{a}").contains("GAP"), "{s}\n{r}\n{a}");
    // The source's segments, by number; each audio segment starts within
    // half an audio frame of the source's.
    assert_eq!(
        segments(&a).iter().map(|s| s.0).collect::<Vec<_>>(),
        segments(&s).iter().map(|s| s.0).collect::<Vec<_>>(),
        "{a}"
    );
    for (msn, _) in segments(&s) {
        let v = segment_tfdt(&source, msn).unwrap() as i64;
        let t = segment_tfdt(&audio, msn).unwrap() as i64 * 15 / 8;
        assert!((t - v).abs() <= 960, "segment {msn}: video {v}, audio {t}");
    }
    // Eight parts a segment, each ending at the audio frame nearest the
    // end of a source part: none of a frame or two.
    let parts = durations_ms(&a, "#EXT-X-PART:");
    assert!(
        parts.len() >= 30 && parts.iter().all(|&d| d == 192 || d == 213),
        "{a}"
    );
}
