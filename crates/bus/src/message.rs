//! What travels on a stream.

use std::sync::Arc;

use ferrocast_media::{AccessUnit, Time90k, TrackInfo};

/// One message on a stream, as a subscriber receives it, in order.
///
/// A publisher sends [`Tracks`](BusMessage::Tracks),
/// [`Unit`](BusMessage::Unit), [`Discontinuity`](BusMessage::Discontinuity)
/// and [`HandedOver`](BusMessage::HandedOver);
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
    /// This publisher stops here and another process publishes the stream
    /// on (a planned handover between processes): the next publisher's
    /// output starts with a video keyframe at this time, its timestamps
    /// continue these, and nothing before that time follows from it. What
    /// this publisher sent ends just before that time. A subscription that
    /// follows the stream across processes consumes it; a subscriber on
    /// the publisher's own bus may ignore it.
    HandedOver(Time90k),
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
            BusMessage::HandedOver(_) => "handed over",
            BusMessage::End => "end",
        }
    }
}
