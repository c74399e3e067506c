//! Sans-IO MPEG-TS demuxer (ISO/IEC 13818-1): PAT, PMT, PES → access units.
//!
//! STUB: the real implementation is being written; the API below is fixed.

use crate::codec::TrackInfo;
use crate::unit::AccessUnit;

/// What the demuxer found in the bytes it was given.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DemuxEvent {
    /// A track's codec parameters became known, or changed.
    Track(TrackInfo),
    /// One complete access unit of a track already announced with `Track`.
    Unit(AccessUnit),
    /// The PMT declares an elementary stream Ferrocast cannot handle.
    Unsupported {
        /// Elementary PID.
        pid: u16,
        /// PMT stream_type.
        stream_type: u8,
        /// Human name of the codec, e.g. "MPEG-2 video".
        codec: &'static str,
    },
    /// Bad input was skipped and the demuxer resynchronised.
    Warning(DemuxWarning),
}

/// A non-fatal problem in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DemuxWarning {
    /// Bytes that were not TS packets were skipped.
    #[error("skipped {bytes} bytes to resynchronise on the TS sync byte")]
    Resync {
        /// How many bytes were dropped.
        bytes: usize,
    },
}

/// The demuxer. Feed it bytes in any chunking; it returns events.
#[derive(Debug, Default)]
pub struct Demuxer {}

impl Demuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<DemuxEvent>) {
        let _ = (bytes, out);
    }

    /// End of input: flush any access unit still being assembled.
    pub fn finish(&mut self, out: &mut Vec<DemuxEvent>) {
        let _ = out;
    }
}
