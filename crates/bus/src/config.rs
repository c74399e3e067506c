//! Bus limits.

use ferrocast_media::Time90k;

/// Memory limits and policies of an [`InProcessBus`](crate::InProcessBus).
///
/// Byte figures count each message as its payload plus a fixed per-message
/// overhead ([`MESSAGE_OVERHEAD_BYTES`](crate::MESSAGE_OVERHEAD_BYTES)), so
/// floods of tiny messages are bounded too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// Soft bound on one subscriber's queue. When a new GOP starts and the
    /// queue holds more than this, every queued GOP the subscriber has not
    /// started is dropped and it gets a [`Gap`](crate::BusMessage::Gap).
    /// Default 16 MiB.
    pub subscriber_queue_bytes: usize,
    /// Hard bound on one subscriber's queue, for streams that stop sending
    /// keyframes: past it every queued unit is dropped, the subscriber gets a
    /// [`Gap`](crate::BusMessage::Gap) and skips to the next keyframe.
    /// Raised to `subscriber_queue_bytes` if set below it. Default 64 MiB.
    pub subscriber_hard_limit_bytes: usize,
    /// Most bytes of the current GOP kept for subscribers that join
    /// mid-stream. A GOP larger than this is not cached; joiners then wait for
    /// the next keyframe. Default 32 MiB.
    pub gop_cache_bytes: usize,
    /// Longest current GOP kept for joiners, by decode time from its
    /// keyframe, so a stream with rare keyframes does not start new viewers
    /// far behind live. Default 10 s.
    pub gop_cache_max_duration: Time90k,
    /// How many [`StreamEvent`](crate::StreamEvent)s an announcement
    /// receiver may fall behind before it lags. Default 256.
    pub announcement_capacity: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            subscriber_queue_bytes: 16 << 20,
            subscriber_hard_limit_bytes: 64 << 20,
            gop_cache_bytes: 32 << 20,
            gop_cache_max_duration: Time90k::from_millis(10_000),
            announcement_capacity: 256,
        }
    }
}
