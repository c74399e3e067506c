#![allow(clippy::unwrap_used)]

//! Publishers coming and going, blocking requests, parts streamed while
//! written, and bad input that must not disturb anyone else.

mod common;

use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    Sender, Server, client, ffmpeg_push, ffmpeg_push_with, get_text, playlist_with_segment,
};

/// The (msn, index) of `part{msn}.{index}.m4s`.
fn part_ref(uri: &str) -> (u64, u32) {
    let (msn, index) = uri
        .trim_start_matches("part")
        .trim_end_matches(".m4s")
        .split_once('.')
        .unwrap();
    (msn.parse().unwrap(), index.parse().unwrap())
}

fn uri_of(line: &str) -> &str {
    line.split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
}

fn listed_parts(playlist: &str) -> Vec<(u64, u32)> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .map(|l| part_ref(uri_of(l)))
        .collect()
}

fn preload_hint(playlist: &str) -> Option<(u64, u32)> {
    playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .map(|l| part_ref(uri_of(l)))
}

fn media_sequence_numbers(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("seg").and_then(|r| r.strip_suffix(".m4s")))
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_is_held_until_the_part_exists() {
    let server = Server::start("");
    // Audio in one PES per frame: ingest releases video as soon as the
    // audio of the same instant is in, so parts complete one at a time
    // (with ffmpeg's default 0.37 s audio PES they complete in pairs).
    let _push = ffmpeg_push_with(
        server.srt,
        "publish:live/block",
        30,
        &["-pes_payload_size", "0"],
    );
    let http = client();
    let before = playlist_with_segment(&http, &server, "block", 1).await;
    let (msn, index) = preload_hint(&before).unwrap();
    assert!(!listed_parts(&before).contains(&(msn, index)));

    // Ask for the playlist that holds the hinted part: the answer can only
    // come once that part (or, if its segment closed, the next one) exists.
    let url = format!(
        "{}?_HLS_msn={msn}&_HLS_part={index}",
        server.url("block", "stream.m3u8")
    );
    let (status, after) = get_text(&http, &url).await;
    assert_eq!(status, 200);
    let parts = listed_parts(&after);
    assert!(
        parts.iter().any(|&p| p >= (msn, index)),
        "held answer lacks part {msn}.{index}:\n{after}"
    );
    // The answer is the newest state at that moment, not a later one: the
    // requested part is the last or next-to-last listed.
    let last = *parts.last().unwrap();
    assert!(
        last == (msn, index) || last == (msn + 1, 0),
        "{last:?} for {msn}.{index}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preload_hinted_part_is_streamed_while_it_is_written() {
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/preload", 30);
    let http = client();
    playlist_with_segment(&http, &server, "preload", 1).await;

    // A hinted part may never exist (its segment can close at a keyframe
    // first): then the server answers 404 and the next hint is tried.
    for _ in 0..10 {
        let playlist = get_text(&http, &server.url("preload", "stream.m3u8"))
            .await
            .1;
        let (msn, index) = preload_hint(&playlist).unwrap();
        let uri = format!("part{msn}.{index}.m4s");
        let mut response = http.get(server.url("preload", &uri)).send().await.unwrap();
        if response.status() == 404 {
            continue;
        }
        assert_eq!(response.status(), 200);
        let mut body = Vec::new();
        let mut pieces = 0;
        let mut listed_when_first_piece_arrived = None;
        while let Some(piece) = response.chunk().await.unwrap() {
            if pieces == 0 {
                let now = get_text(&http, &server.url("preload", "stream.m3u8"))
                    .await
                    .1;
                listed_when_first_piece_arrived = Some(listed_parts(&now).contains(&(msn, index)));
            }
            pieces += 1;
            body.extend_from_slice(&piece);
        }
        // The first bytes were sent before the part was complete (listed).
        assert_eq!(
            listed_when_first_piece_arrived,
            Some(false),
            "part was not streamed early"
        );
        assert!(pieces >= 2, "part arrived in {pieces} piece(s)");
        // What was streamed is the whole part, as served once complete.
        let complete = common::get_bytes(&http, &server.url("preload", &uri)).await;
        assert_eq!(body, complete.to_vec());
        let boxes: Vec<String> = common::boxes::children(&body)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(
            boxes.len() >= 2 && boxes.chunks(2).all(|p| p == ["moof", "mdat"]),
            "{boxes:?}"
        );
        return;
    }
    panic!("no preload-hinted part could be fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_continues_after_discontinuity_and_the_end_is_marked() {
    let server = Server::start("[ingest]\nreconnect_grace_ms = 4000\n");
    let http = client();
    let first = ffmpeg_push(server.srt, "publish:live/again", 4);
    let before = playlist_with_segment(&http, &server, "again", 1).await;
    first.wait(Duration::from_secs(30));
    // The server has seen the first publisher leave (until then a second
    // caller would be refused as a duplicate: no publish keys here) ...
    assert!(
        server.wait_for_log("publisher left", Duration::from_secs(15)),
        "the first publisher's session did not end: {}",
        server.log()
    );
    // ... and it is back within the grace period: the same playlist
    // continues.
    let second = ffmpeg_push(server.srt, "publish:live/again", 4);
    let last_before = *media_sequence_numbers(&before).last().unwrap();
    // Segments keep coming; the first publisher's own last ones may still be
    // closing, so ask for later ones until the second publisher's show up.
    let mut target = last_before + 3;
    let after = loop {
        let playlist = playlist_with_segment(&http, &server, "again", target).await;
        if playlist
            .split("#EXT-X-DISCONTINUITY\n")
            .nth(1)
            .is_some_and(|rest| rest.matches(".m4s\n").count() >= 2)
        {
            break playlist;
        }
        assert!(
            target < last_before + 10,
            "no discontinuity:\n{playlist}\nserver log:\n{}",
            server.log()
        );
        target += 1;
    };
    let numbers = media_sequence_numbers(&after);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(
        numbers[0] <= last_before + 1,
        "{numbers:?} after {last_before}"
    );
    second.wait(Duration::from_secs(30));

    // Gone for longer than the grace period: EXT-X-ENDLIST, no preload hint.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ended = loop {
        let (status, text) = get_text(&http, &server.url("again", "stream.m3u8")).await;
        assert_eq!(status, 200);
        if text.contains("#EXT-X-ENDLIST") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ENDLIST:\n{text}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(!ended.contains("PRELOAD-HINT"), "{ended}");
    let final_numbers = media_sequence_numbers(&ended);
    assert!(
        final_numbers.last() >= numbers.last(),
        "media sequence went backwards"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_live_transmit_publishes_with_access_control_streamid() {
    let server = Server::start("");
    let script = format!(
        "ffmpeg {} -f mpegts - | srt-live-transmit -q file://con 'srt://{}?streamid=#!::r=live/slt,m=publish'",
        common::test_source_args(30).join(" "),
        server.srt
    );
    let _push = Sender(
        Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = client();
    let playlist = playlist_with_segment(&http, &server, "slt", 2).await;
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    let (status, _) = get_text(&http, &server.url("slt", "index.m3u8")).await;
    assert_eq!(status, 200);
}

/// An SRT caller (srt-tokio) that sends `bytes` in 1316-byte messages as
/// `streamid`, paced at about 10 MB/s, then closes. Err when refused.
async fn srt_send(server: &Server, streamid: &str, bytes: &[u8]) -> Result<(), String> {
    use futures::SinkExt;
    let call = srt_tokio::SrtSocket::builder().call(server.srt, Some(streamid));
    let mut socket = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    for chunk in bytes.chunks(1316) {
        socket
            .send((
                std::time::Instant::now(),
                bytes::Bytes::copy_from_slice(chunk),
            ))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_micros(130)).await;
    }
    socket.close().await.map_err(|e| e.to_string())
}

fn ffmpeg_file(args: &[&str], path: &std::path::Path) {
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error"])
            .args(args)
            .arg(path),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_or_resynced_and_other_streams_play_on() {
    let mut server = Server::start("");
    let _good = ffmpeg_push(server.srt, "publish:live/good", 40);
    let http = client();
    let playlist = playlist_with_segment(&http, &server, "good", 1).await;
    let start = *media_sequence_numbers(&playlist).last().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // 1. Datagrams of garbage on the SRT port.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as u8
    };
    for size in [1, 3, 16, 64, 200, 1316, 1500] {
        for _ in 0..50 {
            let datagram: Vec<u8> = (0..size).map(|_| random()).collect();
            udp.send_to(&datagram, server.srt).unwrap();
        }
    }

    // 2. A publisher that sends garbage instead of MPEG-TS.
    let garbage: Vec<u8> = (0..400_000).map(|_| random()).collect();
    srt_send(&server, "publish:live/garbage", &garbage)
        .await
        .unwrap();

    // 3. A damaged TS stream: a hole in the middle, cut mid-packet at the end.
    let ts = dir.path().join("short.ts");
    ffmpeg_file(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-f",
            "mpegts",
        ],
        &ts,
    );
    let mut bytes = std::fs::read(&ts).unwrap();
    let middle = bytes.len() / 2;
    bytes.drain(middle..middle + 1000);
    bytes.truncate(bytes.len() - 100);
    srt_send(&server, "publish:live/damaged", &bytes)
        .await
        .unwrap();

    // 4. A codec Ferrocast cannot handle: MPEG-2 video, sent by ffmpeg.
    let mpeg2 = dir.path().join("mpeg2.ts");
    ffmpeg_file(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=25",
            "-t",
            "1",
            "-c:v",
            "mpeg2video",
            "-f",
            "mpegts",
        ],
        &mpeg2,
    );
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(&mpeg2)
            .args([
                "-c",
                "copy",
                "-f",
                "mpegts",
                &format!("srt://{}?streamid=publish:live/mpeg2", server.srt),
            ]),
        Duration::from_secs(30),
    );
    assert!(ok, "{err}");

    // 5. Refused handshakes: duplicate publisher, bad streamid, play mode.
    for streamid in [
        "publish:live/good",
        "publish:vod/x",
        "request:live/good",
        "#!::m=publish",
        "publish:live/../etc",
    ] {
        let result = srt_send(&server, streamid, &bytes[..1316]).await;
        assert!(result.is_err(), "{streamid} was accepted");
    }

    // The good stream kept going, the process is alive, and the log says why
    // each bad input was refused.
    let later = playlist_with_segment(&http, &server, "good", start + 3).await;
    assert!(media_sequence_numbers(&later).contains(&(start + 3)));
    assert!(server.alive(), "server died:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    for expected in [
        "MPEG-2 video",
        "stream already has a publisher",
        "bad streamid",
        "only publishing is served over SRT",
        "bad MPEG-TS input skipped",
        "without sending any playable media",
    ] {
        assert!(log.contains(expected), "log lacks {expected:?}:\n{log}");
    }
    // The unplayable streams have no playlist to offer.
    for name in ["garbage", "mpeg2"] {
        let (status, _) = get_text(&http, &server.url(name, "stream.m3u8")).await;
        assert_ne!(status, 200, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypting_callers_are_refused_and_the_listener_keeps_serving() {
    let mut server = Server::start("");
    let _good = ffmpeg_push(server.srt, "publish:live/plain", 40);
    let http = client();
    let playlist = playlist_with_segment(&http, &server, "plain", 1).await;
    let start = *media_sequence_numbers(&playlist).last().unwrap();

    // libsrt callers with a passphrase: without pbkeylen (the handshake
    // announces no key size but carries keying material) and with one.
    for extra in ["", "&pbkeylen=16", "&pbkeylen=32"] {
        let url = format!(
            "srt://{}?streamid=publish:live/secret&passphrase=0123456789abcdef{extra}",
            server.srt
        );
        let (ok, _, err) = common::run_with_timeout(
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
                    "2",
                    "-c:v",
                    "libx264",
                    "-f",
                    "mpegts",
                ])
                .arg(&url),
            Duration::from_secs(30),
        );
        assert!(!ok, "encrypting caller accepted ({extra}): {err}");
    }

    // The listener still takes new publishers, and the first one played on.
    let _late = ffmpeg_push(server.srt, "publish:live/late", 30);
    playlist_with_segment(&http, &server, "late", 1).await;
    let later = playlist_with_segment(&http, &server, "plain", start + 2).await;
    assert!(media_sequence_numbers(&later).contains(&(start + 2)));
    assert!(server.alive());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("offered encryption"), "{log}");
}
