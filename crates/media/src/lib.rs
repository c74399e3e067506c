//! Media primitives shared by every Ferrocast role.
//!
//! This crate holds what flows through the pipeline — [`AccessUnit`]s stamped
//! with typed [`Time90k`] timestamps, [`TrackInfo`] describing each track's
//! codec — and the sans-IO parsers that produce them from a contribution feed:
//! the MPEG-TS demuxer ([`ts`]), H.264 and H.265 parameter-set parsing
//! ([`h264`], [`h265`]), AV1 OBU and sequence header parsing ([`av1`]), AAC
//! ADTS parsing ([`aac`]) and Opus packet and MPEG-TS framing parsing
//! ([`opus`]).
//!
//! It does no I/O, spawns nothing and reads no clock: callers hand it bytes and
//! get values back. It is not a muxer (see `ferrocast-cmaf`) and knows nothing
//! of playlists.
//!
//! ```
//! use ferrocast_media::ts::Demuxer;
//!
//! let mut demux = Demuxer::new();
//! let mut events = Vec::new();
//! demux.push(&[], &mut events); // feed whatever bytes arrived, in any chunking
//! assert!(events.is_empty());
//! ```

pub mod aac;
pub mod av1;
mod bits;
pub mod codec;
pub mod h264;
pub mod h265;
pub mod opus;
pub mod stream_name;
pub mod time;
pub mod trace;
pub mod ts;
pub mod unit;

pub use codec::{
    AacParams, Av1Params, CodecParams, H264Params, H265Params, OpusParams, TrackId, TrackInfo,
    TrackKind,
};
pub use stream_name::{StreamName, StreamNameError};
pub use time::{Time90k, TimestampExtender};
pub use trace::TraceContext;
pub use unit::AccessUnit;
