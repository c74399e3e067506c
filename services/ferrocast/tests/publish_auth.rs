#![allow(clippy::unwrap_used)]

//! Publish keys, SRT encryption and takeover, with real senders.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Sender, Server, client, ffmpeg_push, get_text, playlist_with_segment};

const CONFIG: &str = r#"
[[streams]]
name = "cam"
publish_key = "cam-key-123"

[[streams]]
name = "enc"
publish_key = "enc-key-123"
passphrase = "enc-pass-0123456"

[[streams]]
name = "enc2"
publish_key = "enc2-key-123"
passphrase = "enc2-pass-0123456789abcdef"

[[streams]]
name = "swap"
publish_key = "swap-key-123"
on_duplicate = "take_over"
"#;

const SECRETS: &[&str] = &[
    "cam-key-123",
    "enc-key-123",
    "enc-pass-0123456",
    "enc2-key-123",
    "enc2-pass-0123456789abcdef",
    "swap-key-123",
    "not-the-key",
    "wrong-pass-0123",
];

/// One short, unpaced ffmpeg push to `srt` query; true if ffmpeg succeeded.
fn try_publish(server: &Server, query: &str) -> bool {
    let url = format!("srt://{}?{query}", server.srt);
    let (ok, _, _) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=25",
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-f",
                "mpegts",
            ])
            .arg(&url),
        Duration::from_secs(30),
    );
    ok
}

fn media_sequence_numbers(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("seg").and_then(|r| r.strip_suffix(".m4s")))
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authorised_publishers_get_in() {
    let mut server = Server::start(CONFIG);
    let http = client();

    // Refused before media flows: unknown stream, no key, wrong key, and a
    // stream that is not listed even with a listed stream's key.
    for query in [
        "streamid=publish:live/cam",
        "streamid=publish:live/cam?key=not-the-key",
        "streamid=publish:live/other?key=cam-key-123",
        "streamid=#!::r=live/cam,m=publish,t=not-the-key",
    ] {
        assert!(!try_publish(&server, query), "{query} was accepted");
    }

    // The right key in either streamid form gets in and plays.
    let _cam = ffmpeg_push(server.srt, "publish:live/cam?key=cam-key-123", 40);
    let before = playlist_with_segment(&http, &server, "cam", 1).await;
    // A second publisher with the right key is refused (on_duplicate = reject).
    assert!(!try_publish(
        &server,
        "streamid=#!::r=live/cam,m=publish,t=cam-key-123"
    ));
    let last = *media_sequence_numbers(&before).last().unwrap();
    let after = playlist_with_segment(&http, &server, "cam", last + 2).await;
    assert!(
        !after.contains("#EXT-X-DISCONTINUITY\n"),
        "first publisher was disturbed:\n{after}"
    );

    assert!(server.alive());
    let log = server.log();
    assert!(log.contains("not authorised to publish"), "{log}");
    assert!(log.contains("already has a publisher"), "{log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
    // Streams refused never appear.
    let (status, _) = get_text(&http, &server.url("other", "index.m3u8")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_streams_interoperate_with_libsrt_senders() {
    let mut server = Server::start(CONFIG);
    let http = client();

    // Wrong passphrase, and an unencrypted caller, are refused.
    assert!(!try_publish(
        &server,
        "streamid=publish:live/enc?key=enc-key-123&passphrase=wrong-pass-0123"
    ));
    assert!(!try_publish(
        &server,
        "streamid=publish:live/enc?key=enc-key-123"
    ));
    // A right key with the wrong key length (AES-256 for a caller-chosen
    // length is fine, so use a passphrase mismatch of the right length).
    assert!(!try_publish(
        &server,
        "streamid=publish:live/enc?key=enc-key-123&passphrase=enc-pass-0123457&pbkeylen=16"
    ));

    // ffmpeg (libsrt) with the passphrase and no key length: AES-128.
    let _enc = ffmpeg_push(
        server.srt,
        "publish:live/enc?key=enc-key-123&passphrase=enc-pass-0123456",
        40,
    );
    // srt-live-transmit with AES-256 and the Access Control streamid form.
    let script = format!(
        "ffmpeg {} -f mpegts - | srt-live-transmit -q -a:no file://con 'srt://{}?streamid=#!::r=live/enc2,m=publish,t=enc2-key-123&passphrase=enc2-pass-0123456789abcdef&pbkeylen=32'",
        common::test_source_args(40).join(" "),
        server.srt
    );
    let _enc2 = Sender(
        Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let enc = playlist_with_segment(&http, &server, "enc", 2).await;
    assert!(enc.contains("#EXT-X-PART:"), "{enc}");
    let enc2 = playlist_with_segment(&http, &server, "enc2", 2).await;
    assert!(enc2.contains("#EXT-X-PART:"), "{enc2}");

    assert!(server.alive());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    for secret in SECRETS {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_publisher_takes_over_where_configured() {
    let server = Server::start(CONFIG);
    let http = client();
    let first = ffmpeg_push(server.srt, "publish:live/swap?key=swap-key-123", 60);
    let before = playlist_with_segment(&http, &server, "swap", 1).await;
    let last = *media_sequence_numbers(&before).last().unwrap();

    let _second = ffmpeg_push(server.srt, "#!::r=live/swap,m=publish,t=swap-key-123", 60);
    // The first sender is cut off (ffmpeg exits once SRT drops it) ...
    first.wait(Duration::from_secs(30));
    // ... and the stream continues from the second after a discontinuity.
    let after = playlist_with_segment(&http, &server, "swap", last + 4).await;
    assert!(after.contains("#EXT-X-DISCONTINUITY\n"), "{after}");
    let numbers = media_sequence_numbers(&after);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(server.log().contains("takes the stream over"));
}
