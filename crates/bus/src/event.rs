//! Stream lifecycle announcements and listings.

use std::sync::Arc;

use ferrocast_media::TrackInfo;

/// A change in a stream's lifecycle, from
/// [`MediaBus::announcements`](crate::MediaBus::announcements).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A brand-new stream: the first publisher of this name.
    Started(String),
    /// The publisher left without ending the stream; it may reconnect.
    /// Whoever owns the grace period calls
    /// [`MediaBus::end_stream`](crate::MediaBus::end_stream) when it runs out.
    PublisherGone(String),
    /// A publisher reconnected to a stream whose publisher had gone;
    /// subscribers get a [`Discontinuity`](crate::BusMessage::Discontinuity).
    Resumed(String),
    /// The stream is over and its name is free.
    Ended(String),
}

impl StreamEvent {
    /// The stream the event is about.
    pub fn stream(&self) -> &str {
        match self {
            StreamEvent::Started(s)
            | StreamEvent::PublisherGone(s)
            | StreamEvent::Resumed(s)
            | StreamEvent::Ended(s) => s,
        }
    }
}

/// One stream on the bus, from [`MediaBus::streams`](crate::MediaBus::streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Its name.
    pub name: String,
    /// Whether a publisher is connected now (false during a reconnect grace).
    pub publisher_live: bool,
    /// Subscribers attached.
    pub subscribers: usize,
    /// The current track set, once the publisher has sent one.
    pub tracks: Option<Arc<[TrackInfo]>>,
}
