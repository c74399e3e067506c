#![allow(clippy::unwrap_used)]

//! SRT over a lossy link: 5 % loss and 20 ms delay in both directions.
//! Everything lost must be recovered inside the SRT latency.
//!
//! The link is a network namespace joined to this one by a veth pair with
//! `tc netem` on both ends. Where the kernel has no netem (or refuses
//! namespaces), the same loss and delay are applied by a UDP relay on
//! loopback in this process, and the test says which one it used.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

use common::{Sender, Server, client, get_bytes, get_text};

/// A namespace with a veth link to this one, removed on drop.
struct LossyLink {
    ns: String,
    host_ip: String,
    peer_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl LossyLink {
    fn create(loss_percent: u32, delay_ms: u32) -> Option<LossyLink> {
        let id = std::process::id();
        let ns = format!("fcloss{id}");
        let (a, b) = (format!("fcl{id}a"), format!("fcl{id}b"));
        let subnet = 1 + id % 250;
        let link = LossyLink {
            ns: ns.clone(),
            host_ip: format!("10.201.{subnet}.1"),
            peer_ip: format!("10.201.{subnet}.2"),
        };
        // From here on, `link` removes whatever was made if a step fails.
        let netem = [
            "root".to_string(),
            "netem".into(),
            "delay".into(),
            format!("{delay_ms}ms"),
            "loss".into(),
            format!("{loss_percent}%"),
        ];
        let netem: Vec<&str> = netem.iter().map(String::as_str).collect();
        let host = format!("{}/24", link.host_ip);
        let peer = format!("{}/24", link.peer_ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &ns],
            vec!["link", "add", &a, "type", "veth", "peer", "name", &b],
            vec!["link", "set", &b, "netns", &ns],
            vec!["addr", "add", &host, "dev", &a],
            vec!["link", "set", &a, "up"],
            vec!["netns", "exec", &ns, "ip", "addr", "add", &peer, "dev", &b],
            vec!["netns", "exec", &ns, "ip", "link", "set", &b, "up"],
            vec!["netns", "exec", &ns, "ip", "link", "set", "lo", "up"],
        ];
        for step in &steps {
            if !ip(step) {
                return None;
            }
        }
        let tc = |prefix: &[&str], dev: &str| {
            let mut cmd = Command::new(prefix[0]);
            cmd.args(&prefix[1..])
                .args(["qdisc", "add", "dev", dev])
                .args(&netem);
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !tc(&["tc"], &a) || !tc(&["ip", "netns", "exec", &ns, "tc"], &b) {
            return None;
        }
        Some(link)
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        // Deleting the namespace removes its veth end and with it the peer.
        ip(&["netns", "del", &self.ns]);
    }
}

/// Forwards UDP between a sender and `server`, dropping `loss_percent` of
/// the datagrams in each direction and delaying the rest by `delay`.
/// Returns the address senders should call.
async fn lossy_relay(server: SocketAddr, loss_percent: u64, delay: Duration) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let address = front.local_addr().unwrap();
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    // A fixed-seed generator: the same drops every run.
    let dropper = |seed: u64| {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 100 < loss_percent
        }
    };
    let (f, b, c) = (front.clone(), back.clone(), client.clone());
    let mut drop_up = dropper(0x9e37_79b9_7f4a_7c15);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *c.lock().unwrap() = Some(from);
            if drop_up() {
                continue;
            }
            let (b, datagram) = (b.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = b.send(&datagram).await;
            });
        }
    });
    let mut drop_down = dropper(0x2545_f491_4f6c_dd1d);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = back.recv(&mut buf).await {
            let Some(to) = *client.lock().unwrap() else {
                continue;
            };
            if drop_down() {
                continue;
            }
            let (f, datagram) = (front.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = f.send_to(&datagram, to).await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_is_recovered_within_the_srt_latency() {
    let config = "[ingest]\nsrt_latency_ms = 800\n[hls]\nwindow_segments = 40\n";
    // ffmpeg's SRT latency is in microseconds (Debian's ffmpeg 5.1).
    let query = "streamid=publish:live/lossy&pkt_size=1316&latency=800000";
    let link = LossyLink::create(5, 20);
    let (server, sender) = match &link {
        Some(link) => {
            eprintln!("lossy link: network namespace {} with tc netem", link.ns);
            let server = Server::start_with_srt(config, &format!("{}:0", link.host_ip));
            let url = format!("srt://{}?{query}", server.srt);
            let sender = Command::new("ip")
                .args(["netns", "exec", &link.ns, "ffmpeg"])
                .args(common::test_source_args(16))
                .args(["-f", "mpegts", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (server, Sender(sender))
        }
        None => {
            eprintln!(
                "lossy link: no netem or namespaces here; UDP relay on loopback with the same loss and delay"
            );
            let server = Server::start(config);
            let relay = lossy_relay(server.srt, 5, Duration::from_millis(20)).await;
            let url = format!("srt://{relay}?{query}");
            let sender = Command::new("ffmpeg")
                .args(common::test_source_args(16))
                .args(["-f", "mpegts", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (server, Sender(sender))
        }
    };
    let http = client();
    let base = format!("http://{}", server.http);

    // While the publisher is connected: loss happened and nothing was dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let publisher = loop {
        let (_, body) = get_text(&http, &format!("{base}/status")).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let p = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "lossy")
            .map(|s| s["publisher"].clone());
        if let Some(p) = p
            && p["units"].as_u64().unwrap_or(0) > 250
        {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stream did not get going: {body}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // srt-tokio counts recovered packets as retransmissions; its loss
    // counter stays at zero for losses that were recovered in time.
    let srt = &publisher["srt"];
    let recovered =
        srt["lost_packets"].as_u64().unwrap() + srt["retransmitted_packets"].as_u64().unwrap();
    assert!(recovered > 0, "no loss seen: {publisher}");
    assert_eq!(publisher["srt"]["dropped_packets"], 0, "{publisher}");
    assert_eq!(publisher["demux_warnings"], 0, "{publisher}");
    sender.wait(Duration::from_secs(40));

    // Every frame is there: video decode times continue with no gap.
    let (_, playlist) = get_text(&http, &server.url("lossy", "stream.m3u8")).await;
    let parsed = m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).unwrap();
    assert!(parsed.segments.len() >= 10, "{playlist}");
    let mut file = get_bytes(&http, &server.url("lossy", "init0.mp4"))
        .await
        .to_vec();
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut video_frames = 0;
    for segment in &parsed.segments {
        let bytes = get_bytes(&http, &server.url("lossy", &segment.uri)).await;
        for traf in common::boxes::trafs(&bytes) {
            if let Some(expected) = next.get(&traf.track_id) {
                assert_eq!(
                    traf.base_decode_time, *expected,
                    "track {} lost media before {}",
                    traf.track_id, segment.uri
                );
            }
            if traf.track_id == 1 {
                assert!(
                    traf.durations.iter().all(|&d| d == 3600),
                    "{:?}",
                    traf.durations
                );
                video_frames += traf.durations.len();
            }
            next.insert(
                traf.track_id,
                traf.base_decode_time + traf.durations.iter().map(|&d| u64::from(d)).sum::<u64>(),
            );
        }
        file.extend_from_slice(&bytes);
    }
    assert!(video_frames >= 250, "{video_frames} frames");
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_file(dir.path(), "lossy.mp4", &file);
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "decode errors: {err}");
}
