//! Counters, ready to be exported as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// One subscriber's queue and losses, from [`Subscriber::stats`](crate::Subscriber::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages waiting to be received.
    pub queued_messages: usize,
    /// Bytes those messages are charged (payload plus per-message overhead).
    pub queued_bytes: usize,
    /// Access units this subscriber lost because it was slow.
    pub dropped_units: u64,
    /// Times it lost units (each is, or is folded into, a
    /// [`Gap`](crate::BusMessage::Gap) message).
    pub gaps: u64,
}

/// Bus-wide figures, from [`MediaBus::stats`](crate::MediaBus::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Streams on the bus, with or without a live publisher.
    pub streams: usize,
    /// Streams with a live publisher.
    pub live_publishers: usize,
    /// Subscribers attached to those streams.
    pub subscribers: usize,
    /// Access units dropped for slow subscribers since the bus was made
    /// (a counter; one unit dropped for two subscribers counts twice).
    pub dropped_units: u64,
    /// Gaps dealt to slow subscribers since the bus was made (a counter).
    pub gaps: u64,
}

/// Bus-wide loss counters every subscriber queue adds to.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    dropped_units: AtomicU64,
    gaps: AtomicU64,
}

impl Counters {
    pub(crate) fn add_dropped(&self, units: u64) {
        self.dropped_units.fetch_add(units, Ordering::Relaxed);
    }

    pub(crate) fn add_gap(&self) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped_units(&self) -> u64 {
        self.dropped_units.load(Ordering::Relaxed)
    }

    pub(crate) fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }
}
