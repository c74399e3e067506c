//! Rendered playlists, checked line by line for the LL-HLS tags and with
//! m3u8-rs (an independent parser) for the plain-HLS structure.
//!
//! m3u8-rs knows no LL-HLS: it files EXT-X-PART / EXT-X-PRELOAD-HINT /
//! EXT-X-RENDITION-REPORT as unknown tags of the next segment and drops
//! those after the last one, so those are checked on the text.

// Helpers outside `#[test]` fns are not covered by clippy.toml's
// allow-unwrap-in-tests; a panic is the failure report here.
#![allow(clippy::unwrap_used)]

use ferrocast_hls::*;
use ferrocast_media::Time90k;
use proptest::prelude::*;

const PDT0: i64 = 1_700_000_000_000;

fn ms(ms: i64) -> Time90k {
    Time90k::from_millis(ms)
}

/// 2 s target, 500 ms parts (4 a segment), 6 segments listed.
fn window() -> LiveWindow {
    LiveWindow::new(WindowConfig::new(ms(500), 2)).unwrap()
}

struct Feed {
    w: LiveWindow,
    pdt: i64,
}

impl Feed {
    fn new(w: LiveWindow) -> Self {
        Feed { w, pdt: PDT0 }
    }

    fn open(&mut self, discontinuity: bool, init_generation: u32) -> u64 {
        self.w
            .open_segment(SegmentStart {
                program_date_time_ms: self.pdt,
                discontinuity,
                init_generation,
            })
            .unwrap()
    }

    fn part(&mut self, d: i64, independent: bool) -> PartRef {
        self.pdt += d;
        self.w.add_part(ms(d), independent).unwrap()
    }

    /// A whole 2 s segment of four 500 ms parts.
    fn segment(&mut self, discontinuity: bool, generation: u32) -> ClosedSegment {
        self.open(discontinuity, generation);
        for i in 0..4 {
            self.part(500, i == 0);
        }
        self.w.close_segment().unwrap().unwrap()
    }
}

fn render(w: &LiveWindow) -> String {
    w.render(&RenderOptions::default())
}

fn parse(text: &str) -> m3u8_rs::MediaPlaylist {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("m3u8-rs refused:\n{text}\n{e:?}"))
}

fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn count(text: &str, prefix: &str) -> usize {
    lines_starting(text, prefix).len()
}

#[test]
fn header_tags() {
    let mut f = Feed::new(window());
    f.segment(false, 0);
    let text = render(&f.w);
    let head: Vec<&str> = text.lines().take(7).collect();
    assert_eq!(
        head,
        [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            "#EXT-X-TARGETDURATION:2",
            // CAN-SKIP-UNTIL = 6 x 2 s; PART-HOLD-BACK = 3 x 0.5 s.
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=1.500",
            "#EXT-X-PART-INF:PART-TARGET=0.500",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        ]
    );
    let p = parse(&text);
    assert_eq!(p.version, Some(9));
    assert_eq!(p.target_duration, 2);
}

#[test]
fn part_hold_back_is_three_written_part_targets() {
    // 1/3 s parts: PART-TARGET=0.333, PART-HOLD-BACK=0.999 (not 1.000 from
    // the exact value, nor anything below 3 x 0.333).
    let w = LiveWindow::new(WindowConfig::new(Time90k(30_000), 1)).unwrap();
    let text = render(&w);
    assert!(text.contains("PART-HOLD-BACK=0.999\n"), "{text}");
    assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.333\n"));
}

#[test]
fn part_hold_back_follows_the_configured_parts_down_to_two() {
    let mut cfg = WindowConfig::new(Time90k::from_millis(200), 2);
    cfg.part_hold_back_parts = 2;
    let text = render(&LiveWindow::new(cfg.clone()).unwrap());
    assert!(text.contains(",PART-HOLD-BACK=0.400\n"), "{text}");
    cfg.part_hold_back_parts = 1;
    assert_eq!(
        LiveWindow::new(cfg).err(),
        Some(ferrocast_hls::ConfigError::PartHoldBack(1))
    );
}

