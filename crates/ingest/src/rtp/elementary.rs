//! H.264 + AAC elementary streams over RTP, described by an SDP: datagrams
//! from the video and the audio port in, bus messages out. Sans-IO.
//!
//! Each port has its own jitter buffer ([`Reorder`]) and depacketiser
//! ([`H264Depacketizer`], [`AacDepacketizer`]). Their units are put in
//! presentation order across the two tracks ([`MAX_INTERLEAVE`]: an encoder
//! sends video later than the audio captured at the same time, by its
//! lookahead) and go through the same [`TrackGate`] as MPEG-TS, so the
//! packager sees `Tracks` and then units exactly as from the TS path.
//!
//! Timing rules (see `docs/configuration.md`):
//! - each track's zero is its first RTP packet: without RTCP sender reports
//!   the offset between the two is unknown and taken as zero;
//! - RTP carries only presentation time, so video `dts = pts`. B-frames
//!   (presentation order ≠ decode order) are not supported: a picture whose
//!   timestamp does not advance is dropped and counted
//!   ([`RtpStats::out_of_order`]); send with `-bf 0`;
//! - a video unit damaged by loss is dropped, and so is everything after it
//!   up to the next IDR picture ([`RtpStats::damaged`]);
//! - a new SSRC on a port (the sender restarted) continues that track's
//!   timeline one frame after its last unit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use ferrocast_bus::BusMessage;
use ferrocast_media::h264::params_from_access_unit;
use ferrocast_media::{AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind};
use tracing::{debug, info, trace, warn};

use super::RtpStats;
use super::aac::{AacDepacketizer, AacFrame};
use super::h264::{H264Depacketizer, H264Unit};
use super::packet::{self, PacketError, RtpPacket};
use super::reorder::{Reorder, ReorderConfig};
use super::sdp::SdpSession;
use crate::gate::{Released, TrackGate};

/// Track id of the video stream (the CMAF `track_ID` must not be 0).
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// Track id of the audio stream.
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// How far one track may run ahead of the other before its units are let
/// through without waiting (an encoder's lookahead delays video by a second
/// or two; a track that stopped must not stall the other for long).
pub const MAX_INTERLEAVE: Time90k = Time90k::from_millis(4000);

/// Which of the session's ports a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// The H.264 port.
    Video,
    /// The AAC port.
    Audio,
}

impl std::fmt::Display for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Media::Video => "video",
            Media::Audio => "audio",
        })
    }
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpRtpError {
    /// Not an RTP packet.
    #[error("{media} port: {source}")]
    Packet {
        /// The port it came on.
        media: Media,
        /// Why.
        source: PacketError,
    },
    /// An RTP packet of another payload type than the SDP gives.
    #[error("{media} port: RTP packet {sequence}: payload type {found}, the SDP says {expected}")]
    PayloadType {
        /// The port it came on.
        media: Media,
        /// Sequence number of the packet.
        sequence: u16,
        /// The SDP's payload type.
        expected: u8,
        /// The packet's.
        found: u8,
    },
    /// A datagram on a port the SDP has no stream for.
    #[error("no {media} stream in the SDP")]
    NoStream {
        /// The port it came on.
        media: Media,
    },
}

/// One port: its jitter buffer and sender.
#[derive(Debug)]
struct Port {
    payload_type: u8,
    reorder: Reorder<RtpPacket>,
    ssrc: Option<u32>,
    /// Set when the SSRC changed: the depacketiser continues the timeline
    /// when the new sender's first packet comes out of the buffer.
    rebase: bool,
}

impl Port {
    fn new(payload_type: u8, config: ReorderConfig) -> Self {
        Port {
            payload_type,
            reorder: Reorder::new(config),
            ssrc: None,
            rebase: false,
        }
    }
}

