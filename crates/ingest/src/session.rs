//! One publisher's session: SRT messages → TS demuxer → timeline guard →
//! track gate → decode-time interleaver → bus.

use std::time::{Duration, Instant};

use ferrocast_bus::{BusMessage, Publisher};
use ferrocast_media::ts::{DemuxEvent, DemuxWarning, Demuxer};
use ferrocast_media::{TrackId, TrackKind};
use futures::StreamExt;
use srt_tokio::SrtSocket;
use std::sync::Arc;
use tracing::{debug, info, warn};

use crate::gate::{Released, TrackGate};
use crate::gop_trace::GopTracer;
use crate::interleave::{InterleaveConfig, Interleaver};
use crate::log_limit::{LogDecision, LogLimiter};
use crate::status::{SrtSample, StatusRecorder};
use crate::timeline::{TimelineGuard, TimelineStats, Verdict};
use crate::unix_millis;

/// Per-session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Drop a publisher that sends no media for this long (SRT keepalives
    /// do not count).
    pub idle_timeout: Duration,
    /// How the tracks are merged before the bus.
    pub interleave: InterleaveConfig,
}

/// Turns demuxer events into bus messages; the sans-IO heart of a session.
///
/// Every unit's timestamps pass the [`TimelineGuard`] (jumps and clock
/// drift corrected or flagged as [`BusMessage::Discontinuity`]) on arrival,
/// wait in the [`TrackGate`] until the track set is known, and leave merged
/// across tracks by decode time ([`Interleaver`]).
#[derive(Debug, Default)]
pub struct SessionPipeline {
    demuxer: Demuxer,
    guard: TimelineGuard,
    gate: TrackGate,
    interleaver: Interleaver,
    events: Vec<DemuxEvent>,
    released: Vec<Released>,
    ready: Vec<ferrocast_media::AccessUnit>,
    /// Bytes received.
    pub bytes: u64,
    /// Access units passed on.
    pub units: u64,
    /// Bad-input warnings from the demuxer.
    pub warnings: u64,
    /// Video frames dropped after lost packets, up to the next keyframe.
    pub damaged: u64,
    /// PIDs that lost packets since their last unit: a video track's frames
    /// up to its next keyframe may refer to the lost one, and decode as
    /// garbage; they are dropped rather than passed on (as RTP ingest
    /// does). At most one entry per PID.
    lost: std::collections::BTreeSet<TrackId>,
    /// Keeps a publisher's bad input from flooding the log.
    log_limit: LogLimiter,
    /// The GOP spans whose contexts the units carry.
    gops: GopTracer,
}

impl SessionPipeline {
    /// A pipeline for a new publisher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges the tracks with `config`'s bounds (the default: video waits
    /// for the audio of its decode time).
    pub fn with_interleave(mut self, config: InterleaveConfig) -> Self {
        self.interleaver = Interleaver::new(config);
        self
    }

    /// Opens its GOP spans under `session` (the publisher's span).
    pub fn traced_under(mut self, session: tracing::Span) -> Self {
        self.gops = GopTracer::new(session);
        self
    }

    /// Feed bytes received at `now`; `send` gets every bus message in order.
    pub fn push(&mut self, bytes: &[u8], now: Instant, send: &mut impl FnMut(BusMessage)) {
        self.bytes += bytes.len() as u64;
        self.demuxer.push(bytes, &mut self.events);
        self.drain(now, send);
    }

    /// End of input (at `now`): everything held goes out.
    pub fn finish(&mut self, now: Instant, send: &mut impl FnMut(BusMessage)) {
        self.demuxer.finish(&mut self.events);
        self.drain(now, send);
        self.gate.finish(&mut self.released);
        self.forward(now, send);
        self.interleaver.flush(&mut self.ready);
        self.send_ready(send);
        self.gops.end();
    }

    /// Timestamp corrections made so far.
    pub fn timeline(&self) -> TimelineStats {
        self.guard.stats()
    }