#[test]
fn scripted_live_sequence() {
    let mut f = Feed::new(window());
    // Empty window: a hint for part 0.0 and nothing else.
    let text = render(&f.w);
    assert_eq!(parse(&text).segments.len(), 0);
    assert_eq!(
        lines_starting(&text, "#EXT-X-PRELOAD-HINT"),
        ["#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part0.0.m4s\""]
    );

    // Segment 0 open with two parts.
    f.open(false, 0);
    assert_eq!(f.part(500, true), PartRef { msn: 0, index: 0 });
    assert_eq!(f.part(500, false), PartRef { msn: 0, index: 1 });
    let text = render(&f.w);
    assert_eq!(
        lines_starting(&text, "#EXT-X-PART:"),
        [
            "#EXT-X-PART:DURATION=0.500,URI=\"part0.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.500,URI=\"part0.1.m4s\"",
        ]
    );
    assert_eq!(
        lines_starting(&text, "#EXT-X-PRELOAD-HINT"),
        ["#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part0.2.m4s\""]
    );
    // The open segment's tags precede its parts.
    assert!(text.contains(
        "#EXT-X-MAP:URI=\"init0.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n#EXT-X-PART:"
    ));
    assert_eq!(count(&text, "#EXTINF"), 0);

    // Close it: listed with EXTINF, parts still there.
    f.part(500, false);
    f.part(450, false);
    let closed = f.w.close_segment().unwrap().unwrap();
    assert_eq!(closed.msn, 0);
    assert_eq!(closed.duration, ms(1950));
    let text = render(&f.w);
    let p = parse(&text);
    assert_eq!(p.media_sequence, 0);
    assert_eq!(p.segments.len(), 1);
    assert_eq!(p.segments[0].uri, "seg0.m4s");
    assert!((p.segments[0].duration - 1.95).abs() < 1e-6);
    assert!(text.contains("#EXTINF:1.950,\nseg0.m4s\n"));
    assert_eq!(count(&text, "#EXT-X-PART:"), 4);
    assert_eq!(
        lines_starting(&text, "#EXT-X-PRELOAD-HINT"),
        ["#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\""]
    );
    assert_eq!(f.w.last_part(), Some(PartRef { msn: 0, index: 3 }));

    // Ten more segments: the window slides, msn never goes back.
    for _ in 0..10 {
        f.segment(false, 0);
    }
    let text = render(&f.w);
    let p = parse(&text);
    assert_eq!(p.media_sequence, 5);
    let uris: Vec<&str> = p.segments.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "seg5.m4s",
            "seg6.m4s",
            "seg7.m4s",
            "seg8.m4s",
            "seg9.m4s",
            "seg10.m4s"
        ]
    );
    // PDT on every segment, continuous.
    for (i, s) in p.segments.iter().enumerate() {
        let pdt = s.program_date_time.unwrap().timestamp_millis();
        assert_eq!(pdt, PDT0 + 1950 + 2000 * (4 + i as i64));
    }
    // Only the first segment carries the map.
    assert_eq!(count(&text, "#EXT-X-MAP"), 1);
    assert!(p.segments[0].map.is_some());
    assert!(!p.end_list);
}

#[test]
fn part_retention_is_last_three_target_durations() {
    let mut f = Feed::new(window());
    for _ in 0..6 {
        f.segment(false, 0);
    }
    // No open segment: parts of segments ending less than 6 s (3 x 2 s)
    // before the end are listed: the last three (4 s, 2 s and 0 s back).
    let text = render(&f.w);
    let parts = lines_starting(&text, "#EXT-X-PART:");
    assert_eq!(parts.len(), 12);
    assert!(parts[0].contains("URI=\"part3.0.m4s\""));
    // With 1.5 s of segment 6 open, segment 3 ends 5.5 s back: kept.
    f.open(false, 0);
    for _ in 0..3 {
        f.part(500, false);
    }
    let text = render(&f.w);
    assert_eq!(count(&text, "#EXT-X-PART:"), 4 + 4 + 4 + 3);
    // With 2 s open, segment 3 ends 6 s back: its parts are dropped.
    f.part(500, false);
    let text = render(&f.w);
    let parts = lines_starting(&text, "#EXT-X-PART:");
    assert_eq!(parts.len(), 4 + 4 + 4);
    assert!(parts[0].contains("URI=\"part4.0.m4s\""));
    // Parts of a segment are listed whole, right before its EXTINF.
    let seg4 = text.find("part4.0.m4s").unwrap();
    let seg3 = text.find("seg3.m4s").unwrap();
    assert!(seg3 < seg4);
}

