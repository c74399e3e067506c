//! `srt_load`: what ingest costs per Mbit/s, and how many concurrent
//! ~5 Mbit/s SRT publishers one core sustains without loss, against
//! `srt-live-transmit` receiving the same load in the same run.
//!
//! One MPEG-TS file (made by ffmpeg at run time in a temp dir, 1280x720
//! 25 fps, libx264 at about 5 Mbit/s CBR, AAC) is held in memory and sent by
//! N callers in this process, each in 1316-byte live-mode messages paced by
//! the file's PCRs ([`ferrocast_benches::pcr`]). By default (`--sender
//! raw`) every caller is driven from one thread that writes pre-built data
//! packets onto its UDP socket after srt-protocol's own handshake
//! ([`ferrocast_benches::srt_raw`]): 14 % of a core for 50 publishers and
//! 21 % for 100, against 21 % for 50 with one srt-tokio socket and task set
//! per caller (`--sender srt-tokio`), which ran late near 80. The file is long
//! enough for one pass per step (start-up stagger + warm-up + window +
//! margin), so it is never looped and every publisher's timestamps run
//! forward.
//!
//! Targets, each started fresh for every step and pinned with `taskset` to
//! one core (`--target-cpu`):
//!
//! - **ferrocast**: `ferrocast up --ladder off` (ingest and packaging; the
//!   transcoder has its own benchmark, `transcode_ladder`) on free loopback
//!   ports; the callers publish `live/load0` … `live/load{N-1}`. Received bytes and SRT loss
//!   come from its `/status`.
//! - **srt-live-transmit**: N processes, one listener port each, writing to
//!   stdout (sent to `/dev/null`). It receives SRT and writes the payload
//!   out; it does not demux or package anything, so its CPU per Mbit/s is a
//!   lower bound on what any SRT receiver can cost. Received bytes and loss
//!   come from its own JSON statistics (`-s -pf:json -f -statsout`).
//!
//! Measured per step, over `--window-s` seconds after `--warmup-s`: the CPU
//! seconds of the target process(es) (utime + stime from `/proc/PID/stat`),
//! the target core's busy share (`/proc/stat`), this process's own CPU (the
//! load generator, which should sit on another core), received Mbit/s, CPU
//! milliseconds per Mbit received, and loss: SRT packets dropped at either
//! end, callers that failed, demux warnings, or less than 95 % of the sent
//! bytes received. Steps go up `--streams` until the target core is
//! saturated (> 95 % busy), loss appears, or the generator cannot keep up.
//!
//! ```text
//! taskset -c 0 target/release/srt_load --streams 10,25,50,100 --target-cpu 1
//! ```
//!
//! `benches/ingest_load.sh` builds everything and runs this with defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use clap::Parser;
use ferrocast_benches::pcr::{self, MESSAGE_LEN};
use ferrocast_benches::srt_raw::RawCaller;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use srt_tokio::SrtSocket;
use srt_tokio::options::ByteCount;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Start times of the callers are spread over this long, so that N
/// publishers do not send their keyframes in the same millisecond.
const STAGGER: Duration = Duration::from_secs(1);

/// Extra media after the measurement window, so no caller runs dry in it.
const MARGIN: Duration = Duration::from_secs(3);

/// A target core this busy (or a target process using this much of it) is
/// saturated.
const SATURATED: f64 = 0.95;

/// Less than this share of the sent bytes received in the window is loss.
const MIN_DELIVERED: f64 = 0.95;

/// A sender this late (at any message in the window) means the load
/// generator is the limit, not the target.
const GENERATOR_LATE: Duration = Duration::from_millis(50);

/// The callers' SRT send buffer: libsrt's default (`SRTO_SNDBUF`, 8192
/// packets of 1456 bytes), which contribution encoders and ffmpeg get.
/// srt-tokio's own default is 32 packets: under a busy scheduler its
/// senders then overwrite packets that are not yet acknowledged, or not yet
/// sent, and the run measures the sender instead of the receiver.
const SEND_BUFFER: ByteCount = ByteCount(8192 * 1456);

/// What receives the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    /// `ferrocast up`: SRT ingest, TS demux, packaging, HTTP origin.
    Ferrocast,
    /// One `srt-live-transmit` process per publisher, output to /dev/null.
    SrtLiveTransmit,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Ferrocast => "ferrocast",
            Target::SrtLiveTransmit => "srt-live-transmit",
        }
    }
}

/// What sends the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Sender {
    /// One thread for every caller: srt-protocol's handshake, then data
    /// packets written straight onto UDP sockets, NAKs answered from a
    /// history ([`ferrocast_benches::srt_raw`]). Cheap enough to load one
    /// core from another.
    Raw,
    /// One srt-tokio socket per caller, each with its own tasks, timers and
    /// send buffer: a full SRT sender, and as costly as the receiver.
    SrtTokio,
}

