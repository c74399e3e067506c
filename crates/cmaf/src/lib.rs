//! CMAF fMP4 writer: init segments and fragment chunks for LL-HLS parts.
//!
//! The packager turns access units into fragmented MP4 with this crate:
//! [`write_init`] makes the init segment (CMAF header: `ftyp` + `moov`) once
//! per rendition, and [`write_fragment`] makes one chunk (`moof` + `mdat`) per
//! video frame, holding that frame and the audio frames that arrived with it.
//! Chunks concatenate into LL-HLS parts and segments. H.264 and H.265 access
//! units come in as Annex-B, AV1 ones as temporal units of sized OBUs; they go
//! through [`video_sample_from_annexb`] (or [`avc_sample_from_annexb`] /
//! [`hevc_sample_from_annexb`] / [`av1_sample_from_temporal_unit`]) first.
//!
//! It is sans-IO and stateless: bytes in, [`Bytes`](bytes::Bytes) out; the
//! caller keeps sequence numbers and decode times. It is not a demuxer, does
//! not decide where fragments or parts begin, converts no timestamps (see
//! [`track_timescale`] and `ferrocast_media::Time90k::to_timescale`), and
//! writes no playlists.
//!
//! Box layouts follow ISO/IEC 14496-12 (ISO BMFF), 14496-14 (`esds`), 14496-15
//! (`avcC`, `hvcC`), the AV1 Codec ISO Media File Format Binding (`av01`,
//! `av1C`), the Opus encapsulation specification (`Opus`, `dOps`)
//! and ISO/IEC 23000-19 (CMAF); the section cited beside each box is
//! from those documents. Output is checked in tests by ffprobe/ffmpeg, the
//! `mp4` crate and `mp4-atom` in strict mode.
//!
//! ```
//! use bytes::Bytes;
//! use ferrocast_cmaf::{Sample, TrackFragment, track_timescale, write_fragment, write_init};
//! use ferrocast_media::{AacParams, CodecParams, TrackId, TrackInfo};
//!
//! let audio = TrackInfo {
//!     id: TrackId(257),
//!     params: CodecParams::Aac(AacParams {
//!         asc: Bytes::from_static(&[0x11, 0x90]), // AAC-LC, 48 kHz, stereo
//!         object_type: 2,
//!         sample_rate: 48_000,
//!         channels: 2,
//!     }),
//! };
//! let init = write_init(std::slice::from_ref(&audio))?;
//! assert_eq!(track_timescale(&audio)?, 48_000);
//!
//! let chunk = write_fragment(1, &[TrackFragment {
//!     track_id: 1, // first track given to write_init
//!     base_media_decode_time: 0,
//!     samples: vec![Sample {
//!         duration: 1024,
//!         composition_offset: 0,
//!         keyframe: true,
//!         data: Bytes::from_static(&[0x21, 0x10, 0x04]),
//!     }],
//! }])?;
//! assert_eq!(&init[4..8], b"ftyp");
//! assert_eq!(&chunk[4..8], b"moof");
//! # Ok::<(), ferrocast_cmaf::CmafError>(())
//! ```

#![forbid(unsafe_code)]

mod aac;
mod av1;
mod avc;
mod boxes;
mod error;
mod fragment;
mod hvc;
mod init;
mod opus;

pub use av1::av1_sample_from_temporal_unit;
pub use avc::avc_sample_from_annexb;
pub use error::CmafError;
pub use fragment::{Sample, TrackFragment, write_fragment};
pub use hvc::hevc_sample_from_annexb;
pub use init::{VIDEO_TIMESCALE, track_timescale, write_init};

use ferrocast_media::CodecParams;

/// Converts one video access unit into sample data for the sample entry
/// [`write_init`] writes for `params`: [`avc_sample_from_annexb`] for
/// H.264, [`hevc_sample_from_annexb`] for H.265 (both Annex-B), and
/// [`av1_sample_from_temporal_unit`] for AV1, whose access units are
/// temporal units in the low overhead format rather than Annex-B.
///
/// # Errors
///
/// As the codec's conversion; [`CmafError::NotVideo`] for audio.
pub fn video_sample_from_annexb(
    params: &CodecParams,
    annexb: &[u8],
) -> Result<bytes::Bytes, CmafError> {
    match params {
        CodecParams::H264(_) => avc_sample_from_annexb(annexb),
        CodecParams::H265(_) => hevc_sample_from_annexb(annexb),
        CodecParams::Av1(_) => av1_sample_from_temporal_unit(annexb),
        other => Err(CmafError::NotVideo {
            codec: other.codec_string(),
        }),
    }
}