#[derive(Debug)]
struct Video {
    port: Port,
    depacketizer: H264Depacketizer,
    /// Parameters from the SDP, announced before any unit.
    sdp_params: Option<ferrocast_media::H264Params>,
    /// The current track, once parameters are known.
    track: Option<TrackInfo>,
    /// Drop units until an IDR picture.
    need_keyframe: bool,
    /// Last unit passed on: its time and the interval before it.
    last: Option<(Time90k, Time90k)>,
    units: Vec<H264Unit>,
    warned_out_of_order: bool,
}

#[derive(Debug)]
struct Audio {
    port: Port,
    depacketizer: AacDepacketizer,
    track: TrackInfo,
    frame: Time90k,
    last: Option<Time90k>,
    frames: Vec<AacFrame>,
}

/// One SDP-described RTP session (H.264 and/or AAC, one port each): reorders
/// each port's packets, depacketises them and feeds the track gate.
#[derive(Debug)]
pub struct SdpOverRtp {
    video: Option<Video>,
    audio: Option<Audio>,
    /// Units per track waiting to be put in presentation order.
    video_queue: VecDeque<AccessUnit>,
    audio_queue: VecDeque<AccessUnit>,
    gate: TrackGate,
    /// The SDP's tracks have been announced to the gate.
    announced: bool,
    released: Vec<Released>,
    stats: RtpStats,
}

impl SdpOverRtp {
    /// A receiver for `session`, reordering within `config`'s window.
    pub fn new(session: &SdpSession, config: ReorderConfig) -> Self {
        let video = session.video.as_ref().map(|v| Video {
            port: Port::new(v.payload_type, config),
            depacketizer: H264Depacketizer::new(),
            sdp_params: v.params.clone(),
            track: None,
            need_keyframe: true,
            last: None,
            units: Vec::new(),
            warned_out_of_order: false,
        });
        let audio = session.audio.as_ref().map(|a| Audio {
            port: Port::new(a.payload_type, config),
            depacketizer: AacDepacketizer::new(a.rtp),
            track: TrackInfo {
                id: AUDIO_TRACK,
                params: CodecParams::Aac(a.params.clone()),
            },
            frame: Time90k::from_timescale(1024, a.params.sample_rate),
            last: None,
            frames: Vec::new(),
        });
        SdpOverRtp {
            video,
            audio,
            video_queue: VecDeque::new(),
            audio_queue: VecDeque::new(),
            gate: TrackGate::new(),
            announced: false,
            released: Vec::new(),
            stats: RtpStats::default(),
        }
    }

    /// Take one datagram that arrived on `media`'s port at `now`; bus
    /// messages it completes are appended to `out`. An error means the
    /// datagram was ignored.
    pub fn push_datagram(
        &mut self,
        media: Media,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), SdpRtpError> {
        let result = self.accept(media, datagram, now, out);
        if result.is_err() {
            self.stats.invalid += 1;
        }
        self.drain(now, out);
        result
    }

    fn accept(
        &mut self,
        media: Media,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), SdpRtpError> {
        let packet =
            packet::parse(datagram).map_err(|source| SdpRtpError::Packet { media, source })?;
        let port = match media {
            Media::Video => self.video.as_mut().map(|v| &mut v.port),
            Media::Audio => self.audio.as_mut().map(|a| &mut a.port),
        }
        .ok_or(SdpRtpError::NoStream { media })?;
        if packet.payload_type != port.payload_type {
            return Err(SdpRtpError::PayloadType {
                media,
                sequence: packet.sequence,
                expected: port.payload_type,
                found: packet.payload_type,
            });
        }
        let len = packet.payload.len() as u64;
        // RFC 3550 §8.2: a new SSRC is a new source; its numbering and
        // timestamps have nothing to do with the old one's.
        if port.ssrc.is_some_and(|ssrc| ssrc != packet.ssrc) {
            self.stats.ssrc_changes += 1;
            info!(%media, ssrc = packet.ssrc, "RTP sender changed SSRC: timeline continued");
            self.flush_port(media, out);
            if let Some(port) = self.port_mut(media) {
                port.reorder.reset();
                port.rebase = true;
            }
        }
        if let Some(port) = self.port_mut(media) {
            port.ssrc = Some(packet.ssrc);
            trace!(%media, sequence = packet.sequence, timestamp = packet.timestamp, len, "RTP packet");
            port.reorder.push(packet.sequence, now, packet);
        }
        self.stats.packets += 1;
        self.stats.bytes += len;
        Ok(())
    }

