//! HEVC over RTP (RFC 7798): packets in, Annex-B access units out. Sans-IO.
//!
//! Single RTP stream, no decoding order numbers: single NAL unit packets
//! (§4.4.1), Aggregation Packets (§4.4.2, type 48) and Fragmentation Units
//! (§4.4.3, type 49). PACI packets (§4.4.4, type 50) carry payload-content
//! information this receiver does not use: they are skipped and counted
//! ([`H265Depacketizer::paci_ignored`]). §4.4: "the DONL field ... MUST be
//! present" only "when sprop-max-don-diff is greater than 0"; the SDP reader
//! refuses such sessions ([`super::sdp`]), so no DONL/DOND field is expected
//! here.
//!
//! Access units end on the marker bit or a timestamp change, and loss
//! damages units as for H.264 ([`super::access_unit`], shared with
//! [`super::h264`]). A keyframe is a unit holding an IRAP picture (IDR,
//! CRA or BLA, NAL unit types 16 to 23).

use ferrocast_media::Time90k;
use ferrocast_media::h265::is_irap;

use super::access_unit::{Assembler, Failure, FragmentError, VideoUnit};
use super::h264::aggregated_nals;
use super::packet::RtpPacket;

pub use super::access_unit::MAX_ACCESS_UNIT_BYTES;

/// RFC 7798 §4.4: payload header types of the RTP payload structures.
mod payload_type {
    /// §4.4.2 Aggregation Packet.
    pub const AP: u8 = 48;
    /// §4.4.3 Fragmentation Unit.
    pub const FU: u8 = 49;
    /// §4.4.4 PACI packet.
    pub const PACI: u8 = 50;
}

/// One HEVC access unit from RTP.
pub type H265Unit = VideoUnit;

/// Why an RTP packet's HEVC payload was (partly) not used. The access unit
/// it belongs to is marked damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H265RtpError {
    /// Shorter than the two-byte payload header.
    #[error("RTP packet {sequence}: HEVC payload of {len} bytes has no payload header")]
    Short {
        /// Sequence number of the packet.
        sequence: u16,
        /// Payload length.
        len: usize,
    },
    /// An Aggregation Packet whose NAL unit sizes run past the payload, or
    /// are zero.
    #[error(
        "RTP packet {sequence}: aggregation packet NAL unit size at byte {offset} runs past the payload"
    )]
    Aggregation {
        /// Sequence number of the packet.
        sequence: u16,
        /// Offset of the bad size field within the payload.
        offset: usize,
    },
    /// A Fragmentation Unit too short for its headers, with both the start
    /// and the end bit set, or carrying an aggregation, fragmentation or
    /// PACI type.
    #[error("RTP packet {sequence}: malformed fragmentation unit header")]
    Fragment {
        /// Sequence number of the packet.
        sequence: u16,
    },
    /// A fragment continuing a NAL unit whose start never came, with no
    /// loss seen to explain it.
    #[error("RTP packet {sequence}: fragmentation unit without a start fragment")]
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

/// Reassembles HEVC access units from RTP packets in sequence order.
#[derive(Debug)]
pub struct H265Depacketizer {
    au: Assembler,
    paci_ignored: u64,
}

impl Default for H265Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl H265Depacketizer {
    /// A depacketiser on the 90 kHz clock of RFC 7798 §7.1 ("The RTP
    /// timestamp clock rate ... 90000").
    pub fn new() -> Self {
        H265Depacketizer {
            au: Assembler::new(),
            paci_ignored: 0,
        }
    }

    /// NAL units dropped because a fragment of theirs was lost.
    pub fn dropped_nals(&self) -> u64 {
        self.au.dropped_nals()
    }

    /// PACI packets (type 50) skipped.
    pub fn paci_ignored(&self) -> u64 {
        self.paci_ignored
    }

