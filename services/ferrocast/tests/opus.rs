#![allow(clippy::unwrap_used)]

//! End to end for Opus audio: an SRT push of libx264 + libopus in MPEG-TS
//! (stream_type 0x06, `Opus` registration descriptor, as Debian's ffmpeg
//! muxes it) is served as CMAF with an `Opus` sample entry over LL-HLS,
//! checked with ffprobe and decoded by ffmpeg through the playlists.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    Sender, Server, client, get_bytes, get_text, playlist_with_segment, run_with_timeout,
};

/// ffmpeg pushing 320x240 25 fps libx264 video (1 s GOP) and a 48 kHz
/// stereo sine in 64 kb/s libopus to `srt` as `streamid`.
fn ffmpeg_push_opus(srt: SocketAddr, streamid: &str, seconds: u32) -> Sender {
    let url = format!("srt://{srt}?streamid={streamid}&pkt_size=1316");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "25"])
        .args(["-pix_fmt", "yuv420p"])
        .args(["-c:a", "libopus", "-b:a", "64k", "-ac", "2"])
        .args(["-t", &seconds.to_string()])
        .args(["-f", "mpegts", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    Sender(child)
}

/// `ffprobe -show_streams` of a file, as `key=value` lines per stream.
fn probe_streams(path: &std::path::Path) -> String {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_streams", "-of", "default"])
            .arg(path),
        Duration::from_secs(30),
    );
    assert!(ok && err.is_empty(), "ffprobe: {err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_push_plays() {
    if !common::have("ffmpeg") || !common::have("ffprobe") {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        return;
    }
    let server = Server::start("");
    let _push = ffmpeg_push_opus(server.srt, "publish:live/opus", 30);
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
    let streams = probe_streams(&path);
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
