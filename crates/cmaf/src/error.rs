//! Errors from writing init segments and fragments.

use ferrocast_media::TrackId;

/// Why an init segment, fragment or sample could not be written.
///
/// Every variant carries what is needed to find the offending input: the
/// stream track ([`TrackId`]) for init problems, the mp4 `track_ID` and sample
/// index for fragment problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmafError {
    /// [`write_init`](crate::write_init) was given no tracks.
    #[error("an init segment needs at least one track")]
    NoTracks,

    /// A track's codec is one this writer has no sample entry for.
    #[error("track {track:?}: codec {codec} is not supported by the CMAF writer")]
    UnsupportedCodec {
        /// The stream track.
        track: TrackId,
        /// The RFC 6381 codec string of the unsupported codec.
        codec: String,
    },

    /// A track's codec parameters cannot be put into a sample entry.
    #[error("track {track:?}: {reason}")]
    InvalidTrack {
        /// The stream track.
        track: TrackId,
        /// What is wrong with its parameters.
        reason: &'static str,
    },

    /// A video track's SPS could not be parsed for its `avcC` record.
    #[error("track {track:?}: bad SPS")]
    InvalidSps {
        /// The stream track.
        track: TrackId,
        /// What the SPS parser found.
        #[source]
        source: ferrocast_media::h264::H264Error,
    },

    /// An H.265 track's SPS could not be parsed for its `hvcC` record.
    #[error("track {track:?}: bad H.265 SPS")]
    InvalidH265Sps {
        /// The stream track.
        track: TrackId,
        /// What the SPS parser found.
        #[source]
        source: ferrocast_media::h265::H265Error,
    },

    /// An AV1 track's sequence header could not be parsed for its `av1C`
    /// record.
    #[error("track {track:?}: bad AV1 sequence header")]
    InvalidAv1SequenceHeader {
        /// The stream track.
        track: TrackId,
        /// What the sequence header parser found.
        #[source]
        source: ferrocast_media::av1::Av1Error,
    },

    /// An AV1 temporal unit's OBUs do not parse.
    #[error("AV1 temporal unit is malformed")]
    InvalidTemporalUnit {
        /// What the OBU parser found.
        #[source]
        source: ferrocast_media::av1::Av1Error,
    },

    /// [`video_sample_from_annexb`](crate::video_sample_from_annexb) was
    /// given the parameters of a codec that has no Annex-B video samples.
    #[error("codec {codec} is not an Annex-B video codec")]
    NotVideo {
        /// The RFC 6381 codec string.
        codec: String,
    },

    /// [`write_fragment`](crate::write_fragment) was given no samples at all.
    #[error("a fragment needs at least one sample")]
    NoSamples,

    /// A track fragment names `track_ID` 0, which ISO/IEC 14496-12 §8.3.2
    /// reserves.
    #[error("track fragment {index}: track_ID 0 is reserved")]
    ZeroTrackId {
        /// Position of the fragment in the slice passed in.
        index: usize,
    },

    /// A sample is too large for the 32-bit `sample_size` field of `trun`.
    #[error("track {track_id}: sample {index} is {len} bytes, more than a trun sample_size holds")]
    SampleTooLarge {
        /// The mp4 `track_ID`.
        track_id: u32,
        /// Index of the sample within its track fragment.
        index: usize,
        /// Its size in bytes.
        len: usize,
    },

    /// The fragment would need box sizes or a `data_offset` beyond 32 bits.
    #[error("fragment of {size} bytes is too large for 32-bit box sizes and data offsets")]
    FragmentTooLarge {
        /// The size the fragment would have had, in bytes.
        size: u64,
    },

    /// An init-segment box grew beyond a 32-bit size.
    #[error("box {kind} of {size} bytes is too large")]
    BoxTooLarge {
        /// The box type.
        kind: &'static str,
        /// Its size in bytes.
        size: usize,
    },

    /// An access unit held no NAL units (or AV1 OBUs) that belong in an mp4
    /// sample.
    #[error(
        "access unit has nothing to put in a sample (only AUD/SPS/PPS/filler, no start code, or only AV1 temporal delimiters/padding)"
    )]
    EmptyAccessUnit,

    /// A NAL unit is too large for a 4-byte length prefix.
    #[error("NAL unit of {len} bytes does not fit a 4-byte length prefix")]
    NalTooLarge {
        /// Its size in bytes.
        len: usize,
    },
}
