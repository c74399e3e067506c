//! The sans-IO session tracker: which sessions of which stream were seen
//! recently. No clock (every call takes `now`, Unix seconds), no tasks.
//!
//! Sessions are kept as 64-bit fingerprints (a keyed SipHash of stream and
//! session id, the key random per tracker), in shards picked by the
//! fingerprint. A request of a session already tracked takes one shard's
//! read lock and one atomic store; only a new session takes write locks.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Shards of the session table (a power of two).
const SHARDS: usize = 16;

/// What [`ViewerTracker::seen`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A new session, now tracked.
    Added,
    /// A session already tracked; its last-seen time is refreshed.
    Refreshed,
    /// A new session that is not tracked: a cap is reached. The request is
    /// served as usual; the session is tried again on its next request.
    Untracked(Cap),
}

/// The cap that kept a session from being tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// `max_sessions`, over all streams.
    Sessions,
    /// `max_sessions_per_stream`.
    SessionsPerStream,
    /// `max_streams`: the session's stream would be one too many.
    Streams,
}

/// Bounds of a [`ViewerTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerLimits {
    /// A session counts while seen within this many seconds.
    pub window_secs: u64,
    /// Most sessions over all streams.
    pub max_sessions: usize,
    /// Most sessions of one stream.
    pub max_sessions_per_stream: usize,
    /// Most streams.
    pub max_streams: usize,
}

/// Sessions tracked per stream: what a sweep leaves. Only streams with at
/// least one session appear.
pub type ViewerCounts = BTreeMap<String, u64>;

/// One stream's number of tracked sessions. Reserved before a session is
/// inserted, so a stream in the middle of gaining its first session is
/// never swept away.
#[derive(Debug)]
struct StreamCount {
    name: Box<str>,
    tracked: AtomicUsize,
}

#[derive(Debug)]
struct Session {
    stream: Arc<StreamCount>,
    last_seen: AtomicU64,
}

type Shard = RwLock<HashMap<u64, Session>>;

/// Concurrent viewers per stream, counted from sessions seen within a
/// window. Bounded: at most `max_sessions` sessions and `max_streams`
/// streams are held (about 40 bytes a session). Share it (`Arc`) between
/// the request path ([`seen`](Self::seen)) and a periodic
/// [`sweep`](Self::sweep).
///
/// ```
/// use ferrocast_edge::viewers::{TrackerLimits, ViewerTracker};
///
/// let tracker = ViewerTracker::new(TrackerLimits {
///     window_secs: 30, max_sessions: 1000, max_sessions_per_stream: 100, max_streams: 10,
/// });
/// tracker.seen("cam", "session-a", 100);
/// tracker.seen("cam", "session-a", 101);
/// tracker.seen("cam", "session-b", 102);
/// assert_eq!(tracker.sweep(110)["cam"], 2);
/// assert!(tracker.sweep(135).is_empty()); // neither seen in the last 30 s
/// ```
#[derive(Debug)]
pub struct ViewerTracker {
    limits: TrackerLimits,
    hasher: RandomState,
    shards: Box<[Shard]>,
    streams: RwLock<HashMap<Box<str>, Arc<StreamCount>>>,
    total: AtomicUsize,
}

impl ViewerTracker {
    /// An empty tracker. A zero limit is taken as one.
    pub fn new(limits: TrackerLimits) -> Self {
        let limits = TrackerLimits {
            window_secs: limits.window_secs.max(1),
            max_sessions: limits.max_sessions.max(1),
            max_sessions_per_stream: limits.max_sessions_per_stream.max(1),
            max_streams: limits.max_streams.max(1),
        };
        ViewerTracker {
            limits,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            streams: RwLock::default(),
            total: AtomicUsize::new(0),
        }
    }

    /// The tracker's bounds.
    pub fn limits(&self) -> TrackerLimits {
        self.limits
    }

