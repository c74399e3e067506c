#![allow(clippy::unwrap_used)]

//! End-to-end: an SRT push from Debian's ffmpeg plays as LL-HLS from the
//! real `ferrocast` binary.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{Server, client, ffmpeg_push, get_bytes, get_text, playlist_with_segment};

/// Attribute value of `key` in an attribute list line.
fn attr<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let list = line.split_once(':')?.1;
    let mut rest = list;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k == key {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn millis(decimal: &str) -> i64 {
    let (whole, frac) = decimal.split_once('.').unwrap_or((decimal, "0"));
    let frac = format!("{frac:0<3}");
    whole.parse::<i64>().unwrap() * 1000 + frac[..3].parse::<i64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_playlist_follows_ll_hls_rules() {
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/rules", 30);
    let http = client();
    let text = playlist_with_segment(&http, &server, "rules", 4).await;

    // The independent parser reads the plain-HLS skeleton.
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs parses it");
    assert_eq!(parsed.target_duration, 2);
    assert!(parsed.segments.len() >= 4, "{text}");
    for segment in &parsed.segments {
        assert!(
            segment.duration <= 2.0 + 1e-9,
            "segment longer than TARGETDURATION: {text}"
        );
        assert!(segment.program_date_time.is_some() || text.contains("#EXT-X-PROGRAM-DATE-TIME"));
    }

    let lines: Vec<&str> = text.lines().collect();
    let part_inf = lines
        .iter()
        .find(|l| l.starts_with("#EXT-X-PART-INF:"))
        .expect("EXT-X-PART-INF");
    let part_target = millis(attr(part_inf, "PART-TARGET").unwrap());
    assert_eq!(part_target, 200);
    let control = lines
        .iter()
        .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
        .expect("SERVER-CONTROL");
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    assert!(
        millis(attr(control, "PART-HOLD-BACK").unwrap()) >= 3 * part_target,
        "{control}"
    );
    assert!(
        millis(attr(control, "CAN-SKIP-UNTIL").unwrap()) >= 6 * 2000,
        "{control}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("#EXT-X-MAP:URI=\"init0.mp4\"")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME:")),
        "{text}"
    );
    let hint = lines
        .iter()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .expect("PRELOAD-HINT");
    assert_eq!(attr(hint, "TYPE"), Some("PART"));

    // Parts: each at most the part target (ms precision), the first part of
    // every segment independent, and the parts of a segment add up to it.
    let mut parts_since_segment: Vec<(i64, bool)> = Vec::new();
    let mut checked_segments = 0;
    for line in &lines {
        if line.starts_with("#EXT-X-PART:") {
            let duration = millis(attr(line, "DURATION").unwrap());
            assert!(
                duration <= part_target,
                "part longer than PART-TARGET: {line}"
            );
            parts_since_segment.push((duration, attr(line, "INDEPENDENT") == Some("YES")));
        } else if let Some(extinf) = line.strip_prefix("#EXTINF:") {
            let duration = millis(extinf.trim_end_matches(','));
            if !parts_since_segment.is_empty() {
                assert!(
                    parts_since_segment[0].1,
                    "segment's first part not INDEPENDENT: {text}"
                );
                let sum: i64 = parts_since_segment.iter().map(|p| p.0).sum();
                assert!(
                    (sum - duration).abs() <= parts_since_segment.len() as i64,
                    "parts {sum} ms vs segment {duration} ms\n{text}"
                );
                checked_segments += 1;
            }
            parts_since_segment.clear();
        }
    }
    assert!(
        checked_segments >= 1,
        "no segment listed with its parts: {text}"
    );

    // Blocking request far ahead: 400. _HLS_part without _HLS_msn: 400.
    let last = parsed.media_sequence + parsed.segments.len() as u64 - 1;
    let (status, _) = get_text(
        &http,
        &format!(
            "{}?_HLS_msn={}",
            server.url("rules", "stream.m3u8"),
            last + 10
        ),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get_text(
        &http,
        &format!("{}?_HLS_part=1", server.url("rules", "stream.m3u8")),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multivariant_unknown_streams_gzip_and_cors() {
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "#!::r=live/mv,m=publish", 30);
    let http = client();
    playlist_with_segment(&http, &server, "mv", 1).await;

    let (status, text) = get_text(&http, &server.url("mv", "index.m3u8")).await;
    assert_eq!(status, 200);
    let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("multivariant parses");
    let variant = &parsed.variants[0];
    assert!(variant.bandwidth > 50_000, "{text}");
    // libx264 High profile (0x64) at the level it picked, and AAC-LC.
    let codecs = variant.codecs.as_deref().unwrap();
    assert!(
        codecs.starts_with("avc1.64") && codecs.ends_with(",mp4a.40.2"),
        "{text}"
    );
    let resolution = variant.resolution.unwrap();
    assert_eq!((resolution.width, resolution.height), (320, 240));
    assert_eq!(variant.uri, "stream.m3u8");

    // gzip when accepted (reqwest decodes it; check the header raw).
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let response = raw
        .get(server.url("mv", "stream.m3u8"))
        .header("accept-encoding", "gzip")
        .header("origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );

    let (status, body) = get_text(&http, &server.url("nosuch", "index.m3u8")).await;
    assert_eq!(status, 404);
    assert!(
        body.len() < 100 && body.contains("no such stream"),
        "{body}"
    );
    for bad in ["..%2Fetc", "a%20b"] {
        let (status, _) = get_text(&http, &server.url(bad, "index.m3u8")).await;
        assert_eq!(status, 404, "{bad}");
    }
    let (status, _) = get_text(&http, &server.url("mv", "seg..%2F1.m4s")).await;
    assert_eq!(status, 404);
}

/// Init segment and every listed segment of rendition `name` (`media`,
/// its playlist) as one fMP4 file, checking on the way that each is CMAF
/// (`ftyp` + `moov`; every video segment starts with a keyframe) and that
/// the decode time of each track continues exactly where the previous
/// segment ended. Returns the file and the number of tracks seen.
async fn continuous_rendition(
    http: &reqwest::Client,
    server: &Server,
    name: &str,
    media: &m3u8_rs::MediaPlaylist,
) -> (Vec<u8>, usize) {
    let map = media.segments[0].map.as_ref().unwrap().uri.clone();
    let init = get_bytes(http, &server.url(name, &map)).await;
    let top: Vec<String> = common::boxes::children(&init)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(top, ["ftyp", "moov"], "{name}");
    let video = !name.ends_with("/audio");
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut file = init.to_vec();
    for (i, segment) in media.segments.iter().enumerate() {
        let bytes = get_bytes(http, &server.url(name, &segment.uri)).await;
        let trafs = common::boxes::trafs(&bytes);
        assert!(!trafs.is_empty());
        if video {
            assert_eq!(
                trafs[0].first_sample_is_sync,
                Some(true),
                "{name}: segment {i} starts without a keyframe"
            );
        }
        for traf in trafs {
            if let Some(expected) = next.get(&traf.track_id) {
                assert_eq!(
                    traf.base_decode_time, *expected,
                    "{name}: track {} tfdt gap/overlap in segment {i}",
                    traf.track_id
                );
            }
            let total: u64 = traf.durations.iter().map(|&d| u64::from(d)).sum();
            next.insert(traf.track_id, traf.base_decode_time + total);
        }
        file.extend_from_slice(&bytes);
    }
    (file, next.len())
}

/// ffprobe's streams of `file`, with every frame counted.
fn probe_counting_frames(file: &std::path::Path) -> Vec<serde_json::Value> {
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_streams",
                "-count_frames",
                "-of",
                "json",
            ])
            .arg(file),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["streams"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_and_parts_are_cmaf_with_continuous_timelines() {
    // The default layout: video in the stream's rendition, audio in
    // `audio/`, segment for segment.
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/cmaf", 30);
    let http = client();
    let text = playlist_with_segment(&http, &server, "cmaf", 5).await;
    let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
    let audio_text = playlist_with_segment(&http, &server, "cmaf/audio", 5).await;
    let audio_parsed = m3u8_rs::parse_media_playlist_res(audio_text.as_bytes()).unwrap();

    let (file, tracks) = continuous_rendition(&http, &server, "cmaf", &parsed).await;
    assert_eq!(tracks, 1, "the video rendition carries video only");
    let (audio_file, tracks) =
        continuous_rendition(&http, &server, "cmaf/audio", &audio_parsed).await;
    assert_eq!(tracks, 1, "the audio rendition carries audio only");

    // A part is byte-identical to its slice of the segment.
    let part_uri = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .find_map(|l| attr(l, "URI"))
        .unwrap()
        .to_string();
    let part = get_bytes(&http, &server.url("cmaf", &part_uri)).await;
    let msn: u64 = part_uri
        .trim_start_matches("part")
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let segment = get_bytes(&http, &server.url("cmaf", &format!("seg{msn}.m4s"))).await;
    assert!(
        segment.windows(part.len()).any(|w| w == &part[..]),
        "part {part_uri} is not inside seg{msn}"
    );

    // ffprobe, an independent parser, reads init + segments.
    let dir = tempfile::tempdir().unwrap();
    let streams = probe_counting_frames(&common::write_file(dir.path(), "video.mp4", &file));
    let [video] = streams.as_slice() else {
        panic!("{streams:?}")
    };
    assert_eq!(video["codec_type"], "video");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        video["has_b_frames"].as_i64().map(|b| b > 0),
        Some(true),
        "B-frames carried"
    );
    let frames: u64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
    let expected_frames = parsed
        .segments
        .iter()
        .map(|s| s.duration as f64)
        .sum::<f64>()
        * 25.0;
    assert!(
        (frames as f64 - expected_frames).abs() <= 2.0,
        "{frames} frames for {expected_frames} expected"
    );
    let streams = probe_counting_frames(&common::write_file(dir.path(), "audio.mp4", &audio_file));
    let [audio] = streams.as_slice() else {
        panic!("{streams:?}")
    };
    assert_eq!(audio["codec_type"], "audio");
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(audio["sample_rate"], "48000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_live_stream_without_errors() {
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/decode", 30);
    let http = client();
    playlist_with_segment(&http, &server, "decode", 2).await;
    common::assert_ffmpeg_decodes(&server, "decode", 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_updates_skip_old_segments() {
    // A 1 s target duration makes CAN-SKIP-UNTIL 6 s, so a 12-segment
    // window soon has segments old enough to skip.
    let server = Server::start("[hls]\ntarget_duration_secs = 1\nwindow_segments = 12\n");
    let _push = ffmpeg_push(server.srt, "publish:live/delta", 40);
    let http = client();
    let full = playlist_with_segment(&http, &server, "delta", 9).await;
    let control = full
        .lines()
        .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
        .unwrap();
    let skip_until = millis(attr(control, "CAN-SKIP-UNTIL").unwrap());
    assert_eq!(skip_until, 6000, "{control}");

    // Same state, as a delta update.
    let url = format!(
        "{}?_HLS_msn=9&_HLS_skip=YES",
        server.url("delta", "stream.m3u8")
    );
    let (status, delta) = get_text(&http, &url).await;
    assert_eq!(status, 200);
    let skip = delta
        .lines()
        .find(|l| l.starts_with("#EXT-X-SKIP:"))
        .unwrap_or_else(|| panic!("no EXT-X-SKIP:\n{delta}"));
    let skipped: u64 = attr(skip, "SKIPPED-SEGMENTS").unwrap().parse().unwrap();
    assert!(skipped >= 1, "{skip}");
    let sequence = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let segments = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("seg"))
            .map(str::to_owned)
            .collect()
    };
    // The delta lists the newest segments only, starting right after the
    // skipped ones, and skipped + listed covers the whole playlist.
    let listed = segments(&delta);
    assert_eq!(listed[0], format!("seg{}.m4s", sequence(&delta) + skipped));
    let full_now = get_text(&http, &server.url("delta", "stream.m3u8")).await.1;
    assert!(sequence(&full_now) >= sequence(&delta));
    // Skipped segments are all older than CAN-SKIP-UNTIL from the end.
    let listed_ms: i64 = delta
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| millis(d.trim_end_matches(',')))
        .sum();
    assert!(listed_ms >= skip_until - 1000, "delta keeps {listed_ms} ms");
    assert!(delta.len() < full.len(), "delta update is not smaller");
}