    /// The measured drift of the source clock against the wall clock, in
    /// milliseconds (positive: media time runs slow), once known.
    pub fn clock_drift_ms(&self) -> Option<i64> {
        self.guard.wall_drift().map(|d| d.as_millis())
    }

    fn drain(&mut self, now: Instant, send: &mut impl FnMut(BusMessage)) {
        let mut events = std::mem::take(&mut self.events);
        for event in events.drain(..) {
            match event {
                DemuxEvent::Track(info) => {
                    let id = info.id;
                    let codec = info.params.codec_string();
                    if self.gate.on_track(info, &mut self.released) {
                        info!(track = id.0, %codec, "track");
                    } else {
                        debug!(track = id.0, %codec, "extra track ignored");
                    }
                }
                DemuxEvent::Unit(mut unit) => {
                    if self.lost.contains(&unit.track) {
                        if unit.kind == TrackKind::Video && !unit.keyframe {
                            self.damaged += 1;
                            continue;
                        }
                        self.lost.remove(&unit.track);
                    }
                    let verdict = self.guard.on_unit(&mut unit, now);
                    if verdict == Verdict::Drop {
                        continue;
                    }
                    if verdict == Verdict::Discontinuity && self.gate.tracks().is_some() {
                        // Whatever came before the break leaves before it.
                        self.forward(now, send);
                        self.interleaver.flush(&mut self.ready);
                        self.send_ready(send);
                        send(BusMessage::Discontinuity);
                    }
                    self.gate.on_unit(unit, &mut self.released);
                }
                DemuxEvent::Unsupported {
                    pid,
                    stream_type,
                    codec,
                } if self.may_log(now) => warn!(
                    pid,
                    stream_type, codec, "elementary stream with an unsupported codec ignored"
                ),
                DemuxEvent::Warning(w) => {
                    if let DemuxWarning::Continuity { pid, .. } = w {
                        self.lost.insert(TrackId(pid));
                    }
                    self.warnings += 1;
                    if self.may_log(now) {
                        warn!(warning = %w, "bad MPEG-TS input skipped");
                    }
                }
                _ => {}
            }
        }
        self.events = events;
        self.forward(now, send);
    }

    /// Whether a per-publisher warning may be logged at `now`; says first
    /// how many were suppressed since the last one.
    fn may_log(&mut self, now: Instant) -> bool {
        match self.log_limit.check(now) {
            LogDecision::Log { suppressed } => {
                if suppressed > 0 {
                    warn!(
                        suppressed,
                        "similar warnings of this publisher were not logged"
                    );
                }
                true
            }
            LogDecision::Suppress => false,
        }
    }

    /// Warnings not logged since the last one that was (reported once, at
    /// the end of the session).
    pub fn take_suppressed_warnings(&mut self) -> u64 {
        self.log_limit.take_suppressed()
    }

    fn forward(&mut self, now: Instant, send: &mut impl FnMut(BusMessage)) {
        let mut released_now = std::mem::take(&mut self.released);
        for released in released_now.drain(..) {
            match released {
                Released::Tracks(tracks) => {
                    self.interleaver
                        .set_tracks(tracks.iter().map(|t| t.id), &mut self.ready);
                    self.send_ready(send);
                    send(BusMessage::Tracks(tracks));
                }
                Released::Unit(unit) => self.interleaver.push(unit, now, &mut self.ready),
            }
        }
        self.released = released_now;
        self.send_ready(send);
    }

    fn send_ready(&mut self, send: &mut impl FnMut(BusMessage)) {
        let now = unix_millis();
        for mut unit in self.ready.drain(..) {
            self.units += 1;
            unit.captured_unix_ms.get_or_insert(now);
            self.gops.stamp(&mut unit);
            send(BusMessage::Unit(Arc::new(unit)));
        }
    }
}

