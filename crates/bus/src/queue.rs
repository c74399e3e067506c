//! One subscriber's bounded queue and its slow-subscriber policy.
//!
//! Plain data: the fan-out pushes under the queue's mutex, the subscriber
//! pops under it, and the waker lives beside the messages so a push can never
//! miss a subscriber that is about to sleep.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::message::BusMessage;
use crate::stats::{Counters, SubscriberStats};

/// Bytes every queued or cached message is charged on top of its payload.
///
/// Roughly what an entry costs in memory, and a floor that keeps floods of
/// empty messages bounded by the byte limits.
pub const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// What a message is charged against a byte bound.
pub(crate) fn cost(message: &BusMessage) -> usize {
    match message {
        BusMessage::Unit(unit) => MESSAGE_OVERHEAD_BYTES + unit.data.len(),
        BusMessage::Tracks(tracks) => MESSAGE_OVERHEAD_BYTES * (1 + tracks.len()),
        BusMessage::Discontinuity
        | BusMessage::Gap
        | BusMessage::HandedOver(_)
        | BusMessage::End => MESSAGE_OVERHEAD_BYTES,
    }
}

/// The two bounds of a subscriber queue, in charged bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Past this, whole unstarted GOPs are dropped when the next one starts.
    pub(crate) soft: usize,
    /// Past this, everything queued is dropped at once.
    pub(crate) hard: usize,
}

impl Limits {
    pub(crate) fn new(soft: usize, hard: usize) -> Self {
        Limits {
            soft,
            hard: hard.max(soft),
        }
    }
}

#[derive(Debug)]
struct Entry {
    message: BusMessage,
    /// A unit that begins a GOP: where the queue may be cut.
    starts_gop: bool,
    cost: usize,
}

/// Whether incoming units are being skipped until the next GOP start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Deliver everything.
    No,
    /// Skip units that do not start a GOP. `lost` says whether they count as
    /// dropped: yes after an overflow, no for a subscriber that joined when
    /// there was no cached GOP to start it at.
    UntilGopStart { lost: bool },
}

/// One subscriber's queue.
#[derive(Debug)]
pub(crate) struct SubscriberQueue {
    entries: VecDeque<Entry>,
    bytes: usize,
    limits: Limits,
    skip: Skip,
    /// `End` is queued: nothing more is accepted.
    closed: bool,
    /// `End` was received: the queue is empty for good.
    finished: bool,
    dropped_units: u64,
    gaps: u64,
    waker: Option<Waker>,
    counters: Arc<Counters>,
}

impl SubscriberQueue {
    /// An empty queue. `at_gop_start` is false when the subscriber joins with
    /// nothing cached to start at, so units wait for the next GOP start.
    pub(crate) fn new(limits: Limits, counters: Arc<Counters>, at_gop_start: bool) -> Self {
        SubscriberQueue {
            entries: VecDeque::new(),
            bytes: 0,
            limits,
            skip: if at_gop_start {
                Skip::No
            } else {
                Skip::UntilGopStart { lost: false }
            },
            closed: false,
            finished: false,
            dropped_units: 0,
            gaps: 0,
            waker: None,
            counters,
        }
    }

    /// Queue a message, applying the slow-subscriber policy. Returns the
    /// subscriber's waker if it was waiting; wake it after unlocking.
    ///
    /// `starts_gop` must be true only for units that begin a GOP.
    pub(crate) fn push(&mut self, message: BusMessage, starts_gop: bool) -> Option<Waker> {
        if self.closed {
            return None;
        }
        let cost = cost(&message);
        match &message {
            BusMessage::Unit(_) => {
                if let Skip::UntilGopStart { lost } = self.skip {
                    if !starts_gop {
                        if lost {
                            self.count_dropped(1);
                        }
                        return None;
                    }
                    self.skip = Skip::No;
                }
                if starts_gop && self.bytes > self.limits.soft {
                    self.drop_unstarted_gops();
                }
                // A unit bigger than the hard bound on its own, with nothing
                // else to drop, is let through: the bound is exceeded by one
                // unit rather than a unit lost without a `Gap`.
                if self.bytes + cost > self.limits.hard && self.drop_all_units() && !starts_gop {
                    // It would begin a partial GOP after the `Gap`.
                    self.count_dropped(1);
                    self.skip = Skip::UntilGopStart { lost: true };
                    return self.waker.take();
                }
            }
            BusMessage::End => self.closed = true,
            BusMessage::Tracks(_)
            | BusMessage::Discontinuity
            | BusMessage::Gap
            | BusMessage::HandedOver(_) => {
                if self.bytes + cost > self.limits.hard && self.drop_all_units() {
                    self.skip = Skip::UntilGopStart { lost: true };
                }
            }
        }
        self.bytes += cost;
        self.entries.push_back(Entry {
            message,
            starts_gop,
            cost,
        });
        self.waker.take()
    }

