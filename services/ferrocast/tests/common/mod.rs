//! Test tooling: the real `ferrocast` binary on free ports, real senders
//! (ffmpeg, srt-live-transmit) and a small CMAF box reader.

#![allow(dead_code)]

pub mod boxes;
pub mod browser;
pub mod cluster;
pub mod edge;
pub mod srt_peer;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

/// A three-rung test ladder (`--ladder test`) for the 320x240 test
/// source: 240p/180p/144p, ultrafast, so that two CPU cores keep up.
pub const TEST_LADDER: &str = r#"
[ingest]
reconnect_grace_ms = 1000
[[transcode.ladders]]
name = "test"
[[transcode.ladders.rungs]]
name = "240p"
height = 240
video_bitrate_kbps = 400
x264_preset = "ultrafast"
[[transcode.ladders.rungs]]
name = "180p"
height = 180
video_bitrate_kbps = 250
x264_preset = "ultrafast"
[[transcode.ladders.rungs]]
name = "144p"
height = 144
video_bitrate_kbps = 150
x264_preset = "ultrafast"
"#;

/// A running `ferrocast up` on loopback with free ports.
pub struct Server {
    child: Child,
    pub srt: SocketAddr,
    pub http: SocketAddr,
    /// The edge's HTTPS address (TCP; UDP for HTTP/3 on the same port),
    /// when the config has an `[edge]` section.
    pub https: Option<SocketAddr>,
    /// Base64 SHA-256 of the edge's SPKI, from the ready line, when the
    /// edge generated its certificate (no `tls_cert`).
    pub spki_sha256: Option<String>,
    pub data_dir: tempfile::TempDir,
    log: Arc<ServerLog>,
}

/// A process's stderr so far, and a signal for each new line.
#[derive(Default)]
pub struct ServerLog {
    text: Mutex<String>,
    line_added: Condvar,
}

