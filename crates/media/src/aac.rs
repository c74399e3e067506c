//! AAC in ADTS framing (ISO/IEC 14496-3:2019 1.A.2 and 1.A.3): header
//! parsing and the equivalent AudioSpecificConfig (1.6.2.1).
//!
//! ```
//! use ferrocast_media::aac::parse_adts;
//!
//! // AAC-LC, 48 kHz, stereo, 7-byte header, 10-byte frame.
//! let frame = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x5f, 0xfc, 1, 2, 3];
//! let header = parse_adts(&frame).unwrap();
//! assert_eq!(header.sample_rate, 48_000);
//! assert_eq!(header.params().codec_string(), "mp4a.40.2");
//! ```

use bytes::Bytes;

use crate::codec::AacParams;

/// Sampling frequencies by `sampling_frequency_index` (14496-3 Table 1.18).
/// Index 13 and 14 are reserved; 15 (escape) cannot be used in ADTS.
pub const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Length of an ADTS header without CRC.
pub const ADTS_HEADER_LEN: usize = 7;

/// Why bytes are not a usable ADTS frame header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AacError {
    /// Fewer bytes than the header needs.
    #[error("ADTS header needs {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the header needs (7, or 9 with CRC).
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The 12-bit syncword is not `0xFFF`.
    #[error("no ADTS syncword (0xFFF)")]
    BadSyncword,
    /// `layer` is not `00`.
    #[error("ADTS layer is {layer}, must be 0")]
    BadLayer {
        /// The layer field.
        layer: u8,
    },
    /// A reserved or escape `sampling_frequency_index` (13, 14, 15).
    #[error("ADTS sampling_frequency_index {index} is reserved or invalid")]
    BadSamplingFrequencyIndex {
        /// The index found.
        index: u8,
    },
    /// `channel_configuration` 0: the layout is in a program_config_element
    /// inside the raw data, which this parser does not read.
    #[error("ADTS channel_configuration 0 (layout in PCE) is not supported")]
    UnsupportedChannelConfiguration,
    /// `aac_frame_length` is shorter than the header itself.
    #[error("ADTS aac_frame_length {frame_length} is shorter than the {header_len}-byte header")]
    BadFrameLength {
        /// The frame length field.
        frame_length: usize,
        /// The header length (7 or 9).
        header_len: usize,
    },
    /// More than one raw_data_block in the frame: their boundaries are not
    /// signalled without CRC, so the frame cannot be split into samples.
    #[error("ADTS frame holds {blocks} raw data blocks; only 1 is supported")]
    MultipleRawDataBlocks {
        /// `number_of_raw_data_blocks_in_frame + 1`.
        blocks: u8,
    },
    /// An AudioSpecificConfig whose audio object type is not plain AAC
    /// (1 Main, 2 LC, 3 SSR, 4 LTP): SBR/PS signalled hierarchically (5, 29)
    /// and the other MPEG-4 audio tools are not carried.
    #[error("AudioSpecificConfig audio object type {object_type} is not supported (1 to 4)")]
    UnsupportedObjectType {
        /// The audioObjectType found.
        object_type: u8,
    },
    /// An AudioSpecificConfig with an explicit 24-bit sampling frequency
    /// (index 15) that is not one of the table's values.
    #[error("AudioSpecificConfig explicit sampling frequency {frequency} Hz is not supported")]
    UnsupportedSamplingFrequency {
        /// The frequency found.
        frequency: u32,
    },
}

/// One parsed ADTS header (fixed and variable parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdtsHeader {
    /// `ID`: true for MPEG-2 AAC, false for MPEG-4.
    pub mpeg2: bool,
    /// `protection_absent`: false when a 16-bit CRC follows the header.
    pub protection_absent: bool,
    /// Audio object type: `profile_ObjectType + 1` (2 = AAC-LC).
    pub object_type: u8,
    /// `sampling_frequency_index`.
    pub sampling_frequency_index: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// `channel_configuration` (1..=7).
    pub channel_configuration: u8,
    /// `aac_frame_length`: the whole frame, header included, in bytes.
    pub frame_length: usize,
    /// Header length in bytes: 7, or 9 with CRC.
    pub header_len: usize,
    /// `number_of_raw_data_blocks_in_frame + 1`.
    pub raw_data_blocks: u8,
}

