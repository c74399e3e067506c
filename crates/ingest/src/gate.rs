//! Holding back a new publisher's first units until its track set is known.
//!
//! The demuxer announces each track when its codec parameters first appear
//! (H.264 with the first SPS/PPS, AAC with the first ADTS header), in
//! whatever order the sender interleaves them. Downstream needs the whole
//! set at once — a CMAF init segment describes every track — so the gate
//! buffers units until it has a video and an audio track, or until
//! [`PROBE_SPAN`] of media has gone by with only one of them (a video-only or
//! audio-only feed), then releases the track set followed by the buffered
//! units. Later parameter changes are passed on as a new track set.
//!
//! Only the first video and the first audio track are carried; further
//! tracks of a kind are ignored (and logged once by the caller).

use std::collections::VecDeque;
use std::sync::Arc;

use ferrocast_media::{AccessUnit, Time90k, TrackId, TrackInfo, TrackKind};

/// How much media the gate waits for a missing track kind.
pub const PROBE_SPAN: Time90k = Time90k::from_millis(1000);

/// The most the gate buffers before releasing regardless.
pub const PROBE_MAX_BYTES: usize = 16 << 20;

/// What the gate lets through, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Released {
    /// The stream's track set (first, and again whenever it changes).
    Tracks(Arc<[TrackInfo]>),
    /// An access unit of a track in the current set.
    Unit(AccessUnit),
}

/// The gate for one publisher session.
#[derive(Debug, Default)]
pub struct TrackGate {
    video: Option<TrackInfo>,
    audio: Option<TrackInfo>,
    released: Option<Arc<[TrackInfo]>>,
    pending: VecDeque<AccessUnit>,
    pending_bytes: usize,
}

impl TrackGate {
    /// A gate waiting for its first tracks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `track` is one of the carried tracks. Returns false for a
    /// second track of a kind (the caller may log it).
    pub fn on_track(&mut self, info: TrackInfo, out: &mut Vec<Released>) -> bool {
        let slot = match info.kind() {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        };
        match slot {
            Some(existing) if existing.id != info.id => return false,
            Some(existing) if *existing == info => return true,
            _ => *slot = Some(info),
        }
        if self.released.is_some() {
            self.release_tracks(out);
        } else if self.video.is_some() && self.audio.is_some() {
            self.release(out);
        }
        true
    }

    /// An access unit from the demuxer.
    pub fn on_unit(&mut self, unit: AccessUnit, out: &mut Vec<Released>) {
        if !self.carries(unit.track) {
            return;
        }
        if self.released.is_some() {
            out.push(Released::Unit(unit));
            return;
        }
        self.pending_bytes += unit.data.len();
        self.pending.push_back(unit);
        let span = match (self.pending.front(), self.pending.back()) {
            (Some(first), Some(last)) => last.dts - first.dts,
            _ => Time90k::ZERO,
        };
        if span >= PROBE_SPAN || self.pending_bytes >= PROBE_MAX_BYTES {
            self.release(out);
        }
    }

    /// End of input: release whatever is buffered.
    pub fn finish(&mut self, out: &mut Vec<Released>) {
        if self.released.is_none() && (self.video.is_some() || self.audio.is_some()) {
            self.release(out);
        }
    }

    /// The track set released so far, if any.
    pub fn tracks(&self) -> Option<&Arc<[TrackInfo]>> {
        self.released.as_ref()
    }

    fn carries(&self, id: TrackId) -> bool {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .any(|t| t.id == id)
    }

    fn release_tracks(&mut self, out: &mut Vec<Released>) {
        let set: Arc<[TrackInfo]> = [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        self.released = Some(set.clone());
        out.push(Released::Tracks(set));
    }

    fn release(&mut self, out: &mut Vec<Released>) {
        self.release_tracks(out);
        self.pending_bytes = 0;
        out.extend(self.pending.drain(..).map(Released::Unit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrocast_media::{AacParams, CodecParams, H264Params};

    fn video() -> TrackInfo {
        TrackInfo {
            id: TrackId(256),
            params: CodecParams::H264(H264Params {
                sps: Bytes::from_static(&[0x67, 0x64, 0, 0x1f]),
                pps: Bytes::from_static(&[0x68]),
                profile_idc: 0x64,
                constraint_flags: 0,
                level_idc: 0x1f,
                width: 320,
                height: 240,
                frame_rate: None,
            }),
        }
    }

    fn audio(id: u16) -> TrackInfo {
        TrackInfo {
            id: TrackId(id),
            params: CodecParams::Aac(AacParams {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
            }),
        }
    }

    fn unit(track: &TrackInfo, ms: i64) -> AccessUnit {
        AccessUnit {
            track: track.id,
            kind: track.kind(),
            pts: Time90k::from_millis(ms),
            dts: Time90k::from_millis(ms),
            keyframe: true,
            data: Bytes::from_static(&[1, 2, 3]),
            captured_unix_ms: None,
            trace: None,
        }
    }

    #[test]
    fn waits_for_both_kinds_then_releases_in_order() {
        let (v, a) = (video(), audio(257));
        let mut gate = TrackGate::new();
        let mut out = Vec::new();
        gate.on_track(v.clone(), &mut out);
        gate.on_unit(unit(&v, 0), &mut out);
        gate.on_unit(unit(&v, 40), &mut out);
        assert!(out.is_empty(), "held until audio is known");
        gate.on_track(a.clone(), &mut out);
        gate.on_unit(unit(&a, 21), &mut out);
        assert_eq!(out.len(), 4);
        assert!(matches!(&out[0], Released::Tracks(t) if t.len() == 2));
        assert!(matches!(&out[1], Released::Unit(u) if u.dts == Time90k::from_millis(0)));
        assert!(matches!(&out[3], Released::Unit(u) if u.track == a.id));
    }

    #[test]
    fn video_only_feed_released_after_probe_span() {
        let v = video();
        let mut gate = TrackGate::new();
        let mut out = Vec::new();
        gate.on_track(v.clone(), &mut out);
        for ms in (0..1000).step_by(40) {
            gate.on_unit(unit(&v, ms), &mut out);
        }
        assert!(out.is_empty());
        gate.on_unit(unit(&v, 1000), &mut out);
        assert!(matches!(&out[0], Released::Tracks(t) if t.len() == 1));
        assert_eq!(out.len(), 1 + 26);
    }

    #[test]
    fn second_audio_track_ignored_and_changes_reannounced() {
        let (v, a) = (video(), audio(257));
        let mut gate = TrackGate::new();
        let mut out = Vec::new();
        gate.on_track(v.clone(), &mut out);
        gate.on_track(a.clone(), &mut out);
        out.clear();
        assert!(!gate.on_track(audio(258), &mut out));
        gate.on_unit(unit(&audio(258), 0), &mut out);
        assert!(out.is_empty());
        let mut v2 = video();
        if let CodecParams::H264(p) = &mut v2.params {
            p.width = 640;
        }
        assert!(gate.on_track(v2, &mut out));
        assert!(matches!(&out[0], Released::Tracks(t) if t.len() == 2));
    }
}
