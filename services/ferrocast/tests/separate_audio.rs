#![allow(clippy::unwrap_used)]

//! The two audio layouts end to end. `hls.audio = "separate"` (the
//! default): an ffmpeg push with ffmpeg's default muxing (about 0.37 s of
//! AAC per PES) becomes a video rendition and an audio rendition
//! (`EXT-X-MEDIA:TYPE=AUDIO`); ffprobe finds both streams through the
//! multivariant playlist, ffmpeg decodes them, and hls.js in headless
//! Chromium plays video and audio without a stall. `hls.audio = "muxed"`:
//! one rendition whose segments carry both.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, browser, client, ffmpeg_push, get_text, playlist_with_segment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_audio_is_probed_decoded_and_played() {
    let server = Server::start("[hls]\naudio = \"separate\"\n");
    let _push = ffmpeg_push(server.srt, "publish:live/apart", 60);
    let http = client();
    let video = playlist_with_segment(&http, &server, "apart", 2).await;
    let audio = playlist_with_segment(&http, &server, "apart/audio", 2).await;
    assert!(video.contains("#EXT-X-PART:"), "{video}");
    assert!(audio.contains("#EXT-X-PART:"), "{audio}");

    let (status, multivariant) = get_text(&http, &server.url("apart", "index.m3u8")).await;
    assert_eq!(status, 200);
    assert!(
        multivariant.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",")
            && multivariant.contains(",URI=\"audio/stream.m3u8\"\n"),
        "{multivariant}"
    );
    let inf = multivariant
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .unwrap();
    assert!(
        inf.contains(",mp4a.40.2\"") && inf.ends_with(",AUDIO=\"audio\""),
        "{inf}"
    );

    // ffprobe through the multivariant playlist: the video rendition's
    // stream and the audio rendition's.
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type,codec_name",
                "-of",
                "csv=p=0",
            ])
            .arg(server.url("apart", "index.m3u8")),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe: {err}");
    // (Each stream is listed again under the program that holds it.)
    let streams: std::collections::BTreeSet<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        streams.into_iter().collect::<Vec<_>>(),
        ["aac,audio", "h264,video"],
        "{out}"
    );
    common::assert_ffmpeg_decodes(&server, "apart", 4);

    // The stream's status lists both tracks, the audio rendition's too.
    let (status, body) = get_text(&http, &format!("http://{}/status", server.http)).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let stream = json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "apart")
        .unwrap_or_else(|| panic!("{body}"));
    let kinds: Vec<&str> = stream["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["video", "audio"], "{stream}");

    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let report = browser::play(&server.url("apart", "index.m3u8"), 15, &["--hls-debug"]);
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    let tracks = report["audioTracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 1, "{}", report["audioTracks"]);
    assert_eq!(tracks[0]["groupId"], "audio");
    // Audio parts came from the audio rendition, video parts from the video
    // rendition, which carries no audio.
    let paths: Vec<&str> = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/live/apart/audio/part")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/live/apart/part")),
        "{paths:?}"
    );
    assert_eq!(
        report["stalls"],
        0,
        "playback stalled:\n{}",
        browser::timeline(&report)
    );
    let advanced = browser::played_seconds(&browser::current_times(&report));
    assert!(advanced > 10.0, "played only {advanced:.1} s: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muxed_audio_is_in_the_video_segments() {
    let server = Server::start("[hls]\naudio = \"muxed\"\n");
    let _push = ffmpeg_push(server.srt, "publish:live/together", 30);
    let http = client();
    let media = playlist_with_segment(&http, &server, "together", 2).await;
    let (status, multivariant) = get_text(&http, &server.url("together", "index.m3u8")).await;
    assert_eq!(status, 200);
    assert!(!multivariant.contains("#EXT-X-MEDIA"), "{multivariant}");
    let (status, _) = get_text(&http, &server.url("together/audio", "stream.m3u8")).await;
    assert_eq!(status, 404, "no audio rendition");
    let (_, codecs) = common::variant(&http, &server, "together").await;
    assert_eq!(codecs.len(), 2, "{codecs:?}");
    assert!(codecs[1] == "mp4a.40.2", "{codecs:?}");
    // The video rendition's own segments hold both tracks.
    let dir = tempfile::tempdir().unwrap();
    let (_, streams) =
        common::probe_renditions(&http, &server, "together", &media, 2, dir.path()).await;
    let types: Vec<&str> = streams
        .lines()
        .filter_map(|l| l.strip_prefix("codec_type="))
        .collect();
    assert_eq!(types, ["video", "audio"], "{streams}");
    common::assert_ffmpeg_decodes(&server, "together", 4);
}
