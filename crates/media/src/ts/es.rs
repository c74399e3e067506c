//! Elementary streams: complete PES packets in, tracks and access units out.

use bytes::Bytes;

use super::pes::Pes;
use super::{DemuxEvent, DemuxWarning};
use crate::aac::{self, AacError};
use crate::codec::{AacParams, CodecParams, H264Params, TrackId, TrackInfo, TrackKind};
use crate::h264::{self, nal_type, nal_unit_type, nal_units};
use crate::time::{Time90k, TimestampExtender};
use crate::unit::AccessUnit;

/// Per-PID state of a supported elementary stream.
#[derive(Debug)]
pub(crate) enum Elementary {
    /// Boxed: the parameter sets make it several times larger than AAC.
    H264(Box<H264Stream>),
    Aac(AacStream),
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
            Elementary::H264(s) => s.on_pes(pid, pes, clock, out),
            Elementary::Aac(s) => s.on_pes(pid, pes, clock, out),
        }
    }
}

/// H.264: one access unit per PES, as ffmpeg, OBS and hardware encoders
/// send it.
#[derive(Debug, Default)]
pub(crate) struct H264Stream {
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// Parameters from the latest SPS/PPS pair that parsed.
    params: Option<H264Params>,
    /// Parameters last announced with a `Track` event.
    announced: Option<H264Params>,
    /// The last SPS/PPS pair that failed, so its warning is not repeated at
    /// every keyframe.
    failed: Option<(Bytes, Bytes)>,
}

impl H264Stream {
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
        let (mut sps, mut pps) = (None, None);
        for nal in nal_units(&data) {
            match nal_unit_type(nal) {
                Some(nal_type::IDR) => keyframe = true,
                Some(nal_type::SPS) if sps.is_none() => sps = Some(data.slice_ref(nal)),
                Some(nal_type::PPS) if pps.is_none() => pps = Some(data.slice_ref(nal)),
                _ => {}
            }
        }
        if sps.is_some() || pps.is_some() {
            self.update_parameter_sets(pid, sps, pps, out);
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
                params: CodecParams::H264(params.clone()),
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
        }));
    }

    fn update_parameter_sets(
        &mut self,
        pid: u16,
        sps: Option<Bytes>,
        pps: Option<Bytes>,
        out: &mut Vec<DemuxEvent>,
    ) {
        let changed = (sps.is_some() && sps != self.sps) || (pps.is_some() && pps != self.pps);
        if sps.is_some() {
            self.sps = sps;
        }
        if pps.is_some() {
            self.pps = pps;
        }
        if !changed {
            return;
        }
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return;
        };
        match h264::params_from_parameter_sets(sps.clone(), pps.clone()) {
            Ok(params) => {
                self.params = Some(params);
                self.failed = None;
            }
            Err(error) => {
                let pair = (sps.clone(), pps.clone());
                if self.failed.as_ref() != Some(&pair) {
                    out.push(DemuxEvent::Warning(DemuxWarning::BadParameterSets {
                        pid,
                        error,
                    }));
                    self.failed = Some(pair);
                }
            }
        }
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
            }));
        }
        self.next = (rate != 0).then_some((base, samples, rate));
    }
}

/// `samples` at `rate` Hz on the 90 kHz clock, to the nearest tick.
fn offset_90k(samples: u64, rate: u32) -> Time90k {
    Time90k::from_timescale(i64::try_from(samples).unwrap_or(i64::MAX), rate)
}
