#![allow(clippy::unwrap_used)]

//! End to end for the transcoder service: an SRT push (H.264 or HEVC)
//! becomes a three-rung H.264 ladder on the bus (`NAME/240p`, `NAME/180p`,
//! `NAME/144p`), seen through `/status` and `/metrics`, and each
//! rung as the origin serves it checked with ffprobe. The encoder choice
//! at start (CPU here, and why) is checked in the log and the metrics.
//!
//! The test ladder is small (320x240 source, ultrafast) so that two CPU
//! cores keep up.

mod common;

use std::time::{Duration, Instant};

use common::{Server, client, get_text};
use serde_json::Value;

/// Rung name, width, height, target bit/s.
const RUNGS: [(&str, u64, u64, u64); 3] = [
    ("240p", 320, 240, 400_000),
    ("180p", 240, 180, 250_000),
    ("144p", 192, 144, 150_000),
];

async fn status(server: &Server) -> Value {
    let (code, body) = get_text(&client(), &format!("http://{}/status", server.http)).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (bounded) until every rung of `name` is on the bus with its track
/// set and the transcoder has encoded `frames` frames on each; returns the
/// status document.
async fn ladder_on_bus(server: &Server, name: &str, frames: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doc = status(server).await;
        let rung_ok = |rung: &str| {
            let on_bus = doc["bus"].as_array().unwrap().iter().any(|s| {
                s["name"] == format!("{name}/{rung}")
                    && s["tracks"].as_array().is_some_and(|t| t.len() == 2)
            });
            let encoded = doc["transcode"]["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["name"] == name)
                .flat_map(|s| s["rungs"].as_array().cloned().unwrap_or_default())
                .any(|r| r["name"] == rung && r["frames_out"].as_u64() >= Some(frames));
            on_bus && encoded
        };
        if RUNGS.iter().all(|(rung, ..)| rung_ok(rung)) {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "no ladder for {name} on the bus; status {doc:#}\nlog:\n{}",
            server.log()
        );
        // No event to await from outside the process: poll the status API.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn check_rung_tracks(doc: &Value, name: &str) {
    for (rung, width, height, _) in RUNGS {
        let stream = doc["bus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("{name}/{rung}"))
            .unwrap();
        assert_eq!(stream["publisher_live"], true, "{stream}");
        let tracks = stream["tracks"].as_array().unwrap();
        let video = &tracks[0];
        assert_eq!(video["kind"], "video", "{stream}");
        assert!(
            video["codec"].as_str().unwrap().starts_with("avc1."),
            "{stream}"
        );
        assert_eq!(video["width"].as_u64(), Some(width), "{stream}");
        assert_eq!(video["height"].as_u64(), Some(height), "{stream}");
        assert_eq!(tracks[1]["codec"], "mp4a.40.2", "{stream}");
    }
    let t = doc["transcode"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap();
    assert_eq!(t["ladder"], "test");
    assert_eq!(t["error"], Value::Null, "{t}");
    assert_eq!(t["dropped_gops"], 0, "{t}");
    assert!(
        t["rungs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["shed"] == false),
        "{t}"
    );
}

/// ffprobe each rung as the origin serves it (`/live/NAME/RUNG/...`):
/// H.264 at the rung's size, and a bitrate near the target.
async fn probe_rungs_over_http(server: &Server, name: &str) {
    let http = client();
    for (rung, width, height, bitrate) in RUNGS {
        let path = format!("{name}/{rung}");
        let media = common::playlist_with_segment(&http, server, &path, 3).await;
        let file = common::init_and_segments(&http, server, &path, &media, 3).await;
        let dir = tempfile::tempdir().unwrap();
        let mp4 = common::write_file(dir.path(), "rung.mp4", &file);
        let streams = common::probe_streams(&mp4);
        for want in [
            "codec_name=h264".to_owned(),
            format!("width={width}"),
            format!("height={height}"),
        ] {
            assert!(
                streams.lines().any(|l| l == want),
                "{rung} {want}:\n{streams}"
            );
        }
        // Video bytes over the segments' duration, against the target:
        // generous bounds for rate control over a few seconds.
        let duration: f64 = media
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .take(3)
            .filter_map(|l| {
                l.trim_end_matches(',')
                    .split(',')
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .sum();
        let bps = file.len() as f64 * 8.0 / duration;
        eprintln!(
            "{path}: {streams_len} bytes over {duration:.2} s = {bps:.0} bit/s (target {bitrate})",
            streams_len = file.len()
        );
        assert!(
            bps > bitrate as f64 * 0.3 && bps < bitrate as f64 * 2.0 + 64_000.0,
            "{rung}: {bps} bit/s against a {bitrate} target"
        );
    }
}

async fn metric_lines(server: &Server) -> String {
    let (code, text) = get_text(&client(), &format!("http://{}/metrics", server.http)).await;
    assert_eq!(code, 200);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_push_becomes_a_three_rung_ladder() {
    let server = Server::start_with_args(common::TEST_LADDER, &["--ladder", "test"]);
    let push = common::ffmpeg_push(server.srt, "publish:live/h264", 60);
    let doc = ladder_on_bus(&server, "h264", 50).await;
    check_rung_tracks(&doc, "h264");
    let metrics = metric_lines(&server).await;
    for (rung, ..) in RUNGS {
        assert!(
            metrics.contains(&format!(
                "ferrocast_transcode_frames_total{{rung=\"{rung}\",stream=\"h264\"}}"
            )),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("ferrocast_transcode_lag_milliseconds{stream=\"h264\"}"),
        "{metrics}"
    );
    probe_rungs_over_http(&server, "h264").await;

    // The source ends (its publisher leaves, then the grace runs out):
    // every rung stream ends with it and its series go.
    push.stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doc = status(&server).await;
        let left: Vec<String> = doc["bus"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["name"].as_str())
            .filter(|n| n.starts_with("h264"))
            .map(str::to_owned)
            .collect();
        let metrics = metric_lines(&server).await;
        let series = metrics
            .lines()
            .any(|l| l.starts_with("ferrocast_transcode_") && l.contains("stream=\"h264\""));
        if left.is_empty() && !series {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "streams left: {left:?}, series left: {series}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!server.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_push_becomes_an_h264_ladder() {
    let server = Server::start_with_args(common::TEST_LADDER, &["--ladder", "test"]);
    let _push = common::ffmpeg_push_codecs(
        server.srt,
        "publish:live/hevc",
        60,
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-x265-params",
            "keyint=25:min-keyint=25:scenecut=0:log-level=error",
        ],
        &["-c:a", "aac", "-b:a", "64k"],
    );
    let doc = ladder_on_bus(&server, "hevc", 50).await;
    check_rung_tracks(&doc, "hevc");
    // The source itself stays HEVC on the bus.
    let source = doc["bus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hevc")
        .unwrap();
    assert!(
        source["tracks"][0]["codec"]
            .as_str()
            .unwrap()
            .starts_with("hvc1."),
        "{source}"
    );
    probe_rungs_over_http(&server, "hevc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoder_choice_is_logged_with_its_reason() {
    // No push: start-up only. On a machine with no usable NVENC (no NVIDIA
    // driver, or a data-centre GPU without an NVENC engine) the service
    // encodes on the CPU and says why.
    let server = Server::start_with_args("", &["--ladder", "auto"]);
    let doc = status(&server).await;
    let t = &doc["transcode"];
    let cpus = std::thread::available_parallelism().unwrap().get();
    if t["backend"] == "nvenc" {
        eprintln!("this machine has NVENC: CPU fallback not checked");
        return;
    }
    assert_eq!(t["backend"], "cpu", "{t}");
    let reason = t["encoder_reason"].as_str().unwrap();
    assert!(reason.contains("encoding on the CPU"), "{reason}");
    // `auto` picks the built-in ladder for the machine.
    let expected = if cpus >= 4 { "default" } else { "small" };
    assert_eq!(t["ladder"], expected, "{t}");
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("transcoder: ladder and encoder chosen"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("cpu"), "{line}");
    assert!(line.contains("encoding on the CPU"), "{line}");
    let metrics = metric_lines(&server).await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("ferrocast_transcode_encoder{backend=\"cpu\",reason=\"")
            && l.ends_with("} 1")),
        "{metrics}"
    );
    drop(server);

    // NVENC turned off in the config: the reason says so.
    let server = Server::start_with_args("[transcode]\nnvenc = \"off\"\n", &["--ladder", "small"]);
    let doc = status(&server).await;
    assert_eq!(doc["transcode"]["backend"], "cpu");
    assert!(
        doc["transcode"]["encoder_reason"]
            .as_str()
            .unwrap()
            .contains("transcode.nvenc"),
        "{doc}"
    );
    drop(server);

    // `--ladder off` (what `Server::start` passes): no transcoder at all.
    let server = Server::start("");
    let doc = status(&server).await;
    assert_eq!(doc["transcode"], Value::Null, "{doc}");
    assert!(server.log().contains("transcoding off"));
}

/// `common::TEST_LADDER`'s style with one HEVC rung (libx265 ultrafast)
/// next to an H.264 one.
const HEVC_LADDER: &str = r#"
[ingest]
reconnect_grace_ms = 1000
[[transcode.ladders]]
name = "mixed"
[[transcode.ladders.rungs]]
name = "240p"
height = 240
video_bitrate_kbps = 300
codec = "hevc"
x264_preset = "ultrafast"
[[transcode.ladders.rungs]]
name = "144p"
height = 144
video_bitrate_kbps = 150
x264_preset = "ultrafast"
"#;

/// An HEVC rung end to end: libx265 through the transcoder service and the
/// packager; ffprobe reads HEVC from that rung's CMAF and H.264 from the
/// other's, and the multivariant playlist says `hvc1.` and `avc1.`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_rung_next_to_an_h264_rung() {
    let server = Server::start_with_args(HEVC_LADDER, &["--ladder", "mixed"]);
    let _push = common::ffmpeg_push(server.srt, "publish:live/mixed", 60);
    let http = client();
    // (rung, ffprobe codec_name, CODECS prefix, width, height)
    let rungs = [
        ("240p", "hevc", "hvc1.", 320, 240),
        ("144p", "h264", "avc1.", 192, 144),
    ];
    for (rung, codec_name, _, width, height) in rungs {
        let path = format!("mixed/{rung}");
        let media = common::playlist_with_segment(&http, &server, &path, 2).await;
        let file = common::init_and_segments(&http, &server, &path, &media, 2).await;
        let dir = tempfile::tempdir().unwrap();
        let mp4 = common::write_file(dir.path(), "rung.mp4", &file);
        let streams = common::probe_streams(&mp4);
        for want in [
            format!("codec_name={codec_name}"),
            format!("width={width}"),
            format!("height={height}"),
        ] {
            assert!(
                streams.lines().any(|l| l == want),
                "{rung} {want}:\n{streams}"
            );
        }
        if codec_name == "hevc" {
            // Packaged as `hvc1` (parameter sets in the sample entry).
            assert!(
                streams.lines().any(|l| l == "codec_tag_string=hvc1"),
                "{rung}:\n{streams}"
            );
        }
    }
    // The multivariant playlist lists both rungs with their own codecs.
    let (status, multivariant) = get_text(&http, &server.url("mixed", "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    let lines: Vec<&str> = multivariant.lines().collect();
    for (rung, _, prefix, ..) in rungs {
        let inf = lines
            .windows(2)
            .find(|w| {
                w[0].starts_with("#EXT-X-STREAM-INF:") && w[1] == format!("{rung}/stream.m3u8")
            })
            .map(|w| w[0])
            .unwrap_or_else(|| panic!("no variant for {rung}:\n{multivariant}"));
        let codecs = inf
            .split("CODECS=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert!(
            codecs.starts_with(prefix) && codecs.ends_with(",mp4a.40.2"),
            "{rung}: {inf}"
        );
    }
    assert!(!server.log().contains("panicked"));
}