impl Sender {
    fn name(self) -> &'static str {
        match self {
            Sender::Raw => "raw",
            Sender::SrtTokio => "srt-tokio",
        }
    }
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    about = "CPU per Mbit/s and concurrent SRT publishers per core: Ferrocast against srt-live-transmit"
)]
struct Args {
    /// Numbers of concurrent publishers to step through, in order.
    #[arg(long, value_delimiter = ',', default_value = "10,25,50,100,150,200")]
    streams: Vec<usize>,
    /// Targets to measure, in order.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "ferrocast,srt-live-transmit"
    )]
    targets: Vec<Target>,
    /// Seconds after the last caller starts before the window opens.
    #[arg(long, default_value_t = 3)]
    warmup_s: u64,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 10)]
    window_s: u64,
    /// The core the target process(es) are pinned to (`taskset -c`).
    #[arg(long, default_value_t = 1)]
    target_cpu: usize,
    /// The `ferrocast` binary (default: next to this one).
    #[arg(long)]
    ferrocast: Option<PathBuf>,
    /// The `srt-live-transmit` binary.
    #[arg(long, default_value = "srt-live-transmit")]
    srt_live_transmit: PathBuf,
    /// Send this MPEG-TS file instead of generating one; it must last at
    /// least 1 s + warm-up + window + 3 s.
    #[arg(long)]
    input: Option<PathBuf>,
    /// How the callers send.
    #[arg(long, value_enum, default_value = "raw")]
    sender: Sender,
    /// SRT latency the callers ask for, milliseconds.
    #[arg(long, default_value_t = 120)]
    latency_ms: u64,
    /// Run every step even after saturation or loss.
    #[arg(long)]
    keep_going: bool,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
}

/// Everything a step needs that does not change between steps.
struct Bench {
    args: Args,
    /// (due after the caller's start, message) for the whole file.
    messages: Arc<[(Duration, Bytes)]>,
    clk_tck: u64,
    ferrocast: PathBuf,
    scratch: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    ensure!(
        !args.streams.is_empty() && args.streams.iter().all(|&n| n > 0),
        "--streams needs at least one positive count"
    );
    ensure!(args.window_s > 0, "--window-s must be positive");

    let scratch = tempfile::tempdir().context("temp dir")?;
    let needed = STAGGER + Duration::from_secs(args.warmup_s + args.window_s) + MARGIN;
    let input = match &args.input {
        Some(path) => path.clone(),
        None => {
            let path = scratch.path().join("load.ts");
            generate(&path, needed.as_secs())?;
            path
        }
    };
    let ts = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let due =
        pcr::schedule(&ts, MESSAGE_LEN).with_context(|| format!("pacing {}", input.display()))?;
    let length = due.last().copied().unwrap_or_default();
    ensure!(
        length + Duration::from_millis(500) >= needed,
        "{} lasts {:.1} s; this run needs {:.1} s (stagger + warm-up + window + margin)",
        input.display(),
        length.as_secs_f64(),
        needed.as_secs_f64()
    );
    let file_mbps = ts.len() as f64 * 8.0 / length.as_secs_f64() / 1e6;
    let ts = Bytes::from(ts);
    let messages: Arc<[(Duration, Bytes)]> = due
        .iter()
        .enumerate()
        .map(|(k, &at)| {
            let start = k * MESSAGE_LEN;
            (at, ts.slice(start..(start + MESSAGE_LEN).min(ts.len())))
        })
        .collect();

