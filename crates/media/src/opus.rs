//! Opus packets (RFC 6716) and their framing in MPEG-TS (the Xiph "Opus in
//! MPEG-TS" specification, `opus_in_ts`): the TOC byte that gives a packet's
//! duration, and the `opus_control_header` that delimits each access unit
//! inside a PES.
//!
//! ```
//! use ferrocast_media::opus::{packet_samples, parse_control_header};
//!
//! // Control header: prefix, no trims, au_size 3; then a 20 ms CELT packet.
//! let pes = [0x7f, 0xe0, 0x03, 0xfc, 0xff, 0xfe];
//! let header = parse_control_header(&pes).unwrap();
//! assert_eq!((header.header_len, header.au_size), (3, 3));
//! assert_eq!(packet_samples(&pes[3..]).unwrap(), 960);
//! ```

/// Opus always decodes at 48 kHz; every duration here is in its samples.
/// RFC 7845 §4: "all Opus streams are decoded at 48 kHz".
pub const OPUS_SAMPLE_RATE: u32 = 48_000;

/// RFC 6716 §3.2.5: a packet holds "no more than 120 ms of audio total".
pub const MAX_PACKET_SAMPLES: u32 = 120 * 48;

/// Why bytes are not a usable Opus packet or control header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpusError {
    /// The bytes end inside the control header.
    #[error("Opus control header needs more than the {have} bytes left")]
    TruncatedHeader {
        /// Bytes available.
        have: usize,
    },
    /// The first 11 bits are not the `0x3FF` control_header_prefix.
    #[error("no Opus control_header_prefix (0x3FF)")]
    BadPrefix,
    /// The access unit is empty. RFC 6716 §3.1: "A well-formed Opus packet
    /// MUST contain at least one byte".
    #[error("empty Opus packet")]
    EmptyPacket,
    /// A code 3 packet with a frame count of zero (RFC 6716 §3.2.5 \[R5\]) or
    /// without its frame count byte.
    #[error("Opus code 3 packet with no frame count")]
    BadFrameCount,
    /// The packet holds more than 120 ms (RFC 6716 §3.2.5 \[R5\]).
    #[error("Opus packet of {samples} samples exceeds 120 ms")]
    TooLong {
        /// Samples at 48 kHz the TOC claims.
        samples: u32,
    },
}

/// One parsed `opus_control_header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ControlHeader {
    /// Bytes of the header; the access unit follows.
    pub header_len: usize,
    /// `au_size`: bytes of the Opus access unit after the header.
    pub au_size: usize,
    /// `start_trim`, when `start_trim_flag` is set: samples (48 kHz) to
    /// discard from the start of this access unit (the encoder's pre-skip on
    /// the first one).
    pub start_trim: Option<u16>,
    /// `end_trim`, when `end_trim_flag` is set: samples to discard from its
    /// end.
    pub end_trim: Option<u16>,
}

/// Parses the `opus_control_header` at the start of `buf`.
///
/// The syntax (Opus in MPEG-TS, `opus_control_header()`):
///
/// ```text
/// control_header_prefix    11  '0111 1111 111' (0x3FF)
/// start_trim_flag           1
/// end_trim_flag             1
/// control_extension_flag    1
/// Reserved                  2
/// au_size: a run of 0xFF bytes, each adding 255, then one byte < 0xFF
/// if (start_trim_flag) { Reserved 3; start_trim 13 }
/// if (end_trim_flag)   { Reserved 3; end_trim 13 }
/// if (control_extension_flag) { control_extension_length 8; reserved bytes }
/// ```
///
/// # Errors
///
/// [`OpusError::TruncatedHeader`] when `buf` ends inside the header,
/// [`OpusError::BadPrefix`] when it does not start with the prefix.
pub fn parse_control_header(buf: &[u8]) -> Result<ControlHeader, OpusError> {
    let truncated = OpusError::TruncatedHeader { have: buf.len() };
    let [b0, b1, ..] = *buf else {
        return Err(if buf.first().is_some_and(|&b| b != 0x7f) {
            OpusError::BadPrefix
        } else {
            truncated
        });
    };
    if (u16::from_be_bytes([b0, b1]) >> 5) != 0x3ff {
        return Err(OpusError::BadPrefix);
    }
    let start_trim_flag = b1 & 0x10 != 0;
    let end_trim_flag = b1 & 0x08 != 0;
    let control_extension_flag = b1 & 0x04 != 0;
    let mut pos = 2;
    let mut au_size = 0usize;
    loop {
        let byte = *buf.get(pos).ok_or(truncated.clone())?;
        pos += 1;
        au_size += usize::from(byte);
        if byte != 0xff {
            break;
        }
    }
    let mut trim = |flag: bool| -> Result<Option<u16>, OpusError> {
        if !flag {
            return Ok(None);
        }
        let bytes = buf.get(pos..pos + 2).ok_or(truncated.clone())?;
        pos += 2;
        Ok(Some(u16::from_be_bytes([bytes[0], bytes[1]]) & 0x1fff))
    };
    let start_trim = trim(start_trim_flag)?;
    let end_trim = trim(end_trim_flag)?;
    if control_extension_flag {
        let len = *buf.get(pos).ok_or(truncated.clone())?;
        pos += 1 + usize::from(len);
        if pos > buf.len() {
            return Err(truncated);
        }
    }
    Ok(ControlHeader {
        header_len: pos,
        au_size,
        start_trim,
        end_trim,
    })
}

