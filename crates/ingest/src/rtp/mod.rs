//! RTP ingest: configured UDP ports, each published as one stream.
//!
//! - [`packet`]: one datagram to an RTP packet (webrtc-rs `rtp`, with the
//!   checks that keep it from panicking on hostile input);
//! - [`reorder`]: the sans-IO jitter buffer (sequence order, loss counts);
//! - [`mpegts`]: MPEG-TS over RTP (RFC 2250), sans-IO, into the same
//!   demuxer, track gate and bus path as SRT;
//! - [`sdp`]: the SDP reader for elementary streams (`format = "sdp"`);
//! - [`h264`] (RFC 6184), [`h265`] (RFC 7798) and [`aac`] (RFC 3640):
//!   sans-IO depacketisers, the two video ones sharing
//!   [`access_unit`] assembly; [`clock`]: 32-bit RTP timestamps onto the
//!   90 kHz timeline;
//! - [`decode_time`]: video decode times derived from presentation times
//!   and the SPS reorder depth (B-frames);
//! - [`sync`]: RTCP sender reports and the A/V placement they give;
//! - [`elementary`]: both streams of an SDP session (RTP and RTCP ports)
//!   through jitter buffers, depacketisers, decode times, A/V sync and the
//!   track gate onto the bus, sans-IO;
//! - [`RtpIngest`]: the tokio adapter, a task per port.
//!
//! RTP has no handshake, no stream name and no key: a port is bound to a
//! stream in the config (`[[rtp]]`), and a stream is published when its
//! first valid packet arrives and left (the packager's reconnect grace then
//! applies) after the ingest idle timeout.

pub mod aac;
pub mod access_unit;
pub mod clock;
pub mod decode_time;
pub mod elementary;
pub mod h264;
pub mod h265;
pub mod mpegts;
pub mod packet;
pub mod reorder;
pub mod sdp;
pub mod sync;

mod ingest;

pub use elementary::{Media, SdpOverRtp, SdpRtpError};
pub use ingest::{RtpIngest, RtpIngestError, RtpPortStats, RtpSender, RtpSettings};
pub use mpegts::{TsOverRtp, TsRtpError};
pub use packet::{PacketError, RtpPacket};
pub use reorder::{Pushed, Reorder, ReorderConfig, ReorderStats};
pub use sdp::{SdpError, SdpSession};

/// Counters of one RTP input since it started; they only ever grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtpStats {
    /// Valid RTP packets received.
    pub packets: u64,
    /// Payload bytes of the valid packets.
    pub bytes: u64,
    /// Datagrams ignored: not RTP, wrong payload type or malformed payload.
    pub invalid: u64,
    /// Packets put back in order (arrived after a later-numbered one).
    pub reordered: u64,
    /// Duplicate packets dropped.
    pub duplicates: u64,
    /// Packets dropped as too late (their place was already given up).
    pub late: u64,
    /// Packets that never arrived within the jitter window.
    pub lost: u64,
    /// Times the sender's numbering jumped and the receiver resynchronised.
    pub resyncs: u64,
    /// Times the jitter buffer was full and gave up on a gap early.
    pub overflows: u64,
    /// Times the sender's SSRC changed mid-session.
    pub ssrc_changes: u64,
    /// Publisher sessions started (first packet after silence).
    pub sessions: u64,
    /// Access units passed on to the bus.
    pub units: u64,
    /// Elementary streams: access units dropped for loss (a damaged video
    /// picture and those after it up to the next IDR; an audio frame that
    /// lost a fragment).
    pub damaged: u64,
    /// Elementary streams: access units dropped because no decode time
    /// could be derived for them (a video picture reordered deeper than its
    /// SPS says, a repeated timestamp; an audio frame whose timestamp did
    /// not advance).
    pub out_of_order: u64,
    /// Elementary streams: RTCP sender reports received.
    pub sender_reports: u64,
    /// Elementary streams: sender sessions whose tracks were placed on one
    /// timeline by RTCP sender reports (the others by their first packets).
    pub rtcp_synced: u64,
}

impl RtpStats {
    fn apply(&mut self, r: ReorderStats) {
        self.reordered = r.reordered;
        self.duplicates = r.duplicates;
        self.late = r.late;
        self.lost = r.lost;
        self.resyncs = r.resyncs;
        self.overflows = r.overflows;
    }
}
