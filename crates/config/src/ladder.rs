//! Ladder profiles: which renditions to make from a source, as an operator
//! writes them in TOML (or the database stores them as JSON).
//!
//! A [`Ladder`] is a named list of [`Rung`]s plus the keyframe cadence every
//! rung shares. Rungs are *height-driven*: the width follows the source's
//! aspect ratio (see `ferrocast_transcode::plan`), so one ladder serves 16:9, 4:3 and
//! portrait sources alike. [`Ladder::builtin`] gives the documented
//! defaults; [`LadderSet`] is what a config file holds (`[[ladders]]`).
//!
//! The schema lives here, in the configuration crate, so that a typo in a
//! ladder is an error when the configuration is built; the transcoder
//! (`ferrocast-transcode`) re-exports this module as its `ladder`.
//!
//! ```
//! use ferrocast_config::ladder::{BuiltinLadder, Ladder};
//!
//! let ladder = Ladder::builtin(BuiltinLadder::Default);
//! assert_eq!(ladder.rungs.iter().map(|r| r.height).collect::<Vec<_>>(), [720, 480, 360]);
//! ladder.validate().unwrap();
//! ```
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Output video codec of a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    /// H.264 / AVC: libx264, or `h264_nvenc` on a GPU. Plays everywhere.
    #[default]
    H264,
    /// H.265 / HEVC: libx265, or `hevc_nvenc` on a GPU.
    Hevc,
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
        })
    }
}

/// x264/x265 speed preset (`-preset`), fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // the names are x264's own
pub enum X264Preset {
    Ultrafast,
    Superfast,
    #[default]
    Veryfast,
    Faster,
    Fast,
    Medium,
    Slow,
    Slower,
    Veryslow,
}

impl X264Preset {
    /// The name x264 and x265 take.
    pub fn as_str(self) -> &'static str {
        match self {
            X264Preset::Ultrafast => "ultrafast",
            X264Preset::Superfast => "superfast",
            X264Preset::Veryfast => "veryfast",
            X264Preset::Faster => "faster",
            X264Preset::Fast => "fast",
            X264Preset::Medium => "medium",
            X264Preset::Slow => "slow",
            X264Preset::Slower => "slower",
            X264Preset::Veryslow => "veryslow",
        }
    }
}

/// x264/x265 tuning (`-tune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum X264Tune {
    /// No B-frames, no lookahead, sliced threads: a frame leaves the encoder
    /// as soon as it is coded. The live default.
    #[default]
    Zerolatency,
    /// No tuning: better compression, but the encoder holds frames back
    /// (lookahead and B-frames), adding latency.
    None,
    /// Film content.
    Film,
    /// Animation.
    Animation,
    /// Cheaper decoding (no CABAC, deblocking or weighted prediction).
    Fastdecode,
}

impl X264Tune {
    /// The name x264 takes, `None` for no tuning.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            X264Tune::Zerolatency => Some("zerolatency"),
            X264Tune::None => None,
            X264Tune::Film => Some("film"),
            X264Tune::Animation => Some("animation"),
            X264Tune::Fastdecode => Some("fastdecode"),
        }
    }
}

/// NVENC preset (`-preset p1` .. `p7`, fastest to best quality), used when
/// the rung is encoded on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // NVIDIA's names
pub enum NvencPreset {
    P1,
    P2,
    P3,
    #[default]
    P4,
    P5,
    P6,
    P7,
}

impl NvencPreset {
    /// The name `h264_nvenc` and `hevc_nvenc` take.
    pub fn as_str(self) -> &'static str {
        match self {
            NvencPreset::P1 => "p1",
            NvencPreset::P2 => "p2",
            NvencPreset::P3 => "p3",
            NvencPreset::P4 => "p4",
            NvencPreset::P5 => "p5",
            NvencPreset::P6 => "p6",
            NvencPreset::P7 => "p7",
        }
    }
}

/// Codec profile of a rung's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoProfile {
    /// H.264 Constrained Baseline: old phones and set-top boxes.
    Baseline,
    /// H.264 Main, or HEVC Main (8-bit; the default and only choice for
    /// HEVC rungs).
    Main,
    /// H.264 High (the default for H.264 rungs).
    High,
}

impl VideoProfile {
    /// The name the encoders take (`-profile`).
    pub fn as_str(self) -> &'static str {
        match self {
            VideoProfile::Baseline => "baseline",
            VideoProfile::Main => "main",
            VideoProfile::High => "high",
        }
    }
}

