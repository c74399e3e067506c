#![allow(clippy::unwrap_used)]

//! End to end for HEVC passthrough: an SRT push of libx265 + AAC in MPEG-TS
//! from Debian's ffmpeg is served as `hvc1` CMAF over LL-HLS, checked with
//! ffprobe and decoded by ffmpeg (Chromium here cannot decode HEVC through
//! MSE, see docs: DEPENDENCIES trap 8).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, client, get_bytes, get_text, playlist_with_segment, run_with_timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_push_plays_as_hvc1() {
    if !common::have("ffmpeg") || !common::have("ffprobe") {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        return;
    }
    let server = Server::start("");
    let _push = common::ffmpeg_push_codecs(
        server.srt,
        "publish:live/hevc",
        30,
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
    let http = client();
    let media = playlist_with_segment(&http, &server, "hevc", 2).await;

    // Multivariant: CODECS from the SPS (hvc1.*) and the AAC track, and the
    // SPS's display size. RFC 8216bis 4.4.6.2: "CODECS ... Every media
    // format in any of the renditions specified by the Variant Stream MUST
    // be represented"; "RESOLUTION ... SHOULD be included for any Variant
    // Stream that includes video".
    let (status, multivariant) = get_text(&http, &server.url("hevc", "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    let inf = multivariant
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("EXT-X-STREAM-INF");
    let codecs = inf
        .split("CODECS=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let codecs: Vec<&str> = codecs.split(',').collect();
    assert!(codecs[0].starts_with("hvc1.1.6.L"), "{inf}");
    assert!(codecs.contains(&"mp4a.40.2"), "{inf}");
    assert!(inf.contains("RESOLUTION=320x240"), "{inf}");
    assert!(inf.contains("FRAME-RATE=25"), "{inf}");

    // Init segment + the first two complete segments, as one fMP4 file.
    let map = media
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|r| r.split('"').next())
        .expect("EXT-X-MAP");
    let segments: Vec<&str> = media
        .lines()
        .filter(|l| l.starts_with("seg") && l.ends_with(".m4s"))
        .take(2)
        .collect();
    assert_eq!(segments.len(), 2, "{media}");
    let mut file = get_bytes(&http, &server.url("hevc", map)).await.to_vec();
    assert_eq!(&file[4..8], b"ftyp");
    for s in &segments {
        file.extend_from_slice(&get_bytes(&http, &server.url("hevc", s)).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(dir.path(), "hevc.mp4", &file);
    let streams = common::probe_streams(&path);
    for want in [
        "codec_name=hevc",
        "codec_tag_string=hvc1",
        "profile=Main",
        "width=320",
        "height=240",
        "codec_name=aac",
    ] {
        assert!(streams.lines().any(|l| l == want), "{want}:\n{streams}");
    }

    // A real client through the playlists: ffmpeg's HLS demuxer decodes 4 s
    // with no errors.
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(server.url("hevc", "index.m3u8"))
            .args(["-t", "4", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg failed: {err}");
    assert!(err.trim().is_empty(), "ffmpeg decode errors: {err}");
}
