//! Sans-IO MPEG-TS demuxer (ISO/IEC 13818-1): PAT, PMT, PES → access units.
//!
//! [`Demuxer::push`] takes bytes in any chunking — the events depend only on
//! the byte sequence, never on where it was split — and [`Demuxer::finish`]
//! ends the input. Per program the demuxer follows the PAT to the PMT, and
//! per supported elementary stream (H.264 stream_type 0x1B, H.265 0x24, AV1
//! as 0x06 with an `AV01` registration descriptor or AV1 video descriptor,
//! AAC ADTS 0x0F, Opus as 0x06 with an `Opus` registration descriptor) it
//! reassembles PES packets into [`AccessUnit`]s on a
//! 33-bit-extended 90 kHz timeline. Damaged input is skipped and reported as a
//! [`DemuxWarning`]; nothing on the network path panics, and memory is
//! bounded by [`MAX_PES_SIZE`] per stream and a fixed number of streams
//! (see [`Demuxer::buffered_bytes`]).
//!
//! ```
//! use ferrocast_media::ts::{DemuxEvent, Demuxer};
//!
//! let mut demux = Demuxer::new();
//! let mut events = Vec::new();
//! demux.push(&[0x47, 0x1f, 0xff, 0x10], &mut events); // part of a null packet
//! demux.finish(&mut events);
//! assert!(matches!(events[..], [DemuxEvent::Warning(_)])); // it was truncated
//! ```

mod es;
mod packet;
mod pes;
mod psi;

use std::collections::BTreeMap;

use self::es::{AacStream, Elementary, OpusStream, VideoCodec, VideoStream};
use self::packet::{Continuity, ContinuityCounter, NULL_PID, PACKET_SIZE, Packet, SYNC_BYTE};
use self::pes::{Dropped, PesAssembler};
use self::psi::{Pmt, PmtStream, SectionAssembler, StreamKind};
use crate::aac::AacError;
use crate::av1::Av1Error;
use crate::codec::TrackInfo;
use crate::h264::H264Error;
use crate::h265::H265Error;
use crate::opus::OpusError;
use crate::time::TimestampExtender;
use crate::unit::AccessUnit;

pub use self::pes::{MAX_PES_SIZE, PesError};
pub use self::psi::SectionError;

/// Programs (PMT PIDs) followed at once; more are ignored with a warning.
pub const MAX_PROGRAMS: usize = 16;
/// Supported elementary streams assembled at once; more are ignored with a
/// warning. With [`MAX_PES_SIZE`] this bounds the demuxer's memory.
pub const MAX_STREAMS: usize = 16;

/// What the demuxer found in the bytes it was given.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DemuxEvent {
    /// A track's codec parameters became known, or changed.
    Track(TrackInfo),
    /// One complete access unit of a track already announced with `Track`.
    Unit(AccessUnit),
    /// The PMT declares an elementary stream Ferrocast cannot handle.
    Unsupported {
        /// Elementary PID.
        pid: u16,
        /// PMT stream_type.
        stream_type: u8,
        /// Human name of the codec, e.g. "MPEG-2 video".
        codec: &'static str,
    },
    /// Bad input was skipped and the demuxer resynchronised.
    Warning(DemuxWarning),
}

