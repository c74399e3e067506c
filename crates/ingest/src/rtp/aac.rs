//! AAC over RTP (RFC 3640, `mpeg4-generic` in the AAC-hbr and AAC-lbr
//! modes): packets in, raw AAC frames out. Sans-IO.
//!
//! §3.2.1: "The RTP payload ... consists of an AU Header Section, followed
//! by an Auxiliary Section, and the Access Unit Data Section". The AU
//! headers give each frame's size; frames in one packet are consecutive
//! (no interleaving: AU-Index and AU-Index-delta must be 0) and each lasts
//! one frame (1024 samples) after the one before, the first at the RTP
//! timestamp. A frame larger than a packet is fragmented over packets of
//! the same timestamp (§3.2.3) and reassembled here; one that loses a
//! fragment is dropped and counted.

use bytes::{Bytes, BytesMut};
use ferrocast_media::Time90k;

use super::clock::RtpClock;
use super::packet::RtpPacket;

/// The AU header layout and timing of one AAC RTP stream, from its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacRtpConfig {
    /// `sizelength`: bits of each AU-size (13 in AAC-hbr, 6 in AAC-lbr).
    pub size_length: u8,
    /// `indexlength`: bits of the first AU-Index (3 in AAC-hbr).
    pub index_length: u8,
    /// `indexdeltalength`: bits of each following AU-Index-delta.
    pub index_delta_length: u8,
    /// RTP clock rate (the `a=rtpmap` rate).
    pub clock_rate: u32,
    /// Duration of one AAC frame in RTP clock ticks (1024 samples).
    pub frame_ticks: u32,
}

impl AacRtpConfig {
    /// AAC-hbr (§3.3.6: "sizeLength=13; indexLength=3; indexDeltaLength=3")
    /// at `clock_rate`, frames of 1024 ticks.
    pub fn hbr(clock_rate: u32) -> Self {
        AacRtpConfig {
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
            clock_rate,
            frame_ticks: 1024,
        }
    }
}

/// Why an RTP packet's AAC payload was not (wholly) used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AacRtpError {
    /// Shorter than its AU-headers-length field and the headers it counts.
    #[error("RTP packet {sequence}: AU header section runs past the {len}-byte payload")]
    Headers {
        /// Sequence number of the packet.
        sequence: u16,
        /// Payload length.
        len: usize,
    },
    /// The AU header section is not a whole number of AU headers, or is empty.
    #[error(
        "RTP packet {sequence}: AU-headers-length {bits} bits is not a whole number of AU headers"
    )]
    HeaderLength {
        /// Sequence number of the packet.
        sequence: u16,
        /// The AU-headers-length field.
        bits: u16,
    },
    /// A non-zero AU-Index or AU-Index-delta: interleaving, not supported.
    #[error("RTP packet {sequence}: interleaved AAC (AU-Index {index}) is not supported")]
    Interleaved {
        /// Sequence number of the packet.
        sequence: u16,
        /// The index found.
        index: u32,
    },
    /// The AU sizes add up to more than the data section.
    #[error("RTP packet {sequence}: AU sizes ({total} bytes) exceed the {len}-byte data section")]
    Sizes {
        /// Sequence number of the packet.
        sequence: u16,
        /// Sum of the AU sizes.
        total: usize,
        /// Bytes in the data section.
        len: usize,
    },
}

/// One AAC frame from RTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AacFrame {
    /// Its RTP timestamp, extended to 64 bits.
    pub timestamp: i64,
    /// Presentation time on the stream timeline (zero at the first packet).
    pub pts: Time90k,
    /// The raw AAC frame (no ADTS header).
    pub data: Bytes,
}

#[derive(Debug)]
struct Fragment {
    timestamp: u32,
    size: usize,
    data: BytesMut,
}

/// Splits RFC 3640 packets into AAC frames.
#[derive(Debug)]
pub struct AacDepacketizer {
    config: AacRtpConfig,
    clock: RtpClock,
    next_sequence: Option<u16>,
    fragment: Option<Fragment>,
    /// Timestamp of a fragmented frame dropped for loss: its remaining
    /// fragments are skipped.
    lost_timestamp: Option<u32>,
    dropped: u64,
}

impl AacDepacketizer {
    /// A depacketiser for streams laid out as `config` says.
    pub fn new(config: AacRtpConfig) -> Self {
        AacDepacketizer {
            config,
            clock: RtpClock::new(config.clock_rate),
            next_sequence: None,
            fragment: None,
            lost_timestamp: None,
            dropped: 0,
        }
    }

    /// The layout it was made with.
    pub fn config(&self) -> AacRtpConfig {
        self.config
    }

    /// Frames dropped: fragmented ones that lost a fragment.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A new sender: forget the sequence and any partial frame, and place
    /// its first timestamp at `at` on the stream timeline.
    pub fn rebase(&mut self, at: Time90k) {
        self.drop_fragment();
        self.next_sequence = None;
        self.clock.rebase(at);
    }