    /// Sessions tracked now, over all streams (including stale ones the
    /// next sweep removes).
    pub fn tracked(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Marks `session` of `stream` seen at `now`. Never blocks on anything
    /// but a shard lock held for a map lookup or insert.
    pub fn seen(&self, stream: &str, session: &str, now: u64) -> Seen {
        let fingerprint = self.hasher.hash_one((stream, session));
        let shard = &self.shards[(fingerprint as usize) % SHARDS];
        if let Some(known) = read(shard).get(&fingerprint) {
            known.last_seen.fetch_max(now, Ordering::Relaxed);
            return Seen::Refreshed;
        }
        let count = match self.reserve(stream) {
            Ok(count) => count,
            Err(cap) => return Seen::Untracked(cap),
        };
        match write(shard).entry(fingerprint) {
            Entry::Occupied(known) => {
                // Another request of this session got here first.
                self.release(&count);
                known.get().last_seen.fetch_max(now, Ordering::Relaxed);
                Seen::Refreshed
            }
            Entry::Vacant(slot) => {
                slot.insert(Session {
                    stream: count,
                    last_seen: AtomicU64::new(now),
                });
                Seen::Added
            }
        }
    }

    /// Forgets the sessions not seen within the window before `now` and the
    /// streams left without sessions; returns the sessions per stream.
    pub fn sweep(&self, now: u64) -> ViewerCounts {
        let oldest_kept = now.saturating_sub(self.limits.window_secs);
        for shard in self.shards.iter() {
            let mut sessions = write(shard);
            sessions.retain(|_, session| {
                let keep = session.last_seen.load(Ordering::Relaxed) > oldest_kept;
                if !keep {
                    self.release(&session.stream);
                }
                keep
            });
            // Give back the memory of a crowd that has left.
            let len = sessions.len();
            if sessions.capacity() > 1024 && sessions.capacity() > 4 * len {
                sessions.shrink_to(2 * len);
            }
        }
        let mut streams = write(&self.streams);
        streams.retain(|_, count| count.tracked.load(Ordering::Relaxed) > 0);
        let len = streams.len();
        if streams.capacity() > 64 && streams.capacity() > 4 * len {
            streams.shrink_to(2 * len);
        }
        streams
            .values()
            .map(|count| {
                let n = count.tracked.load(Ordering::Relaxed) as u64;
                (count.name.to_string(), n)
            })
            .collect()
    }

    /// Takes one place for a new session of `stream`, under the streams
    /// lock so that a sweep cannot drop the stream before the session is in.
    fn reserve(&self, stream: &str) -> Result<Arc<StreamCount>, Cap> {
        {
            let streams = read(&self.streams);
            if let Some(count) = streams.get(stream) {
                self.take_place(count)?;
                return Ok(count.clone());
            }
        }
        let mut streams = write(&self.streams);
        if !streams.contains_key(stream) && streams.len() >= self.limits.max_streams {
            return Err(Cap::Streams);
        }
        let count = streams
            .entry(stream.into())
            .or_insert_with(|| {
                Arc::new(StreamCount {
                    name: stream.into(),
                    tracked: AtomicUsize::new(0),
                })
            })
            .clone();
        self.take_place(&count)?;
        Ok(count)
    }

    fn take_place(&self, count: &StreamCount) -> Result<(), Cap> {
        let per_stream = self.limits.max_sessions_per_stream;
        count
            .tracked
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < per_stream).then_some(n + 1)
            })
            .map_err(|_| Cap::SessionsPerStream)?;
        let max = self.limits.max_sessions;
        if self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            count.tracked.fetch_sub(1, Ordering::Relaxed);
            return Err(Cap::Sessions);
        }
        Ok(())
    }

    fn release(&self, count: &StreamCount) {
        count.tracked.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

// Nothing panics while these locks are held; a poisoned lock still holds
// consistent counts, so go on with it.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max_sessions: usize, per_stream: usize, streams: usize) -> ViewerTracker {
        ViewerTracker::new(TrackerLimits {
            window_secs: 30,
            max_sessions,
            max_sessions_per_stream: per_stream,
            max_streams: streams,
        })
    }

    fn counts(pairs: &[(&str, u64)]) -> ViewerCounts {
        pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn a_session_counts_once_per_stream() {
        let t = tracker(100, 100, 10);
        assert_eq!(t.seen("cam", "a", 100), Seen::Added);
        assert_eq!(t.seen("cam", "a", 101), Seen::Refreshed);
        assert_eq!(t.seen("cam", "b", 101), Seen::Added);
        assert_eq!(t.seen("news", "a", 102), Seen::Added);
        assert_eq!(t.tracked(), 3);
        assert_eq!(t.sweep(102), counts(&[("cam", 2), ("news", 1)]));
    }

    #[test]
    fn the_window_is_measured_from_the_last_request() {
        let t = tracker(100, 100, 10);
        t.seen("cam", "a", 100);
        t.seen("cam", "b", 100);
        t.seen("cam", "a", 120);
        // b last seen 29 s ago: still counted.
        assert_eq!(t.sweep(129), counts(&[("cam", 2)]));
        // b last seen 30 s ago: gone; a, seen 10 s ago, stays until 150.
        assert_eq!(t.sweep(130), counts(&[("cam", 1)]));
        assert_eq!(t.sweep(149), counts(&[("cam", 1)]));
        // Nobody left: the stream goes too.
        assert_eq!(t.sweep(150), counts(&[]));
        assert_eq!(t.tracked(), 0);
        // A session swept away comes back as new.
        assert_eq!(t.seen("cam", "b", 151), Seen::Added);
    }

    #[test]
    fn a_late_request_does_not_move_last_seen_back() {
        let t = tracker(100, 100, 10);
        t.seen("cam", "a", 120);
        t.seen("cam", "a", 100);
        assert_eq!(t.sweep(149), counts(&[("cam", 1)]));
    }

    #[test]
    fn caps_leave_new_sessions_untracked_until_a_sweep_frees_room() {
        let t = tracker(3, 2, 2);
        assert_eq!(t.seen("cam", "a", 100), Seen::Added);
        assert_eq!(t.seen("cam", "b", 100), Seen::Added);
        assert_eq!(
            t.seen("cam", "c", 110),
            Seen::Untracked(Cap::SessionsPerStream)
        );
        assert_eq!(t.seen("news", "a", 110), Seen::Added);
        assert_eq!(t.seen("news", "b", 110), Seen::Untracked(Cap::Sessions));
        assert_eq!(t.seen("sport", "a", 110), Seen::Untracked(Cap::Streams));
        // Known sessions still refresh at the cap.
        assert_eq!(t.seen("cam", "a", 110), Seen::Refreshed);
        assert_eq!(t.sweep(110), counts(&[("cam", 2), ("news", 1)]));
        // cam/b expires at 130; its place goes to the next new session.
        assert_eq!(t.sweep(130), counts(&[("cam", 1), ("news", 1)]));
        assert_eq!(t.seen("cam", "c", 130), Seen::Added);
        assert_eq!(t.seen("news", "b", 130), Seen::Untracked(Cap::Sessions));
        assert_eq!(t.tracked(), 3);
        // Both of news's sessions gone and cam's too: sport fits again.
        assert_eq!(t.sweep(160), counts(&[]));
        assert_eq!(t.seen("sport", "a", 160), Seen::Added);
    }

    #[test]
    fn many_threads_count_each_session_once() {
        let t = Arc::new(tracker(100_000, 100_000, 10));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for round in 0..3 {
                        for i in 0..1000 {
                            // Every thread sees the same 1000 sessions of
                            // "cam" and 1000 of its own stream.
                            t.seen("cam", &format!("s{i}"), 100 + round);
                            t.seen(&format!("own{thread}"), &format!("s{i}"), 100 + round);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        let counts = t.sweep(110);
        assert_eq!(counts["cam"], 1000);
        for thread in 0..4 {
            assert_eq!(counts[&format!("own{thread}")], 1000);
        }
        assert_eq!(t.tracked(), 5000);
        assert!(t.sweep(200).is_empty());
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn memory_is_given_back_after_a_crowd_leaves() {
        let t = tracker(100_000, 100_000, 10);
        for i in 0..50_000 {
            t.seen("cam", &i.to_string(), 100);
        }
        t.seen("cam", "stays", 120);
        assert_eq!(t.sweep(140), counts(&[("cam", 1)]));
        let capacity: usize = t.shards.iter().map(|s| read(s).capacity()).sum();
        assert!(capacity < 1024 * SHARDS, "capacity {capacity}");
    }
}
