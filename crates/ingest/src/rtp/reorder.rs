//! The jitter buffer: RTP packets back into sequence-number order.
//!
//! Sans-IO: packets go in with [`Reorder::push`] and the caller's `now`,
//! come out with [`Reorder::poll`], and [`Reorder::deadline`] says when
//! polling next could release something even if no packet arrives.
//!
//! A packet is released when it is the next one expected, or when the
//! oldest packet held has waited for its missing predecessors longer than
//! the window; the predecessors that never came are then counted lost.
//! Duplicates and packets that come after their place was given up are
//! dropped and counted. The first packet fixes where the sequence starts:
//! one numbered before it that arrives after it is late. At most [`ReorderConfig::max_packets`] are held: a
//! full buffer gives up on the oldest gap at once.
//!
//! RFC 3550 §3: "The sequence number increments by one for each RTP data
//! packet sent, and may be used by the receiver to detect packet loss and
//! to restore packet sequence." The 16-bit numbers are extended to 64 bits
//! once, here, as they enter (RFC 3550 appendix A.1 keeps the count of
//! wraps the same way).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Sequence numbers further ahead than this are a jump, not loss.
///
/// RFC 3550 appendix A.1: "MAX_DROPOUT = 3000" and "MAX_MISORDER = 100";
/// "If the sequence number jumps by a large amount ... assume the other side
/// restarted without telling us so just re-sync (i.e., pretend this was the
/// first packet)" once a second packet follows it in sequence.
pub const MAX_DROPOUT: i64 = 3000;

/// Sequence numbers further behind than this are a jump, not lateness.
pub const MAX_MISORDER: i64 = 100;

/// Settings of a [`Reorder`] buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// How long a packet waits for missing predecessors.
    pub window: Duration,
    /// The most packets held at once.
    pub max_packets: usize,
}

impl ReorderConfig {
    /// A window of `window`, holding at most 2048 packets (50 ms of a
    /// 300 Mbit/s stream of 1316-byte payloads).
    pub fn with_window(window: Duration) -> Self {
        ReorderConfig {
            window,
            max_packets: 2048,
        }
    }
}

/// Counters of a [`Reorder`] buffer; they only ever grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets released in order.
    pub released: u64,
    /// Packets that arrived after a later-numbered one, in time to be
    /// put back in place.
    pub reordered: u64,
    /// Packets dropped because the same sequence number was held already.
    pub duplicates: u64,
    /// Packets dropped because their place had already been released or
    /// given up (this includes duplicates of released packets), and stray
    /// packets numbered far outside the sequence that no successor confirmed.
    pub late: u64,
    /// Sequence numbers given up on: never arrived within the window.
    pub lost: u64,
    /// Times the sender's numbering jumped and the buffer resynchronised.
    pub resyncs: u64,
    /// Times a full buffer had to give up on a gap early.
    pub overflows: u64,
}

/// What [`Reorder::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Held for release in order.
    Held,
    /// Dropped: that sequence number is held already.
    Duplicate,
    /// Dropped: its place was already released or given up.
    Late,
    /// Held back: a jump in numbering, kept until a second packet confirms
    /// the sender restarted.
    Probation,
}

/// A jitter buffer of items `T` (RTP packets or their payloads).
#[derive(Debug)]
pub struct Reorder<T> {
    config: ReorderConfig,
    /// Next extended sequence number to release; `None` before the first packet.
    next: Option<i64>,
    /// Highest extended sequence number accepted; the reference for extending.
    highest: i64,
    held: BTreeMap<i64, T>,
    /// Arrival order of held packets, for the window; entries whose packet
    /// was released are skipped lazily.
    arrivals: VecDeque<(Instant, i64)>,
    /// A packet after a jump, waiting for its successor to confirm it.
    probation: Option<(u16, Instant, T)>,
    /// Released, in order, waiting for [`Reorder::poll`].
    ready: VecDeque<T>,
    stats: ReorderStats,
}

