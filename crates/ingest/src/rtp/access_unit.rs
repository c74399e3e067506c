//! Access-unit assembly shared by the H.264 (RFC 6184) and HEVC (RFC 7798)
//! depacketisers. Sans-IO.
//!
//! The two payload formats differ in their headers (one byte against two)
//! and aggregation/fragmentation packet types, but not in how NAL units
//! become access units: RFC 6184 §5.1 and RFC 7798 §4.1 both set the marker
//! bit on "the last packet of the access unit" and give every packet of an
//! access unit the same timestamp; both say a receiver that lost a fragment
//! "SHOULD discard all following fragmentation units ... corresponding to
//! the same fragmented NAL unit" (RFC 6184 §5.8, RFC 7798 §4.4.3). That
//! part lives here; each depacketiser parses its payloads and calls in.

use bytes::{Bytes, BytesMut};
use ferrocast_media::Time90k;

use super::clock::RtpClock;
use super::packet::RtpPacket;

/// The largest access unit assembled; a sender exceeding it (or a stream of
/// fragments without an end) has the unit dropped as damaged.
pub const MAX_ACCESS_UNIT_BYTES: usize = 8 << 20;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// One video access unit from RTP (H.264 or HEVC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoUnit {
    /// The RTP timestamp, extended to 64 bits.
    pub timestamp: i64,
    /// Presentation time on the track's timeline (zero at the first packet).
    pub pts: Time90k,
    /// The NAL units, each after a four-byte start code (Annex B).
    pub data: Bytes,
    /// Holds a coded slice of a random access picture (H.264 IDR, HEVC
    /// IRAP).
    pub keyframe: bool,
    /// A packet of it (or just before it) was lost, or a payload was
    /// malformed: some NAL units may be missing.
    pub damaged: bool,
}

/// How a packet's payload failed, as far as the assembly cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Malformed: the unit is damaged.
    Damaged,
    /// The unit grew past [`MAX_ACCESS_UNIT_BYTES`]: its data is dropped.
    TooLarge,
}

/// A continuation fragment came without the start of its NAL unit, and no
/// loss explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Orphan;

/// Why a fragment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FragmentError {
    /// A continuation without its start, and no loss explains it.
    Orphan,
    /// The unit grew past [`MAX_ACCESS_UNIT_BYTES`].
    TooLarge,
}

#[derive(Debug)]
struct Pending {
    timestamp: u32,
    data: BytesMut,
    keyframe: bool,
    damaged: bool,
}

/// Reassembles access units from NAL units and fragments of packets taken
/// in sequence order.
#[derive(Debug)]
pub(crate) struct Assembler {
    clock: RtpClock,
    next_sequence: Option<u16>,
    au: Option<Pending>,
    /// The NAL unit being reassembled from fragments (header included).
    fragment: Option<BytesMut>,
    /// The next access unit started gets marked damaged (a packet was lost
    /// between access units).
    damage_next: bool,
    dropped_nals: u64,
}

impl Assembler {
    /// An assembler on the 90 kHz clock both payload formats require.
    pub(crate) fn new() -> Self {
        Assembler {
            clock: RtpClock::new(90_000),
            next_sequence: None,
            au: None,
            fragment: None,
            damage_next: false,
            dropped_nals: 0,
        }
    }

    pub(crate) fn dropped_nals(&self) -> u64 {
        self.dropped_nals
    }

    /// Before a packet's payload: loss detection, and the end of the open
    /// access unit when the timestamp changed.
    pub(crate) fn begin_packet(&mut self, packet: &RtpPacket, out: &mut Vec<VideoUnit>) {
        if self.next_sequence.is_some_and(|n| n != packet.sequence) {
            self.on_loss(packet.timestamp);
        }
        self.next_sequence = Some(packet.sequence.wrapping_add(1));
        // A timestamp change ends an access unit whose marker was lost or
        // never set.
        if self
            .au
            .as_ref()
            .is_some_and(|au| au.timestamp != packet.timestamp)
        {
            self.finish_au(out);
        }
        let damaged = std::mem::take(&mut self.damage_next);
        let au = self.au.get_or_insert_with(|| Pending {
            timestamp: packet.timestamp,
            data: BytesMut::new(),
            keyframe: false,
            damaged,
        });
        au.damaged |= damaged;
    }

    /// After a packet's payload: record a failure, and end the access unit
    /// on the marker bit.
    pub(crate) fn end_packet(
        &mut self,
        marker: bool,
        failure: Option<Failure>,
        out: &mut Vec<VideoUnit>,
    ) {
        if let Some(failure) = failure {
            if let Some(au) = &mut self.au {
                au.damaged = true;
            }
            if failure == Failure::TooLarge {
                self.fragment = None;
                if let Some(au) = &mut self.au {
                    au.data.clear();
                }
            }
        }
        if marker {
            self.finish_au(out);
        }
    }

