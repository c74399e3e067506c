//! The transcoder's settings (`[transcode]` in the config file).
//!
//! The transcoder (`ferrocast-transcode`) re-exports this module as its
//! `config`, so the file, the environment and the flags all land in the one
//! [`TranscodeConfig`] it runs with.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::ladder::{Ladder, LadderError, LadderSet};

/// Default of [`TranscodeConfig::nvenc_sessions`]: 8, the concurrent-session
/// limit NVIDIA's drivers (550 and later) put on GeForce cards. Quadro/RTX
/// professional and data-centre cards with NVENC have no such limit; raise
/// it there.
pub const DEFAULT_NVENC_SESSIONS: u32 = 8;

/// [`TranscodeConfig::ladder`] value that picks the built-in ladder suited
/// to the machine (`default` with NVENC or 4+ cores, `small` otherwise).
pub const LADDER_AUTO: &str = "auto";

/// [`TranscodeConfig::ladder`] value that turns transcoding off: streams
/// are served as published, with no ladder.
pub const LADDER_OFF: &str = "off";

/// Default of [`TranscodeConfig::shed_lag_ms`].
pub const DEFAULT_SHED_LAG_MS: u64 = 1500;

/// Default of [`TranscodeConfig::shed_after_ms`].
pub const DEFAULT_SHED_AFTER_MS: u64 = 2000;

/// Default of [`TranscodeConfig::queue_units`].
pub const DEFAULT_QUEUE_UNITS: usize = 300;

/// Whether to look for NVENC at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuPolicy {
    /// Use NVENC when a device opens it, the CPU otherwise.
    #[default]
    Auto,
    /// Never touch the GPU.
    Off,
    /// NVENC or nothing: when no device opens it, the transcoder takes no
    /// work and its `/readyz` says why (a GPU node whose GPU cannot
    /// encode, such as an H100, must not take streams and encode them on
    /// its CPU).
    Require,
}

/// Transcoder settings (`[transcode]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// `auto` (default), `off` or `require`.
    pub nvenc: GpuPolicy,
    /// NVENC sessions this process may hold at once, over all streams; a
    /// stream needs one per encoded rung. 0 disables NVENC. Default
    /// [`DEFAULT_NVENC_SESSIONS`].
    pub nvenc_sessions: u32,
    /// Ladder every stream gets: `auto` (the default: the built-in ladder
    /// that suits the machine), `off` (no transcoding), or the name of a
    /// built-in (`default`, `small`) or operator ladder. `ferrocast up
    /// --ladder` and `FERROCAST_TRANSCODE__LADDER` set it too.
    pub ladder: String,
    /// The operator's own ladders (`[[transcode.ladders]]`); one named like
    /// a built-in replaces it. `auto` and `off` are reserved names.
    pub ladders: Vec<Ladder>,
    /// A stream whose transcode lags this many milliseconds behind live
    /// for [`shed_after_ms`](Self::shed_after_ms) sheds its most expensive
    /// rung. 0 never sheds. Default [`DEFAULT_SHED_LAG_MS`].
    pub shed_lag_ms: u64,
    /// How long the lag must stay above [`shed_lag_ms`](Self::shed_lag_ms)
    /// before a rung is shed (and again before the next one). Default
    /// [`DEFAULT_SHED_AFTER_MS`].
    pub shed_after_ms: u64,
    /// Source units (video and audio) queued per stream for its transcoder.
    /// When the queue is full, whole GOPs are dropped. Default
    /// [`DEFAULT_QUEUE_UNITS`] (about 4 s of 30 fps video with AAC).
    pub queue_units: usize,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            nvenc: GpuPolicy::Auto,
            nvenc_sessions: DEFAULT_NVENC_SESSIONS,
            ladder: LADDER_AUTO.to_owned(),
            ladders: Vec::new(),
            shed_lag_ms: DEFAULT_SHED_LAG_MS,
            shed_after_ms: DEFAULT_SHED_AFTER_MS,
            queue_units: DEFAULT_QUEUE_UNITS,
        }
    }
}

/// Which ladder [`TranscodeConfig::ladder`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LadderChoice {
    /// No transcoding.
    Off,
    /// The built-in ladder for the machine, decided at start.
    Auto,
    /// A named ladder (operator's or built-in), validated.
    Named(Ladder),
}