/// A non-fatal problem in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DemuxWarning {
    /// Bytes that were not TS packets were skipped.
    #[error("skipped {bytes} bytes to resynchronise on the TS sync byte")]
    Resync {
        /// How many bytes were dropped.
        bytes: usize,
    },
    /// The input ended inside a packet.
    #[error("input ended {bytes} bytes into a TS packet")]
    TruncatedPacket {
        /// Bytes of the incomplete packet.
        bytes: usize,
    },
    /// A packet had transport_error_indicator set and was dropped.
    #[error("PID {pid}: packet with transport_error_indicator dropped")]
    TransportError {
        /// The packet's PID.
        pid: u16,
    },
    /// A packet's adaptation_field_length does not fit; the packet was dropped.
    #[error("PID {pid}: adaptation_field_length out of range, packet dropped")]
    BadAdaptationField {
        /// The packet's PID.
        pid: u16,
    },
    /// Packets were lost: the continuity_counter jumped. What was being
    /// assembled on the PID was dropped.
    #[error("PID {pid}: continuity_counter {got}, expected {expected}; partial data dropped")]
    Continuity {
        /// The PID.
        pid: u16,
        /// The counter value that should have come.
        expected: u8,
        /// The counter value that came.
        got: u8,
    },
    /// The elementary stream is scrambled (reported once per PID).
    #[error("PID {pid}: scrambled packets cannot be demuxed")]
    Scrambled {
        /// The PID.
        pid: u16,
    },
    /// A PAT or PMT section was dropped.
    #[error("PID {pid}: PSI section dropped: {error}")]
    BadSection {
        /// The PID carrying the section.
        pid: u16,
        /// What was wrong.
        error: SectionError,
    },
    /// A PES packet grew past [`MAX_PES_SIZE`] and was dropped.
    #[error("PID {pid}: PES larger than {limit} bytes dropped")]
    PesTooLarge {
        /// The PID.
        pid: u16,
        /// The limit.
        limit: usize,
    },
    /// A PES packet ended before its PES_packet_length and was dropped.
    #[error("PID {pid}: PES packet cut short at {got} of {expected} bytes")]
    PesTruncated {
        /// The PID.
        pid: u16,
        /// 6 + PES_packet_length.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A PES packet header did not parse.
    #[error("PID {pid}: bad PES header: {error}")]
    BadPes {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: PesError,
    },
    /// A PES packet that must carry a PTS had none; it was dropped.
    #[error("PID {pid}: PES without PTS dropped")]
    MissingPts {
        /// The PID.
        pid: u16,
    },
    /// The stream's SPS or PPS is unusable (reported once per pair).
    #[error("PID {pid}: unusable H.264 parameter sets: {error}")]
    BadParameterSets {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: H264Error,
    },
    /// The stream's H.265 VPS, SPS or PPS is unusable (reported once per
    /// set of them).
    #[error("PID {pid}: unusable H.265 parameter sets: {error}")]
    BadH265ParameterSets {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: H265Error,
    },
    /// An AV1 PES payload was not a usable access unit (start-code
    /// framing or OBU sizes broken); it was dropped.
    #[error("PID {pid}: bad AV1 access unit: {error}")]
    BadAv1 {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: Av1Error,
    },
    /// The stream's AV1 sequence header is unusable (reported once per
    /// distinct sequence header).
    #[error("PID {pid}: unusable AV1 sequence header: {error}")]
    BadAv1SequenceHeader {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: Av1Error,
    },
    /// An ADTS frame was unusable; the rest of its PES was dropped.
    #[error("PID {pid}: bad ADTS frame: {error}")]
    BadAdts {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: AacError,
    },
    /// A PES ended inside an ADTS frame; the partial frame was dropped.
    #[error("PID {pid}: partial ADTS frame of {bytes} bytes dropped")]
    TruncatedAdts {
        /// The PID.
        pid: u16,
        /// Bytes of the partial frame.
        bytes: usize,
    },
    /// An Opus control header or packet was unusable; the rest of its PES
    /// was dropped.
    #[error("PID {pid}: bad Opus access unit: {error}")]
    BadOpus {
        /// The PID.
        pid: u16,
        /// What was wrong.
        error: OpusError,
    },
    /// A PES ended inside an Opus control header or packet; the partial
    /// access unit was dropped.
    #[error("PID {pid}: partial Opus access unit of {bytes} bytes dropped")]
    TruncatedOpus {
        /// The PID.
        pid: u16,
        /// Bytes of the partial access unit, control header included.
        bytes: usize,
    },
    /// More programs or streams than [`MAX_PROGRAMS`] / [`MAX_STREAMS`];
    /// this PID is ignored.
    #[error("PID {pid}: too many programs or streams, ignored")]
    TooManyStreams {
        /// The PID ignored.
        pid: u16,
    },
}

/// The demuxer. Feed it bytes in any chunking; it returns events.
#[derive(Debug, Default)]
pub struct Demuxer {
    /// Bytes of an incomplete (or unconfirmed) packet, always fewer than
    /// two packets' worth.
    pending: Vec<u8>,
    /// The last packet was accepted and the next one is expected right
    /// after it.
    locked: bool,
    /// Bytes skipped since the last accepted packet, reported with it.
    skipped: usize,
    /// PID of the last packet taken.
    last_pid: Option<u16>,
    pat: Section,
    /// PMT PID → program.
    programs: BTreeMap<u16, Program>,
    /// Elementary PID → stream.
    streams: BTreeMap<u16, Stream>,
    /// Elementary PIDs already reported as unsupported, with their
    /// stream_type.
    reported: BTreeMap<u16, u8>,
    /// Reused list of completed sections.
    sections: Vec<Vec<u8>>,
}

/// A PSI PID: its assembler and counter.
#[derive(Debug, Default)]
struct Section {
    assembler: SectionAssembler,
    cc: ContinuityCounter,
}