    /// The next message, if one is queued.
    pub(crate) fn pop(&mut self) -> Option<BusMessage> {
        let entry = self.entries.pop_front()?;
        self.bytes -= entry.cost;
        if entry.message == BusMessage::End {
            self.finished = true;
        }
        Some(entry.message)
    }

    /// The next message; `None` once `End` has been received; pending (with
    /// `cx`'s waker kept for the next push) while the queue is empty.
    pub(crate) fn poll_pop(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        if let Some(message) = self.pop() {
            return Poll::Ready(Some(message));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        match &mut self.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Drop everything queued (the subscriber has gone).
    pub(crate) fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
        self.closed = true;
        self.waker = None;
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            queued_messages: self.entries.len(),
            queued_bytes: self.bytes,
            dropped_units: self.dropped_units,
            gaps: self.gaps,
        }
    }

    /// A new GOP is starting and the queue is over its soft bound: drop
    /// every queued GOP the subscriber has not started. The units before the
    /// first queued GOP start finish the GOP it is in the middle of, so they
    /// stay; the subscriber never sees part of a GOP.
    fn drop_unstarted_gops(&mut self) {
        let Some(first) = self.entries.iter().position(|e| e.starts_gop) else {
            // One GOP fills the queue; only the hard bound can help now.
            return;
        };
        let dropped = self.cut_from(first);
        self.count_dropped(dropped);
        self.push_gap();
    }

    /// Over the hard bound: drop every queued unit. Returns whether any was
    /// dropped (and so a `Gap` queued).
    fn drop_all_units(&mut self) -> bool {
        let dropped = self.cut_from(0);
        if dropped == 0 {
            return false;
        }
        self.count_dropped(dropped);
        self.push_gap();
        true
    }

    /// Remove `entries[from..]` and put back the control messages that must
    /// survive, folded: one `Discontinuity` if any was cut, then the last
    /// `Tracks` cut (earlier ones are superseded). Cut `Gap`s are folded into
    /// the one the caller queues next. Returns how many units were removed.
    fn cut_from(&mut self, from: usize) -> u64 {
        let mut units = 0;
        let mut discontinuity = false;
        let mut tracks = None;
        let mut end = false;
        let mut handed_over = None;
        for entry in self.entries.drain(from..) {
            self.bytes -= entry.cost;
            match entry.message {
                BusMessage::Unit(_) => units += 1,
                BusMessage::Tracks(t) => tracks = Some(t),
                BusMessage::Discontinuity => discontinuity = true,
                BusMessage::Gap => {}
                // The publisher's last word: it must reach the subscriber.
                BusMessage::HandedOver(at) => handed_over = Some(at),
                // Never queued before a push (the queue is closed then), but
                // keep it rather than lose it.
                BusMessage::End => end = true,
            }
        }
        if discontinuity {
            self.push_raw(BusMessage::Discontinuity);
        }
        if let Some(tracks) = tracks {
            self.push_raw(BusMessage::Tracks(tracks));
        }
        if let Some(at) = handed_over {
            self.push_raw(BusMessage::HandedOver(at));
        }
        if end {
            self.push_raw(BusMessage::End);
        }
        units
    }

    /// Queue a `Gap`, unless one is already waiting with no unit after it.
    fn push_gap(&mut self) {
        self.gaps += 1;
        self.counters.add_gap();
        let pending = self
            .entries
            .iter()
            .rev()
            .find(|e| matches!(e.message, BusMessage::Gap | BusMessage::Unit(_)));
        if !matches!(
            pending,
            Some(Entry {
                message: BusMessage::Gap,
                ..
            })
        ) {
            self.push_raw(BusMessage::Gap);
        }
    }

    fn push_raw(&mut self, message: BusMessage) {
        let cost = cost(&message);
        self.bytes += cost;
        self.entries.push_back(Entry {
            message,
            starts_gop: false,
            cost,
        });
    }

    fn count_dropped(&mut self, units: u64) {
        self.dropped_units += units;
        self.counters.add_dropped(units);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrocast_media::{AccessUnit, Time90k, TrackId, TrackKind};

    fn unit(seq: i64, keyframe: bool, len: usize) -> BusMessage {
        BusMessage::Unit(Arc::new(AccessUnit {
            track: TrackId(256),
            kind: TrackKind::Video,
            pts: Time90k(seq),
            dts: Time90k(seq),
            keyframe,
            data: Bytes::from(vec![0; len]),
            captured_unix_ms: None,
            trace: None,
        }))
    }

    fn drain(q: &mut SubscriberQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|m| match m {
                BusMessage::Unit(u) => format!("{}{}", if u.keyframe { "K" } else { "u" }, u.pts.0),
                other => other.kind_name().to_owned(),
            })
            .collect()
    }

    fn queue(soft: usize, hard: usize) -> SubscriberQueue {
        SubscriberQueue::new(Limits::new(soft, hard), Arc::default(), true)
    }

    /// Units of 936 bytes are charged 1000.
    const U: usize = 1000 - MESSAGE_OVERHEAD_BYTES;

