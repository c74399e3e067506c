//! `edge_hold`: what N concurrent blocking LL-HLS playlist requests held by
//! the edge cost in server memory, and whether they all complete when the
//! part they wait for arrives. Used by `benches/edge_load.sh`.
//!
//! 1. Opens `--viewers` HTTPS connections (HTTP/1.1 by ALPN, TLS verified
//!    against `--cert`) to the edge and finishes every TLS handshake.
//! 2. Stops the publisher (`SIGSTOP` to `--pause-pid`, the ffmpeg pushing
//!    the stream), waits for what was in flight to land, reads the media
//!    playlist once and works out the next part (`_HLS_msn`/`_HLS_part`
//!    after the last one listed).
//! 3. Every connection sends one blocking playlist request for that part
//!    (`Connection: close`). The edge holds them all (one upstream wait,
//!    coalesced). The server's `VmRSS` (`/proc/PID/status` of
//!    `--server-pid`) is read before the connections, with them idle, and
//!    every 100 ms while the requests are held.
//! 4. `SIGCONT`: the part arrives, every request must come back with 200.
//!
//! The last line of output is one JSON object with every figure; the exit
//! status is non-zero unless every viewer connected and got a 200 after the
//! resume (none before).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Parser)]
#[command(
    about = "Hold N blocking LL-HLS playlist requests on the edge; measure its RSS per held viewer"
)]
struct Args {
    /// The edge's HTTPS address.
    #[arg(long)]
    addr: SocketAddr,
    /// Path and query of the signed media playlist, e.g.
    /// `/live/bench/stream.m3u8?token=...`.
    #[arg(long)]
    playlist: String,
    /// PEM certificate the edge presents (the only one trusted).
    #[arg(long)]
    cert: PathBuf,
    /// Concurrent viewers (connections, one blocking request each).
    #[arg(long, default_value_t = 10_000)]
    viewers: usize,
    /// PID of the server whose VmRSS is measured.
    #[arg(long)]
    server_pid: u32,
    /// PID of the publisher, stopped while the requests are held.
    #[arg(long)]
    pause_pid: u32,
    /// How long the requests are held after all were written (seconds).
    #[arg(long, default_value_t = 2.0)]
    hold_s: f64,
    /// TLS handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// How long to wait for every response after the resume (seconds).
    #[arg(long, default_value_t = 30)]
    complete_timeout_s: u64,
}

fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS line")?
        .parse()?;
    Ok(kb * 1024)
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

async fn connect(connector: &TlsConnector, addr: SocketAddr) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    Ok(connector.connect(name, tcp).await?)
}

/// Sends one GET and reads the whole response (the server closes after
/// it); returns the status code and the whole response, headers included.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> Result<(u16, Vec<u8>)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    // A TLS close without close_notify still ends the response we asked for.
    if let Err(e) = stream.read_to_end(&mut response).await
        && response.is_empty()
    {
        return Err(e.into());
    }
    let head = std::str::from_utf8(&response[..response.len().min(32)]).unwrap_or("");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    Ok((status, response))
}

/// The part after the last one a media playlist lists: `(msn, part)`.
fn next_part(playlist: &str) -> Result<(u64, u64)> {
    let mut media_sequence = None;
    let mut segments = 0u64;
    let mut parts_since_segment = 0u64;
    for line in playlist.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = Some(v.parse::<u64>()?);
        } else if line.starts_with("#EXT-X-PART:") {
            parts_since_segment += 1;
        } else if !line.is_empty() && !line.starts_with('#') {
            segments += 1;
            parts_since_segment = 0;
        }
    }
    let media_sequence = media_sequence.context("no EXT-X-MEDIA-SEQUENCE")?;
    Ok((media_sequence + segments, parts_since_segment))
}

#[derive(Debug)]
enum Outcome {
    ConnectFailed(String),
    Done {
        status: Option<u16>,
        error: Option<String>,
        at: Instant,
    },
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let connector = ferrocast_benches::tls::http1_connector(&args.cert)?;

    let rss_before = rss_bytes(args.server_pid)?;
    eprintln!(
        "edge_hold: server RSS before: {:.1} MiB",
        rss_before as f64 / 1048576.0
    );