/// Parses the ADTS header at the start of `buf`.
///
/// Only the header must be present; the caller checks that `buf` holds
/// `frame_length` bytes before slicing the frame.
pub fn parse_adts(buf: &[u8]) -> Result<AdtsHeader, AacError> {
    let h: [u8; ADTS_HEADER_LEN] = buf
        .get(..ADTS_HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(AacError::Truncated {
            needed: ADTS_HEADER_LEN,
            have: buf.len(),
        })?;
    // adts_fixed_header(): syncword 12, ID 1, layer 2, protection_absent 1,
    // profile_ObjectType 2, sampling_frequency_index 4, private_bit 1,
    // channel_configuration 3, original_copy 1, home 1.
    if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
        return Err(AacError::BadSyncword);
    }
    let mpeg2 = h[1] & 0x08 != 0;
    let layer = (h[1] >> 1) & 0x03;
    if layer != 0 {
        return Err(AacError::BadLayer { layer });
    }
    let protection_absent = h[1] & 0x01 != 0;
    let object_type = (h[2] >> 6) + 1;
    let sampling_frequency_index = (h[2] >> 2) & 0x0f;
    let sample_rate = *SAMPLING_FREQUENCIES
        .get(usize::from(sampling_frequency_index))
        .ok_or(AacError::BadSamplingFrequencyIndex {
            index: sampling_frequency_index,
        })?;
    let channel_configuration = ((h[2] & 0x01) << 2) | (h[3] >> 6);
    if channel_configuration == 0 {
        return Err(AacError::UnsupportedChannelConfiguration);
    }
    // adts_variable_header(): copyright_identification_bit 1,
    // copyright_identification_start 1, aac_frame_length 13,
    // adts_buffer_fullness 11, number_of_raw_data_blocks_in_frame 2.
    let frame_length =
        (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let raw_data_blocks = (h[6] & 0x03) + 1;
    // 1.A.3.2.1 adts_error_check(): "if (protection_absent == '0') crc_check 16"
    let header_len = if protection_absent {
        ADTS_HEADER_LEN
    } else {
        ADTS_HEADER_LEN + 2
    };
    if buf.len() < header_len {
        return Err(AacError::Truncated {
            needed: header_len,
            have: buf.len(),
        });
    }
    if frame_length < header_len {
        return Err(AacError::BadFrameLength {
            frame_length,
            header_len,
        });
    }
    Ok(AdtsHeader {
        mpeg2,
        protection_absent,
        object_type,
        sampling_frequency_index,
        sample_rate,
        channel_configuration,
        frame_length,
        header_len,
        raw_data_blocks,
    })
}

impl AdtsHeader {
    /// The two-byte AudioSpecificConfig equivalent to this header
    /// (14496-3 1.6.2.1): audioObjectType 5, samplingFrequencyIndex 4,
    /// channelConfiguration 4, then GASpecificConfig with frameLengthFlag,
    /// dependsOnCoreCoder and extensionFlag all 0.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let aot = self.object_type & 0x1f;
        let sfi = self.sampling_frequency_index & 0x0f;
        let ch = self.channel_configuration & 0x0f;
        [(aot << 3) | (sfi >> 1), ((sfi & 1) << 7) | (ch << 3)]
    }

    /// The codec parameters a muxer needs, from this header.
    pub fn params(&self) -> AacParams {
        AacParams {
            asc: Bytes::copy_from_slice(&self.audio_specific_config()),
            object_type: self.object_type,
            sample_rate: self.sample_rate,
            channels: self.channel_configuration,
        }
    }
}

