//! The bus trait every implementation provides.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast;

use crate::endpoint::{Publisher, Subscriber};
use crate::error::BusError;
use crate::event::{StreamEvent, StreamInfo};
use crate::stats::BusStats;

/// What [`MediaBus::subscribe`] returns: ready at once in process, a dial
/// to the publishing process on a bus between processes.
pub type SubscribeFuture = Pin<Box<dyn Future<Output = Result<Subscriber, BusError>> + Send>>;

/// A media bus: named streams, one publisher each, any number of subscribers.
///
/// Object safe, so roles can hold an `Arc<dyn MediaBus>` and not care whether
/// it is in-process or remote. Every method returns without waiting on a
/// subscriber or a publisher. See the crate docs for a stream's lifecycle.
pub trait MediaBus: Send + Sync {
    /// Become the publisher of `stream`.
    ///
    /// A new name starts a new stream ([`StreamEvent::Started`]). A stream
    /// whose publisher has gone (and that was not ended) is resumed: its
    /// subscribers get [`Discontinuity`](crate::BusMessage::Discontinuity)
    /// and then what the new publisher sends ([`StreamEvent::Resumed`]).
    /// Fails with [`BusError::AlreadyPublished`] while a publisher is live.
    fn publish(&self, stream: &str) -> Result<Publisher, BusError>;

    /// Subscribe to an existing stream (live, or waiting for its publisher to
    /// come back). Fails with [`BusError::NotFound`] if there is no such
    /// stream and [`BusError::Transport`] if the process that publishes it
    /// cannot be reached (a bus between processes dials it here).
    fn subscribe(&self, stream: &str) -> SubscribeFuture;

    /// End a stream whose publisher has gone, for instance when a reconnect
    /// grace period runs out: subscribers get [`End`](crate::BusMessage::End)
    /// and the name is free. Fails with [`BusError::StillPublished`] if a
    /// publisher is live (so a publisher that reconnected just in time is
    /// never cut off) and [`BusError::NotFound`] if there is no such stream.
    fn end_stream(&self, stream: &str) -> Result<(), BusError>;

    /// The streams on the bus now, sorted by name.
    fn streams(&self) -> Vec<StreamInfo>;

    /// Lifecycle events from now on. A receiver that falls behind gets
    /// [`broadcast::error::RecvError::Lagged`] and should resynchronise with
    /// [`streams`](MediaBus::streams).
    fn announcements(&self) -> broadcast::Receiver<StreamEvent>;

    /// Counters for metrics.
    fn stats(&self) -> BusStats;
}
