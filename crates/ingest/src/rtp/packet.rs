//! One RTP packet off the wire, checked before `rtp` parses it.

use bytes::Bytes;
use webrtc_util::Unmarshal;

/// Why a datagram is not an RTP packet we take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than its own header says.
    #[error("datagram of {len} bytes is too short for its RTP header")]
    Short {
        /// Datagram length.
        len: usize,
    },
    /// Not RTP version 2.
    #[error("RTP version {version}, expected 2")]
    Version {
        /// The version field.
        version: u8,
    },
    /// A header extension element runs past the end of the datagram.
    #[error("RTP header extension runs past the end of the {len}-byte datagram")]
    Extension {
        /// Datagram length.
        len: usize,
    },
    /// The `rtp` crate refused it.
    #[error("malformed RTP packet: {0}")]
    Malformed(String),
}

/// The parts of an RTP packet ingest uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// 16-bit sequence number.
    pub sequence: u16,
    /// 32-bit media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload, padding removed.
    pub payload: Bytes,
}

/// Parse one datagram as an RTP packet.
///
/// The header is checked first for what `rtp` 0.17 would otherwise panic
/// on (RFC 8285 extension elements whose lengths run past the datagram), so
/// any bytes a stranger sends give an error, never a panic.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket, PacketError> {
    precheck(datagram)?;
    let mut buf = datagram;
    let packet = rtp::packet::Packet::unmarshal(&mut buf)
        .map_err(|e| PacketError::Malformed(e.to_string()))?;
    Ok(RtpPacket {
        payload_type: packet.header.payload_type,
        marker: packet.header.marker,
        sequence: packet.header.sequence_number,
        timestamp: packet.header.timestamp,
        ssrc: packet.header.ssrc,
        payload: packet.payload,
    })
}

/// RFC 3550 §5.1: "version (V): 2 bits. This field identifies the version
/// of RTP. The version defined by this specification is two (2)." — and
/// RFC 8285 §4.2/§4.3 element lengths, walked the way `rtp` walks them.
fn precheck(d: &[u8]) -> Result<(), PacketError> {
    let len = d.len();
    let short = PacketError::Short { len };
    let first = *d.first().ok_or(short.clone())?;
    if len < 12 {
        return Err(short);
    }
    let version = first >> 6;
    if version != 2 {
        return Err(PacketError::Version { version });
    }
    let csrc = usize::from(first & 0x0f);
    let mut at = 12 + 4 * csrc;
    if len < at {
        return Err(short);
    }
    if first & 0x10 == 0 {
        return Ok(());
    }
    let overrun = PacketError::Extension { len };
    let word = |i: usize| -> Result<u16, PacketError> {
        match d.get(i..i + 2) {
            Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
            _ => Err(overrun.clone()),
        }
    };
    let profile = word(at)?;
    let ext_len = usize::from(word(at + 2)?) * 4;
    at += 4;
    let end = at + ext_len;
    if end > len {
        return Err(overrun);
    }
    let byte = |i: usize| d.get(i).copied().ok_or(overrun.clone());
    match profile {
        // RFC 8285 §4.2 one-byte header: "ID ... len ... the number of data
        // bytes of this header extension element minus one".
        0xBEDE => {
            while at < end {
                let b = byte(at)?;
                at += 1;
                if b == 0 {
                    continue;
                }
                if b >> 4 == 0x0f {
                    break;
                }
                at += usize::from(b & 0x0f) + 1;
                if at > len {
                    return Err(overrun);
                }
            }
        }
        // RFC 8285 §4.3 two-byte header: ID byte, then a length byte.
        0x1000 => {
            while at < end {
                let b = byte(at)?;
                at += 1;
                if b == 0 {
                    continue;
                }
                at += usize::from(byte(at)?) + 1;
                if at > len {
                    return Err(overrun);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn header(pt: u8, seq: u16, ts: u32) -> Vec<u8> {
        let mut h = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        h[2..4].copy_from_slice(&seq.to_be_bytes());
        h[4..8].copy_from_slice(&ts.to_be_bytes());
        h
    }

    #[test]
    fn parses_a_plain_packet() {
        let mut d = header(0x80 | 33, 513, 90_000);
        d.extend_from_slice(&[0x47, 1, 2]);
        let p = parse(&d).unwrap();
        assert_eq!(p.payload_type, 33);
        assert!(p.marker);
        assert_eq!(p.sequence, 513);
        assert_eq!(p.timestamp, 90_000);
        assert_eq!(p.ssrc, 7);
        assert_eq!(&p.payload[..], &[0x47, 1, 2]);
    }

    #[test]
    fn refuses_what_would_panic_the_rtp_crate() {
        // One-byte extension element claiming 16 bytes in a 4-byte extension.
        let mut d = header(33, 1, 0);
        d[0] |= 0x10;
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x1f, 0, 0, 0]);
        assert_eq!(parse(&d), Err(PacketError::Extension { len: d.len() }));
        // Two-byte form, length byte past the end.
        let mut d = header(33, 1, 0);
        d[0] |= 0x10;
        d.extend_from_slice(&[0x10, 0x00, 0, 1, 0, 0, 0, 1]);
        assert_eq!(parse(&d), Err(PacketError::Extension { len: d.len() }));
        assert!(matches!(
            parse(&[0x40; 20]),
            Err(PacketError::Version { version: 1 })
        ));
        assert!(matches!(parse(&[0x8f; 20]), Err(PacketError::Short { .. })));
        assert!(matches!(parse(&[]), Err(PacketError::Short { len: 0 })));
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&d);
        }

        #[test]
        fn arbitrary_extensions_never_panic(
            first in 0x90u8..=0x9f,
            profile in prop_oneof![Just(0xBEDEu16), Just(0x1000u16), any::<u16>()],
            words in 0u16..8,
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut d = vec![first, 33, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
            d.extend(std::iter::repeat_n(0u8, 4 * usize::from(first & 0x0f)));
            d.extend_from_slice(&profile.to_be_bytes());
            d.extend_from_slice(&words.to_be_bytes());
            d.extend_from_slice(&rest);
            let _ = parse(&d);
        }
    }
}
