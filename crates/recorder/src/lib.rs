//! Recording live streams to object storage as they are packaged.
//!
//! - [`Recorder`] is the packager's [`ferrocast_packager::RecordingSink`]:
//!   every closed CMAF segment of every rendition, and each init segment,
//!   goes through a bounded queue to the on-disk [`ferrocast_storage::Spool`]
//!   and from there to the store, never slowing the live path.
//! - When all renditions of a stream end, the recording is closed: VOD
//!   media playlists (`EXT-X-PLAYLIST-TYPE:VOD`, `EXT-X-ENDLIST`,
//!   discontinuities where the live stream had them), a multivariant
//!   playlist and `recording.json` ([`vod`]).
//! - A recording whose writer stopped without closing it is closed by the
//!   next process that sees its stale open marker ([`closer`]), from a
//!   listing alone: segment keys carry their playlist attributes
//!   ([`layout`]).
//!
//! - Recordings older than the retention period are deleted
//!   ([`retention`]), found by listing the store one level at a time.
//! - [`StoreUpstream`] serves closed recordings to the edge
//!   (`/vod/STREAM/ID/…`), which signs and caches them like live media.
//!
//! Not here: the edge itself, the object stores (`ferrocast-storage`).

#![forbid(unsafe_code)]

pub mod closer;
pub mod layout;
pub mod manifest;
mod recorder;
pub mod retention;
pub mod vod;
pub mod vod_upstream;

pub use layout::{Layout, RecordingId, SegmentName};
pub use recorder::{Recorder, RecorderConfig, RecorderTasks, RecordingPolicy, StreamList};
pub use vod_upstream::StoreUpstream;