    fn port_mut(&mut self, media: Media) -> Option<&mut Port> {
        match media {
            Media::Video => self.video.as_mut().map(|v| &mut v.port),
            Media::Audio => self.audio.as_mut().map(|a| &mut a.port),
        }
    }

    /// Release what the jitter windows let go at `now` (call at
    /// [`deadline`](SdpOverRtp::deadline)).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        self.drain(now, out);
    }

    /// When [`poll`](SdpOverRtp::poll) should be called next, if no
    /// datagram comes first.
    pub fn deadline(&mut self) -> Option<Instant> {
        let video = self.video.as_mut().and_then(|v| v.port.reorder.deadline());
        let audio = self.audio.as_mut().and_then(|a| a.port.reorder.deadline());
        match (video, audio) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    /// The sender has gone: release everything held and start afresh for
    /// the next sender. Counters carry on.
    pub fn finish(&mut self, out: &mut Vec<BusMessage>) {
        self.flush_port(Media::Video, out);
        self.flush_port(Media::Audio, out);
        if let Some(v) = &mut self.video {
            v.depacketizer.finish(&mut v.units);
        }
        self.depacketized();
        self.interleave(true);
        self.gate.finish(&mut self.released);
        self.forward(out);
        self.discard();
    }

    /// Drop all state of the current sender without output. Counters carry
    /// on.
    pub fn discard(&mut self) {
        // Reorder counters of the old buffers are kept in `stats`.
        let reorder = self.reorder_stats();
        self.stats.reordered = reorder.reordered;
        self.stats.duplicates = reorder.duplicates;
        self.stats.late = reorder.late;
        self.stats.lost = reorder.lost;
        self.stats.resyncs = reorder.resyncs;
        self.stats.overflows = reorder.overflows;
        self.stats.damaged += self.dropped_now();
        let video = self.video.take().map(|v| Video {
            port: Port::new(v.port.payload_type, v.port.reorder.config()),
            depacketizer: H264Depacketizer::new(),
            sdp_params: v.sdp_params,
            track: None,
            need_keyframe: true,
            last: None,
            units: Vec::new(),
            warned_out_of_order: v.warned_out_of_order,
        });
        let audio = self.audio.take().map(|a| {
            let config = a.depacketizer.config();
            Audio {
                port: Port::new(a.port.payload_type, a.port.reorder.config()),
                depacketizer: AacDepacketizer::new(config),
                track: a.track,
                frame: a.frame,
                last: None,
                frames: Vec::new(),
            }
        });
        self.video = video;
        self.audio = audio;
        self.video_queue.clear();
        self.audio_queue.clear();
        self.gate = TrackGate::new();
        self.announced = false;
        self.released.clear();
    }

    /// Counters so far.
    pub fn stats(&self) -> RtpStats {
        let mut stats = self.stats;
        let r = self.reorder_stats();
        stats.reordered = r.reordered;
        stats.duplicates = r.duplicates;
        stats.late = r.late;
        stats.lost = r.lost;
        stats.resyncs = r.resyncs;
        stats.overflows = r.overflows;
        stats.damaged += self.dropped_now();
        stats
    }

    /// Reorder counters of the live buffers added to those of discarded ones.
    fn reorder_stats(&self) -> RtpStats {
        let mut s = self.stats;
        for port in [
            self.video.as_ref().map(|v| &v.port),
            self.audio.as_ref().map(|a| &a.port),
        ]
        .into_iter()
        .flatten()
        {
            let r = port.reorder.stats();
            s.reordered += r.reordered;
            s.duplicates += r.duplicates;
            s.late += r.late;
            s.lost += r.lost;
            s.resyncs += r.resyncs;
            s.overflows += r.overflows;
        }
        s
    }

    /// Fragmented audio frames dropped by the live depacketiser.
    fn dropped_now(&self) -> u64 {
        self.audio.as_ref().map_or(0, |a| a.depacketizer.dropped())
    }

    fn flush_port(&mut self, media: Media, out: &mut Vec<BusMessage>) {
        let packets: Vec<RtpPacket> = match self.port_mut(media) {
            Some(port) => port.reorder.flush().collect(),
            None => return,
        };
        for packet in packets {
            self.depacketize(media, &packet);
        }
        self.depacketized();
        self.interleave(false);
        self.forward(out);
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        for media in [Media::Video, Media::Audio] {
            while let Some(packet) = self.port_mut(media).and_then(|p| p.reorder.poll(now)) {
                self.depacketize(media, &packet);
            }
        }
        self.depacketized();
        self.interleave(false);
        self.forward(out);
    }

    fn depacketize(&mut self, media: Media, packet: &RtpPacket) {
        let result = match media {
            Media::Video => self.video.as_mut().map(|v| {
                if std::mem::take(&mut v.port.rebase) {
                    let next = v.last.map_or(Time90k::ZERO, |(t, step)| t + step);
                    v.depacketizer.rebase(next);
                }
                v.depacketizer
                    .push(packet, &mut v.units)
                    .map_err(|e| e.to_string())
            }),
            Media::Audio => self.audio.as_mut().map(|a| {
                if std::mem::take(&mut a.port.rebase) {
                    let next = a.last.map_or(Time90k::ZERO, |t| t + a.frame);
                    a.depacketizer.rebase(next);
                }
                a.depacketizer
                    .push(packet, &mut a.frames)
                    .map_err(|e| e.to_string())
            }),
        };
        if let Some(Err(error)) = result {
            self.stats.invalid += 1;
            debug!(%media, %error, "RTP payload not used");
        }
    }

    /// Depacketised units into the per-track queues, with the checks the
    /// packager relies on.
    fn depacketized(&mut self) {
        if !self.announced {
            self.announced = true;
            if let Some(a) = &self.audio {
                self.gate.on_track(a.track.clone(), &mut self.released);
            }
            if let Some(params) = self.video.as_ref().and_then(|v| v.sdp_params.clone()) {
                self.set_video_params(params);
            }
        }
        if let Some(a) = &mut self.audio {
            for frame in a.frames.drain(..) {
                if a.last.is_some_and(|last| frame.pts <= last) {
                    self.stats.out_of_order += 1;
                    continue;
                }
                a.last = Some(frame.pts);
                self.audio_queue.push_back(AccessUnit {
                    track: AUDIO_TRACK,
                    kind: TrackKind::Audio,
                    pts: frame.pts,
                    dts: frame.pts,
                    keyframe: true,
                    data: frame.data,
                });
            }
        }
        let units = match &mut self.video {
            Some(v) => std::mem::take(&mut v.units),
            None => return,
        };
        for unit in units {
            self.video_unit(unit);
        }
    }

    fn video_unit(&mut self, unit: H264Unit) {
        let Some(v) = &mut self.video else { return };
        if unit.damaged {
            self.stats.damaged += 1;
            v.need_keyframe = true;
            return;
        }
        if v.need_keyframe && !unit.keyframe {
            if v.last.is_some() {
                self.stats.damaged += 1;
            }
            return;
        }
        match params_from_access_unit(&unit.data) {
            Some(Ok(params)) => self.set_video_params(params),
            Some(Err(error)) => warn!(%error, "in-band H.264 SPS not usable"),
            None => {}
        }
        let Some(v) = &mut self.video else { return };
        if v.track.is_none() {
            // No parameters yet (neither in the SDP nor in-band).
            return;
        }
        if let Some((last, _)) = v.last
            && unit.pts <= last
        {
            self.stats.out_of_order += 1;
            if !std::mem::replace(&mut v.warned_out_of_order, true) {
                warn!(
                    "H.264 picture timestamps do not advance (B-frames?): such pictures are dropped; \
                     RTP carries no decode time, send without B-frames (-bf 0)"
                );
            }
            return;
        }
        v.need_keyframe = false;
        let step = v.last.map_or(Time90k::ZERO, |(last, _)| unit.pts - last);
        v.last = Some((unit.pts, step));
        self.video_queue.push_back(AccessUnit {
            track: VIDEO_TRACK,
            kind: TrackKind::Video,
            pts: unit.pts,
            // RTP gives presentation time only; without reordering the
            // decode time is the same.
            dts: unit.pts,
            keyframe: unit.keyframe,
            data: unit.data,
        });
    }

    fn set_video_params(&mut self, params: ferrocast_media::H264Params) {
        let Some(v) = &mut self.video else { return };
        let info = TrackInfo {
            id: VIDEO_TRACK,
            params: CodecParams::H264(params),
        };
        if v.track.as_ref() != Some(&info) {
            v.track = Some(info.clone());
            self.gate.on_track(info, &mut self.released);
        }
    }

    /// Pass queued units to the gate in presentation order across tracks.
    /// A track waits for the other while the other has nothing queued,
    /// unless its own queue spans [`MAX_INTERLEAVE`] or `all` (end of input).
    fn interleave(&mut self, all: bool) {
        let both = self.video.is_some() && self.audio.is_some();
        loop {
            let take_video = match (self.video_queue.front(), self.audio_queue.front()) {
                (Some(v), Some(a)) => v.pts <= a.pts,
                (Some(_), None) => !both || all || span(&self.video_queue) >= MAX_INTERLEAVE,
                (None, Some(_)) => {
                    if both && !all && span(&self.audio_queue) < MAX_INTERLEAVE {
                        break;
                    }
                    false
                }
                (None, None) => break,
            };
            if !take_video && self.audio_queue.is_empty() {
                break;
            }
            let unit = if take_video {
                self.video_queue.pop_front()
            } else {
                self.audio_queue.pop_front()
            };
            if let Some(unit) = unit {
                self.gate.on_unit(unit, &mut self.released);
            }
        }
    }

    fn forward(&mut self, out: &mut Vec<BusMessage>) {
        for released in self.released.drain(..) {
            match released {
                Released::Tracks(tracks) => out.push(BusMessage::Tracks(tracks)),
                Released::Unit(unit) => {
                    self.stats.units += 1;
                    out.push(BusMessage::Unit(Arc::new(unit)));
                }
            }
        }
    }
}

