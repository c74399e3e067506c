//! The transcoder proper: source access units in, one set of access units
//! per rung out. Synchronous and runtime-free — call it from a blocking
//! thread (`tokio::task::spawn_blocking` or a dedicated thread per
//! stream); it owns FFmpeg's decoder, scalers and encoders for one stream.
//!
//! Video is decoded once; each decoded frame gets the keyframe decision of
//! the plan's [`KeyframeCadence`](crate::plan::KeyframeCadence) (made once,
//! so every rung agrees), and then per rung is decimated to the rung's
//! frame rate (never a keyframe), scaled and encoded. Output PTS are the
//! source's PTS: a rung's frames carry exactly the timestamps of the source
//! frames they came from.
//!
//! Nothing queues inside except what FFmpeg's codecs hold for their own
//! delay (a few frames; none with `zerolatency`), the Opus→AAC sample FIFO
//! (under two audio frames) and the bounded push-time table used to
//! measure latency ([`crate::stats`]).

mod audio;
mod video;

use std::collections::BTreeMap;

use ferrocast_media::{AccessUnit, TrackId, TrackInfo, TrackKind};
use ff::format::Pixel;
use ff::{Dictionary, Rational};
use ffmpeg_next as ff;

use self::audio::AudioPath;
use self::video::{RungEncoder, Timing, VideoDecoder};
use crate::error::TranscodeError;
use crate::gpu::{EncoderChoice, EncoderProbe, StreamEncoders};
use crate::ladder::VideoCodec;
use crate::plan::{KeyframeDecider, Plan};
use crate::stats::{Clock, InFlight, Stats, SystemClock};

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

/// The transcoder for one stream. See the [module docs](self).
pub struct Transcoder {
    plan: Plan,
    encoders: StreamEncoders,
    decoder: VideoDecoder,
    rungs: Vec<RungEncoder>,
    keyframes: KeyframeDecider,
    /// Per rung: false once shed ([`Transcoder::shed_rung`]).
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
    /// stream's `encoders`. If NVENC was chosen but an encoder or decoder
    /// fails to open, the stream falls back to the CPU (releasing its
    /// NVENC sessions) and says why in [`Self::encoders`].
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
        let (decoder, rungs) = opened;
        tracing::info!(
            ladder = %plan.ladder,
            rungs = ?plan.rungs.iter().map(|r| format!("{}:{}x{}", r.name, r.width, r.height)).collect::<Vec<_>>(),
            encoders = %encoders.choice.reason,
            "transcoder ready"
        );
        let stats = Stats {
            rungs: rungs.iter().map(|r| r.stats.clone()).collect(),
            ..Stats::default()
        };
        Ok(Transcoder {
            keyframes: KeyframeDecider::new(plan.keyframes, plan.cadence),
            active: vec![true; rungs.len()],
            plan,
            encoders,
            decoder,
            rungs,
            audio: BTreeMap::new(),
            in_flight: InFlight::default(),
            clock,
            stats,
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
    /// `out` (often nothing for the first few units: codec delay).
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
        self.stats.busy += self.clock.now().saturating_duration_since(started);
        result
    }

    /// Stops encoding rung `rung` (an index into [`Plan::rungs`]) for
    /// good, to save its cost when the machine cannot keep up; its encoder
    /// is not flushed. Returns false if it was already shed or does not
    /// exist. Output indices of the other rungs do not change.
    pub fn shed_rung(&mut self, rung: usize) -> bool {
        match self.active.get_mut(rung) {
            Some(active) if *active => {
                *active = false;
                true
            }
            _ => false,
        }
    }

    /// Per rung, in plan order: still encoded (not shed).
    pub fn active_rungs(&self) -> &[bool] {
        &self.active
    }

    /// The timeline broke (publisher reconnected): the next frame is a
    /// keyframe on every rung (in [`KeyframeMode::Cadence`]; the source's
    /// next keyframe in [`KeyframeMode::FollowSource`]), and lag
    /// measurements restart.
    ///
    /// [`KeyframeMode::Cadence`]: crate::plan::KeyframeMode::Cadence
    /// [`KeyframeMode::FollowSource`]: crate::plan::KeyframeMode::FollowSource
    pub fn discontinuity(&mut self) {
        self.keyframes.reset();
        for rung in &mut self.rungs {
            rung.reset_timing();
        }
    }

    /// End of input: drains the decoder and every encoder.
    pub fn finish(&mut self, out: &mut Vec<Output>) -> Result<(), TranscodeError> {
        let started = self.clock.now();
        self.decoder.send_eof();
        self.drain_decoder(out)?;
        let timing = Timing {
            clock: self.clock.as_ref(),
            in_flight: &self.in_flight,
        };
        for (index, rung) in self.rungs.iter_mut().enumerate() {
            if !self.active[index] {
                continue;
            }
            rung.finish(&timing, &mut self.scratch)?;
            out.extend(
                self.scratch
                    .drain(..)
                    .map(|unit| Output::Video { rung: index, unit }),
            );
        }
        for (_, path) in self.audio.values_mut() {
            if let AudioPath::Reencode(r) = path {
                r.finish(&mut self.scratch)?;
                self.stats.audio_encoded += self.scratch.len() as u64;
                out.extend(self.scratch.drain(..).map(Output::Audio));
            }
        }
        self.stats.busy += self.clock.now().saturating_duration_since(started);
        Ok(())
    }

    /// The output tracks.
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

    /// Counters and lag so far.
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
            let timing = Timing {
                clock: self.clock.as_ref(),
                in_flight: &self.in_flight,
            };
            for (index, rung) in self.rungs.iter_mut().enumerate() {
                if !self.active[index] {
                    continue;
                }
                rung.push(frame, pts, keyframe, &timing, &mut self.scratch)?;
                out.extend(
                    self.scratch
                        .drain(..)
                        .map(|unit| Output::Video { rung: index, unit }),
                );
            }
        }
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

impl EncoderProbe for FfmpegProbe {
    fn open_nvenc(&self, codec: VideoCodec, ordinal: u32) -> Result<(), String> {
        crate::ffmpeg::init();
        let name = match codec {
            VideoCodec::H264 => "h264_nvenc",
            VideoCodec::Hevc => "hevc_nvenc",
        };
        let encoder =
            ff::encoder::find_by_name(name).ok_or_else(|| format!("FFmpeg has no {name}"))?;
        let mut enc = ff::codec::Context::new_with_codec(encoder)
            .encoder()
            .video()
            .map_err(|e| e.to_string())?;
        enc.set_width(640);
        enc.set_height(360);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(Rational(1, 90_000));
        enc.set_frame_rate(Some(Rational(30, 1)));
        let mut opts = Dictionary::new();
        opts.set("gpu", &ordinal.to_string());
        // The real reason (no libcuda, no NVENC engine, session limit) is
        // in FFmpeg's log, which goes to tracing.
        enc.open_as_with(encoder, opts)
            .map(drop)
            .map_err(|e| e.to_string())
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
