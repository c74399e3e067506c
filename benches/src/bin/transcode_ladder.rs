//! `transcode_ladder`: frames per second and CPU seconds for one fixed clip
//! through an ABR ladder, Ferrocast's transcoder against the `ffmpeg` CLI
//! doing the same job, in the same run.
//!
//! The clip (H.264 High with B-frames + AAC in MPEG-TS, made by ffmpeg at
//! run time in a temp dir) is demuxed by our demuxer into memory first, so
//! neither side pays for I/O or demuxing in the measured part:
//!
//! - **ferrocast**: [`Transcoder`] with the ladder's plan on the CPU path
//!   (libx264): decode once, scale and encode every rung, IDRs forced on the
//!   shared cadence, AAC passed through.
//! - **ffmpeg CLI**: one decode, `split` + `scale` (bilinear, as ours), and
//!   libx264 per rung with the same preset, tune, profile, bitrate, maxrate,
//!   bufsize, GOP, `scenecut=0`, `forced-idr` and keyframes forced on the
//!   same cadence, audio copied, output discarded (`-f null`). Run twice:
//!   with ffmpeg's default threading, and with every decoder and encoder at
//!   one thread (our pipeline's threading), to separate CPU efficiency from
//!   parallelism.
//!
//! CPU seconds are user + system time of this process (ours) or of the
//! waited-for child (ffmpeg), from `/proc/self/stat`.
//!
//! **Paced (latency) run**: a second clip of the same content, without
//! B-frames by default (`--paced-bframes`), as a live low-latency encoder
//! sends, is fed to a fresh [`Transcoder`] at its real-time pace (each
//! unit when its DTS is due on the wall clock); between units the feeder
//! calls [`Transcoder::poll`], as the transcoder service does. For every
//! rung's encoded picture the added latency is the wall time from the
//! `push` of the source unit with that PTS to the moment the picture was
//! handed out by `push`/`poll`. Reported per rung and over all rungs
//! (median, p90, p99, max), next to the frame interval and the encoder's
//! lookahead (none with `zerolatency`): the issue's target is at most one
//! frame interval plus that lookahead.
//!
//! ```text
//! cargo run --release -p ferrocast-benches --bin transcode_ladder -- --seconds 20
//! # only one part: --mode throughput | --mode latency
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, TrackInfo, TrackKind};
use ferrocast_transcode::gpu::StreamEncoders;
use ferrocast_transcode::ladder::{BuiltinLadder, Ladder, X264Tune};
use ferrocast_transcode::plan::{Plan, PlannedRung};
use ferrocast_transcode::{Output, Transcoder, plan};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "ABR ladder throughput: Ferrocast's transcoder vs the ffmpeg CLI")]
struct Args {
    /// Seconds of source to generate.
    #[arg(long, default_value_t = 20)]
    seconds: u32,
    /// Source size, WxH.
    #[arg(long, default_value = "1280x720")]
    size: String,
    /// Source frame rate.
    #[arg(long, default_value_t = 30)]
    rate: u32,
    /// Built-in ladder: `default` or `small`.
    #[arg(long, default_value = "default")]
    ladder: String,
    /// What to run: `both`, `throughput` (unpaced, against the ffmpeg
    /// CLI) or `latency` (paced at real time).
    #[arg(long, default_value = "both")]
    mode: String,
    /// B-frames in the paced run's source (they add the decoder's reorder
    /// delay to the figure; live low-latency sources have none).
    #[arg(long, default_value_t = 0)]
    paced_bframes: u32,
}

/// One side's measurement.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
    frames: u64,
}

