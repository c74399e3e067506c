//! Access units: one coded picture or one audio frame with its timing.

use bytes::Bytes;

use crate::codec::{TrackId, TrackKind};
use crate::time::Time90k;
use crate::trace::TraceContext;

/// One coded video picture or audio frame, as it travels on the bus.
///
/// Video payloads are H.264/HEVC Annex-B byte streams (start codes included,
/// parameter sets and AUDs as the encoder sent them), or for AV1 one
/// temporal unit in the low overhead bitstream format with every OBU sized
/// (see [`crate::av1::temporal_unit_from_ts`]). Audio payloads are raw
/// codec frames (AAC without the ADTS header).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// Which track of the stream this belongs to.
    pub track: TrackId,
    /// Video or audio.
    pub kind: TrackKind,
    /// Presentation time.
    pub pts: Time90k,
    /// Decode time (equal to `pts` when the stream has no reordering).
    pub dts: Time90k,
    /// True for an IDR / random-access picture, and for every audio frame.
    pub keyframe: bool,
    /// The coded bytes.
    pub data: Bytes,
    /// When the ingest received it, Unix milliseconds: the wall-clock
    /// anchor for EXT-X-PROGRAM-DATE-TIME, carried with the unit through
    /// every process (a transcoder stamps its output from the source's),
    /// so every rendition and every packager dates a segment alike.
    /// `None` where nothing stamped it.
    pub captured_unix_ms: Option<i64>,
    /// The span this unit belongs to (its ingest GOP, or the transcoder
    /// GOP that encoded it), carried across the media bus so that every
    /// process's spans for it join one trace. `None` when tracing is off.
    pub trace: Option<TraceContext>,
}

impl std::fmt::Debug for AccessUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessUnit")
            .field("track", &self.track)
            .field("kind", &self.kind)
            .field("pts", &self.pts.0)
            .field("dts", &self.dts.0)
            .field("keyframe", &self.keyframe)
            .field("len", &self.data.len())
            .field("captured_unix_ms", &self.captured_unix_ms)
            .field("trace", &self.trace.map(|t| t.trace_id_hex()))
            .finish()
    }
}
