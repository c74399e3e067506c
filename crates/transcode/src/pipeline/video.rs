//! Video: one decoder per source, and per rung a scaler, a frame-rate cap
//! and an encoder.

use bytes::Bytes;
use ferrocast_media::{
    AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind, h264, h265,
};
use ff::codec::packet::Packet;
use ff::format::Pixel;
use ff::software::scaling;
use ff::util::frame;
use ff::util::picture;
use ff::{Dictionary, Rational};
use ffmpeg_next as ff;

use crate::error::TranscodeError;
use crate::ffmpeg::{Scaler, set_extradata, share_frame};
use crate::gpu::{Backend, EncoderChoice};
use crate::ladder::VideoCodec;
use crate::plan::{KeyframeCadence, KeyframeMode, Plan, PlannedRung, SourceCodec};

/// The encoder's own GOP limit in [`KeyframeMode::FollowSource`]: ten
/// minutes at 60 fps, so in practice only the source's keyframes count.
const FOLLOW_SOURCE_GOP_FRAMES: i64 = 36_000;

/// The 90 kHz time base every packet and frame here is stamped in.
pub(crate) const TIME_BASE: Rational = Rational(1, 90_000);

/// What came out of `receive_*`: more may follow, or not yet.
fn is_again_or_eof(e: &ff::Error) -> bool {
    matches!(e, ff::Error::Eof)
        || *e
            == (ff::Error::Other {
                errno: ff::util::error::EAGAIN,
            })
}

/// The source's codec configuration as decoder extradata: Annex-B
/// parameter sets for H.264/HEVC; for AV1 the sequence header OBU (sized,
/// low overhead format), which libdav1d parses as is.
pub(crate) fn decoder_extradata(params: &CodecParams) -> Vec<u8> {
    let sets: Vec<&Bytes> = match params {
        CodecParams::H264(p) => vec![&p.sps, &p.pps],
        CodecParams::H265(p) => vec![&p.vps, &p.sps, &p.pps],
        CodecParams::Av1(p) => return p.sequence_header.to_vec(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for set in sets.into_iter().filter(|s| !s.is_empty()) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(set);
    }
    out
}

/// The source decoder. Its threading adds no delay: H.264/HEVC decode on
/// the calling thread (FFmpeg's default of one thread; frame threads would
/// hold a frame back per thread), libdav1d with `max_frame_delay` 1 (the
/// `low_delay` flag).
pub(crate) struct VideoDecoder {
    decoder: ff::decoder::Video,
    subject: String,
}

impl VideoDecoder {
    pub(crate) fn open(plan: &Plan, choice: &EncoderChoice) -> Result<Self, TranscodeError> {
        let name = choice.decoder_name(plan.source_codec);
        let subject = format!("video track {} ({name})", plan.source.id.0);
        let codec =
            ff::decoder::find_by_name(name).ok_or_else(|| TranscodeError::CodecMissing {
                kind: "decoder",
                name: name.to_owned(),
            })?;
        let mut ctx = ff::codec::Context::new_with_codec(codec);
        set_extradata(&mut ctx, &decoder_extradata(&plan.source.params));
        if plan.source_codec == SourceCodec::Av1 {
            // libdav1d: tile and row threads on every core, but at most one
            // frame in flight, so each temporal unit comes out as it goes in.
            ctx.set_flags(ff::codec::Flags::LOW_DELAY);
            ctx.set_threading(ff::threading::Config {
                kind: ff::threading::Type::Slice,
                ..ff::threading::Config::count(0)
            });
        }
        // ffmpeg-next's decoder has no frame rate for an MPEG-TS source
        // (`frame_rate()` is `None`), and x264 then picks absurd levels and
        // rates; give it the SPS's.
        if let Some((num, den)) = plan.source_frame_rate {
            ctx.set_frame_rate(Some(Rational(num as i32, den as i32)));
        }
        let mut decoder = ctx.decoder();
        decoder.set_packet_time_base(TIME_BASE);
        if let (Backend::Nvenc { ordinal }, false) =
            (choice.backend, plan.source_codec == SourceCodec::Av1)
        {
            let mut opts = Dictionary::new();
            opts.set("gpu", &ordinal.to_string());
            let opened = decoder
                .open_as_with(codec, opts)
                .map_err(TranscodeError::ffmpeg("open decoder", subject.clone()))?;
            return Ok(VideoDecoder {
                decoder: opened
                    .video()
                    .map_err(TranscodeError::ffmpeg("open decoder", subject.clone()))?,
                subject,
            });
        }
        let decoder = decoder
            .open_as(codec)
            .and_then(|d| d.video())
            .map_err(TranscodeError::ffmpeg("open decoder", subject.clone()))?;
        Ok(VideoDecoder { decoder, subject })
    }

    /// Sends one access unit; `false` if the decoder refused it.
    pub(crate) fn send(&mut self, unit: &AccessUnit) -> bool {
        let mut packet = Packet::copy(&unit.data);
        packet.set_pts(Some(unit.pts.0));
        packet.set_dts(Some(unit.dts.0));
        if unit.keyframe {
            packet.set_flags(ff::codec::packet::Flags::KEY);
        }
        match self.decoder.send_packet(&packet) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(subject = %self.subject, pts = unit.pts.0, error = %e, "decoder refused a unit");
                false
            }
        }
    }

    /// Signals the end of input.
    pub(crate) fn send_eof(&mut self) {
        // Only fails if already draining.
        let _ = self.decoder.send_eof();
    }

    /// Ready for input again after [`send_eof`](Self::send_eof) and a
    /// drain (a new session of the same stream).
    pub(crate) fn restart(&mut self) {
        self.decoder.flush();
    }

    /// The next decoded frame, its picture type cleared (trap 4: x264
    /// would otherwise copy the source's frame types) and its PTS set to
    /// the best-effort timestamp. A new frame each time: the rungs share
    /// it while the decoder goes on. `Ok(None)` when the decoder wants more
    /// input; `Err(())` for a damaged picture (skipped).
    pub(crate) fn receive(&mut self) -> Result<Option<(frame::Video, Time90k)>, ()> {
        let mut frame = frame::Video::empty();
        match self.decoder.receive_frame(&mut frame) {
            Ok(()) => {
                let Some(pts) = frame.timestamp().or_else(|| frame.pts()) else {
                    return Err(());
                };
                frame.set_pts(Some(pts));
                frame.set_kind(picture::Type::None);
                Ok(Some((frame, Time90k(pts))))
            }
            Err(e) if is_again_or_eof(&e) => Ok(None),
            Err(e) => {
                tracing::debug!(subject = %self.subject, error = %e, "decoding failed");
                Err(())
            }
        }
    }
}

