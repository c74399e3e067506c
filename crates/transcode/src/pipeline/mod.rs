//! The transcoder proper: source access units in, one set of access units
//! per rung out. Synchronous and runtime-free — call it from a blocking
//! thread (`tokio::task::spawn_blocking` or a dedicated thread per
//! stream); it owns FFmpeg's decoder, and one worker thread per rung owns
//! that rung's scaler and encoder (the private `rungs` module).
//!
//! Video is decoded once, on the caller's thread; each decoded frame gets
//! the keyframe decision of the plan's
//! [`KeyframeCadence`](crate::plan::KeyframeCadence) (made once, so every
//! rung agrees) and is handed, shared and not copied, to every rung's
//! worker, which decimates it to the rung's frame rate (never a keyframe),
//! scales and encodes it. Rungs encode in parallel with each other and
//! with the decoding of the next frame. Output PTS are the source's PTS: a
//! rung's frames carry exactly the timestamps of the source frames they
//! came from.
//!
//! Outputs of a rung come out in order; those not ready when `push`
//! returns come out of a later [`Transcoder::push`], [`Transcoder::poll`]
//! or [`Transcoder::finish`]. A caller with time to spare between units (a
//! live source) calls [`Transcoder::poll`] to get each frame's outputs as
//! soon as every rung has encoded it.
//!
//! Nothing queues inside except what FFmpeg's codecs hold for their own
//! delay (a few frames; none with `zerolatency`), at most
//! [`RUNG_QUEUE_FRAMES`] frames per rung waiting for or in its encoder (a
//! rung that falls further behind makes `push` wait), the Opus→AAC sample
//! FIFO (under two audio frames) and the bounded push-time table used to
//! measure latency ([`crate::stats`]).

mod audio;
mod rungs;
pub(crate) mod video;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use ferrocast_media::{AccessUnit, TrackId, TrackInfo, TrackKind};
use ff::format::Pixel;
use ff::{Dictionary, Rational};
use ffmpeg_next as ff;

use self::audio::AudioPath;
pub use self::rungs::RUNG_QUEUE_FRAMES;
use self::rungs::{Job, Report, ReportBody, RungWorker};
use self::video::{RungEncoder, VideoDecoder};
use crate::error::TranscodeError;
use crate::gpu::{EncoderChoice, EncoderProbe, StreamEncoders};
use crate::ladder::VideoCodec;
use crate::plan::{KeyframeDecider, Plan};
use crate::stats::{Clock, InFlight, LagAnchor, RungStats, Stats, SystemClock};

/// One access unit out of the transcoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A video unit of rung `rung` (an index into [`Plan::rungs`]), on the
    /// source's video track id. Its codec parameters are
    /// [`Tracks::rungs`]`[rung]`, known before the first unit comes out.
    Video {
        /// Index into [`Plan::rungs`].
        rung: usize,
        /// The encoded unit.
        unit: AccessUnit,
    },
    /// A source video unit, untouched, for the passthrough rendition.
    Passthrough(AccessUnit),
    /// An audio unit (AAC), for every rendition.
    Audio(AccessUnit),
}

/// The tracks the outputs belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracks {
    /// Per rung, in plan order: `None` until the rung's first keyframe came
    /// out of its encoder.
    pub rungs: Vec<Option<TrackInfo>>,
    /// The source video track, when the plan passes it through.
    pub passthrough: Option<TrackInfo>,
    /// The audio tracks as output (AAC).
    pub audio: Vec<TrackInfo>,
}

/// The transcoder's view of one rung: its worker, and what it has said.
struct RungState {
    worker: RungWorker,
    /// False once shed ([`Transcoder::shed_rung`]).
    active: bool,
    /// The rung's track as of the last output handed out.
    track: Option<TrackInfo>,
    stats: RungStats,
    lag: LagAnchor,
    /// The next frame sent must carry a timing reset (a discontinuity).
    reset_pending: bool,
    /// The worker drained its encoder.
    finished: bool,
}

