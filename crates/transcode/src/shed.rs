//! Keeping up with live: when to shed a rung, and which one. Sans-IO: the
//! caller passes the time and the measured lag.
//!
//! A transcoder that cannot keep up falls further behind live with every
//! frame (the real-time lag of [`crate::stats`] grows). When that lag has
//! stayed above [`ShedPolicy::lag_threshold`] for [`ShedPolicy::sustain`],
//! one rung is shed: the one with the highest `shed_priority`, and among
//! equals the most expensive (highest pixel rate). After a shed the
//! transcoder gets another `sustain` period to catch up, and a second rung
//! goes only if the lag is then still above the threshold *and* no lower
//! than when the last rung went (it is not catching up). The last rung is
//! never shed; if even that cannot keep up, the service's bounded queue
//! drops whole GOPs instead.
//!
//! Nothing is restored automatically: a shed rung stays off until the
//! stream ends (a new publish starts with the full ladder). Bringing rungs
//! back would need headroom measurements that a lagging machine cannot
//! give honestly, and a rendition that comes and goes confuses players more
//! than one that is simply absent.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ferrocast_transcode::shed::{RungCost, ShedPolicy, Shedder};
//!
//! let mut shedder = Shedder::new(ShedPolicy {
//!     lag_threshold: Duration::from_millis(1500),
//!     sustain: Duration::from_secs(2),
//! });
//! let rungs = [
//!     RungCost { active: true, pixel_rate: 1280 * 720 * 30, shed_priority: 0 },
//!     RungCost { active: true, pixel_rate: 640 * 360 * 30, shed_priority: 0 },
//! ];
//! let t0 = Instant::now();
//! assert_eq!(shedder.observe(t0, 2000, &rungs), None);
//! assert_eq!(shedder.observe(t0 + Duration::from_secs(2), 2100, &rungs), Some(0));
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// When to shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedPolicy {
    /// Lag behind live above which the transcoder counts as not keeping
    /// up. Zero disables shedding.
    pub lag_threshold: Duration,
    /// How long the lag must stay above the threshold before a rung is
    /// shed (and again before the next).
    pub sustain: Duration,
}

/// What [`Shedder`] needs to know about each rung, in plan order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungCost {
    /// Still being encoded.
    pub active: bool,
    /// Pixels per second ([`crate::plan::PlannedRung::pixel_rate`]).
    pub pixel_rate: u64,
    /// Higher sheds first ([`crate::ladder::Rung::shed_priority`]).
    pub shed_priority: u32,
}

