//! The transcoder core: from a live source's access units to an adaptive
//! bitrate ladder whose renditions switch cleanly.
//!
//! - [`ladder`]: ladder profiles as operators write them (TOML/serde),
//!   the built-in ones, validation.
//! - [`mod@plan`]: a ladder applied to one source track — no upscaling, frame
//!   rate caps, widths from the aspect ratio, and the keyframe cadence on
//!   the source's 90 kHz clock that every rung shares.
//! - [`gpu`]: CUDA discovery (safe without a driver), NVENC-or-CPU
//!   selection decided by opening an encoder, and the per-stream NVENC
//!   session budget.
//! - [`Transcoder`] ([`pipeline`]): FFmpeg through `ffmpeg-next`,
//!   runtime-free. Decode once (H.264, HEVC, or AV1 through libdav1d) on
//!   the caller's thread, then scale and encode each rung on a worker
//!   thread of its own, with IDR frames forced at the same source
//!   timestamps; AAC passes through, Opus becomes AAC. Output timestamps
//!   are the source's. Outputs not ready when `push` returns come out of a
//!   later `push`, [`Transcoder::poll`] or `finish`.
//! - [`stats`]: counters, processing latency and real-time lag.
//! - [`shed`]: when a stream that lags behind live sheds a rung, and which
//!   (sans-IO, clock injected).
//! - [`service`]: the tokio adapter — watches the bus, runs one
//!   [`Transcoder`] per source stream `NAME` on a thread of its own behind a
//!   bounded queue, and publishes each rung as bus stream `NAME/RUNG`;
//!   each output GOP is a span under the ingest GOP it came from.
//!
//! Multivariant playlists are not made here: the packager lists the rung
//! streams.
//!
//! ```no_run
//! use ferrocast_transcode::gpu::{assign, discover, select, NvencBudget};
//! use ferrocast_transcode::ladder::{BuiltinLadder, Ladder};
//! use ferrocast_transcode::{plan, FfmpegProbe, Output, Transcoder};
//! # fn demo(source: ferrocast_media::TrackInfo, audio: ferrocast_media::TrackInfo,
//! #         units: Vec<ferrocast_media::AccessUnit>) -> Result<(), Box<dyn std::error::Error>> {
//! // Once per process:
//! let machine = select(&discover(), &FfmpegProbe, &[ladder::VideoCodec::H264]);
//! let budget = NvencBudget::new(8);
//! // Per stream:
//! let plan = plan::plan(&Ladder::builtin(BuiltinLadder::Default), &source)?;
//! let encoders = assign("live/cam1", &machine, &budget, plan.rungs.len() as u32);
//! let mut transcoder = Transcoder::new(plan, encoders)?;
//! transcoder.set_tracks(&[source.clone(), audio])?;
//! let mut out = Vec::new();
//! for unit in &units {
//!     transcoder.push(unit, &mut out)?;
//!     for output in out.drain(..) {
//!         match output {
//!             Output::Video { rung, unit } => { /* publish on rendition `rung` */ }
//!             Output::Audio(unit) => { /* publish on every rendition */ }
//!             Output::Passthrough(unit) => { /* publish on "source" */ }
//!         }
//!     }
//! }
//! # use ferrocast_transcode::ladder;
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

pub mod config;
pub mod error;
#[allow(unsafe_code)]
mod ffmpeg;
mod gop_trace;
pub mod gpu;
mod handover;
pub mod ladder;
pub mod pipeline;
pub mod plan;
pub mod service;
pub mod shed;
pub mod stats;
pub mod thumbnail;

pub use config::TranscodeConfig;

/// Initialises FFmpeg once per process, its log routed into `tracing`
/// (target `ffmpeg`). The transcoder calls it itself; other users of
/// `ffmpeg-next` in the process call it before theirs.
pub fn init_ffmpeg() {
    ffmpeg::init();
}
pub use error::TranscodeError;
pub use pipeline::{FfmpegProbe, Output, Tracks, Transcoder};
pub use plan::{Plan, plan};
