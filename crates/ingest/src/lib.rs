//! Ingest: where broadcasters' feeds enter Ferrocast.
//!
//! An SRT listener ([`srt::SrtIngest`]) authorises each caller by its
//! `streamid` ([`streamid`]) and publish key ([`auth`]) before the handshake
//! completes, with the stream's SRT passphrase if it has one, then runs a
//! session per publisher: SRT payloads go through the sans-IO MPEG-TS
//! demuxer from `ferrocast-media`, a [`timeline::TimelineGuard`] corrects
//! timestamp jumps and clock drift (flagging discontinuities), a
//! [`gate::TrackGate`] holds the first units until the stream's track set is
//! known, and an [`interleave::Interleaver`] merges the tracks by decode
//! time before access units go onto the media bus, each stamped with the
//! context of its GOP's span ([`gop_trace`]) when traces are exported.
//!
//! RTP inputs ([`rtp::RtpIngest`]) bind the UDP ports configured for a
//! stream; MPEG-TS over RTP goes through a sans-IO jitter buffer
//! ([`rtp::reorder`]) into the same session pipeline, and H.264/AAC
//! elementary streams described by an SDP ([`rtp::sdp`]) through a jitter
//! buffer per port and the RFC 6184/3640 depacketisers into the same track
//! gate ([`rtp::elementary`]).
//!
//! Not here: codec parsing (in `ferrocast-media`), packaging, HTTP.
//!
//! ```
//! let request = ferrocast_ingest::streamid::parse("publish:live/cam1").unwrap();
//! assert_eq!(request.name.as_str(), "cam1");
//! ```

pub mod auth;
pub mod gate;
pub mod gop_trace;
pub mod interleave;
pub mod log_limit;
pub mod rtp;
pub mod session;
pub mod srt;
pub mod status;
pub mod streamid;
pub mod timeline;

pub use auth::{AuthError, PublishAuthorizer, PublishGrant, StaticAuthorizer};
pub use rtp::{RtpIngest, RtpIngestError, RtpPortStats, RtpSender, RtpSettings, RtpStats};
pub use srt::{ListenerHealth, SrtConfig, SrtError, SrtIngest};
pub use status::PublisherStatus;

/// The wall clock now, Unix milliseconds (0 before 1970).
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
