//! H.264 or HEVC video plus AAC audio over RTP, described by an SDP:
//! datagrams from the video and the audio ports (RTP and RTCP) in, bus
//! messages out. Sans-IO.
//!
//! Each port has its own jitter buffer ([`Reorder`]) and depacketiser
//! ([`H264Depacketizer`] or [`H265Depacketizer`], [`AacDepacketizer`]).
//! Their units are put in decode order across the two tracks
//! ([`MAX_INTERLEAVE`]: an encoder sends video later than the audio
//! captured at the same time, by its lookahead) and go through the same
//! [`TrackGate`] as MPEG-TS, so the packager sees `Tracks` and then units
//! exactly as from the TS path.
//!
//! Timing rules (see `docs/configuration.md`):
//! - **A/V sync** ([`AvSync`]): the two tracks are placed on one timeline
//!   by the first RTCP sender report of each (RTCP on the RTP port + 1, on
//!   `a=rtcp:` or, with `a=rtcp-mux`, on the RTP port). Units wait until
//!   both tracks have one, at most [`SYNC_WINDOW`](super::sync::SYNC_WINDOW) after the first unit;
//!   without reports each track's first unit is zero (the offset between
//!   the two is then unknown and taken as zero);
//! - **decode times** ([`DecodeTimes`]): RTP carries only presentation
//!   time. A picture's decode time is the presentation time `d` pictures
//!   earlier in sorted order, `d` the reorder depth the SPS gives (H.264
//!   VUI `max_num_reorder_frames`, or its inferred value; HEVC
//!   `sps_max_num_reorder_pics`); a picture that cannot get a decode time
//!   strictly after the last and not after its own presentation time is
//!   dropped and counted ([`RtpStats::out_of_order`]);
//! - a video unit damaged by loss is dropped, and so is everything after it
//!   up to the next keyframe (IDR; IRAP for HEVC) ([`RtpStats::damaged`]);
//! - a new SSRC on a port (the sender restarted) continues that track's
//!   timeline one frame after its last unit.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use ferrocast_bus::BusMessage;
use ferrocast_media::{
    AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind, h264, h265,
};
use tracing::{debug, info, trace, warn};

use super::RtpStats;
use super::aac::{AacDepacketizer, AacFrame};
use super::access_unit::VideoUnit;
use super::decode_time::{DEFAULT_REORDER_DEPTH, DecodeTimes};
use super::h264::H264Depacketizer;
use super::h265::H265Depacketizer;
use super::packet::{self, PacketError, RtpPacket};
use super::reorder::{Reorder, ReorderConfig};
use super::sdp::{Rtcp, SdpSession, VideoCodec};
use super::sync::{self, AvSync, Placement, RtcpError, Track};
use crate::gate::{Released, TrackGate};
use crate::interleave::InterleaveConfig;

/// Track id of the video stream (the CMAF `track_ID` must not be 0).
pub const VIDEO_TRACK: TrackId = TrackId(1);
/// Track id of the audio stream.
pub const AUDIO_TRACK: TrackId = TrackId(2);

/// How far one track may run ahead of the other before its units are let
/// through without waiting (an encoder's lookahead delays video by a second
/// or two; a track that stopped must not stall the other for long).
pub const MAX_INTERLEAVE: Time90k = Time90k::from_millis(4000);

/// Which of the session's streams a datagram arrived for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// The video stream's port.
    Video,
    /// The audio stream's port.
    Audio,
}

impl Media {
    fn track(self) -> Track {
        match self {
            Media::Video => Track::Video,
            Media::Audio => Track::Audio,
        }
    }
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
    /// An RTCP datagram that does not parse.
    #[error("{media} RTCP: {source}")]
    Rtcp {
        /// The stream it came for.
        media: Media,
        /// Why.
        source: RtcpError,
    },
}

/// One port: its jitter buffer and sender.
#[derive(Debug)]
struct Port {
    payload_type: u8,
    rtcp: Rtcp,
    reorder: Reorder<RtpPacket>,
    ssrc: Option<u32>,
    /// Set when the SSRC changed: the depacketiser continues the timeline
    /// when the new sender's first packet comes out of the buffer.
    rebase: bool,
}