    /// Take the next packet in sequence order; access units it completes are
    /// appended to `out`. An error means (part of) the payload was not used
    /// and its access unit is marked damaged.
    ///
    /// §4.1: "Marker bit (M): 1 bit. Set for the last packet of the access
    /// unit, carried in the current RTP stream."
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<H265Unit>,
    ) -> Result<(), H265RtpError> {
        self.au.begin_packet(packet, out);
        let result = self.payload(packet);
        let failure = result.as_ref().err().map(|e| match e {
            H265RtpError::TooLarge { .. } => Failure::TooLarge,
            _ => Failure::Damaged,
        });
        self.au.end_packet(packet.marker, failure, out);
        result
    }

    /// End of input: the open access unit, if any, is emitted as it is.
    pub fn finish(&mut self, out: &mut Vec<H265Unit>) {
        self.au.finish(out);
    }

    /// A new sender: forget the sequence, drop any partial unit, and place
    /// its first timestamp at `at` on the stream timeline.
    pub fn rebase(&mut self, at: Time90k) {
        self.au.rebase(at);
    }

    fn payload(&mut self, packet: &RtpPacket) -> Result<(), H265RtpError> {
        let sequence = packet.sequence;
        let payload = &packet.payload[..];
        // §4.4: "The first two bytes of the payload of an RTP packet are
        // referred to as the payload header. The payload header consists of
        // the same fields (F, Type, LayerId, and TID) as the NAL unit
        // header".
        let Some(&[h0, h1]) = payload.first_chunk::<2>() else {
            return Err(H265RtpError::Short {
                sequence,
                len: payload.len(),
            });
        };
        match (h0 >> 1) & 0x3f {
            // §4.4.1: "a single NAL unit packet ... contains exactly one NAL
            // unit"; its type is a NAL unit type (0 to 47).
            0..=47 => {
                self.au.abandon_fragment();
                self.append_nal(payload, sequence)
            }
            payload_type::AP => {
                self.au.abandon_fragment();
                // §4.4.2: after the payload header, each aggregation unit is
                // "a 16-bit unsigned size information ... followed by the
                // NAL unit" (no DONL/DOND: sprop-max-don-diff is 0).
                for nal in aggregated_nals(payload, 2) {
                    let nal =
                        nal.map_err(|offset| H265RtpError::Aggregation { sequence, offset })?;
                    self.append_nal(nal, sequence)?;
                }
                Ok(())
            }
            payload_type::FU => self.fu(h0, h1, &payload[2..], sequence),
            payload_type::PACI => {
                self.paci_ignored += 1;
                Ok(())
            }
            // §4.4: types 51 to 63 are unspecified; "receivers MUST ignore"
            // (§4.4 via RFC 7798's reuse of the NAL header, Table 7-1).
            _ => Ok(()),
        }
    }

    /// §4.4.3: the payload header (type 49), then "The FU header consists of
    /// an S bit, an E bit, and a 6-bit FuType field". "When set to 1, the S
    /// bit indicates the start of a fragmented NAL unit", "When set to 1,
    /// the E bit indicates the end of a fragmented NAL unit", "The field
    /// FuType MUST be equal to the field Type of the fragmented NAL unit".
    /// "A non-fragmented NAL unit MUST NOT be transmitted in one FU; i.e.,
    /// the Start bit and End bit MUST NOT both be set to 1 in the same FU
    /// header." The NAL unit header is rebuilt from the payload header with
    /// its Type replaced by FuType.
    fn fu(&mut self, h0: u8, h1: u8, rest: &[u8], sequence: u16) -> Result<(), H265RtpError> {
        let (&fu_header, data) = rest
            .split_first()
            .ok_or(H265RtpError::Fragment { sequence })?;
        let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
        let fu_type = fu_header & 0x3f;
        if (start && end) || fu_type >= payload_type::AP {
            return Err(H265RtpError::Fragment { sequence });
        }
        // The NAL unit header is rebuilt from the payload's, with the
        // fragmented NAL unit's type.
        let nal = self
            .au
            .fragment(start, end, &[(h0 & 0x81) | (fu_type << 1), h1], data)
            .map_err(|e| match e {
                FragmentError::Orphan => H265RtpError::FragmentWithoutStart { sequence },
                FragmentError::TooLarge => H265RtpError::TooLarge { sequence },
            })?;
        if let Some(nal) = nal {
            self.append_nal(&nal, sequence)?;
        }
        Ok(())
    }

    fn append_nal(&mut self, nal: &[u8], sequence: u16) -> Result<(), H265RtpError> {
        let keyframe = nal.first().is_some_and(|h| is_irap((h >> 1) & 0x3f));
        self.au
            .append_nal(nal, keyframe)
            .map_err(|_| H265RtpError::TooLarge { sequence })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

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
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    const VPS: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff];
    const SPS: &[u8] = &[0x42, 0x01, 0x01, 0x01, 0x60];
    const PPS: &[u8] = &[0x44, 0x01, 0xc1, 0x72];
    /// IDR_W_RADL slice (type 19).
    const IDR: &[u8] = &[0x26, 0x01, 0xaf, 0x06, 0xb8];
    /// TRAIL_R slice (type 1).
    const TRAIL: &[u8] = &[0x02, 0x01, 0xd0, 0x09, 0x7e];

    /// FU packets of `nal` with at most `max` bytes of NAL payload each.
    fn fus(nal: &[u8], max: usize) -> Vec<Vec<u8>> {
        let chunks: Vec<&[u8]> = nal[2..].chunks(max).collect();
        let last = chunks.len() - 1;
        let nal_type = (nal[0] >> 1) & 0x3f;
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut h = nal_type;
                if i == 0 {
                    h |= 0x80;
                }
                if i == last {
                    h |= 0x40;
                }
                [&[(nal[0] & 0x81) | (49 << 1), nal[1], h][..], c].concat()
            })
            .collect()
    }

    fn ap(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![48 << 1, 0x01];
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    #[test]
    fn aggregation_then_fragments_make_an_irap_unit() {
        let big: Vec<u8> = [IDR, &[0x5a; 3000][..]].concat();
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(7, 900, false, &ap(&[VPS, SPS, PPS])), &mut out)
            .unwrap();
        let frags = fus(&big, 1000);
        assert_eq!(frags.len(), 4);
        for (i, f) in frags.iter().enumerate() {
            d.push(&packet(8 + i as u16, 900, i == 3, f), &mut out)
                .unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &annexb(&[VPS, SPS, PPS, &big])[..]);
        assert!(out[0].keyframe && !out[0].damaged);
        assert_eq!(out[0].pts, Time90k::ZERO);
        d.push(&packet(12, 4500, true, TRAIL), &mut out).unwrap();
        assert_eq!(out[1].pts, Time90k(3600));
        assert!(!out[1].keyframe);
        assert_eq!(&out[1].data[..], &annexb(&[TRAIL])[..]);
    }

    #[test]
    fn paci_is_counted_and_loss_damages() {
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        d.push(&packet(1, 0, false, &[50 << 1, 1, 0, 0, 0]), &mut out)
            .unwrap();
        d.push(&packet(2, 0, true, IDR), &mut out).unwrap();
        assert_eq!(d.paci_ignored(), 1);
        assert!(out[0].keyframe);
        let frags = fus(&[TRAIL, &[1; 300][..]].concat(), 100);
        d.push(&packet(3, 3600, false, &frags[0]), &mut out)
            .unwrap();
        // frags[1] lost.
        d.push(&packet(5, 3600, false, &frags[2]), &mut out)
            .unwrap();
        d.push(&packet(6, 3600, true, &frags[3]), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[1].damaged && out[1].data.is_empty());
        assert_eq!(d.dropped_nals(), 1);
        // Without a loss an orphan fragment is an error.
        assert_eq!(
            d.push(&packet(7, 7200, true, &frags[1]), &mut out),
            Err(H265RtpError::FragmentWithoutStart { sequence: 7 })
        );
    }

    #[test]
    fn refusals() {
        let mut d = H265Depacketizer::new();
        let mut out = Vec::new();
        assert_eq!(
            d.push(&packet(1, 0, false, &[0x26]), &mut out),
            Err(H265RtpError::Short {
                sequence: 1,
                len: 1
            })
        );
        assert_eq!(
            d.push(&packet(2, 0, false, &[48 << 1, 1, 0, 9, 0x26]), &mut out),
            Err(H265RtpError::Aggregation {
                sequence: 2,
                offset: 2
            })
        );
        // S and E both set.
        assert_eq!(
            d.push(&packet(3, 0, false, &[49 << 1, 1, 0xd3, 1]), &mut out),
            Err(H265RtpError::Fragment { sequence: 3 })
        );
        // FuType 48: an AP cannot be fragmented.
        assert_eq!(
            d.push(&packet(4, 0, false, &[49 << 1, 1, 0x80 | 48, 1]), &mut out),
            Err(H265RtpError::Fragment { sequence: 4 })
        );
        assert_eq!(
            d.push(&packet(5, 0, false, &[49 << 1, 1]), &mut out),
            Err(H265RtpError::Fragment { sequence: 5 })
        );
        d.finish(&mut out);
        assert!(out.iter().all(|u| u.damaged));
    }

    /// The packets of a stream of access units: each a list of NAL units,
    /// sent as single NAL packets, APs or FUs as `plan` says.
    fn packetise(units: &[Vec<Vec<u8>>], plan: &[(u8, usize)]) -> Vec<RtpPacket> {
        let mut packets = Vec::new();
        let mut seq = 0u16;
        let mut step = plan.iter().cycle();
        for (i, unit) in units.iter().enumerate() {
            let ts = i as u32 * 3000;
            let mut payloads: Vec<Vec<u8>> = Vec::new();
            let mut j = 0;
            while j < unit.len() {
                let &(how, max) = step.next().unwrap();
                match how % 3 {
                    0 => {
                        payloads.push(unit[j].clone());
                        j += 1;
                    }
                    1 => {
                        let n = (max % 3 + 1).min(unit.len() - j);
                        let nals: Vec<&[u8]> = unit[j..j + n].iter().map(Vec::as_slice).collect();
                        payloads.push(ap(&nals));
                        j += n;
                    }
                    _ => {
                        let nal = &unit[j];
                        let max = max.max(1);
                        if nal.len() - 2 > max {
                            payloads.extend(fus(nal, max));
                        } else {
                            payloads.push(nal.clone());
                        }
                        j += 1;
                    }
                }
            }
            let last = payloads.len() - 1;
            for (k, p) in payloads.iter().enumerate() {
                packets.push(packet(seq, ts, k == last, p));
                seq = seq.wrapping_add(1);
            }
        }
        packets
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(
            packets in proptest::collection::vec(
                (any::<u8>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64)),
                0..40,
            )
        ) {
            let mut d = H265Depacketizer::new();
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

        /// However the same NAL units are spread over single NAL packets,
        /// aggregation packets and fragments, the access units are the same.
        #[test]
        fn packetisation_invariance(
            sizes in proptest::collection::vec(proptest::collection::vec(3usize..600, 1..5), 1..6),
            plan in proptest::collection::vec((any::<u8>(), 1usize..400), 1..12),
        ) {
            let units: Vec<Vec<Vec<u8>>> = sizes
                .iter()
                .enumerate()
                .map(|(i, unit)| {
                    unit.iter()
                        .enumerate()
                        .map(|(j, &len)| {
                            // First unit starts with an IDR, the rest TRAIL_R.
                            let t: u8 = if i == 0 && j == 0 { 19 } else { 1 };
                            let mut nal = vec![t << 1, 0x01];
                            nal.extend((0..len).map(|k| (k * 7 + j) as u8 | 1));
                            nal
                        })
                        .collect()
                })
                .collect();
            let mut d = H265Depacketizer::new();
            let mut out = Vec::new();
            for p in packetise(&units, &plan) {
                d.push(&p, &mut out).unwrap();
            }
            d.finish(&mut out);
            prop_assert_eq!(out.len(), units.len());
            for (i, (got, unit)) in out.iter().zip(&units).enumerate() {
                let nals: Vec<&[u8]> = unit.iter().map(Vec::as_slice).collect();
                prop_assert_eq!(&got.data[..], &annexb(&nals)[..]);
                prop_assert_eq!(got.keyframe, i == 0);
                prop_assert!(!got.damaged);
                prop_assert_eq!(got.pts, Time90k(i as i64 * 3000));
            }
        }
    }
}