/// One rendition of a ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Rendition name, used in URLs (`720p`); `[A-Za-z0-9_-]`, unique in the
    /// ladder, and not `source` (the passthrough rung's name).
    pub name: String,
    /// Output height in pixels (even). The width follows the source's
    /// aspect ratio, rounded to an even number.
    pub height: u32,
    /// Output width in pixels (even), to force an aspect ratio; normally
    /// left out.
    #[serde(default)]
    pub width: Option<u32>,
    /// Target video bitrate in kbit/s.
    pub video_bitrate_kbps: u32,
    /// Peak bitrate in kbit/s (VBV maxrate). Default: 110% of the target.
    #[serde(default)]
    pub max_bitrate_kbps: Option<u32>,
    /// Highest frame rate of this rung; a faster source is decimated.
    /// Default 30.
    #[serde(default = "default_max_fps")]
    pub max_fps: u32,
    /// Output codec. Default `h264`.
    #[serde(default)]
    pub codec: VideoCodec,
    /// x264/x265 preset. Default `veryfast`.
    #[serde(default)]
    pub x264_preset: X264Preset,
    /// x264/x265 tuning. Default `zerolatency`.
    #[serde(default)]
    pub x264_tune: X264Tune,
    /// NVENC preset. Default `p4`.
    #[serde(default)]
    pub nvenc_preset: NvencPreset,
    /// Codec profile. Default: High for H.264, Main for HEVC.
    #[serde(default)]
    pub profile: Option<VideoProfile>,
    /// Order in which rungs are shed when the transcoder cannot keep up
    /// with live: higher values go first; rungs with equal values (by
    /// default all, 0) go most expensive first (highest pixel rate:
    /// width x height x frame rate). The last remaining rung is never shed.
    #[serde(default)]
    pub shed_priority: u32,
}

fn default_max_fps() -> u32 {
    30
}

impl Rung {
    /// A rung with the defaults for everything but name, height and bitrate.
    pub fn new(name: &str, height: u32, video_bitrate_kbps: u32) -> Self {
        Rung {
            name: name.to_owned(),
            height,
            width: None,
            video_bitrate_kbps,
            max_bitrate_kbps: None,
            max_fps: default_max_fps(),
            codec: VideoCodec::H264,
            x264_preset: X264Preset::default(),
            x264_tune: X264Tune::default(),
            nvenc_preset: NvencPreset::default(),
            profile: None,
            shed_priority: 0,
        }
    }

    /// The profile to ask the encoder for.
    pub fn effective_profile(&self) -> VideoProfile {
        self.profile.unwrap_or(match self.codec {
            VideoCodec::H264 => VideoProfile::High,
            VideoCodec::Hevc => VideoProfile::Main,
        })
    }

    /// The VBV peak bitrate in kbit/s.
    pub fn effective_max_bitrate_kbps(&self) -> u32 {
        self.max_bitrate_kbps
            .unwrap_or(self.video_bitrate_kbps.saturating_mul(11) / 10)
    }
}

/// Default of [`Ladder::keyframe_interval_ms`]: the default HLS
/// `segment_min_ms`, so that with the default 2 s target duration every
/// segment can close on a keyframe (one GOP per segment, the first one
/// up to two).
pub const DEFAULT_KEYFRAME_INTERVAL_MS: u32 = 1000;

/// Default of [`Ladder::audio_bitrate_kbps`].
pub const DEFAULT_AUDIO_BITRATE_KBPS: u32 = 128;

/// A named ladder profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// Profile name (`default`, `small`, or the operator's own).
    pub name: String,
    /// Renditions, any order; `ferrocast_transcode::plan::plan` sorts them tallest
    /// first.
    pub rungs: Vec<Rung>,
    /// Every rung gets an IDR at the first frame on or after each multiple
    /// of this interval on the source's 90 kHz clock, so segments (one GOP
    /// each) line up across renditions. Default 1000 ms. It must leave the
    /// packager a keyframe to cut at: `ferrocast up` lowers an interval
    /// longer than half of (target duration + 0.5 s) to `hls.segment_min_ms`.
    #[serde(default = "default_keyframe_interval_ms")]
    pub keyframe_interval_ms: u32,
    /// Also offer the source video untouched as a rendition named
    /// `source`. Its keyframes are the source's, not on the cadence.
    /// Default false.
    #[serde(default)]
    pub source_passthrough: bool,
    /// AAC bitrate in kbit/s for audio that must be re-encoded (Opus in);
    /// AAC in passes through. Default 128.
    #[serde(default = "default_audio_bitrate_kbps")]
    pub audio_bitrate_kbps: u32,
}

