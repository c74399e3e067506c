//! A connection's requests in flight and when it was last active.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection and the time of the last start or
/// end of one; [`Activity::idle`] resolves once none has been in flight for
/// the idle timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the last change.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// A new connection's activity, active now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity::default())
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// A request starts; it is in flight until the guard is dropped (keep
    /// it with the response body, so a body still being sent counts).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        RequestGuard {
            activity: self.clone(),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle_at = last + timeout;
            if self.in_flight() == 0 && Instant::now() >= idle_at {
                return;
            }
            // While busy, look again a timeout later; a request that ends
            // moves `last` forward, so a check can come early, never late
            // by more than one timeout.
            let wake = if self.in_flight() == 0 {
                idle_at
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// One request in flight (see [`Activity::request`]).
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_without_requests_for_the_whole_timeout() {
        let timeout = Duration::from_secs(10);
        let activity = Activity::new();
        let started = Instant::now();
        // a request held for 25 s (a long blocking reload, a slow download)
        let guard = activity.request();
        let held = activity.clone();
        let idle = tokio::spawn(async move {
            held.idle(timeout).await;
            Instant::now()
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!idle.is_finished());
        drop(guard);
        let idle_at = idle.await.unwrap_or(started);
        assert!(
            idle_at >= started + Duration::from_secs(35),
            "{:?}",
            idle_at - started
        );
        assert!(
            idle_at <= started + Duration::from_secs(36),
            "{:?}",
            idle_at - started
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_asks_is_idle_after_the_timeout() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.idle(Duration::from_secs(3)).await;
        assert_eq!(Instant::now() - started, Duration::from_secs(3));
    }
}
