#![allow(clippy::unwrap_used)]

//! End to end for Opus audio: an SRT push of libx264 + libopus in MPEG-TS
//! (stream_type 0x06, `Opus` registration descriptor, as Debian's ffmpeg
//! muxes it) is served as CMAF with an `Opus` sample entry over LL-HLS,
//! checked with ffprobe and decoded by ffmpeg through the playlists.

mod common;

use common::{Server, client, playlist_with_segment};

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
    let (inf, codecs) = common::variant(&http, &server, "opus").await;
    assert!(codecs[0].starts_with("avc1."), "{inf}");
    assert!(codecs.iter().any(|c| c == "opus"), "{inf}");

    // Init segment + the first two complete segments of each rendition a
    // player loads (video, and audio in its own rendition).
    let dir = tempfile::tempdir().unwrap();
    let (_, streams) =
        common::probe_renditions(&http, &server, "opus", &media, 2, dir.path()).await;
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
    common::assert_ffmpeg_decodes(&server, "opus", 4);
}
