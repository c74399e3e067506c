//! Track and codec descriptions, taken from the bitstream itself.

use bytes::Bytes;

pub use crate::av1::Av1Params;

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
            CodecParams::H264(_) | CodecParams::H265(_) | CodecParams::Av1(_) => TrackKind::Video,
            CodecParams::Aac(_) | CodecParams::Opus(_) => TrackKind::Audio,
        }
    }
}

/// Codec-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecParams {
    /// H.264 / AVC video.
    H264(H264Params),
    /// H.265 / HEVC video.
    H265(H265Params),
    /// AAC audio.
    Aac(AacParams),
    /// Opus audio.
    Opus(OpusParams),
    /// AV1 video.
    Av1(Av1Params),
}

impl CodecParams {
    /// The RFC 6381 `CODECS` string (`avc1.64001f`, `hvc1.1.6.L93.90`,
    /// `av01.0.04M.08`, `mp4a.40.2`, `opus`).
    pub fn codec_string(&self) -> String {
        match self {
            CodecParams::H264(p) => p.codec_string(),
            CodecParams::H265(p) => p.codec_string(),
            CodecParams::Aac(p) => p.codec_string(),
            CodecParams::Opus(p) => p.codec_string(),
            CodecParams::Av1(p) => p.codec_string(),
        }
    }

    /// Display width and height of a video track, after cropping; `None`
    /// for audio.
    pub fn resolution(&self) -> Option<(u32, u32)> {
        match self {
            CodecParams::H264(p) => Some((p.width, p.height)),
            CodecParams::H265(p) => Some((p.width, p.height)),
            CodecParams::Av1(p) => Some((p.width, p.height)),
            CodecParams::Aac(_) | CodecParams::Opus(_) => None,
        }
    }

