#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! A stream served as a set of renditions: the source `cam` and two rungs
//! `cam/270p` and `cam/180p` published on an in-process bus, the way the
//! transcoder publishes them, and checked through the origin's HTTP router
//! (no socket): the multivariant playlist, rendition reports, aligned
//! segments (same `tfdt` and duration for the same media sequence number),
//! a rendition joining late, and bad rendition names.
//!
//! The media is real: ffmpeg encodes one test source at three sizes with
//! identical keyframe placement, and `ferrocast_media::ts::Demuxer` turns
//! each into bus units with identical timestamps.

#[path = "../../../services/ferrocast/tests/common/boxes.rs"]
mod boxes;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferrocast_bus::{BusConfig, InProcessBus};
use ferrocast_hls::RenditionName;
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, StreamName, Time90k, TrackInfo, TrackKind};
use ferrocast_packager::{Origin, PackagerConfig, RenditionPlan};
use tower::ServiceExt;

/// Source and rungs: (bus suffix, width, height).
const RENDITIONS: [(&str, u32, u32); 3] = [("", 640, 360), ("270p", 480, 270), ("180p", 320, 180)];

/// Encode 8 s of one test source at every size of [`RENDITIONS`], with a
/// keyframe every second (forced at the same times), no B-frames, AAC.
fn encode(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-filter_complex",
            "[0:v]split=3[v0][a][b];[a]scale=480:270[v1];[b]scale=320:180[v2]",
        ]);
    let mut files = Vec::new();
    for (i, _) in RENDITIONS.iter().enumerate() {
        let file = dir.join(format!("r{i}.ts"));
        cmd.args(["-map", &format!("[v{i}]"), "-map", "1:a"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args([
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
                "-bf",
                "0",
            ])
            .args(["-force_key_frames", "expr:gte(t,n_forced*1)"])
            .args(["-c:a", "aac", "-b:a", "64k", "-t", "8", "-f", "mpegts"])
            .arg(&file);
        files.push(file);
    }
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg (Debian's) is installed");
    assert!(status.success(), "ffmpeg failed");
    files
}

/// The tracks and access units of an MPEG-TS file.
fn demux(path: &std::path::Path) -> (Vec<TrackInfo>, Vec<AccessUnit>) {
    let bytes = std::fs::read(path).unwrap();
    let mut demuxer = Demuxer::new();
    let mut events = Vec::new();
    demuxer.push(&bytes, &mut events);
    demuxer.finish(&mut events);
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut units = Vec::new();
    for event in events {
        match event {
            DemuxEvent::Track(track) => {
                tracks.retain(|t| t.id != track.id);
                tracks.push(track);
            }
            DemuxEvent::Unit(unit) => units.push(unit),
            _ => {}
        }
    }
    tracks.sort_by_key(|t| t.kind() != TrackKind::Video);
    (tracks, units)
}

/// An in-process bus whose subscribers may queue a whole test file.
fn roomy_bus() -> InProcessBus {
    InProcessBus::new(BusConfig {
        subscriber_queue_bytes: 256 << 20,
        subscriber_hard_limit_bytes: 512 << 20,
        ..BusConfig::default()
    })
}

/// 200 ms parts, segments cut at the first keyframe after `segment_min_ms`,
/// 10 segments listed, requests held up to 20 s.
fn packager_config(
    segment_min_ms: i64,
    target_duration_secs: u32,
    separate_audio: bool,
) -> PackagerConfig {
    PackagerConfig {
        part_target: Time90k::from_millis(200),
        segment_min: Time90k::from_millis(segment_min_ms),
        target_duration_secs,
        window_segments: 10,
        max_hold: Duration::from_secs(20),
        reconnect_grace: Duration::from_secs(30),
        part_hold_back_parts: 3,
        separate_audio,
        rendition_wait: Duration::from_secs(30),
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, bytes::Bytes) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, body)
}

async fn text(app: &axum::Router, uri: &str) -> String {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body:?}");
    String::from_utf8(body.to_vec()).unwrap()
}