/// Receive from `socket` until the publisher leaves or goes quiet.
///
/// `stop` ends the session early (another publisher takes the stream over).
pub async fn run(
    mut socket: SrtSocket,
    publisher: Publisher,
    config: &SessionConfig,
    stop: &tokio::sync::Notify,
    status: &StatusRecorder,
) {
    let mut pipeline = SessionPipeline::new()
        .with_interleave(config.interleave)
        .traced_under(tracing::Span::current());
    let mut send = |message| publisher.send(message);
    let mut statistics = socket.statistics().clone();
    // srt-tokio leaves `elapsed_time` at zero; time the samples ourselves.
    let started = std::time::Instant::now();
    // Idle is counted from the last media, not from the last wake-up: the
    // statistics arm below fires every second, and SRT keepalives reset the
    // protocol's own peer-idle timer, so a caller that sends only keepalives
    // was never dropped.
    let mut idle_deadline = tokio::time::Instant::now() + config.idle_timeout;
    loop {
        let next = tokio::select! {
            next = socket.next() => Ok(next),
            () = tokio::time::sleep_until(idle_deadline) => Err(()),
            Some(stats) = statistics.next() => {
                status.record_media(pipeline.bytes, pipeline.units, pipeline.warnings);
                status.record_timeline(pipeline.timeline(), pipeline.clock_drift_ms());
                status.record_srt(SrtSample {
                    elapsed: started.elapsed(),
                    rx_bytes: pipeline.bytes,
                    rtt: stats.rx_average_rtt.max(stats.tx_average_rtt),
                    lost: stats.rx_loss_data,
                    retransmitted: stats.rx_retransmit_data,
                    dropped: stats.rx_dropped_data,
                });
                continue;
            }
            () = stop.notified() => {
                info!("publisher stopped (taken over, or disconnected by an operator)");
                break;
            }
        };
        match next {
            Ok(Some(Ok((_, bytes)))) => {
                idle_deadline = tokio::time::Instant::now() + config.idle_timeout;
                pipeline.push(&bytes, Instant::now(), &mut send);
            }
            Ok(Some(Err(e))) => {
                warn!(error = %e, "SRT receive failed");
                break;
            }
            Ok(None) => break,
            Err(_) => {
                warn!(
                    timeout_ms = config.idle_timeout.as_millis() as u64,
                    "publisher idle: dropped"
                );
                break;
            }
        }
    }
    pipeline.finish(Instant::now(), &mut send);
    let suppressed = pipeline.take_suppressed_warnings();
    if suppressed > 0 {
        warn!(
            suppressed,
            total = pipeline.warnings,
            "similar warnings of this publisher were not logged"
        );
    }
    status.record_media(pipeline.bytes, pipeline.units, pipeline.warnings);
    status.record_timeline(pipeline.timeline(), pipeline.clock_drift_ms());
    if pipeline.units == 0 {
        warn!(
            bytes = pipeline.bytes,
            "publisher left without sending any playable media"
        );
    }
    // Free the stream name before saying so: a publisher reconnecting on
    // seeing this line is not refused as a duplicate.
    drop(publisher);
    info!(
        bytes = pipeline.bytes,
        units = pipeline.units,
        damaged = pipeline.damaged,
        "publisher left"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use ferrocast_media::{Time90k, TrackKind};

    /// `seconds` of 25 fps H.264 + 48 kHz AAC in MPEG-TS from Debian's
    /// ffmpeg, its timestamps starting at `offset_s`.
    fn clip(seconds: u32, offset_s: u32) -> Vec<u8> {
        let output = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size=160x120:rate=25:duration={seconds}"))
            .args(["-f", "lavfi", "-i"])
            .arg(format!(
                "sine=frequency=440:sample_rate=48000:duration={seconds}"
            ))
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-bf",
                "2",
            ])
            .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-output_ts_offset"])
            .arg(offset_s.to_string())
            .args(["-f", "mpegts", "-"])
            .output()
            .expect("ffmpeg runs (scripts/test.sh installs it)");
        assert!(output.status.success(), "ffmpeg failed");
        output.stdout
    }

    /// Feed `ts` in SRT-sized messages spread evenly over `span` of wall
    /// time; returns every bus message.
    fn feed(ts: &[u8], span: Duration) -> Vec<BusMessage> {
        feed_with(ts, span, &mut None)
    }

    fn feed_with(ts: &[u8], span: Duration, stats: &mut Option<TimelineStats>) -> Vec<BusMessage> {
        let start = Instant::now();
        let chunks = ts.len().div_ceil(1316).max(1);
        let mut pipeline = SessionPipeline::new();
        let mut out = Vec::new();
        let mut send = |m| out.push(m);
        for (i, chunk) in ts.chunks(1316).enumerate() {
            let now = start + span.mul_f64(i as f64 / chunks as f64);
            pipeline.push(chunk, now, &mut send);
        }
        pipeline.finish(start + span, &mut send);
        *stats = Some(pipeline.timeline());
        out
    }

    fn units(messages: &[BusMessage]) -> Vec<&AccessUnit> {
        messages
            .iter()
            .filter_map(|m| match m {
                BusMessage::Unit(u) => Some(u.as_ref()),
                _ => None,
            })
            .collect()
    }

    use ferrocast_media::AccessUnit;

    /// A writer for a test subscriber: everything logged, in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_publisher_sending_garbage_cannot_flood_the_log() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let mut pipeline = SessionPipeline::new();
        tracing::subscriber::with_default(subscriber, || {
            // Pairs of TS packets (the demuxer locks on two syncs in a
            // row) with 50 bytes of junk between pairs: a resync warning
            // for every pair.
            let start = Instant::now();
            let mut garbage = Vec::new();
            for _ in 0..3000u32 {
                let mut packet = [0xffu8; 188];
                packet[0] = 0x47;
                packet[1] = 0x1f;
                packet[3] = 0x10;
                garbage.extend_from_slice(&packet);
                garbage.extend_from_slice(&packet);
                garbage.extend_from_slice(&[0u8; 50]);
            }
            for (i, chunk) in garbage.chunks(1316).enumerate() {
                let now = start + Duration::from_millis(i as u64);
                pipeline.push(chunk, now, &mut |_| {});
            }
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let logged = log.matches("bad MPEG-TS input skipped").count();
        assert!(pipeline.warnings > 1000, "{}", pipeline.warnings);
        assert!(
            logged <= crate::log_limit::DEFAULT_PER_WINDOW as usize,
            "{logged} warnings logged"
        );
        assert!(logged > 0);
        assert_eq!(
            pipeline.take_suppressed_warnings(),
            pipeline.warnings - logged as u64
        );
    }

    #[test]
    fn tracks_leave_interleaved_by_decode_time() {
        let out = feed(&clip(4, 0), Duration::from_secs(4));
        assert!(matches!(out.first(), Some(BusMessage::Tracks(t)) if t.len() == 2));
        let units = units(&out);
        assert_eq!(
            units.iter().filter(|u| u.kind == TrackKind::Video).count(),
            100
        );
        // ffmpeg batches audio into PES packets of about 0.37 s, sent after
        // the video of the same instant: out of ingest they are merged.
        assert!(
            units.windows(2).all(|w| w[0].dts <= w[1].dts),
            "decode order across tracks"
        );
    }

    /// Video decode times and keyframe flags of every unit `pipeline` gets
    /// out of `ts`, and its audio decode times.
    fn run(pipeline: &mut SessionPipeline, ts: &[u8]) -> (Vec<(Time90k, bool)>, Vec<Time90k>) {
        let now = Instant::now();
        let mut out = Vec::new();
        for chunk in ts.chunks(1316) {
            pipeline.push(chunk, now, &mut |m| out.push(m));
        }
        pipeline.finish(now, &mut |m| out.push(m));
        let units = units(&out);
        let of = |kind| units.iter().filter(move |u| u.kind == kind);
        (
            of(TrackKind::Video).map(|u| (u.dts, u.keyframe)).collect(),
            of(TrackKind::Audio).map(|u| u.dts).collect(),
        )
    }

    #[test]
    fn video_after_lost_packets_is_dropped_up_to_the_next_keyframe() {
        let ts = clip(4, 0);
        // Three packets of the video PID (ffmpeg's 0x100) lost, 40 % of the
        // way in: inside the second GOP.
        let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let video: Vec<usize> = ts
            .chunks(188)
            .enumerate()
            .filter(|(_, p)| pid(p) == 0x100)
            .map(|(i, _)| i)
            .collect();
        let lost = &video[video.len() * 4 / 10..][..3];
        let damaged: Vec<u8> = ts
            .chunks(188)
            .enumerate()
            .filter(|(i, _)| !lost.contains(i))
            .flat_map(|(_, p)| p.iter().copied())
            .collect();

        let (whole_video, whole_audio) = run(&mut SessionPipeline::new(), &ts);
        let mut pipeline = SessionPipeline::new();
        let (video, audio) = run(&mut pipeline, &damaged);
        assert_eq!(audio, whole_audio, "the audio is untouched");
        // What is missing is one run of frames that ends just before a
        // keyframe: the frame the loss cut into (or two, if the loss took
        // a frame's start) and every frame after it that could refer to it.
        let missing: Vec<usize> = whole_video
            .iter()
            .enumerate()
            .filter(|(_, f)| !video.contains(f))
            .map(|(i, _)| i)
            .collect();
        let (first, last) = (missing[0], *missing.last().unwrap());
        assert_eq!(missing, (first..=last).collect::<Vec<_>>(), "one run");
        assert!(whole_video[last + 1].1, "it ends before a keyframe");
        assert!(missing.len() > 3, "more than the frame the loss cut into");
        let damaged = pipeline.damaged as usize;
        assert!(
            (missing.len() - 2..=missing.len() - 1).contains(&damaged),
            "{damaged} dropped of {} missing",
            missing.len()
        );
        assert_eq!(pipeline.warnings, 1, "one continuity warning");
    }

    #[test]
    fn encoder_restart_becomes_one_discontinuity_on_a_continuous_timeline() {
        // 3 s starting at 100 s, then the encoder restarts at 0 s.
        let mut ts = clip(3, 100);
        ts.extend(clip(3, 0));
        let mut pipeline_stats = None;
        let out = feed_with(&ts, Duration::from_secs(6), &mut pipeline_stats);
        let breaks = out
            .iter()
            .filter(|m| matches!(m, BusMessage::Discontinuity))
            .count();
        assert_eq!(breaks, 1);
        let units = units(&out);
        for kind in [TrackKind::Video, TrackKind::Audio] {
            let dts: Vec<Time90k> = units
                .iter()
                .filter(|u| u.kind == kind)
                .map(|u| u.dts)
                .collect();
            assert!(
                dts.windows(2)
                    .all(|w| w[1] > w[0] && w[1] - w[0] < Time90k::from_millis(100)),
                "{kind:?} timeline continuous"
            );
        }
        // Every picture the demuxer gets out of the two clips goes on (the
        // demuxer itself drops the first clip's last picture: the
        // continuity counters break where the files meet, as on loss).
        let mut demuxer = Demuxer::default();
        let mut events = Vec::new();
        demuxer.push(&ts, &mut events);
        demuxer.finish(&mut events);
        let demuxed = events
            .iter()
            .filter(|e| matches!(e, DemuxEvent::Unit(u) if u.kind == TrackKind::Video))
            .count();
        assert!(demuxed >= 149, "{demuxed}");
        assert_eq!(
            units.iter().filter(|u| u.kind == TrackKind::Video).count(),
            demuxed,
            "no picture lost"
        );
        // The restarted encoder's first audio (AAC priming) overlapped the
        // old audio by a frame or two: dropped, not sent backwards.
        let stats = pipeline_stats.unwrap();
        assert_eq!(stats.jumps, 1);
        assert!((1..=3).contains(&stats.dropped), "{stats:?}");
    }
}
