//! `ingest_to_part`: how long after a video frame reaches the packager's
//! input is the LL-HLS part that holds it servable?
//!
//! Everything runs in this process with the real components: an MPEG-TS
//! file (made by ffmpeg at run time, in a temp dir) is fed in 1316-byte
//! messages, paced in real time by its PCRs ([`ferrocast_benches::pcr`]),
//! through [`SessionPipeline`] (TS demuxer and track gate, as an SRT
//! session runs it) onto an [`InProcessBus`] publisher; the packager's
//! [`stream::run`] task is subscribed and feeds a [`LiveStream`].
//!
//! - **t_arrival**: when `SessionPipeline` hands a video access unit to the
//!   bus (the send closure is wrapped). Ingest's own delay before that (a
//!   TS frame is complete only when the next PES starts) is not included.
//! - **t_servable**: when a watcher woken by the stream's change signal
//!   ([`LiveStream::wait_for`], no polling) first sees the part complete in
//!   the media store and listed in the window. Frames are assigned to parts
//!   by counting the chunks that carry a video frame (one each; a part may
//!   end with a chunk of audio only) and the assignment is
//!   checked against the first `tfdt` of every part.
//!
//! Baseline, in the same run: a packager that can only close a part when
//! the next frame arrives. Its part is servable at the measured arrival of
//! the frame after the part's last one, plus the same close delay this run
//! measured for that part (last frame's arrival to servable).
//!
//! The last part is left out: end of stream closes it, not the cutting rule.
//!
//! `--compare-recording` feeds the same media again with the stream
//! recorded (recorder, spool on local disk, in-memory store) and reports
//! both runs: recording must not move the part close delay.
//!
//! ```text
//! cargo run --release -p ferrocast-benches --bin ingest_to_part -- --seconds 30
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use ferrocast_benches::pcr::{self, MESSAGE_LEN};
use ferrocast_benches::summary::Summary;
use ferrocast_benches::tfdt::{first_tfdt, first_track_id};
use ferrocast_bus::{BusMessage, InProcessBus};
use ferrocast_hls::{PartRef, RenditionName, ResourceStatus};
use ferrocast_ingest::interleave::InterleaveConfig;
use ferrocast_ingest::session::SessionPipeline;
use ferrocast_media::{StreamName, Time90k, TrackKind};
use ferrocast_packager::PackagerConfig;
use ferrocast_packager::alignment::Alignment;
use ferrocast_packager::assembler::{Assembler, TrackSet};
use ferrocast_packager::stream::{self, Check, LiveStream};

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Time from a frame arriving at ingest to its LL-HLS part being servable")]
struct Args {
    /// Seconds of test media to generate (1280x720, 30 fps, 1 s GOP, B-frames, AAC).
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Feed this MPEG-TS file instead of generating one.
    #[arg(long)]
    input: Option<PathBuf>,
    /// LL-HLS part target in milliseconds (default: the server's default).
    #[arg(long)]
    part_target_ms: Option<u64>,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
    /// Generate the media with one AAC frame per PES packet
    /// (`-pes_payload_size 0`), as a steady contribution encoder sends it,
    /// instead of ffmpeg's default of about 0.37 s of audio per PES.
    #[arg(long)]
    steady_audio: bool,
    /// Where the audio is packaged, as `hls.audio`: `muxed` (in the
    /// measured parts; the default here, as the recorded figures) or
    /// `separate` (the server's default: the parts measured are video
    /// only, and the audio rendition is packaged beside them from the same
    /// subscription).
    #[arg(long, default_value = "muxed", value_parser = ["muxed", "separate"])]
    audio: String,
    /// Feed the same media a second time with the stream recorded (the
    /// recorder spooling to a temp dir, uploading to an in-memory store)
    /// and report both runs' figures.
    #[arg(long)]
    compare_recording: bool,
}

/// A video access unit as the bus received it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: Instant,
    dts: Time90k,
    keyframe: bool,
}