fn span(queue: &VecDeque<AccessUnit>) -> Time90k {
    match (queue.front(), queue.back()) {
        (Some(first), Some(last)) => last.pts - first.pts,
        _ => Time90k::ZERO,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    /// ffmpeg's SDP with the SPS/PPS of a 320x240 x264 stream and 48 kHz
    /// stereo AAC.
    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
        m=video 40000 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADayyAoP2AiAAAAMAIAAABkHihUk=,aOvDyyLA\r\n\
        m=audio 40002 RTP/AVP 97\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
        a=fmtp:97 mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190\r\n";

    fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut d = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        d.extend_from_slice(&seq.to_be_bytes());
        d.extend_from_slice(&ts.to_be_bytes());
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(payload);
        d
    }

    /// One AAC-hbr packet of `n` 4-byte frames.
    fn aac(n: usize) -> Vec<u8> {
        let mut p = ((n * 16) as u16).to_be_bytes().to_vec();
        for _ in 0..n {
            p.extend_from_slice(&(4u16 << 3).to_be_bytes());
        }
        for i in 0..n {
            p.extend_from_slice(&[0x21, i as u8, 0, 0]);
        }
        p
    }

    fn units(out: &[BusMessage]) -> Vec<(TrackKind, i64, bool)> {
        out.iter()
            .filter_map(|m| match m {
                BusMessage::Unit(u) => Some((u.kind, u.pts.ticks(), u.keyframe)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tracks_then_units_in_presentation_order_and_loss_waits_for_idr() {
        let session = SdpSession::from_sdp(SDP).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        );
        let mut out = Vec::new();
        let idr = [0x65, 0x88, 0x80];
        let p = [0x41, 0x9a, 0x02];
        // Audio first (the encoder's lookahead), from a random timestamp base.
        for i in 0..10u16 {
            let d = rtp(
                97,
                500 + i,
                7_000_000 + u32::from(i) * 4096,
                true,
                9,
                &aac(4),
            );
            rx.push_datagram(Media::Audio, &d, t0, &mut out).unwrap();
        }
        assert!(units(&out).is_empty(), "audio waits for the video");
        // Video: IDR, P, then P with a lost packet before it, P, IDR.
        let base = u32::MAX - 3600;
        let video = [
            (1u16, 0u32, &idr[..]),
            (2, 3600, &p[..]),
            (4, 7200, &p[..]),
            (5, 10_800, &p[..]),
            (6, 14_400, &idr[..]),
        ];
        for (seq, ts, payload) in video {
            let d = rtp(96, seq, base.wrapping_add(ts), true, 3, payload);
            rx.push_datagram(Media::Video, &d, t0, &mut out).unwrap();
        }
        rx.poll(t0 + Duration::from_secs(1), &mut out);
        rx.finish(&mut out);
        let BusMessage::Tracks(tracks) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].params.codec_string(), "avc1.64000d");
        assert_eq!(tracks[1].params.codec_string(), "mp4a.40.2");
        let got = units(&out);
        let video: Vec<_> = got
            .iter()
            .filter(|u| u.0 == TrackKind::Video)
            .map(|u| (u.1, u.2))
            .collect();
        assert_eq!(video, vec![(0, true), (3600, false), (14_400, true)]);
        let audio = got.iter().filter(|u| u.0 == TrackKind::Audio).count();
        assert_eq!(audio, 40);
        let mut last = i64::MIN;
        for (_, pts, _) in &got {
            assert!(*pts >= last, "presentation order: {got:?}");
            last = *pts;
        }
        let stats = rx.stats();
        assert_eq!(stats.lost, 1);
        assert_eq!(stats.damaged, 2, "{stats:?}");
        assert_eq!(stats.units, 43);
    }

    #[test]
    fn non_advancing_pictures_and_wrong_payload_types_are_dropped() {
        let session = SdpSession::from_sdp(SDP).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        );
        let mut out = Vec::new();
        let idr = [0x65, 0x88, 0x80];
        let p = [0x41, 0x9a, 0x02];
        for (seq, ts, payload) in [(1u16, 0u32, &idr[..]), (2, 7200, &p[..]), (3, 3600, &p[..])] {
            rx.push_datagram(
                Media::Video,
                &rtp(96, seq, ts, true, 1, payload),
                t0,
                &mut out,
            )
            .unwrap();
        }
        assert!(matches!(
            rx.push_datagram(Media::Video, &rtp(97, 4, 0, true, 1, &p), t0, &mut out),
            Err(SdpRtpError::PayloadType {
                expected: 96,
                found: 97,
                ..
            })
        ));
        rx.finish(&mut out);
        let stats = rx.stats();
        assert_eq!((stats.out_of_order, stats.invalid), (1, 1));
        assert_eq!(units(&out).len(), 2);
    }
}
