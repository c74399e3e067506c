//! Elementary streams: complete PES packets in, tracks and access units out.

use bytes::Bytes;

use super::pes::Pes;
use super::{DemuxEvent, DemuxWarning};
use crate::aac::{self, AacError};
use crate::av1;
use crate::codec::{AacParams, CodecParams, OpusParams, TrackId, TrackInfo, TrackKind};
use crate::h264::{self, nal_units};
use crate::h265;
use crate::opus::{self, OPUS_SAMPLE_RATE, OpusError};
use crate::time::{Time90k, TimestampExtender};
use crate::unit::AccessUnit;

/// Per-PID state of a supported elementary stream.
#[derive(Debug)]
pub(crate) enum Elementary {
    /// Boxed: the parameter sets make it several times larger than AAC.
    Video(Box<VideoStream>),
    Av1(Box<Av1Stream>),
    Aac(AacStream),
    Opus(OpusStream),
}

impl Elementary {
    pub(crate) fn on_pes(
        &mut self,
        pid: u16,
        pes: Pes,
        clock: &mut TimestampExtender,
        out: &mut Vec<DemuxEvent>,
    ) {
        match self {
            Elementary::Video(s) => s.on_pes(pid, pes, clock, out),
            Elementary::Av1(s) => s.on_pes(pid, pes, clock, out),
            Elementary::Aac(s) => s.on_pes(pid, pes, clock, out),
            Elementary::Opus(s) => s.on_pes(pid, pes, clock, out),
        }
    }
}

/// The Annex-B video codecs the demuxer assembles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoCodec {
    /// stream_type 0x1B.
    H264,
    /// stream_type 0x24.
    H265,
}

/// What one NAL unit means to access unit assembly.
enum NalRole {
    /// A slice of a picture decoding can start at (H.264 IDR, H.265 IRAP).
    RandomAccess,
    /// A parameter set, by index into [`VideoStream::sets`].
    ParameterSet(usize),
    Other,
}

/// Index of each parameter set in [`VideoStream::sets`].
const VPS: usize = 0;
const SPS: usize = 1;
const PPS: usize = 2;

impl VideoCodec {
    fn role(self, nal: &[u8]) -> NalRole {
        match self {
            VideoCodec::H264 => match h264::nal_unit_type(nal) {
                Some(h264::nal_type::IDR) => NalRole::RandomAccess,
                Some(h264::nal_type::SPS) => NalRole::ParameterSet(SPS),
                Some(h264::nal_type::PPS) => NalRole::ParameterSet(PPS),
                _ => NalRole::Other,
            },
            VideoCodec::H265 => {
                // Parameter sets of enhancement layers (nuh_layer_id > 0)
                // are not the base layer's, whatever their ids.
                let base = h265::nuh_layer_id(nal) == Some(0);
                match h265::nal_unit_type(nal) {
                    Some(t) if h265::is_irap(t) => NalRole::RandomAccess,
                    Some(h265::nal_type::VPS) if base => NalRole::ParameterSet(VPS),
                    Some(h265::nal_type::SPS) if base => NalRole::ParameterSet(SPS),
                    Some(h265::nal_type::PPS) if base => NalRole::ParameterSet(PPS),
                    _ => NalRole::Other,
                }
            }
        }
    }

    /// Parameters from a complete set of parameter sets; `None` while one is
    /// still missing.
    fn params(
        self,
        pid: u16,
        sets: &[Option<Bytes>; 3],
    ) -> Option<Result<CodecParams, DemuxWarning>> {
        match (self, sets) {
            (VideoCodec::H264, [_, Some(sps), Some(pps)]) => Some(
                h264::params_from_parameter_sets(sps.clone(), pps.clone())
                    .map(CodecParams::H264)
                    .map_err(|error| DemuxWarning::BadParameterSets { pid, error }),
            ),
            (VideoCodec::H265, [Some(vps), Some(sps), Some(pps)]) => Some(
                h265::params_from_parameter_sets(vps.clone(), sps.clone(), pps.clone())
                    .map(CodecParams::H265)
                    .map_err(|error| DemuxWarning::BadH265ParameterSets { pid, error }),
            ),
            _ => None,
        }
    }
}