impl Port {
    fn new(payload_type: u8, rtcp: Rtcp, config: ReorderConfig) -> Self {
        Port {
            payload_type,
            rtcp,
            reorder: Reorder::new(config),
            ssrc: None,
            rebase: false,
        }
    }

    fn renewed(&self) -> Self {
        Port::new(self.payload_type, self.rtcp, self.reorder.config())
    }
}

/// The video depacketiser of the SDP's codec.
#[derive(Debug)]
enum VideoDepacketizer {
    H264(H264Depacketizer),
    H265(H265Depacketizer),
}

impl VideoDepacketizer {
    fn new(codec: VideoCodec) -> Self {
        match codec {
            VideoCodec::H264 => VideoDepacketizer::H264(H264Depacketizer::new()),
            VideoCodec::H265 => VideoDepacketizer::H265(H265Depacketizer::new()),
        }
    }

    fn push(&mut self, packet: &RtpPacket, out: &mut Vec<VideoUnit>) -> Result<(), String> {
        match self {
            VideoDepacketizer::H264(d) => d.push(packet, out).map_err(|e| e.to_string()),
            VideoDepacketizer::H265(d) => d.push(packet, out).map_err(|e| e.to_string()),
        }
    }

    fn finish(&mut self, out: &mut Vec<VideoUnit>) {
        match self {
            VideoDepacketizer::H264(d) => d.finish(out),
            VideoDepacketizer::H265(d) => d.finish(out),
        }
    }

    fn rebase(&mut self, at: Time90k) {
        match self {
            VideoDepacketizer::H264(d) => d.rebase(at),
            VideoDepacketizer::H265(d) => d.rebase(at),
        }
    }
}

#[derive(Debug)]
struct Video {
    port: Port,
    codec: VideoCodec,
    depacketizer: VideoDepacketizer,
    /// Parameters from the SDP, announced before any unit.
    sdp_params: Option<CodecParams>,
    /// The current track, once parameters are known.
    track: Option<TrackInfo>,
    /// Drop units until a keyframe.
    need_keyframe: bool,
    /// Latest presentation time passed on, the last decode time and the
    /// step before it.
    last: Option<(Time90k, Time90k, Time90k)>,
    decode: DecodeTimes,
    units: Vec<VideoUnit>,
    warned_out_of_order: bool,
}

impl Video {
    fn new(port: Port, codec: VideoCodec, sdp_params: Option<CodecParams>, warned: bool) -> Self {
        Video {
            port,
            codec,
            depacketizer: VideoDepacketizer::new(codec),
            sdp_params,
            track: None,
            need_keyframe: true,
            last: None,
            decode: DecodeTimes::new(DEFAULT_REORDER_DEPTH, None),
            units: Vec::new(),
            warned_out_of_order: warned,
        }
    }
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

/// One SDP-described RTP session (H.264 or HEVC video and/or AAC audio,
/// one port each plus RTCP): reorders each port's packets, depacketises
/// them, gives video decode times, lines the tracks up and feeds the track
/// gate.
#[derive(Debug)]
pub struct SdpOverRtp {
    video: Option<Video>,
    audio: Option<Audio>,
    /// Units per track waiting to be put in decode order, on their track's
    /// own timeline (the sync offset is added as they leave).
    video_queue: VecDeque<AccessUnit>,
    audio_queue: VecDeque<AccessUnit>,
    sync: AvSync,
    /// The sync placement of this sender has been counted.
    placed: bool,
    gate: TrackGate,
    /// The SDP's tracks have been announced to the gate.
    announced: bool,
    released: Vec<Released>,
    /// The latest `now` seen (units are stamped with it for the sync window).
    now: Option<Instant>,
    stats: RtpStats,
    /// Whether video waits for the audio of its decode time
    /// ([`InterleaveConfig::video_waits_for_audio`]).
    video_waits_for_audio: bool,
}

impl SdpOverRtp {
    /// A receiver for `session`, reordering within `config`'s window.
    pub fn new(session: &SdpSession, config: ReorderConfig) -> Self {
        let video = session.video.as_ref().map(|v| {
            Video::new(
                Port::new(v.payload_type, v.rtcp, config),
                v.codec,
                v.params.clone(),
                false,
            )
        });
        let audio = session.audio.as_ref().map(|a| Audio {
            port: Port::new(a.payload_type, a.rtcp, config),
            depacketizer: AacDepacketizer::new(a.rtp),
            track: TrackInfo {
                id: AUDIO_TRACK,
                params: CodecParams::Aac(a.params.clone()),
            },
            frame: Time90k::from_timescale(1024, a.params.sample_rate),
            last: None,
            frames: Vec::new(),
        });
        let sync = AvSync::new(
            video.as_ref().map(|_| 90_000),
            session.audio.as_ref().map(|a| a.rtp.clock_rate),
        );
        SdpOverRtp {
            video,
            audio,
            video_queue: VecDeque::new(),
            audio_queue: VecDeque::new(),
            sync,
            placed: false,
            gate: TrackGate::new(),
            announced: false,
            video_waits_for_audio: true,
            released: Vec::new(),
            now: None,
            stats: RtpStats::default(),
        }
    }

