#![allow(clippy::unwrap_used)]

//! The ABR ladder end to end through the real transcoder and packager: an
//! SRT push with the test ladder becomes three H.264 renditions whose
//! segments line up (same `tfdt` and duration for the same media sequence
//! number, read by the independent box reader), listed in the multivariant
//! playlist with their measured bandwidth, codecs, resolution and frame
//! rate, each media playlist reporting the others; hls.js in headless
//! Chromium plays the multivariant playlist and switches rendition when
//! asked (`hls.nextLevel`, a smooth switch) without stalling.

mod common;

use std::collections::BTreeMap;

use common::{Server, boxes, browser, client, ffmpeg_push, get_bytes, get_text};

/// (rung, width, height) of `common::TEST_LADDER` from the 320x240 source.
const RUNGS: [(&str, u64, u64); 3] = [("240p", 320, 240), ("180p", 240, 180), ("144p", 192, 144)];

/// Complete segments of a media playlist: media sequence number → URI.
fn segments(playlist: &str) -> BTreeMap<u64, String> {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .enumerate()
        .map(|(i, uri)| (first + i as u64, uri.to_owned()))
        .collect()
}

/// The attribute `name` of an EXT-X-STREAM-INF line.
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split(',').next()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ladder_is_aligned_listed_and_switchable_in_hls_js() {
    let server = Server::start_with_args(common::TEST_LADDER, &["--ladder", "test"]);
    let _push = ffmpeg_push(server.srt, "publish:live/abr", 90);
    let http = client();

    // Every rung has three complete segments.
    let mut playlists = Vec::new();
    for (rung, ..) in RUNGS {
        let path = format!("abr/{rung}");
        playlists.push(common::playlist_with_segment(&http, &server, &path, 3).await);
    }

    // The multivariant playlist lists the three rungs (the source is not
    // offered: the test ladder has no passthrough), highest first.
    let (status, multivariant) = get_text(&http, &server.url("abr", "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    let variants: Vec<(&str, &str)> = multivariant
        .lines()
        .zip(multivariant.lines().skip(1))
        .filter(|(tag, _)| tag.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(variants.len(), 3, "{multivariant}");
    let mut last_bandwidth = u64::MAX;
    for ((inf, uri), (rung, width, height)) in variants.iter().zip(RUNGS) {
        assert_eq!(*uri, format!("{rung}/stream.m3u8"), "{multivariant}");
        assert_eq!(
            attribute(inf, "RESOLUTION"),
            Some(format!("{width}x{height}").as_str())
        );
        let codecs = attribute(inf, "CODECS").unwrap();
        assert!(
            codecs.starts_with("avc1.") && codecs.ends_with(",mp4a.40.2"),
            "{inf}"
        );
        assert_eq!(attribute(inf, "FRAME-RATE"), Some("25.000"), "{inf}");
        let bandwidth: u64 = attribute(inf, "BANDWIDTH").unwrap().parse().unwrap();
        let average: u64 = attribute(inf, "AVERAGE-BANDWIDTH")
            .unwrap()
            .parse()
            .unwrap();
        assert!(average > 0 && average <= bandwidth, "{inf}");
        assert!(
            bandwidth <= last_bandwidth,
            "ordered by bandwidth: {multivariant}"
        );
        last_bandwidth = bandwidth;
    }

    // Each media playlist reports the two other renditions.
    for (playlist, (rung, ..)) in playlists.iter().zip(RUNGS) {
        let reports: Vec<&str> = playlist
            .lines()
            .filter(|l| l.starts_with("#EXT-X-RENDITION-REPORT:"))
            .collect();
        assert_eq!(reports.len(), 2, "{rung}: {playlist}");
        for (other, ..) in RUNGS.iter().filter(|(r, ..)| *r != rung) {
            assert!(
                reports
                    .iter()
                    .any(|r| r.contains(&format!("URI=\"../{other}/stream.m3u8\""))),
                "{rung} lacks a report for {other}: {playlist}"
            );
        }
    }

    // Segment N of every rung covers the same media time.
    let listed: Vec<BTreeMap<u64, String>> = playlists.iter().map(|p| segments(p)).collect();
    let common_msns: Vec<u64> = listed[0]
        .keys()
        .copied()
        .filter(|msn| listed.iter().all(|l| l.contains_key(msn)))
        .collect();
    assert!(common_msns.len() >= 2, "{playlists:?}");
    for msn in &common_msns {
        let mut timings = Vec::new();
        for ((rung, ..), segs) in RUNGS.iter().zip(&listed) {
            let url = server.url(&format!("abr/{rung}"), &segs[msn]);
            let bytes = get_bytes(&http, &url).await;
            timings.push(boxes::video_timing(&bytes));
        }
        assert!(
            timings.iter().all(|t| t.2),
            "segment {msn} starts with an IDR: {timings:?}"
        );
        assert!(
            timings
                .windows(2)
                .all(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1)),
            "segment {msn} differs across rungs (tfdt, duration, sync): {timings:?}"
        );
    }

    // hls.js plays the ladder, then is switched to the lowest rung.
    if !browser::available() {
        return;
    }
    let report = browser::play(
        &server.url("abr", "index.m3u8"),
        20,
        &["--switch-level", "0", "--hls-debug"],
    );
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3, "{report}");
    // hls.js orders levels by bitrate, lowest first: level 0 is 144p.
    assert_eq!(levels[0]["height"], 144, "{report}");
    let switches = report["levelSwitches"].as_array().unwrap();
    assert_eq!(switches.last(), Some(&serde_json::json!(0)), "{report}");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(192), Some(144)),
        "playing the forced rendition at the end: {report}"
    );
    assert_eq!(
        report["stalls"],
        0,
        "playback stalled: {}\nserver warnings:\n{}",
        browser::timeline(&report),
        server
            .log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let samples = report["samples"].as_array().unwrap();
    let times: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["currentTime"].as_f64())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "currentTime went backwards"
    );
    let advanced = browser::played_seconds(&times);
    assert!(advanced > 10.0, "played only {advanced:.1} s: {report}");
}