impl ServerLog {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` was logged (woken by each new
    /// line, not polling); false if `timeout` passes first.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut text = self.text.lock().unwrap();
        loop {
            if text.contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            text = self.line_added.wait_timeout(text, left).unwrap().0;
        }
    }
}

/// Collects `child`'s stderr and waits (30 s at most) for the stdout line
/// that starts with `ready_prefix`; returns it and the log.
pub fn until_ready(child: &mut Child, ready_prefix: &str) -> (String, Arc<ServerLog>) {
    let log = Arc::new(ServerLog::default());
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut text = sink.text.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
            sink.line_added.notify_all();
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let prefix = ready_prefix.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&prefix) {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{ready_prefix}: not ready; log:\n{}", log.text()));
    (line, log)
}

impl Server {
    /// Start with default settings plus `config_toml` (may be empty), with
    /// transcoding off (`--ladder off`): the built-in ladder would load
    /// every test on a small CI machine. Tests of the transcoder use
    /// [`Server::start_with_args`].
    pub fn start(config_toml: &str) -> Server {
        Server::start_with_srt(config_toml, "127.0.0.1:0")
    }

    /// Start with the SRT listener on `srt_listen` (port 0 for a free one),
    /// transcoding off.
    pub fn start_with_srt(config_toml: &str, srt_listen: &str) -> Server {
        Server::start_full(config_toml, srt_listen, &[])
    }

    /// Start with extra `ferrocast up` flags (for example
    /// `["--ladder", "test"]`); transcoding is off unless they name a
    /// ladder.
    pub fn start_with_args(config_toml: &str, args: &[&str]) -> Server {
        Server::start_full(config_toml, "127.0.0.1:0", args)
    }

    /// Start (transcoding off) with `FERROCAST_LOG` set to `filter`.
    pub fn start_with_log(config_toml: &str, filter: &str) -> Server {
        Server::start_logged(config_toml, "127.0.0.1:0", &[], filter)
    }

    fn start_full(config_toml: &str, srt_listen: &str, extra: &[&str]) -> Server {
        Server::start_logged(
            config_toml,
            srt_listen,
            extra,
            "info,srt_protocol=warn,srt_protocol::listener=error",
        )
    }

    fn start_logged(config_toml: &str, srt_listen: &str, extra: &[&str], filter: &str) -> Server {
        let data_dir = tempfile::tempdir().unwrap();
        let config = data_dir.path().join("ferrocast.toml");
        std::fs::write(&config, config_toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
        // Only this test's settings: no FERROCAST_* from the caller's environment.
        for (name, _) in std::env::vars() {
            if name.starts_with("FERROCAST_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args([
                "up",
                "--srt-listen",
                srt_listen,
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .args(if extra.contains(&"--ladder") {
                &[][..]
            } else {
                &["--ladder", "off"][..]
            })
            .args(extra)
            .env("FERROCAST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferrocast binary starts");
        let (line, log) = until_ready(&mut child, "ferrocast ready");
        let field = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap()
                .parse()
                .unwrap()
        };
        Server {
            srt: field("srt="),
            http: field("http="),
            https: line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("https="))
                .map(|a| a.parse().unwrap()),
            spki_sha256: line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("spki_sha256="))
                .map(str::to_owned),
            child,
            data_dir,
            log,
        }
    }

    /// `http://ADDR/live/NAME/FILE`
    pub fn url(&self, name: &str, file: &str) -> String {
        format!("http://{}/live/{name}/{file}", self.http)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Waits until the server has logged a line containing `needle` (woken
    /// by each new line, not polling); false if `timeout` passes first.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.log.wait_for(needle, timeout)
    }

    /// True if the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Asks the process to stop (SIGTERM, as an orchestrator does) and
    /// waits, bounded, for it to exit.
    #[allow(dead_code)]
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the process did not stop in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL: no shutdown of any kind) and reaps it.
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sender process, killed on drop.
pub struct Sender(pub Child);

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Sender {
    /// Stop the sender now.
    pub fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Wait for the sender to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sender did not finish in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The lavfi test source used by every sender: 320x240 at 25 fps with a
/// 1 s GOP and B-frames, plus a 48 kHz sine, as H.264 + AAC in MPEG-TS.
pub fn test_source_args(seconds: u32) -> Vec<String> {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "25",
        "-bf",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if seconds > 0 {
        args.extend(["-t".to_string(), seconds.to_string()]);
    }
    args
}

/// ffmpeg pushing the test source to `srt` as `streamid`.
pub fn ffmpeg_push(srt: SocketAddr, streamid: &str, seconds: u32) -> Sender {
    ffmpeg_push_with(srt, streamid, seconds, &[])
}

/// [`ffmpeg_push`] with extra MPEG-TS muxer options (for example
/// `-pes_payload_size 0`, one PES per audio frame, instead of ffmpeg's
/// default of batching about 0.37 s of audio into one PES).
pub fn ffmpeg_push_with(srt: SocketAddr, streamid: &str, seconds: u32, muxer: &[&str]) -> Sender {
    let url = format!("srt://{srt}?streamid={streamid}&pkt_size=1316");
    let child = Command::new("ffmpeg")
        .args(test_source_args(seconds))
        .args(muxer)
        .args(["-f", "mpegts", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    Sender(child)
}

/// Run a command to completion with a time limit; returns (status ok, stderr).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.is_some(),
        "command timed out: {cmd:?}\nstderr: {err}"
    );
    (status.unwrap().success(), out, err)
}

/// True if `program` can be run.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Write bytes to a file in `dir` and return its path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// An async HTTP client for the tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET a URL, returning status and body text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// GET a URL that must succeed, returning the body bytes.
pub async fn get_bytes(client: &reqwest::Client, url: &str) -> bytes::Bytes {
    let response = client.get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.bytes().await.unwrap()
}

/// Poll-free wait for a media playlist that has segment `msn` complete,
/// using LL-HLS blocking reload.
pub async fn playlist_with_segment(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    msn: u64,
) -> String {
    let url = format!("{}?_HLS_msn={msn}", server.url(name, "stream.m3u8"));
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let mut last = (0, String::new());
    while std::time::Instant::now() < deadline {
        let response = client.get(&url).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if status == 200 {
            return body;
        }
        // 404 until the publisher connects, 400 while segment `msn` is more
        // than two ahead: there is no event to await for either.
        last = (status, body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "no playlist with segment {msn} (last answer {last:?}); server log:\n{}",
        server.log()
    );
}

/// ffmpeg pushing 320x240 25 fps video and a 48 kHz sine to `srt` as
/// `streamid`, encoded with the given codec arguments (for example
/// `["-c:v", "libx265", ...]` and `["-c:a", "libopus", ...]`).
pub fn ffmpeg_push_codecs(
    srt: SocketAddr,
    streamid: &str,
    seconds: u32,
    video_codec_args: &[&str],
    audio_codec_args: &[&str],
) -> Sender {
    let url = format!("srt://{srt}?streamid={streamid}&pkt_size=1316");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(video_codec_args)
        .args(audio_codec_args)
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
pub fn probe_streams(path: &Path) -> String {
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_streams", "-of", "default"])
            .arg(path),
        Duration::from_secs(30),
    );
    assert!(ok && err.is_empty(), "ffprobe: {err}");
    out
}

/// The `#EXT-X-STREAM-INF` line of a stream's multivariant playlist and its
/// CODECS list.
pub async fn variant(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
) -> (String, Vec<String>) {
    let (status, multivariant) = get_text(client, &server.url(name, "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    let inf = multivariant
        .lines()
        .find(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .expect("EXT-X-STREAM-INF")
        .to_owned();
    let codecs = inf
        .split("CODECS=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("CODECS")
        .split(',')
        .map(str::to_owned)
        .collect();
    (inf, codecs)
}

/// The init segment of `media` (a media playlist) followed by its first `n`
/// listed segments, as one fMP4 file.
pub async fn init_and_segments(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    media: &str,
    n: usize,
) -> Vec<u8> {
    let map = media
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|r| r.split('"').next())
        .expect("EXT-X-MAP");
    let segments: Vec<&str> = media
        .lines()
        .filter(|l| l.starts_with("seg") && l.ends_with(".m4s"))
        .take(n)
        .collect();
    assert_eq!(segments.len(), n, "{media}");
    let mut file = get_bytes(client, &server.url(name, map)).await.to_vec();
    assert_eq!(&file[4..8], b"ftyp");
    for segment in segments {
        file.extend_from_slice(&get_bytes(client, &server.url(name, segment)).await);
    }
    file
}

/// What a player gets of a stream's first `n` segments, probed: the
/// video rendition's init segment and segments (`media`, its playlist)
/// written to `dir` as one fMP4 file, and ffprobe's streams of that file
/// followed by those of the audio rendition's, where the multivariant names
/// one (`hls.audio = "separate"`, the default). Returns the video file and
/// the streams.
#[allow(dead_code)]
pub async fn probe_renditions(
    client: &reqwest::Client,
    server: &Server,
    name: &str,
    media: &str,
    n: usize,
    dir: &Path,
) -> (std::path::PathBuf, String) {
    let video = init_and_segments(client, server, name, media, n).await;
    let video = write_file(dir, &format!("{}.mp4", name.replace('/', "-")), &video);
    let mut streams = probe_streams(&video);
    let (status, multivariant) = get_text(client, &server.url(name, "index.m3u8")).await;
    assert_eq!(status, 200, "{multivariant}");
    if multivariant.contains("#EXT-X-MEDIA:TYPE=AUDIO,") {
        let path = format!("{name}/audio");
        let media = playlist_with_segment(client, server, &path, n as u64).await;
        let audio = init_and_segments(client, server, &path, &media, n).await;
        let audio = write_file(
            dir,
            &format!("{}-audio.mp4", name.replace('/', "-")),
            &audio,
        );
        streams.push_str(&probe_streams(&audio));
    }
    (video, streams)
}

/// A real client through the playlists: ffmpeg's HLS demuxer decodes
/// `seconds` of the stream with no errors.
pub fn assert_ffmpeg_decodes(server: &Server, name: &str, seconds: u32) {
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(server.url(name, "index.m3u8"))
            .args(["-t", &seconds.to_string(), "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok, "ffmpeg failed: {err}");
    assert!(err.trim().is_empty(), "ffmpeg decode errors: {err}");
}

/// An SRT caller publishing `stream` with `key`: `Ok` when the handshake
/// completes (the connection is closed at once), else the refusal as
/// text. Panics when the handshake times out.
#[allow(dead_code)]
pub async fn srt_publish_attempt(srt: SocketAddr, stream: &str, key: &str) -> Result<(), String> {
    let streamid = format!("publish:live/{stream}?key={key}");
    let call = srt_tokio::SrtSocket::builder().call(srt, Some(&streamid));
    match tokio::time::timeout(Duration::from_secs(5), call).await {
        Ok(Ok(mut socket)) => {
            let _ = futures::SinkExt::close(&mut socket).await;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(_) => panic!("SRT handshake with {srt} timed out"),
    }
}
