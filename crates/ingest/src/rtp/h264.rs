//! H.264 over RTP (RFC 6184): packets in, Annex-B access units out. Sans-IO.
//!
//! Non-interleaved mode only (packetization-mode 0 and 1): single NAL unit
//! packets (§5.6), STAP-A (§5.7.1) and FU-A (§5.8). An access unit ends on
//! the marker bit or, for senders that leave it clear, when the timestamp
//! changes. Lost packets are seen as gaps in the (already reordered)
//! sequence numbers: a NAL unit missing a fragment is dropped and its
//! access unit, and the one the next packet belongs to, are marked
//! [`damaged`](H264Unit::damaged); what to do with a damaged unit (the
//! elementary-stream session drops it and waits for the next IDR) is the
//! caller's choice.
//!
//! RTP carries only the presentation time of a picture (§5.1: "The RTP
//! timestamp is set to the sampling timestamp of the content"), so there
//! is no decode time here; see [`super::elementary`] for what that means
//! for streams with B-frames.

use ferrocast_media::Time90k;
use ferrocast_media::h264::nal_type;

use super::access_unit::{Assembler, Failure, FragmentError};
pub use super::access_unit::{MAX_ACCESS_UNIT_BYTES, VideoUnit};
use super::packet::RtpPacket;

/// RFC 6184 Table 1: NAL unit types of the RTP payload structures.
mod payload_type {
    pub const STAP_A: u8 = 24;
    pub const STAP_B: u8 = 25;
    pub const MTAP16: u8 = 26;
    pub const MTAP24: u8 = 27;
    pub const FU_A: u8 = 28;
    pub const FU_B: u8 = 29;
}

/// Why an RTP packet's H.264 payload was (partly) not used. The access unit
/// it belongs to is marked damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H264RtpError {
    /// No payload at all.
    #[error("RTP packet {sequence}: empty H.264 payload")]
    Empty {
        /// Sequence number of the packet.
        sequence: u16,
    },
    /// STAP-B, MTAP or FU-B: interleaved mode (packetization-mode 2), which
    /// is refused in the SDP.
    #[error(
        "RTP packet {sequence}: H.264 payload type {nal_type} belongs to the interleaved mode, not supported"
    )]
    Interleaved {
        /// Sequence number of the packet.
        sequence: u16,
        /// The payload's NAL unit type (25, 26, 27 or 29).
        nal_type: u8,
    },
    /// A STAP-A whose NAL unit sizes run past the payload, or are zero.
    #[error("RTP packet {sequence}: STAP-A NAL unit size at byte {offset} runs past the payload")]
    Aggregation {
        /// Sequence number of the packet.
        sequence: u16,
        /// Offset of the bad size field within the payload.
        offset: usize,
    },
    /// An FU-A too short for its two header bytes, or with both the start
    /// and the end bit set.
    #[error("RTP packet {sequence}: malformed FU-A header")]
    Fragment {
        /// Sequence number of the packet.
        sequence: u16,
    },
    /// An FU-A continuing a NAL unit whose start never came, with no loss
    /// seen to explain it.
    #[error("RTP packet {sequence}: FU-A fragment without a start fragment")]
    FragmentWithoutStart {
        /// Sequence number of the packet.
        sequence: u16,
    },
    /// The access unit grew past [`MAX_ACCESS_UNIT_BYTES`].
    #[error("RTP packet {sequence}: access unit larger than {MAX_ACCESS_UNIT_BYTES} bytes")]
    TooLarge {
        /// Sequence number of the packet.
        sequence: u16,
    },
}

/// One H.264 access unit from RTP.
pub type H264Unit = VideoUnit;

/// Reassembles H.264 access units from RTP packets in sequence order.
#[derive(Debug)]
pub struct H264Depacketizer {
    au: Assembler,
}

impl Default for H264Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Depacketizer {
    /// A depacketiser on the 90 kHz clock RFC 6184 §8.2.1 requires ("The
    /// clock rate in the "a=rtpmap" line MUST be 90000").
    pub fn new() -> Self {
        H264Depacketizer {
            au: Assembler::new(),
        }
    }

    /// NAL units dropped because a fragment of theirs was lost.
    pub fn dropped_nals(&self) -> u64 {
        self.au.dropped_nals()
    }

