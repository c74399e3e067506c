//! What travels on a stream.

use std::sync::Arc;

use ferrocast_media::{AccessUnit, TrackInfo};

/// One message on a stream, as a subscriber receives it, in order.
///
/// A publisher sends [`Tracks`](BusMessage::Tracks),
/// [`Unit`](BusMessage::Unit) and [`Discontinuity`](BusMessage::Discontinuity);
/// the bus itself adds [`Gap`](BusMessage::Gap) (per subscriber) and
/// [`End`](BusMessage::End).
///
/// Deliberately not `#[non_exhaustive]`: a new kind of message changes what
/// every consumer must do, so it should break their `match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// The stream's track set. Sent first, and again whenever it changes
    /// (or the publisher repeats it, for instance after reconnecting).
    Tracks(Arc<[TrackInfo]>),
    /// One access unit. Its `track` is one of the latest [`Tracks`](BusMessage::Tracks).
    Unit(Arc<AccessUnit>),
    /// The timeline broke: the publisher reconnected, or it said so itself.
    /// Timestamps after it need not continue those before it.
    Discontinuity,
    /// This subscriber was too slow and lost units (whole GOPs where the
    /// stream had keyframes to cut at). The next [`Unit`](BusMessage::Unit)
    /// it receives starts a GOP: a video keyframe, or for a stream without
    /// video, an audio frame.
    Gap,
    /// The stream is over for good; nothing follows. After it,
    /// [`Subscriber::recv`](crate::Subscriber::recv) returns `None`.
    End,
}

impl BusMessage {
    /// A short name for logs and errors (`"unit"`, `"gap"`, ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            BusMessage::Tracks(_) => "tracks",
            BusMessage::Unit(_) => "unit",
            BusMessage::Discontinuity => "discontinuity",
            BusMessage::Gap => "gap",
            BusMessage::End => "end",
        }
    }
}