/// Keeps frames at least one output interval apart (less an eighth, for
/// jitter), always keeping keyframes.
#[derive(Debug, Clone)]
pub(crate) struct Decimator {
    min_gap: Option<i64>,
    last: Option<Time90k>,
}

impl Decimator {
    pub(crate) fn new(rung: &PlannedRung) -> Self {
        let interval = rung.frame_interval().0;
        Decimator {
            min_gap: rung.decimate.then_some(interval - interval / 8),
            last: None,
        }
    }

    /// True if the frame at `pts` is kept.
    pub(crate) fn keep(&mut self, pts: Time90k, keyframe: bool) -> bool {
        let keep = match (self.min_gap, self.last) {
            (Some(gap), Some(last)) if !keyframe => pts.0 - last.0 >= gap || pts < last,
            _ => true,
        };
        if keep {
            self.last = Some(pts);
        }
        keep
    }
}

/// A rung's counters, kept by its encoder (see [`crate::stats::RungStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) frames_in: u64,
    pub(crate) frames_out: u64,
    pub(crate) frames_decimated: u64,
    pub(crate) keyframes_forced: u64,
    pub(crate) bytes_out: u64,
}

/// One rung: scaler, frame-rate cap, encoder, and the track it produces.
/// Runs on the rung's worker thread ([`super::rungs`]).
pub(crate) struct RungEncoder {
    pub(crate) plan: PlannedRung,
    encoder: ff::encoder::video::Encoder,
    scaler: Option<Scaler>,
    decimator: Decimator,
    track_id: TrackId,
    pub(crate) track: Option<TrackInfo>,
    subject: String,
    pub(crate) counters: Counters,
}