/// The media playlist at `base` once segment `msn` is complete, stepping
/// through blocking reloads (a request more than two segments ahead is
/// refused).
async fn playlist_with(app: &axum::Router, base: &str, msn: u64) -> String {
    let mut playlist = String::new();
    for m in 0..=msn {
        playlist = text(app, &format!("{base}?_HLS_msn={m}")).await;
    }
    playlist
}

fn media_sequence(playlist: &str) -> u64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renditions_are_listed_reported_and_aligned() {
    tokio::time::timeout(Duration::from_secs(120), scenario())
        .await
        .expect("the scenario finishes in time");
}

async fn scenario() {
    let dir = tempfile::tempdir().unwrap();
    let files = encode(dir.path());
    let media: Vec<_> = files.iter().map(|f| demux(f)).collect();
    for (tracks, units) in &media {
        assert_eq!(tracks.len(), 2);
        assert!(units.len() > 500);
    }
    // Identical timestamps across renditions, as the transcoder makes them.
    let keyframes = |units: &[AccessUnit]| -> Vec<Time90k> {
        units.iter().filter(|u| u.keyframe).map(|u| u.dts).collect()
    };
    assert_eq!(keyframes(&media[0].1), keyframes(&media[1].1));
    assert_eq!(keyframes(&media[0].1), keyframes(&media[2].1));

    let bus = roomy_bus();
    let config = packager_config(2000, 3, false);
    // The bus streams exist before the origin starts, so it subscribes to
    // them at once (no announcement to wait for); their media comes later.
    let names = ["cam", "cam/270p", "cam/180p"];
    let publishers: Vec<_> = names.iter().map(|n| bus.publish(n).unwrap()).collect();
    let metrics = Arc::new(ferrocast_telemetry::Metrics::new());
    let origin = Origin::start(Arc::new(bus.clone()), config, metrics).unwrap();
    let rung = |name: &str| RenditionName::new(name).unwrap();
    origin.set_renditions(
        &StreamName::new("cam").unwrap(),
        RenditionPlan {
            source_listed: true,
            rungs: vec![rung("270p"), rung("180p")],
        },
    );
    let app = ferrocast_packager::http::router(origin.clone());

    // The source and the first rung, from the start.
    for ((tracks, units), publisher) in media.iter().zip(&publishers).take(2) {
        publisher.send_tracks(tracks.clone());
        for unit in units {
            publisher.send_unit(unit.clone());
        }
    }
    // Segments cut at the first keyframe after 2 s: 0-2, 2-4, 4-6 complete.
    for prefix in ["", "270p/"] {
        let playlist = playlist_with(&app, &format!("/live/cam/{prefix}stream.m3u8"), 2).await;
        assert_eq!(media_sequence(&playlist), 0, "{playlist}");
    }

    // A multivariant request now waits for the rung that is not there yet.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { text(&app, "/live/cam/index.m3u8").await }
    });
    // The late rung starts 3 s in (a keyframe inside the others' segment
    // 1): its first segment is the others' segment 2, at 4 s.
    let (tracks, units) = &media[2];
    let first = units.iter().find(|u| u.keyframe).unwrap().dts;
    let (_, seg2) = get(&app, "/live/cam/seg2.m4s").await;
    let seg2_start = first + Time90k(boxes::video_timing(&seg2).0 as i64);
    let start = units
        .iter()
        .filter(|u| u.keyframe && u.dts < seg2_start)
        .map(|u| u.dts)
        .next_back()
        .unwrap();
    assert!(start > first + Time90k::from_millis(2000));
    let late = &publishers[2];
    late.send_tracks(tracks.clone());
    for unit in units.iter().filter(|u| u.dts >= start) {
        late.send_unit(unit.clone());
    }
    // The multivariant playlist: every rendition, best first.
    let multivariant = waiting.await.unwrap();
    // Its window starts at 2: blocking for 2 is answered once 2 is done.
    let late_playlist = text(&app, "/live/cam/180p/stream.m3u8?_HLS_msn=2").await;
    assert_eq!(media_sequence(&late_playlist), 2, "{late_playlist}");

    let infs: Vec<(&str, &str)> = multivariant
        .lines()
        .zip(multivariant.lines().skip(1))
        .filter(|(l, _)| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(infs.len(), 3, "{multivariant}");
    let uris: Vec<&str> = infs.iter().map(|(_, uri)| *uri).collect();
    assert_eq!(
        uris,
        ["stream.m3u8", "270p/stream.m3u8", "180p/stream.m3u8"],
        "{multivariant}"
    );
    let attr = |inf: &str, key: &str| -> String {
        inf.split(&format!("{key}="))
            .nth(1)
            .map(|rest| {
                if let Some(quoted) = rest.strip_prefix('"') {
                    quoted.split('"').next().unwrap().to_owned()
                } else {
                    rest.split(',').next().unwrap().to_owned()
                }
            })
            .unwrap_or_else(|| panic!("{key} missing in {inf}"))
    };
    let mut last_bandwidth = u64::MAX;
    for ((inf, _), ((tracks, _), (_, w, h))) in infs.iter().zip(media.iter().zip(RENDITIONS)) {
        assert_eq!(attr(inf, "RESOLUTION"), format!("{w}x{h}"), "{inf}");
        assert_eq!(attr(inf, "FRAME-RATE"), "25.000", "{inf}");
        let codecs: Vec<String> = tracks.iter().map(|t| t.params.codec_string()).collect();
        assert_eq!(attr(inf, "CODECS"), codecs.join(","), "{inf}");
        assert!(attr(inf, "CODECS").starts_with("avc1.") && inf.contains("mp4a.40.2"));
        let bandwidth: u64 = attr(inf, "BANDWIDTH").parse().unwrap();
        let average: u64 = attr(inf, "AVERAGE-BANDWIDTH").parse().unwrap();
        assert!(bandwidth >= average && average > 0, "{inf}");
        assert!(
            bandwidth <= last_bandwidth,
            "ordered by bandwidth: {multivariant}"
        );
        last_bandwidth = bandwidth;
    }

    // Rendition reports: every other rendition, relative to the playlist.
    let source = text(&app, "/live/cam/stream.m3u8").await;
    let hd = text(&app, "/live/cam/270p/stream.m3u8").await;
    for (playlist, others) in [
        (&source, ["270p/stream.m3u8", "180p/stream.m3u8"]),
        (&hd, ["../stream.m3u8", "../180p/stream.m3u8"]),
        (&late_playlist, ["../stream.m3u8", "../270p/stream.m3u8"]),
    ] {
        for uri in others {
            let report = format!("#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN=");
            assert!(playlist.contains(&report), "{report} missing:\n{playlist}");
        }
        assert_eq!(playlist.matches("#EXT-X-RENDITION-REPORT:").count(), 2);
    }

    // Segment N of every rendition: same start, same duration, a keyframe
    // first; the late rung's first segment is number 2 like the others'.
    for msn in 0..=2u64 {
        let mut timings = Vec::new();
        for prefix in ["", "270p/", "180p/"] {
            if prefix == "180p/" && msn < 2 {
                let (status, _) = get(&app, &format!("/live/cam/{prefix}seg{msn}.m4s")).await;
                assert_eq!(status, StatusCode::NOT_FOUND);
                continue;
            }
            let (status, body) = get(&app, &format!("/live/cam/{prefix}seg{msn}.m4s")).await;
            assert_eq!(status, StatusCode::OK, "{prefix}seg{msn}");
            timings.push(boxes::video_timing(&body));
        }
        assert!(
            timings.iter().all(|t| *t == timings[0]),
            "segment {msn}: {timings:?}"
        );
        assert_eq!(
            timings[0].0,
            msn * 2 * 90_000,
            "segment {msn} starts at {msn}×2 s"
        );
        assert_eq!(timings[0].1, 2 * 90_000);
        assert!(timings[0].2, "segment {msn} starts with a keyframe");
    }
    for prefix in ["", "270p/", "180p/"] {
        let (status, body) = get(&app, &format!("/live/cam/{prefix}init0.mp4")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[4..8], b"ftyp");
    }
    // `source` names the source rendition too.
    let (status, _) = get(&app, "/live/cam/source/seg0.m4s").await;
    assert_eq!(status, StatusCode::OK);

    // Bad or unknown rendition names: 404, whatever they look like.
    for uri in [
        "/live/cam/%2e%2e/stream.m3u8",
        "/live/cam/..%2fcam/stream.m3u8",
        "/live/cam/.hidden/stream.m3u8",
        "/live/cam/a%20b/stream.m3u8",
        "/live/cam/a%2fb/stream.m3u8",
        &format!("/live/cam/{}/stream.m3u8", "x".repeat(33)),
        "/live/cam/1080p/stream.m3u8",
        "/live/cam/270p/index.m3u8",
        "/live/cam/270p/../../etc/passwd",
        "/live/nope/270p/stream.m3u8",
    ] {
        let (status, _) = get(&app, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }

    // Per-rendition metrics under the bus stream name.
    let metrics = origin.metrics().render();
    for name in ["cam", "cam/270p", "cam/180p"] {
        assert!(
            metrics.contains(&format!(
                "ferrocast_packager_parts_total{{stream=\"{name}\"}}"
            )),
            "{name}"
        );
    }
    drop(publishers);
}

#[tokio::test]
async fn an_unlisted_source_is_left_out_and_a_missing_rung_is_not_waited_for_forever() {
    let bus = InProcessBus::default();
    let config = PackagerConfig {
        part_target: Time90k::from_millis(200),
        segment_min: Time90k::from_millis(1000),
        target_duration_secs: 2,
        window_segments: 6,
        max_hold: Duration::from_secs(10),
        reconnect_grace: Duration::from_secs(30),
        part_hold_back_parts: 3,
        separate_audio: false,
        // The stream's first moments are over at once: no waiting for the
        // rung that never comes.
        rendition_wait: Duration::ZERO,
    };
    let publisher = bus.publish("solo/480p").unwrap();
    let source = bus.publish("solo").unwrap();
    let origin = Origin::start(
        Arc::new(bus.clone()),
        config,
        Arc::new(ferrocast_telemetry::Metrics::new()),
    )
    .unwrap();
    let name = StreamName::new("solo").unwrap();
    origin.set_renditions(
        &name,
        RenditionPlan {
            source_listed: false,
            rungs: vec![RenditionName::new("720p").unwrap()],
        },
    );
    let app = ferrocast_packager::http::router(origin.clone());
    let dir = tempfile::tempdir().unwrap();
    let files = encode(dir.path());
    let (tracks, units) = demux(&files[1]);
    publisher.send_tracks(tracks.clone());
    source.send_tracks(tracks.clone());
    for unit in &units {
        publisher.send_unit(unit.clone());
        source.send_unit(unit.clone());
    }
    playlist_with(&app, "/live/solo/480p/stream.m3u8", 1).await;
    let multivariant = text(&app, "/live/solo/index.m3u8").await;
    assert_eq!(
        multivariant.matches("#EXT-X-STREAM-INF:").count(),
        1,
        "{multivariant}"
    );
    assert!(
        multivariant.contains("\n480p/stream.m3u8\n"),
        "{multivariant}"
    );
    // Reports leave the unlisted source out.
    let rung = text(&app, "/live/solo/480p/stream.m3u8").await;
    assert!(!rung.contains("#EXT-X-RENDITION-REPORT"), "{rung}");
    // The source is still served.
    text(&app, "/live/solo/stream.m3u8").await;
    origin.set_source_listed(&name, true);
    let multivariant = text(&app, "/live/solo/index.m3u8").await;
    assert_eq!(multivariant.matches("#EXT-X-STREAM-INF:").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_audio_is_one_rendition_every_variant_plays_with() {
    tokio::time::timeout(Duration::from_secs(120), separate_audio_scenario())
        .await
        .expect("the scenario finishes in time");
}

async fn separate_audio_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let files = encode(dir.path());
    let media: Vec<_> = files.iter().take(2).map(|f| demux(f)).collect();
    let bus = roomy_bus();
    let config = packager_config(1000, 2, true);
    let publishers: Vec<_> = ["cam", "cam/270p"]
        .iter()
        .map(|n| bus.publish(n).unwrap())
        .collect();
    let origin = Origin::start(
        Arc::new(bus.clone()),
        config,
        Arc::new(ferrocast_telemetry::Metrics::new()),
    )
    .unwrap();
    let app = ferrocast_packager::http::router(origin.clone());
    // As ffmpeg muxes by default: about 0.37 s of AAC per PES.
    for ((tracks, units), publisher) in media.iter().zip(&publishers) {
        publisher.send_tracks(tracks.clone());
        for unit in units {
            publisher.send_unit(unit.clone());
        }
    }
    let audio = playlist_with(&app, "/live/cam/audio/stream.m3u8", 4).await;
    let video = playlist_with(&app, "/live/cam/stream.m3u8", 4).await;
    let rung = playlist_with(&app, "/live/cam/270p/stream.m3u8", 4).await;

    // The multivariant playlist: one audio rendition, and every variant
    // names it and counts its codec.
    let multivariant = text(&app, "/live/cam/index.m3u8").await;
    assert!(
        multivariant.contains(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,\
             AUTOSELECT=YES,CHANNELS=\"1\",URI=\"audio/stream.m3u8\"\n"
        ),
        "{multivariant}"
    );
    let infs: Vec<&str> = multivariant
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .collect();
    assert_eq!(infs.len(), 2, "{multivariant}");
    for inf in &infs {
        assert!(inf.ends_with(",AUDIO=\"audio\""), "{inf}");
        assert!(
            inf.contains("CODECS=\"avc1.") && inf.contains(",mp4a.40.2\""),
            "{inf}"
        );
    }
    assert!(!multivariant.contains("\naudio/stream.m3u8\n"));

    // Reports name the other video rendition only; the audio has none.
    assert_eq!(
        video.matches("#EXT-X-RENDITION-REPORT:").count(),
        1,
        "{video}"
    );
    assert!(video.contains("URI=\"270p/stream.m3u8\""), "{video}");
    assert_eq!(
        rung.matches("#EXT-X-RENDITION-REPORT:").count(),
        1,
        "{rung}"
    );
    assert!(!audio.contains("#EXT-X-RENDITION-REPORT"), "{audio}");

    // One track per init segment: the video renditions' have no audio.
    for (prefix, handler) in [("", b"vide"), ("270p/", b"vide"), ("audio/", b"soun")] {
        let (status, init) = get(&app, &format!("/live/cam/{prefix}init0.mp4")).await;
        assert_eq!(status, StatusCode::OK);
        let handlers: Vec<&[u8]> = init
            .windows(8)
            .filter(|w| &w[..4] == b"hdlr")
            .map(|w| &w[4..])
            .collect();
        assert_eq!(handlers.len(), 1, "{prefix}: one trak");
        let at = init.windows(4).position(|w| w == b"hdlr").unwrap();
        assert_eq!(&init[at + 12..at + 16], handler, "{prefix}");
    }

    // Segment N of the audio starts where segment N of the video does, to
    // within half an audio frame, and holds audio only, back to back.
    let mut audio_end = None;
    for msn in 0..=3u64 {
        let (_, v) = get(&app, &format!("/live/cam/seg{msn}.m4s")).await;
        let (_, a) = get(&app, &format!("/live/cam/audio/seg{msn}.m4s")).await;
        let (video_start, ..) = boxes::video_timing(&v);
        assert!(boxes::trafs(&v).iter().all(|t| t.track_id == 1));
        let trafs = boxes::trafs(&a);
        assert!(
            trafs
                .iter()
                .all(|t| t.track_id == 1 && t.durations.iter().all(|&d| d == 1024))
        );
        let audio_start = trafs[0].base_decode_time;
        // 48 kHz audio, 90 kHz video: half a frame is 512 samples.
        let video_in_samples = video_start * 48_000 / 90_000;
        assert!(
            audio_start.abs_diff(video_in_samples) <= 512,
            "segment {msn}: video at {video_in_samples}, audio at {audio_start} (48 kHz)"
        );
        if let Some(end) = audio_end {
            assert_eq!(audio_start, end, "segment {msn} continues the audio");
        }
        let last = trafs.last().unwrap();
        audio_end =
            Some(last.base_decode_time + last.durations.iter().map(|&d| u64::from(d)).sum::<u64>());
    }
    drop(publishers);
}

/// A stream whose parts all reach the packager at once (a burst, as a
/// transcoder's rung behind a batching sender delivers them): a blocking
/// request whose answer closes a segment waits until one part target after
/// that segment's last part was listed; any other is answered at once.
/// Tokio's clock is paused, so the times are exact.
#[tokio::test(start_paused = true)]
async fn a_segment_close_is_answered_a_part_after_its_last_part() {
    let dir = tempfile::tempdir().unwrap();
    let files = encode(dir.path());
    let (tracks, units) = demux(&files[2]);
    let bus = roomy_bus();
    let config = packager_config(1000, 2, false);
    let publisher = bus.publish("burst").unwrap();
    let origin = Origin::start(
        Arc::new(bus.clone()),
        config,
        Arc::new(ferrocast_telemetry::Metrics::new()),
    )
    .unwrap();
    let app = ferrocast_packager::http::router(origin);
    publisher.send_tracks(tracks);
    for unit in &units {
        publisher.send_unit(unit.clone());
    }
    let base = "/live/burst/stream.m3u8";
    let now = playlist_with(&app, base, 6).await;
    // The newest segment that has closed: the one before the open one.
    let parts = |playlist: &str| -> Vec<String> {
        playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
            .map(str::to_owned)
            .collect()
    };
    let open: u64 = parts(&now)
        .iter()
        .filter_map(|uri| uri.strip_prefix("part"))
        .filter_map(|r| r.split('.').next()?.parse().ok())
        .max()
        .unwrap();
    let last = open - 1;
    // Inside it: at once, as of the part asked for.
    let start = tokio::time::Instant::now();
    let inside = text(&app, &format!("{base}?_HLS_msn={last}&_HLS_part=2")).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        parts(&inside).last(),
        Some(&format!("part{last}.2.m4s")),
        "{inside}"
    );

    // Past its last part: satisfied by the next segment's first part, which
    // closes it, and held until a part target after its last part was
    // listed.
    let closing = tokio::spawn({
        let app = app.clone();
        async move { text(&app, &format!("{base}?_HLS_msn={last}&_HLS_part=5")).await }
    });
    tokio::time::advance(Duration::from_millis(150)).await;
    assert!(
        !closing.is_finished(),
        "answered within a part of the last part"
    );
    let closed = closing.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert!(closed.contains(&format!("seg{last}.m4s\n")), "{closed}");
    assert_eq!(
        parts(&closed).last(),
        Some(&format!("part{open}.0.m4s")),
        "one part per reload: {closed}"
    );
    drop(publisher);
}
