//! `failover`: how long a stream's rungs stop when the transcoder holding
//! it dies, over many kills; or, with `--drain`, how long a planned drain
//! (SIGTERM) takes to hand the stream over, and whether it ever added a
//! discontinuity.
//!
//! Starts a real cluster on loopback: `redis-server`, `ferrocast ingest`,
//! two `ferrocast transcode` and one `ferrocast package` (the binary given
//! with `--ferrocast`), and ffmpeg publishing a 320x240 test stream over
//! SRT. Then, `--kills` times: `kill -9` the transcoder holding the stream,
//! measure the time until the rung playlist lists a segment after the new
//! discontinuity (the other transcoder's first segment), check that the
//! media sequence never went back, and start a fresh standby transcoder.
//!
//! Baseline, in the same run: the lease TTL (the time a dead holder's lease
//! takes to lapse, the floor of a crash failover without an external
//! failure detector).
//!
//! With `--drain`, each round sends SIGTERM instead and measures the time
//! from the signal to the standby holding the lease, and to the drained
//! process's exit; the rung must list no new discontinuity and its media
//! sequence must never go back.
//!
//! ```text
//! cargo build --release -p ferrocast -p ferrocast-benches
//! target/release/failover --ferrocast target/release/ferrocast --kills 10
//! target/release/failover --ferrocast target/release/ferrocast --kills 10 --drain
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use ferrocast_benches::summary::Summary;
use ferrocast_testkit::Redis;
use ferrocast_testkit::playlist::{discontinuities, media_sequence, segment_number};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Transcoder failover time over repeated kill -9")]
struct Args {
    /// The `ferrocast` binary.
    #[arg(long, default_value = "target/release/ferrocast")]
    ferrocast: PathBuf,
    /// How many kills.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Lease TTL in milliseconds (`[cluster] lease_ttl_ms`).
    #[arg(long, default_value_t = 1500)]
    lease_ttl_ms: u64,
    /// SIGTERM (a planned drain) instead of kill -9.
    #[arg(long)]
    drain: bool,
}

const CONFIG: &str = r#"
[ingest]
reconnect_grace_ms = 2000
[cluster]
node_ttl_ms = 5000
poll_ms = 100
[[transcode.ladders]]
name = "bench"
[[transcode.ladders.rungs]]
name = "180p"
height = 180
video_bitrate_kbps = 250
x264_preset = "ultrafast"
"#;