    /// Take the next packet in sequence order; access units it completes are
    /// appended to `out`. An error means (part of) the payload was not used
    /// and its access unit is marked damaged.
    ///
    /// §5.1: "Marker bit (M): 1 bit. Set for the very last packet of the
    /// access unit indicated by the RTP timestamp".
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<H264Unit>,
    ) -> Result<(), H264RtpError> {
        self.au.begin_packet(packet, out);
        let result = self.payload(packet);
        let failure = result.as_ref().err().map(|e| match e {
            H264RtpError::TooLarge { .. } => Failure::TooLarge,
            _ => Failure::Damaged,
        });
        self.au.end_packet(packet.marker, failure, out);
        result
    }

    /// End of input: the open access unit, if any, is emitted as it is.
    pub fn finish(&mut self, out: &mut Vec<H264Unit>) {
        self.au.finish(out);
    }

    /// A new sender: forget the sequence, drop any partial unit, and place
    /// its first timestamp at `at` on the stream timeline.
    pub fn rebase(&mut self, at: Time90k) {
        self.au.rebase(at);
    }

    fn payload(&mut self, packet: &RtpPacket) -> Result<(), H264RtpError> {
        let sequence = packet.sequence;
        let payload = &packet.payload[..];
        // §5.3: "F: 1 bit, forbidden_zero_bit", "NRI: 2 bits",
        // "Type: 5 bits, nal_unit_type".
        let Some(&header) = payload.first() else {
            return Err(H264RtpError::Empty { sequence });
        };
        match header & 0x1f {
            // §5.6: "Single NAL Unit Packet: Contains only a single NAL unit
            // in the payload. The NAL header type field is equal to the
            // original NAL unit type, i.e., in the range of 1 to 23".
            1..=23 => {
                self.au.abandon_fragment();
                self.append_nal(payload, sequence)
            }
            payload_type::STAP_A => {
                self.au.abandon_fragment();
                self.stap_a(payload, sequence)
            }
            payload_type::FU_A => self.fu_a(payload, sequence),
            nal_type @ (payload_type::STAP_B
            | payload_type::MTAP16
            | payload_type::MTAP24
            | payload_type::FU_B) => Err(H264RtpError::Interleaved { sequence, nal_type }),
            // §5.4 Table 1: 0 and 30-31 are "reserved"; §5.2: "A receiver
            // MUST ignore NAL unit types 0 and 30-31"-style undefined types.
            _ => Ok(()),
        }
    }

    /// §5.7.1: "STAP-A ... NAL unit size (16 bits) ... followed by the NAL
    /// unit", repeated; "the NALU size indicates the size of a NAL unit in
    /// bytes, excluding the two octets of the NALU size field".
    fn stap_a(&mut self, payload: &[u8], sequence: u16) -> Result<(), H264RtpError> {
        for nal in aggregated_nals(payload, 1) {
            let nal = nal.map_err(|offset| H264RtpError::Aggregation { sequence, offset })?;
            self.append_nal(nal, sequence)?;
        }
        Ok(())
    }

    /// §5.8: FU indicator (F, NRI, type 28), then the FU header: "S: 1 bit
    /// ... the start of a fragmented NAL unit", "E: 1 bit ... the end of a
    /// fragmented NAL unit", "R: 1 bit ... MUST be equal to 0 and MUST be
    /// ignored by the receiver", "Type: 5 bits ... the NAL unit payload
    /// type". "A fragmented NAL unit MUST NOT be transmitted in one FU; that
    /// is, the Start bit and End bit MUST NOT both be set to one in the same
    /// FU header."
    fn fu_a(&mut self, payload: &[u8], sequence: u16) -> Result<(), H264RtpError> {
        let (&[indicator, header], data) = (
            payload
                .first_chunk::<2>()
                .ok_or(H264RtpError::Fragment { sequence })?,
            payload.get(2..).unwrap_or_default(),
        );
        let (start, end) = (header & 0x80 != 0, header & 0x40 != 0);
        if start && end {
            return Err(H264RtpError::Fragment { sequence });
        }
        // "the NAL unit type octet of the fragmented NAL unit is not
        // included as such in the fragmentation unit payload, but rather the
        // information of the NAL unit type octet ... is conveyed in the F
        // and NRI fields of the FU indicator ... and in the type field of
        // the FU header."
        let nal = self
            .au
            .fragment(start, end, &[(indicator & 0xe0) | (header & 0x1f)], data)
            .map_err(|e| match e {
                FragmentError::Orphan => H264RtpError::FragmentWithoutStart { sequence },
                FragmentError::TooLarge => H264RtpError::TooLarge { sequence },
            })?;
        if let Some(nal) = nal {
            self.append_nal(&nal, sequence)?;
        }
        Ok(())
    }

    fn append_nal(&mut self, nal: &[u8], sequence: u16) -> Result<(), H264RtpError> {
        let keyframe = nal.first().is_some_and(|h| h & 0x1f == nal_type::IDR);
        self.au
            .append_nal(nal, keyframe)
            .map_err(|_| H264RtpError::TooLarge { sequence })
    }
}