fn default_keyframe_interval_ms() -> u32 {
    DEFAULT_KEYFRAME_INTERVAL_MS
}

fn default_audio_bitrate_kbps() -> u32 {
    DEFAULT_AUDIO_BITRATE_KBPS
}

/// The ladders that ship with Ferrocast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinLadder {
    /// 720p 3000 kbit/s, 480p 1500 kbit/s, 360p 800 kbit/s, all H.264
    /// High, `veryfast`/`zerolatency`, ≤ 30 fps, 2 s keyframes. About
    /// 2.5 cores of a current x86 CPU per 1080p30 source on libx264.
    Default,
    /// For small machines: 480p 1200 kbit/s and 360p 700 kbit/s with
    /// `superfast`, ≤ 30 fps. Roughly a third of the default's CPU.
    Small,
}

impl BuiltinLadder {
    /// The profile's name (`default`, `small`).
    pub fn name(self) -> &'static str {
        match self {
            BuiltinLadder::Default => "default",
            BuiltinLadder::Small => "small",
        }
    }

    /// Every built-in ladder.
    pub const ALL: [BuiltinLadder; 2] = [BuiltinLadder::Default, BuiltinLadder::Small];
}

/// Why a ladder cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LadderError {
    /// The ladder has no rungs and no passthrough.
    #[error("ladder {ladder:?} has no rungs")]
    Empty {
        /// Ladder name.
        ladder: String,
    },
    /// A rung's name is empty, not `[A-Za-z0-9_-]`, or `source`.
    #[error(
        "ladder {ladder:?}: rung name {rung:?} must be 1-32 of [A-Za-z0-9_-] and not \"source\" or \"audio\""
    )]
    BadName {
        /// Ladder name.
        ladder: String,
        /// Rung name.
        rung: String,
    },
    /// Two rungs share a name.
    #[error("ladder {ladder:?}: rung name {rung:?} used twice")]
    DuplicateName {
        /// Ladder name.
        ladder: String,
        /// Rung name.
        rung: String,
    },
    /// A dimension is odd, zero or beyond 8192.
    #[error("ladder {ladder:?}, rung {rung:?}: {field} = {value} must be even and in 16..=8192")]
    BadDimension {
        /// Ladder name.
        ladder: String,
        /// Rung name.
        rung: String,
        /// `height` or `width`.
        field: &'static str,
        /// The value given.
        value: u32,
    },
    /// A bitrate or frame rate is zero, or the peak is below the target.
    #[error("ladder {ladder:?}, rung {rung:?}: {what}")]
    BadRate {
        /// Ladder name.
        ladder: String,
        /// Rung name.
        rung: String,
        /// What is wrong.
        what: &'static str,
    },
    /// A profile that the rung's codec does not have.
    #[error("ladder {ladder:?}, rung {rung:?}: profile {profile:?} is not a {codec} profile")]
    ProfileMismatch {
        /// Ladder name.
        ladder: String,
        /// Rung name.
        rung: String,
        /// The profile given.
        profile: VideoProfile,
        /// The rung's codec.
        codec: VideoCodec,
    },
    /// The keyframe interval is outside 250 ms..=10 s.
    #[error("ladder {ladder:?}: keyframe_interval_ms = {value} must be in 250..=10000")]
    BadKeyframeInterval {
        /// Ladder name.
        ladder: String,
        /// The value given.
        value: u32,
    },
    /// No ladder of that name in a [`LadderSet`].
    #[error("no ladder named {name:?} (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Comma-separated names that exist.
        known: String,
    },
}

impl Ladder {
    /// One of the built-in ladders (documented on [`BuiltinLadder`]).
    pub fn builtin(which: BuiltinLadder) -> Ladder {
        let (rungs, preset) = match which {
            BuiltinLadder::Default => (
                vec![
                    Rung::new("720p", 720, 3000),
                    Rung::new("480p", 480, 1500),
                    Rung::new("360p", 360, 800),
                ],
                X264Preset::Veryfast,
            ),
            BuiltinLadder::Small => (
                vec![Rung::new("480p", 480, 1200), Rung::new("360p", 360, 700)],
                X264Preset::Superfast,
            ),
        };
        Ladder {
            name: which.name().to_owned(),
            rungs: rungs
                .into_iter()
                .map(|r| Rung {
                    x264_preset: preset,
                    ..r
                })
                .collect(),
            keyframe_interval_ms: DEFAULT_KEYFRAME_INTERVAL_MS,
            source_passthrough: false,
            audio_bitrate_kbps: DEFAULT_AUDIO_BITRATE_KBPS,
        }
    }