impl RungEncoder {
    pub(crate) fn open(
        plan: &Plan,
        rung: &PlannedRung,
        choice: &EncoderChoice,
    ) -> Result<Self, TranscodeError> {
        let name = choice.encoder_name(rung.codec);
        let subject = format!("rung {} ({name})", rung.name);
        let codec =
            ff::encoder::find_by_name(name).ok_or_else(|| TranscodeError::CodecMissing {
                kind: "encoder",
                name: name.to_owned(),
            })?;
        let mut enc = ff::codec::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(TranscodeError::ffmpeg("create encoder", subject.clone()))?;
        enc.set_width(rung.width);
        enc.set_height(rung.height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(TIME_BASE);
        let (num, den) = rung.frame_rate;
        // Trap 4: without it x264 takes 90000 fps from the time base.
        enc.set_frame_rate(Some(Rational(num as i32, den as i32)));
        // Keyframes come from the cadence; the encoder's own limit is a
        // backstop well past it (a gap in the source), never hit normally.
        // Following the source, the encoder must never add one of its own:
        // the source's GOPs may be of any length.
        let cadence_frames =
            plan.cadence.interval.0 * i64::from(num) / (90_000 * i64::from(den.max(1)));
        let gop = match plan.keyframes {
            KeyframeMode::Cadence => cadence_frames.max(1) * 4,
            KeyframeMode::FollowSource => FOLLOW_SOURCE_GOP_FRAMES,
        };
        enc.set_gop(u32::try_from(gop).unwrap_or(u32::MAX));
        enc.set_bit_rate(rung.bitrate as usize);
        enc.set_max_bit_rate(rung.max_bitrate as usize);
        let opts = encoder_options(rung, choice, &plan.cadence, threads_per_rung(plan));
        let encoder = enc
            .open_as_with(codec, opts)
            .map_err(TranscodeError::ffmpeg("open encoder", subject.clone()))?;
        Ok(RungEncoder {
            plan: rung.clone(),
            encoder,
            scaler: None,
            decimator: Decimator::new(rung),
            track_id: plan.source.id,
            track: None,
            subject,
            counters: Counters::default(),
        })
    }

    /// Encodes one decoded frame (already stamped with `pts` and its
    /// picture type cleared); output units are appended to `out`.
    pub(crate) fn push(
        &mut self,
        src: &frame::Video,
        pts: Time90k,
        keyframe: bool,
        out: &mut Vec<AccessUnit>,
    ) -> Result<(), TranscodeError> {
        if !self.decimator.keep(pts, keyframe) {
            self.counters.frames_decimated += 1;
            return Ok(());
        }
        let mut scaled = self.scale(src)?;
        scaled.set_pts(Some(pts.0));
        // An I picture type with `forced-idr` makes x264/x265/NVENC code an
        // IDR here; `None` lets the encoder decide (never an IDR, with
        // scene-cut off and the GOP backstop far away).
        scaled.set_kind(if keyframe {
            picture::Type::I
        } else {
            picture::Type::None
        });
        if keyframe {
            self.counters.keyframes_forced += 1;
        }
        self.counters.frames_in += 1;
        self.encoder
            .send_frame(&scaled)
            .map_err(TranscodeError::ffmpeg("encode", self.subject.clone()))?;
        self.drain(out)
    }

    /// Flushes the encoder at the end of input.
    pub(crate) fn finish(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), TranscodeError> {
        self.encoder.send_eof().map_err(TranscodeError::ffmpeg(
            "flush encoder",
            self.subject.clone(),
        ))?;
        self.drain(out)
    }

    fn scale(&mut self, src: &frame::Video) -> Result<frame::Video, TranscodeError> {
        let (w, h) = (self.plan.width, self.plan.height);
        if src.format() == Pixel::YUV420P && src.width() == w && src.height() == h {
            // Already the rung's picture: a new reference to the decoder's
            // buffers, not a copy (the encoders copy their input).
            return share_frame(src).map_err(TranscodeError::ffmpeg("scale", self.subject.clone()));
        }
        let stale = self.scaler.as_ref().is_none_or(|s| {
            let input = s.0.input();
            input.format != src.format()
                || input.width != src.width()
                || input.height != src.height()
        });
        if stale {
            let ctx = scaling::Context::get(
                src.format(),
                src.width(),
                src.height(),
                Pixel::YUV420P,
                w,
                h,
                scaling::Flags::BILINEAR,
            )
            .map_err(TranscodeError::ffmpeg(
                "create scaler",
                self.subject.clone(),
            ))?;
            self.scaler = Some(Scaler(ctx));
        }
        // A fresh frame each time: the encoder may still hold a reference
        // to the last one (NVENC encodes asynchronously).
        let mut out = frame::Video::empty();
        if let Some(scaler) = self.scaler.as_mut() {
            scaler
                .0
                .run(src, &mut out)
                .map_err(TranscodeError::ffmpeg("scale", self.subject.clone()))?;
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), TranscodeError> {
        loop {
            let mut packet = Packet::empty();
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(e) if is_again_or_eof(&e) => return Ok(()),
                Err(e) => return Err(TranscodeError::ffmpeg("encode", self.subject.clone())(e)),
            }
            let Some(data) = packet.data() else { continue };
            let pts = Time90k(packet.pts().unwrap_or_default());
            let dts = packet.dts().map_or(pts, Time90k);
            let keyframe = packet.is_key();
            if keyframe {
                self.update_track(data)?;
            }
            self.counters.frames_out += 1;
            self.counters.bytes_out += data.len() as u64;
            out.push(AccessUnit {
                track: self.track_id,
                kind: TrackKind::Video,
                pts,
                dts,
                keyframe,
                data: Bytes::copy_from_slice(data),
                captured_unix_ms: None,
                trace: None,
            });
        }
    }

    /// Reads the parameter sets the encoder put in front of a keyframe.
    fn update_track(&mut self, data: &[u8]) -> Result<(), TranscodeError> {
        let bad = |message: String| TranscodeError::EncoderParams {
            rung: self.plan.name.clone(),
            message,
        };
        let params = match self.plan.codec {
            VideoCodec::H264 => h264::params_from_access_unit(data)
                .map(|r| r.map(CodecParams::H264).map_err(|e| bad(e.to_string()))),
            VideoCodec::Hevc => h265::params_from_access_unit(data)
                .map(|r| r.map(CodecParams::H265).map_err(|e| bad(e.to_string()))),
        };
        match params {
            Some(params) => {
                let info = TrackInfo {
                    id: self.track_id,
                    params: params?,
                };
                if self.track.as_ref() != Some(&info) {
                    self.track = Some(info);
                }
                Ok(())
            }
            None if self.track.is_some() => Ok(()),
            None => Err(bad("the first keyframe carries no parameter sets".into())),
        }
    }

    /// Forget the frame-rate cap's state after a discontinuity.
    pub(crate) fn reset_timing(&mut self) {
        self.decimator.last = None;
    }
}

/// Encoder threads per rung: the machine's cores shared evenly between the
/// rungs, which encode in parallel; at least one.
fn threads_per_rung(plan: &Plan) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / plan.rungs.len().max(1)).max(1)
}

