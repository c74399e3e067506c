//! Keeping this process's node record alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use ferrocast_registry::{NodeRecord, Registry};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How many streams this process holds for its role: published in its
/// node record, at once when it changes. Cheap to clone; clones share it.
#[derive(Debug, Clone, Default)]
pub struct LoadGauge {
    inner: Arc<(AtomicU32, Notify)>,
}

impl LoadGauge {
    /// Set the load; the node record is written again if it changed.
    pub fn set(&self, load: usize) {
        let load = u32::try_from(load).unwrap_or(u32::MAX);
        if self.inner.0.swap(load, Ordering::SeqCst) != load {
            self.inner.1.notify_one();
        }
    }

    /// The load now.
    pub fn get(&self) -> u32 {
        self.inner.0.load(Ordering::SeqCst)
    }
}

/// Heartbeats this process's [`NodeRecord`] every quarter of its TTL for
/// as long as it lives, and says whether the registry answered the last
/// one (for readiness).
#[derive(Debug)]
pub struct NodePresence {
    reachable: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl NodePresence {
    /// Start heartbeating `record` with a time to live of `ttl`, its load
    /// taken from `load` (and written at once when it changes).
    pub fn start(
        registry: Arc<dyn Registry>,
        mut record: NodeRecord,
        ttl: std::time::Duration,
        load: LoadGauge,
    ) -> NodePresence {
        let reachable = Arc::new(AtomicBool::new(false));
        let flag = reachable.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(ttl / 4);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = load.inner.1.notified() => {}
                }
                record.load = load.get();
                let ok = match registry.heartbeat(&record, ttl).await {
                    Ok(()) => true,
                    Err(error) => {
                        if flag.load(Ordering::SeqCst) {
                            warn!(%error, "registry unreachable: this node is not ready");
                        }
                        false
                    }
                };
                if ok && !flag.load(Ordering::SeqCst) {
                    info!(node = %record.id, "registry reachable");
                }
                flag.store(ok, Ordering::SeqCst);
            }
        });
        NodePresence { reachable, task }
    }

    /// Whether the registry answered the last heartbeat.
    pub fn registry_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }
}

impl Drop for NodePresence {
    fn drop(&mut self) {
        self.task.abort();
    }
}