    /// The built-in ladder that suits a machine with `cpus` cores and no
    /// usable GPU: [`BuiltinLadder::Small`] below 4 cores,
    /// [`BuiltinLadder::Default`] otherwise. With NVENC, always the
    /// default.
    pub fn builtin_for_machine(cpus: usize, nvenc: bool) -> BuiltinLadder {
        if nvenc || cpus >= 4 {
            BuiltinLadder::Default
        } else {
            BuiltinLadder::Small
        }
    }

    /// Checks everything `ferrocast_transcode::plan::plan` relies on.
    pub fn validate(&self) -> Result<(), LadderError> {
        let ladder = || self.name.clone();
        if self.rungs.is_empty() && !self.source_passthrough {
            return Err(LadderError::Empty { ladder: ladder() });
        }
        if !(250..=10_000).contains(&self.keyframe_interval_ms) {
            return Err(LadderError::BadKeyframeInterval {
                ladder: ladder(),
                value: self.keyframe_interval_ms,
            });
        }
        let mut names = HashSet::new();
        for rung in &self.rungs {
            let name_ok = (1..=32).contains(&rung.name.len())
                && rung
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                && rung.name != "source"
                // The audio rendition's name, with `hls.audio = "separate"`.
                && rung.name != "audio";
            if !name_ok {
                return Err(LadderError::BadName {
                    ladder: ladder(),
                    rung: rung.name.clone(),
                });
            }
            if !names.insert(rung.name.as_str()) {
                return Err(LadderError::DuplicateName {
                    ladder: ladder(),
                    rung: rung.name.clone(),
                });
            }
            let dims = [("height", Some(rung.height)), ("width", rung.width)];
            for (field, value) in dims {
                if let Some(value) = value
                    && (value % 2 != 0 || !(16..=8192).contains(&value))
                {
                    return Err(LadderError::BadDimension {
                        ladder: ladder(),
                        rung: rung.name.clone(),
                        field,
                        value,
                    });
                }
            }
            let bad_rate = |what| LadderError::BadRate {
                ladder: ladder(),
                rung: rung.name.clone(),
                what,
            };
            if rung.video_bitrate_kbps == 0 {
                return Err(bad_rate("video_bitrate_kbps must be above zero"));
            }
            if rung.effective_max_bitrate_kbps() < rung.video_bitrate_kbps {
                return Err(bad_rate("max_bitrate_kbps is below video_bitrate_kbps"));
            }
            if !(1..=240).contains(&rung.max_fps) {
                return Err(bad_rate("max_fps must be in 1..=240"));
            }
            let profile = rung.effective_profile();
            let fits = match rung.codec {
                VideoCodec::H264 => true,
                VideoCodec::Hevc => profile == VideoProfile::Main,
            };
            if !fits {
                return Err(LadderError::ProfileMismatch {
                    ladder: ladder(),
                    rung: rung.name.clone(),
                    profile,
                    codec: rung.codec,
                });
            }
        }
        Ok(())
    }
}

/// The ladders a deployment knows: the built-ins plus the operator's own
/// (`[[ladders]]` in TOML), looked up by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LadderSet {
    /// Operator-defined ladders; one named like a built-in replaces it.
    pub ladders: Vec<Ladder>,
}

