//! What is live now, as the process around the API sees it: the
//! publisher and its SRT or RTP statistics, the source's tracks, bitrate,
//! the transcoded renditions and the viewers. The process fills these in
//! ([`super::ControlHooks::live`]); the API merges them with the stored
//! settings. In a cluster the ingest processes write them to the registry
//! as JSON (this module's serde form), and `ferrocast control` reads them
//! back.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stream's live state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveStatus {
    /// Whether a publisher is connected now.
    pub on_air: bool,
    /// The publisher, while one is connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<Publisher>,
    /// The source's tracks (empty until its codecs are known).
    pub tracks: Vec<Track>,
    /// The source's average bitrate over the playlist window, bits/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_bps: Option<u64>,
    /// The transcoded renditions (empty when the stream is served as
    /// published).
    pub renditions: Vec<Rendition>,
    /// Concurrent viewers on this process's edge; absent without an edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewers: Option<u64>,
}

/// A connected publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Publisher {
    /// How it publishes: `srt` or `rtp`.
    pub protocol: String,
    /// Its address (for RTP, where the session's first packet came from).
    pub remote: String,
    /// Connected since, Unix milliseconds.
    pub since_ms: i64,
    /// Whether the connection is encrypted (SRT passphrase).
    pub encrypted: bool,
    /// Bytes received.
    pub bytes: u64,
    /// The incoming bitrate, bits/s.
    pub bitrate_bps: u64,
    /// SRT statistics (absent for RTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srt: Option<SrtStats>,
    /// RTP statistics of the port it sends to (absent for SRT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp: Option<RtpStats>,
}

/// RTP receive statistics of a publisher's port, since the process
/// started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RtpStats {
    /// The UDP address it is received on.
    pub listen: String,
    /// Valid RTP packets received.
    pub packets: u64,
    /// Packets that never arrived within the jitter window.
    pub lost_packets: u64,
    /// Packets put back in order.
    pub reordered_packets: u64,
    /// Packets that came too late to be used.
    pub late_packets: u64,
}

/// SRT link statistics of a publisher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SrtStats {
    /// Round-trip time, microseconds.
    pub rtt_us: u64,
    /// Packets lost (before retransmission).
    pub lost_packets: u64,
    /// Packets retransmitted.
    pub retransmitted_packets: u64,
    /// Packets that came too late to be used.
    pub dropped_packets: u64,
}

/// A track of the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Track {
    /// `video` or `audio`.
    pub kind: String,
    /// RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`, ...).
    pub codec: String,
    /// Video width, pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Video height, pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Audio sample rate, Hz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Audio channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
}

/// A transcoded rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rendition {
    /// The rung's name (`720p`); played at `/live/NAME/RUNG/index.m3u8`.
    pub name: String,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Target bitrate, bits/s.
    pub bitrate_bps: u64,
}
