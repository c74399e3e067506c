//! Track and codec descriptions, taken from the bitstream itself.

use bytes::Bytes;

/// Identifies a track within one stream (the MPEG-TS elementary PID at ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u16);

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// A video track.
    Video,
    /// An audio track.
    Audio,
}

/// Everything a muxer or player needs to know about one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The track's id within its stream.
    pub id: TrackId,
    /// Codec and its parameters.
    pub params: CodecParams,
}

impl TrackInfo {
    /// Video or audio, from the codec.
    pub fn kind(&self) -> TrackKind {
        match self.params {
            CodecParams::H264(_) => TrackKind::Video,
            CodecParams::Aac(_) => TrackKind::Audio,
        }
    }
}

/// Codec-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecParams {
    /// H.264 / AVC video.
    H264(H264Params),
    /// AAC audio.
    Aac(AacParams),
}

impl CodecParams {
    /// The RFC 6381 `CODECS` string (`avc1.64001f`, `mp4a.40.2`).
    pub fn codec_string(&self) -> String {
        match self {
            CodecParams::H264(p) => p.codec_string(),
            CodecParams::Aac(p) => p.codec_string(),
        }
    }
}

/// H.264 parameters parsed from the SPS, plus the raw parameter sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Params {
    /// The SPS NAL unit, without start code (first byte is the NAL header).
    pub sps: Bytes,
    /// The PPS NAL unit, without start code.
    pub pps: Bytes,
    /// `profile_idc`.
    pub profile_idc: u8,
    /// The constraint_set flags byte (the second byte of the SPS payload).
    pub constraint_flags: u8,
    /// `level_idc`.
    pub level_idc: u8,
    /// Display width in pixels, after cropping.
    pub width: u32,
    /// Display height in pixels, after cropping.
    pub height: u32,
    /// Frame rate from the VUI timing info as (numerator, denominator), if signalled.
    pub frame_rate: Option<(u32, u32)>,
}

impl H264Params {
    /// RFC 6381 codec string: `avc1.PPCCLL` in hex.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}

/// AAC parameters from ADTS, with the equivalent AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacParams {
    /// The AudioSpecificConfig (ISO/IEC 14496-3) bytes for `esds`.
    pub asc: Bytes,
    /// Audio object type (2 = AAC-LC).
    pub object_type: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// Channel configuration (number of channels for 1..=6, 8 for 7.1).
    pub channels: u8,
}

impl AacParams {
    /// RFC 6381 codec string: `mp4a.40.AOT`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Samples per AAC frame (1024 for every object type we accept).
    pub const fn samples_per_frame(&self) -> u32 {
        1024
    }
}