/// The encoder options for a rung, x264/x265 or NVENC.
fn encoder_options(
    rung: &PlannedRung,
    choice: &EncoderChoice,
    cadence: &KeyframeCadence,
    threads: usize,
) -> Dictionary<'static> {
    let mut opts = Dictionary::new();
    // VBV: one keyframe interval of buffer at the peak rate.
    let bufsize = rung.max_bitrate * u64::try_from(cadence.interval.0).unwrap_or(0) / 90_000;
    opts.set("bufsize", &bufsize.max(rung.max_bitrate / 2).to_string());
    opts.set("forced-idr", "1");
    match choice.backend {
        Backend::Cpu => {
            opts.set("preset", rung.x264_preset.as_str());
            if let Some(tune) = rung.x264_tune.as_str() {
                opts.set("tune", tune);
            }
            opts.set("profile", rung.profile.as_str());
            // The rungs encode in parallel on their own threads, so each
            // encoder gets its share of the cores. With `zerolatency` x264
            // threads by slices, which adds no delay (frame threads would
            // add a frame per thread); on two cores and a three-rung
            // ladder that is one thread each, which measured fastest
            // (docs/BENCHMARKS.md, `transcode_ladder`).
            opts.set("threads", &threads.to_string());
            match rung.codec {
                // Scene cuts would put IDRs off the shared cadence.
                VideoCodec::H264 => opts.set("x264-params", "scenecut=0:open-gop=0"),
                VideoCodec::Hevc => {
                    opts.set("x265-params", "scenecut=0:open-gop=0:log-level=error")
                }
            }
        }
        Backend::Nvenc { ordinal } => {
            opts.set("gpu", &ordinal.to_string());
            opts.set("preset", rung.nvenc_preset.as_str());
            opts.set("tune", "ll");
            opts.set("rc", "vbr");
            opts.set("profile", rung.profile.as_str());
            opts.set("no-scenecut", "1");
            opts.set("zerolatency", "1");
            opts.set("bf", "0");
        }
    }
    opts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::{NvencPreset, VideoProfile, X264Preset, X264Tune};

    fn rung(frame_rate: (u32, u32), decimate: bool) -> PlannedRung {
        PlannedRung {
            name: "r".into(),
            width: 640,
            height: 360,
            frame_rate,
            decimate,
            bitrate: 800_000,
            max_bitrate: 880_000,
            codec: VideoCodec::H264,
            x264_preset: X264Preset::Veryfast,
            x264_tune: X264Tune::Zerolatency,
            nvenc_preset: NvencPreset::P4,
            profile: VideoProfile::High,
            shed_priority: 0,
        }
    }

    fn kept(d: &mut Decimator, pts: impl IntoIterator<Item = i64>, key_every: i64) -> Vec<i64> {
        pts.into_iter()
            .enumerate()
            .filter(|&(i, p)| d.keep(Time90k(p), i as i64 % key_every == 0))
            .map(|(_, p)| p)
            .collect()
    }

    #[test]
    fn decimates_60_to_30_keeping_keyframes() {
        let mut d = Decimator::new(&rung((30, 1), true));
        let out = kept(&mut d, (0..8).map(|k| k * 1500), 1000);
        assert_eq!(out, [0, 3000, 6000, 9000]);
        // A keyframe on an odd frame is kept, and the phase follows it.
        let mut d = Decimator::new(&rung((30, 1), true));
        let out = kept(&mut d, (0..6).map(|k| k * 1500), 3);
        assert_eq!(out, [0, 3000, 4500, 7500]);
        // 59.94 to 30: every other frame despite the uneven ticks.
        let mut d = Decimator::new(&rung((30, 1), true));
        let out = kept(&mut d, (0..6).map(|k| k * 1501 + k / 2), 1000);
        assert_eq!(out, [0, 3003, 6006]);
    }

    #[test]
    fn no_decimation_keeps_everything() {
        let mut d = Decimator::new(&rung((30, 1), false));
        assert_eq!(kept(&mut d, (0..5).map(|k| k * 1000), 1000).len(), 5);
    }

    #[test]
    fn extradata_is_annexb() {
        let params = CodecParams::H264(ferrocast_media::H264Params {
            sps: Bytes::from_static(&[0x67, 1]),
            pps: Bytes::from_static(&[0x68, 2]),
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 31,
            width: 16,
            height: 16,
            frame_rate: None,
        });
        assert_eq!(
            decoder_extradata(&params),
            [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2]
        );
    }

    #[test]
    fn encoder_options_per_backend() {
        let cadence = KeyframeCadence {
            interval: Time90k(180_000),
        };
        let cpu = encoder_options(
            &rung((30, 1), false),
            &EncoderChoice::cpu("test"),
            &cadence,
            2,
        );
        assert_eq!(cpu.get("preset"), Some("veryfast"));
        assert_eq!(cpu.get("tune"), Some("zerolatency"));
        assert_eq!(cpu.get("forced-idr"), Some("1"));
        assert_eq!(cpu.get("threads"), Some("2"));
        assert_eq!(cpu.get("bufsize"), Some("1760000"));
        assert!(
            cpu.get("x264-params")
                .is_some_and(|p| p.contains("scenecut=0"))
        );
        let gpu = EncoderChoice {
            backend: Backend::Nvenc { ordinal: 1 },
            reason: String::new(),
        };
        let nv = encoder_options(&rung((30, 1), false), &gpu, &cadence, 2);
        assert_eq!(nv.get("preset"), Some("p4"));
        assert_eq!(nv.get("gpu"), Some("1"));
        assert_eq!(nv.get("no-scenecut"), Some("1"));
        assert_eq!(nv.get("x264-params"), None);
    }
}