    /// Take the next packet in sequence order; frames it completes are
    /// appended to `out`.
    pub fn push(&mut self, packet: &RtpPacket, out: &mut Vec<AacFrame>) -> Result<(), AacRtpError> {
        let sequence = packet.sequence;
        if self.next_sequence.is_some_and(|n| n != sequence) {
            self.lost_timestamp = self.fragment.as_ref().map(|f| f.timestamp);
            self.drop_fragment();
        } else if self.lost_timestamp != Some(packet.timestamp) {
            self.lost_timestamp = None;
        }
        self.next_sequence = Some(sequence.wrapping_add(1));
        let (sizes, header_bytes) = self.au_headers(packet)?;
        let data = packet.payload.slice(header_bytes..);
        if let [size] = sizes[..]
            && size > data.len()
        {
            return self.fragment(packet, size, &data, out);
        }
        // A whole frame: whatever fragments were pending lost their end.
        self.drop_fragment();
        let total: usize = sizes.iter().sum();
        if total > data.len() {
            return Err(AacRtpError::Sizes {
                sequence,
                total,
                len: data.len(),
            });
        }
        let mut offset = 0;
        for (i, size) in sizes.into_iter().enumerate() {
            self.emit(
                packet.timestamp,
                i as u32,
                data.slice(offset..offset + size),
                out,
            );
            offset += size;
        }
        Ok(())
    }

    /// §3.2.3: "the fragmented AU ... the AU-size field ... indicates the
    /// size of the entire AU" and all fragments carry the AU's timestamp.
    fn fragment(
        &mut self,
        packet: &RtpPacket,
        size: usize,
        data: &Bytes,
        out: &mut Vec<AacFrame>,
    ) -> Result<(), AacRtpError> {
        if self.lost_timestamp == Some(packet.timestamp) {
            // The rest of a frame that lost a fragment (counted already).
            return Ok(());
        }
        let continues = self
            .fragment
            .as_ref()
            .is_some_and(|f| f.timestamp == packet.timestamp && f.size == size);
        if !continues {
            self.drop_fragment();
            self.fragment = Some(Fragment {
                timestamp: packet.timestamp,
                size,
                data: BytesMut::with_capacity(size),
            });
        }
        if let Some(f) = &mut self.fragment {
            f.data.extend_from_slice(data);
            if f.data.len() > size {
                self.drop_fragment();
            } else if f.data.len() == size
                && let Some(f) = self.fragment.take()
            {
                self.emit(f.timestamp, 0, f.data.freeze(), out);
            }
        }
        Ok(())
    }

    fn drop_fragment(&mut self) {
        if self.fragment.take().is_some() {
            self.dropped += 1;
        }
    }

    fn emit(&mut self, timestamp: u32, index: u32, data: Bytes, out: &mut Vec<AacFrame>) {
        let first = self.clock.extend(timestamp);
        let timestamp = first + i64::from(index) * i64::from(self.config.frame_ticks);
        out.push(AacFrame {
            timestamp,
            pts: self.clock.time_of(timestamp),
            data,
        });
    }

    /// §3.2.1: "AU-headers-length ... a two octet field that specifies the
    /// length in bits of the immediately following AU-headers, excluding
    /// the padding bits." §3.2.1.1: each AU-header is "AU-size" then
    /// "AU-Index" (first) or "AU-Index-delta" (the others); "the AU-header
    /// Section is padded to the next octet boundary".
    /// The AU sizes and where the data section starts.
    fn au_headers(&self, packet: &RtpPacket) -> Result<(Vec<usize>, usize), AacRtpError> {
        let sequence = packet.sequence;
        let payload = &packet.payload[..];
        let headers_error = AacRtpError::Headers {
            sequence,
            len: payload.len(),
        };
        let bits = match payload.first_chunk::<2>() {
            Some(&b) => u16::from_be_bytes(b),
            None => return Err(headers_error),
        };
        let header_bytes = 2 + usize::from(bits).div_ceil(8);
        let section = payload.get(2..header_bytes).ok_or(headers_error)?;
        let c = self.config;
        let (size_len, index_len, delta_len) = (
            u32::from(c.size_length),
            u32::from(c.index_length),
            u32::from(c.index_delta_length),
        );
        let first = size_len + index_len;
        let next = size_len + delta_len;
        let bits32 = u32::from(bits);
        if first == 0
            || bits32 < first
            || (next == 0 && bits32 != first)
            || (next > 0 && (bits32 - first) % next != 0)
        {
            return Err(AacRtpError::HeaderLength { sequence, bits });
        }
        let mut reader = Bits {
            data: section,
            pos: 0,
        };
        let mut sizes = Vec::new();
        let mut at = 0;
        while at < bits32 {
            let size = reader.read(size_len);
            let index = reader.read(if at == 0 { index_len } else { delta_len });
            // §3.2.1.1: "AU-Index ... MUST be equal to 0" when not
            // interleaving; "AU-Index-delta ... equal to 0 [means] the
            // AUs are consecutive in decoding order".
            if index != 0 {
                return Err(AacRtpError::Interleaved { sequence, index });
            }
            sizes.push(size as usize);
            at += if at == 0 { first } else { next };
        }
        Ok((sizes, header_bytes))
    }
}

