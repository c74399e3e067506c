#![allow(clippy::unwrap_used)]

//! End to end for HEVC passthrough: an SRT push of libx265 + AAC in MPEG-TS
//! from Debian's ffmpeg is served as `hvc1` CMAF over LL-HLS, checked with
//! ffprobe and decoded by ffmpeg (Chromium here cannot decode HEVC through
//! MSE, see docs: DEPENDENCIES trap 8).

mod common;

use common::{Server, client, playlist_with_segment};

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
    let (inf, codecs) = common::variant(&http, &server, "hevc").await;
    assert!(codecs[0].starts_with("hvc1.1.6.L"), "{inf}");
    assert!(codecs.iter().any(|c| c == "mp4a.40.2"), "{inf}");
    assert!(inf.contains("RESOLUTION=320x240"), "{inf}");
    assert!(inf.contains("FRAME-RATE=25"), "{inf}");

    // Init segment + the first two complete segments of each rendition a
    // player loads (video, and audio in its own rendition).
    let dir = tempfile::tempdir().unwrap();
    let (_, streams) =
        common::probe_renditions(&http, &server, "hevc", &media, 2, dir.path()).await;
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
    common::assert_ffmpeg_decodes(&server, "hevc", 4);
}