/// The transcoder for one stream. See the [module docs](self).
pub struct Transcoder {
    plan: Plan,
    encoders: StreamEncoders,
    decoder: VideoDecoder,
    rungs: Vec<RungState>,
    reports: Receiver<Report>,
    keyframes: KeyframeDecider,
    /// Per rung: false once shed, as [`Self::active_rungs`] returns it.
    active: Vec<bool>,
    /// Input track and its path, per audio track.
    audio: BTreeMap<TrackId, (TrackInfo, AudioPath)>,
    in_flight: InFlight,
    clock: Box<dyn Clock>,
    stats: Stats,
    scratch: Vec<AccessUnit>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("ladder", &self.plan.ladder)
            .field("encoders", &self.encoders.choice)
            .field("rungs", &self.plan.rungs.len())
            .finish_non_exhaustive()
    }
}

impl Transcoder {
    /// Opens the decoder and every rung's encoder for `plan` with the
    /// stream's `encoders`, and starts one worker thread per rung. If NVENC
    /// was chosen but an encoder or decoder fails to open, the stream
    /// falls back to the CPU (releasing its NVENC sessions) and says why
    /// in [`Self::encoders`].
    pub fn new(plan: Plan, encoders: StreamEncoders) -> Result<Self, TranscodeError> {
        Self::with_clock(plan, encoders, Box::new(SystemClock))
    }

    /// [`Self::new`] with an injected clock for the lag measurements.
    pub fn with_clock(
        plan: Plan,
        mut encoders: StreamEncoders,
        clock: Box<dyn Clock>,
    ) -> Result<Self, TranscodeError> {
        crate::ffmpeg::init();
        let opened = match open_all(&plan, &encoders.choice) {
            Ok(opened) => opened,
            Err(e) if encoders.choice.is_gpu() => {
                tracing::warn!(ladder = %plan.ladder, error = %e, "NVENC pipeline failed to open; falling back to the CPU");
                encoders.fall_back_to_cpu(&e.to_string());
                open_all(&plan, &encoders.choice)?
            }
            Err(e) => return Err(e),
        };
        let (decoder, encoders_per_rung) = opened;
        tracing::info!(
            ladder = %plan.ladder,
            rungs = ?plan.rungs.iter().map(|r| format!("{}:{}x{}", r.name, r.width, r.height)).collect::<Vec<_>>(),
            encoders = %encoders.choice.reason,
            "transcoder ready"
        );
        let (workers, reports) = rungs::spawn(encoders_per_rung)?;
        let rungs: Vec<RungState> = workers
            .into_iter()
            .zip(&plan.rungs)
            .map(|(worker, rung)| RungState {
                worker,
                active: true,
                track: None,
                stats: RungStats {
                    name: rung.name.clone(),
                    ..RungStats::default()
                },
                lag: LagAnchor::default(),
                reset_pending: false,
                finished: false,
            })
            .collect();
        Ok(Transcoder {
            keyframes: KeyframeDecider::new(plan.keyframes, plan.cadence),
            active: vec![true; rungs.len()],
            plan,
            encoders,
            decoder,
            rungs,
            reports,
            audio: BTreeMap::new(),
            in_flight: InFlight::default(),
            clock,
            stats: Stats::default(),
            scratch: Vec::new(),
        })
    }

    /// The plan this transcoder follows.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The encoders in use and why (after any fallback).
    pub fn encoders(&self) -> &EncoderChoice {
        &self.encoders.choice
    }

