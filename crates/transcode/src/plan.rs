//! From a ladder and a source track to what the transcoder will make: the
//! [`Plan`].
//!
//! Planning is pure arithmetic on the source's [`TrackInfo`]: it never
//! upscales (rungs taller than the source are dropped, keeping at least
//! one, brought down to the source's height), derives each width from the
//! source's aspect ratio, caps each rung's frame rate at the source's, and
//! fixes the keyframe cadence as a [`KeyframeCadence`] on the source's
//! 90 kHz clock, so that every rung gets its IDR frames at the same source
//! timestamps.
//!
//! ```
//! use ferrocast_transcode::ladder::{BuiltinLadder, Ladder};
//! use ferrocast_transcode::plan::plan;
//! # use ferrocast_media::{CodecParams, H264Params, TrackId, TrackInfo};
//! # let source = TrackInfo { id: TrackId(256), params: CodecParams::H264(H264Params {
//! #     sps: Default::default(), pps: Default::default(), profile_idc: 100,
//! #     constraint_flags: 0, level_idc: 31, width: 854, height: 480, frame_rate: Some((60, 1)) }) };
//! let plan = plan(&Ladder::builtin(BuiltinLadder::Default), &source).unwrap();
//! // 720p is dropped for a 480p source; 360p keeps the aspect ratio.
//! let sizes: Vec<_> = plan.rungs.iter().map(|r| (r.width, r.height)).collect();
//! assert_eq!(sizes, [(854, 480), (640, 360)]);
//! assert_eq!(plan.rungs[0].frame_rate, (30, 1));
//! ```
#![forbid(unsafe_code)]

use ferrocast_media::{CodecParams, Time90k, TrackId, TrackInfo};

use crate::ladder::{
    Ladder, LadderError, NvencPreset, Rung, VideoCodec, VideoProfile, X264Preset, X264Tune,
};

/// Why a source cannot be planned for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The ladder itself is invalid.
    #[error(transparent)]
    Ladder(#[from] LadderError),
    /// The source track is not H.264, HEVC or AV1 video.
    #[error("track {track}: {codec} cannot be transcoded (H.264, HEVC or AV1 video only)")]
    UnsupportedSource {
        /// The source track.
        track: u16,
        /// Its codec string.
        codec: String,
    },
    /// The source's dimensions are unusable.
    #[error("track {track}: source size {width}x{height} is unusable")]
    BadSourceSize {
        /// The source track.
        track: u16,
        /// Source width.
        width: u32,
        /// Source height.
        height: u32,
    },
}

/// The source codec the decoder must handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceCodec {
    /// H.264 Annex-B.
    H264,
    /// HEVC Annex-B.
    Hevc,
    /// AV1 temporal units (low overhead format, sized OBUs), decoded by
    /// libdav1d.
    Av1,
}

/// One rung as it will be encoded for this source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRung {
    /// Rendition name from the ladder.
    pub name: String,
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Output frame rate as (numerator, denominator): the source's, capped
    /// at the rung's `max_fps`.
    pub frame_rate: (u32, u32),
    /// True when the source is faster than `frame_rate` and frames are
    /// dropped to reach it.
    pub decimate: bool,
    /// Target bitrate, bit/s.
    pub bitrate: u64,
    /// Peak bitrate (VBV maxrate), bit/s.
    pub max_bitrate: u64,
    /// Output codec.
    pub codec: VideoCodec,
    /// x264/x265 preset.
    pub x264_preset: X264Preset,
    /// x264/x265 tuning.
    pub x264_tune: X264Tune,
    /// NVENC preset.
    pub nvenc_preset: NvencPreset,
    /// Codec profile.
    pub profile: VideoProfile,
    /// Shedding order under overload (higher first); see
    /// [`Rung::shed_priority`].
    pub shed_priority: u32,
}

