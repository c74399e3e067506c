//! The configuration model and its documented defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::transcode::TranscodeConfig;

/// Configuration of the all-in-one process (`ferrocast up`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// UDP address the SRT listener binds. Default `0.0.0.0:9000`.
    pub srt_listen: SocketAddr,
    /// TCP address the HTTP origin binds. Default `0.0.0.0:8080`.
    pub http_listen: SocketAddr,
    /// Connection limits of the `http_listen` listener
    /// (`[http_connections]`): caps overall and per client, header-read and
    /// idle timeouts, HTTP/2 streams per connection.
    pub http_connections: ferrocast_connections::ConnectionLimits,
    /// Directory for local state. Default `./data`.
    pub data_dir: PathBuf,
    /// Ingest settings.
    pub ingest: IngestConfig,
    /// LL-HLS packaging settings.
    pub hls: HlsConfig,
    /// Streams allowed to publish, with their keys. Empty (the default):
    /// publishing is open, any valid stream name is accepted without a key.
    pub streams: Vec<StreamConfig>,
    /// RTP inputs (`[[rtp]]`): one UDP port each, mapped to one stream.
    /// Default: none.
    pub rtp: Vec<RtpConfig>,
    /// Transcoder settings (`[transcode]`): the ABR ladder, NVENC, shedding.
    pub transcode: TranscodeConfig,
    /// The HTTPS / HTTP/3 edge (`[edge]`): listeners, certificate, viewer
    /// JWTs, edge tokens, playlist rewriting. Absent (the default): no
    /// edge, the origin alone serves on `http_listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<ferrocast_edge::EdgeConfig>,
    /// The registry and media bus of role processes (`[cluster]`):
    /// `ferrocast ingest`, `transcode` and `package`. Unused by `ferrocast
    /// up`.
    pub cluster: crate::cluster::ClusterConfig,
    /// Traces over OpenTelemetry (`[telemetry]`), read by every process.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The control plane's database (streams, publish keys, API tokens):
    /// `sqlite:PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. A secret
    /// (it may hold a password). Unset: `ferrocast up` keeps a SQLite file
    /// `control.db` under `data_dir`; `ferrocast ingest` checks publishers
    /// against `[[streams]]` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<crate::Secret>,
    /// Recording to S3-compatible storage (`[recording]`), read by
    /// `ferrocast up` and `ferrocast package`. Absent (the default):
    /// nothing is recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<crate::recording::RecordingConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            srt_listen: SocketAddr::from(([0, 0, 0, 0], 9000)),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            http_connections: ferrocast_connections::ConnectionLimits::default(),
            data_dir: PathBuf::from("data"),
            ingest: IngestConfig::default(),
            hls: HlsConfig::default(),
            streams: Vec::new(),
            rtp: Vec::new(),
            transcode: TranscodeConfig::default(),
            edge: None,
            cluster: crate::cluster::ClusterConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            database_url: None,
            recording: None,
        }
    }
}

/// Ingest settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// SRT receive latency in milliseconds (the time SRT has to recover
    /// lost packets). Default 120, SRT's own default.
    pub srt_latency_ms: u64,
    /// A publisher silent for this long is dropped. Default 5000.
    pub idle_timeout_ms: u64,
    /// After its publisher leaves, a stream waits this long for it to come
    /// back (continuing after EXT-X-DISCONTINUITY) before it ends with
    /// EXT-X-ENDLIST. Default 10000.
    pub reconnect_grace_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            srt_latency_ms: 120,
            idle_timeout_ms: 5000,
            reconnect_grace_ms: 10_000,
        }
    }
}

