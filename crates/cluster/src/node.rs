//! Keeping this process's node record alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrocast_registry::{NodeRecord, Registry};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Heartbeats this process's [`NodeRecord`] every quarter of its TTL for
/// as long as it lives, and says whether the registry answered the last
/// one (for readiness).
#[derive(Debug)]
pub struct NodePresence {
    reachable: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl NodePresence {
    /// Start heartbeating `record` with a time to live of `ttl`.
    pub fn start(
        registry: Arc<dyn Registry>,
        record: NodeRecord,
        ttl: std::time::Duration,
    ) -> NodePresence {
        let reachable = Arc::new(AtomicBool::new(false));
        let flag = reachable.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(ttl / 4);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
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