impl LadderSet {
    /// The ladder called `name`: the operator's if defined, else a
    /// built-in; validated.
    pub fn get(&self, name: &str) -> Result<Ladder, LadderError> {
        let found = self
            .ladders
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .or_else(|| {
                BuiltinLadder::ALL
                    .into_iter()
                    .find(|b| b.name() == name)
                    .map(Ladder::builtin)
            });
        let Some(ladder) = found else {
            let mut known: Vec<&str> = BuiltinLadder::ALL.iter().map(|b| b.name()).collect();
            known.extend(self.ladders.iter().map(|l| l.name.as_str()));
            known.sort_unstable();
            known.dedup();
            return Err(LadderError::Unknown {
                name: name.to_owned(),
                known: known.join(", "),
            });
        };
        ladder.validate()?;
        Ok(ladder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid() {
        for b in BuiltinLadder::ALL {
            Ladder::builtin(b).validate().unwrap();
        }
        let small = Ladder::builtin(BuiltinLadder::Small);
        assert!(small.rungs.iter().all(|r| r.height <= 480));
        assert_eq!(Ladder::builtin_for_machine(2, false), BuiltinLadder::Small);
        assert_eq!(Ladder::builtin_for_machine(2, true), BuiltinLadder::Default);
        assert_eq!(
            Ladder::builtin_for_machine(8, false),
            BuiltinLadder::Default
        );
    }

    #[test]
    fn parses_toml_with_defaults() {
        let set: LadderSet = toml::from_str(
            r#"
            [[ladders]]
            name = "sports"
            keyframe_interval_ms = 1000
            source_passthrough = true
            [[ladders.rungs]]
            name = "1080p60"
            height = 1080
            video_bitrate_kbps = 6000
            max_fps = 60
            x264_preset = "faster"
            x264_tune = "none"
            [[ladders.rungs]]
            name = "540p"
            height = 540
            video_bitrate_kbps = 1800
            codec = "hevc"
            nvenc_preset = "p6"
            "#,
        )
        .unwrap();
        let sports = set.get("sports").unwrap();
        assert_eq!(sports.keyframe_interval_ms, 1000);
        assert!(sports.source_passthrough);
        assert_eq!(sports.audio_bitrate_kbps, DEFAULT_AUDIO_BITRATE_KBPS);
        let r0 = &sports.rungs[0];
        assert_eq!((r0.max_fps, r0.x264_tune), (60, X264Tune::None));
        assert_eq!(r0.effective_profile(), VideoProfile::High);
        assert_eq!(r0.effective_max_bitrate_kbps(), 6600);
        let r1 = &sports.rungs[1];
        assert_eq!(r1.codec, VideoCodec::Hevc);
        assert_eq!(r1.effective_profile(), VideoProfile::Main);
        assert_eq!(r1.max_fps, 30);
        // Built-ins stay reachable by name.
        assert_eq!(set.get("small").unwrap().name, "small");
        assert!(matches!(
            set.get("nope"),
            Err(LadderError::Unknown { known, .. }) if known == "default, small, sports"
        ));
    }

    #[test]
    fn typos_are_errors() {
        let err = toml::from_str::<Ladder>(
            r#"
            name = "x"
            [[rungs]]
            name = "720p"
            height = 720
            video_bitrate_kbps = 3000
            x264_presset = "fast"
            "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("x264_presset"), "{err}");
        assert!(toml::from_str::<Ladder>("name = \"x\"\nrungs = []\nkeyframes = 1\n").is_err());
    }

    #[test]
    fn validation() {
        let mut l = Ladder::builtin(BuiltinLadder::Default);
        l.rungs[1].height = 481;
        assert!(matches!(
            l.validate(),
            Err(LadderError::BadDimension {
                field: "height",
                ..
            })
        ));
        let mut l = Ladder::builtin(BuiltinLadder::Default);
        l.rungs[2].name = "720p".into();
        assert!(matches!(
            l.validate(),
            Err(LadderError::DuplicateName { .. })
        ));
        l.rungs[2].name = "source".into();
        assert!(matches!(l.validate(), Err(LadderError::BadName { .. })));
        l.rungs[2].name = "audio".into();
        assert!(matches!(l.validate(), Err(LadderError::BadName { .. })));
        let mut l = Ladder::builtin(BuiltinLadder::Default);
        l.rungs[0].max_bitrate_kbps = Some(100);
        assert!(matches!(l.validate(), Err(LadderError::BadRate { .. })));
        let mut l = Ladder::builtin(BuiltinLadder::Default);
        l.rungs[0].codec = VideoCodec::Hevc;
        l.rungs[0].profile = Some(VideoProfile::High);
        assert!(matches!(
            l.validate(),
            Err(LadderError::ProfileMismatch { .. })
        ));
        let mut l = Ladder::builtin(BuiltinLadder::Default);
        l.keyframe_interval_ms = 100;
        assert!(matches!(
            l.validate(),
            Err(LadderError::BadKeyframeInterval { .. })
        ));
        l.rungs.clear();
        l.keyframe_interval_ms = 2000;
        assert!(matches!(l.validate(), Err(LadderError::Empty { .. })));
        l.source_passthrough = true;
        l.validate().unwrap();
    }
}
