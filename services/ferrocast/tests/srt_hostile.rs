#![allow(clippy::unwrap_used)]

//! Hostile SRT peers against the real `ferrocast up`: datagrams that used
//! to panic srt-protocol (and with it the listener task that carries every
//! SRT session on the port), NAK floods naming 2^30 sequence numbers, and
//! publishers that only send keepalives. After each, the HTTP side answers
//! and a real publisher (ffmpeg) still gets in.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::srt_peer::RawPeer;
use common::{Server, client, ffmpeg_push, get_text, playlist_with_segment};
use srt_protocol::packet::{CompressedLossList, ControlTypes};

/// An SRT control packet: type, the reserved field (the SRT extension type
/// for 0x7FFF), additional info, destination socket id and body.
fn control(ty: u16, reserved: u16, add_info: u32, dest: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(0x8000 | ty).to_be_bytes());
    b.extend_from_slice(&reserved.to_be_bytes());
    b.extend_from_slice(&add_info.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&dest.to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// An HSv5 conclusion handshake body followed by `extensions`.
fn conclusion_body(extensions: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&5i32.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&0b101u16.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&1500u32.to_be_bytes());
    b.extend_from_slice(&8192u32.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(extensions);
    b
}

/// Keying material (version 1, "HAI") announcing no key at all.
fn keying_material_without_keys() -> Vec<u8> {
    let mut km = vec![0x12, 0x20, 0x29, 0x00];
    km.extend_from_slice(&0u32.to_be_bytes());
    km.extend_from_slice(&[2, 0, 2, 0]);
    km.extend_from_slice(&[0, 0, 4, 4]);
    km.extend_from_slice(&[0; 24]);
    km
}

/// Datagrams that panicked srt-protocol 0.4.4's parser, sent by anyone.
fn unparseable_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // 16 bytes: SRT extension control packet, stream id, empty body
        ("srt extension, empty body", control(0x7FFF, 5, 0, 0, &[])),
        (
            "congestion extension, empty body",
            control(0x7FFF, 6, 0, 0, &[]),
        ),
        (
            "filter extension, empty body",
            control(0x7FFF, 7, 0, 0, &[]),
        ),
        ("group extension, short", control(0x7FFF, 8, 0, 0, &[1])),
        (
            "handshake extension of zero length",
            control(0, 0, 0, 0, &conclusion_body(&[0, 5, 0, 0, 0, 0, 0, 0])),
        ),
        (
            "handshake group extension of zero length",
            control(0, 0, 0, 0, &conclusion_body(&[0, 8, 0, 0, 0, 0, 0, 0])),
        ),
        (
            "keying material without keys",
            control(0x7FFF, 3, 0, 0, &keying_material_without_keys()),
        ),
        (
            "unterminated loss range",
            control(3, 0, 0, 0, &(0x8000_000Au32).to_be_bytes()),
        ),
        (
            "drop request running backwards",
            control(7, 0, 1, 0, &[0, 0, 0, 20, 0, 0, 0, 10]),
        ),
    ]
}