#[test]
fn discontinuity_map_and_sequence() {
    let mut cfg = WindowConfig::new(ms(500), 2);
    cfg.window_segments = 3;
    let mut f = Feed::new(LiveWindow::new(cfg).unwrap());
    for _ in 0..3 {
        f.segment(false, 0);
    }
    // Publisher reconnects with new codec parameters.
    f.segment(true, 1);
    f.segment(false, 1);
    let text = render(&f.w);
    let p = parse(&text);
    // Segment 0 left (6 s stay besides the newest); it had no
    // discontinuity.
    assert_eq!(p.media_sequence, 1);
    assert_eq!(p.discontinuity_sequence, 0);
    let disc: Vec<bool> = p.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(disc, [false, false, true, false]);
    let maps: Vec<Option<&str>> = p
        .segments
        .iter()
        .map(|s| s.map.as_ref().map(|m| m.uri.as_str()))
        .collect();
    assert_eq!(maps, [Some("init0.mp4"), None, Some("init1.mp4"), None]);
    assert!(text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n"));

    // Three more: segments 1 to 3 leave; 3 began with a discontinuity.
    for _ in 0..3 {
        f.segment(false, 1);
    }
    let p = parse(&render(&f.w));
    assert_eq!(p.media_sequence, 4);
    assert_eq!(p.discontinuity_sequence, 1);
    assert!(p.segments.iter().all(|s| !s.discontinuity));
    // The first listed segment states the map in force.
    assert_eq!(p.segments[0].map.as_ref().unwrap().uri, "init1.mp4");
}

#[test]
fn new_generation_before_its_first_part_is_hinted() {
    let mut f = Feed::new(window());
    f.segment(false, 0);
    f.open(true, 1);
    let text = render(&f.w);
    assert_eq!(
        lines_starting(&text, "#EXT-X-PRELOAD-HINT"),
        [
            "#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init1.mp4\"",
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\"",
        ]
    );
    // No dangling discontinuity before the segment has a part.
    assert_eq!(count(&text, "#EXT-X-DISCONTINUITY\n"), 0);
    assert_eq!(count(&text, "#EXT-X-DISCONTINUITY"), 1); // the -SEQUENCE tag
    f.part(500, true);
    let text = render(&f.w);
    assert_eq!(count(&text, "#EXT-X-PRELOAD-HINT:TYPE=MAP"), 0);
    assert!(
        text.contains(
            "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init1.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:"
        )
    );
}

#[test]
fn delta_update_skips_old_segments() {
    let mut cfg = WindowConfig::new(ms(500), 2);
    cfg.window_segments = 10;
    let mut f = Feed::new(LiveWindow::new(cfg).unwrap());
    f.segment(false, 0);
    f.segment(false, 0);
    f.segment(true, 1);
    for _ in 0..9 {
        f.segment(false, 1);
    }
    f.open(false, 1);
    f.part(500, true);
    let full = render(&f.w);
    let full_p = parse(&full);
    assert_eq!(full_p.media_sequence, 2);
    assert_eq!(full_p.segments.len(), 10);
    assert_eq!(count(&full, "#EXT-X-SKIP"), 0);

    let delta = f.w.render(&RenderOptions {
        skip: true,
        rendition_reports: &[],
    });
    let skip_lines = lines_starting(&delta, "#EXT-X-SKIP:");
    // End of playlist = end of segment 11 + 0.5 s. Segments ending >= 12 s
    // back: 2..=5 (segment 5 ends 6 x 2 + 0.5 = 12.5 s back; 6 ends 10.5 s).
    assert_eq!(skip_lines, ["#EXT-X-SKIP:SKIPPED-SEGMENTS=4"]);
    let delta_p = parse(&delta);
    assert_eq!(delta_p.media_sequence, full_p.media_sequence);
    assert_eq!(
        delta_p.discontinuity_sequence,
        full_p.discontinuity_sequence
    );
    assert_eq!(4 + delta_p.segments.len(), full_p.segments.len());
    assert_eq!(delta_p.segments[0].uri, "seg6.m4s");
    // The skipped segments' tags went with them (segment 2's
    // discontinuity); the map in force is restated.
    assert!(delta_p.segments.iter().all(|s| !s.discontinuity));
    assert_eq!(delta_p.segments[0].map.as_ref().unwrap().uri, "init1.mp4");
    assert!(delta_p.segments[0].program_date_time.is_some());
    // From segment 6's first tag on, the delta is the full playlist's text.
    let after_seg5 = full.find("seg5.m4s\n").unwrap() + "seg5.m4s\n".len();
    let delta_from_6 = &delta[delta.find("#EXT-X-PROGRAM-DATE-TIME").unwrap()..];
    assert_eq!(delta_from_6, &full[after_seg5..]);
    // The SKIP tag sits before the first segment.
    assert!(delta.find("#EXT-X-SKIP").unwrap() < delta.find("#EXT-X-MAP").unwrap());
}

#[test]
fn delta_request_on_a_short_playlist_gives_the_full_one() {
    let mut f = Feed::new(window()); // 6 x 2 s: nothing ends 12 s back
    for _ in 0..6 {
        f.segment(false, 0);
    }
    let opts = RenderOptions {
        skip: true,
        rendition_reports: &[],
    };
    assert_eq!(f.w.render(&opts), render(&f.w));
}

#[test]
fn endlist_replaces_the_hint() {
    let mut f = Feed::new(window());
    f.segment(false, 0);
    f.open(false, 0);
    f.part(500, true);
    let closed = f.w.end().unwrap();
    assert_eq!(closed.msn, 1);
    let text = render(&f.w);
    let p = parse(&text);
    assert!(p.end_list);
    assert_eq!(p.segments.len(), 2);
    assert_eq!(count(&text, "#EXT-X-PRELOAD-HINT"), 0);
    assert!(text.ends_with("seg1.m4s\n#EXT-X-ENDLIST\n"));
}

#[test]
fn rendition_reports() {
    let mut f = Feed::new(window());
    f.segment(false, 0);
    let mut other = Feed::new(window());
    other.segment(false, 0);
    other.open(false, 0);
    other.part(500, true);
    let reports = [
        RenditionReport::new("../audio/audio.m3u8", other.w.last_part()).unwrap(),
        RenditionReport::new("video_1080p.m3u8", None).unwrap(),
    ];
    let text = f.w.render(&RenderOptions {
        skip: false,
        rendition_reports: &reports,
    });
    assert_eq!(
        lines_starting(&text, "#EXT-X-RENDITION-REPORT"),
        [
            "#EXT-X-RENDITION-REPORT:URI=\"../audio/audio.m3u8\",LAST-MSN=1,LAST-PART=0",
            "#EXT-X-RENDITION-REPORT:URI=\"video_1080p.m3u8\"",
        ]
    );
    parse(&text);
}

#[test]
fn multivariant_parses() {
    let variants = [
        Variant {
            uri: "video_720p.m3u8".into(),
            bandwidth: 3_000_000,
            average_bandwidth: Some(2_500_000),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some((30_000, 1_001)),
        },
        Variant {
            uri: "video_360p.m3u8".into(),
            bandwidth: 900_000,
            average_bandwidth: None,
            codecs: "avc1.42e01e,mp4a.40.2".into(),
            resolution: Some((640, 360)),
            frame_rate: None,
        },
    ];
    let text = render_multivariant(&variants, true).unwrap();
    let p = m3u8_rs::parse_master_playlist_res(text.as_bytes()).unwrap();
    assert!(p.independent_segments);
    assert_eq!(p.variants.len(), 2);
    assert_eq!(p.variants[0].uri, "video_720p.m3u8");
    assert_eq!(p.variants[0].bandwidth, 3_000_000);
    assert_eq!(p.variants[0].average_bandwidth, Some(2_500_000));
    assert_eq!(
        p.variants[0].codecs.as_deref(),
        Some("avc1.64001f,mp4a.40.2")
    );
    let r = p.variants[0].resolution.unwrap();
    assert_eq!((r.width, r.height), (1280, 720));
    assert_eq!(p.variants[0].frame_rate, Some(29.97));
    assert_eq!(p.variants[1].frame_rate, None);
}

/// Parses `#EXT-X-PART` / `#EXTINF` lines: per listed segment, the
/// milliseconds of its listed parts and of its EXTINF.
fn parts_and_extinf(text: &str) -> Vec<(Vec<i64>, i64)> {
    let secs_to_ms = |s: &str| {
        let (a, b) = s.split_once('.').unwrap();
        a.parse::<i64>().unwrap() * 1000 + b.parse::<i64>().unwrap()
    };
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("#EXT-X-PART:DURATION=") {
            parts.push(secs_to_ms(rest.split(',').next().unwrap()));
        } else if let Some(rest) = l.strip_prefix("#EXTINF:") {
            out.push((
                std::mem::take(&mut parts),
                secs_to_ms(rest.trim_end_matches(',')),
            ));
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        discontinuity: bool,
        generation: u32,
    },
    Part {
        ms: i64,
        independent: bool,
    },
    Close,
    CloseHeld,
    End,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0u32..3)
            .prop_map(|(discontinuity, generation)| Op::Open { discontinuity, generation }),
        14 => (1i64..=500, any::<bool>()).prop_map(|(ms, independent)| Op::Part { ms, independent }),
        2 => Just(Op::Close),
        2 => Just(Op::CloseHeld),
        1 => Just(Op::End),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_feeds_render_valid_playlists(
        ops in proptest::collection::vec(op(), 0..300),
        skip in any::<bool>(),
    ) {
        let mut w = window();
        let mut pdt = PDT0;
        let mut last_seq = 0u64;
        for op in ops {
            match op {
                Op::Open { discontinuity, generation } => {
                    let _ = w.open_segment(SegmentStart {
                        program_date_time_ms: pdt,
                        discontinuity,
                        init_generation: generation,
                    });
                }
                Op::Part { ms: d, independent } => {
                    if w.add_part(ms(d), independent).is_ok() {
                        pdt += d;
                    }
                }
                Op::Close => {
                    let _ = w.close_segment();
                }
                Op::CloseHeld => {
                    let _ = w.close_segment_held();
                }
                Op::End => {
                    w.end();
                }
            }
            let text = w.render(&RenderOptions { skip, rendition_reports: &[] });
            prop_assert!(text.starts_with("#EXTM3U\n"));
            let p = parse(&text);
            // Media sequence never goes back.
            prop_assert!(p.media_sequence >= last_seq);
            last_seq = p.media_sequence;
            // Segment URIs are consecutive from MEDIA-SEQUENCE + skipped.
            let skipped: u64 = lines_starting(&text, "#EXT-X-SKIP:SKIPPED-SEGMENTS=")
                .first()
                .map_or(0, |l| l.rsplit('=').next().unwrap().parse().unwrap());
            for (i, s) in p.segments.iter().enumerate() {
                let msn = parse_segment_name(&s.uri).unwrap();
                prop_assert_eq!(msn, p.media_sequence + skipped + i as u64);
                prop_assert!(s.program_date_time.is_some());
                prop_assert!(s.duration > 0.0);
            }
            // Listed parts: a segment's EXTINF is the sum of its parts
            // (each rounded to 1 ms, so within half a ms per part).
            for (parts, extinf) in parts_and_extinf(&text) {
                if !parts.is_empty() {
                    let sum: i64 = parts.iter().sum();
                    prop_assert!((sum - extinf).abs() * 2 <= parts.len() as i64 + 1);
                }
            }
            // Part URIs of each segment count 0, 1, 2, ...
            let mut expect: Option<PartRef> = None;
            for l in lines_starting(&text, "#EXT-X-PART:") {
                let uri = l.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
                let part = parse_part_name(uri).unwrap();
                if let Some(e) = expect {
                    if part.msn == e.msn {
                        prop_assert_eq!(part.index, e.index + 1);
                    } else {
                        prop_assert!(part.msn > e.msn);
                        prop_assert_eq!(part.index, 0);
                    }
                } else {
                    prop_assert_eq!(part.index, 0);
                }
                expect = Some(part);
            }
            prop_assert_eq!(p.end_list, w.is_ended());
            prop_assert!(count(&text, "#EXT-X-PRELOAD-HINT:TYPE=PART") <= 1);
            prop_assert_eq!(count(&text, "#EXT-X-PRELOAD-HINT") > 0, !w.is_ended());
        }
    }
}