/// MSB-first bit reader over bytes whose length was checked by the caller.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> u32 {
        let mut v = 0u32;
        for _ in 0..n.min(32) {
            let bit = self
                .data
                .get(self.pos / 8)
                .map_or(0, |b| (b >> (7 - self.pos % 8)) & 1);
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn packet(sequence: u16, timestamp: u32, payload: Vec<u8>) -> RtpPacket {
        RtpPacket {
            payload_type: 97,
            marker: true,
            sequence,
            timestamp,
            ssrc: 2,
            payload: Bytes::from(payload),
        }
    }

    /// An AAC-hbr payload: one 16-bit header per frame (size << 3, index 0).
    fn hbr(frames: &[&[u8]], size_override: Option<usize>) -> Vec<u8> {
        let mut p = ((frames.len() * 16) as u16).to_be_bytes().to_vec();
        for f in frames {
            let size = size_override.unwrap_or(f.len()) as u16;
            p.extend_from_slice(&(size << 3).to_be_bytes());
        }
        for f in frames {
            p.extend_from_slice(f);
        }
        p
    }

    #[test]
    fn several_frames_per_packet_each_1024_samples_apart() {
        let mut d = AacDepacketizer::new(AacRtpConfig::hbr(48_000));
        let mut out = Vec::new();
        let (a, b, c) = (&[1u8, 2, 3][..], &[4u8; 200][..], &[5u8][..]);
        d.push(&packet(7, 1_000_000, hbr(&[a, b, c], None)), &mut out)
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(
            (&out[0].data[..], &out[1].data[..], &out[2].data[..]),
            (a, b, c)
        );
        assert_eq!(out[0].pts, Time90k::ZERO);
        assert_eq!(out[1].pts, Time90k(1920));
        assert_eq!(out[2].pts, Time90k(3840));
        d.push(&packet(8, 1_000_000 + 3072, hbr(&[a], None)), &mut out)
            .unwrap();
        assert_eq!(out[3].pts, Time90k(5760));
        assert_eq!(out[3].timestamp, 1_000_000 + 3072);
    }

    #[test]
    fn fragmented_frame_is_reassembled_and_a_lost_fragment_drops_it() {
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let mut d = AacDepacketizer::new(AacRtpConfig::hbr(44_100));
        let mut out = Vec::new();
        let parts: Vec<&[u8]> = frame.chunks(1000).collect();
        for (i, p) in parts.iter().enumerate() {
            d.push(
                &packet(i as u16, 500, hbr(&[p], Some(frame.len()))),
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &frame[..]);
        // Again with the middle fragment lost.
        d.push(
            &packet(3, 1524, hbr(&[parts[0]], Some(frame.len()))),
            &mut out,
        )
        .unwrap();
        d.push(
            &packet(5, 1524, hbr(&[parts[2]], Some(frame.len()))),
            &mut out,
        )
        .unwrap();
        d.push(&packet(6, 2548, hbr(&[&[9, 9]], None)), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(&out[1].data[..], &[9, 9]);
        assert_eq!(d.dropped(), 1);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut d = AacDepacketizer::new(AacRtpConfig::hbr(48_000));
        let mut out = Vec::new();
        let err = |d: &mut AacDepacketizer, p: Vec<u8>| {
            d.push(&packet(1, 0, p), &mut Vec::new()).unwrap_err()
        };
        assert!(matches!(err(&mut d, vec![0]), AacRtpError::Headers { .. }));
        assert!(matches!(
            err(&mut d, vec![0, 32, 0]),
            AacRtpError::Headers { .. }
        ));
        assert!(matches!(
            err(&mut d, vec![0, 15, 0, 0]),
            AacRtpError::HeaderLength { bits: 15, .. }
        ));
        assert!(matches!(
            err(&mut d, vec![0, 0]),
            AacRtpError::HeaderLength { .. }
        ));
        assert!(matches!(
            err(&mut d, vec![0, 16, 0, 0x0a, 1]),
            AacRtpError::Interleaved { index: 2, .. }
        ));
        // Two frames of 3 and 4 bytes but only 5 bytes of data.
        assert!(matches!(
            err(&mut d, vec![0, 32, 0, 0x18, 0, 0x20, 1, 2, 3, 4, 5]),
            AacRtpError::Sizes {
                total: 7,
                len: 5,
                ..
            }
        ));
        assert!(out.is_empty());
        d.push(&packet(2, 0, hbr(&[&[1]], None)), &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(
            size_length in 0u8..=16,
            index_length in 0u8..=8,
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..30),
        ) {
            let config = AacRtpConfig {
                size_length,
                index_length,
                index_delta_length: index_length,
                clock_rate: 48_000,
                frame_ticks: 1024,
            };
            let mut d = AacDepacketizer::new(config);
            let mut out = Vec::new();
            for (i, p) in packets.into_iter().enumerate() {
                let ts = (i as u32 / 3) * 1024;
                let _ = d.push(&packet(i as u16, ts, p), &mut out);
            }
        }
    }
}