impl PlannedRung {
    /// Pixels per second this rung encodes: its cost when choosing what
    /// to shed.
    pub fn pixel_rate(&self) -> u64 {
        let (num, den) = self.frame_rate;
        u64::from(self.width) * u64::from(self.height) * u64::from(num) / u64::from(den.max(1))
    }

    /// The output frame interval in 90 kHz ticks (rounded down).
    pub fn frame_interval(&self) -> Time90k {
        let (num, den) = self.frame_rate;
        Time90k(90_000 * i64::from(den) / i64::from(num.max(1)))
    }
}

/// Where IDR frames go: at the first frame whose PTS is on or after each
/// multiple of `interval` on the source's 90 kHz clock, and at the very
/// first frame.
///
/// Because the grid is absolute (multiples of the interval, not counted
/// from the first frame), every rung — and a second transcoder taking the
/// same stream over after a failure — puts its keyframes on the same source
/// frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeCadence {
    /// Grid spacing.
    pub interval: Time90k,
}

impl KeyframeCadence {
    /// The grid cell `pts` falls in.
    pub fn slot(&self, pts: Time90k) -> i64 {
        pts.0.div_euclid(self.interval.0.max(1))
    }

    /// The grid times in `[from, to)`.
    pub fn times(&self, from: Time90k, to: Time90k) -> impl Iterator<Item = Time90k> + use<> {
        let step = self.interval.0.max(1);
        let first = from.0.div_euclid(step) * step;
        let first = if first < from.0 { first + step } else { first };
        (0..)
            .map(move |k| Time90k(first + k * step))
            .take_while(move |t| t.0 < to.0)
    }

    /// A tracker deciding frame by frame, in presentation order.
    pub fn tracker(self) -> KeyframeTracker {
        KeyframeTracker {
            cadence: self,
            last_slot: None,
        }
    }
}

/// Decides, frame by frame in presentation order, which frames must be IDR
/// frames (see [`KeyframeCadence`]).
#[derive(Debug, Clone)]
pub struct KeyframeTracker {
    cadence: KeyframeCadence,
    last_slot: Option<i64>,
}

impl KeyframeTracker {
    /// True if the frame at `pts` must be an IDR frame: the first frame, the
    /// first frame in a new grid cell, and the first frame after the
    /// timeline jumped backwards.
    pub fn is_keyframe(&mut self, pts: Time90k) -> bool {
        let slot = self.cadence.slot(pts);
        let key = self.last_slot != Some(slot);
        self.last_slot = Some(slot);
        key
    }

    /// Forget the past: the next frame is a keyframe (after a
    /// discontinuity).
    pub fn reset(&mut self) {
        self.last_slot = None;
    }
}

/// Where IDR frames go on every rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeMode {
    /// On the plan's fixed [`KeyframeCadence`] (an absolute grid on the
    /// source clock). The default: segments line up across rungs whatever
    /// the source's own GOP structure.
    Cadence,
    /// Exactly on the source's keyframes (the access units the bus marks
    /// as keyframes), and nowhere else, so that rung segments line up with
    /// those of the untouched source rendition, which can only be cut at
    /// its own keyframes. Used when the ladder has `source_passthrough`.
    FollowSource,
}

/// Source keyframes remembered by [`KeyframeDecider`] in
/// [`KeyframeMode::FollowSource`]: more than any decoder's reorder delay.
const MAX_PENDING_SOURCE_KEYFRAMES: usize = 64;

/// Decides, per decoded frame, whether every rung codes it as an IDR
/// frame, in either [`KeyframeMode`]. Sans-IO: it is told about source
/// units as they are pushed and asked about frames as they are decoded.
#[derive(Debug, Clone)]
pub struct KeyframeDecider {
    mode: KeyframeMode,
    cadence: KeyframeTracker,
    /// PTS of source keyframes pushed and not yet decoded.
    source_keyframes: std::collections::VecDeque<Time90k>,
}

