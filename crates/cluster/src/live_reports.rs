//! What the control plane of a cluster shows of a live stream, carried
//! through the registry: each ingest process writes a report of every
//! stream it has a publisher of (the control plane's JSON: publisher,
//! transport statistics, tracks), each transcoder one of every stream it
//! transcodes (its renditions), every `period`, kept for
//! [`LIVE_REPORT_TTL`](ferrocast_registry::LIVE_REPORT_TTL); `ferrocast
//! control` reads them back. A report of a process that died expires with
//! its TTL.
//!
//! Thumbnails need the media itself: [`source_subscriber`] subscribes to a
//! stream's source on the bus of the ingest process holding it, whose
//! first messages are the tracks and the cached GOP, keyframe first.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_bus::Subscriber;
use ferrocast_hls::BusName;
use ferrocast_media::StreamName;
use ferrocast_registry::{Registry, Role};
use tokio::task::JoinHandle;

/// Makes the reports of this process: each stream with a publisher here,
/// and its report.
pub type ReportFn = Arc<dyn Fn() -> Vec<(StreamName, String)> + Send + Sync>;

/// A running reporter; dropping it stops it.
pub struct LiveReporter {
    task: JoinHandle<()>,
}

impl Drop for LiveReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes every report `reports` makes to the registry as `role`'s, every
/// `period`. A report the registry refuses (too long) or cannot take now
/// (Redis down) is logged at debug level; the next period writes a fresh
/// one.
pub fn report(
    registry: Arc<dyn Registry>,
    role: Role,
    period: Duration,
    reports: ReportFn,
) -> LiveReporter {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for (stream, report) in reports() {
                if let Err(error) = registry.put_live_report(&stream, role, &report).await {
                    tracing::debug!(%error, %stream, "live report not written");
                }
            }
        }
    });
    LiveReporter { task }
}

/// A subscription to `stream`'s source on the bus of the ingest process
/// holding it, or why there is none.
pub async fn source_subscriber(
    registry: &dyn Registry,
    stream: &StreamName,
) -> Result<Subscriber, String> {
    let name = BusName::source(stream.clone());
    let (_, endpoint) = crate::locate::endpoint_of(registry, &name).await?;
    ferrocast_bus_grpc::subscribe(&endpoint, stream.as_str())
        .await
        .map_err(|e| format!("{endpoint}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ferrocast_registry::InMemoryRegistry;

    #[tokio::test(start_paused = true)]
    async fn reports_are_written_every_period_and_expire_when_they_stop() {
        let registry = Arc::new(InMemoryRegistry::default());
        let cam = StreamName::new("cam").unwrap();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reports: ReportFn = {
            let (cam, count) = (cam.clone(), count.clone());
            Arc::new(move || {
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                vec![(cam.clone(), format!("{{\"n\":{n}}}"))]
            })
        };
        let reporter = report(
            registry.clone(),
            Role::Ingest,
            Duration::from_secs(2),
            reports,
        );
        tokio::time::sleep(Duration::from_millis(4_100)).await;
        assert_eq!(
            registry
                .live_report(&cam, Role::Ingest)
                .await
                .unwrap()
                .as_deref(),
            Some("{\"n\":2}")
        );
        drop(reporter);
        tokio::time::sleep(ferrocast_registry::LIVE_REPORT_TTL).await;
        assert_eq!(
            registry.live_report(&cam, Role::Ingest).await.unwrap(),
            None
        );
    }
}
