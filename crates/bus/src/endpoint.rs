//! The two ends of a stream: [`Publisher`] and [`Subscriber`].
//!
//! Both are concrete types wrapping a backend trait object, so callers never
//! name the bus implementation and a remote bus only has to implement
//! [`PublisherBackend`] and [`SubscriberBackend`].

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ferrocast_media::{AccessUnit, TrackInfo};
use tracing::{debug, warn};

use crate::error::BusError;
use crate::message::BusMessage;
use crate::stats::SubscriberStats;

/// What a bus implementation provides behind a [`Publisher`].
///
/// Dropping the backend without having sent [`BusMessage::End`] means the
/// publisher has gone and may come back: the stream stays, waiting for a new
/// publisher or [`MediaBus::end_stream`](crate::MediaBus::end_stream).
pub trait PublisherBackend: Send + Sync {
    /// Put a message on the stream without blocking. Receives only
    /// `Tracks`, `Unit`, `Discontinuity`, `HandedOver` and `End` (which ends the stream;
    /// later sends fail with [`BusError::Ended`]).
    fn send(&self, message: BusMessage) -> Result<(), BusError>;
}

/// What a bus implementation provides behind a [`Subscriber`].
pub trait SubscriberBackend: Send + Sync {
    /// The next message, `Ready(None)` after `End`, or `Pending` with the
    /// waker kept until one arrives. Must not lose a message when the caller
    /// stops polling (cancel safety).
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>>;
    /// The subscriber's queue and loss counters.
    fn stats(&self) -> SubscriberStats;
}

/// The sending end of one stream; from [`MediaBus::publish`](crate::MediaBus::publish).
///
/// Sending never blocks and never waits for subscribers. Dropping it (or
/// [`detach`](Publisher::detach)) means "publisher gone, may reconnect";
/// [`end`](Publisher::end) means the stream is over.
pub struct Publisher {
    stream: Arc<str>,
    backend: Box<dyn PublisherBackend>,
    warned: AtomicBool,
}

impl Publisher {
    /// Wrap a bus implementation's backend (for [`MediaBus`](crate::MediaBus) implementors).
    pub fn new(stream: impl Into<Arc<str>>, backend: Box<dyn PublisherBackend>) -> Self {
        Publisher {
            stream: stream.into(),
            backend,
            warned: AtomicBool::new(false),
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Send a message; synchronous and never blocking, for the ingest loop.
    ///
    /// A message the bus refuses (see [`try_send`](Publisher::try_send)) is
    /// dropped and logged: a warning the first time, then at debug level.
    pub fn send(&self, message: BusMessage) {
        if let Err(error) = self.try_send(message) {
            if self.warned.swap(true, Ordering::Relaxed) {
                debug!(stream = %self.stream, %error, "bus refused a message");
            } else {
                warn!(stream = %self.stream, %error, "bus refused a message; later refusals are logged at debug level");
            }
        }
    }

    /// Send a message, saying why if it is refused. Never blocks.
    ///
    /// Sending [`BusMessage::End`] ends the stream like [`end`](Publisher::end).
    /// Refused: [`BusMessage::Gap`] (only the bus deals gaps), a unit before
    /// any track set or on a track not in it, an empty track set or one that
    /// names a track twice, anything after the stream ended.
    pub fn try_send(&self, message: BusMessage) -> Result<(), BusError> {
        if message == BusMessage::Gap {
            return Err(BusError::NotPublishable {
                stream: self.stream.to_string(),
                message: message.kind_name(),
            });
        }
        self.backend.send(message)
    }

    /// Send one access unit (see [`send`](Publisher::send)).
    pub fn send_unit(&self, unit: AccessUnit) {
        self.send(BusMessage::Unit(Arc::new(unit)));
    }

    /// Send the stream's track set (see [`send`](Publisher::send)).
    pub fn send_tracks(&self, tracks: impl Into<Arc<[TrackInfo]>>) {
        self.send(BusMessage::Tracks(tracks.into()));
    }

    /// End the stream for good: subscribers get [`BusMessage::End`] and the
    /// name is free for a brand-new stream.
    pub fn end(self) {
        if let Err(error) = self.backend.send(BusMessage::End) {
            debug!(stream = %self.stream, %error, "ending an already ended stream");
        }
    }

    /// Leave without ending the stream, exactly as dropping does: the stream
    /// waits for the publisher to reconnect or for
    /// [`MediaBus::end_stream`](crate::MediaBus::end_stream).
    pub fn detach(self) {}
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// The receiving end of one stream; from [`MediaBus::subscribe`](crate::MediaBus::subscribe).
///
/// Its first messages are the current [`BusMessage::Tracks`] and the current
/// GOP from its keyframe on, so it can start decoding at once. It has its own
/// bounded queue: if it falls behind it loses whole GOPs and gets a
/// [`BusMessage::Gap`], and the publisher never waits for it. Dropping it
/// unsubscribes.
pub struct Subscriber {
    stream: Arc<str>,
    backend: Box<dyn SubscriberBackend>,
}

impl Subscriber {
    /// Wrap a bus implementation's backend (for [`MediaBus`](crate::MediaBus) implementors).
    pub fn new(stream: impl Into<Arc<str>>, backend: Box<dyn SubscriberBackend>) -> Self {
        Subscriber {
            stream: stream.into(),
            backend,
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The next message, waiting for one if none is queued; `None` once
    /// [`BusMessage::End`] has been received.
    ///
    /// Cancel safe: if the future is dropped before it completes (say in a
    /// `tokio::select!`), no message is lost.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`recv`](Subscriber::recv), for hand-written futures and streams.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        self.backend.poll_recv(cx)
    }

    /// This subscriber's queue and loss counters.
    pub fn stats(&self) -> SubscriberStats {
        self.backend.stats()
    }

    /// Access units this subscriber lost because it was slow.
    pub fn dropped_units(&self) -> u64 {
        self.stats().dropped_units
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}
