//! Video on demand from uploaded files.
//!
//! An upload (`POST /api/v1/vod` on the control plane's API) is received
//! to a file under the work directory, then:
//!
//! - [`probe`]: FFmpeg reads it; a file that is not media, has no video,
//!   or has codecs the ladder cannot take is refused at once with the
//!   reason ([`VodError`]), whatever its name or claimed type;
//! - [`VodService`]: accepted files wait in a bounded queue and are
//!   transcoded one at a time on a blocking thread, never on the live
//!   path, with their state and progress kept for the API;
//! - [`remux`]: the chosen streams are copied into MPEG-TS, so the file
//!   goes through the live ingest's demuxer;
//! - [`package`]: the live transcoder makes the ladder and the live
//!   packager's assembler cuts each rendition into CMAF segments;
//! - [`job`]: each object is stored as it is made, under the recordings'
//!   keys (`PREFIX/STREAM/ID/RENDITION/…`), then the VOD playlists and
//!   `recording.json` (`closed_by: upload`); the edge serves it like a
//!   recording at `/vod/STREAM/ID/index.m3u8`. A failed job deletes what
//!   it wrote.

#![forbid(unsafe_code)]

mod error;
pub mod job;
pub mod package;
pub mod probe;
pub mod remux;
mod service;

pub use error::VodError;
pub use probe::Probe;
pub use service::{JobState, JobStatus, VodConfig, VodService};