/// The NAL units of an aggregation packet whose first unit's 16-bit size
/// field is at `offset` (RFC 6184 STAP-A, RFC 7798 AP without DONL): each
/// item is a NAL unit, or the offset of a size field that runs past the
/// payload or is zero.
pub(crate) fn aggregated_nals(
    payload: &[u8],
    offset: usize,
) -> impl Iterator<Item = Result<&[u8], usize>> {
    let mut offset = Some(offset);
    std::iter::from_fn(move || {
        let at = offset.filter(|at| *at < payload.len())?;
        let nal = match payload.get(at..at + 2) {
            Some(&[a, b]) => {
                let size = usize::from(u16::from_be_bytes([a, b]));
                payload
                    .get(at + 2..at + 2 + size)
                    .filter(|nal| !nal.is_empty())
                    .map(|nal| (nal, at + 2 + size))
            }
            _ => None,
        };
        Some(match nal {
            Some((nal, next)) => {
                offset = Some(next);
                Ok(nal)
            }
            None => {
                offset = None;
                Err(at)
            }
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    const START_CODE: [u8; 4] = [0, 0, 0, 1];

    fn packet(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            marker,
            sequence,
            timestamp,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&START_CODE[..], n].concat())
            .collect()
    }

    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x0d, 0xac];
    const PPS: &[u8] = &[0x68, 0xeb, 0xc3];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x33, 0xff];
    const P: &[u8] = &[0x41, 0x9a, 0x21, 0x6c];

    /// FU-A packets of `nal` in pieces of at most `max` payload bytes.
    fn fu_a(nal: &[u8], max: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<&[u8]> = nal[1..].chunks(max).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut h = nal[0] & 0x1f;
                if i == 0 {
                    h |= 0x80;
                }
                if i == last {
                    h |= 0x40;
                }
                [&[(nal[0] & 0xe0) | 28, h][..], c].concat()
            })
            .collect()
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x18];
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    #[test]
    fn single_nal_packets_and_marker() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(10, 3000, false, SPS), &mut out).unwrap();
        d.push(&packet(11, 3000, false, PPS), &mut out).unwrap();
        assert!(out.is_empty());
        d.push(&packet(12, 3000, true, IDR), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &annexb(&[SPS, PPS, IDR])[..]);
        assert!(out[0].keyframe && !out[0].damaged);
        assert_eq!(out[0].pts, Time90k::ZERO);
        d.push(&packet(13, 6600, true, P), &mut out).unwrap();
        assert_eq!(out[1].pts, Time90k(3600));
        assert!(!out[1].keyframe);
    }

    #[test]
    fn stap_a_then_fu_a_across_packets() {
        let big: Vec<u8> = [IDR, &[0x5a; 3000][..]].concat();
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(1, 0, false, &stap_a(&[SPS, PPS])), &mut out)
            .unwrap();
        let frags = fu_a(&big, 1000);
        assert_eq!(frags.len(), 4);
        for (i, f) in frags.iter().enumerate() {
            d.push(&packet(2 + i as u16, 0, i == frags.len() - 1, f), &mut out)
                .unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &annexb(&[SPS, PPS, &big])[..]);
        assert!(out[0].keyframe && !out[0].damaged);
    }

    #[test]
    fn lost_middle_fragment_drops_the_nal_and_damages_the_unit() {
        let big: Vec<u8> = [P, &[0x11; 2500][..]].concat();
        let frags = fu_a(&big, 1000);
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(100, 0, true, IDR), &mut out).unwrap();
        d.push(&packet(101, 3600, false, SPS), &mut out).unwrap();
        d.push(&packet(102, 3600, false, &frags[0]), &mut out)
            .unwrap();
        // 103 (frags[1]) lost.
        d.push(&packet(104, 3600, true, &frags[2]), &mut out)
            .unwrap();
        d.push(&packet(105, 7200, true, P), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(!out[0].damaged);
        assert!(out[1].damaged);
        assert_eq!(
            &out[1].data[..],
            &annexb(&[SPS])[..],
            "the broken NAL is gone"
        );
        assert!(!out[2].damaged, "loss inside a unit does not spill over");
        assert_eq!(d.dropped_nals(), 1);
    }

    #[test]
    fn loss_between_units_damages_both_sides_and_timestamp_ends_a_unit() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        // No marker on the first unit: the timestamp change ends it.
        d.push(&packet(1, 0, false, IDR), &mut out).unwrap();
        d.push(&packet(2, 3600, false, P), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(!out[0].damaged);
        // 3 lost; 4 has a new timestamp.
        d.push(&packet(4, 7200, true, P), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[1].damaged && out[2].damaged);
        // A fragment whose start was lost is dropped without an error.
        let frags = fu_a(&[P, &[1; 100][..]].concat(), 40);
        d.push(&packet(6, 10_800, true, &frags[1]), &mut out)
            .unwrap();
        assert!(out[3].damaged && out[3].data.is_empty());
        // Without a loss it is an error.
        assert_eq!(
            d.push(&packet(7, 14_400, true, &frags[1]), &mut out),
            Err(H264RtpError::FragmentWithoutStart { sequence: 7 })
        );
    }

    #[test]
    fn timestamp_wrap_and_refusals() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(65_535, u32::MAX - 1799, true, IDR), &mut out)
            .unwrap();
        d.push(&packet(0, 1800, true, P), &mut out).unwrap();
        assert_eq!(out[1].pts - out[0].pts, Time90k(3600));
        assert_eq!(out[1].timestamp, i64::from(u32::MAX) + 1 + 1800);
        assert!(!out[1].damaged, "sequence wrap is not loss");
        assert_eq!(
            d.push(&packet(1, 0, false, &[]), &mut out),
            Err(H264RtpError::Empty { sequence: 1 })
        );
        assert_eq!(
            d.push(&packet(2, 0, false, &[0x1a, 0, 0]), &mut out),
            Err(H264RtpError::Interleaved {
                sequence: 2,
                nal_type: 26
            })
        );
        assert_eq!(
            d.push(&packet(3, 0, false, &[0x18, 0, 9, 0x41]), &mut out),
            Err(H264RtpError::Aggregation {
                sequence: 3,
                offset: 1
            })
        );
        assert_eq!(
            d.push(&packet(4, 0, false, &[0x7c, 0xc5, 1]), &mut out),
            Err(H264RtpError::Fragment { sequence: 4 })
        );
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(
            packets in proptest::collection::vec(
                (any::<u8>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)),
                0..40,
            )
        ) {
            let mut d = H264Depacketizer::new();
            let mut out = Vec::new();
            let mut seq = 0u16;
            for (skip, marker, payload) in packets {
                seq = seq.wrapping_add(u16::from(skip % 3));
                let _ = d.push(&packet(seq, u32::from(skip / 64) * 3000, marker, &payload), &mut out);
            }
            d.finish(&mut out);
            for u in &out {
                prop_assert!(u.data.len() <= MAX_ACCESS_UNIT_BYTES);
            }
        }

        /// Any split of a NAL unit into FU-A fragments gives the same unit.
        #[test]
        fn fragmentation_invariance(len in 2usize..3000, max in 1usize..1400) {
            // One fragment would be both start and end, which §5.8 forbids.
            prop_assume!(len > max);
            let nal: Vec<u8> = std::iter::once(0x65).chain((0..len).map(|i| i as u8)).collect();
            let mut d = H264Depacketizer::new();
            let mut out = Vec::new();
            let frags = fu_a(&nal, max);
            let n = frags.len();
            for (i, f) in frags.iter().enumerate() {
                d.push(&packet(i as u16, 0, i + 1 == n, f), &mut out).unwrap();
            }
            prop_assert_eq!(out.len(), 1);
            prop_assert_eq!(&out[0].data[..], &annexb(&[&nal])[..]);
        }
    }
}