    let ferrocast = match &args.ferrocast {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("ferrocast"),
    };
    if args.targets.contains(&Target::Ferrocast) {
        ensure!(
            ferrocast.is_file(),
            "{} not found (build it: cargo build --release -p ferrocast, or pass --ferrocast)",
            ferrocast.display()
        );
    }
    let bench = Bench {
        clk_tck: clk_tck()?,
        messages,
        ferrocast,
        scratch: scratch.path().to_owned(),
        args,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let steps = runtime.block_on(async {
        tokio::select! {
            steps = run_all(&bench, file_mbps, length) => steps,
            signal = tokio::signal::ctrl_c() => {
                signal.context("waiting for Ctrl-C")?;
                bail!("interrupted")
            }
        }
    })?;

    let args = &bench.args;
    let mut capacity = serde_json::Map::new();
    for &target in &args.targets {
        capacity.insert(target.name().to_owned(), capacity_json(&steps, target));
    }
    let json = json!({
        "bench": "srt_load",
        "file_mbps": round(file_mbps, 3),
        "file_s": round(length.as_secs_f64(), 1),
        "message_bytes": MESSAGE_LEN,
        "pacing": "pcr",
        "warmup_s": args.warmup_s,
        "window_s": args.window_s,
        "target_cpu": args.target_cpu,
        "latency_ms": args.latency_ms,
        "sender": args.sender.name(),
        "clk_tck": bench.clk_tck,
        "steps": steps.iter().map(Step::to_json).collect::<Vec<_>>(),
        "max_lossless_streams": capacity,
    });
    if !args.json {
        println!();
        print_table(&steps);
        for &target in &args.targets {
            println!("{:>18}: {}", target.name(), capacity_text(&steps, target));
        }
    }
    println!("{json}");
    Ok(())
}

/// Every target, every step, in order; stops a target's steps at the first
/// saturated, lossy or generator-limited one unless `--keep-going`.
async fn run_all(bench: &Bench, file_mbps: f64, length: Duration) -> anyhow::Result<Vec<Step>> {
    let args = &bench.args;
    if !args.json {
        eprintln!(
            "srt_load: {} messages of {MESSAGE_LEN} B, {:.1} s at {file_mbps:.2} Mbit/s per publisher; \
             warm-up {} s, window {} s; targets on CPU {}",
            bench.messages.len(),
            length.as_secs_f64(),
            args.warmup_s,
            args.window_s,
            args.target_cpu
        );
    }
    let mut steps = Vec::new();
    for &target in &args.targets {
        for &n in &args.streams {
            let step = run_step(bench, target, n)
                .await
                .with_context(|| format!("{} with {n} publishers", target.name()))?;
            if !args.json {
                eprintln!("{}", step.summary_line());
            }
            let stop = !step.lossless() || step.saturated() || step.generator_limited();
            steps.push(step);
            if stop && !args.keep_going {
                break;
            }
        }
    }
    Ok(steps)
}

/// Start `target`, publish `n` streams into it, measure one window.
async fn run_step(bench: &Bench, target: Target, n: usize) -> anyhow::Result<Step> {
    let mut running = match target {
        Target::Ferrocast => start_ferrocast(bench, n).await?,
        Target::SrtLiveTransmit => start_srt_live_transmit(bench, n)?,
    };
    let result = measure(bench, &running, target, n).await;
    running.stop().await;
    result
}

async fn measure(
    bench: &Bench,
    running: &Running,
    target: Target,
    n: usize,
) -> anyhow::Result<Step> {
    let args = &bench.args;
    let latency = Duration::from_millis(args.latency_ms);
    let callers: Vec<Arc<Caller>> = (0..n).map(|_| Arc::new(Caller::default())).collect();
    let senders = match args.sender {
        Sender::Raw => start_raw(bench, &running.srt, latency, &callers).await?,
        Sender::SrtTokio => start_srt_tokio(bench, &running.srt, latency, &callers).await?,
    };
    let window_start = senders.window_start;
    let window = Duration::from_secs(args.window_s);

    tokio::time::sleep_until(window_start.into()).await;
    let before = sample(bench, running, &callers).await?;
    tokio::time::sleep_until((window_start + window).into()).await;
    let after = sample(bench, running, &callers).await?;

    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    let ticks = bench.clk_tck as f64;
    let target_cpu_s = after.target_ticks.saturating_sub(before.target_ticks) as f64 / ticks;
    let generator_cpu_s = after.self_ticks.saturating_sub(before.self_ticks) as f64 / ticks;
    let core_total = after.core.total.saturating_sub(before.core.total);
    let core_busy = if core_total == 0 {
        0.0
    } else {
        after.core.busy.saturating_sub(before.core.busy) as f64 / core_total as f64
    };
    let sent_bytes = after.sent.saturating_sub(before.sent);
    let received_bytes = after.received.bytes.saturating_sub(before.received.bytes);
    let mut tx = TxTotals::default();
    let mut failed = Vec::new();
    for (i, caller) in callers.iter().enumerate() {
        tx.retransmitted += caller.tx_retransmitted.load(Ordering::Relaxed);
        tx.dropped += caller.tx_dropped.load(Ordering::Relaxed);
        tx.lost += caller.tx_lost.load(Ordering::Relaxed);
        if let Some(error) = lock(&caller.error).as_ref() {
            failed.push(format!("load{i}: {error}"));
        }
        tx.max_late_us = tx
            .max_late_us
            .max(caller.max_late_us.load(Ordering::Relaxed));
    }
    Ok(Step {
        target,
        streams: n,
        window_s: args.window_s as f64,
        elapsed_s: elapsed,
        target_cpu_s,
        target_share: target_cpu_s / elapsed,
        core_busy,
        generator_share: generator_cpu_s / elapsed,
        sent_mbps: sent_bytes as f64 * 8.0 / elapsed / 1e6,
        received_mbps: received_bytes as f64 * 8.0 / elapsed / 1e6,
        received: after.received,
        tx,
        failed,
        all_sending: callers.iter().all(|c| c.sending.load(Ordering::Relaxed)),
    })
}

/// A running target: its processes and where the callers go.
struct Running {
    children: Vec<Child>,
    /// One address per caller.
    srt: Vec<SocketAddr>,
    receiver: Receiver,
    /// ferrocast's stdout, kept open so that later prints do not fail.
    _stdout: Option<tokio::io::Lines<BufReader<ChildStdout>>>,
}

/// Where received bytes and receiver-side loss are read from.
enum Receiver {
    /// Ferrocast's status API.
    Ferrocast { http: SocketAddr },
    /// srt-live-transmit's JSON statistics files, one per process.
    StatsFiles(Vec<PathBuf>),
}

impl Running {
    async fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        for child in &mut self.children {
            let _ = child.wait().await;
        }
    }
}