/// H.264 or H.265 in Annex-B: one access unit per PES, as ffmpeg, OBS and
/// hardware encoders send it. A `Track` is announced once the parameter sets
/// are known and the first random access picture arrives, and again when
/// they change.
#[derive(Debug)]
pub(crate) struct VideoStream {
    codec: VideoCodec,
    /// The latest VPS (H.265 only), SPS and PPS seen.
    sets: [Option<Bytes>; 3],
    /// Parameters from the latest parameter sets that parsed.
    params: Option<CodecParams>,
    /// Parameters last announced with a `Track` event.
    announced: Option<CodecParams>,
    /// The last parameter sets that failed, so their warning is not repeated
    /// at every keyframe.
    failed: Option<[Option<Bytes>; 3]>,
}

impl VideoStream {
    pub(crate) fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            sets: Default::default(),
            params: None,
            announced: None,
            failed: None,
        }
    }

    fn on_pes(
        &mut self,
        pid: u16,
        pes: Pes,
        clock: &mut TimestampExtender,
        out: &mut Vec<DemuxEvent>,
    ) {
        let Some(pts) = pes.pts else {
            out.push(DemuxEvent::Warning(DemuxWarning::MissingPts { pid }));
            return;
        };
        // 2.4.3.7: "If a DTS is not present ... the DTS is equal to the PTS".
        let dts = clock.extend(pes.dts.unwrap_or(pts));
        let pts = clock.extend(pts);
        let data = pes.payload;

        let mut keyframe = false;
        let mut found: [Option<Bytes>; 3] = Default::default();
        for nal in nal_units(&data) {
            match self.codec.role(nal) {
                NalRole::RandomAccess => keyframe = true,
                NalRole::ParameterSet(i) if found[i].is_none() => {
                    found[i] = Some(data.slice_ref(nal));
                }
                _ => {}
            }
        }
        if found.iter().any(Option::is_some) {
            self.update_parameter_sets(pid, found, out);
        }

        let Some(params) = &self.params else {
            return;
        };
        // Units before the first keyframe with known parameters cannot be
        // decoded by anyone downstream.
        if self.announced.is_none() && !keyframe {
            return;
        }
        if self.announced.as_ref() != Some(params) {
            out.push(DemuxEvent::Track(TrackInfo {
                id: TrackId(pid),
                params: params.clone(),
            }));
            self.announced = Some(params.clone());
        }
        out.push(DemuxEvent::Unit(AccessUnit {
            track: TrackId(pid),
            kind: TrackKind::Video,
            pts,
            dts,
            keyframe,
            data,
            captured_unix_ms: None,
            trace: None,
        }));
    }

    fn update_parameter_sets(
        &mut self,
        pid: u16,
        found: [Option<Bytes>; 3],
        out: &mut Vec<DemuxEvent>,
    ) {
        let mut changed = false;
        for (slot, new) in self.sets.iter_mut().zip(found) {
            if new.is_some() && new != *slot {
                *slot = new;
                changed = true;
            }
        }
        if !changed {
            return;
        }
        match self.codec.params(pid, &self.sets) {
            None => {}
            Some(Ok(params)) => {
                self.params = Some(params);
                self.failed = None;
            }
            Some(Err(warning)) if self.failed.as_ref() != Some(&self.sets) => {
                out.push(DemuxEvent::Warning(warning));
                self.failed = Some(self.sets.clone());
            }
            Some(Err(_)) => {}
        }
    }
}

/// AV1 in start-code framing ("Carriage of AV1 in MPEG-2 TS"): "A PES shall
/// encapsulate one, and only one, AV1 access unit", so each PES becomes one
/// [`AccessUnit`] holding its OBUs in the low overhead format, every OBU
/// sized (see [`av1::temporal_unit_from_ts`]). A `Track` is announced from
/// the sequence header OBU once the first random access point arrives, and
/// again when the sequence header changes.
///
/// An encoder that splits one temporal unit over several PES (the
/// specification allows a decodable frame group per PES) yields several
/// units with the same timing; the common live encoders send one temporal
/// unit per PES.
#[derive(Debug, Default)]
pub(crate) struct Av1Stream {
    /// Parameters from the latest sequence header that parsed.
    params: Option<CodecParams>,
    /// The latest sequence header OBU seen (sized), parsed or not.
    sequence_header: Option<Bytes>,
    /// Parameters last announced with a `Track` event.
    announced: Option<CodecParams>,
}

