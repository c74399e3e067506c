#![allow(clippy::unwrap_used)]

//! End to end for Opus audio: an SRT push of libx264 + libopus in MPEG-TS
//! (stream_type 0x06, `Opus` registration descriptor, as Debian's ffmpeg
//! muxes it) is served as CMAF with an `Opus` sample entry over LL-HLS,
//! checked with ffprobe and decoded by ffmpeg through the playlists.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, client, get_bytes, get_text, playlist_with_segment, run_with_timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_push_plays() {
    if !common::have("ffmpeg") || !common::have("ffprobe") {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        return;
    }
    let server = Server::start("");
    let _push = common::ffmpeg_push_codecs(
        server.srt,
        "publish:live/opus",
        30,
        &[
            "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p",
        ],
        &["-c:a", "libopus", "-b:a", "64k", "-ac", "2"],
    );
    let http = client();
    let media = playlist_with_segment(&http, &server, "opus", 2).await;

    // RFC 8216bis 4.4.6.2: "CODECS ... Every media format in any of the
    // renditions specified by the Variant Stream MUST be represented".
    let (status, multivariant) = get_text(&http, &server.url("opus", "index.m3u8")).await;
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
    assert!(codecs[0].starts_with("avc1."), "{inf}");
    assert!(codecs.contains(&"opus"), "{inf}");

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
    let mut file = get_bytes(&http, &server.url("opus", map)).await.to_vec();
    assert_eq!(&file[4..8], b"ftyp");
    for s in &segments {
        file.extend_from_slice(&get_bytes(&http, &server.url("opus", s)).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(dir.path(), "opus.mp4", &file);
    let streams = common::probe_streams(&path);
    for want in [
        "codec_name=h264",
        "codec_name=opus",
        "sample_rate=48000",
        "channels=2",
    ] {
        assert!(streams.lines().any(|l| l == want), "{want}:\n{streams}");
    }

    // A real client through the playlists: ffmpeg's HLS demuxer decodes 4 s
    // with no errors.
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(server.url("opus", "index.m3u8"))
            .args(["-t", "4", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg failed: {err}");
    assert!(err.trim().is_empty(), "ffmpeg decode errors: {err}");
}
