//! The transcode role's claims: streams come from the registry's work
//! queue; holding a stream's transcode lease is what makes this process
//! its transcoder.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrocast_bus::{MediaBus, StreamEvent};
use ferrocast_hls::{BusName, RenditionPlan};
use ferrocast_media::StreamName;
use ferrocast_registry::{Holding, LeaseKeeper, Role, WorkItem};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::bus::ClusterBus;

/// Runs the transcode role's side of the registry for as long as it lives.
#[derive(Debug)]
pub struct TranscodeClaims {
    task: JoinHandle<()>,
    held: Arc<AtomicUsize>,
}

impl Drop for TranscodeClaims {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TranscodeClaims {
    /// Take streams from the work queue, at most `max_streams` at a time,
    /// and announce each on `bus` once its lease is held.
    pub fn start(bus: &ClusterBus, max_streams: usize) -> TranscodeClaims {
        let held = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(run(bus.clone(), max_streams, held.clone()));
        TranscodeClaims { task, held }
    }

    /// Streams this process holds now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Record `plan` as `stream`'s rendition plan in the registry (call it
    /// each time the ladder is planned).
    pub fn publish_plan(bus: &ClusterBus, stream: &StreamName, plan: RenditionPlan) {
        let registry = bus.registry().clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            if let Err(error) = registry.put_plan(&stream, &plan).await {
                warn!(%stream, %error, "rendition plan not recorded in the registry");
            }
        });
    }
}

async fn run(bus: ClusterBus, max_streams: usize, count: Arc<AtomicUsize>) {
    let mut events = bus.announcements();
    let mut held: HashMap<StreamName, (LeaseKeeper, [JoinHandle<()>; 2])> = HashMap::new();
    let settings = bus.settings().clone();
    let registry = bus.registry().clone();
    let mut ticks = tokio::time::interval(settings.poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            event = events.recv() => {
                match event {
                    // The source ended: let the stream go.
                    Ok(StreamEvent::Ended(name)) => {
                        if let Some(source) = BusName::parse(&name).filter(BusName::is_source)
                            && let Some((keeper, tasks)) = held.remove(&source.stream)
                        {
                            tasks.iter().for_each(JoinHandle::abort);
                            bus.forget_held(&source.stream, Role::Transcode);
                            keeper.release().await;
                            bus.forget_claimed(&name);
                            info!(stream = %source.stream, "source ended: transcode lease released");
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
                count.store(held.len(), Ordering::SeqCst);
                continue;
            }
        }
        count.store(held.len(), Ordering::SeqCst);
        if held.len() >= max_streams {
            continue;
        }
        // Work of a worker that died before taking its lease first, then new work.
        let mut items: Vec<WorkItem> = registry
            .reclaim_work(&settings.node, settings.lease_ttl * 3)
            .await
            .unwrap_or_default();
        if items.is_empty()
            && let Ok(Some(item)) = registry.take_work(&settings.node).await
        {
            items.push(item);
        }
        for item in items {
            claim(&bus, &mut held, item).await;
        }
        count.store(held.len(), Ordering::SeqCst);
    }
}

/// Try to take the item's stream: hold its lease, acknowledge the item,
/// announce the stream. An item whose stream another transcoder holds is
/// acknowledged and dropped.
async fn claim(
    bus: &ClusterBus,
    held: &mut HashMap<StreamName, (LeaseKeeper, [JoinHandle<()>; 2])>,
    item: WorkItem,
) {
    let registry = bus.registry();
    let settings = bus.settings();
    let stream = item.stream.clone();
    if held.contains_key(&stream) {
        let _ = registry.ack_work(&item).await;
        return;
    }
    let keeper = LeaseKeeper::start(
        registry.clone(),
        stream.clone(),
        Role::Transcode,
        settings.node.clone(),
        settings.lease_ttl,
    );
    let mut holding = keeper.holding();
    // The keeper's first try answers at once; a held lease is someone
    // else's.
    let taken = tokio::time::timeout(
        settings.lease_ttl,
        holding.wait_for(|h| h.lease().is_some()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if let Err(error) = registry.ack_work(&item).await {
        warn!(%stream, %error, "work item not acknowledged");
    }
    if !taken {
        info!(%stream, "another transcoder holds the stream");
        return;
    }
    let epoch = holding.borrow().lease().map(|l| l.epoch.0);
    info!(%stream, epoch, "holding the stream's transcode lease");
    let watcher = tokio::spawn(async move {
        // Holding it, then not: another transcoder may take over; this
        // one's output carries a stale epoch from now on.
        if holding.wait_for(|h| *h == Holding::Waiting).await.is_ok() {
            error!(%stream, "transcode lease lost (registry unreachable or expired)");
        }
    });
    let mirror = bus.mirror_holding(item.stream.clone(), Role::Transcode, keeper.holding());
    held.insert(item.stream.clone(), (keeper, [watcher, mirror]));
    bus.announce_claimed(item.stream.as_str().to_owned());
}