impl Av1Stream {
    fn on_pes(
        &mut self,
        pid: u16,
        pes: Pes,
        clock: &mut TimestampExtender,
        out: &mut Vec<DemuxEvent>,
    ) {
        let Some(pts) = pes.pts else {
            out.push(DemuxEvent::Warning(DemuxWarning::MissingPts { pid }));
            return;
        };
        let dts = clock.extend(pes.dts.unwrap_or(pts));
        let pts = clock.extend(pts);
        let data = match av1::temporal_unit_from_ts(&pes.payload) {
            Ok(tu) => Bytes::from(tu),
            Err(error) => {
                out.push(DemuxEvent::Warning(DemuxWarning::BadAv1 { pid, error }));
                return;
            }
        };
        if let Some(obu) = av1::sequence_header_obu(&data)
            && self.sequence_header.as_deref() != Some(obu.bytes)
        {
            self.sequence_header = Some(data.slice_ref(obu.bytes));
            match av1::Av1Params::from_sequence_header_obu(obu.bytes) {
                Ok(params) => self.params = Some(CodecParams::Av1(params)),
                // Reported once: the same bad header repeats at every
                // keyframe and is not parsed again.
                Err(error) => out.push(DemuxEvent::Warning(DemuxWarning::BadAv1SequenceHeader {
                    pid,
                    error,
                })),
            }
        }
        let Some(params) = &self.params else {
            return;
        };
        let keyframe = av1::is_random_access_point(&data);
        // Units before the first random access point cannot be decoded by
        // anyone downstream.
        if self.announced.is_none() && !keyframe {
            return;
        }
        if self.announced.as_ref() != Some(params) {
            out.push(DemuxEvent::Track(TrackInfo {
                id: TrackId(pid),
                params: params.clone(),
            }));
            self.announced = Some(params.clone());
        }
        out.push(DemuxEvent::Unit(AccessUnit {
            track: TrackId(pid),
            kind: TrackKind::Video,
            pts,
            dts,
            keyframe,
            data,
            captured_unix_ms: None,
            trace: None,
        }));
    }
}

/// AAC in ADTS: one access unit per ADTS frame, header stripped.
#[derive(Debug, Default)]
pub(crate) struct AacStream {
    announced: Option<AacParams>,
    /// Where the next frame starts when a PES comes without PTS: the last
    /// PTS seen, the samples since, and their rate.
    next: Option<(Time90k, u64, u32)>,
}

impl AacStream {
    fn on_pes(
        &mut self,
        pid: u16,
        pes: Pes,
        clock: &mut TimestampExtender,
        out: &mut Vec<DemuxEvent>,
    ) {
        // "PTS ... shall be encoded in the packet header" only when the PES
        // holds the start of an access unit; without one, continue from the
        // previous PES's frames.
        let (mut base, mut samples, mut rate) = match (pes.pts, self.next) {
            (Some(pts), _) => (clock.extend(pts), 0u64, 0u32),
            (None, Some(next)) => next,
            (None, None) => {
                out.push(DemuxEvent::Warning(DemuxWarning::MissingPts { pid }));
                return;
            }
        };
        let data = pes.payload;
        let mut offset = 0;
        while offset < data.len() {
            let rest = &data[offset..];
            let header = match aac::parse_adts(rest) {
                Ok(h) if h.frame_length > rest.len() => {
                    out.push(DemuxEvent::Warning(DemuxWarning::TruncatedAdts {
                        pid,
                        bytes: rest.len(),
                    }));
                    break;
                }
                Ok(h) => h,
                Err(AacError::Truncated { .. }) => {
                    out.push(DemuxEvent::Warning(DemuxWarning::TruncatedAdts {
                        pid,
                        bytes: rest.len(),
                    }));
                    break;
                }
                Err(error) => {
                    // Without a valid header the frame length is unknown:
                    // the rest of this PES is lost.
                    out.push(DemuxEvent::Warning(DemuxWarning::BadAdts { pid, error }));
                    break;
                }
            };
            if header.sample_rate != rate {
                // Keep the offset exact across a rate change (which only a
                // broken encoder makes inside one PES).
                if rate != 0 {
                    base = base + offset_90k(samples, rate);
                }
                samples = 0;
                rate = header.sample_rate;
            }
            let frame = offset..offset + header.frame_length;
            offset = frame.end;
            let frame_samples = 1024 * u64::from(header.raw_data_blocks);
            if header.raw_data_blocks != 1 {
                out.push(DemuxEvent::Warning(DemuxWarning::BadAdts {
                    pid,
                    error: AacError::MultipleRawDataBlocks {
                        blocks: header.raw_data_blocks,
                    },
                }));
                samples += frame_samples;
                continue;
            }
            let params = header.params();
            if self.announced.as_ref() != Some(&params) {
                out.push(DemuxEvent::Track(TrackInfo {
                    id: TrackId(pid),
                    params: CodecParams::Aac(params.clone()),
                }));
                self.announced = Some(params);
            }
            // Frame i starts i × 1024 samples after the PES PTS, rounded
            // once from the PES PTS so rounding never accumulates.
            let pts = base + offset_90k(samples, rate);
            samples += frame_samples;
            out.push(DemuxEvent::Unit(AccessUnit {
                track: TrackId(pid),
                kind: TrackKind::Audio,
                pts,
                dts: pts,
                keyframe: true,
                data: data.slice(frame.start + header.header_len..frame.end),
                captured_unix_ms: None,
                trace: None,
            }));
        }
        self.next = (rate != 0).then_some((base, samples, rate));
    }
}

