//! Low-Latency HLS live window and playlist rendering (sans-IO).
//!
//! **What it is for.** The packager keeps one [`LiveWindow`] per rendition
//! and tells it, as media arrives, that a Media Segment starts
//! ([`LiveWindow::open_segment`]), that a Partial Segment is complete
//! ([`LiveWindow::add_part`]), that the segment is complete
//! ([`LiveWindow::close_segment`]) or that the stream is over
//! ([`LiveWindow::end`]). The window numbers everything (Media Sequence
//! Numbers, Part Indexes, init generations), names it ([`names`]), decides
//! what the playlist lists and for how long bytes must be kept, and renders
//! RFC 8216bis Media Playlists with `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-SERVER-CONTROL`, `EXT-X-SKIP` delta updates and
//! `EXT-X-RENDITION-REPORT` ([`LiveWindow::render`]). HTTP handlers parse the
//! Delivery Directives ([`PlaylistRequest::parse`]) and resource names
//! ([`ResourceName::parse`]) strictly, then ask the window whether a blocking
//! request or a hinted part can be answered yet
//! ([`LiveWindow::blocking_status`], [`LiveWindow::part_status`]).
//! [`render_multivariant`] writes the Multivariant Playlist.
//!
//! **What it is not for.** It stores no media bytes, spawns no task, reads
//! no clock and does no I/O: the caller holds the bytes, the lock, the
//! timers (for example [`LiveWindow::block_timeout`]) and the sockets. It
//! does not parse playlists, and knows nothing of codecs beyond the strings
//! it is handed.
//!
//! Spec text is quoted beside the code that meets it. Quotes of RFC 8216
//! are verbatim; those of draft-pantos-hls-rfc8216bis marked "recalled" are
//! from memory of the draft and worth checking against the current text.
//!
//! ```
//! use ferrocast_hls::{LiveWindow, RenderOptions, SegmentStart, WindowConfig};
//! use ferrocast_media::Time90k;
//!
//! // 200 ms parts, 2 s target duration.
//! let mut window = LiveWindow::new(WindowConfig::new(Time90k::from_millis(200), 2))?;
//! window.open_segment(SegmentStart {
//!     program_date_time_ms: 1_700_000_000_000,
//!     discontinuity: false,
//!     init_generation: 0,
//! })?;
//! let part = window.add_part(Time90k::from_millis(200), true)?;
//! assert_eq!(part.to_string(), "part0.0.m4s"); // store the bytes under this name
//!
//! let playlist = window.render(&RenderOptions::default());
//! assert!(playlist.contains("#EXT-X-PART:DURATION=0.200,URI=\"part0.0.m4s\",INDEPENDENT=YES\n"));
//! assert!(playlist.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part0.1.m4s\"\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod datetime;
pub mod multivariant;
pub mod names;
pub mod plan;
pub mod query;
pub mod render;
pub mod rendition;
pub mod window;

pub use datetime::format_program_date_time;
pub use multivariant::{
    AUDIO_GROUP_ID, AudioRendition, MultivariantError, Variant, render_multivariant,
    render_multivariant_with_audio,
};
pub use names::{
    NameError, NumberError, PartRef, ResourceName, parse_init_name, parse_part_name,
    parse_segment_name,
};
pub use plan::{BusName, RenditionPlan, StreamProgress};
pub use query::{BlockTarget, MAX_QUERY_LEN, PlaylistRequest, QueryError, QueryParam, SkipRequest};
pub use render::{
    InvalidValue, MEDIA_PLAYLIST_VERSION, RenderOptions, RenditionReport, write_secs,
};
pub use rendition::{MAX_RENDITION_LEN, MEDIA_PLAYLIST_NAME, RenditionName, RenditionNameError};
pub use window::{
    BlockingStatus, ClosedSegment, ConfigError, LiveWindow, ResourceStatus, SegmentStart,
    SequencePoint, WindowConfig, WindowError, ticks_to_ms,
};
