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
//! ```text
//! cargo run --release -p ferrocast-benches --bin transcode_ladder -- --seconds 20
//! ```

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, TrackInfo, TrackKind};
use ferrocast_transcode::gpu::StreamEncoders;
use ferrocast_transcode::ladder::{BuiltinLadder, Ladder};
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
    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("source.ts");
    make_clip(&clip, &args)?;
    let (tracks, units) = demux(&clip)?;
    let video = tracks
        .iter()
        .find(|t| t.kind() == TrackKind::Video)
        .context("the clip has no video track")?;
    let plan = plan::plan(&ladder, video)?;
    let source_frames = units.iter().filter(|u| u.kind == TrackKind::Video).count() as u64;
    println!(
        "source: {} {}x{} @ {} fps, {} s, {source_frames} frames; ladder {:?}: {}",
        video.params.codec_string(),
        plan.source_size.0,
        plan.source_size.1,
        args.rate,
        args.seconds,
        ladder.name,
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

    let ours = run_ferrocast(&plan, &tracks, &units)?;
    let cli = run_ffmpeg(&clip, &plan, false)?;
    let cli_single = run_ffmpeg(&clip, &plan, true)?;
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
    Ok(())
}

fn make_clip(path: &Path, args: &Args) -> anyhow::Result<()> {
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
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g"])
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

fn run_ferrocast(plan: &Plan, tracks: &[TrackInfo], units: &[AccessUnit]) -> anyhow::Result<Run> {
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
    Ok(Run {
        wall,
        cpu,
        frames: decoded,
    })
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
