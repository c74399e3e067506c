//! Errors the bus returns.

use ferrocast_media::TrackId;

/// Why a bus operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// [`MediaBus::publish`](crate::MediaBus::publish) on a name that already
    /// has a live publisher.
    #[error("stream {stream:?} already has a live publisher")]
    AlreadyPublished {
        /// The stream name.
        stream: String,
    },
    /// [`MediaBus::end_stream`](crate::MediaBus::end_stream) on a stream whose
    /// publisher is still connected; that publisher must end it, or leave first.
    #[error("stream {stream:?} still has a live publisher")]
    StillPublished {
        /// The stream name.
        stream: String,
    },
    /// No stream by that name exists on the bus.
    #[error("no stream {stream:?} on the bus")]
    NotFound {
        /// The stream name.
        stream: String,
    },
    /// The empty string is not a stream name.
    #[error("a stream name may not be empty")]
    EmptyStreamName,
    /// A publisher tried to send a message only the bus may produce
    /// ([`Gap`](crate::BusMessage::Gap)).
    #[error("a publisher cannot send a {message} message on stream {stream:?}")]
    NotPublishable {
        /// The stream name.
        stream: String,
        /// Which message ([`BusMessage::kind_name`](crate::BusMessage::kind_name)).
        message: &'static str,
    },
    /// A unit was sent before any track set.
    #[error("unit on stream {stream:?} sent before any track set")]
    NoTracks {
        /// The stream name.
        stream: String,
    },
    /// A unit names a track that is not in the stream's current track set.
    #[error("unit on stream {stream:?} names track {track:?}, which is not in the track set")]
    UnknownTrack {
        /// The stream name.
        stream: String,
        /// The unit's track.
        track: TrackId,
    },
    /// A track set that is empty or names one track twice.
    #[error("invalid track set on stream {stream:?}: {reason}")]
    InvalidTracks {
        /// The stream name.
        stream: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The publisher's stream is over ([`Publisher::end`](crate::Publisher::end)
    /// or an `End` message was sent); nothing more can be sent on it.
    #[error("stream {stream:?} has ended")]
    Ended {
        /// The stream name.
        stream: String,
    },
    /// The process that publishes the stream could not be reached, or the
    /// connection to it failed (a bus between processes).
    #[error("stream {stream:?} unreachable: {reason}")]
    Transport {
        /// The stream name.
        stream: String,
        /// What failed.
        reason: String,
    },
}