/// LL-HLS packaging settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Part target duration in milliseconds. Default 200: at 25 or 50 fps
    /// that is a whole number of frames, a player holding back three parts
    /// stays 0.6 s behind the live edge, and 5 requests per second per
    /// viewer is still cheap on HTTP/2 and HTTP/3. Longer parts (333–500 ms)
    /// suit lossy networks better at the cost of latency.
    pub part_target_ms: u64,
    /// A segment is cut at the first keyframe after it has lasted this long.
    /// Default 1000 (one GOP of a 1 s keyframe interval).
    pub segment_min_ms: u64,
    /// EXT-X-TARGETDURATION in seconds; a segment is cut even without a
    /// keyframe before it would exceed it. Default 2.
    pub target_duration_secs: u32,
    /// Segments listed in a live media playlist. Default 6.
    pub window_segments: usize,
    /// How long a blocking playlist or preload-hint request is held at most
    /// before the server answers 503. Default 6000 (three target durations).
    pub max_hold_ms: u64,
    /// `PART-HOLD-BACK`, in part targets: how far behind the live edge a
    /// low-latency player places itself. 2 to 10; default 3, what the HLS
    /// specification recommends ("SHOULD be at least three times the Part
    /// Target Duration"); 2 is its floor ("MUST be at least twice").
    pub part_hold_back_parts: u32,
    /// Where the audio of a stream that has video goes. `separate` (the
    /// default): in one audio-only rendition (`EXT-X-MEDIA:TYPE=AUDIO`, at
    /// `audio/stream.m3u8`) whose segments and parts follow the source
    /// rendition's, so that video parts never wait for audio a sender
    /// batches (ffmpeg puts about 0.37 s of AAC in one PES by default).
    /// `muxed`: in every video rendition's segments, each part carrying
    /// the audio of its own media time.
    pub audio: AudioLayout,
}

/// Where a stream's audio is packaged (`hls.audio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioLayout {
    /// In the video renditions' segments.
    Muxed,
    /// In a rendition of its own.
    #[default]
    Separate,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            part_target_ms: 200,
            segment_min_ms: 1000,
            target_duration_secs: 2,
            window_segments: 6,
            max_hold_ms: 6000,
            part_hold_back_parts: 3,
            audio: AudioLayout::Separate,
        }
    }
}

/// One stream that may be published (`[[streams]]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name: `NAME` of `live/NAME`.
    pub name: String,
    /// Publish key the caller must present (`publish:live/NAME?key=KEY`, or
    /// `t=KEY` in the SRT Access Control form). 8 to 128 characters of
    /// `[A-Za-z0-9._~-]`, so that senders need not escape it.
    pub publish_key: Secret,
    /// SRT passphrase (10 to 79 characters); when set, callers must encrypt
    /// (AES-128, -192 or -256, as the caller chooses) with it.
    #[serde(default)]
    pub passphrase: Option<Secret>,
    /// What a second publisher on this stream gets while one is live.
    #[serde(default)]
    pub on_duplicate: DuplicatePublisher,
}

/// Policy for a second publisher on a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicatePublisher {
    /// Refuse the newcomer's handshake (SRT reject code 2409, Conflict).
    #[default]
    Reject,
    /// Drop the live publisher and accept the newcomer; the stream continues
    /// after a discontinuity.
    TakeOver,
}

/// Default of [`RtpConfig::jitter_ms`].
pub const DEFAULT_RTP_JITTER_MS: u64 = 50;

fn default_rtp_jitter_ms() -> u64 {
    DEFAULT_RTP_JITTER_MS
}

/// One RTP input (`[[rtp]]` in the config file): a UDP port whose packets
/// are published as one stream.
///
/// RTP carries no stream name and no publish key, so the port *is* the
/// authorisation: bind it to an address only trusted senders can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpConfig {
    /// UDP address to receive RTP on (for example `0.0.0.0:5004`).
    pub listen: SocketAddr,
    /// Stream the packets are published as: `NAME` of `live/NAME`.
    pub stream: String,
    /// What the RTP packets carry.
    pub format: RtpFormat,
    /// SDP file describing the session; required for `format = "sdp"`,
    /// refused for `format = "mpegts"`.
    #[serde(default)]
    pub sdp: Option<PathBuf>,
    /// Reordering window in milliseconds: how long a packet waits for a
    /// missing predecessor before the predecessor is counted lost.
    /// Default 50 (1 to 5000).
    #[serde(default = "default_rtp_jitter_ms")]
    pub jitter_ms: u64,
}

/// Payload format of an RTP input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtpFormat {
    /// MPEG-2 transport stream packets in RTP (RFC 2250, payload type 33), as
    /// `ffmpeg -f rtp_mpegts` and SMPTE 2022-1/2 senders send them.
    Mpegts,
    /// Elementary streams described by an SDP file (H.264 per RFC 6184, AAC
    /// per RFC 3640).
    Sdp,
}
