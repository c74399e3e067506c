//! The current GOP of a stream, kept so a joining subscriber starts at once.

use std::collections::VecDeque;
use std::sync::Arc;

use ferrocast_media::{AccessUnit, Time90k};

use crate::message::BusMessage;
use crate::queue::MESSAGE_OVERHEAD_BYTES;

/// Every unit since the latest GOP start, audio included, in arrival order;
/// or nothing, when there is no GOP a joiner could start at.
#[derive(Debug)]
pub(crate) struct GopCache {
    units: VecDeque<Arc<AccessUnit>>,
    bytes: usize,
    /// Decode time of the GOP's first unit.
    start: Time90k,
    /// Whether `units` begins at a GOP start and holds all of it since.
    valid: bool,
    max_bytes: usize,
    max_duration: Time90k,
}

impl GopCache {
    pub(crate) fn new(max_bytes: usize, max_duration: Time90k) -> Self {
        GopCache {
            units: VecDeque::new(),
            bytes: 0,
            start: Time90k::ZERO,
            valid: false,
            max_bytes,
            max_duration,
        }
    }

    /// Record a unit the stream just carried.
    pub(crate) fn push(&mut self, unit: &Arc<AccessUnit>, starts_gop: bool) {
        if starts_gop {
            self.units.clear();
            self.bytes = 0;
            self.start = unit.dts;
            self.valid = true;
        }
        if !self.valid {
            return;
        }
        self.units.push_back(Arc::clone(unit));
        self.bytes += MESSAGE_OVERHEAD_BYTES + unit.data.len();
        let too_long =
            unit.dts.ticks().saturating_sub(self.start.ticks()) > self.max_duration.ticks();
        if self.bytes > self.max_bytes || too_long {
            // A joiner would start far behind live or pin too much memory:
            // let it wait for the next keyframe instead.
            self.invalidate();
        }
    }

    /// Forget the GOP (timeline broke, tracks changed, stream over).
    pub(crate) fn invalidate(&mut self) {
        self.units = VecDeque::new();
        self.bytes = 0;
        self.valid = false;
    }

    /// Whether a joiner can start at a cached GOP.
    pub(crate) fn is_valid(&self) -> bool {
        self.valid
    }

    /// The cached units as messages, each with whether it starts a GOP.
    pub(crate) fn replay(&self) -> impl Iterator<Item = (BusMessage, bool)> + '_ {
        self.units
            .iter()
            .enumerate()
            .map(|(i, unit)| (BusMessage::Unit(Arc::clone(unit)), i == 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrocast_media::{TrackId, TrackKind};

    fn unit(ms: i64, keyframe: bool, len: usize) -> Arc<AccessUnit> {
        Arc::new(AccessUnit {
            track: TrackId(1),
            kind: TrackKind::Video,
            pts: Time90k::from_millis(ms),
            dts: Time90k::from_millis(ms),
            keyframe,
            data: Bytes::from(vec![0; len]),
            captured_unix_ms: None,
            trace: None,
        })
    }

    #[test]
    fn holds_units_since_the_latest_gop_start() {
        let mut cache = GopCache::new(1 << 20, Time90k::from_millis(10_000));
        cache.push(&unit(0, false, 10), false);
        assert!(!cache.is_valid());
        cache.push(&unit(40, true, 10), true);
        cache.push(&unit(80, false, 10), false);
        cache.push(&unit(120, true, 10), true);
        cache.push(&unit(160, false, 10), false);
        let replay: Vec<_> = cache.replay().collect();
        assert_eq!(replay.len(), 2);
        assert!(replay[0].1 && !replay[1].1);
        assert!(matches!(&replay[0].0, BusMessage::Unit(u) if u.dts == Time90k::from_millis(120)));
    }

    #[test]
    fn too_big_or_too_long_a_gop_is_not_cached() {
        let mut cache = GopCache::new(1000, Time90k::from_millis(10_000));
        cache.push(&unit(0, true, 600), true);
        cache.push(&unit(40, false, 600), false);
        assert!(!cache.is_valid());
        assert_eq!(cache.replay().count(), 0);

        let mut cache = GopCache::new(1 << 20, Time90k::from_millis(1000));
        cache.push(&unit(0, true, 1), true);
        cache.push(&unit(1000, false, 1), false);
        assert!(cache.is_valid());
        cache.push(&unit(1040, false, 1), false);
        assert!(!cache.is_valid());
        cache.push(&unit(1080, true, 1), true);
        assert!(cache.is_valid());
    }
}