async fn start_ferrocast(bench: &Bench, n: usize) -> anyhow::Result<Running> {
    let dir = bench.scratch.join(format!("ferrocast-{n}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = std::fs::File::create(dir.join("ferrocast.log")).context("ferrocast log")?;
    let mut child = Command::new("taskset")
        .args(["-c", &bench.args.target_cpu.to_string()])
        .arg(&bench.ferrocast)
        .args(["up", "--srt-listen", "127.0.0.1:0", "--ladder", "off"])
        .args(["--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("FERROCAST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting ferrocast under taskset")?;
    let stdout = child.stdout.take().context("ferrocast stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("ferrocast ready") {
                return Ok(line);
            }
        }
        bail!("ferrocast exited before it was ready")
    })
    .await
    .context("ferrocast did not say it was ready within 30 s")??;
    let field = |key: &str| -> anyhow::Result<SocketAddr> {
        let value = ready
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .with_context(|| format!("no {key} in {ready:?}"))?;
        value
            .parse()
            .with_context(|| format!("bad address in {ready:?}"))
    };
    let srt = field("srt=")?;
    let http = field("http=")?;
    Ok(Running {
        children: vec![child],
        srt: vec![srt; n],
        receiver: Receiver::Ferrocast { http },
        _stdout: Some(lines),
    })
}

fn start_srt_live_transmit(bench: &Bench, n: usize) -> anyhow::Result<Running> {
    let dir = bench.scratch.join(format!("slt-{n}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Hold every port until all are chosen so that none is handed out twice.
    let sockets = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("choosing free UDP ports")?;
    let addrs = sockets
        .iter()
        .map(std::net::UdpSocket::local_addr)
        .collect::<Result<Vec<_>, _>>()
        .context("choosing free UDP ports")?;
    drop(sockets);
    let mut children = Vec::with_capacity(n);
    let mut stats = Vec::with_capacity(n);
    for (i, addr) in addrs.iter().enumerate() {
        let stats_path = dir.join(format!("stats-{i}.json"));
        let log = std::fs::File::create(dir.join(format!("slt-{i}.log")))
            .context("srt-live-transmit log")?;
        let child = Command::new("taskset")
            .args(["-c", &bench.args.target_cpu.to_string()])
            .arg(&bench.args.srt_live_transmit)
            // Full (cumulative) JSON statistics every 500 packets, about
            // once a second at 5 Mbit/s.
            .args(["-q", "-s:500", "-pf:json", "-f"])
            .arg(format!("-statsout:{}", stats_path.display()))
            .arg(format!(
                "srt://127.0.0.1:{}?mode=listener&latency={}",
                addr.port(),
                bench.args.latency_ms
            ))
            // srt-live-transmit writes only to `file://con` (stdout).
            .arg("file://con")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting srt-live-transmit under taskset")?;
        children.push(child);
        stats.push(stats_path);
    }
    Ok(Running {
        children,
        srt: addrs,
        receiver: Receiver::StatsFiles(stats),
        _stdout: None,
    })
}

/// The callers of a step, sending; they stop when this is dropped.
struct Senders {
    /// When the measurement window opens: every caller has started and
    /// warmed up.
    window_start: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// When caller `i` of `n` starts: spread evenly over the stagger (i < n,
/// so the offset < [`STAGGER`]).
fn caller_start(start: Instant, i: usize, n: usize) -> Instant {
    start + STAGGER.mul_f64(i as f64 / n as f64)
}

/// One srt-tokio socket per caller, each sending from its own task.
async fn start_srt_tokio(
    bench: &Bench,
    targets: &[SocketAddr],
    latency: Duration,
    callers: &[Arc<Caller>],
) -> anyhow::Result<Senders> {
    let connected = futures::future::try_join_all(
        targets
            .iter()
            .enumerate()
            .map(|(i, &addr)| connect(addr, i, latency)),
    )
    .await?;
    let n = callers.len();
    let start = Instant::now() + Duration::from_millis(100);
    let window_start = start + STAGGER + Duration::from_secs(bench.args.warmup_s);
    let tasks = connected
        .into_iter()
        .zip(callers)
        .enumerate()
        .map(|(i, (socket, caller))| {
            tokio::spawn(send(
                socket,
                bench.messages.clone(),
                caller_start(start, i, n),
                window_start,
                caller.clone(),
            ))
        })
        .collect();
    Ok(Senders {
        window_start,
        tasks,
        stop: Arc::new(AtomicBool::new(false)),
    })
}

/// How often the raw sender reads what the receivers sent back (ACKs,
/// NAKs); a NAK is answered at most this late.
const RAW_POLL: Duration = Duration::from_millis(5);

/// Every caller on one blocking thread ([`RawCaller`]).
async fn start_raw(
    bench: &Bench,
    targets: &[SocketAddr],
    latency: Duration,
    callers: &[Arc<Caller>],
) -> anyhow::Result<Senders> {
    let targets = targets.to_vec();
    let sockets = tokio::task::spawn_blocking(move || {
        targets
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let streamid = format!("publish:live/load{i}");
                RawCaller::connect(addr, &streamid, latency, Duration::from_secs(20))
                    .with_context(|| format!("calling {addr} as {streamid}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("raw callers' handshake thread")??;
    let n = callers.len();
    let start = Instant::now() + Duration::from_millis(100);
    let window_start = start + STAGGER + Duration::from_secs(bench.args.warmup_s);
    let stop = Arc::new(AtomicBool::new(false));
    let drive = RawDrive {
        starts: (0..n).map(|i| caller_start(start, i, n)).collect(),
        messages: bench.messages.clone(),
        window_start,
        reports: callers.to_vec(),
        stop: stop.clone(),
    };
    std::thread::Builder::new()
        .name("raw-callers".into())
        .spawn(move || drive.run(sockets))
        .context("starting the raw callers' thread")?;
    Ok(Senders {
        window_start,
        tasks: Vec::new(),
        stop,
    })
}

/// The raw callers' send loop.
struct RawDrive {
    /// Caller i sends message k at `starts[i]` + its due time.
    starts: Vec<Instant>,
    messages: Arc<[(Duration, Bytes)]>,
    window_start: Instant,
    reports: Vec<Arc<Caller>>,
    stop: Arc<AtomicBool>,
}

impl RawDrive {
    fn run(self, mut sockets: Vec<RawCaller>) {
        let n = sockets.len();
        let mut next = vec![0usize; n];
        let mut live = vec![true; n];
        for report in &self.reports {
            report.sending.store(true, Ordering::Relaxed);
        }
        let fail = |i: usize, live: &mut [bool], why: String| {
            live[i] = false;
            self.reports[i].sending.store(false, Ordering::Relaxed);
            *lock(&self.reports[i].error) = Some(why);
        };
        let mut next_poll = Instant::now();
        while !self.stop.load(Ordering::Relaxed) && live.iter().any(|&l| l) {
            let now = Instant::now();
            let mut wake = now + RAW_POLL;
            for i in 0..n {
                if !live[i] {
                    continue;
                }
                let mut first = true;
                while let Some((at, message)) = self.messages.get(next[i]) {
                    let due = self.starts[i] + *at;
                    if due > now {
                        wake = wake.min(due);
                        break;
                    }
                    if first && due >= self.window_start {
                        let late = now.duration_since(due).as_micros() as u64;
                        self.reports[i]
                            .max_late_us
                            .fetch_max(late, Ordering::Relaxed);
                    }
                    first = false;
                    if let Err(e) = sockets[i].send(message.clone(), now) {
                        fail(i, &mut live, e.to_string());
                        break;
                    }
                    self.reports[i]
                        .sent_bytes
                        .fetch_add(message.len() as u64, Ordering::Relaxed);
                    next[i] += 1;
                }
                if live[i] && next[i] == self.messages.len() {
                    fail(i, &mut live, "ran out of media".to_owned());
                }
            }
            if now >= next_poll {
                next_poll = now + RAW_POLL;
                for i in 0..n {
                    if !live[i] {
                        continue;
                    }
                    if let Err(e) = sockets[i].poll_control(now) {
                        fail(i, &mut live, e.to_string());
                    }
                    let counts = sockets[i].counts();
                    let report = &self.reports[i];
                    report
                        .tx_retransmitted
                        .store(counts.retransmitted, Ordering::Relaxed);
                    report.tx_lost.store(counts.lost, Ordering::Relaxed);
                }
            }
            wake = wake.min(next_poll);
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }
}

/// Call `addr` as publisher `load{i}`, retrying while the listener starts.
async fn connect(addr: SocketAddr, i: usize, latency: Duration) -> anyhow::Result<SrtSocket> {
    let streamid = format!("publish:live/load{i}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match SrtSocket::builder()
            .latency(latency)
            .set(|options| options.sender.buffer_size = SEND_BUFFER)
            .call(addr, Some(&streamid))
            .await
        {
            Ok(socket) => return Ok(socket),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("calling {addr} as {streamid}"));
            }
        }
    }
}

/// What one caller reports while it sends.
#[derive(Debug, Default)]
struct Caller {
    sent_bytes: AtomicU64,
    /// Worst lateness of a send in the window, microseconds.
    max_late_us: AtomicU64,
    /// Still sending (not failed, not run dry).
    sending: AtomicBool,
    /// Data packets sent again for the receiver.
    tx_retransmitted: AtomicU64,
    /// Data packets the sender dropped before they left (srt-tokio's
    /// too-late drop and send buffer overflow; the raw sender drops none).
    tx_dropped: AtomicU64,
    /// Data packets the receiver asked for that the sender no longer had.
    tx_lost: AtomicU64,
    error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Send every message at `start` + its due time; keep the latest sender
/// statistics.
async fn send(
    mut socket: SrtSocket,
    messages: Arc<[(Duration, Bytes)]>,
    start: Instant,
    window_start: Instant,
    caller: Arc<Caller>,
) {
    caller.sending.store(true, Ordering::Relaxed);
    let mut statistics = socket.statistics().clone();
    let mut next = 0;
    let result: std::io::Result<()> = async {
        while let Some(&(at, _)) = messages.get(next) {
            let due = start + at;
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                Some(stats) = statistics.next() => {
                    caller.tx_retransmitted.store(stats.tx_retransmit_data, Ordering::Relaxed);
                    caller.tx_dropped.store(stats.tx_dropped_data, Ordering::Relaxed);
                    caller.tx_lost.store(stats.tx_loss_data, Ordering::Relaxed);
                    continue;
                }
            }
            let now = Instant::now();
            if due >= window_start {
                let late = now.duration_since(due).as_micros() as u64;
                caller.max_late_us.fetch_max(late, Ordering::Relaxed);
            }
            // Everything due by now goes out in one batch.
            while let Some((at, message)) = messages.get(next) {
                if start + *at > now {
                    break;
                }
                socket.feed((now, message.clone())).await?;
                caller
                    .sent_bytes
                    .fetch_add(message.len() as u64, Ordering::Relaxed);
                next += 1;
            }
            socket.flush().await?;
        }
        Ok(())
    }
    .await;
    caller.sending.store(false, Ordering::Relaxed);
    match result {
        Ok(()) => *lock(&caller.error) = Some("ran out of media".to_owned()),
        Err(e) => *lock(&caller.error) = Some(e.to_string()),
    }
}

/// Counters at one moment.
struct Sample {
    at: Instant,
    target_ticks: u64,
    self_ticks: u64,
    core: CoreTimes,
    sent: u64,
    received: Received,
}

async fn sample(
    bench: &Bench,
    running: &Running,
    callers: &[Arc<Caller>],
) -> anyhow::Result<Sample> {
    let at = Instant::now();
    let mut target_ticks = 0;
    for child in &running.children {
        let pid = child.id().context("a target process has exited")?;
        target_ticks += process_ticks(&format!("/proc/{pid}/stat"))?;
    }
    let self_ticks = process_ticks("/proc/self/stat")?;
    let core = core_times(bench.args.target_cpu)?;
    let sent = callers
        .iter()
        .map(|c| c.sent_bytes.load(Ordering::Relaxed))
        .sum();
    let received = match &running.receiver {
        Receiver::Ferrocast { http } => ferrocast_received(*http).await?,
        Receiver::StatsFiles(paths) => stats_files_received(paths)?,
    };
    Ok(Sample {
        at,
        target_ticks,
        self_ticks,
        core,
        sent,
        received,
    })
}

/// Receiver-side totals, summed over publishers.
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    /// Publishers the receiver reports.
    publishers: usize,
    bytes: u64,
    /// Detected missing (then retransmitted or dropped).
    lost: u64,
    retransmitted: u64,
    /// Given up on: too late to play.
    dropped: u64,
    demux_warnings: u64,
}

/// Sender-side totals over all callers, since they connected.
#[derive(Debug, Clone, Copy, Default)]
struct TxTotals {
    lost: u64,
    retransmitted: u64,
    dropped: u64,
    max_late_us: u64,
}

async fn ferrocast_received(http: SocketAddr) -> anyhow::Result<Received> {
    let status = http_get_json(http, "/status").await?;
    let streams = status["streams"]
        .as_array()
        .context("/status has no streams array")?;
    let mut received = Received::default();
    for stream in streams {
        let publisher = &stream["publisher"];
        if publisher.is_null() {
            continue;
        }
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        received.publishers += 1;
        received.bytes += n(&publisher["bytes"]);
        received.demux_warnings += n(&publisher["demux_warnings"]);
        received.lost += n(&publisher["srt"]["lost_packets"]);
        received.retransmitted += n(&publisher["srt"]["retransmitted_packets"]);
        received.dropped += n(&publisher["srt"]["dropped_packets"]);
    }
    Ok(received)
}

/// The last report in each srt-live-transmit statistics file (`-f`, so
/// cumulative counters).
fn stats_files_received(paths: &[PathBuf]) -> anyhow::Result<Received> {
    let mut received = Received::default();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // The last complete line; the one being written may be partial.
        let Some(report) = text
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line.trim_end_matches(',')).ok())
        else {
            continue;
        };
        let recv = &report["recv"];
        let n = |key: &str| recv[key].as_u64().unwrap_or(0);
        received.publishers += 1;
        received.bytes += n("bytes");
        received.lost += n("packetsLost");
        received.retransmitted += n("packetsRetransmitted");
        received.dropped += n("packetsDropped");
    }
    Ok(received)
}

/// GET over HTTP/1.0 (the response ends with the connection), 200 only.
async fn http_get_json(addr: SocketAddr, path: &str) -> anyhow::Result<Value> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("GET http://{addr}{path} timed out"))?
        .with_context(|| format!("GET http://{addr}{path}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("GET {path}: no end of headers"))?;
    let status_line = String::from_utf8_lossy(&response[..split]);
    let code = status_line.split_whitespace().nth(1);
    ensure!(
        code == Some("200"),
        "GET {path}: {}",
        status_line.lines().next().unwrap_or_default()
    );
    serde_json::from_slice(&response[split + 4..]).with_context(|| format!("GET {path}: bad JSON"))
}

/// utime + stime of a process (all its threads), in clock ticks.
fn process_ticks(stat_path: &str) -> anyhow::Result<u64> {
    let stat =
        std::fs::read_to_string(stat_path).with_context(|| format!("reading {stat_path}"))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces; utime and stime are fields 14 and 15 of proc(5).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{stat_path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        // `rest` starts at field 3 (state).
        fields
            .get(i - 3)
            .with_context(|| format!("{stat_path}: field {i} missing"))?
            .parse()
            .with_context(|| format!("{stat_path}: field {i} not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// One core's busy and total time from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct CoreTimes {
    busy: u64,
    total: u64,
}

fn core_times(cpu: usize) -> anyhow::Result<CoreTimes> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("/proc/stat has no {name}"))?;
    // user nice system idle iowait irq softirq steal (guest time is already
    // counted in user).
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("/proc/stat: bad {name} line"))?;
    ensure!(values.len() == 8, "/proc/stat: short {name} line");
    let total: u64 = values.iter().sum();
    Ok(CoreTimes {
        busy: total - values[3] - values[4],
        total,
    })
}

fn clk_tck() -> anyhow::Result<u64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    ensure!(out.status.success(), "getconf CLK_TCK failed");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK: not a number")
}

/// Write `seconds` of 1280x720 25 fps video at about 5 Mbit/s plus AAC.
///
/// testsrc2 alone compresses to far below 5 Mbit/s; temporal noise gives
/// x264 real detail to spend the bits on, and `nal-hrd=cbr` pads any
/// shortfall with filler so every publisher sends a steady rate.
fn generate(path: &Path, seconds: u64) -> anyhow::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=25,noise=alls=12:allf=t",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "50"])
        .args(["-b:v", "4800k", "-minrate", "4800k", "-maxrate", "5M"])
        .args(["-bufsize", "1M", "-x264-params", "nal-hrd=cbr"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"])
        .args(["-t", &seconds.to_string(), "-f", "mpegts"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("running ffmpeg (is it installed?)")?;
    ensure!(status.success(), "ffmpeg failed: {status}");
    Ok(())
}

/// One target at one publisher count.
#[derive(Debug)]
struct Step {
    target: Target,
    streams: usize,
    window_s: f64,
    elapsed_s: f64,
    target_cpu_s: f64,
    /// Target CPU seconds per wall second.
    target_share: f64,
    /// The target core's busy share, whoever used it.
    core_busy: f64,
    /// This process's CPU seconds per wall second.
    generator_share: f64,
    sent_mbps: f64,
    received_mbps: f64,
    received: Received,
    tx: TxTotals,
    failed: Vec<String>,
    all_sending: bool,
}

impl Step {
    /// CPU milliseconds per Mbit received (equal to the CPU share per
    /// Mbit/s, in thousandths of a core).
    fn cpu_ms_per_mbit(&self) -> Option<f64> {
        let mbit = self.received_mbps * self.elapsed_s;
        (mbit > 0.0).then(|| self.target_cpu_s * 1000.0 / mbit)
    }

    fn delivered(&self) -> f64 {
        if self.sent_mbps > 0.0 {
            self.received_mbps / self.sent_mbps
        } else {
            0.0
        }
    }

    fn lossless(&self) -> bool {
        self.failed.is_empty()
            && self.all_sending
            && self.received.publishers == self.streams
            && self.received.dropped == 0
            && self.received.demux_warnings == 0
            && self.tx.dropped == 0
            && self.delivered() >= MIN_DELIVERED
    }

    fn saturated(&self) -> bool {
        self.core_busy > SATURATED || self.target_share > SATURATED
    }

    fn generator_limited(&self) -> bool {
        self.generator_share > SATURATED
            || Duration::from_micros(self.tx.max_late_us) > GENERATOR_LATE
    }

    fn verdict(&self) -> String {
        let mut words = vec![if self.lossless() { "ok" } else { "LOSS" }];
        if self.saturated() {
            words.push("saturated");
        }
        if self.generator_limited() {
            words.push("generator-limited");
        }
        words.join(",")
    }

    fn summary_line(&self) -> String {
        let mut line = format!(
            "  {:<17} N={:<4} cpu {:>5.1}% core {:>5.1}% gen {:>5.1}%  rx {:>7.1} Mbit/s  {} ms/Mbit  {}",
            self.target.name(),
            self.streams,
            self.target_share * 100.0,
            self.core_busy * 100.0,
            self.generator_share * 100.0,
            self.received_mbps,
            self.cpu_ms_per_mbit()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
            self.verdict()
        );
        if let Some(first) = self.failed.first() {
            line.push_str(&format!(
                " ({} caller(s) failed, first {first})",
                self.failed.len()
            ));
        }
        line
    }

    fn to_json(&self) -> Value {
        json!({
            "target": self.target.name(),
            "streams": self.streams,
            "window_s": self.window_s,
            "elapsed_s": round(self.elapsed_s, 3),
            "target_cpu_s": round(self.target_cpu_s, 3),
            "target_cpu_share": round(self.target_share, 4),
            "core_busy": round(self.core_busy, 4),
            "generator_cpu_share": round(self.generator_share, 4),
            "sent_mbps": round(self.sent_mbps, 2),
            "received_mbps": round(self.received_mbps, 2),
            "cpu_ms_per_mbit": self.cpu_ms_per_mbit().map(|v| round(v, 4)),
            "rx": {
                "publishers": self.received.publishers,
                "lost_packets": self.received.lost,
                "retransmitted_packets": self.received.retransmitted,
                "dropped_packets": self.received.dropped,
                "demux_warnings": self.received.demux_warnings,
            },
            "tx": {
                "lost_packets": self.tx.lost,
                "retransmitted_packets": self.tx.retransmitted,
                "dropped_packets": self.tx.dropped,
                "max_late_ms": round(self.tx.max_late_us as f64 / 1000.0, 1),
            },
            "failed_callers": self.failed.len(),
            "lossless": self.lossless(),
            "saturated": self.saturated(),
            "generator_limited": self.generator_limited(),
        })
    }
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// The largest lossless step of `target`, and whether the steps stopped
/// before the target did (then it is a lower bound).
fn capacity(steps: &[Step], target: Target) -> (Option<usize>, bool) {
    let mine: Vec<&Step> = steps.iter().filter(|s| s.target == target).collect();
    let best = mine
        .iter()
        .filter(|s| s.lossless())
        .map(|s| s.streams)
        .max();
    // A lower bound unless some step lost, or saturated the core.
    let bounded = mine.iter().any(|s| !s.lossless() || s.saturated());
    (best, !bounded)
}

fn capacity_json(steps: &[Step], target: Target) -> Value {
    let (best, lower_bound) = capacity(steps, target);
    json!({ "streams": best, "lower_bound": lower_bound })
}

fn capacity_text(steps: &[Step], target: Target) -> String {
    let (best, lower_bound) = capacity(steps, target);
    match (best, lower_bound) {
        (None, _) => "no step without loss".to_owned(),
        (Some(n), true) => format!(
            "at least {n} concurrent publishers without loss (the steps ended before the core saturated or lost)"
        ),
        (Some(n), false) => format!("{n} concurrent publishers without loss"),
    }
}

fn print_table(steps: &[Step]) {
    println!(
        "{:<18} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>7}  verdict",
        "target",
        "N",
        "cpu%",
        "core%",
        "gen%",
        "tx Mb/s",
        "rx Mb/s",
        "ms/Mbit",
        "rx lost",
        "rx retx",
        "rx drop",
        "tx drop",
        "late ms"
    );
    for s in steps {
        println!(
            "{:<18} {:>5} {:>7.1} {:>7.1} {:>7.1} {:>9.1} {:>9.1} {:>9} {:>7} {:>8} {:>8} {:>8} {:>7.1}  {}",
            s.target.name(),
            s.streams,
            s.target_share * 100.0,
            s.core_busy * 100.0,
            s.generator_share * 100.0,
            s.sent_mbps,
            s.received_mbps,
            s.cpu_ms_per_mbit()
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}")),
            s.received.lost,
            s.received.retransmitted,
            s.received.dropped,
            s.tx.dropped,
            s.tx.max_late_us as f64 / 1000.0,
            s.verdict()
        );
    }
}
