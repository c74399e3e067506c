//! The transcoder's settings (`[transcode]` in the config file), defined in
//! `ferrocast-config` and re-exported here: [`TranscodeConfig`],
//! [`GpuPolicy`], [`LadderChoice`].
#![forbid(unsafe_code)]

pub use ferrocast_config::transcode::*;
