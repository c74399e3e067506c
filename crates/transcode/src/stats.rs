//! How the pipeline keeps up: counters and lag, with the clock injected.
//!
//! Two lags are measured per rung:
//!
//! - **processing latency**: wall time from the `push` of a source frame to
//!   the moment its encoded frame is handed out by `push`, `poll` or
//!   `finish` (decoder delay, the rung's queue and encoder delay included).
//!   Matched by PTS through a bounded table.
//! - **real-time lag**: how far output lags behind the source's own clock:
//!   `(wall − wall₀) − (pts − pts₀)` from the first output frame. It stays
//!   flat when the transcoder keeps up with a live source and grows when it
//!   does not. Negative when fed faster than real time (from a file).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferrocast_media::Time90k;

/// Where wall time comes from; tests use a fake.
pub trait Clock: Send {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Source frames remembered for latency matching: more than any decoder
/// plus encoder delay (x264's largest lookahead is 250 frames).
pub const MAX_IN_FLIGHT: usize = 512;

/// Counters and lag of one rung.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RungStats {
    /// Rung name.
    pub name: String,
    /// Frames sent to the encoder.
    pub frames_in: u64,
    /// Access units out of the encoder.
    pub frames_out: u64,
    /// Frames dropped to cap the frame rate.
    pub frames_decimated: u64,
    /// IDR frames forced on the keyframe cadence.
    pub keyframes_forced: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Wall time the rung's worker spent scaling and encoding.
    pub busy: Duration,
    /// Latest processing latency (push to output).
    pub latency_last: Duration,
    /// Largest processing latency seen.
    pub latency_max: Duration,
    /// Latest real-time lag in milliseconds (see the module docs).
    pub realtime_lag_ms: i64,
}

/// Counters and lag of a whole transcoder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Video access units pushed.
    pub video_units_in: u64,
    /// Frames out of the decoder.
    pub frames_decoded: u64,
    /// Units the decoder refused (damaged input); decoding went on.
    pub decode_errors: u64,
    /// Units of tracks the transcoder does not handle, dropped.
    pub units_ignored: u64,
    /// Audio units passed through untouched.
    pub audio_passed: u64,
    /// AAC units encoded from other audio.
    pub audio_encoded: u64,
    /// Per rung, in plan order.
    pub rungs: Vec<RungStats>,
    /// Wall time spent inside `push` and `finish` (decoding, and waiting
    /// for a rung that is [`RUNG_QUEUE_FRAMES`] frames behind). Fed
    /// faster than it can go, this is the wall time of the run; fed at a
    /// live pace it is mostly the decoder's time, and the rungs' own
    /// [`RungStats::busy`] say how loaded they are.
    ///
    /// [`RUNG_QUEUE_FRAMES`]: crate::pipeline::RUNG_QUEUE_FRAMES
    pub busy: Duration,
}

impl Stats {
    /// Decoded frames per second of busy time: how fast this transcoder
    /// went, when fed without pause (see [`Self::busy`]).
    pub fn fps_capacity(&self) -> f64 {
        let secs = self.busy.as_secs_f64();
        if secs > 0.0 {
            self.frames_decoded as f64 / secs
        } else {
            0.0
        }
    }
}

/// Remembers when source frames were pushed, to time their outputs.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    entries: VecDeque<(Time90k, Instant)>,
}

impl InFlight {
    pub(crate) fn pushed(&mut self, pts: Time90k, at: Instant) {
        if self.entries.len() == MAX_IN_FLIGHT {
            self.entries.pop_front();
        }
        self.entries.push_back((pts, at));
    }

    /// When the source frame with `pts` was pushed. Entries are kept until
    /// they fall off the end (every rung asks for each PTS).
    pub(crate) fn pushed_at(&self, pts: Time90k) -> Option<Instant> {
        self.entries
            .iter()
            .rev()
            .find(|(p, _)| *p == pts)
            .map(|&(_, at)| at)
    }
}

/// Per-rung real-time lag anchor.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LagAnchor {
    first: Option<(Time90k, Instant)>,
}

impl LagAnchor {
    pub(crate) fn lag_ms(&mut self, pts: Time90k, now: Instant) -> i64 {
        let (pts0, wall0) = *self.first.get_or_insert((pts, now));
        let wall = i64::try_from(now.duration_since(wall0).as_millis()).unwrap_or(i64::MAX);
        wall - (pts - pts0).as_millis()
    }

    pub(crate) fn reset(&mut self) {
        self.first = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_bounded() {
        let t0 = Instant::now();
        let mut f = InFlight::default();
        for k in 0..(MAX_IN_FLIGHT as i64 + 10) {
            f.pushed(Time90k(k * 3000), t0 + Duration::from_millis(k as u64));
        }
        assert_eq!(f.entries.len(), MAX_IN_FLIGHT);
        assert_eq!(f.pushed_at(Time90k(0)), None);
        assert_eq!(
            f.pushed_at(Time90k(20 * 3000)),
            Some(t0 + Duration::from_millis(20))
        );
    }

    #[test]
    fn realtime_lag() {
        let t0 = Instant::now();
        let mut a = LagAnchor::default();
        assert_eq!(a.lag_ms(Time90k(90_000), t0), 0);
        // One second of media in 1.25 s of wall time: 250 ms behind.
        assert_eq!(
            a.lag_ms(Time90k(180_000), t0 + Duration::from_millis(1250)),
            250
        );
        // Faster than real time: ahead.
        assert_eq!(
            a.lag_ms(Time90k(360_000), t0 + Duration::from_millis(1500)),
            -1500
        );
        a.reset();
        assert_eq!(a.lag_ms(Time90k(5), t0 + Duration::from_secs(9)), 0);
    }
}
