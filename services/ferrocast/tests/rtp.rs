#![allow(clippy::unwrap_used)]

//! End-to-end: MPEG-TS over RTP (RFC 2250) from Debian's ffmpeg
//! (`-f rtp_mpegts`) on an `[[rtp]]` port plays as LL-HLS, and datagrams
//! that are not RTP/MPEG-TS neither stop the port nor crash the server.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Sender, Server, client, get_text, playlist_with_segment};

/// A UDP port that was free a moment ago.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rtp_config(port: u16, stream: &str) -> String {
    format!("[[rtp]]\nlisten = \"127.0.0.1:{port}\"\nstream = \"{stream}\"\nformat = \"mpegts\"\n")
}

/// ffmpeg sending the test source as MPEG-TS over RTP to `port`.
fn ffmpeg_rtp_mpegts(port: u16, seconds: u32) -> Sender {
    let child = Command::new("ffmpeg")
        .args(common::test_source_args(seconds))
        .args(["-f", "rtp_mpegts", &format!("rtp://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    Sender(child)
}

/// Datagrams a stranger might send: noise, RTP of the wrong kind, RTP whose
/// header extension lies about its length (which panics `rtp` 0.17 unless
/// checked first), truncated headers.
fn garbage() -> Vec<Vec<u8>> {
    let mut out = vec![
        Vec::new(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x80],
        vec![0xff; 1500],
        vec![0x8f, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
    ];
    let rtp = |first: u8, pt: u8, payload: &[u8]| {
        let mut d = vec![first, pt, 0x12, 0x34, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        d.extend_from_slice(payload);
        d
    };
    out.push(rtp(0x90, 33, &[0xBE, 0xDE, 0, 1, 0x1f, 0, 0, 0]));
    out.push(rtp(0x90, 33, &[0x10, 0x00, 0, 1, 0, 0, 0, 1]));
    out.push(rtp(0x80, 96, &[0x47; 188]));
    out.push(rtp(0x80, 33, &[0x47; 100]));
    out.push(rtp(0xa0, 33, &[0x47, 0, 0, 0xff]));
    // Pseudo-random noise, deterministic.
    let mut x: u32 = 0x1234_5678;
    for len in [12usize, 13, 40, 200, 1316, 1328] {
        out.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    out
}

fn send_garbage(to: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in garbage() {
        socket.send_to(&d, to).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_mpegts_from_ffmpeg_plays_and_garbage_is_survived() {
    let port = free_udp_port();
    let mut server = Server::start(&rtp_config(port, "rtpcam"));
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    // Before any sender: must not start a stream or stop the port.
    send_garbage(to);
    let http = client();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = get_text(&http, &server.url("rtpcam", "index.m3u8")).await;
    assert_eq!(status, 404, "garbage alone must not publish the stream");

    let _push = ffmpeg_rtp_mpegts(port, 30);
    let playlist = playlist_with_segment(&http, &server, "rtpcam", 2).await;
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
    // And while the sender is live.
    send_garbage(to);

    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(server.url("rtpcam", "index.m3u8"))
            .args(["-t", "4", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg failed: {err}");
    assert!(err.trim().is_empty(), "decode errors: {err}");
    assert!(server.alive(), "server died; log:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("RTP publisher live"), "{log}");

    // The status API counts the port's packets and the garbage it refused.
    let (_, body) = get_text(&http, &format!("http://{}/api/v1/streams", server.http)).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let input = &json["rtp_inputs"][0];
    assert_eq!(input["stream"], "rtpcam", "{body}");
    assert!(input["packets"].as_u64().unwrap() > 100, "{body}");
    assert!(input["invalid"].as_u64().unwrap() > 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sender_leaves_and_a_returning_one_continues_the_stream() {
    let port = free_udp_port();
    let config = format!(
        "[ingest]\nidle_timeout_ms = 1000\nreconnect_grace_ms = 20000\n{}",
        rtp_config(port, "rtpback")
    );
    let server = Server::start(&config);
    let http = client();
    let push = ffmpeg_rtp_mpegts(port, 30);
    playlist_with_segment(&http, &server, "rtpback", 1).await;
    push.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log().contains("RTP sender idle") {
        assert!(
            std::time::Instant::now() < deadline,
            "publisher not dropped; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _push = ffmpeg_rtp_mpegts(port, 30);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = get_text(&http, &server.url("rtpback", "stream.m3u8")).await;
        if status == 200 && text.contains("#EXT-X-DISCONTINUITY") {
            assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no discontinuity after the sender returned ({status}): {text}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