/// Sum of the `EXTINF` durations m3u8-rs reads, in milliseconds.
fn listed_ms(text: &str) -> i64 {
    parse(text)
        .segments
        .iter()
        .map(|s| (f64::from(s.duration) * 1000.0).round() as i64)
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// RFC 8216bis §6.2.2: once the stream has three Target Durations of
    /// segments, no playlist a client can get lists less: neither the
    /// current one nor one answering a blocking request as of any part it
    /// shows, whatever the segment lengths (as an independent parser reads
    /// them).
    #[test]
    fn no_playlist_lists_less_than_three_target_durations(
        segments in proptest::collection::vec((1i64..=4, 1i64..=500, any::<bool>()), 1..40),
    ) {
        let mut f = Feed::new(window());
        let three_td = 3 * 2000;
        let mut closed_ms = 0;
        for (whole_parts, last_ms, held) in segments {
            f.open(false, 0);
            for i in 0..whole_parts {
                f.part(500, i == 0);
            }
            f.part(last_ms, false);
            let shown = f.w.last_part().unwrap();
            if held {
                f.w.close_segment_held().unwrap();
            } else {
                f.w.close_segment().unwrap();
            }
            closed_ms += whole_parts * 500 + last_ms;
            // The newest segment may be shown as parts only; everything
            // before it counts.
            let before_newest = closed_ms - (whole_parts * 500 + last_ms);
            if before_newest < three_td {
                continue;
            }
            let text = render(&f.w);
            prop_assert!(listed_ms(&text) >= three_td, "{}", text);
            for index in 0..=shown.index {
                let part = PartRef { msn: shown.msn, index };
                if let Some(view) = f.w.as_of(part) {
                    let text = render(&view);
                    prop_assert!(listed_ms(&text) >= three_td, "as of {:?}: {}", part, text);
                }
            }
        }
    }
}