/// A part as the watcher first saw it complete and listed.
#[derive(Debug, Clone, Copy)]
struct Servable {
    part: PartRef,
    frames: usize,
    first_tfdt: Option<u64>,
    at: Instant,
}

/// What the feeder thread reports.
struct Fed {
    arrivals: Vec<Arrival>,
    /// Worst lateness of a message against its schedule.
    max_late: Duration,
    messages: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let scratch = tempfile::tempdir().context("temp dir")?;
    let input = match &args.input {
        Some(path) => path.clone(),
        None => {
            let path = scratch.path().join("bench.ts");
            generate(&path, args.seconds, args.steady_audio)?;
            path
        }
    };
    let ts = std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
    let due =
        pcr::schedule(&ts, MESSAGE_LEN).with_context(|| format!("pacing {}", input.display()))?;

    let mut config = PackagerConfig::from(&ferrocast_config::Config::default());
    if let Some(ms) = args.part_target_ms {
        config.part_target = Time90k::from_millis(i64::try_from(ms).context("part target")?);
    }
    config.separate_audio = args.audio == "separate";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let feed_length = due.last().copied().unwrap_or_default();
    let (fed, parts) = runtime.block_on(run(ts.clone(), due.clone(), &config, None))?;
    let report = analyse(&fed, &parts)?;
    let recorded = match args.compare_recording {
        true => Some(runtime.block_on(run_recorded(ts, due, &config, scratch.path()))?),
        false => None,
    };

    let part_ms = config.part_target.as_millis();
    let json = serde_json::json!({
        "bench": "ingest_to_part",
        "unit": "us",
        "video_aus": report.aus,
        "parts": report.parts,
        "part_target_ms": part_ms,
        "frame_interval_us": report.frame_interval_us,
        "feed_s": feed_length.as_secs_f64(),
        "pacing": "pcr",
        "messages": fed.messages,
        "feeder_max_late_us": fed.max_late.as_micros() as u64,
        "ferrocast": report.ferrocast.to_json(),
        "baseline_next_frame": report.baseline.as_ref().map(Summary::to_json),
        "part_close_delay": report.close_delay.to_json(),
        "audio_pes": if args.steady_audio { "one frame" } else { "ffmpeg default" },
        "audio": args.audio,
        "part_interval": report.part_interval.to_json(),
        "part_interval_deviation": report.interval_deviation.to_json(),
        "part_intervals_within_one_frame": report.within_one_frame,
        "recording_on": recorded.as_ref().map(|(r, segments)| serde_json::json!({
            "ferrocast": r.ferrocast.to_json(),
            "part_close_delay": r.close_delay.to_json(),
            "segments_recorded": segments,
        })),
    });
    if !args.json {
        println!(
            "ingest_to_part: {} video AUs in {} parts over {:.1} s (part target {part_ms} ms, \
             frame interval {} us, {} messages of {MESSAGE_LEN} B paced by PCR; feeder at most {} us late)",
            report.aus,
            report.parts,
            feed_length.as_secs_f64(),
            report.frame_interval_us,
            fed.messages,
            fed.max_late.as_micros(),
        );
        println!(
            "{:<52} {:>9} {:>9} {:>9} {:>9}",
            "AU arrival -> part servable (us)", "median", "p90", "p99", "max"
        );
        let row = |name: &str, s: &Summary| {
            println!(
                "{name:<52} {:>9} {:>9} {:>9} {:>9}",
                s.median, s.p90, s.p99, s.max
            );
        };
        row(
            "ferrocast (part closes on its last frame)",
            &report.ferrocast,
        );
        if let Some(baseline) = &report.baseline {
            row(
                "baseline: part closes when the next frame arrives",
                baseline,
            );
        }
        row(
            "part close delay (last frame in -> servable)",
            &report.close_delay,
        );
        row(
            "interval between parts becoming servable",
            &report.part_interval,
        );
        row(
            "|interval - the part's media duration|",
            &report.interval_deviation,
        );
        println!(
            "part intervals within one frame interval of the part's duration: {} of {} \
             (audio: {}, {})",
            report.within_one_frame,
            report.interval_deviation.count,
            if args.steady_audio {
                "one AAC frame per PES"
            } else {
                "ffmpeg's default PES size"
            },
            if config.separate_audio {
                "a rendition of its own"
            } else {
                "muxed"
            }
        );
        if let Some((on, segments)) = &recorded {
            row("recording on: AU arrival -> part servable", &on.ferrocast);
            row("recording on: part close delay", &on.close_delay);
            println!("recording on: {segments} segments written to the spool");
        }
    }
    println!("{json}");
    Ok(())
}