impl Run {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn cpu_ms_per_frame(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.frames.max(1) as f64
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ladder = match args.ladder.as_str() {
        "default" => Ladder::builtin(BuiltinLadder::Default),
        "small" => Ladder::builtin(BuiltinLadder::Small),
        other => bail!("unknown built-in ladder {other:?} (default, small)"),
    };
    let (throughput, latency) = match args.mode.as_str() {
        "both" => (true, true),
        "throughput" => (true, false),
        "latency" => (false, true),
        other => bail!("unknown mode {other:?} (both, throughput, latency)"),
    };
    let dir = tempfile::tempdir()?;
    if throughput {
        let clip = dir.path().join("source.ts");
        make_clip(&clip, &args, 2)?;
        let (tracks, units) = demux(&clip)?;
        let plan = plan_for(&ladder, &tracks)?;
        describe(&plan, &units, &args, 2);
        run_throughput(&clip, &plan, &tracks, &units)?;
    }
    if latency {
        let clip = dir.path().join("paced.ts");
        make_clip(&clip, &args, args.paced_bframes)?;
        let (tracks, units) = demux(&clip)?;
        let plan = plan_for(&ladder, &tracks)?;
        describe(&plan, &units, &args, args.paced_bframes);
        run_latency(&plan, &tracks, &units)?;
    }
    Ok(())
}

fn plan_for(ladder: &Ladder, tracks: &[TrackInfo]) -> anyhow::Result<Plan> {
    let video = tracks
        .iter()
        .find(|t| t.kind() == TrackKind::Video)
        .context("the clip has no video track")?;
    Ok(plan::plan(ladder, video)?)
}

fn describe(plan: &Plan, units: &[AccessUnit], args: &Args, bframes: u32) {
    let source_frames = units.iter().filter(|u| u.kind == TrackKind::Video).count();
    println!();
    println!(
        "source: {} {}x{} @ {} fps, {} B-frames, {} s, {source_frames} frames; ladder {:?}: {}",
        plan.source.params.codec_string(),
        plan.source_size.0,
        plan.source_size.1,
        args.rate,
        bframes,
        args.seconds,
        plan.ladder,
        plan.rungs
            .iter()
            .map(|r| format!(
                "{} {}x{} {} kb/s",
                r.name,
                r.width,
                r.height,
                r.bitrate / 1000
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn run_throughput(
    clip: &Path,
    plan: &Plan,
    tracks: &[TrackInfo],
    units: &[AccessUnit],
) -> anyhow::Result<()> {
    let source_frames = units.iter().filter(|u| u.kind == TrackKind::Video).count() as u64;
    let (ours, busy) = run_ferrocast(plan, tracks, units)?;
    let cli = run_ffmpeg(clip, plan, false)?;
    let cli_single = run_ffmpeg(clip, plan, true)?;
    ensure!(
        ours.frames == source_frames,
        "ferrocast decoded {} of {source_frames} frames",
        ours.frames
    );

    println!();
    println!("| pipeline | wall s | source fps | CPU s | CPU ms / source frame |");
    println!("|---|---:|---:|---:|---:|");
    for (name, run) in [
        ("ferrocast transcoder (libx264)", ours),
        ("ffmpeg CLI, default threads", cli),
        ("ffmpeg CLI, 1 thread per codec", cli_single),
    ] {
        println!(
            "| {name} | {:.2} | {:.1} | {:.2} | {:.2} |",
            run.wall.as_secs_f64(),
            run.fps(),
            run.cpu.as_secs_f64(),
            run.cpu_ms_per_frame()
        );
    }
    println!();
    println!(
        "rung workers busy (wall time scaling + encoding, share of the run): {}",
        busy.iter()
            .map(|(name, b)| format!(
                "{name} {:.0} %",
                100.0 * b.as_secs_f64() / ours.wall.as_secs_f64().max(1e-9)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The paced run: see the module docs.
fn run_latency(plan: &Plan, tracks: &[TrackInfo], units: &[AccessUnit]) -> anyhow::Result<()> {
    let mut transcoder = Transcoder::new(plan.clone(), StreamEncoders::cpu("benchmark"))?;
    transcoder.set_tracks(tracks)?;
    let mut out = Vec::new();
    let mut pushed: HashMap<i64, Instant> = HashMap::new();
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); plan.rungs.len()];
    let mut late_max = Duration::ZERO;
    let mut take = |out: &mut Vec<Output>, pushed: &HashMap<i64, Instant>| {
        let now = Instant::now();
        for output in out.drain(..) {
            if let Output::Video { rung, unit } = output
                && let (Some(at), Some(list)) = (pushed.get(&unit.pts.0), latencies.get_mut(rung))
            {
                list.push(now.saturating_duration_since(*at));
            }
        }
    };
    let dts0 = units.first().map(|u| u.dts).context("no units")?;
    let start = Instant::now() + Duration::from_millis(100);
    let mut due = start;
    for unit in units {
        // Units are in file order; ffmpeg writes audio PES up to ~0.4 s
        // after their DTS, so due times only go forwards.
        let offset = u64::try_from((unit.dts - dts0).0.max(0)).unwrap_or(0);
        due = due.max(start + Duration::from_micros(offset * 100 / 9));
        loop {
            let now = Instant::now();
            if now >= due {
                late_max = late_max.max(now - due);
                break;
            }
            if transcoder.pending() > 0 {
                transcoder.poll(&mut out, due - now)?;
                take(&mut out, &pushed);
            } else {
                std::thread::sleep(due - now);
            }
        }
        if unit.kind == TrackKind::Video {
            pushed.insert(unit.pts.0, Instant::now());
        }
        transcoder.push(unit, &mut out)?;
        take(&mut out, &pushed);
    }
    transcoder.finish(&mut out)?;
    take(&mut out, &pushed);

    let rung = &plan.rungs[0];
    let interval_ms = 1000.0 * f64::from(rung.frame_rate.1) / f64::from(rung.frame_rate.0.max(1));
    let lookahead = match rung.x264_tune {
        X264Tune::Zerolatency => "0 frames (zerolatency: no lookahead, no B-frames)".to_owned(),
        other => format!(
            "the {} preset's rc-lookahead (tune {})",
            rung.x264_preset.as_str(),
            other.as_str().unwrap_or("none")
        ),
    };
    println!();
    println!(
        "paced run: frame interval {interval_ms:.1} ms; encoder lookahead {lookahead}; feeder at most {:.1} ms late",
        late_max.as_secs_f64() * 1000.0
    );
    println!();
    println!("| rung | pictures | added latency median / p90 / p99 / max (ms) |");
    println!("|---|---:|---|");
    let mut all = Vec::new();
    for (rung, list) in plan.rungs.iter().zip(&mut latencies) {
        all.extend_from_slice(list);
        println!("| {} | {} | {} |", rung.name, list.len(), percentiles(list));
    }
    println!("| all rungs | {} | {} |", all.len(), percentiles(&mut all));
    all.sort_unstable();
    let target = Duration::from_secs_f64(interval_ms / 1000.0);
    let over = all.iter().filter(|l| **l > target).count();
    println!();
    println!(
        "pictures over one frame interval: {over} of {} ({:.2} %)",
        all.len(),
        100.0 * over as f64 / all.len().max(1) as f64
    );
    Ok(())
}

/// `median / p90 / p99 / max` in milliseconds (nearest rank).
fn percentiles(list: &mut [Duration]) -> String {
    if list.is_empty() {
        return "—".to_owned();
    }
    list.sort_unstable();
    let at = |p: f64| {
        let rank = ((p * list.len() as f64).ceil() as usize).clamp(1, list.len());
        list[rank - 1].as_secs_f64() * 1000.0
    };
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

fn make_clip(path: &Path, args: &Args, bframes: u32) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "testsrc2=size={}:rate={}:duration={}",
            args.size, args.rate, args.seconds
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={}",
            args.seconds
        ))
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf"])
        .arg(bframes.to_string())
        .arg("-g")
        .arg((2 * args.rate).to_string())
        .args([
            "-pix_fmt", "yuv420p", "-b:v", "6M", "-c:a", "aac", "-f", "mpegts",
        ])
        .arg(path)
        .status()
        .context("run ffmpeg (is it installed?)")?;
    ensure!(status.success(), "ffmpeg could not make the clip");
    Ok(())
}

fn demux(path: &Path) -> anyhow::Result<(Vec<TrackInfo>, Vec<AccessUnit>)> {
    let bytes = std::fs::read(path)?;
    let mut demuxer = Demuxer::default();
    let mut events = Vec::new();
    demuxer.push(&bytes, &mut events);
    demuxer.finish(&mut events);
    let mut tracks: Vec<TrackInfo> = Vec::new();
    let mut units = Vec::new();
    for event in events {
        match event {
            DemuxEvent::Track(t) if !tracks.iter().any(|k| k.id == t.id) => tracks.push(t),
            DemuxEvent::Unit(u) => units.push(u),
            _ => {}
        }
    }
    Ok((tracks, units))
}

/// The unpaced run; also each rung worker's busy time.
fn run_ferrocast(
    plan: &Plan,
    tracks: &[TrackInfo],
    units: &[AccessUnit],
) -> anyhow::Result<(Run, Vec<(String, Duration)>)> {
    let cpu0 = cpu_time(Who::Myself)?;
    let start = Instant::now();
    let mut transcoder = Transcoder::new(plan.clone(), StreamEncoders::cpu("benchmark"))?;
    transcoder.set_tracks(tracks)?;
    let mut out = Vec::new();
    let mut frames = vec![0u64; plan.rungs.len()];
    let mut count = |out: &mut Vec<Output>| {
        for output in out.drain(..) {
            if let Output::Video { rung, .. } = output
                && let Some(n) = frames.get_mut(rung)
            {
                *n += 1;
            }
        }
    };
    for unit in units {
        transcoder.push(unit, &mut out)?;
        count(&mut out);
    }
    transcoder.finish(&mut out)?;
    count(&mut out);
    let wall = start.elapsed();
    let cpu = cpu_time(Who::Myself)? - cpu0;
    // Every rung at the source rate encodes every source frame.
    let decoded = frames.iter().copied().max().unwrap_or(0);
    let busy = transcoder
        .stats()
        .rungs
        .into_iter()
        .map(|r| (r.name, r.busy))
        .collect();
    Ok((
        Run {
            wall,
            cpu,
            frames: decoded,
        },
        busy,
    ))
}

fn run_ffmpeg(clip: &Path, plan: &Plan, single_thread: bool) -> anyhow::Result<Run> {
    let n = plan.rungs.len();
    let mut filter = format!("[0:v]split={n}");
    for i in 0..n {
        filter.push_str(&format!("[s{i}]"));
    }
    for (i, rung) in plan.rungs.iter().enumerate() {
        filter.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bilinear[o{i}]",
            rung.width, rung.height
        ));
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-nostats"]);
    cmd.args(["-progress", "pipe:1"]);
    if single_thread {
        cmd.args(["-threads", "1", "-filter_threads", "1"]);
    }
    cmd.arg("-i").arg(clip).arg("-filter_complex").arg(&filter);
    let interval_s = plan.cadence.interval.0 as f64 / 90_000.0;
    for (i, rung) in plan.rungs.iter().enumerate() {
        cmd.args(["-map", &format!("[o{i}]")]);
        cmd.args(x264_args(rung, interval_s));
        if single_thread {
            cmd.args(["-threads", "1"]);
        }
        cmd.args(["-map", "0:a", "-c:a", "copy", "-f", "null", "-"]);
    }
    let cpu0 = cpu_time(Who::Children)?;
    let start = Instant::now();
    let output = cmd.output().context("run ffmpeg")?;
    let wall = start.elapsed();
    let cpu = cpu_time(Who::Children)? - cpu0;
    ensure!(
        output.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let frames = frames_from_progress(&String::from_utf8_lossy(&output.stdout));
    Ok(Run { wall, cpu, frames })
}

/// libx264 options mirroring `encoder_options` in the transcoder.
fn x264_args(rung: &PlannedRung, interval_s: f64) -> Vec<String> {
    let gop = (interval_s * f64::from(rung.frame_rate.0) / f64::from(rung.frame_rate.1.max(1)))
        .round() as u64;
    let bufsize = (rung.max_bitrate as f64 * interval_s) as u64;
    let mut args: Vec<String> = vec![
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        rung.x264_preset.as_str().into(),
    ];
    if let Some(tune) = rung.x264_tune.as_str() {
        args.extend(["-tune".into(), tune.into()]);
    }
    args.extend([
        "-profile:v".into(),
        rung.profile.as_str().into(),
        "-b:v".into(),
        rung.bitrate.to_string(),
        "-maxrate".into(),
        rung.max_bitrate.to_string(),
        "-bufsize".into(),
        bufsize.max(rung.max_bitrate / 2).to_string(),
        "-g".into(),
        gop.to_string(),
        "-forced-idr".into(),
        "1".into(),
        "-x264-params".into(),
        "scenecut=0:open-gop=0".into(),
        "-force_key_frames".into(),
        format!("expr:gte(t,n_forced*{interval_s})"),
    ]);
    args
}

/// Frames of the first output, from the last `frame=N` line of ffmpeg's
/// `-progress` report, or 0.
fn frames_from_progress(progress: &str) -> u64 {
    progress
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

enum Who {
    Myself,
    Children,
}

/// User + system CPU time from `/proc/self/stat` (fields 14–15 for this
/// process, 16–17 for waited-for children), in clock ticks of 10 ms.
fn cpu_time(who: Who) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("read /proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/self/stat")?;
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `rest` starts at field 3 (state, skipped): field k is fields[k - 4].
    let (a, b) = match who {
        Who::Myself => (14, 15),
        Who::Children => (16, 17),
    };
    let ticks = fields.get(a - 4).copied().unwrap_or(0) + fields.get(b - 4).copied().unwrap_or(0);
    Ok(Duration::from_millis(ticks * 10))
}