    /// Takes the stream's track set (a bus `Tracks` message): sets up each
    /// audio track — AAC passes through, Opus is re-encoded to AAC. Video
    /// tracks other than the plan's are ignored; a changed video track
    /// (new size or codec) needs a new plan and a new transcoder.
    pub fn set_tracks(&mut self, tracks: &[TrackInfo]) -> Result<(), TranscodeError> {
        for track in tracks.iter().filter(|t| t.kind() == TrackKind::Audio) {
            // Same track again (a repeated Tracks message): keep the
            // encoder and its state.
            if self
                .audio
                .get(&track.id)
                .is_some_and(|(input, _)| input == track)
            {
                continue;
            }
            let path = AudioPath::new(track, self.plan.audio_bitrate)?;
            self.audio.insert(track.id, (track.clone(), path));
        }
        Ok(())
    }

    /// Transcodes one source access unit; what came out is appended to
    /// `out`: this unit's audio at once, video of this and earlier units
    /// as far as the rungs have encoded it (often nothing for the first
    /// few units: codec delay). Waits only when a rung has
    /// [`RUNG_QUEUE_FRAMES`] frames in hand already.
    ///
    /// # Errors
    ///
    /// An FFmpeg failure here or, reported now, on a rung's worker since
    /// the last call.
    pub fn push(&mut self, unit: &AccessUnit, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        let started = self.clock.now();
        let result = match unit.kind {
            TrackKind::Video if unit.track == self.plan.source.id => self.push_video(unit, out),
            TrackKind::Audio => self.push_audio(unit, out),
            TrackKind::Video => {
                self.stats.units_ignored += 1;
                Ok(())
            }
        };
        let result = result.and_then(|()| self.collect(out).map(drop));
        self.stats.busy += self.clock.now().saturating_duration_since(started);
        result
    }

    /// Source frames sent to the rungs whose outputs have not all come out
    /// yet (counted once per rung).
    pub fn pending(&self) -> usize {
        self.rungs
            .iter()
            .filter(|r| r.active)
            .map(|r| r.worker.in_flight)
            .sum()
    }

    /// Appends the outputs the rungs have finished since the last call.
    /// If none had finished anything and frames are [`Self::pending`],
    /// first waits up to `timeout` for the next rung to finish one (a zero
    /// `timeout` never waits). Call it in a loop between the units of a
    /// live source to hand each rung's output out as soon as it exists.
    ///
    /// # Errors
    ///
    /// An FFmpeg failure on a rung's worker.
    pub fn poll(&mut self, out: &mut Vec<Output>, timeout: Duration) -> Result<(), TranscodeError> {
        if self.collect(out)? > 0 || timeout.is_zero() || self.pending() == 0 {
            return Ok(());
        }
        if let Some(report) = rungs::next_report(&self.reports, Some(Instant::now() + timeout)) {
            self.absorb(report, out)?;
            self.collect(out)?;
        }
        Ok(())
    }

    /// Stops encoding rung `rung` (an index into [`Plan::rungs`]) for
    /// good, to save its cost when the machine cannot keep up; its encoder
    /// is not flushed, and frames it had in hand are not output. Returns
    /// false if it was already shed or does not exist. Output indices of
    /// the other rungs do not change.
    pub fn shed_rung(&mut self, rung: usize) -> bool {
        match self.rungs.get_mut(rung) {
            Some(state) if state.active => {
                state.active = false;
                state.worker.close();
                self.active[rung] = false;
                true
            }
            _ => false,
        }
    }

    /// Per rung, in plan order: still encoded (not shed).
    pub fn active_rungs(&self) -> &[bool] {
        &self.active
    }

    /// The timeline broke (publisher reconnected): what the old session
    /// still holds comes out first, into `out` (the decoder's delayed
    /// frames, and every rung's frames in flight), so that nothing of it
    /// follows the discontinuity; then the next frame is a keyframe on
    /// every rung (in [`KeyframeMode::Cadence`]; the source's next keyframe
    /// in [`KeyframeMode::FollowSource`]), and lag measurements restart.
    ///
    /// # Errors
    ///
    /// An FFmpeg failure on a rung's worker.
    ///
    /// [`KeyframeMode::Cadence`]: crate::plan::KeyframeMode::Cadence
    /// [`KeyframeMode::FollowSource`]: crate::plan::KeyframeMode::FollowSource
    pub fn discontinuity(&mut self, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        self.decoder.send_eof();
        let drained = self.drain_decoder(out);
        self.decoder.restart();
        drained?;
        while self
            .rungs
            .iter()
            .any(|r| r.active && !r.finished && r.worker.in_flight > 0)
        {
            let Some(report) = rungs::next_report(&self.reports, Some(far_future())) else {
                break;
            };
            self.absorb(report, out)?;
        }
        self.keyframes.reset();
        for rung in &mut self.rungs {
            rung.reset_pending = true;
        }
        Ok(())
    }