#[derive(Debug, Default)]
struct Program {
    pmt: Section,
    /// The PMT's streams as last applied.
    streams: Vec<PmtStream>,
    /// All PTS/DTS of one program are samples of the same system time clock
    /// (2.4.2), so one extender serves the program: audio and video cannot
    /// end up a 2^33 period apart when the first timestamps straddle a wrap.
    clock: TimestampExtender,
}

#[derive(Debug)]
struct Stream {
    /// PMT PID of the program it belongs to.
    program: u16,
    stream_type: u8,
    cc: ContinuityCounter,
    pes: PesAssembler,
    scrambled_reported: bool,
    elementary: Elementary,
}

impl Demuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<DemuxEvent>) {
        let mut input = bytes;
        // Top up the pending bytes until they either hold a packet or are
        // used up; then work on the caller's slice directly.
        while !self.pending.is_empty() && !input.is_empty() {
            let take = (2 * PACKET_SIZE)
                .saturating_sub(self.pending.len())
                .min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            let pending = std::mem::take(&mut self.pending);
            let used = self.scan(&pending, false, out);
            self.pending = pending;
            self.pending.drain(..used);
        }
        if self.pending.is_empty() {
            let used = self.scan(input, false, out);
            self.pending.extend_from_slice(&input[used..]);
        }
    }

    /// End of input: flush any access unit still being assembled.
    ///
    /// The demuxer is then back in its initial state, ready for a new stream.
    pub fn finish(&mut self, out: &mut Vec<DemuxEvent>) {
        let pending = std::mem::take(&mut self.pending);
        let used = self.scan(&pending, true, out);
        let left = pending.len() - used;
        if self.skipped > 0 {
            out.push(DemuxEvent::Warning(DemuxWarning::Resync {
                bytes: self.skipped,
            }));
        }
        if left > 0 {
            out.push(DemuxEvent::Warning(DemuxWarning::TruncatedPacket {
                bytes: left,
            }));
        }
        let Self {
            programs, streams, ..
        } = self;
        for (&pid, stream) in streams.iter_mut() {
            if let Some(result) = stream.pes.flush() {
                stream.deliver(pid, result, programs, out);
            }
        }
        *self = Self::default();
    }

    /// Bytes held in buffers: the partial packet, PSI sections and PES
    /// packets being assembled. Never more than
    /// `MAX_STREAMS * MAX_PES_SIZE` plus a few KiB per program.
    pub fn buffered_bytes(&self) -> usize {
        self.pending.len()
            + self.pat.assembler.buffered()
            + self
                .programs
                .values()
                .map(|p| p.pmt.assembler.buffered())
                .sum::<usize>()
            + self
                .streams
                .values()
                .map(|s| s.pes.buffered())
                .sum::<usize>()
    }

    /// Finds and handles the packets in `buf`; returns how many bytes were
    /// used. Whether a packet is taken depends only on bytes already in
    /// `buf` — a decision that needs more waits for them — which is what
    /// makes the output independent of chunking.
    fn scan(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<DemuxEvent>) -> usize {
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            if self.locked {
                if rest[0] == SYNC_BYTE {
                    let Some(packet) = rest.first_chunk::<PACKET_SIZE>() else {
                        break;
                    };
                    self.accept(packet, out);
                    pos += PACKET_SIZE;
                    continue;
                }
                self.locked = false;
                // No sync byte where the next packet should start: bytes were
                // inserted or lost, maybe inside the packet just taken, so
                // what its PID was assembling cannot be trusted.
                if let Some(pid) = self.last_pid.take() {
                    self.lose(pid);
                }
            }
            // Out of sync: a sync byte is trusted only when another one
            // follows a packet later (or the input ends exactly there).
            let Some(at) = rest.iter().position(|&b| b == SYNC_BYTE) else {
                self.skipped += rest.len();
                pos = buf.len();
                break;
            };
            self.skipped += at;
            pos += at;
            let rest = &buf[pos..];
            match rest.get(PACKET_SIZE) {
                Some(&SYNC_BYTE) => self.locked = true,
                Some(_) => {
                    self.skipped += 1;
                    pos += 1;
                }
                None if at_end && rest.len() == PACKET_SIZE => self.locked = true,
                None => break,
            }
        }
        pos
    }

    fn accept(&mut self, bytes: &[u8; PACKET_SIZE], out: &mut Vec<DemuxEvent>) {
        if self.skipped > 0 {
            out.push(DemuxEvent::Warning(DemuxWarning::Resync {
                bytes: self.skipped,
            }));
            self.skipped = 0;
        }
        let packet = match packet::parse(bytes) {
            Ok(p) => p,
            Err(packet::BadAdaptationField { pid }) => {
                self.last_pid = Some(pid);
                self.lose(pid);
                if self.is_followed(pid) {
                    warn(out, DemuxWarning::BadAdaptationField { pid });
                }
                return;
            }
        };
        let pid = packet.pid;
        self.last_pid = Some(pid);
        if pid == NULL_PID || !self.is_followed(pid) {
            return;
        }
        // "transport_error_indicator ... When set to '1' it indicates that at
        // least 1 uncorrectable bit error exists in the associated Transport
        // Stream packet." Even its PID may be wrong; drop it.
        if packet.transport_error {
            self.lose(pid);
            warn(out, DemuxWarning::TransportError { pid });
            return;
        }
        if pid == 0 {
            Self::section_packet(&mut self.pat, &packet, &mut self.sections, out);
            self.apply_sections(pid, out);
        } else if let Some(program) = self.programs.get_mut(&pid) {
            Self::section_packet(&mut program.pmt, &packet, &mut self.sections, out);
            self.apply_sections(pid, out);
        } else {
            self.pes_packet(&packet, out);
        }
    }

    fn is_followed(&self, pid: u16) -> bool {
        pid == 0 || self.programs.contains_key(&pid) || self.streams.contains_key(&pid)
    }

    /// A packet of `pid` was lost: drop what was being assembled there.
    fn lose(&mut self, pid: u16) {
        if pid == 0 {
            self.pat.assembler.reset();
        } else if let Some(program) = self.programs.get_mut(&pid) {
            program.pmt.assembler.reset();
        } else if let Some(stream) = self.streams.get_mut(&pid) {
            stream.pes.abort();
        }
    }

    fn section_packet(
        section: &mut Section,
        packet: &Packet<'_>,
        sections: &mut Vec<Vec<u8>>,
        out: &mut Vec<DemuxEvent>,
    ) {
        match section.cc.check(packet) {
            Continuity::Duplicate => return,
            Continuity::Gap { expected, got } => {
                section.assembler.reset();
                warn(
                    out,
                    DemuxWarning::Continuity {
                        pid: packet.pid,
                        expected,
                        got,
                    },
                );
            }
            Continuity::Ok => {}
        }
        if !packet.has_payload {
            return;
        }
        let mut errors = Vec::new();
        section.assembler.push(
            packet.payload_unit_start,
            packet.payload,
            sections,
            &mut errors,
        );
        for error in errors {
            warn(
                out,
                DemuxWarning::BadSection {
                    pid: packet.pid,
                    error,
                },
            );
        }
    }

    fn apply_sections(&mut self, pid: u16, out: &mut Vec<DemuxEvent>) {
        let sections = std::mem::take(&mut self.sections);
        for section in &sections {
            let parsed = if pid == 0 {
                psi::parse_pat(section).map(|pat| self.apply_pat(pat, out))
            } else {
                psi::parse_pmt(section).map(|pmt| self.apply_pmt(pid, pmt, out))
            };
            if let Err(error) = parsed {
                warn(out, DemuxWarning::BadSection { pid, error });
            }
        }
        self.sections = sections;
        self.sections.clear();
    }

    fn apply_pat(&mut self, pat: psi::Pat, out: &mut Vec<DemuxEvent>) {
        if !pat.current {
            return;
        }
        // A PAT in several sections lists only some programs in each: only
        // a single-section PAT may retire programs.
        if pat.complete {
            let gone: Vec<u16> = self
                .programs
                .keys()
                .copied()
                .filter(|pmt_pid| !pat.programs.iter().any(|&(_, p)| p == *pmt_pid))
                .collect();
            for pmt_pid in gone {
                self.programs.remove(&pmt_pid);
                self.streams.retain(|_, s| s.program != pmt_pid);
            }
        }
        for (_, pmt_pid) in pat.programs {
            if pmt_pid == 0 || pmt_pid == NULL_PID || self.programs.contains_key(&pmt_pid) {
                continue;
            }
            if self.programs.len() >= MAX_PROGRAMS {
                warn(out, DemuxWarning::TooManyStreams { pid: pmt_pid });
                continue;
            }
            // A PID that was an elementary stream is now a PMT.
            self.streams.remove(&pmt_pid);
            self.programs.insert(pmt_pid, Program::default());
        }
    }

    fn apply_pmt(&mut self, pmt_pid: u16, pmt: Pmt, out: &mut Vec<DemuxEvent>) {
        let Some(program) = self.programs.get(&pmt_pid) else {
            return;
        };
        // Repeats of the same table (the usual case, several times a second)
        // change nothing.
        if !pmt.current || program.streams == pmt.streams {
            return;
        }
        // Streams this program no longer lists are dropped with whatever
        // they were assembling.
        self.streams.retain(|pid, s| {
            s.program != pmt_pid
                || pmt
                    .streams
                    .iter()
                    .any(|n| n.pid == *pid && n.stream_type == s.stream_type)
        });
        for es in &pmt.streams {
            let pid = es.pid;
            if pid == 0 || pid == NULL_PID || self.programs.contains_key(&pid) {
                continue;
            }
            let elementary = match es.kind {
                StreamKind::H264 => Elementary::Video(Box::new(VideoStream::new(VideoCodec::H264))),
                StreamKind::H265 => Elementary::Video(Box::new(VideoStream::new(VideoCodec::H265))),
                StreamKind::Av1 => Elementary::Av1(Box::default()),
                StreamKind::AacAdts => Elementary::Aac(AacStream::default()),
                StreamKind::Opus { channels } => Elementary::Opus(OpusStream::new(channels)),
                StreamKind::Unsupported(codec) => {
                    self.streams.remove(&pid);
                    if self.reported.insert(pid, es.stream_type) != Some(es.stream_type) {
                        out.push(DemuxEvent::Unsupported {
                            pid,
                            stream_type: es.stream_type,
                            codec,
                        });
                    }
                    continue;
                }
                StreamKind::Ignored => {
                    self.streams.remove(&pid);
                    continue;
                }
            };
            match self.streams.get_mut(&pid) {
                Some(s) if s.stream_type == es.stream_type => {
                    s.program = pmt_pid;
                    continue;
                }
                _ => {}
            }
            self.streams.remove(&pid);
            if self.streams.len() >= MAX_STREAMS {
                warn(out, DemuxWarning::TooManyStreams { pid });
                continue;
            }
            self.streams.insert(
                pid,
                Stream {
                    program: pmt_pid,
                    stream_type: es.stream_type,
                    cc: ContinuityCounter::default(),
                    pes: PesAssembler::default(),
                    scrambled_reported: false,
                    elementary,
                },
            );
        }
        if let Some(program) = self.programs.get_mut(&pmt_pid) {
            program.streams = pmt.streams;
        }
    }

    fn pes_packet(&mut self, packet: &Packet<'_>, out: &mut Vec<DemuxEvent>) {
        let pid = packet.pid;
        let Self {
            programs, streams, ..
        } = self;
        let Some(stream) = streams.get_mut(&pid) else {
            return;
        };
        match stream.cc.check(packet) {
            Continuity::Duplicate => return,
            Continuity::Gap { expected, got } => {
                stream.pes.abort();
                warn(out, DemuxWarning::Continuity { pid, expected, got });
            }
            Continuity::Ok => {}
        }
        if !packet.has_payload {
            return;
        }
        // "transport_scrambling_control ... '00' Not scrambled".
        if packet.scrambled {
            stream.pes.abort();
            if !stream.scrambled_reported {
                stream.scrambled_reported = true;
                warn(out, DemuxWarning::Scrambled { pid });
            }
            return;
        }
        let result = if packet.payload_unit_start {
            // "payload_unit_start_indicator ... a '1' indicates that the
            // payload of this Transport Stream packet will commence with the
            // first byte of a PES packet": the previous one ends here.
            if let Some(previous) = stream.pes.flush() {
                stream.deliver(pid, previous, programs, out);
            }
            stream.pes.start(packet.payload)
        } else {
            stream.pes.append(packet.payload)
        };
        if let Some(result) = result {
            stream.deliver(pid, result, programs, out);
        }
    }
}

impl Stream {
    fn deliver(
        &mut self,
        pid: u16,
        result: Result<pes::Pes, Dropped>,
        programs: &mut BTreeMap<u16, Program>,
        out: &mut Vec<DemuxEvent>,
    ) {
        let pes = match result {
            Ok(pes) => pes,
            Err(Dropped::TooLarge) => {
                return warn(
                    out,
                    DemuxWarning::PesTooLarge {
                        pid,
                        limit: MAX_PES_SIZE,
                    },
                );
            }
            Err(Dropped::Short { expected, got }) => {
                return warn(out, DemuxWarning::PesTruncated { pid, expected, got });
            }
            Err(Dropped::Bad(error)) => return warn(out, DemuxWarning::BadPes { pid, error }),
        };
        let Some(program) = programs.get_mut(&self.program) else {
            return;
        };
        self.elementary.on_pes(pid, pes, &mut program.clock, out);
    }
}

fn warn(out: &mut Vec<DemuxEvent>, warning: DemuxWarning) {
    out.push(DemuxEvent::Warning(warning));
}