/// The rung to shed next among `rungs`: the active one with the highest
/// `shed_priority`, then the highest pixel rate, then the first in plan
/// order; `None` when fewer than two are active.
pub fn next_to_shed(rungs: &[RungCost]) -> Option<usize> {
    if rungs.iter().filter(|r| r.active).count() < 2 {
        return None;
    }
    rungs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.active)
        // max_by_key keeps the last of equals; reverse the index so the
        // first in plan order wins ties.
        .max_by_key(|&(i, r)| (r.shed_priority, r.pixel_rate, std::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

/// Decides when to shed (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Shedder {
    policy: ShedPolicy,
    /// Since when the lag has been above the threshold (or since the last
    /// shed, which restarts the wait).
    above_since: Option<Instant>,
    /// The lag when the last rung was shed.
    lag_at_last_shed: Option<i64>,
}

impl Shedder {
    /// A shedder with `policy`.
    pub fn new(policy: ShedPolicy) -> Self {
        Shedder {
            policy,
            above_since: None,
            lag_at_last_shed: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> ShedPolicy {
        self.policy
    }

    /// Takes the lag measured at `now` (milliseconds behind live) and
    /// returns the index of the rung to shed now, if any. The caller sheds
    /// it and passes it as inactive from then on.
    pub fn observe(&mut self, now: Instant, lag_ms: i64, rungs: &[RungCost]) -> Option<usize> {
        let threshold = i64::try_from(self.policy.lag_threshold.as_millis()).unwrap_or(i64::MAX);
        if threshold == 0 {
            return None;
        }
        if lag_ms <= threshold {
            self.above_since = None;
            self.lag_at_last_shed = None;
            return None;
        }
        let since = *self.above_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.policy.sustain {
            return None;
        }
        if self.lag_at_last_shed.is_some_and(|last| lag_ms < last) {
            // Catching up after the last shed: give it another period.
            self.above_since = Some(now);
            self.lag_at_last_shed = Some(lag_ms);
            return None;
        }
        let rung = next_to_shed(rungs)?;
        self.above_since = Some(now);
        self.lag_at_last_shed = Some(lag_ms);
        Some(rung)
    }

    /// The timeline broke (lag measurements restart): forget the episode.
    pub fn reset(&mut self) {
        self.above_since = None;
        self.lag_at_last_shed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(pixel_rate: u64, shed_priority: u32) -> RungCost {
        RungCost {
            active: true,
            pixel_rate,
            shed_priority,
        }
    }

    const P720: u64 = 1280 * 720 * 30;
    const P480: u64 = 854 * 480 * 30;
    const P360: u64 = 640 * 360 * 30;

    fn policy() -> ShedPolicy {
        ShedPolicy {
            lag_threshold: Duration::from_millis(1500),
            sustain: Duration::from_secs(2),
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn order_is_priority_then_pixel_rate() {
        let mut rungs = [rung(P720, 0), rung(P480, 0), rung(P360, 0)];
        assert_eq!(next_to_shed(&rungs), Some(0));
        rungs[0].active = false;
        assert_eq!(next_to_shed(&rungs), Some(1));
        rungs[1].active = false;
        // The last one stays.
        assert_eq!(next_to_shed(&rungs), None);
        // An operator's priority wins over cost.
        let rungs = [rung(P720, 0), rung(P480, 0), rung(P360, 5)];
        assert_eq!(next_to_shed(&rungs), Some(2));
        // Equal cost: the first in plan order.
        let rungs = [rung(P360, 0), rung(P360, 0)];
        assert_eq!(next_to_shed(&rungs), Some(0));
        assert_eq!(next_to_shed(&[]), None);
    }

    #[test]
    fn sheds_only_after_sustained_lag() {
        let t0 = Instant::now();
        let mut rungs = [rung(P720, 0), rung(P480, 0), rung(P360, 0)];
        let mut s = Shedder::new(policy());
        // Below or at the threshold: nothing, however long.
        assert_eq!(s.observe(t0, 1500, &rungs), None);
        assert_eq!(s.observe(ms(t0, 10_000), 1500, &rungs), None);
        // Above, but not for long enough; a dip restarts the wait.
        assert_eq!(s.observe(ms(t0, 10_100), 1600, &rungs), None);
        assert_eq!(s.observe(ms(t0, 11_900), 1900, &rungs), None);
        assert_eq!(s.observe(ms(t0, 12_000), 1400, &rungs), None);
        assert_eq!(s.observe(ms(t0, 12_100), 1600, &rungs), None);
        assert_eq!(s.observe(ms(t0, 14_000), 2000, &rungs), None);
        // Two seconds above without a dip: the most expensive goes.
        assert_eq!(s.observe(ms(t0, 14_100), 2100, &rungs), Some(0));
        rungs[0].active = false;
        // Still lagging but catching up: no second shed.
        assert_eq!(s.observe(ms(t0, 15_000), 1900, &rungs), None);
        assert_eq!(s.observe(ms(t0, 16_100), 1800, &rungs), None);
        // Lag growing again for a whole period: the next one goes.
        assert_eq!(s.observe(ms(t0, 17_000), 2500, &rungs), None);
        assert_eq!(s.observe(ms(t0, 18_100), 2600, &rungs), Some(1));
        rungs[1].active = false;
        // The last rung is never shed.
        assert_eq!(s.observe(ms(t0, 30_000), 9000, &rungs), None);
        assert_eq!(s.observe(ms(t0, 60_000), 20_000, &rungs), None);
    }

    #[test]
    fn disabled_and_reset() {
        let t0 = Instant::now();
        let rungs = [rung(P720, 0), rung(P360, 0)];
        let mut off = Shedder::new(ShedPolicy {
            lag_threshold: Duration::ZERO,
            sustain: Duration::from_secs(2),
        });
        assert_eq!(off.observe(t0, 100_000, &rungs), None);
        assert_eq!(off.observe(ms(t0, 100_000), 100_000, &rungs), None);
        let mut s = Shedder::new(policy());
        assert_eq!(s.observe(t0, 5000, &rungs), None);
        s.reset();
        // The wait starts again after a reset.
        assert_eq!(s.observe(ms(t0, 2500), 5000, &rungs), None);
        assert_eq!(s.observe(ms(t0, 4500), 5000, &rungs), Some(0));
    }
}