/// Samples per frame at 48 kHz for a TOC `config` (RFC 6716 §3.1, Table 2):
/// 0..=11 SILK-only 10, 20, 40, 60 ms; 12..=15 Hybrid 10, 20 ms;
/// 16..=31 CELT-only 2.5, 5, 10, 20 ms.
const fn frame_samples(config: u8) -> u32 {
    match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    }
}

/// The duration of an Opus packet in samples at 48 kHz, from its TOC byte
/// (RFC 6716 §3.1) and, for code 3, its frame count byte (§3.2.5).
///
/// §3.1: "config: ... the first five bits"; "c: the last two bits ... 0: 1
/// frame in the packet; 1: 2 frames in the packet, each with equal
/// compressed size; 2: 2 frames in the packet, with different compressed
/// sizes; 3: an arbitrary number of frames in the packet".
///
/// # Errors
///
/// [`OpusError::EmptyPacket`], [`OpusError::BadFrameCount`] or
/// [`OpusError::TooLong`] for packets RFC 6716 calls malformed.
pub fn packet_samples(packet: &[u8]) -> Result<u32, OpusError> {
    let &toc = packet.first().ok_or(OpusError::EmptyPacket)?;
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        // §3.2.5: frame count byte "| v |p|     M     |"; "M MUST NOT be zero".
        _ => match packet.get(1).map(|b| b & 0x3f) {
            Some(m) if m > 0 => u32::from(m),
            _ => return Err(OpusError::BadFrameCount),
        },
    };
    let samples = frames * frame_samples(toc >> 3);
    if samples > MAX_PACKET_SAMPLES {
        return Err(OpusError::TooLong { samples });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        // config 31 (CELT FB 20 ms), code 0.
        assert_eq!(packet_samples(&[0xfc]), Ok(960));
        // config 16 (CELT NB 2.5 ms), code 1 and 2: two frames.
        assert_eq!(packet_samples(&[(16 << 3) | 1]), Ok(240));
        assert_eq!(packet_samples(&[(16 << 3) | 2]), Ok(240));
        // config 3 (SILK NB 60 ms), code 3 with 2 frames: 120 ms.
        assert_eq!(packet_samples(&[(3 << 3) | 3, 2]), Ok(5760));
        assert_eq!(
            packet_samples(&[(3 << 3) | 3, 3]),
            Err(OpusError::TooLong { samples: 8640 })
        );
        // Hybrid 10 and 20 ms.
        assert_eq!(packet_samples(&[12 << 3]), Ok(480));
        assert_eq!(packet_samples(&[15 << 3]), Ok(960));
        // SILK 40 ms.
        assert_eq!(packet_samples(&[10 << 3]), Ok(1920));
        assert_eq!(packet_samples(&[3]), Err(OpusError::BadFrameCount));
        assert_eq!(packet_samples(&[3, 0x80]), Err(OpusError::BadFrameCount));
        assert_eq!(packet_samples(&[]), Err(OpusError::EmptyPacket));
    }

    #[test]
    fn control_headers() {
        // au_size 255 is written as 0xFF 0x00; start and end trim follow.
        let h = parse_control_header(&[0x7f, 0xf8, 0xff, 0x00, 0x01, 0x38, 0xe0, 0x10]).unwrap();
        assert_eq!(h.header_len, 8);
        assert_eq!(h.au_size, 255);
        assert_eq!(h.start_trim, Some(312));
        // Reserved bits above the 13-bit trim are ignored.
        assert_eq!(h.end_trim, Some(0x10));
        // An extension of 2 bytes is skipped.
        let h = parse_control_header(&[0x7f, 0xe4, 0x05, 2, 9, 9]).unwrap();
        assert_eq!((h.header_len, h.au_size), (6, 5));
        assert_eq!(
            parse_control_header(&[0x7f, 0xe4, 0x05, 2, 9]),
            Err(OpusError::TruncatedHeader { have: 5 })
        );
        assert_eq!(
            parse_control_header(&[0x7f, 0xe0, 0xff]),
            Err(OpusError::TruncatedHeader { have: 3 })
        );
        assert_eq!(
            parse_control_header(&[0x7f]),
            Err(OpusError::TruncatedHeader { have: 1 })
        );
        assert_eq!(parse_control_header(&[0xfc, 0]), Err(OpusError::BadPrefix));
        assert_eq!(
            parse_control_header(&[0x7f, 0xc0, 1]),
            Err(OpusError::BadPrefix)
        );
    }
}
