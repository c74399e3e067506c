//! The transcoder's settings (`[transcode]` in the config file).
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::gpu::DEFAULT_NVENC_SESSIONS;
use crate::ladder::{Ladder, LadderError, LadderSet};

/// Whether to look for NVENC at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuPolicy {
    /// Use NVENC when a device opens it, the CPU otherwise.
    #[default]
    Auto,
    /// Never touch the GPU.
    Off,
}

/// Transcoder settings (`[transcode]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// `auto` (default) or `off`.
    pub nvenc: GpuPolicy,
    /// NVENC sessions this process may hold at once, over all streams; a
    /// stream needs one per encoded rung. 0 disables NVENC. Default
    /// [`DEFAULT_NVENC_SESSIONS`].
    pub nvenc_sessions: u32,
    /// Ladder used when a stream names none. Default `default`.
    pub ladder: String,
    /// The operator's own ladders (`[[transcode.ladders]]`); one named like
    /// a built-in replaces it.
    pub ladders: Vec<Ladder>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            nvenc: GpuPolicy::Auto,
            nvenc_sessions: DEFAULT_NVENC_SESSIONS,
            ladder: "default".to_owned(),
            ladders: Vec::new(),
        }
    }
}

impl TranscodeConfig {
    /// The ladder called `name` (an operator's, else a built-in), validated.
    pub fn ladder(&self, name: &str) -> Result<Ladder, LadderError> {
        LadderSet {
            ladders: self.ladders.clone(),
        }
        .get(name)
    }

    /// The ladder streams get when they name none.
    pub fn default_ladder(&self) -> Result<Ladder, LadderError> {
        self.ladder(&self.ladder)
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
        let c: TranscodeConfig = toml::from_str(
            "nvenc = \"off\"\nnvenc_sessions = 3\nladder = \"small\"\n[[ladders]]\nname = \"x\"\n[[ladders.rungs]]\nname = \"a\"\nheight = 240\nvideo_bitrate_kbps = 400\n",
        )
        .unwrap();
        assert_eq!(c.nvenc, GpuPolicy::Off);
        assert_eq!(c.ladder("x").unwrap().rungs[0].height, 240);
        assert!(toml::from_str::<TranscodeConfig>("nvenc_session = 3").is_err());
    }
}