impl KeyframeDecider {
    /// A decider for `mode`; `cadence` is used in [`KeyframeMode::Cadence`].
    pub fn new(mode: KeyframeMode, cadence: KeyframeCadence) -> Self {
        KeyframeDecider {
            mode,
            cadence: cadence.tracker(),
            source_keyframes: std::collections::VecDeque::new(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> KeyframeMode {
        self.mode
    }

    /// A source video unit was pushed to the decoder.
    pub fn source_unit(&mut self, pts: Time90k, keyframe: bool) {
        if self.mode == KeyframeMode::FollowSource && keyframe {
            if self.source_keyframes.len() == MAX_PENDING_SOURCE_KEYFRAMES {
                self.source_keyframes.pop_front();
            }
            self.source_keyframes.push_back(pts);
        }
    }

    /// True if the decoded frame at `pts` must be an IDR frame on every
    /// rung.
    pub fn is_keyframe(&mut self, pts: Time90k) -> bool {
        match self.mode {
            KeyframeMode::Cadence => self.cadence.is_keyframe(pts),
            KeyframeMode::FollowSource => {
                match self.source_keyframes.iter().position(|&k| k == pts) {
                    Some(i) => {
                        // Keyframes older than this one were never decoded
                        // (damaged input): forget them.
                        self.source_keyframes.drain(..=i);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// The timeline broke: in cadence mode the next frame is a keyframe;
    /// in follow-source mode the source's next keyframe is.
    pub fn reset(&mut self) {
        self.cadence.reset();
    }
}

/// What the transcoder will make from one source video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Ladder name.
    pub ladder: String,
    /// The source video track.
    pub source: TrackInfo,
    /// Source codec.
    pub source_codec: SourceCodec,
    /// Source width and height.
    pub source_size: (u32, u32),
    /// Source frame rate, when its SPS says.
    pub source_frame_rate: Option<(u32, u32)>,
    /// The rungs to encode, tallest first.
    pub rungs: Vec<PlannedRung>,
    /// The nominal keyframe interval: where IDR frames go in
    /// [`KeyframeMode::Cadence`], and the interval encoders size their
    /// rate-control buffer for in either mode.
    pub cadence: KeyframeCadence,
    /// Where every rung's IDR frames go: [`KeyframeMode::FollowSource`]
    /// when the source is offered untouched too (so every rendition can
    /// be cut at the same times), [`KeyframeMode::Cadence`] otherwise.
    pub keyframes: KeyframeMode,
    /// Offer the source video untouched too.
    pub source_passthrough: bool,
    /// AAC bitrate for re-encoded audio, bit/s.
    pub audio_bitrate: u64,
}

impl Plan {
    /// The source video track's id (also every rung's output track id).
    pub fn video_track(&self) -> TrackId {
        self.source.id
    }
}

/// Plans `ladder` for the `source` video track.
///
/// Rungs taller than the source are dropped; if that drops them all, the
/// tallest rung is kept at the source's height. Rung widths follow the
/// source's display aspect ratio (square pixels assumed), rounded to even.
/// Two rungs that come out the same size after that are both kept (they
/// may differ in bitrate).
pub fn plan(ladder: &Ladder, source: &TrackInfo) -> Result<Plan, PlanError> {
    ladder.validate()?;
    let (source_codec, (width, height), frame_rate) = match &source.params {
        CodecParams::H264(p) => (SourceCodec::H264, (p.width, p.height), p.frame_rate),
        CodecParams::H265(p) => (SourceCodec::Hevc, (p.width, p.height), p.frame_rate),
        CodecParams::Av1(p) => (SourceCodec::Av1, (p.width, p.height), p.frame_rate),
        other => {
            return Err(PlanError::UnsupportedSource {
                track: source.id.0,
                codec: other.codec_string(),
            });
        }
    };
    if width < 16 || height < 16 {
        return Err(PlanError::BadSourceSize {
            track: source.id.0,
            width,
            height,
        });
    }
    let frame_rate = frame_rate.filter(|&(n, d)| n > 0 && d > 0);
    let mut rungs: Vec<&Rung> = ladder.rungs.iter().collect();
    rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
    let fitting: Vec<&Rung> = rungs
        .iter()
        .copied()
        .filter(|r| r.height <= height)
        .collect();
    let (chosen, clamp) = match (fitting.is_empty(), rungs.first()) {
        (false, _) => (fitting, false),
        (true, Some(&tallest)) => (vec![tallest], true),
        (true, None) => (Vec::new(), false),
    };
    let rungs = chosen
        .into_iter()
        .map(|r| {
            let out_height = if clamp { even(height) } else { r.height };
            let out_width = match r.width {
                Some(w) if !clamp => w,
                _ => even_width(width, height, out_height),
            };
            let (frame_rate, decimate) = cap_frame_rate(frame_rate, r.max_fps);
            PlannedRung {
                name: r.name.clone(),
                width: out_width,
                height: out_height,
                frame_rate,
                decimate,
                bitrate: u64::from(r.video_bitrate_kbps) * 1000,
                max_bitrate: u64::from(r.effective_max_bitrate_kbps()) * 1000,
                codec: r.codec,
                x264_preset: r.x264_preset,
                x264_tune: r.x264_tune,
                nvenc_preset: r.nvenc_preset,
                profile: r.effective_profile(),
                shed_priority: r.shed_priority,
            }
        })
        .collect();
    Ok(Plan {
        ladder: ladder.name.clone(),
        source: source.clone(),
        source_codec,
        source_size: (width, height),
        source_frame_rate: frame_rate,
        rungs,
        cadence: KeyframeCadence {
            interval: Time90k::from_millis(i64::from(ladder.keyframe_interval_ms)),
        },
        keyframes: if ladder.source_passthrough {
            KeyframeMode::FollowSource
        } else {
            KeyframeMode::Cadence
        },
        source_passthrough: ladder.source_passthrough,
        audio_bitrate: u64::from(ladder.audio_bitrate_kbps) * 1000,
    })
}

fn even(v: u32) -> u32 {
    (v & !1).max(2)
}

/// Width for `out_height` keeping `width:height`, rounded to the nearest
/// even number.
fn even_width(width: u32, height: u32, out_height: u32) -> u32 {
    let exact = u64::from(width) * u64::from(out_height);
    let h = u64::from(height);
    // Nearest multiple of 2 of exact / h: round(exact / (2h)) * 2.
    let w = (exact + h) / (2 * h) * 2;
    u32::try_from(w).unwrap_or(!1).max(2)
}

/// The rung's output frame rate and whether frames must be dropped to get
/// there. An unknown source rate is taken as `max_fps` (the encoder only
/// uses the rate for rate control; timestamps come from the frames).
fn cap_frame_rate(source: Option<(u32, u32)>, max_fps: u32) -> ((u32, u32), bool) {
    match source {
        Some((n, d)) if u64::from(n) > u64::from(max_fps) * u64::from(d) => ((max_fps, 1), true),
        Some(rate) => (rate, false),
        None => ((max_fps, 1), false),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrocast_media::{AacParams, H264Params};

    use super::*;
    use crate::ladder::BuiltinLadder;

    fn source(width: u32, height: u32, frame_rate: Option<(u32, u32)>) -> TrackInfo {
        TrackInfo {
            id: TrackId(256),
            params: CodecParams::H264(H264Params {
                sps: Bytes::new(),
                pps: Bytes::new(),
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 40,
                width,
                height,
                frame_rate,
            }),
        }
    }

    fn sizes(plan: &Plan) -> Vec<(u32, u32)> {
        plan.rungs.iter().map(|r| (r.width, r.height)).collect()
    }

    #[test]
    fn full_ladder_for_1080p() {
        let p = plan(
            &Ladder::builtin(BuiltinLadder::Default),
            &source(1920, 1080, Some((30, 1))),
        )
        .unwrap();
        assert_eq!(sizes(&p), [(1280, 720), (854, 480), (640, 360)]);
        assert!(
            p.rungs
                .iter()
                .all(|r| r.frame_rate == (30, 1) && !r.decimate)
        );
        assert_eq!(p.rungs[0].bitrate, 3_000_000);
        assert_eq!(p.rungs[0].max_bitrate, 3_300_000);
        assert_eq!(p.cadence.interval, Time90k(90_000));
        assert_eq!(p.source_codec, SourceCodec::H264);
    }

    #[test]
    fn never_upscales() {
        let ladder = Ladder::builtin(BuiltinLadder::Default);
        let p = plan(&ladder, &source(640, 360, None)).unwrap();
        assert_eq!(sizes(&p), [(640, 360)]);
        // Below every rung: the tallest is kept at the source's size.
        let p = plan(&ladder, &source(320, 180, None)).unwrap();
        assert_eq!(sizes(&p), [(320, 180)]);
        assert_eq!(p.rungs[0].name, "720p");
        // Odd source sizes come out even.
        let p = plan(&ladder, &source(333, 201, None)).unwrap();
        assert_eq!(sizes(&p), [(332, 200)]);
    }

    #[test]
    fn width_follows_aspect_ratio() {
        let ladder = Ladder::builtin(BuiltinLadder::Default);
        // 4:3
        let p = plan(&ladder, &source(1440, 1080, None)).unwrap();
        assert_eq!(sizes(&p), [(960, 720), (640, 480), (480, 360)]);
        // Portrait 9:16: the height still drives.
        let p = plan(&ladder, &source(1080, 1920, None)).unwrap();
        assert_eq!(sizes(&p), [(406, 720), (270, 480), (202, 360)]);
        // Forced width is honoured.
        let mut ladder = ladder;
        ladder.rungs[0].width = Some(1000);
        let p = plan(&ladder, &source(1920, 1080, None)).unwrap();
        assert_eq!(p.rungs[0].width, 1000);
    }

    #[test]
    fn caps_frame_rate() {
        let ladder = Ladder::builtin(BuiltinLadder::Default);
        let p = plan(&ladder, &source(1920, 1080, Some((60, 1)))).unwrap();
        assert!(
            p.rungs
                .iter()
                .all(|r| r.frame_rate == (30, 1) && r.decimate)
        );
        let p = plan(&ladder, &source(1920, 1080, Some((30000, 1001)))).unwrap();
        assert!(
            p.rungs
                .iter()
                .all(|r| r.frame_rate == (30000, 1001) && !r.decimate)
        );
        assert_eq!(p.rungs[0].frame_interval(), Time90k(3003));
        let p = plan(&ladder, &source(1920, 1080, Some((25, 1)))).unwrap();
        assert_eq!(p.rungs[0].frame_rate, (25, 1));
        let p = plan(&ladder, &source(1920, 1080, None)).unwrap();
        assert_eq!(p.rungs[0].frame_rate, (30, 1));
    }

    #[test]
    fn refuses_audio_and_tiny_sources() {
        let aac = TrackInfo {
            id: TrackId(257),
            params: CodecParams::Aac(AacParams {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
            }),
        };
        let ladder = Ladder::builtin(BuiltinLadder::Default);
        assert!(matches!(
            plan(&ladder, &aac),
            Err(PlanError::UnsupportedSource { .. })
        ));
        assert!(matches!(
            plan(&ladder, &source(8, 8, None)),
            Err(PlanError::BadSourceSize { .. })
        ));
    }

    #[test]
    fn passthrough_follows_source_keyframes() {
        let mut ladder = Ladder::builtin(BuiltinLadder::Default);
        let p = plan(&ladder, &source(1280, 720, None)).unwrap();
        assert_eq!(p.keyframes, KeyframeMode::Cadence);
        ladder.source_passthrough = true;
        let p = plan(&ladder, &source(1280, 720, None)).unwrap();
        assert_eq!(p.keyframes, KeyframeMode::FollowSource);
    }

    #[test]
    fn follow_source_forces_idr_exactly_on_source_keyframes() {
        let cadence = KeyframeCadence {
            interval: Time90k(180_000),
        };
        // 25 fps with B-frames: pushed in decode order, decoded in
        // presentation order. Source keyframes every 1.44 s (36 frames),
        // off the 2 s grid on purpose.
        let mut d = KeyframeDecider::new(KeyframeMode::FollowSource, cadence);
        let frame = |k: i64| Time90k(10_000 + 3600 * k);
        let is_source_key = |k: i64| k % 36 == 0;
        let mut keys = Vec::new();
        for k in 0..120 {
            d.source_unit(frame(k), is_source_key(k));
            // The decoder hands frames out two behind.
            if k >= 2 && d.is_keyframe(frame(k - 2)) {
                keys.push(k - 2);
            }
        }
        assert_eq!(keys, [0, 36, 72, 108]);
        // The fixed cadence on the same frames: the first frame and each
        // multiple of 2 s instead.
        let mut c = KeyframeDecider::new(KeyframeMode::Cadence, cadence);
        let keys: Vec<i64> = (0..120)
            .filter(|&k| {
                c.source_unit(frame(k), is_source_key(k));
                c.is_keyframe(frame(k))
            })
            .collect();
        assert_eq!(keys, [0, 48, 98]);
        // A source keyframe that never decoded (damaged) is forgotten when
        // a later one decodes; a reset does not invent a keyframe.
        let mut d = KeyframeDecider::new(KeyframeMode::FollowSource, cadence);
        d.source_unit(Time90k(0), true);
        d.source_unit(Time90k(3600), false);
        d.source_unit(Time90k(7200), true);
        assert!(!d.is_keyframe(Time90k(3600)));
        assert!(d.is_keyframe(Time90k(7200)));
        assert!(!d.is_keyframe(Time90k(0)));
        d.reset();
        assert!(!d.is_keyframe(Time90k(10_800)));
        // Bounded memory.
        for k in 0..1000 {
            d.source_unit(Time90k(k), true);
        }
        assert_eq!(d.source_keyframes.len(), MAX_PENDING_SOURCE_KEYFRAMES);
    }

    #[test]
    fn keyframes_on_an_absolute_grid() {
        let cadence = KeyframeCadence {
            interval: Time90k(180_000),
        };
        // 30 fps from 1.4 s: frames at 126000 + 3000 k.
        let mut t = cadence.tracker();
        let keys: Vec<i64> = (0..190)
            .map(|k| Time90k(126_000 + 3000 * k))
            .filter(|&pts| t.is_keyframe(pts))
            .map(|t| t.0)
            .collect();
        assert_eq!(keys, [126_000, 180_000, 360_000, 540_000]);
        assert_eq!(
            cadence
                .times(Time90k(126_000), Time90k(540_001))
                .map(|t| t.0)
                .collect::<Vec<_>>(),
            [180_000, 360_000, 540_000]
        );
        // Frames that straddle the grid (29.97 fps): first frame at or after.
        let mut t = cadence.tracker();
        let keys: Vec<i64> = (0..130)
            .map(|k| Time90k(1 + 3003 * k))
            .filter(|&pts| t.is_keyframe(pts))
            .map(|t| t.0)
            .collect();
        assert_eq!(keys, [1, 180_181, 360_361]);
        // A jump backwards (a discontinuity) starts a keyframe at once.
        let mut t = cadence.tracker();
        assert!(t.is_keyframe(Time90k(500_000)));
        assert!(!t.is_keyframe(Time90k(503_000)));
        assert!(t.is_keyframe(Time90k(10)));
        t.reset();
        assert!(t.is_keyframe(Time90k(13)));
        // Negative times are on the same grid.
        assert_eq!(cadence.slot(Time90k(-1)), -1);
    }
}