    /// Follow `config`'s choice of whether video waits for the audio of
    /// its decode time (off where the packager puts audio in a rendition of
    /// its own); the hold stays bounded by [`MAX_INTERLEAVE`].
    pub fn with_interleave(mut self, config: InterleaveConfig) -> Self {
        self.video_waits_for_audio = config.video_waits_for_audio;
        self
    }

    /// Take one datagram that arrived on `media`'s RTP port at `now`; bus
    /// messages it completes are appended to `out`. An error means the
    /// datagram was ignored. With `a=rtcp-mux` RTCP packets on that port
    /// are told apart (RFC 5761 §4) and taken as by
    /// [`push_rtcp`](SdpOverRtp::push_rtcp).
    pub fn push_datagram(
        &mut self,
        media: Media,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), SdpRtpError> {
        if self.port_mut(media).is_some_and(|p| p.rtcp == Rtcp::Mux) && sync::is_rtcp(datagram) {
            return self.push_rtcp(media, datagram, now, out);
        }
        self.now = Some(now);
        let result = self.accept(media, datagram, now, out);
        if result.is_err() {
            self.stats.invalid += 1;
        }
        self.drain(now, out);
        result
    }

    /// Take one RTCP datagram for `media`'s stream (from its RTCP port, or
    /// its RTP port with `a=rtcp-mux`). Sender reports feed the A/V sync;
    /// other RTCP packets are ignored. An error means the datagram was
    /// ignored.
    pub fn push_rtcp(
        &mut self,
        media: Media,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), SdpRtpError> {
        self.now = Some(now);
        let result = if self.port_mut(media).is_none() {
            Err(SdpRtpError::NoStream { media })
        } else {
            sync::sender_reports(datagram)
                .map_err(|source| SdpRtpError::Rtcp { media, source })
                .map(|reports| {
                    for report in reports {
                        trace!(%media, ssrc = report.ssrc, rtp_time = report.rtp_time, "RTCP sender report");
                        self.stats.sender_reports += 1;
                        self.sync.on_sender_report(media.track(), report);
                    }
                })
        };
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
        let port = self
            .port_mut(media)
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

    /// Release what the jitter windows and the sync window let go at `now`
    /// (call at [`deadline`](SdpOverRtp::deadline)).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        self.now = Some(now);
        self.drain(now, out);
    }

