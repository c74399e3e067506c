//! Typed media time.
//!
//! Everything inside the pipeline is on the MPEG-TS 90 kHz clock, extended
//! from 33 bits to `i64` exactly once, in ingest, by [`TimestampExtender`].
//! Conversions to other timescales (audio sample rates, CMAF track
//! timescales) go through [`Time90k::to_timescale`]. No `f64` seconds here.

use std::ops::{Add, Sub};

/// Ticks per second of the MPEG-TS system clock used for PTS/DTS.
pub const CLOCK_HZ: i64 = 90_000;

/// A point or span of media time on the 90 kHz clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time90k(pub i64);

impl Time90k {
    /// Zero ticks.
    pub const ZERO: Time90k = Time90k(0);

    /// From whole milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Time90k(ms * 90)
    }

    /// The raw tick count.
    pub const fn ticks(self) -> i64 {
        self.0
    }

    /// Whole milliseconds, rounded towards negative infinity.
    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(90)
    }

    /// This time in another timescale, rounded to the nearest tick.
    pub fn to_timescale(self, timescale: u32) -> i64 {
        let num = i128::from(self.0) * i128::from(timescale);
        let half = i128::from(CLOCK_HZ / 2);
        let q = if num >= 0 {
            (num + half) / i128::from(CLOCK_HZ)
        } else {
            (num - half) / i128::from(CLOCK_HZ)
        };
        q as i64
    }

    /// A time given in `timescale` ticks, converted to 90 kHz (nearest tick).
    pub fn from_timescale(value: i64, timescale: u32) -> Self {
        if timescale == 0 {
            return Time90k::ZERO;
        }
        let num = i128::from(value) * i128::from(CLOCK_HZ);
        let ts = i128::from(timescale);
        let half = ts / 2;
        let q = if num >= 0 {
            (num + half) / ts
        } else {
            (num - half) / ts
        };
        Time90k(q as i64)
    }
}

impl Add for Time90k {
    type Output = Time90k;
    fn add(self, rhs: Time90k) -> Time90k {
        Time90k(self.0 + rhs.0)
    }
}

impl Sub for Time90k {
    type Output = Time90k;
    fn sub(self, rhs: Time90k) -> Time90k {
        Time90k(self.0 - rhs.0)
    }
}

/// Extends 33-bit MPEG-TS timestamps to a monotonic-in-spirit `i64` timeline.
///
/// Each new value is placed at the 2^33 period that puts it closest to the
/// previous one, so a wrap (forward) or a slightly earlier timestamp (B-frame
/// PTS, audio behind video) both come out right.
#[derive(Debug, Clone, Default)]
pub struct TimestampExtender {
    last: Option<i64>,
}

const WRAP: i64 = 1 << 33;

impl TimestampExtender {
    /// A fresh extender; the first value is taken as is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extend one 33-bit value.
    pub fn extend(&mut self, raw33: u64) -> Time90k {
        let raw = (raw33 & (WRAP as u64 - 1)) as i64;
        let value = match self.last {
            None => raw,
            Some(last) => {
                let base = last - last.rem_euclid(WRAP);
                let candidates = [base - WRAP + raw, base + raw, base + WRAP + raw];
                let mut best = candidates[1];
                for c in candidates {
                    if (c - last).abs() < (best - last).abs() {
                        best = c;
                    }
                }
                best
            }
        };
        self.last = Some(value);
        Time90k(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_across_wrap() {
        let mut ext = TimestampExtender::new();
        assert_eq!(ext.extend((WRAP - 3000) as u64), Time90k(WRAP - 3000));
        assert_eq!(ext.extend(1000), Time90k(WRAP + 1000));
        // A slightly earlier value (B-frame) stays in the same period.
        assert_eq!(ext.extend((WRAP - 500) as u64), Time90k(WRAP - 500));
        assert_eq!(ext.extend(4000), Time90k(WRAP + 4000));
    }

    #[test]
    fn converts_timescales() {
        assert_eq!(Time90k(90_000).to_timescale(48_000), 48_000);
        assert_eq!(Time90k::from_timescale(1024, 48_000), Time90k(1920));
        assert_eq!(Time90k::from_millis(200).ticks(), 18_000);
        assert_eq!(Time90k(-1).as_millis(), -1);
    }
}
