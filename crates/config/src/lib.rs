//! Ferrocast configuration: one struct, three sources, one precedence rule.
//!
//! Values come from built-in defaults, then `FERROCAST_*` environment
//! variables, then a TOML file, then command-line flags — each later source
//! wins. Every layer is merged as a TOML table and the result is deserialised
//! once with `deny_unknown_fields`, so a typo anywhere (a misspelt key in the
//! file, a `FERROCAST_PRAT_TARGET_MS` in the environment) is an error at
//! start, not a silent default.
//!
//! This crate parses and validates; it opens no sockets and reads no files
//! except the config file it is pointed at.
//!
//! ```
//! use ferrocast_config::{Config, Layers};
//!
//! let config = Layers::default()
//!     .with_file_text("http_listen = \"127.0.0.1:8081\"")
//!     .unwrap()
//!     .build()
//!     .unwrap();
//! assert_eq!(config.http_listen.port(), 8081);
//! assert_eq!(config.hls.part_target_ms, Config::default().hls.part_target_ms);
//! ```

mod cluster;
pub mod ladder;
mod layers;
mod model;
pub mod recording;
pub mod telemetry;
pub mod transcode;

pub use cluster::{ClusterConfig, publish_address};
/// Publish keys, SRT passphrases and credentials: the edge's redacting
/// [`ferrocast_edge::Secret`], one type for every secret in a config.
pub use ferrocast_edge::Secret;
pub use layers::{ConfigError, ENV_PREFIX, Layers, Process, valid_srt_passphrase};
pub use model::{
    AudioLayout, Config, DEFAULT_RTP_JITTER_MS, DuplicatePublisher, HlsConfig, IngestConfig,
    RtpConfig, RtpFormat, StreamConfig,
};
pub use recording::{RecordingConfig, S3Config};
pub use telemetry::{SampleRatio, TelemetryConfig};
pub use transcode::{LadderChoice, TranscodeConfig};