    /// When [`poll`](SdpOverRtp::poll) should be called next, if no
    /// datagram comes first.
    pub fn deadline(&mut self) -> Option<Instant> {
        let video = self.video.as_mut().and_then(|v| v.port.reorder.deadline());
        let audio = self.audio.as_mut().and_then(|a| a.port.reorder.deadline());
        [video, audio, self.sync.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The sender has gone: release everything held and start afresh for
    /// the next sender. Counters carry on.
    pub fn finish(&mut self, out: &mut Vec<BusMessage>) {
        self.flush_port(Media::Video, out);
        self.flush_port(Media::Audio, out);
        if let Some(v) = &mut self.video {
            v.depacketizer.finish(&mut v.units);
        }
        let now = self.now.unwrap_or_else(Instant::now);
        self.depacketized(now);
        self.interleave(now, true);
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
        let video = self.video.take().map(|v| {
            Video::new(
                v.port.renewed(),
                v.codec,
                v.sdp_params,
                v.warned_out_of_order,
            )
        });
        let audio = self.audio.take().map(|a| {
            let config = a.depacketizer.config();
            Audio {
                port: a.port.renewed(),
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
        self.sync.reset();
        self.placed = false;
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
        let now = self.now.unwrap_or_else(Instant::now);
        self.depacketized(now);
        self.interleave(now, false);
        self.forward(out);
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        for media in [Media::Video, Media::Audio] {
            while let Some(packet) = self.port_mut(media).and_then(|p| p.reorder.poll(now)) {
                self.depacketize(media, &packet);
            }
        }
        self.depacketized(now);
        self.interleave(now, false);
        self.forward(out);
    }

    fn depacketize(&mut self, media: Media, packet: &RtpPacket) {
        let result = match media {
            Media::Video => self.video.as_mut().map(|v| {
                if std::mem::take(&mut v.port.rebase) {
                    let next = v.last.map_or(Time90k::ZERO, |(t, _, step)| t + step);
                    v.depacketizer.rebase(next);
                }
                v.depacketizer.push(packet, &mut v.units)
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
    fn depacketized(&mut self, now: Instant) {
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
            let ssrc = a.port.ssrc.unwrap_or_default();
            for frame in a.frames.drain(..) {
                if a.last.is_some_and(|last| frame.pts <= last) {
                    self.stats.out_of_order += 1;
                    continue;
                }
                a.last = Some(frame.pts);
                self.sync
                    .on_unit(Track::Audio, ssrc, frame.timestamp as u32, frame.pts, now);
                self.audio_queue.push_back(AccessUnit {
                    track: AUDIO_TRACK,
                    kind: TrackKind::Audio,
                    pts: frame.pts,
                    dts: frame.pts,
                    keyframe: true,
                    data: frame.data,
                    captured_unix_ms: None,
                    trace: None,
                });
            }
        }
        let units = match &mut self.video {
            Some(v) => std::mem::take(&mut v.units),
            None => return,
        };
        for unit in units {
            self.video_unit(unit, now);
        }
    }

    fn video_unit(&mut self, unit: VideoUnit, now: Instant) {
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
        let in_band = match v.codec {
            VideoCodec::H264 => h264::params_from_access_unit(&unit.data)
                .map(|r| r.map(CodecParams::H264).map_err(|e| e.to_string())),
            VideoCodec::H265 => h265::params_from_access_unit(&unit.data)
                .map(|r| r.map(CodecParams::H265).map_err(|e| e.to_string())),
        };
        match in_band {
            Some(Ok(params)) => self.set_video_params(params),
            Some(Err(error)) => warn!(%error, "in-band video parameter sets not usable"),
            None => {}
        }
        let Some(v) = &mut self.video else { return };
        if v.track.is_none() {
            // No parameters yet (neither in the SDP nor in-band).
            return;
        }
        let dts = match v.decode.next(unit.pts) {
            Ok(dts) => dts,
            Err(error) => {
                self.stats.out_of_order += 1;
                if !std::mem::replace(&mut v.warned_out_of_order, true) {
                    warn!(
                        %error,
                        depth = v.decode.depth(),
                        "video picture without a usable decode time dropped (reordering deeper than the SPS says, or repeated timestamps); further ones are counted"
                    );
                }
                return;
            }
        };
        v.need_keyframe = false;
        v.last = Some(match v.last {
            Some((latest, last_dts, _)) => (latest.max(unit.pts), dts, dts - last_dts),
            None => (unit.pts, dts, Time90k::ZERO),
        });
        let ssrc = v.port.ssrc.unwrap_or_default();
        self.sync
            .on_unit(Track::Video, ssrc, unit.timestamp as u32, unit.pts, now);
        self.video_queue.push_back(AccessUnit {
            track: VIDEO_TRACK,
            kind: TrackKind::Video,
            pts: unit.pts,
            dts,
            keyframe: unit.keyframe,
            data: unit.data,
            captured_unix_ms: None,
            trace: None,
        });
    }

    fn set_video_params(&mut self, params: CodecParams) {
        let Some(v) = &mut self.video else { return };
        let info = TrackInfo {
            id: VIDEO_TRACK,
            params,
        };
        if v.track.as_ref() != Some(&info) {
            let (depth, interval) = reorder_depth(&info.params);
            debug!(depth, "video reorder depth");
            v.decode.set_depth(depth, interval);
            v.track = Some(info.clone());
            self.gate.on_track(info, &mut self.released);
        }
    }

    /// Pass queued units to the gate in decode order across tracks, each
    /// moved by its track's sync offset, once the offsets are known. A
    /// track waits for the other while the other has nothing queued, unless
    /// its own queue spans [`MAX_INTERLEAVE`] or `all` (end of input).
    fn interleave(&mut self, now: Instant, all: bool) {
        let Some(placement) = self.sync.placement(now, all) else {
            return;
        };
        if !std::mem::replace(&mut self.placed, true)
            && matches!(placement, Placement::SenderReports { .. })
        {
            self.stats.rtcp_synced += 1;
        }
        let (video_offset, audio_offset) = (
            placement.offset(Track::Video),
            placement.offset(Track::Audio),
        );
        let both = self.video.is_some() && self.audio.is_some();
        loop {
            let take_video = match (self.video_queue.front(), self.audio_queue.front()) {
                (Some(v), Some(a)) => v.dts + video_offset <= a.dts + audio_offset,
                (Some(_), None) => {
                    !both
                        || all
                        || !self.video_waits_for_audio
                        || span(&self.video_queue) >= MAX_INTERLEAVE
                }
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
            let (unit, offset) = if take_video {
                (self.video_queue.pop_front(), video_offset)
            } else {
                (self.audio_queue.pop_front(), audio_offset)
            };
            if let Some(mut unit) = unit {
                unit.pts = unit.pts + offset;
                unit.dts = unit.dts + offset;
                self.gate.on_unit(unit, &mut self.released);
            }
        }
    }

    fn forward(&mut self, out: &mut Vec<BusMessage>) {
        let now = crate::unix_millis();
        for released in self.released.drain(..) {
            match released {
                Released::Tracks(tracks) => out.push(BusMessage::Tracks(tracks)),
                Released::Unit(mut unit) => {
                    self.stats.units += 1;
                    unit.captured_unix_ms.get_or_insert(now);
                    out.push(BusMessage::Unit(Arc::new(unit)));
                }
            }
        }
    }
}

/// The reorder depth and frame interval a video track's SPS gives (see
/// [`DecodeTimes`]); [`DEFAULT_REORDER_DEPTH`] when the SPS cannot say.
fn reorder_depth(params: &CodecParams) -> (u32, Option<Time90k>) {
    let depth = match params {
        CodecParams::H264(p) => {
            h264::parse_sps(&p.sps).map_or(DEFAULT_REORDER_DEPTH, |s| s.reorder_depth)
        }
        CodecParams::H265(p) => h265::parse_sps(&p.sps)
            .ok()
            .and_then(|s| s.max_num_reorder_pics)
            .unwrap_or(DEFAULT_REORDER_DEPTH),
        _ => 0,
    };
    let interval = params
        .frame_rate()
        .filter(|(num, den)| *num > 0 && *den > 0)
        .map(|(num, den)| Time90k::from_timescale(i64::from(den), num));
    (depth, interval)
}

/// How much decode time a queue spans.
fn span(queue: &VecDeque<AccessUnit>) -> Time90k {
    match (queue.front(), queue.back()) {
        (Some(first), Some(last)) => last.dts - first.dts,
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

    /// Video units let out mid-stream after one packet of four AAC frames
    /// (85 ms) and then 1.2 s of video with no more audio (a sender that
    /// sends its audio late, in batches).
    fn video_ahead_of_late_audio(interleave: InterleaveConfig) -> usize {
        let session = SdpSession::from_sdp(SDP).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        )
        .with_interleave(interleave);
        let mut out = Vec::new();
        let d = rtp(97, 1, 0, true, 9, &aac(4));
        rx.push_datagram(Media::Audio, &d, t0, &mut out).unwrap();
        let idr = [0x65, 0x88, 0x80];
        let p = [0x41, 0x9a, 0x02];
        for i in 0..30u16 {
            let payload = if i == 0 { &idr[..] } else { &p[..] };
            let d = rtp(96, i + 1, u32::from(i) * 3600, true, 3, payload);
            rx.push_datagram(Media::Video, &d, t0, &mut out).unwrap();
        }
        // Past the sync window: the tracks are placed without reports.
        rx.poll(t0 + Duration::from_secs(1), &mut out);
        units(&out)
            .iter()
            .filter(|u| u.0 == TrackKind::Video)
            .count()
    }

    #[test]
    fn video_waits_for_late_audio_only_when_muxed_with_it() {
        let muxed = video_ahead_of_late_audio(InterleaveConfig::for_audio_layout(false));
        let apart = video_ahead_of_late_audio(InterleaveConfig::for_audio_layout(true));
        // Muxed: video goes no further than the audio that has come.
        assert!(muxed <= 3, "{muxed} video units before their audio");
        // Apart: every picture that has a decode time goes.
        assert!(apart >= 14, "{apart} video units");
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

    /// Video only: x264 `-bf 3` parameter sets (`max_num_reorder_frames` 2).
    const SDP_BFRAMES: &str = "v=0\r\nm=video 40000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvDyyLA\r\n";

    fn video_units(out: &[BusMessage]) -> Vec<(i64, i64)> {
        out.iter()
            .filter_map(|m| match m {
                BusMessage::Unit(u) if u.kind == TrackKind::Video => {
                    Some((u.pts.ticks(), u.dts.ticks()))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn b_frames_get_decode_times_from_the_sps_reorder_depth() {
        let session = SdpSession::from_sdp(SDP_BFRAMES).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        );
        let mut out = Vec::new();
        let idr = [0x65, 0x88, 0x80];
        let p = [0x41, 0x9a, 0x02];
        let b = [0x01, 0x9e, 0x02];
        // b-pyramid of 3 B-frames, in decoding order: I0 P4 B2 b1 b3 P8 B6
        // b5 b7, from a random timestamp base about to wrap.
        let base = u32::MAX - 5000;
        let order = [0u32, 4, 2, 1, 3, 8, 6, 5, 7];
        for (i, f) in order.iter().enumerate() {
            let payload = match (i, f % 4) {
                (0, _) => &idr[..],
                (_, 0) => &p[..],
                _ => &b[..],
            };
            let d = rtp(96, i as u16, base.wrapping_add(f * 3600), true, 5, payload);
            rx.push_datagram(Media::Video, &d, t0, &mut out).unwrap();
        }
        rx.finish(&mut out);
        let got = video_units(&out);
        let pts: Vec<i64> = order.iter().map(|f| i64::from(*f) * 3600).collect();
        let dts: Vec<i64> = (-2..7).map(|k| k * 3600).collect();
        assert_eq!(got, pts.into_iter().zip(dts).collect::<Vec<_>>());
        assert_eq!(rx.stats().out_of_order, 0);
    }

    #[test]
    fn reordering_deeper_than_signalled_is_dropped_and_counted() {
        // The same SPS (depth 2) but picture 1 sent four pictures late.
        let session = SdpSession::from_sdp(SDP_BFRAMES).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        );
        let mut out = Vec::new();
        for (i, f) in [0u32, 2, 3, 4, 5, 1, 6, 7, 8, 9].iter().enumerate() {
            let payload: &[u8] = if i == 0 { &[0x65, 0x88] } else { &[0x41, 0x9a] };
            let d = rtp(96, i as u16, f * 3600, true, 5, payload);
            rx.push_datagram(Media::Video, &d, t0, &mut out).unwrap();
        }
        rx.finish(&mut out);
        let got = video_units(&out);
        for w in got.windows(2) {
            assert!(w[1].1 > w[0].1, "{got:?}");
        }
        assert!(got.iter().all(|(pts, dts)| dts <= pts), "{got:?}");
        assert_eq!(got.len() as u64 + rx.stats().out_of_order, 10, "{got:?}");
        assert!(rx.stats().out_of_order >= 1);
    }

    /// An RTCP sender report.
    fn sr(ssrc: u32, ntp: u64, rtp_time: u32) -> Vec<u8> {
        let mut d = vec![0x80, 200, 0, 6];
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(&ntp.to_be_bytes());
        d.extend_from_slice(&rtp_time.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        d
    }

    /// NTP 32.32 of `ms` milliseconds after an arbitrary instant.
    fn ntp(ms: u64) -> u64 {
        (3_950_000_000u64 << 32) + (ms << 32) / 1000
    }

    #[test]
    fn sender_reports_place_audio_500_ms_after_video() {
        let session = SdpSession::from_sdp(SDP).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        );
        let mut out = Vec::new();
        // Unrelated random bases; video starts at wall clock 0, audio at
        // 500 ms. Reports sent at wall clock 1000 ms.
        let (vbase, abase) = (0x9e37_79b9_u32, 0x7f4a_7c15_u32);
        rx.push_rtcp(
            Media::Video,
            &sr(3, ntp(1000), vbase.wrapping_add(90_000)),
            t0,
            &mut out,
        )
        .unwrap();
        rx.push_rtcp(
            Media::Audio,
            &sr(9, ntp(1000), abase.wrapping_add(24_000)),
            t0,
            &mut out,
        )
        .unwrap();
        let idr = [0x65, 0x88, 0x80];
        let p = [0x41, 0x9a, 0x02];
        for i in 0..25u16 {
            let payload = if i == 0 { &idr[..] } else { &p[..] };
            let d = rtp(
                96,
                i,
                vbase.wrapping_add(u32::from(i) * 3600),
                true,
                3,
                payload,
            );
            rx.push_datagram(Media::Video, &d, t0, &mut out).unwrap();
        }
        for i in 0..5u16 {
            let d = rtp(
                97,
                100 + i,
                abase.wrapping_add(u32::from(i) * 4096),
                true,
                9,
                &aac(4),
            );
            rx.push_datagram(Media::Audio, &d, t0, &mut out).unwrap();
        }
        rx.finish(&mut out);
        let got = units(&out);
        let first_audio = got.iter().find(|u| u.0 == TrackKind::Audio).unwrap();
        let first_video = got.iter().find(|u| u.0 == TrackKind::Video).unwrap();
        assert_eq!((first_video.1, first_audio.1), (0, 45_000));
        let stats = rx.stats();
        assert_eq!((stats.sender_reports, stats.rtcp_synced), (2, 1));
        // Garbage on an RTCP port is refused and counted.
        assert!(matches!(
            rx.push_rtcp(Media::Audio, &[0x80, 200, 0, 9], t0, &mut out),
            Err(SdpRtpError::Rtcp {
                media: Media::Audio,
                ..
            })
        ));
    }

    #[test]
    fn hevc_session_with_rtcp_mux() {
        let sdp = "v=0\r\nm=video 40000 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=rtcp-mux\r\n\
            a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ; \
            sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZWaSTK8BaAgAAAwACAAADADIQ; sprop-pps=RAHBcrRiQA==\r\n";
        let session = SdpSession::from_sdp(sdp).unwrap();
        let t0 = Instant::now();
        let mut rx = SdpOverRtp::new(
            &session,
            ReorderConfig::with_window(Duration::from_millis(50)),
        );
        let mut out = Vec::new();
        // A report on the RTP port is told apart from RTP.
        rx.push_datagram(Media::Video, &sr(1, ntp(0), 0), t0, &mut out)
            .unwrap();
        let idr = [0x26, 0x01, 0xaf];
        let trail = [0x02, 0x01, 0xd0];
        let b = [0x00, 0x01, 0xd0];
        // x265 order I0 P4 B2 b1 b3 (sps_max_num_reorder_pics 2).
        for (i, f) in [0u32, 4, 2, 1, 3].iter().enumerate() {
            let payload = match i {
                0 => &idr[..],
                1 => &trail[..],
                _ => &b[..],
            };
            let d = rtp(96, i as u16, f * 3600, true, 1, payload);
            rx.push_datagram(Media::Video, &d, t0, &mut out).unwrap();
        }
        rx.finish(&mut out);
        let BusMessage::Tracks(tracks) = &out[0] else {
            panic!("{out:?}")
        };
        assert!(
            tracks[0].params.codec_string().starts_with("hvc1."),
            "{tracks:?}"
        );
        let got = video_units(&out);
        assert_eq!(
            got,
            [
                (0, -7200),
                (14_400, -3600),
                (7200, 0),
                (3600, 3600),
                (10_800, 7200)
            ]
        );
        assert!(units(&out)[0].2, "IRAP is a keyframe");
        let stats = rx.stats();
        assert_eq!((stats.sender_reports, stats.invalid), (1, 0));
    }
}