/// Opus in MPEG-TS: each access unit follows an `opus_control_header` that
/// gives its size; one [`AccessUnit`] per Opus packet, header stripped,
/// each timed from the PES PTS plus the samples of the packets before it
/// (from their TOC bytes).
///
/// `start_trim` of the first packet becomes the track's pre-skip; later
/// trims (an `end_trim` at the end of a stream, a splice) are not carried.
#[derive(Debug)]
pub(crate) struct OpusStream {
    channels: u8,
    /// Parameters announced with the first packet; kept for the stream's
    /// life so a later packet's trims do not re-announce the track.
    announced: Option<OpusParams>,
    /// Where the next packet starts when a PES comes without PTS: the last
    /// PTS seen and the samples since.
    next: Option<(Time90k, u64)>,
}

impl OpusStream {
    pub(crate) fn new(channels: u8) -> Self {
        Self {
            channels,
            announced: None,
            next: None,
        }
    }

    fn on_pes(
        &mut self,
        pid: u16,
        pes: Pes,
        clock: &mut TimestampExtender,
        out: &mut Vec<DemuxEvent>,
    ) {
        let (base, mut samples) = match (pes.pts, self.next) {
            (Some(pts), _) => (clock.extend(pts), 0u64),
            (None, Some(next)) => next,
            (None, None) => {
                out.push(DemuxEvent::Warning(DemuxWarning::MissingPts { pid }));
                return;
            }
        };
        let data = pes.payload;
        let mut offset = 0;
        while offset < data.len() {
            let rest = &data[offset..];
            let header = match opus::parse_control_header(rest) {
                Ok(h) => h,
                Err(OpusError::TruncatedHeader { .. }) => {
                    out.push(DemuxEvent::Warning(DemuxWarning::TruncatedOpus {
                        pid,
                        bytes: rest.len(),
                    }));
                    break;
                }
                Err(error) => {
                    // Without a control header the packet boundaries are
                    // unknown: the rest of this PES is lost.
                    out.push(DemuxEvent::Warning(DemuxWarning::BadOpus { pid, error }));
                    break;
                }
            };
            let Some(packet) = rest.get(header.header_len..header.header_len + header.au_size)
            else {
                out.push(DemuxEvent::Warning(DemuxWarning::TruncatedOpus {
                    pid,
                    bytes: rest.len(),
                }));
                break;
            };
            let packet_samples = match opus::packet_samples(packet) {
                Ok(n) => n,
                Err(error) => {
                    // Its duration is unknown, so the packets after it
                    // cannot be timed either: drop the rest of the PES.
                    out.push(DemuxEvent::Warning(DemuxWarning::BadOpus { pid, error }));
                    break;
                }
            };
            offset += header.header_len + header.au_size;
            if self.announced.is_none() {
                let params = OpusParams {
                    channels: self.channels,
                    sample_rate: OPUS_SAMPLE_RATE,
                    pre_skip: header.start_trim.unwrap_or(0),
                    channel_mapping_family: 0,
                };
                out.push(DemuxEvent::Track(TrackInfo {
                    id: TrackId(pid),
                    params: CodecParams::Opus(params.clone()),
                }));
                self.announced = Some(params);
            }
            // Packet i starts at the PES PTS plus the samples before it,
            // rounded once from the PES PTS so rounding never accumulates.
            let pts = base + offset_90k(samples, OPUS_SAMPLE_RATE);
            samples += u64::from(packet_samples);
            out.push(DemuxEvent::Unit(AccessUnit {
                track: TrackId(pid),
                kind: TrackKind::Audio,
                pts,
                dts: pts,
                keyframe: true,
                data: data.slice_ref(packet),
                captured_unix_ms: None,
                trace: None,
            }));
        }
        self.next = Some((base, samples));
    }
}

/// `samples` at `rate` Hz on the 90 kHz clock, to the nearest tick.
fn offset_90k(samples: u64, rate: u32) -> Time90k {
    Time90k::from_timescale(i64::try_from(samples).unwrap_or(i64::MAX), rate)
}