/// Why the `[transcode]` section is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeConfigError {
    /// A ladder is invalid, or the chosen one does not exist.
    #[error("transcode: {0}")]
    Ladder(#[from] LadderError),
    /// An operator ladder uses a reserved name.
    #[error("transcode.ladders: {0:?} is reserved (\"auto\" and \"off\" are not ladder names)")]
    ReservedName(String),
    /// A number out of range.
    #[error("transcode.{field} = {value} is outside {range}")]
    Range {
        /// The key.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range.
        range: &'static str,
    },
}

impl TranscodeConfig {
    /// The ladder called `name` (an operator's, else a built-in), validated.
    pub fn ladder(&self, name: &str) -> Result<Ladder, LadderError> {
        LadderSet {
            ladders: self.ladders.clone(),
        }
        .get(name)
    }

    /// What [`ladder`](Self::ladder) asks for, resolved and validated.
    pub fn choice(&self) -> Result<LadderChoice, LadderError> {
        match self.ladder.as_str() {
            LADDER_OFF => Ok(LadderChoice::Off),
            LADDER_AUTO => Ok(LadderChoice::Auto),
            name => self.ladder(name).map(LadderChoice::Named),
        }
    }

    /// Checks every ladder, the choice and the numbers.
    pub fn validate(&self) -> Result<(), TranscodeConfigError> {
        for ladder in &self.ladders {
            if ladder.name == LADDER_AUTO || ladder.name == LADDER_OFF {
                return Err(TranscodeConfigError::ReservedName(ladder.name.clone()));
            }
            ladder.validate()?;
        }
        self.choice()?;
        if !(1..=100_000).contains(&self.queue_units) {
            return Err(TranscodeConfigError::Range {
                field: "queue_units",
                value: self.queue_units as u64,
                range: "1..=100000",
            });
        }
        if !(100..=60_000).contains(&self.shed_after_ms) {
            return Err(TranscodeConfigError::Range {
                field: "shed_after_ms",
                value: self.shed_after_ms,
                range: "100..=60000",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_typos() {
        let c: TranscodeConfig = toml::from_str("").unwrap();
        assert_eq!(c, TranscodeConfig::default());
        assert_eq!(c.nvenc_sessions, DEFAULT_NVENC_SESSIONS);
        assert_eq!(c.choice().unwrap(), LadderChoice::Auto);
        let c: TranscodeConfig = toml::from_str(
            "nvenc = \"off\"\nnvenc_sessions = 3\nladder = \"x\"\n[[ladders]]\nname = \"x\"\n[[ladders.rungs]]\nname = \"a\"\nheight = 240\nvideo_bitrate_kbps = 400\nshed_priority = 2\n",
        )
        .unwrap();
        assert_eq!(c.nvenc, GpuPolicy::Off);
        assert_eq!(c.ladder("x").unwrap().rungs[0].height, 240);
        assert_eq!(c.ladder("x").unwrap().rungs[0].shed_priority, 2);
        assert!(matches!(c.choice().unwrap(), LadderChoice::Named(l) if l.name == "x"));
        c.validate().unwrap();
        assert!(toml::from_str::<TranscodeConfig>("nvenc_session = 3").is_err());
    }

    #[test]
    fn choices_and_validation() {
        let with = |text: &str| toml::from_str::<TranscodeConfig>(text).unwrap();
        assert_eq!(
            with("ladder = \"off\"").choice().unwrap(),
            LadderChoice::Off
        );
        assert!(matches!(
            with("ladder = \"small\"").choice().unwrap(),
            LadderChoice::Named(l) if l.name == "small"
        ));
        assert!(matches!(
            with("ladder = \"nope\"").validate(),
            Err(TranscodeConfigError::Ladder(LadderError::Unknown { .. }))
        ));
        assert!(matches!(
            with("[[ladders]]\nname = \"off\"\nrungs = []\nsource_passthrough = true\n").validate(),
            Err(TranscodeConfigError::ReservedName(_))
        ));
        // An unused but broken ladder is still an error at start.
        assert!(matches!(
            with("[[ladders]]\nname = \"x\"\nrungs = []\n").validate(),
            Err(TranscodeConfigError::Ladder(LadderError::Empty { .. }))
        ));
        assert!(matches!(
            with("queue_units = 0").validate(),
            Err(TranscodeConfigError::Range {
                field: "queue_units",
                ..
            })
        ));
    }
}