    /// End of input: the open access unit, if any, is emitted as it is.
    pub(crate) fn finish(&mut self, out: &mut Vec<VideoUnit>) {
        self.finish_au(out);
        self.next_sequence = None;
        self.damage_next = false;
    }

    /// A new sender: forget the sequence, drop any partial unit, and place
    /// its first timestamp at `at` on the track's timeline.
    pub(crate) fn rebase(&mut self, at: Time90k) {
        self.au = None;
        self.fragment = None;
        self.next_sequence = None;
        self.damage_next = true;
        self.clock.rebase(at);
    }

    /// Append a whole NAL unit (header included) to the open access unit.
    pub(crate) fn append_nal(&mut self, nal: &[u8], keyframe: bool) -> Result<(), Failure> {
        let Some(au) = &mut self.au else {
            return Ok(());
        };
        if au.data.len() + nal.len() + START_CODE.len() > MAX_ACCESS_UNIT_BYTES {
            return Err(Failure::TooLarge);
        }
        au.keyframe |= keyframe;
        au.data.extend_from_slice(&START_CODE);
        au.data.extend_from_slice(nal);
        Ok(())
    }

    /// A NAL unit arriving whole while fragments of another are pending:
    /// the pending one lost its end.
    pub(crate) fn abandon_fragment(&mut self) {
        if self.fragment.take().is_some() {
            self.dropped_nals += 1;
            if let Some(au) = &mut self.au {
                au.damaged = true;
            }
        }
    }

    /// One fragment of a NAL unit (FU-A, HEVC FU): `header` is the rebuilt
    /// NAL unit header, used when `start`. The NAL unit once its `end`
    /// fragment came, to be appended with [`append_nal`](Self::append_nal).
    pub(crate) fn fragment(
        &mut self,
        start: bool,
        end: bool,
        header: &[u8],
        data: &[u8],
    ) -> Result<Option<BytesMut>, FragmentError> {
        if start {
            self.start_fragment(header, data)
                .map_err(|_| FragmentError::TooLarge)?;
        } else {
            self.continue_fragment(data)
                .map_err(|Orphan| FragmentError::Orphan)?;
            self.check_size().map_err(|_| FragmentError::TooLarge)?;
        }
        Ok(if end { self.take_fragment() } else { None })
    }

    /// The first fragment of a NAL unit: its rebuilt NAL unit header and
    /// the first piece of the rest.
    fn start_fragment(&mut self, header: &[u8], data: &[u8]) -> Result<(), Failure> {
        self.abandon_fragment();
        let mut nal = BytesMut::with_capacity(header.len() + data.len());
        nal.extend_from_slice(header);
        nal.extend_from_slice(data);
        self.fragment = Some(nal);
        self.check_size()
    }

    /// A later fragment. After a loss the rest of the lost NAL unit is
    /// expected and dropped quietly; without one it is an [`Orphan`].
    fn continue_fragment(&mut self, data: &[u8]) -> Result<(), Orphan> {
        match &mut self.fragment {
            Some(nal) => {
                nal.extend_from_slice(data);
                Ok(())
            }
            None => match &self.au {
                Some(au) if au.damaged => Ok(()),
                _ => Err(Orphan),
            },
        }
    }

    /// The end fragment has been added: the NAL unit, if it was complete.
    fn take_fragment(&mut self) -> Option<BytesMut> {
        self.fragment.take()
    }

    /// Whether the unit plus the pending fragment still fit.
    fn check_size(&self) -> Result<(), Failure> {
        let held = self.fragment.as_ref().map_or(0, BytesMut::len)
            + self.au.as_ref().map_or(0, |au| au.data.len());
        if held > MAX_ACCESS_UNIT_BYTES {
            return Err(Failure::TooLarge);
        }
        Ok(())
    }

    /// Packets between the last one and the one with `timestamp` were lost.
    fn on_loss(&mut self, timestamp: u32) {
        if self.fragment.take().is_some() {
            self.dropped_nals += 1;
        }
        match &mut self.au {
            // The lost packets were inside this access unit.
            Some(au) if au.timestamp == timestamp => au.damaged = true,
            // They may have ended this one or started the next: both suspect.
            Some(au) => {
                au.damaged = true;
                self.damage_next = true;
            }
            None => self.damage_next = true,
        }
    }

    fn finish_au(&mut self, out: &mut Vec<VideoUnit>) {
        let Some(mut au) = self.au.take() else {
            return;
        };
        if self.fragment.take().is_some() {
            // A fragmented NAL unit without its end fragment.
            self.dropped_nals += 1;
            au.damaged = true;
        }
        if au.data.is_empty() && !au.damaged {
            return;
        }
        let timestamp = self.clock.extend(au.timestamp);
        out.push(VideoUnit {
            timestamp,
            pts: self.clock.time_of(timestamp),
            data: au.data.freeze(),
            keyframe: au.keyframe,
            damaged: au.damaged,
        });
    }
}
