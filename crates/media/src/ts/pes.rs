//! PES packets (ISO/IEC 13818-1 2.4.3.6): reassembly from TS payloads and
//! the header fields that carry timing.

use bytes::{Bytes, BytesMut};

/// Largest PES the demuxer buffers. Far above any real access unit at the
/// bit rates Ferrocast ingests, small enough that a hostile stream cannot
/// exhaust memory.
pub const MAX_PES_SIZE: usize = 8 << 20;

/// Why a PES packet could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PesError {
    /// The packet ended inside its own header.
    #[error("PES packet of {len} bytes ends inside its header")]
    Truncated {
        /// Bytes in the packet.
        len: usize,
    },
    /// No `00 00 01` packet_start_code_prefix.
    #[error("missing PES packet_start_code_prefix")]
    BadStartCode,
    /// The `'10'` marker before the optional header is missing.
    #[error("PES optional header does not start with '10'")]
    BadMarker,
    /// PTS_DTS_flags is `'01'`, which the standard forbids.
    #[error("PES PTS_DTS_flags is the forbidden value '01'")]
    ForbiddenPtsDtsFlags,
    /// The PES_header_data_length is too short for the timestamps it flags.
    #[error("PES_header_data_length {len} too short for the flagged timestamps")]
    HeaderTooShort {
        /// PES_header_data_length.
        len: u8,
    },
}

/// A complete PES packet.
#[derive(Debug, Clone)]
pub(crate) struct Pes {
    /// 33-bit PTS as sent.
    pub pts: Option<u64>,
    /// 33-bit DTS as sent.
    pub dts: Option<u64>,
    /// PES_packet_data_bytes, sharing the reassembly buffer.
    pub payload: Bytes,
}

/// Why the PES being assembled was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// It grew past [`MAX_PES_SIZE`].
    TooLarge,
    /// A new PES started (or input ended) before PES_packet_length was reached.
    Short { expected: usize, got: usize },
    /// The header does not parse.
    Bad(PesError),
}

/// Reassembles the PES packets of one PID.
#[derive(Debug, Default)]
pub(crate) struct PesAssembler {
    buf: BytesMut,
    /// Collecting (a payload_unit_start was seen and nothing lost since).
    active: bool,
}

impl PesAssembler {
    /// Bytes held.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drops the PES being assembled (a packet was lost).
    pub(crate) fn abort(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    /// At a payload_unit_start or end of input: the PES being assembled is
    /// complete if its length was unbounded (PES_packet_length 0).
    pub(crate) fn flush(&mut self) -> Option<Result<Pes, Dropped>> {
        if !self.active {
            return None;
        }
        self.active = false;
        let data = self.buf.split().freeze();
        if let Some(total) = declared_total(&data)
            && data.len() < total
        {
            return Some(Err(Dropped::Short {
                expected: total,
                got: data.len(),
            }));
        }
        Some(parse(data).map_err(Dropped::Bad))
    }

    /// Starts a new PES with the payload of a payload_unit_start packet.
    pub(crate) fn start(&mut self, payload: &[u8]) -> Option<Result<Pes, Dropped>> {
        self.buf.clear();
        self.active = true;
        self.append(payload)
    }

    /// Adds a continuation payload. Returns the PES once PES_packet_length
    /// is reached, so it goes out without waiting for the next packet.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Option<Result<Pes, Dropped>> {
        if !self.active {
            return None;
        }
        if self.buf.len() + payload.len() > MAX_PES_SIZE {
            self.abort();
            return Some(Err(Dropped::TooLarge));
        }
        self.buf.extend_from_slice(payload);
        let total = declared_total(&self.buf)?;
        if self.buf.len() < total {
            return None;
        }
        self.active = false;
        // Bytes past PES_packet_length are not part of the packet.
        let data = self.buf.split().freeze().slice(..total);
        Some(parse(data).map_err(Dropped::Bad))
    }
}

/// 6 + PES_packet_length when that is nonzero. "A value of 0 indicates that
/// the PES packet length is neither specified nor bounded and is allowed
/// only in PES packets whose payload consists of bytes from a video
/// elementary stream contained in Transport Stream packets."
fn declared_total(buf: &[u8]) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*buf.get(4)?, *buf.get(5)?]));
    (len != 0).then_some(6 + len)
}

/// Stream ids whose PES packets have no optional header (2.4.3.7: the
/// `if (stream_id != program_stream_map && ...)` condition).
fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    )
}