    /// End of input: drains the decoder and every encoder, waiting for
    /// every rung's worker.
    ///
    /// # Errors
    ///
    /// An FFmpeg failure here or on a rung's worker.
    pub fn finish(&mut self, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        let started = self.clock.now();
        let result = self.finish_inner(out);
        self.stats.busy += self.clock.now().saturating_duration_since(started);
        result
    }

    fn finish_inner(&mut self, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        self.decoder.send_eof();
        self.drain_decoder(out)?;
        for index in 0..self.rungs.len() {
            if self.rungs[index].active && self.rungs[index].worker.is_open() {
                self.send_job(index, Job::Finish, out)?;
                self.rungs[index].worker.close();
            }
        }
        while self
            .rungs
            .iter()
            .any(|r| r.active && !r.finished && r.worker.in_flight > 0)
        {
            let Some(report) = rungs::next_report(&self.reports, Some(far_future())) else {
                break;
            };
            self.absorb(report, out)?;
        }
        for (_, path) in self.audio.values_mut() {
            if let AudioPath::Reencode(r) = path {
                r.finish(&mut self.scratch)?;
                self.stats.audio_encoded += self.scratch.len() as u64;
                out.extend(self.scratch.drain(..).map(Output::Audio));
            }
        }
        Ok(())
    }

    /// The output tracks. A rung's track is the one its latest output
    /// handed out belongs to.
    pub fn tracks(&self) -> Tracks {
        Tracks {
            rungs: self.rungs.iter().map(|r| r.track.clone()).collect(),
            passthrough: self
                .plan
                .source_passthrough
                .then(|| self.plan.source.clone()),
            audio: self
                .audio
                .values()
                .map(|(_, p)| p.track().clone())
                .collect(),
        }
    }

    /// Counters and lag so far, as of the outputs handed out.
    pub fn stats(&self) -> Stats {
        Stats {
            rungs: self.rungs.iter().map(|r| r.stats.clone()).collect(),
            ..self.stats.clone()
        }
    }

    fn push_video(
        &mut self,
        unit: &AccessUnit,
        out: &mut Vec<Output>,
    ) -> Result<(), TranscodeError> {
        self.stats.video_units_in += 1;
        self.in_flight.pushed(unit.pts, self.clock.now());
        self.keyframes.source_unit(unit.pts, unit.keyframe);
        if self.plan.source_passthrough {
            out.push(Output::Passthrough(unit.clone()));
        }
        if !self.decoder.send(unit) {
            self.stats.decode_errors += 1;
        }
        self.drain_decoder(out)
    }

    fn drain_decoder(&mut self, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        loop {
            let (frame, pts) = match self.decoder.receive() {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return Ok(()),
                Err(()) => {
                    self.stats.decode_errors += 1;
                    continue;
                }
            };
            self.stats.frames_decoded += 1;
            let keyframe = self.keyframes.is_keyframe(pts);
            let frame = Arc::new(frame);
            for index in 0..self.rungs.len() {
                let rung = &mut self.rungs[index];
                if !rung.active || !rung.worker.is_open() {
                    continue;
                }
                let reset = std::mem::take(&mut rung.reset_pending);
                let job = Job::Frame {
                    frame: Arc::clone(&frame),
                    pts,
                    keyframe,
                    reset,
                };
                self.send_job(index, job, out)?;
            }
        }
    }