    // ---- 1. connect every viewer ----------------------------------------
    let connected = Arc::new(AtomicUsize::new(0));
    let finished_connecting = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency));
    let (path_tx, path_rx) = watch::channel::<Option<String>>(None);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.viewers);
    for _ in 0..args.viewers {
        let connector = connector.clone();
        let gate = gate.clone();
        let connected = connected.clone();
        let finished_connecting = finished_connecting.clone();
        let sent = sent.clone();
        let mut path_rx = path_rx.clone();
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let stream = connect(&connector, addr).await;
            drop(permit);
            finished_connecting.fetch_add(1, Ordering::Relaxed);
            let mut stream = match stream {
                Ok(s) => {
                    connected.fetch_add(1, Ordering::Relaxed);
                    s
                }
                Err(e) => return Outcome::ConnectFailed(e.to_string()),
            };
            let path = match path_rx.wait_for(Option::is_some).await {
                Ok(p) => p.clone().expect("checked"),
                Err(_) => return Outcome::ConnectFailed("cancelled".into()),
            };
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let write = async {
                stream.write_all(request.as_bytes()).await?;
                stream.flush().await
            }
            .await;
            sent.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = write {
                return Outcome::Done {
                    status: None,
                    error: Some(format!("write: {e}")),
                    at: Instant::now(),
                };
            }
            let mut response = Vec::new();
            let read = stream.read_to_end(&mut response).await;
            let at = Instant::now();
            let head = std::str::from_utf8(&response[..response.len().min(32)]).unwrap_or("");
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            let error = match (status, read) {
                (Some(200), _) => None,
                (Some(s), _) => {
                    let text = String::from_utf8_lossy(&response);
                    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
                    Some(format!(
                        "{s}: {}",
                        body.chars().take(120).collect::<String>()
                    ))
                }
                (None, Err(e)) => Some(format!("read: {e}")),
                (None, Ok(_)) => Some("no status line".into()),
            };
            Outcome::Done { status, error, at }
        }));
    }
    while finished_connecting.load(Ordering::Relaxed) < args.viewers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    let n_connected = connected.load(Ordering::Relaxed);
    eprintln!(
        "edge_hold: {n_connected}/{} connected in {connect_s:.1} s",
        args.viewers
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_bytes(args.server_pid)?;

    // ---- 2. stop the publisher, find the next part ------------------------
    signal(args.pause_pid, "STOP")?;
    let stopped_at = Instant::now();
    let held = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut probe = connect(&connector, args.addr).await?;
        let (status, body) = get(&mut probe, &args.playlist).await?;
        if status != 200 {
            bail!("playlist probe answered {status}");
        }
        let text = String::from_utf8_lossy(&body);
        let text = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let (msn, part) = next_part(text)?;
        if std::env::var_os("EDGE_HOLD_DEBUG").is_some() {
            eprintln!("{text}");
        }
        let path = format!("{}&_HLS_msn={msn}&_HLS_part={part}", args.playlist);
        eprintln!("edge_hold: holding {n_connected} requests for _HLS_msn={msn}&_HLS_part={part}");

        // ---- 3. every viewer asks for it; sample RSS while held ----------
        let writing = Instant::now();
        path_tx.send_replace(Some(path));
        while sent.load(Ordering::Relaxed) < n_connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let write_s = writing.elapsed().as_secs_f64();
        let mut samples = Vec::new();
        let hold_until = Instant::now() + Duration::from_secs_f64(args.hold_s);
        while Instant::now() < hold_until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            samples.push(rss_bytes(args.server_pid)?);
        }
        Ok::<_, anyhow::Error>((msn, part, write_s, samples))
    }
    .await;
    // ---- 4. resume whatever happened ------------------------------------
    let resumed_at = Instant::now();
    signal(args.pause_pid, "CONT")?;
    let paused_s = (resumed_at - stopped_at).as_secs_f64();
    let (msn, part, write_s, samples) = held?;

    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut early = 0usize;
    let mut after_resume_ms = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.complete_timeout_s);
    let mut timed_out = 0usize;
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => timed_out += 1,
            Ok(Err(e)) => *errors.entry(format!("task: {e}")).or_default() += 1,
            Ok(Ok(Outcome::ConnectFailed(e))) => {
                *errors.entry(format!("connect: {e}")).or_default() += 1
            }
            Ok(Ok(Outcome::Done { status, error, at })) => {
                if let Some(s) = status {
                    *statuses.entry(s.to_string()).or_default() += 1;
                }
                if let Some(e) = error {
                    *errors.entry(e).or_default() += 1;
                }
                if at < resumed_at {
                    early += 1;
                } else {
                    after_resume_ms.push((at - resumed_at).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    after_resume_ms.sort_by(f64::total_cmp);
    let rss_held_peak = samples.iter().copied().max().unwrap_or(0);
    let rss_held_last = samples.last().copied().unwrap_or(0);
    let ok_200 = statuses.get("200").copied().unwrap_or(0);
    let ok = n_connected == args.viewers && ok_200 == args.viewers && early == 0;
    let per_viewer = |rss: u64, base: u64| {
        if n_connected == 0 {
            0.0
        } else {
            (rss as f64 - base as f64) / n_connected as f64
        }
    };
    let report = serde_json::json!({
        "bench": "edge_hold",
        "ok": ok,
        "viewers": args.viewers,
        "connected": n_connected,
        "connect_s": connect_s,
        "held_msn": msn,
        "held_part": part,
        "write_s": write_s,
        "hold_s": args.hold_s,
        "publisher_paused_s": paused_s,
        "rss_before": rss_before,
        "rss_connected": rss_connected,
        "rss_held_peak": rss_held_peak,
        "rss_held_last": rss_held_last,
        "rss_samples": samples,
        "bytes_per_viewer_connection": per_viewer(rss_connected, rss_before),
        "bytes_per_viewer_held": per_viewer(rss_held_peak, rss_before),
        "bytes_per_held_request": per_viewer(rss_held_peak, rss_connected),
        "statuses": statuses,
        "errors": errors,
        "completed_before_resume": early,
        "timed_out": timed_out,
        "after_resume_ms": {
            "n": after_resume_ms.len(),
            "p50": percentile(&after_resume_ms, 50.0),
            "p99": percentile(&after_resume_ms, 99.0),
            "max": after_resume_ms.last().copied().unwrap_or(f64::NAN),
        },
    });
    println!("{report}");
    if !ok {
        bail!(
            "not every viewer got its 200 after the resume: connected {n_connected}/{}, 200s {ok_200}, early {early}, timed out {timed_out}, errors {errors:?}",
            args.viewers
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::next_part;

    #[test]
    fn next_part_follows_the_last_listed_one() {
        let playlist = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXTINF:1.0,\nseg7.m4s\n#EXT-X-PART:DURATION=0.2,URI=\"b\"\n#EXT-X-PART:DURATION=0.2,URI=\"c\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"d\"\n";
        assert_eq!(next_part(playlist).unwrap(), (8, 2));
        let closed = "#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:1.0,\nseg3.m4s\n";
        assert_eq!(next_part(closed).unwrap(), (4, 0));
    }
}