/// A role process, killed on drop.
struct Node {
    child: Child,
    ready: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn start(
        args: &Args,
        config: &std::path::Path,
        redis: &Redis,
        role: &str,
        id: &str,
    ) -> anyhow::Result<Node> {
        let mut command = Command::new(&args.ferrocast);
        command
            .args([role, "--node-id", id, "--redis-url", &redis.url()])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(config)
            .env("FERROCAST_TRANSCODE__LADDER", "bench")
            .env(
                "FERROCAST_CLUSTER__LEASE_TTL_MS",
                args.lease_ttl_ms.to_string(),
            )
            .env("FERROCAST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if role != "package" {
            command.args(["--bus-listen", "127.0.0.1:0"]);
        }
        if role == "ingest" {
            command.args(["--srt-listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", args.ferrocast.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let prefix = format!("ferrocast {role} ready");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with(&prefix) {
                    let _ = tx.send(line);
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(30))
            .context("ready line")?;
        Ok(Node { child, ready })
    }

    fn field(&self, key: &str) -> anyhow::Result<String> {
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .with_context(|| format!("{key}= in {}", self.ready))
    }
}

fn get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last segment listed.
fn last_segment(playlist: &str) -> Option<u64> {
    playlist.lines().filter_map(segment_number).max()
}

/// Whether a segment numbered after `after` follows a discontinuity: the
/// first segment of the transcoder that took over.
fn resumed_after(playlist: &str, after: u64) -> bool {
    let mut tagged = false;
    for line in playlist.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            tagged = true;
        } else if let Some(msn) = segment_number(line) {
            if tagged && msn > after {
                return true;
            }
            tagged = false;
        }
    }
    false
}

/// The node holding the stream's transcode lease.
fn transcode_holder(redis: &Redis) -> String {
    let value = redis.cli(&["GET", "ferrocast:lease:transcode:bench"]);
    value.split(' ').next().unwrap_or_default().to_owned()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let redis = Redis::start().context("redis-server is needed")?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("ferrocast.toml");
    std::fs::write(&config, CONFIG)?;
    let ingest = Node::start(&args, &config, &redis, "ingest", "ingest-a")?;
    let mut transcoders = vec![
        Node::start(&args, &config, &redis, "transcode", "transcode-0")?,
        Node::start(&args, &config, &redis, "transcode", "transcode-1")?,
    ];
    let packager = Node::start(&args, &config, &redis, "package", "package-a")?;
    let srt = ingest.field("srt")?;
    let _ffmpeg = ChildGuard(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-t", "3600",
            ])
            .args([
                "-f",
                "mpegts",
                &format!("srt://{srt}?streamid=publish:live/bench&pkt_size=1316"),
            ])
            .stdin(Stdio::null())
            .spawn()
            .context("ffmpeg")?,
    );
    let url = format!(
        "http://{}/live/bench/180p/stream.m3u8",
        packager.field("http")?
    );
    let wait_until = |what: &str, f: &mut dyn FnMut() -> bool| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            ensure!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    wait_until("the rung playlist", &mut || {
        get(&url).is_some_and(|p| p.matches("seg").count() >= 2)
    })?;
    let mut times_ms = Vec::new();
    let mut exits_ms = Vec::new();
    let mut last_sequence = 0;
    for kill in 0..args.kills {
        let holder = transcode_holder(&redis);
        let Some(index) = transcoders
            .iter()
            .position(|t| t.ready.contains(&format!("node={holder}")))
        else {
            bail!("holder {holder:?} is not one of ours");
        };
        if args.drain {
            let before = get(&url).context("playlist before the drain")?;
            let breaks = discontinuities(&before);
            let mut drained = transcoders.remove(index);
            let signalled = Instant::now();
            let sent = Command::new("kill")
                .args(["-TERM", &drained.child.id().to_string()])
                .status()?;
            ensure!(sent.success(), "kill -TERM");
            wait_until("the standby to hold the stream", &mut || {
                let now = transcode_holder(&redis);
                !now.is_empty() && now != holder
            })?;
            let ms = signalled.elapsed().as_millis() as i64;
            wait_until("the drained transcoder to exit", &mut || {
                drained.child.try_wait().ok().flatten().is_some()
            })?;
            let exit_ms = signalled.elapsed().as_millis() as i64;
            let last_before = last_segment(&before).context("segments before the drain")?;
            let mut went_back = false;
            let mut after = String::new();
            wait_until("two segments after the handover", &mut || {
                let Some(playlist) = get(&url) else {
                    return false;
                };
                if let Some(sequence) = media_sequence(&playlist) {
                    went_back |= sequence < last_sequence;
                    last_sequence = last_sequence.max(sequence);
                }
                let done = last_segment(&playlist).is_some_and(|l| l >= last_before + 3);
                after = playlist;
                done
            })?;
            ensure!(!went_back, "media sequence went back after drain {kill}");
            ensure!(
                discontinuities(&after) == breaks,
                "drain {kill} added a discontinuity:\n{after}"
            );
            eprintln!("drain {kill}: standby holds it after {ms} ms, exit after {exit_ms} ms");
            times_ms.push(ms);
            exits_ms.push(exit_ms);
        } else {
            let before = get(&url).context("playlist before the kill")?;
            let last_before = last_segment(&before).context("segments before the kill")?;
            let killed_node = transcoders.remove(index);
            let killed = Instant::now();
            drop(killed_node);
            let mut went_back = false;
            wait_until("the first segment after the kill", &mut || {
                let Some(playlist) = get(&url) else {
                    return false;
                };
                if let Some(sequence) = media_sequence(&playlist) {
                    went_back |= sequence < last_sequence;
                    last_sequence = last_sequence.max(sequence);
                }
                resumed_after(&playlist, last_before)
            })?;
            let ms = killed.elapsed().as_millis() as i64;
            ensure!(!went_back, "media sequence went back after kill {kill}");
            eprintln!("kill {kill}: {ms} ms");
            times_ms.push(ms);
        }
        transcoders.push(Node::start(
            &args,
            &config,
            &redis,
            "transcode",
            &format!("transcode-{}", kill + 2),
        )?);
        // Let the new standby settle and the playlist move on.
        std::thread::sleep(Duration::from_secs(3));
    }
    let summary = Summary::of(&times_ms).context("no kills")?;
    if args.drain {
        let exits = Summary::of(&exits_ms).context("no drains")?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "drains": args.kills,
                "lease_ttl_ms": args.lease_ttl_ms,
                "sigterm_to_standby_holding_ms": summary.to_json(),
                "sigterm_to_exit_ms": exits.to_json(),
                "discontinuities_added": 0,
                "all_ms": times_ms,
            }))?
        );
        return Ok(());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "kills": args.kills,
            "lease_ttl_ms": args.lease_ttl_ms,
            "kill_to_first_new_rung_segment_ms": summary.to_json(),
            "all_ms": times_ms,
        }))?
    );
    Ok(())
}

/// A child process killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
