//! Rate limits for per-publisher warnings, so a publisher sending garbage
//! cannot flood the log: the first few of each window are logged, the rest
//! counted and summarised once the next one is logged or the session ends.
//! Sans-IO: the caller passes `now`.

use std::time::{Duration, Instant};

/// How many warnings a [`LogLimiter`] lets through per window by default.
pub const DEFAULT_PER_WINDOW: u32 = 5;
/// The default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Log it; `suppressed` warnings were dropped since the last one logged
    /// (say so first).
    Log {
        /// Warnings not logged since the last one that was.
        suppressed: u64,
    },
    /// Count it only.
    Suppress,
}

/// At most `per_window` warnings logged per `window`.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    window: Duration,
    per_window: u32,
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(DEFAULT_PER_WINDOW, DEFAULT_WINDOW)
    }
}

impl LogLimiter {
    /// A limiter letting `per_window` warnings through per `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        LogLimiter {
            window,
            per_window,
            window_start: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// Decide on a warning at `now`.
    pub fn check(&mut self, now: Instant) -> LogDecision {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if fresh {
            self.window_start = Some(now);
            self.logged = 0;
        }
        if self.logged < self.per_window {
            self.logged += 1;
            LogDecision::Log {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            LogDecision::Suppress
        }
    }

    /// Warnings suppressed and not yet reported; resets the count (for a
    /// summary at the end of a session).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_window_then_a_count() {
        let start = Instant::now();
        let mut limiter = LogLimiter::new(2, Duration::from_secs(10));
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(limiter.check(at(0)), LogDecision::Log { suppressed: 0 });
        assert_eq!(limiter.check(at(1)), LogDecision::Log { suppressed: 0 });
        for ms in 2..1002 {
            assert_eq!(limiter.check(at(ms)), LogDecision::Suppress);
        }
        // the next window: logged again, with the count of what was dropped
        assert_eq!(
            limiter.check(at(10_000)),
            LogDecision::Log { suppressed: 1000 }
        );
        assert_eq!(
            limiter.check(at(10_001)),
            LogDecision::Log { suppressed: 0 }
        );
        assert_eq!(limiter.check(at(10_002)), LogDecision::Suppress);
        assert_eq!(limiter.take_suppressed(), 1);
        assert_eq!(limiter.take_suppressed(), 0);
    }
}