    /// Sends `job` to rung `index`, first reading reports (and handing
    /// their outputs out) until the rung has credit.
    fn send_job(
        &mut self,
        index: usize,
        job: Job,
        out: &mut Vec<Output>,
    ) -> Result<(), TranscodeError> {
        while !self.rungs[index].worker.has_credit() {
            let Some(report) = rungs::next_report(&self.reports, Some(far_future())) else {
                break;
            };
            self.absorb(report, out)?;
        }
        self.rungs[index].worker.send(job)
    }

    /// Reads the reports that are ready, without waiting; returns how
    /// many.
    fn collect(&mut self, out: &mut Vec<Output>) -> Result<usize, TranscodeError> {
        let mut read = 0;
        while let Some(report) = rungs::next_report(&self.reports, None) {
            self.absorb(report, out)?;
            read += 1;
        }
        Ok(read)
    }

    /// Takes one worker report: its units become outputs (timed on the
    /// injected clock), its track and counters become the rung's.
    fn absorb(&mut self, report: Report, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        let Some(rung) = self.rungs.get_mut(report.rung) else {
            return Ok(());
        };
        rung.worker.in_flight = rung.worker.in_flight.saturating_sub(1);
        let (units, track, counters, busy, reset, finished) = match report.body {
            ReportBody::Done {
                units,
                track,
                counters,
                busy,
                reset,
                finished,
            } => (units, track, counters, busy, reset, finished),
            ReportBody::Failed(e) => {
                rung.worker.close();
                rung.finished = true;
                return if rung.active { Err(e) } else { Ok(()) };
            }
            ReportBody::Gone => {
                rung.worker.close();
                rung.worker.in_flight = 0;
                rung.finished = true;
                return if rung.active {
                    Err(rung.worker.panicked())
                } else {
                    Ok(())
                };
            }
        };
        rung.finished |= finished;
        if !rung.active {
            return Ok(());
        }
        if let Some(track) = track {
            rung.track = Some(track);
        }
        if reset {
            rung.lag.reset();
        }
        let stats = &mut rung.stats;
        stats.frames_in = counters.frames_in;
        stats.frames_out = counters.frames_out;
        stats.frames_decimated = counters.frames_decimated;
        stats.keyframes_forced = counters.keyframes_forced;
        stats.bytes_out = counters.bytes_out;
        stats.busy += busy;
        let now = self.clock.now();
        for unit in units {
            if let Some(at) = self.in_flight.pushed_at(unit.pts) {
                let latency = now.saturating_duration_since(at);
                stats.latency_last = latency;
                stats.latency_max = stats.latency_max.max(latency);
            }
            stats.realtime_lag_ms = rung.lag.lag_ms(unit.pts, now);
            out.push(Output::Video {
                rung: report.rung,
                unit,
            });
        }
        Ok(())
    }

    fn push_audio(
        &mut self,
        unit: &AccessUnit,
        out: &mut Vec<Output>,
    ) -> Result<(), TranscodeError> {
        match self.audio.get_mut(&unit.track).map(|(_, path)| path) {
            Some(AudioPath::Passthrough(_)) => {
                self.stats.audio_passed += 1;
                out.push(Output::Audio(unit.clone()));
            }
            Some(AudioPath::Reencode(r)) => {
                r.push(unit, &mut self.scratch)?;
                self.stats.audio_encoded += self.scratch.len() as u64;
                out.extend(self.scratch.drain(..).map(Output::Audio));
            }
            None => self.stats.units_ignored += 1,
        }
        Ok(())
    }
}

/// A deadline that never comes, for waits bounded by the credit scheme
/// instead (a worker always reports each job).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

fn open_all(
    plan: &Plan,
    choice: &EncoderChoice,
) -> Result<(VideoDecoder, Vec<RungEncoder>), TranscodeError> {
    let decoder = VideoDecoder::open(plan, choice)?;
    let rungs = plan
        .rungs
        .iter()
        .map(|rung| RungEncoder::open(plan, rung, choice))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((decoder, rungs))
}

