//! What the packager hands a recorder: each rendition's init segments, its
//! closed segments with their playlist attributes, and its end.
//!
//! The assembler collects these as it closes segments (only when recording
//! is on, [`crate::assembler::Assembler::set_recording`]); the packaging
//! task passes them to a [`RecordingSink`] after releasing the stream's
//! lock. A sink must never block or wait: it is called on the live path.
//! Segment bodies are the packager's reference-counted chunks, not copies.

use std::sync::Arc;

use bytes::Bytes;
use ferrocast_hls::RenditionName;
use ferrocast_media::{StreamName, Time90k, TrackInfo};

/// One thing to record, in the order the packager made them.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// A new init segment: the first of the rendition, or one after a codec
    /// change. Segments name the generation they need.
    Init {
        /// Its generation (`init{N}.mp4` on the live origin).
        generation: u32,
        /// The tracks it describes (codecs, resolution, frame rate).
        tracks: Arc<[TrackInfo]>,
        /// The `ftyp` + `moov` bytes.
        bytes: Bytes,
    },
    /// A segment that closed and is listed (or will be with the next part).
    Segment(RecordedSegment),
    /// The rendition ended (EXT-X-ENDLIST on the live playlist).
    End,
}

/// A closed media segment and its playlist attributes.
#[derive(Debug, Clone)]
pub struct RecordedSegment {
    /// Its Media Sequence Number on the live playlist.
    pub msn: u64,
    /// Its duration (EXTINF).
    pub duration: Time90k,
    /// It follows a break in the timeline (EXT-X-DISCONTINUITY).
    pub discontinuity: bool,
    /// The init segment generation its media needs.
    pub init_generation: u32,
    /// Wall-clock time of its first sample, ms since the Unix epoch.
    pub program_date_time_ms: i64,
    /// Its CMAF chunks in order; together they are the segment.
    pub chunks: Vec<Bytes>,
}

impl RecordedSegment {
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// True when it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Takes what the packager records. Called on the live path, outside the
/// stream's lock: must return at once (queue, never wait).
pub trait RecordingSink: Send + Sync + std::fmt::Debug {
    /// Whether `stream` is recorded at all; asked once per rendition when
    /// its packaging starts.
    fn wants(&self, stream: &StreamName) -> bool;

    /// One item of rendition `rendition` of `stream`.
    fn record(&self, stream: &StreamName, rendition: &RenditionName, item: Recorded);

    /// The recorded segments of a live rendition that its DVR playlist
    /// lists (within the DVR window, oldest first); `None` when there is no
    /// DVR for it. Must return at once: a shared snapshot, not a copy.
    fn dvr(&self, stream: &StreamName, rendition: &RenditionName) -> Option<Arc<DvrList>> {
        let _ = (stream, rendition);
        None
    }
}

/// What a rendition's DVR playlist lists ([`RecordingSink::dvr`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DvrList {
    /// Recorded segments in Media Sequence Number order.
    pub segments: Vec<DvrSegment>,
    /// Discontinuities that have left the front of the window
    /// (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
}

/// One recorded segment of a [`DvrList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DvrSegment {
    /// Its Media Sequence Number (the live playlist's).
    pub msn: u64,
    /// Its duration.
    pub duration: Time90k,
    /// It follows a break in the timeline.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample, ms since the Unix epoch.
    pub program_date_time_ms: i64,
    /// Its init segment generation.
    pub init_generation: u32,
    /// The recording's copy: an absolute path the edge serves
    /// (`/vod/NAME/ID/RENDITION/FILE`), used once the live window no
    /// longer holds the segment.
    pub archive_uri: String,
    /// The recording's init segment for it (`/vod/…/init-gG-eE.mp4`).
    pub archive_init_uri: String,
}