    #[test]
    fn keeps_the_started_gop_and_drops_the_rest_at_the_next_keyframe() {
        let mut q = queue(3500, 100_000);
        q.push(unit(0, true, U), true);
        q.push(unit(1, false, U), false);
        assert_eq!(drain(&mut q), ["K0", "u1"]);
        // Mid-GOP: u2, u3 finish the GOP the subscriber is in.
        q.push(unit(2, false, U), false);
        q.push(unit(3, false, U), false);
        q.push(unit(4, true, U), true);
        q.push(unit(5, false, U), false);
        q.push(unit(6, true, U), true);
        assert_eq!(q.stats().dropped_units, 2);
        assert_eq!(q.stats().gaps, 1);
        assert_eq!(drain(&mut q), ["u2", "u3", "gap", "K6"]);
    }

    #[test]
    fn under_the_soft_bound_nothing_is_dropped() {
        let mut q = queue(10_000, 100_000);
        for seq in 0..9 {
            q.push(unit(seq, seq % 3 == 0, U), seq % 3 == 0);
        }
        assert_eq!(q.stats().dropped_units, 0);
        assert_eq!(drain(&mut q).len(), 9);
    }

    #[test]
    fn control_messages_in_dropped_gops_survive_folded() {
        let tracks = |n: u16| {
            BusMessage::Tracks(Arc::from(vec![ferrocast_media::TrackInfo {
                id: TrackId(n),
                params: ferrocast_media::CodecParams::Aac(ferrocast_media::AacParams {
                    asc: Bytes::new(),
                    object_type: 2,
                    sample_rate: 48_000,
                    channels: 2,
                }),
            }]))
        };
        let mut q = queue(1500, 100_000);
        q.push(unit(0, true, U), true);
        q.push(tracks(1), false);
        q.push(BusMessage::Discontinuity, false);
        q.push(unit(1, true, U), true);
        q.push(tracks(2), false);
        q.push(BusMessage::Discontinuity, false);
        q.push(unit(2, true, U), true);
        let got: Vec<BusMessage> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], BusMessage::Discontinuity);
        assert_eq!(got[1], tracks(2));
        assert_eq!(got[2], BusMessage::Gap);
        assert!(matches!(&got[3], BusMessage::Unit(u) if u.pts.0 == 2));
    }

    #[test]
    fn hard_bound_drops_everything_and_skips_to_the_next_keyframe() {
        let mut q = queue(2000, 4000);
        q.push(unit(0, true, U), true);
        for seq in 1..10 {
            q.push(unit(seq, false, U), false);
            assert!(q.stats().queued_bytes <= 4000);
        }
        q.push(unit(10, true, U), true);
        let got = drain(&mut q);
        assert_eq!(got.first().map(String::as_str), Some("gap"));
        assert_eq!(got.last().map(String::as_str), Some("K10"));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(q.stats().dropped_units, 10);
    }

    #[test]
    fn second_loss_before_any_unit_does_not_queue_a_second_gap() {
        let mut q = queue(1500, 100_000);
        q.push(unit(0, true, U), true);
        q.push(unit(1, true, U), true);
        q.push(unit(2, true, U), true);
        q.push(unit(3, true, U), true);
        q.push(unit(4, true, U), true);
        // K2 finds [K0 K1] over the bound: gap K2. K4 finds [gap K2 K3]
        // over it: K2 and K3 go, and the waiting gap covers them too.
        let got = drain(&mut q);
        assert_eq!(got, ["gap", "K4"]);
        assert_eq!(q.stats().gaps, 2);
        assert_eq!(q.stats().dropped_units, 4);
    }

    #[test]
    fn joining_without_a_cached_gop_waits_for_one_without_counting_losses() {
        let mut q = SubscriberQueue::new(Limits::new(10_000, 40_000), Arc::default(), false);
        q.push(unit(0, false, U), false);
        q.push(unit(1, true, U), true);
        assert_eq!(drain(&mut q), ["K1"]);
        assert_eq!(q.stats().dropped_units, 0);
    }

    #[test]
    fn a_unit_bigger_than_the_hard_bound_alone_is_let_through() {
        let mut q = queue(1000, 2000);
        q.push(unit(0, true, 5000), true);
        assert_eq!(drain(&mut q), ["K0"]);
        q.push(unit(1, false, 5000), false);
        assert_eq!(drain(&mut q), ["u1"]);
        assert_eq!(q.stats().dropped_units, 0);
        // Two of them do not fit: u2 goes, and u3 would start a partial GOP.
        q.push(unit(2, false, 5000), false);
        q.push(unit(3, false, 5000), false);
        q.push(unit(4, true, 10), true);
        assert_eq!(drain(&mut q), ["gap", "K4"]);
        assert_eq!(q.stats().dropped_units, 2);
    }

    #[test]
    fn end_is_last_and_then_the_queue_is_finished() {
        let mut q = queue(10_000, 40_000);
        q.push(unit(0, true, U), true);
        q.push(BusMessage::End, false);
        q.push(unit(1, false, U), false);
        assert_eq!(drain(&mut q), ["K0", "end"]);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(None));
    }
}