fn parse(data: Bytes) -> Result<Pes, PesError> {
    let len = data.len();
    if len < 6 {
        return Err(PesError::Truncated { len });
    }
    if data[..3] != [0, 0, 1] {
        return Err(PesError::BadStartCode);
    }
    if !has_optional_header(data[3]) {
        return Ok(Pes {
            pts: None,
            dts: None,
            payload: data.slice(6..),
        });
    }
    if len < 9 {
        return Err(PesError::Truncated { len });
    }
    if data[6] & 0xc0 != 0x80 {
        return Err(PesError::BadMarker);
    }
    let header_len = data[8];
    let payload_start = 9 + usize::from(header_len);
    if len < payload_start {
        return Err(PesError::Truncated { len });
    }
    let header = &data[9..payload_start];
    // "PTS_DTS_flags ... When the PTS_DTS_flags field is set to '10', the
    // PTS fields shall be present in the PES packet header. When the
    // PTS_DTS_flags field is set to '11', both the PTS fields and DTS fields
    // shall be present ... The value '01' is forbidden."
    let (pts, dts) = match data[7] >> 6 {
        0b00 => (None, None),
        0b01 => return Err(PesError::ForbiddenPtsDtsFlags),
        0b10 => {
            let pts = header
                .get(..5)
                .ok_or(PesError::HeaderTooShort { len: header_len })?;
            (Some(timestamp(pts)), None)
        }
        _ => {
            let both = header
                .get(..10)
                .ok_or(PesError::HeaderTooShort { len: header_len })?;
            (Some(timestamp(&both[..5])), Some(timestamp(&both[5..])))
        }
    };
    Ok(Pes {
        pts,
        dts,
        payload: data.slice(payload_start..),
    })
}

/// `'001x' PTS[32..30] marker PTS[29..15] marker PTS[14..0] marker`.
/// Marker bits are not checked: muxers get them wrong and nothing depends
/// on them.
fn timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_ts(prefix: u8, ts: u64) -> [u8; 5] {
        [
            (prefix << 4) | ((ts >> 29) as u8 & 0x0e) | 1,
            (ts >> 22) as u8,
            ((ts >> 14) as u8 & 0xfe) | 1,
            (ts >> 7) as u8,
            ((ts << 1) as u8) | 1,
        ]
    }

    fn pes(len: u16, pts: u64, dts: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 1, 0xe0];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[0x80, 0xc0, 10]);
        v.extend_from_slice(&encode_ts(3, pts));
        v.extend_from_slice(&encode_ts(1, dts));
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn reads_33_bit_timestamps() {
        let max = (1u64 << 33) - 1;
        let p = parse(Bytes::from(pes(0, max, 12345, b"abc"))).unwrap();
        assert_eq!((p.pts, p.dts), (Some(max), Some(12345)));
        assert_eq!(&p.payload[..], b"abc");
    }

    #[test]
    fn bounded_pes_completes_without_waiting() {
        let data = pes(13 + 4, 900, 900, b"abcd");
        let mut asm = PesAssembler::default();
        assert!(asm.start(&data[..10]).is_none());
        let p = asm.append(&data[10..]).unwrap().unwrap();
        assert_eq!(&p.payload[..], b"abcd");
        assert!(asm.flush().is_none());
    }

    #[test]
    fn unbounded_pes_completes_on_flush() {
        let data = pes(0, 900, 900, b"abcd");
        let mut asm = PesAssembler::default();
        assert!(asm.start(&data).is_none());
        assert!(asm.append(b"ef").is_none());
        assert_eq!(&asm.flush().unwrap().unwrap().payload[..], b"abcdef");
    }

    #[test]
    fn short_and_oversized_are_dropped() {
        let data = pes(100, 900, 900, b"abcd");
        let mut asm = PesAssembler::default();
        assert!(asm.start(&data).is_none());
        assert!(matches!(
            asm.flush(),
            Some(Err(Dropped::Short { expected: 106, .. }))
        ));
        assert!(asm.start(&pes(0, 0, 0, b"")).is_none());
        let chunk = vec![0u8; 184];
        let mut dropped = None;
        for _ in 0..=MAX_PES_SIZE / 184 {
            if let Some(r) = asm.append(&chunk) {
                dropped = Some(r);
                break;
            }
        }
        assert!(matches!(dropped, Some(Err(Dropped::TooLarge))));
        assert_eq!(asm.buffered(), 0);
    }

    #[test]
    fn header_errors() {
        assert!(matches!(
            parse(Bytes::from_static(&[0, 0, 2, 0xe0, 0, 0])),
            Err(PesError::BadStartCode)
        ));
        assert!(matches!(
            parse(Bytes::from_static(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x40, 0])),
            Err(PesError::ForbiddenPtsDtsFlags)
        ));
        assert!(matches!(
            parse(Bytes::from_static(&[
                0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 2, 0, 0
            ])),
            Err(PesError::HeaderTooShort { len: 2 })
        ));
        assert!(matches!(
            parse(Bytes::from_static(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 9])),
            Err(PesError::Truncated { .. })
        ));
    }
}