async fn metric(server: &Server, name: &str) -> u64 {
    let (_, text) = get_text(&client(), &format!("http://{}/metrics", server.http)).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn assert_healthy_and_publishing(server: &Server, stream: &str) {
    let (status, body) = get_text(&client(), &format!("http://{}/healthz", server.http)).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = get_text(&client(), &format!("http://{}/readyz", server.http)).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let sender = ffmpeg_push(server.srt, &format!("publish:live/{stream}"), 6);
    let playlist = playlist_with_segment(&client(), server, stream, 1).await;
    assert!(playlist.contains("#EXTINF"), "{playlist}");
    sender.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_that_panicked_srt_protocol_leave_ingest_running() {
    // The most verbose filter: every packet the listener sees is formatted
    // with Debug (a loss list's Debug panicked on an unterminated range).
    let server = Server::start_with_log("", "trace");
    let datagrams = unparseable_datagrams();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (_, bytes) in &datagrams {
        attacker.send_to(bytes, server.srt).unwrap();
    }
    // Arbitrary bytes of every length up to a full datagram, with the
    // control bit set and each control type.
    let mut sent = datagrams.len() as u64;
    for ty in [0u16, 1, 2, 3, 4, 5, 6, 7, 8, 0x7FFF] {
        for len in [0usize, 1, 3, 7, 15, 33, 64, 200, 1500] {
            let body: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            attacker
                .send_to(
                    &control(ty, rand::random::<u16>() % 9, 0, 0, &body),
                    server.srt,
                )
                .unwrap();
            sent += 1;
        }
    }
    // A live session gets the packets that parse but were poison for the
    // connection: an ACK with RTT i32::MIN, keying material without keys.
    let peer = RawPeer::connect(server.srt, "publish:live/victim");
    let mut ack = Vec::new();
    ack.extend_from_slice(&1000u32.to_be_bytes());
    ack.extend_from_slice(&i32::MIN.to_be_bytes());
    ack.extend_from_slice(&i32::MAX.to_be_bytes());
    ack.extend_from_slice(&0u32.to_be_bytes());
    peer.send_raw(&control(2, 0, u32::MAX, peer.remote_sockid.0, &ack));
    peer.send_raw(&control(6, 0, u32::MAX, peer.remote_sockid.0, &[]));

    // The parse errors are counted (the listener reports once a second).
    let deadline = Instant::now() + Duration::from_secs(20);
    let name = "ferrocast_ingest_srt_listener_events_total{event=\"parse_error\"}";
    while metric(&server, name).await < datagrams.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "parse errors not counted; sent {sent}; log tail:\n{}",
            tail(&server.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_healthy_and_publishing(&server, "after").await;
    let log = server.log();
    assert!(!log.contains("panicked"), "{}", tail(&log));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nak_floods_naming_2_pow_30_numbers_leave_the_server_responsive() {
    let server = Server::start("");
    // More sessions than the server has worker threads: before the fix each
    // NAK below pinned one for minutes.
    let peers: Vec<RawPeer> = (0..8)
        .map(|i| RawPeer::connect(server.srt, &format!("publish:live/nak{i}")))
        .collect();
    let ids: std::collections::HashSet<u32> = peers.iter().map(|p| p.remote_sockid.0).collect();
    assert_eq!(
        ids.len(),
        peers.len(),
        "every session has its own socket id"
    );
    for peer in &peers {
        for start in [0u32, 1 << 29, 5] {
            // validated form: a range of 2^30 - 1 numbers
            let nak = CompressedLossList::validated(vec![(1 << 31) | start, start + (1 << 30) - 1])
                .unwrap();
            peer.send(ControlTypes::Nak(nak));
        }
    }
    // Meanwhile the HTTP origin answers.
    let answered = tokio::time::timeout(
        Duration::from_secs(60),
        get_text(&client(), &format!("http://{}/healthz", server.http)),
    )
    .await;
    assert_eq!(answered.map(|(s, _)| s).ok(), Some(200));
    assert_healthy_and_publishing(&server, "after_naks").await;
    assert!(!server.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_only_sends_keepalives_is_dropped() {
    let server = Server::start("[ingest]\nidle_timeout_ms = 1500\n");
    let peer = RawPeer::connect(server.srt, "publish:live/quiet");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let mut shutdown = false;
    while !shutdown && Instant::now() < deadline {
        peer.send(ControlTypes::KeepAlive);
        let until = Instant::now() + Duration::from_millis(200);
        while let Some(control) = peer.recv_control(until) {
            if matches!(control.control_type, ControlTypes::Shutdown) {
                shutdown = true;
                break;
            }
        }
    }
    assert!(
        shutdown,
        "no shutdown while sending only keepalives; log:\n{}",
        tail(&server.log())
    );
    assert!(
        server.wait_for_log("publisher idle: dropped", Duration::from_secs(5)),
        "{}",
        tail(&server.log())
    );
    // Its stream name is free again.
    assert_healthy_and_publishing(&server, "quiet").await;
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}