    /// Frames per second of a video track as (numerator, denominator), when
    /// the bitstream signals it (VUI timing info); `None` otherwise and for
    /// audio.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        match self {
            CodecParams::H264(p) => p.frame_rate,
            CodecParams::H265(p) => p.frame_rate,
            CodecParams::Av1(p) => p.frame_rate,
            CodecParams::Aac(_) | CodecParams::Opus(_) => None,
        }
    }

    /// Sample rate of an audio track in Hz (the rate its frame durations
    /// are counted in); `None` for video.
    pub fn sample_rate(&self) -> Option<u32> {
        match self {
            CodecParams::Aac(p) => Some(p.sample_rate),
            CodecParams::Opus(p) => Some(p.sample_rate),
            CodecParams::H264(_) | CodecParams::H265(_) | CodecParams::Av1(_) => None,
        }
    }

    /// Channels of an audio track, when known; `None` for video.
    pub fn channels(&self) -> Option<u32> {
        match self {
            CodecParams::Aac(p) => Some(u32::from(p.channels)).filter(|&c| c > 0),
            CodecParams::Opus(p) => Some(u32::from(p.channels)).filter(|&c| c > 0),
            CodecParams::H264(_) | CodecParams::H265(_) | CodecParams::Av1(_) => None,
        }
    }

    /// Duration of one audio access unit of this codec, in samples at
    /// [`sample_rate`](Self::sample_rate): 1024 for every AAC frame, and for
    /// Opus what the packet's TOC byte says (RFC 6716 §3.1, 120 to 5760).
    /// `None` for video, and for an Opus packet whose TOC is malformed.
    pub fn unit_samples(&self, data: &[u8]) -> Option<u32> {
        match self {
            CodecParams::Aac(p) => Some(p.samples_per_frame()),
            CodecParams::Opus(_) => crate::opus::packet_samples(data).ok(),
            CodecParams::H264(_) | CodecParams::H265(_) | CodecParams::Av1(_) => None,
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

/// H.265 parameters parsed from the SPS (its `profile_tier_level( )` and
/// picture format), plus the raw parameter sets.
///
/// The profile, tier and level fields are the SPS's general ones (ITU-T
/// H.265 7.3.3), the same fields `HEVCDecoderConfigurationRecord` and the
/// `hvc1` codec string repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265Params {
    /// The VPS NAL unit, without start code (first two bytes are the NAL
    /// header).
    pub vps: Bytes,
    /// The SPS NAL unit, without start code.
    pub sps: Bytes,
    /// The PPS NAL unit, without start code.
    pub pps: Bytes,
    /// `general_profile_space` (0..=3; 0 in every profile defined so far).
    pub general_profile_space: u8,
    /// `general_tier_flag`: false for Main tier, true for High tier.
    pub general_tier_flag: bool,
    /// `general_profile_idc` (1 Main, 2 Main 10, 3 Main Still Picture,
    /// 4 format range extensions, ...).
    pub general_profile_idc: u8,
    /// The 32 `general_profile_compatibility_flag[ j ]` in bitstream order:
    /// flag `j` is bit `31 − j` (as `hvcC` stores them).
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` through
    /// `general_inbld_flag`/`general_reserved_zero_bit`, in bitstream order
    /// (as `hvcC` stores them).
    pub general_constraint_indicator_flags: [u8; 6],
    /// `general_level_idc`: 30 × the level number (93 for 3.1, 123 for 4.1).
    pub general_level_idc: u8,
    /// Display width in luma samples, after the conformance window.
    pub width: u32,
    /// Display height in luma samples, after the conformance window.
    pub height: u32,
    /// `chroma_format_idc` (0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4).
    pub chroma_format_idc: u8,
    /// Luma bit depth (8 + `bit_depth_luma_minus8`).
    pub bit_depth_luma: u8,
    /// Chroma bit depth (8 + `bit_depth_chroma_minus8`).
    pub bit_depth_chroma: u8,
    /// Frame rate from the VUI timing info as (numerator, denominator), if
    /// signalled.
    pub frame_rate: Option<(u32, u32)>,
}

impl H265Params {
    /// The `hvc1` codec string of ISO/IEC 14496-15 Annex E.3 (RFC 6381
    /// `CODECS`), e.g. `hvc1.1.6.L93.B0`.
    ///
    /// E.3: the elements, separated by `.`, are "the general_profile_space,
    /// encoded as no character (general_profile_space == 0), or 'A', 'B',
    /// 'C' for general_profile_space 1, 2, 3, followed by the
    /// general_profile_idc encoded as a decimal number"; "the 32 bits of the
    /// general_profile_compatibility_flags, but in reverse bit order, i.e.
    /// with general_profile_compatibility_flag\[ 31 \] as the most significant
    /// bit, followed by \[ 30 \], and down to flag \[ 0 \] as the least
    /// significant bit, ... encoded in hexadecimal (leading zeroes may be
    /// omitted)"; "the general_tier_flag, encoded as 'L'
    /// (general_tier_flag == 0) or 'H' (general_tier_flag == 1), followed by
    /// the general_level_idc, encoded as a decimal number"; "each of the 6
    /// bytes of the constraint flags, starting from the byte containing the
    /// general_progressive_source_flag, each encoded as a hexadecimal number,
    /// and the encoding of each byte separated by a period; trailing bytes
    /// that are zero may be omitted."
    pub fn codec_string(&self) -> String {
        let space = match self.general_profile_space {
            0 => "",
            1 => "A",
            2 => "B",
            _ => "C",
        };
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            self.general_profile_idc,
            self.general_profile_compatibility_flags.reverse_bits(),
            if self.general_tier_flag { 'H' } else { 'L' },
            self.general_level_idc,
        );
        let flags = &self.general_constraint_indicator_flags;
        let used = flags.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &flags[..used] {
            s.push_str(&format!(".{b:X}"));
        }
        s
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

/// Opus parameters: what the MPEG-TS descriptors and the first access
/// unit say, and what the ISO BMFF `dOps` box carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusParams {
    /// Output channel count (1 or 2 with mapping family 0).
    pub channels: u8,
    /// The decoding rate: always 48000 for Opus (RFC 7845 §4).
    pub sample_rate: u32,
    /// Samples (48 kHz) to discard from the start of the decoded stream:
    /// the first access unit's `start_trim` in MPEG-TS, 0 when it has none.
    pub pre_skip: u16,
    /// `ChannelMappingFamily` (RFC 7845 §5.1.1): 0 for mono or stereo in a
    /// single Opus stream, the only family Ferrocast accepts.
    pub channel_mapping_family: u8,
}

impl OpusParams {
    /// The `CODECS` string for Opus in ISO BMFF: `opus`, the `Opus` sample
    /// entry's four-character code in the lower case that MSE and HLS
    /// players match on.
    pub fn codec_string(&self) -> String {
        "opus".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hevc(space: u8, tier: bool, idc: u8, compat: u32, flags: [u8; 6], level: u8) -> H265Params {
        H265Params {
            vps: Bytes::new(),
            sps: Bytes::new(),
            pps: Bytes::new(),
            general_profile_space: space,
            general_tier_flag: tier,
            general_profile_idc: idc,
            general_profile_compatibility_flags: compat,
            general_constraint_indicator_flags: flags,
            general_level_idc: level,
            width: 1920,
            height: 1080,
            chroma_format_idc: 1,
            bit_depth_luma: 8,
            bit_depth_chroma: 8,
            frame_rate: None,
        }
    }

    #[test]
    fn hvc1_codec_strings() {
        // ISO/IEC 14496-15 E.3's examples and Apple's HLS authoring
        // specification: Main 4.1 progressive, non-packed, frame-only.
        let main = hevc(0, false, 1, 0x6000_0000, [0xb0, 0, 0, 0, 0, 0], 123);
        assert_eq!(main.codec_string(), "hvc1.1.6.L123.B0");
        // Main 10, High tier 5.1.
        let main10 = hevc(0, true, 2, 0x2000_0000, [0xb0, 0, 0, 0, 0, 0], 153);
        assert_eq!(main10.codec_string(), "hvc1.2.4.H153.B0");
        // A profile space letter; inner zero bytes are kept, trailing ones
        // dropped.
        let rext = hevc(
            1,
            false,
            4,
            0x0800_0000 | 0x8000_0000,
            [0xb0, 0, 0x23, 0, 0, 0],
            120,
        );
        assert_eq!(rext.codec_string(), "hvc1.A4.11.L120.B0.0.23");
        let no_flags = hevc(0, false, 1, 0x6000_0000, [0; 6], 93);
        assert_eq!(no_flags.codec_string(), "hvc1.1.6.L93");
        assert_eq!(CodecParams::H265(main).resolution(), Some((1920, 1080)));
    }
}