impl<T> Reorder<T> {
    /// An empty buffer.
    pub fn new(config: ReorderConfig) -> Self {
        Reorder {
            config,
            next: None,
            highest: 0,
            held: BTreeMap::new(),
            arrivals: VecDeque::new(),
            probation: None,
            ready: VecDeque::new(),
            stats: ReorderStats::default(),
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> ReorderConfig {
        self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Packets held waiting for a predecessor.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Extend a 16-bit sequence number to the value nearest the highest seen.
    fn extend(&self, seq: u16) -> i64 {
        let delta = i64::from(seq.wrapping_sub(self.highest as u16) as i16);
        self.highest + delta
    }

    /// Take in one packet with 16-bit sequence number `seq`, arrived at `now`.
    pub fn push(&mut self, seq: u16, now: Instant, item: T) -> Pushed {
        self.stats.received += 1;
        let Some(next) = self.next else {
            self.restart(i64::from(seq));
            return self.hold(i64::from(seq), now, item);
        };
        let ext = self.extend(seq);
        if ext - self.highest > MAX_DROPOUT || next - ext > MAX_MISORDER {
            return self.jump(seq, now, item);
        }
        if self.probation.take().is_some() {
            self.stats.late += 1;
        }
        if ext < next {
            self.stats.late += 1;
            return Pushed::Late;
        }
        if self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Pushed::Duplicate;
        }
        if ext < self.highest {
            self.stats.reordered += 1;
        }
        let pushed = self.hold(ext, now, item);
        if self.held.len() > self.config.max_packets {
            self.stats.overflows += 1;
            self.give_up_to_first_held();
        }
        pushed
    }

    /// A number far from the expected one: hold it until its successor
    /// shows the sender really restarted, then resynchronise.
    fn jump(&mut self, seq: u16, now: Instant, item: T) -> Pushed {
        match self.probation.take() {
            Some((prev, arrived, first)) if prev.wrapping_add(1) == seq => {
                // Release all that was held, in order, before the new numbering.
                while !self.held.is_empty() {
                    self.give_up_to_first_held();
                }
                self.stats.resyncs += 1;
                self.restart(i64::from(prev));
                self.hold(i64::from(prev), arrived, first);
                self.hold(i64::from(seq), now, item);
                Pushed::Held
            }
            replaced => {
                if replaced.is_some() {
                    self.stats.late += 1;
                }
                self.probation = Some((seq, now, item));
                Pushed::Probation
            }
        }
    }

    fn restart(&mut self, first: i64) {
        self.next = Some(first);
        self.highest = first;
        self.arrivals.clear();
    }

    fn hold(&mut self, ext: i64, now: Instant, item: T) -> Pushed {
        self.highest = self.highest.max(ext);
        self.held.insert(ext, item);
        self.arrivals.push_back((now, ext));
        self.release_contiguous();
        Pushed::Held
    }

    /// Release every held packet that follows the last released one.
    fn release_contiguous(&mut self) {
        let Some(mut next) = self.next else { return };
        while let Some(item) = self.held.remove(&next) {
            self.ready.push_back(item);
            self.stats.released += 1;
            next += 1;
        }
        self.next = Some(next);
    }

    /// Give up on the gap before the first held packet and release from it.
    fn give_up_to_first_held(&mut self) {
        let (Some(next), Some((&first, _))) = (self.next, self.held.first_key_value()) else {
            return;
        };
        self.stats.lost += u64::try_from(first - next).unwrap_or(0);
        self.next = Some(first);
        self.release_contiguous();
    }

    /// The oldest arrival among held packets.
    fn oldest_arrival(&mut self) -> Option<Instant> {
        let next = self.next?;
        while let Some(&(at, ext)) = self.arrivals.front() {
            if ext >= next && self.held.contains_key(&ext) {
                return Some(at);
            }
            self.arrivals.pop_front();
        }
        None
    }

    /// When [`poll`](Reorder::poll) will next have something to release
    /// without a new packet: when the oldest held packet's wait runs out.
    /// Meaningful once `poll` has returned `None`.
    pub fn deadline(&mut self) -> Option<Instant> {
        let window = self.config.window;
        self.oldest_arrival().map(|at| at + window)
    }

    /// The next packet in order, if one may be released at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<T> {
        if let Some(item) = self.ready.pop_front() {
            return Some(item);
        }
        let oldest = self.oldest_arrival()?;
        if now.saturating_duration_since(oldest) >= self.config.window {
            self.give_up_to_first_held();
        }
        self.ready.pop_front()
    }

    /// Forget the sequence (a new sender): the next packet starts afresh.
    /// Anything held or ready is dropped; call [`flush`](Reorder::flush)
    /// first to keep it. The counters carry on.
    pub fn reset(&mut self) {
        self.next = None;
        self.highest = 0;
        self.held.clear();
        self.arrivals.clear();
        self.probation = None;
        self.ready.clear();
    }

    /// Release everything held, in order, giving up on every gap (end of
    /// input). A packet on probation is dropped and counted late.
    pub fn flush(&mut self) -> impl Iterator<Item = T> + '_ {
        while !self.held.is_empty() {
            self.give_up_to_first_held();
        }
        if self.probation.take().is_some() {
            self.stats.late += 1;
        }
        self.arrivals.clear();
        self.ready.drain(..)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const WINDOW: Duration = Duration::from_millis(50);

    fn buffer() -> Reorder<u16> {
        Reorder::new(ReorderConfig::with_window(WINDOW))
    }

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn drain(r: &mut Reorder<u16>, now: Instant) -> Vec<u16> {
        std::iter::from_fn(|| r.poll(now)).collect()
    }

    #[test]
    fn in_order_passes_straight_through() {
        let t0 = Instant::now();
        let mut r = buffer();
        for seq in 10..20u16 {
            assert_eq!(r.push(seq, t0, seq), Pushed::Held);
            assert_eq!(drain(&mut r, t0), vec![seq]);
        }
        assert_eq!(r.deadline(), None);
        assert_eq!(r.stats().released, 10);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn swapped_pair_is_put_back() {
        let t0 = Instant::now();
        let mut r = buffer();
        r.push(1, t0, 1);
        r.push(3, ms(t0, 1), 3);
        assert_eq!(drain(&mut r, ms(t0, 1)), vec![1]);
        assert_eq!(r.deadline(), Some(ms(t0, 51)));
        r.push(2, ms(t0, 2), 2);
        assert_eq!(drain(&mut r, ms(t0, 2)), vec![2, 3]);
        assert_eq!(r.stats().reordered, 1);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn gap_given_up_after_the_window_and_counted() {
        let t0 = Instant::now();
        let mut r = buffer();
        r.push(100, t0, 100);
        r.push(103, ms(t0, 10), 103);
        r.push(104, ms(t0, 20), 104);
        assert_eq!(drain(&mut r, ms(t0, 59)), vec![100]);
        assert_eq!(r.deadline(), Some(ms(t0, 60)));
        assert_eq!(drain(&mut r, ms(t0, 60)), vec![103, 104]);
        assert_eq!(r.stats().lost, 2);
        // The lost ones turning up afterwards are late, not released.
        assert_eq!(r.push(101, ms(t0, 61), 101), Pushed::Late);
        assert_eq!(r.push(104, ms(t0, 61), 104), Pushed::Late);
        assert_eq!(r.stats().late, 2);
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut r = buffer();
        r.push(1, t0, 1);
        r.push(3, t0, 3);
        assert_eq!(r.push(3, t0, 33), Pushed::Duplicate);
        r.push(2, t0, 2);
        assert_eq!(drain(&mut r, t0), vec![1, 2, 3]);
        assert_eq!(r.stats().duplicates, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut r = buffer();
        for seq in [65533u16, 65535, 65534, 1, 0, 2] {
            r.push(seq, t0, seq);
        }
        assert_eq!(drain(&mut r, t0), vec![65533, 65534, 65535, 0, 1, 2]);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn full_buffer_gives_up_early() {
        let t0 = Instant::now();
        let mut r = Reorder::new(ReorderConfig {
            window: WINDOW,
            max_packets: 4,
        });
        r.push(0, t0, 0);
        for seq in 2..=6u16 {
            r.push(seq, t0, seq);
        }
        assert_eq!(drain(&mut r, t0), vec![0, 2, 3, 4, 5, 6]);
        assert_eq!(r.stats().overflows, 1);
        assert_eq!(r.stats().lost, 1);
    }

    #[test]
    fn sender_restart_resyncs_after_two_packets() {
        let t0 = Instant::now();
        let mut r = buffer();
        r.push(10, t0, 10);
        r.push(12, t0, 12);
        assert_eq!(r.push(40_000, t0, 40_000), Pushed::Probation);
        assert_eq!(drain(&mut r, t0), vec![10]);
        assert_eq!(r.push(40_001, t0, 40_001), Pushed::Held);
        assert_eq!(drain(&mut r, t0), vec![12, 40_000, 40_001]);
        assert_eq!(r.stats().resyncs, 1);
        // A lone stray number is dropped once the sequence goes on.
        assert_eq!(r.push(5, t0, 5), Pushed::Probation);
        r.push(40_002, t0, 40_002);
        assert_eq!(drain(&mut r, t0), vec![40_002]);
        assert_eq!(r.stats().late, 1);
    }

    #[test]
    fn flush_releases_everything_in_order() {
        let t0 = Instant::now();
        let mut r = buffer();
        for seq in [1u16, 4, 3, 7] {
            r.push(seq, t0, seq);
        }
        let _ = drain(&mut r, t0);
        assert_eq!(r.flush().collect::<Vec<_>>(), vec![3, 4, 7]);
        assert_eq!(r.stats().lost, 3);
    }

    /// `n` sequence numbers from `start`, each arriving at most `spread`
    /// places from its own, the first one first.
    fn arrivals(start: u16, n: usize, spread: usize) -> impl Strategy<Value = Vec<u16>> {
        proptest::collection::vec(0..spread.max(1), n).prop_map(move |jitter| {
            let mut keyed: Vec<(usize, u16)> = (0..n)
                .map(|i| {
                    let key = if i == 0 { 0 } else { i + jitter[i] };
                    (key, start.wrapping_add(i as u16))
                })
                .collect();
            keyed.sort_by_key(|&(key, _)| key);
            keyed.into_iter().map(|(_, seq)| seq).collect()
        })
    }

    fn run(order: &[u16], kept: &[bool], batch: usize) -> (Vec<u16>, ReorderStats) {
        let t0 = Instant::now();
        let mut r = buffer();
        let mut out = Vec::new();
        for (i, (&seq, _)) in order.iter().zip(kept).filter(|(_, k)| **k).enumerate() {
            // One packet a millisecond: reordering spans stay inside the window.
            let now = ms(t0, i as u64 / 8);
            r.push(seq, now, seq);
            if i % batch == 0 {
                out.extend(drain(&mut r, now));
            }
        }
        out.extend(drain(&mut r, ms(t0, 10_000)));
        (out, r.stats())
    }

    proptest! {
        /// Any permutation within the window comes out in order, nothing lost.
        #[test]
        fn permutation_within_window_comes_out_in_order(
            (start, order) in any::<u16>().prop_flat_map(|s| (Just(s), arrivals(s, 300, 20)))
        ) {
            let kept = vec![true; order.len()];
            let (out, stats) = run(&order, &kept, 1);
            let expected: Vec<u16> = (0..300).map(|i| start.wrapping_add(i)).collect();
            prop_assert_eq!(out, expected);
            prop_assert_eq!(stats.lost, 0);
            prop_assert_eq!(stats.late, 0);
        }

        /// With losses, what arrived comes out in order, every missing
        /// number between is counted lost, and when the caller polls does
        /// not change the result.
        #[test]
        fn losses_counted_and_polling_invariant(
            order in (65_000u16..=65_535).prop_flat_map(|s| arrivals(s, 200, 8)),
            mut kept in proptest::collection::vec(proptest::bool::weighted(0.9), 200),
            batch in 1usize..50,
        ) {
            let first = order[0];
            kept[0] = true;
            let (out, stats) = run(&order, &kept, 1);
            let (batched, _) = run(&order, &kept, batch);
            prop_assert_eq!(&out, &batched);
            let mut expected: Vec<(u16, u16)> = order
                .iter()
                .zip(&kept)
                .filter(|(_, k)| **k)
                .map(|(&s, _)| (s.wrapping_sub(first), s))
                .collect();
            expected.sort();
            let expected: Vec<u16> = expected.into_iter().map(|(_, s)| s).collect();
            prop_assert_eq!(&out, &expected);
            let span = u64::from(out.last().unwrap().wrapping_sub(first)) + 1;
            prop_assert_eq!(stats.lost, span - out.len() as u64);
        }

        /// Duplicates anywhere never come out twice.
        #[test]
        fn duplicates_never_released_twice(
            seqs in proptest::collection::vec(0u16..64, 1..300),
        ) {
            let t0 = Instant::now();
            let mut r = buffer();
            let mut out = Vec::new();
            for &seq in &seqs {
                r.push(seq, t0, seq);
                out.extend(drain(&mut r, t0));
            }
            out.extend(r.flush());
            let mut seen = std::collections::HashSet::new();
            prop_assert!(out.iter().all(|s| seen.insert(*s)));
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
