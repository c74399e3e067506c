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

    common::assert_ffmpeg_decodes(&server, "rtpcam", 4);
    assert!(server.alive(), "server died; log:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("RTP publisher live"), "{log}");

    // The status API counts the port's packets and the garbage it refused.
    let (_, body) = get_text(&http, &format!("http://{}/status", server.http)).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let input = &json["rtp_inputs"][0];
    assert_eq!(input["stream"], "rtpcam", "{body}");
    assert!(input["packets"].as_u64().unwrap() > 100, "{body}");
    assert!(input["invalid"].as_u64().unwrap() > 0, "{body}");

    // The control plane's API shows the RTP publisher with its port's
    // statistics.
    let token = std::fs::read_to_string(server.data_dir.path().join("data/admin-token")).unwrap();
    let body = http
        .get(format!("http://{}/api/v1/streams/rtpcam", server.http))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let live = &json["live"];
    assert_eq!(live["on_air"], true, "{body}");
    let publisher = &live["publisher"];
    assert_eq!(publisher["protocol"], "rtp", "{body}");
    assert!(
        publisher["remote"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{body}"
    );
    assert_eq!(publisher["rtp"]["listen"], to.to_string(), "{body}");
    assert!(
        publisher["rtp"]["packets"].as_u64().unwrap() > 100,
        "{body}"
    );
    assert!(publisher.get("srt").is_none(), "{body}");
    assert_eq!(live["tracks"][0]["kind"], "video", "{body}");
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

/// Two free even UDP ports whose odd neighbours are free too, not next to
/// each other (ffmpeg sends RTCP to the port above each RTP port, and the
/// server binds it).
fn free_even_ports() -> (u16, u16) {
    let mut found: Vec<u16> = Vec::new();
    while found.len() < 2 {
        let port = free_udp_port();
        let rtcp_free = port
            .checked_add(1)
            .is_some_and(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if port.is_multiple_of(2) && rtcp_free && found.iter().all(|p| p.abs_diff(port) > 2) {
            found.push(port);
        }
    }
    (found[0], found[1])
}

/// ffmpeg arguments sending H.264 with `bframes` B-frames to `video` and AAC
/// to `audio` as elementary RTP streams, for `seconds`.
fn elementary_rtp_args(
    video: u16,
    audio: u16,
    seconds: u32,
    realtime: bool,
    bframes: u32,
) -> Vec<String> {
    elementary_rtp_args_with(video, audio, seconds, realtime, bframes, "libx264")
}

/// [`elementary_rtp_args`] with the video encoder `encoder` (`libx264` or
/// `libx265`).
fn elementary_rtp_args_with(
    video: u16,
    audio: u16,
    seconds: u32,
    realtime: bool,
    bframes: u32,
    encoder: &str,
) -> Vec<String> {
    let bf = bframes.to_string();
    let t = seconds.to_string();
    // x265 prints its banner and statistics unless told otherwise.
    let quiet = if encoder == "libx265" {
        vec!["-x265-params", "log-level=error"]
    } else {
        Vec::new()
    };
    let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if realtime {
        args.push("-re".into());
    }
    let video_url = format!("rtp://127.0.0.1:{video}");
    let audio_url = format!("rtp://127.0.0.1:{audio}");
    let input = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
    ];
    let video_out = [
        "-map",
        "0:v",
        "-c:v",
        encoder,
        "-preset",
        "veryfast",
        "-bf",
        bf.as_str(),
        "-g",
        "25",
        "-pix_fmt",
        "yuv420p",
        "-t",
        t.as_str(),
        "-f",
        "rtp",
        video_url.as_str(),
    ];
    let audio_out = [
        "-map",
        "1:a",
        "-c:a",
        "aac",
        "-t",
        t.as_str(),
        "-f",
        "rtp",
        audio_url.as_str(),
    ];
    // The video options come before its output URL, so x265's apply to it.
    let (video_opts, video_url_arg) = video_out.split_at(video_out.len() - 1);
    args.extend(
        input
            .iter()
            .chain(video_opts)
            .chain(&quiet)
            .chain(video_url_arg)
            .chain(&audio_out)
            .map(|s| s.to_string()),
    );
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_h264_aac_elementary_streams_from_ffmpeg_play() {
    let (video, audio) = free_even_ports();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("session.sdp");
    // ffmpeg writes the SDP of exactly what it will send (nobody listens yet).
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(elementary_rtp_args(video, audio, 1, false, 0))
            .arg("-sdp_file")
            .arg(&sdp),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg (SDP) failed: {err}");
    let sdp_text = std::fs::read_to_string(&sdp).unwrap();
    assert!(sdp_text.contains("H264/90000"), "{sdp_text}");
    assert!(sdp_text.contains("MPEG4-GENERIC/48000"), "{sdp_text}");

    let config = format!(
        "[[rtp]]\nlisten = \"127.0.0.1:{video}\"\nstream = \"rtpsdp\"\nformat = \"sdp\"\nsdp = \"{}\"\n",
        sdp.display()
    );
    let mut server = Server::start(&config);
    let child = Command::new("ffmpeg")
        .args(elementary_rtp_args(video, audio, 20, true, 0))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    let _push = Sender(child);
    let http = client();
    let playlist = playlist_with_segment(&http, &server, "rtpsdp", 2).await;
    assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");

    let (status, multivariant) = get_text(&http, &server.url("rtpsdp", "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    let codecs = multivariant
        .split("CODECS=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default();
    assert!(codecs.contains("avc1."), "{multivariant}");
    assert!(codecs.contains("mp4a.40.2"), "{multivariant}");

    common::assert_ffmpeg_decodes(&server, "rtpsdp", 4);
    assert!(server.alive(), "server died; log:\n{}", server.log());
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("RTP publisher live"), "{log}");

    let (_, body) = get_text(&http, &format!("http://{}/status", server.http)).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let input = &json["rtp_inputs"][0];
    assert_eq!(input["stream"], "rtpsdp", "{body}");
    assert!(input["packets"].as_u64().unwrap() > 100, "{body}");
    assert!(input["units"].as_u64().unwrap() > 100, "{body}");
    assert_eq!(input["lost"].as_u64(), Some(0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_hevc_aac_elementary_streams_from_ffmpeg_play_as_hvc1() {
    let (video, audio) = free_even_ports();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("session.sdp");
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(elementary_rtp_args_with(
                video, audio, 1, false, 0, "libx265",
            ))
            .arg("-sdp_file")
            .arg(&sdp),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg (SDP) failed: {err}");
    let sdp_text = std::fs::read_to_string(&sdp).unwrap();
    assert!(sdp_text.contains("H265/90000"), "{sdp_text}");

    let config = format!(
        "[[rtp]]\nlisten = \"127.0.0.1:{video}\"\nstream = \"rtphevc\"\nformat = \"sdp\"\nsdp = \"{}\"\n",
        sdp.display()
    );
    let server = Server::start(&config);
    let child = Command::new("ffmpeg")
        .args(elementary_rtp_args_with(
            video, audio, 20, true, 0, "libx265",
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    let _push = Sender(child);
    let http = client();
    playlist_with_segment(&http, &server, "rtphevc", 2).await;
    let (status, multivariant) = get_text(&http, &server.url("rtphevc", "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    assert!(multivariant.contains("hvc1."), "{multivariant}");
    assert!(multivariant.contains("mp4a.40.2"), "{multivariant}");
    common::assert_ffmpeg_decodes(&server, "rtphevc", 4);
    let log = server.log();
    assert!(!log.contains("panicked"), "{log}");
    let (_, body) = get_text(&http, &format!("http://{}/status", server.http)).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let input = &json["rtp_inputs"][0];
    assert_eq!(input["stream"], "rtphevc", "{body}");
    assert_eq!(input["lost"].as_u64(), Some(0), "{body}");
    assert_eq!(input["damaged"].as_u64(), Some(0), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_the_server_cannot_receive_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("vp8.sdp");
    std::fs::write(
        &sdp,
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
         m=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 VP8/90000\r\n",
    )
    .unwrap();
    let config = format!(
        "[[rtp]]\nlisten = \"127.0.0.1:5004\"\nstream = \"bad\"\nformat = \"sdp\"\nsdp = \"{}\"\n",
        sdp.display()
    );
    let data = tempfile::tempdir().unwrap();
    let config_path = common::write_file(data.path(), "ferrocast.toml", config.as_bytes());
    let (ok, _, err) = common::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_ferrocast"))
            .args([
                "up",
                "--srt-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("--config")
            .arg(&config_path),
        Duration::from_secs(30),
    );
    assert!(!ok, "the server must refuse to start");
    assert!(err.contains("VP8/90000"), "{err}");
}

/// libx264 with B-frames (`-bf 3`, b-pyramid: `max_num_reorder_frames` 2)
/// and AAC as elementary RTP with RTCP: every picture gets a decode time,
/// the tracks are placed by ffmpeg's sender reports, and the packaged
/// segments decode to exactly the frames sent in them. Documented losses:
/// none at the start (units wait for the sender reports; the first picture
/// is an IDR), and at the end whatever is not yet in a complete segment
/// when the playlist is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_h264_with_b_frames_and_rtcp_sync_decodes_every_frame() {
    let (video, audio) = free_even_ports();
    let dir = tempfile::tempdir().unwrap();
    let sdp = dir.path().join("session.sdp");
    let (ok, _, err) = common::run_with_timeout(
        Command::new("ffmpeg")
            .args(elementary_rtp_args(video, audio, 1, false, 3))
            .arg("-sdp_file")
            .arg(&sdp),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg (SDP) failed: {err}");
    let config = format!(
        "[hls]\nwindow_segments = 40\n\n[[rtp]]\nlisten = \"127.0.0.1:{video}\"\nstream = \"rtpbf\"\nformat = \"sdp\"\nsdp = \"{}\"\n",
        sdp.display()
    );
    let server = Server::start(&config);
    let seconds = 10;
    let child = Command::new("ffmpeg")
        .args(elementary_rtp_args(video, audio, seconds, true, 3))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    let push = Sender(child);
    let http = client();
    // Segments are one 25-frame GOP (1 s): wait for the eighth.
    playlist_with_segment(&http, &server, "rtpbf", 7).await;
    let (status, media) = get_text(&http, &server.url("rtpbf", "stream.m3u8")).await;
    assert_eq!(status, 200, "{media}");
    let segments = media
        .lines()
        .filter(|l| l.starts_with("seg") && l.ends_with(".m4s"))
        .count();
    assert!(segments >= 8, "{media}");
    assert!(
        media.lines().any(|l| l == "seg0.m4s"),
        "the window must still hold the first segment: {media}"
    );
    let listed_seconds: f64 = media
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.split(',').next()?.parse::<f64>().ok())
        .sum();
    let file = common::init_and_segments(&http, &server, "rtpbf", &media, segments).await;
    let path = common::write_file(dir.path(), "joined.mp4", &file);
    let (ok, out, err) = common::run_with_timeout(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames,has_b_frames,codec_name",
                "-of",
                "json",
            ])
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stream = &json["streams"][0];
    assert_eq!(stream["codec_name"], "h264", "{out}");
    assert!(stream["has_b_frames"].as_i64().unwrap_or(0) > 0, "{out}");
    let frames: u64 = stream["nb_read_frames"].as_str().unwrap().parse().unwrap();
    // Every frame of every listed segment: the segments start at the first
    // IDR and end on keyframes, so whole 25-frame GOPs, as many as the
    // listed durations say.
    assert_eq!(frames % 25, 0, "{frames} frames: a GOP lost frames");
    assert!(
        (frames as f64 - listed_seconds * 25.0).abs() <= 1.0,
        "{frames} frames decoded, the playlist lists {listed_seconds} s"
    );
    assert!(
        frames >= 8 * 25 && frames <= u64::from(seconds) * 25,
        "{frames}"
    );

    let (_, body) = get_text(&http, &format!("http://{}/status", server.http)).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let input = &json["rtp_inputs"][0];
    assert_eq!(input["out_of_order"].as_u64(), Some(0), "{body}");
    assert_eq!(input["lost"].as_u64(), Some(0), "{body}");
    assert_eq!(input["damaged"].as_u64(), Some(0), "{body}");
    assert!(input["sender_reports"].as_u64().unwrap() >= 2, "{body}");
    assert_eq!(input["rtcp_synced"].as_u64(), Some(1), "{body}");
    let log = server.log();
    assert!(
        log.contains("tracks placed by RTCP sender reports"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    push.stop();
}