/// Encode the test source as MPEG-TS with Debian's ffmpeg.
fn generate(path: &Path, seconds: u32, steady_audio: bool) -> anyhow::Result<()> {
    let pes: &[&str] = if steady_audio {
        &["-pes_payload_size", "0"]
    } else {
        &[]
    };
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "2",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args(pes)
        .args(["-t", &seconds.to_string(), "-f", "mpegts"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("running ffmpeg (is it installed?)")?;
    ensure!(status.success(), "ffmpeg failed: {status}");
    Ok(())
}

/// [`run`] with the stream recorded: a recorder spooling under `scratch`
/// and uploading to an in-memory store, as `ferrocast up` records to S3.
/// Returns the figures and how many segments were spooled.
async fn run_recorded(
    ts: Vec<u8>,
    due: Vec<Duration>,
    config: &PackagerConfig,
    scratch: &Path,
) -> anyhow::Result<(Report, u64)> {
    use ferrocast_recorder::{Layout, Recorder, RecorderConfig, StreamList};
    use ferrocast_storage::{MemoryStore, Spool, SpoolConfig};
    let spool = Spool::open(SpoolConfig {
        dir: scratch.join("spool"),
        max_bytes: 4 << 30,
    })
    .await
    .context("recording spool")?;
    let metrics = ferrocast_telemetry::Metrics::new();
    let (recorder, mut tasks) = Recorder::start(
        RecorderConfig::new(Layout::new("bench")),
        spool,
        Arc::new(MemoryStore::default()),
        Arc::new(StreamList::default()),
        metrics.recording.clone(),
    );
    let (fed, parts) = run(ts, due, config, Some(Arc::new(recorder))).await?;
    // The packager's recorder handle went with the stream: the writer
    // finishes what is queued.
    tasks.writer_finished().await;
    Ok((analyse(&fed, &parts)?, metrics.recording.segments.get()))
}

/// Feed `ts` on schedule and watch the packager (its stream recorded by
/// `recorder`, if any); returns what arrived and when each part became
/// servable.
async fn run(
    ts: Vec<u8>,
    due: Vec<Duration>,
    config: &PackagerConfig,
    recorder: Option<Arc<dyn ferrocast_packager::RecordingSink>>,
) -> anyhow::Result<(Fed, Vec<Servable>)> {
    const NAME: &str = "bench";
    let bus = InProcessBus::default();
    let publisher = bus.publish(NAME).context("publishing")?;
    let subscriber = bus.subscribe(NAME).context("subscribing")?;
    let align = Alignment::shared();
    let (video_tracks, audio) = match config.separate_audio {
        true => (
            TrackSet::WithoutAudio,
            Some(config.resumed_assembler(align.clone(), None, TrackSet::AudioBesideVideo)?),
        ),
        false => (TrackSet::Muxed, None),
    };
    let assembler = config
        .resumed_assembler(align, None, video_tracks)
        .context("packager config")?;
    let first_msn = assembler.window.config().first_msn;
    let name = StreamName::new(NAME).context("stream name")?;
    let metrics = Arc::new(ferrocast_telemetry::Metrics::new());
    let mut live = LiveStream::new(name.clone(), assembler, metrics.clone());
    let audio = audio.map(|a| {
        let group = Arc::new(tokio::sync::watch::Sender::new(0));
        Arc::new(LiveStream::rendition(
            name,
            RenditionName::audio(),
            a,
            metrics,
            group,
        ))
    });
    if let Some(recorder) = recorder {
        live = live.recorded_by(recorder);
    }
    let live = Arc::new(live);
    let packager = tokio::spawn(stream::run(
        live.clone(),
        audio,
        subscriber,
        Arc::new(bus.clone()),
        config.reconnect_grace,
    ));

    let timeout = due.last().copied().unwrap_or_default() + Duration::from_secs(30);
    let watched = live.clone();
    let watcher = tokio::spawn(async move {
        let mut parts = Vec::new();
        let mut cursor = PartRef {
            msn: first_msn,
            index: 0,
        };
        let mut missed = None;
        let deadline = tokio::time::Instant::now() + timeout;
        let result = watched
            .wait_for(deadline, |a| {
                let now = Instant::now();
                if let Err(part) = collect(a, &mut cursor, now, &mut parts) {
                    missed = Some(part);
                    return Check::Done(());
                }
                if a.ended() {
                    Check::Done(())
                } else {
                    Check::Wait
                }
            })
            .await;
        (parts, missed, result)
    });

    // The feeder is a plain thread, as an SRT receive loop would be, so its
    // pacing does not depend on the runtime's timer resolution.
    let separate_audio = config.separate_audio;
    let feeder = tokio::task::spawn_blocking(move || {
        let mut pipeline = SessionPipeline::new()
            .with_interleave(InterleaveConfig::for_audio_layout(separate_audio));
        let mut arrivals = Vec::new();
        let mut max_late = Duration::ZERO;
        let start = Instant::now();
        {
            let mut send = |message: BusMessage| {
                if let BusMessage::Unit(unit) = &message
                    && unit.kind == TrackKind::Video
                {
                    arrivals.push(Arrival {
                        at: Instant::now(),
                        dts: unit.dts,
                        keyframe: unit.keyframe,
                    });
                }
                publisher.send(message);
            };
            for (message, due) in ts.chunks(MESSAGE_LEN).zip(&due) {
                let at = start + *due;
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                } else {
                    max_late = max_late.max(now - at);
                }
                pipeline.push(message, Instant::now(), &mut send);
            }
            pipeline.finish(Instant::now(), &mut send);
        }
        publisher.end();
        Fed {
            arrivals,
            max_late,
            messages: due.len(),
        }
    });

    let fed = feeder.await.context("feeder thread")?;
    let (parts, missed, result) = watcher.await.context("watcher task")?;
    packager.await.context("packager task")?;
    if let Some(part) = missed {
        bail!("part {part} left the store before the watcher saw it complete");
    }
    if result.is_err() {
        bail!("timed out waiting for the stream to end");
    }
    Ok((fed, parts))
}

/// Record every part that is now complete and listed, from `cursor` on.
/// `Err(part)` if a part was evicted before it was seen.
fn collect(
    a: &Assembler,
    cursor: &mut PartRef,
    now: Instant,
    parts: &mut Vec<Servable>,
) -> Result<(), PartRef> {
    loop {
        let Some(segment) = a.store.segment(cursor.msn) else {
            // Not opened yet, unless a later segment already closed.
            return match a.window.last_msn() {
                Some(last) if last >= cursor.msn => Err(*cursor),
                _ => Ok(()),
            };
        };
        match segment.parts.get(cursor.index as usize) {
            Some(part)
                if part.complete && a.window.part_status(*cursor) == ResourceStatus::Available =>
            {
                // One chunk per video frame, plus perhaps one of the
                // audio that closes the part.
                let video = part.chunks.first().and_then(|c| first_track_id(c));
                parts.push(Servable {
                    part: *cursor,
                    frames: part
                        .chunks
                        .iter()
                        .filter(|c| video.is_some() && first_track_id(c) == video)
                        .count(),
                    first_tfdt: part.chunks.first().and_then(|c| first_tfdt(c)),
                    at: now,
                });
                cursor.index += 1;
            }
            None if segment.complete => {
                *cursor = PartRef {
                    msn: cursor.msn + 1,
                    index: 0,
                };
            }
            _ => return Ok(()),
        }
    }
}

/// The figures of one run.
struct Report {
    aus: usize,
    parts: usize,
    frame_interval_us: i64,
    ferrocast: Summary,
    baseline: Option<Summary>,
    close_delay: Summary,
    /// Wall time between consecutive parts becoming servable.
    part_interval: Summary,
    /// How far each of those intervals is from the part's media duration.
    interval_deviation: Summary,
    /// Intervals within one frame interval of the part's media duration.
    within_one_frame: usize,
}

/// Assign frames to parts and compute the latencies.
fn analyse(fed: &Fed, parts: &[Servable]) -> anyhow::Result<Report> {
    let arrivals = &fed.arrivals;
    // The packager starts at the first keyframe and drops what comes before.
    let first = arrivals
        .iter()
        .position(|a| a.keyframe)
        .context("no video keyframe arrived")?;
    let origin = arrivals[first].dts;
    let packaged = &arrivals[first..];
    let total: usize = parts.iter().map(|p| p.frames).sum();
    ensure!(
        total == packaged.len(),
        "{total} frames in parts but {} video AUs from the first keyframe on",
        packaged.len()
    );

    let micros = |later: Instant, earlier: Instant| {
        i64::try_from(later.saturating_duration_since(earlier).as_micros()).unwrap_or(i64::MAX)
    };
    let mut ferrocast = Vec::new();
    let mut baseline = Vec::new();
    let mut close_delay = Vec::new();
    let mut next = 0;
    // The last part is closed by the end of the stream: left out.
    let measured = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        let frames = &packaged[next..next + part.frames];
        let start = next;
        next += part.frames;
        let Some(head) = frames.first() else { continue };
        // The packager's own record of where this part starts must match
        // the frames counted into it.
        let expected = (head.dts - origin).ticks();
        if part.first_tfdt.and_then(|t| i64::try_from(t).ok()) != Some(expected) {
            bail!(
                "part {}: tfdt {:?} but the frames counted into it start at {expected}",
                part.part,
                part.first_tfdt
            );
        }
        if part.part.index == 0 && !head.keyframe {
            bail!("part {} starts a segment without a keyframe", part.part);
        }
        if i >= measured {
            continue;
        }
        let Some(last) = frames.last() else { continue };
        let delay = part.at.saturating_duration_since(last.at);
        close_delay.push(micros(part.at, last.at));
        ferrocast.extend(frames.iter().map(|f| micros(part.at, f.at)));
        if let Some(following) = packaged.get(start + part.frames) {
            let naive = following.at + delay;
            baseline.extend(frames.iter().map(|f| micros(naive, f.at)));
        }
    }
    let mut intervals: Vec<i64> = packaged
        .windows(2)
        .map(|w| (w[1].dts - w[0].dts).ticks() * 100 / 9)
        .collect();
    intervals.sort_unstable();
    let frame_us = intervals.get(intervals.len() / 2).copied().unwrap_or(0);
    // Cadence: a part should become servable one part duration (its frames
    // times the frame interval) after the one before it.
    let mut part_interval = Vec::new();
    let mut deviation = Vec::new();
    for pair in parts[..measured].windows(2) {
        let interval = micros(pair[1].at, pair[0].at);
        let media = i64::try_from(pair[1].frames).unwrap_or(0) * frame_us;
        part_interval.push(interval);
        deviation.push((interval - media).abs());
    }
    let within_one_frame = deviation.iter().filter(|&&d| d <= frame_us).count();
    Ok(Report {
        aus: ferrocast.len(),
        parts: measured,
        frame_interval_us: frame_us,
        ferrocast: Summary::of(&ferrocast).context("no part completed")?,
        baseline: Summary::of(&baseline),
        close_delay: Summary::of(&close_delay).context("no part completed")?,
        part_interval: Summary::of(&part_interval).context("fewer than two parts")?,
        interval_deviation: Summary::of(&deviation).context("fewer than two parts")?,
        within_one_frame,
    })
}
