//! The last minutes of each live stream, for the dashboard's charts:
//! bitrate, SRT loss and round-trip time, viewers, sampled from
//! [`ControlHooks::live`] at a fixed period and
//! kept in memory (a bounded ring per stream; streams gone for a whole
//! window are forgotten).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

use super::ControlHooks;
use super::live::LiveStatus;

/// Samples kept per stream.
pub const SAMPLES: usize = 150;

/// One sample of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Sample {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The publisher's incoming bitrate, bits/s (0 without one).
    pub bitrate_bps: u64,
    /// SRT packets lost since the sample before.
    pub lost_packets: u64,
    /// SRT round-trip time, microseconds.
    pub rtt_us: u64,
    /// Viewers on this process's edge.
    pub viewers: u64,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    last_lost_total: Option<u64>,
}

/// The samples of every stream. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct History {
    streams: Arc<Mutex<BTreeMap<String, Ring>>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

impl History {
    /// A history sampled from `hooks` every `period` by a task that ends
    /// when every clone of the history is dropped.
    pub fn sampled(hooks: Arc<dyn ControlHooks>, period: Duration) -> History {
        let history = History::default();
        let weak = Arc::downgrade(&history.streams);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(streams) = weak.upgrade() else {
                    return;
                };
                let history = History { streams };
                let live = hooks.live().await;
                history.record(crate::db::now_ms(), &live);
            }
        });
        history
    }

    /// Adds a sample of each stream in `live` taken at `at_ms`; forgets
    /// streams whose newest sample left the window.
    pub fn record(&self, at_ms: i64, live: &BTreeMap<String, LiveStatus>) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, status) in live {
            let ring = streams.entry(name.clone()).or_default();
            let publisher = status.publisher.as_ref();
            let srt = publisher.and_then(|p| p.srt.as_ref());
            let rtp = publisher.and_then(|p| p.rtp.as_ref());
            let lost_total = srt.map(|s| s.lost_packets).or(rtp.map(|r| r.lost_packets));
            let lost = match (lost_total, ring.last_lost_total) {
                (Some(now), Some(before)) => now.saturating_sub(before),
                _ => 0,
            };
            ring.last_lost_total = lost_total;
            if ring.samples.len() == SAMPLES {
                ring.samples.pop_front();
            }
            ring.samples.push_back(Sample {
                at_ms,
                bitrate_bps: publisher.map_or(0, |p| p.bitrate_bps),
                lost_packets: lost,
                rtt_us: srt.map_or(0, |s| s.rtt_us),
                viewers: status.viewers.unwrap_or(0),
            });
        }
        streams.retain(|name, ring| {
            live.contains_key(name)
                || ring
                    .samples
                    .back()
                    .is_some_and(|s| s.at_ms > at_ms - window_ms(&ring.samples))
        });
    }

    /// The samples of `stream`, oldest first.
    pub fn of(&self, stream: &str) -> Vec<Sample> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams
            .get(stream)
            .map(|ring| ring.samples.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// How long the samples in `ring` span (the window a gone stream is kept
/// for).
fn window_ms(samples: &VecDeque<Sample>) -> i64 {
    match (samples.front(), samples.back()) {
        (Some(first), Some(last)) => (last.at_ms - first.at_ms).max(60_000),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::live::{Publisher, SrtStats};

    fn live(lost: u64) -> BTreeMap<String, LiveStatus> {
        BTreeMap::from([(
            "cam".to_owned(),
            LiveStatus {
                on_air: true,
                publisher: Some(Publisher {
                    protocol: "srt".into(),
                    remote: "127.0.0.1:1".into(),
                    since_ms: 0,
                    encrypted: false,
                    bytes: 0,
                    bitrate_bps: 1_000,
                    srt: Some(SrtStats {
                        rtt_us: 500,
                        lost_packets: lost,
                        retransmitted_packets: 0,
                        dropped_packets: 0,
                    }),
                    rtp: None,
                }),
                viewers: Some(2),
                ..LiveStatus::default()
            },
        )])
    }

    #[test]
    fn samples_are_bounded_count_loss_per_sample_and_expire() {
        let history = History::default();
        for i in 0..(SAMPLES as i64 + 10) {
            history.record(i * 1000, &live(10 * i as u64));
        }
        let samples = history.of("cam");
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples[0].at_ms, 10_000);
        assert!(samples.iter().all(|s| s.lost_packets == 10));
        assert_eq!(samples[0].viewers, 2);
        // Gone: kept for its window, then forgotten.
        let end = SAMPLES as i64 * 1000 + 10_000;
        history.record(end, &BTreeMap::new());
        assert_eq!(history.of("cam").len(), SAMPLES);
        history.record(end + 200_000, &BTreeMap::new());
        assert!(history.of("cam").is_empty());
        assert!(history.of("other").is_empty());
    }
}