/// The real [`EncoderProbe`]: opens a small `h264_nvenc`/`hevc_nvenc`
/// session through FFmpeg and closes it again.
#[derive(Debug, Clone, Copy, Default)]
pub struct FfmpegProbe;

/// Opens (and closes again) FFmpeg's encoder `name` for a 640x360 stream
/// with `opts`; `Err` carries FFmpeg's reason.
fn open_encoder(name: &str, opts: Dictionary) -> Result<(), String> {
    crate::ffmpeg::init();
    let encoder = ff::encoder::find_by_name(name).ok_or_else(|| format!("FFmpeg has no {name}"))?;
    let mut enc = ff::codec::Context::new_with_codec(encoder)
        .encoder()
        .video()
        .map_err(|e| e.to_string())?;
    enc.set_width(640);
    enc.set_height(360);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(Rational(1, 90_000));
    enc.set_frame_rate(Some(Rational(30, 1)));
    enc.open_as_with(encoder, opts)
        .map(drop)
        .map_err(|e| e.to_string())
}

impl EncoderProbe for FfmpegProbe {
    fn open_nvenc(&self, codec: VideoCodec, ordinal: u32) -> Result<(), String> {
        let name = match codec {
            VideoCodec::H264 => "h264_nvenc",
            VideoCodec::Hevc => "hevc_nvenc",
        };
        let mut opts = Dictionary::new();
        opts.set("gpu", &ordinal.to_string());
        // The real reason (no libcuda, no NVENC engine, session limit) is
        // in FFmpeg's log, which goes to tracing.
        open_encoder(name, opts)
    }

    fn open_cpu(&self, codec: VideoCodec) -> Result<(), String> {
        let name = match codec {
            VideoCodec::H264 => "libx264",
            VideoCodec::Hevc => "libx265",
        };
        open_encoder(name, Dictionary::new())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrocast_media::{CodecParams, H264Params};

    use super::*;
    use crate::gpu::{Backend, Discovery, NvencBudget, assign, discover};
    use crate::ladder::{BuiltinLadder, Ladder};

    fn source() -> TrackInfo {
        TrackInfo {
            id: TrackId(256),
            params: CodecParams::H264(H264Params {
                sps: Bytes::new(),
                pps: Bytes::new(),
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 31,
                width: 1280,
                height: 720,
                frame_rate: Some((30, 1)),
            }),
        }
    }

    #[test]
    fn real_probe_fails_cleanly_without_a_gpu() {
        if discover() != Discovery::NoDriver {
            return; // a GPU machine: the probe's answer depends on the card
        }
        let err = FfmpegProbe.open_nvenc(VideoCodec::H264, 0).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn nvenc_that_fails_to_open_falls_back_to_cpu_and_frees_sessions() {
        if discover() != Discovery::NoDriver {
            return; // only meaningful where NVENC cannot open
        }
        let plan = crate::plan(&Ladder::builtin(BuiltinLadder::Small), &source()).unwrap();
        // As if discovery had found an NVENC-capable GPU.
        let gpu = EncoderChoice {
            backend: Backend::Nvenc { ordinal: 0 },
            reason: "GPU 0: NVENC opened".into(),
        };
        let budget = NvencBudget::new(8);
        let encoders = assign("live/a", &gpu, &budget, plan.rungs.len() as u32);
        assert_eq!(budget.usage(), (2, 8));
        let transcoder = Transcoder::new(plan, encoders).unwrap();
        assert_eq!(transcoder.encoders().backend, Backend::Cpu);
        assert!(
            transcoder.encoders().reason.contains("encoding on the CPU"),
            "{}",
            transcoder.encoders().reason
        );
        assert_eq!(budget.usage(), (0, 8));
        assert_eq!(transcoder.tracks().rungs, [None, None]);
    }
}
