//! RTP media timestamps onto the stream's 90 kHz timeline.
//!
//! RFC 3550 §5.1: "The initial value of the timestamp SHOULD be random" and
//! it is 32 bits wide, so it wraps (every 13.25 h at 90 kHz, 24.9 h at
//! 48 kHz). Each value is extended to `i64` once, here, at the edge of
//! ingest, and placed relative to the first one seen, which becomes the
//! stream's zero: without RTCP sender reports the offset between two RTP
//! streams of one session is unknown, so each starts at zero (see
//! `docs/configuration.md`).

use ferrocast_media::Time90k;

/// One RTP stream's clock: extends 32-bit timestamps and converts them to
/// [`Time90k`] relative to the first.
#[derive(Debug, Clone)]
pub struct RtpClock {
    rate: u32,
    /// Last extended timestamp; the reference for the next extension.
    last: Option<i64>,
    /// Extended timestamp that maps to `origin`.
    anchor: i64,
    /// Where `anchor` lands on the stream timeline.
    origin: Time90k,
}

impl RtpClock {
    /// A clock of `rate` Hz (the SDP `a=rtpmap` clock rate); 0 is taken as
    /// 90 kHz.
    pub fn new(rate: u32) -> Self {
        RtpClock {
            rate: if rate == 0 { 90_000 } else { rate },
            last: None,
            anchor: 0,
            origin: Time90k::ZERO,
        }
    }

    /// The clock rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Extend `ts` to the value nearest the previous one (a wrap forward,
    /// or a slightly earlier timestamp, both come out right).
    pub fn extend(&mut self, ts: u32) -> i64 {
        let value = match self.last {
            None => {
                self.anchor = i64::from(ts);
                i64::from(ts)
            }
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
        };
        self.last = Some(value);
        value
    }

    /// `ts` on the stream timeline.
    pub fn time(&mut self, ts: u32) -> Time90k {
        let ext = self.extend(ts);
        self.time_of(ext)
    }

    /// An already extended timestamp on the stream timeline.
    pub fn time_of(&self, extended: i64) -> Time90k {
        self.origin + Time90k::from_timescale(extended - self.anchor, self.rate)
    }

    /// A new sender (SSRC) on this stream: its first timestamp will be
    /// placed at `at`, continuing the timeline.
    pub fn rebase(&mut self, at: Time90k) {
        self.last = None;
        self.origin = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_across_the_32_bit_wrap_from_a_random_start() {
        let mut c = RtpClock::new(90_000);
        assert_eq!(c.time(u32::MAX - 1799), Time90k::ZERO);
        assert_eq!(c.time(1800), Time90k(3600));
        // A slightly earlier one (reordered B-frame) stays before.
        assert_eq!(c.time(u32::MAX - 1799), Time90k::ZERO);
        assert_eq!(c.time(5400), Time90k(7200));
    }

    #[test]
    fn audio_rates_and_rebase() {
        let mut c = RtpClock::new(48_000);
        assert_eq!(c.time(1000), Time90k::ZERO);
        assert_eq!(c.time(1000 + 1024), Time90k(1920));
        c.rebase(Time90k(3840));
        assert_eq!(c.time(77), Time90k(3840));
        assert_eq!(c.time(77 + 48_000), Time90k(3840 + 90_000));
        assert_eq!(RtpClock::new(0).rate(), 90_000);
    }
}