/// Parses the start of an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1),
/// as RFC 3640's `config=` or an `esds` carries it, into [`AacParams`].
///
/// 1.6.2.1 `AudioSpecificConfig()`: "audioObjectType = GetAudioObjectType();
/// samplingFrequencyIndex 4; if ( samplingFrequencyIndex == 0xf )
/// samplingFrequency 24; channelConfiguration 4" — and
/// `GetAudioObjectType()`: "audioObjectType 5; if (audioObjectType == 31)
/// audioObjectType = 32 + audioObjectTypeExt 6". What follows (the
/// GASpecificConfig and any sync extension) is not interpreted; the bytes
/// are kept whole in [`AacParams::asc`].
pub fn parse_audio_specific_config(asc: &[u8]) -> Result<AacParams, AacError> {
    let mut bits = crate::bits::BitReader::new(asc);
    let truncated = AacError::Truncated {
        needed: 2,
        have: asc.len(),
    };
    let mut read = |n: u32| {
        bits.bits(n, "AudioSpecificConfig")
            .map_err(|_| truncated.clone())
    };
    let mut object_type = read(5)?;
    if object_type == 31 {
        object_type = 32 + read(6)?;
    }
    let object_type = u8::try_from(object_type).unwrap_or(u8::MAX);
    if !(1..=4).contains(&object_type) {
        return Err(AacError::UnsupportedObjectType { object_type });
    }
    let index = read(4)? as u8;
    let sample_rate = if index == 0x0f {
        let frequency = read(24)?;
        if !SAMPLING_FREQUENCIES.contains(&frequency) {
            return Err(AacError::UnsupportedSamplingFrequency { frequency });
        }
        frequency
    } else {
        *SAMPLING_FREQUENCIES
            .get(usize::from(index))
            .ok_or(AacError::BadSamplingFrequencyIndex { index })?
    };
    let channels = read(4)? as u8;
    // Table 1.19: 1..=7 name layouts (7 is 7.1, eight channels); 0 leaves
    // the layout to a program_config_element, 8..=15 are reserved here.
    let channels = match channels {
        0 => return Err(AacError::UnsupportedChannelConfiguration),
        7 => 8,
        1..=6 => channels,
        _ => return Err(AacError::UnsupportedChannelConfiguration),
    };
    Ok(AacParams {
        asc: Bytes::copy_from_slice(asc),
        object_type,
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(profile: u8, sfi: u8, ch: u8, len: usize, crc: bool) -> Vec<u8> {
        let mut h = vec![
            0xff,
            0xf0 | u8::from(!crc),
            (profile << 6) | (sfi << 2) | (ch >> 2),
            ((ch & 3) << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            ((len & 7) as u8) << 5 | 0x1f,
            0xfc,
        ];
        if crc {
            h.extend_from_slice(&[0, 0]);
        }
        h
    }

    #[test]
    fn parses_lc_stereo_48k() {
        let h = parse_adts(&header(1, 3, 2, 371, false)).unwrap();
        assert_eq!(h.object_type, 2);
        assert_eq!(h.sample_rate, 48_000);
        assert_eq!(h.channel_configuration, 2);
        assert_eq!(h.frame_length, 371);
        assert_eq!(h.header_len, 7);
        assert_eq!(h.raw_data_blocks, 1);
        // 00010 0011 0010 000 = 0x11 0x90
        assert_eq!(h.audio_specific_config(), [0x11, 0x90]);
        assert_eq!(h.params().codec_string(), "mp4a.40.2");
    }

    #[test]
    fn crc_header_is_nine_bytes() {
        let h = parse_adts(&header(1, 4, 1, 100, true)).unwrap();
        assert_eq!(h.header_len, 9);
        assert_eq!(h.sample_rate, 44_100);
        assert_eq!(h.audio_specific_config(), [0x12, 0x08]);
        assert_eq!(
            parse_adts(&header(1, 4, 1, 100, true)[..8]),
            Err(AacError::Truncated { needed: 9, have: 8 })
        );
    }

    #[test]
    fn rejects_reserved_values() {
        for sfi in 13..=15 {
            assert_eq!(
                parse_adts(&header(1, sfi, 2, 100, false)),
                Err(AacError::BadSamplingFrequencyIndex { index: sfi })
            );
        }
        assert_eq!(
            parse_adts(&header(1, 3, 0, 100, false)),
            Err(AacError::UnsupportedChannelConfiguration)
        );
        assert!(matches!(
            parse_adts(&header(1, 3, 2, 5, false)),
            Err(AacError::BadFrameLength { .. })
        ));
        let mut h = header(1, 3, 2, 100, false);
        h[1] |= 0x02;
        assert_eq!(parse_adts(&h), Err(AacError::BadLayer { layer: 1 }));
        assert_eq!(
            parse_adts(&[0xff, 0x01, 0, 0, 0, 0, 0]),
            Err(AacError::BadSyncword)
        );
        assert!(matches!(
            parse_adts(&[0xff]),
            Err(AacError::Truncated { .. })
        ));
    }

    #[test]
    fn parses_audio_specific_configs() {
        // What ffmpeg 5.1 writes in an RTP SDP's `config=`: AAC-LC, 44.1 kHz
        // (index 4), mono, then a sync extension (0x2b7) it leaves unparsed.
        let p = parse_audio_specific_config(&[0x12, 0x08, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!((p.object_type, p.sample_rate, p.channels), (2, 44_100, 1));
        assert_eq!(&p.asc[..], &[0x12, 0x08, 0x56, 0xe5, 0x00]);
        assert_eq!(p.codec_string(), "mp4a.40.2");
        // 48 kHz stereo, the ADTS-equivalent form.
        let p = parse_audio_specific_config(&[0x11, 0x90]).unwrap();
        assert_eq!((p.sample_rate, p.channels), (48_000, 2));
        // Explicit frequency (index 15): 48000 = 0x00bb80.
        // 00010 1111 000000001011101110000000 0010 -> bits packed below.
        let p = parse_audio_specific_config(&[0x17, 0x80, 0x5d, 0xc0, 0x10]).unwrap();
        assert_eq!((p.sample_rate, p.channels), (48_000, 2));
        // HE-AAC signalled explicitly (AOT 5), escape AOT, reserved index,
        // PCE layout, and too short.
        assert_eq!(
            parse_audio_specific_config(&[0x2b, 0x92, 0x08, 0x00]),
            Err(AacError::UnsupportedObjectType { object_type: 5 })
        );
        assert!(matches!(
            parse_audio_specific_config(&[0xf8, 0x00, 0x00]),
            Err(AacError::UnsupportedObjectType { object_type: 32 })
        ));
        assert_eq!(
            parse_audio_specific_config(&[0x16, 0x90]),
            Err(AacError::BadSamplingFrequencyIndex { index: 13 })
        );
        assert_eq!(
            parse_audio_specific_config(&[0x11, 0x80]),
            Err(AacError::UnsupportedChannelConfiguration)
        );
        assert!(matches!(
            parse_audio_specific_config(&[0x11]),
            Err(AacError::Truncated { .. })
        ));
        assert!(parse_audio_specific_config(&[]).is_err());
    }
}
