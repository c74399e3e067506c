//! The package role's claims: every live stream (from the registry's
//! events) whose package lease this process can take is packaged here, with
//! the rendition plan its transcoder recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferrocast_hls::{BusName, RenditionPlan};
use ferrocast_media::StreamName;
use ferrocast_registry::{EventId, EventKind, Holding, LeaseKeeper, Role};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::bus::ClusterBus;

/// Where a stream's rendition plan goes (the origin, to list and wait for
/// its rungs).
pub type PlanSink = Arc<dyn Fn(&StreamName, RenditionPlan) + Send + Sync>;

/// How many events are read per poll.
const EVENTS_PER_POLL: usize = 512;

/// Runs the package role's side of the registry for as long as it lives.
#[derive(Debug)]
pub struct PackageClaims {
    task: JoinHandle<()>,
}

impl Drop for PackageClaims {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PackageClaims {
    /// Follow the registry's streams: take the package lease of each live
    /// one, announce it (and each rung of its plan) on `bus`, and hand its
    /// plan to `plans`.
    pub fn start(bus: &ClusterBus, plans: PlanSink) -> PackageClaims {
        let task = tokio::spawn(run(bus.clone(), plans));
        PackageClaims { task }
    }
}

/// A live stream as this process sees it.
struct Live {
    keeper: LeaseKeeper,
    /// Announced on the bus (the lease was held).
    announced: bool,
    plan: Option<RenditionPlan>,
    rungs: BTreeSet<String>,
    /// When the stream last had an ingest holder.
    seen: Instant,
}

async fn run(bus: ClusterBus, plans: PlanSink) {
    let settings = bus.settings().clone();
    let registry = bus.registry().clone();
    let mut cursor: Option<EventId> = None;
    let mut live: BTreeMap<StreamName, Live> = BTreeMap::new();
    let mut ticks = tokio::time::interval(settings.poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A stream whose ingest lease has been free this long is over (its
    // ingest died and its publisher did not come back).
    let abandoned_after = settings.reconnect_grace + settings.lease_ttl * 2;
    let mut last_sweep = Instant::now();
    loop {
        ticks.tick().await;
        match registry.events(cursor.as_ref(), EVENTS_PER_POLL).await {
            Ok(events) => {
                for (id, event) in events {
                    cursor = Some(id);
                    match event.kind {
                        EventKind::Started if !live.contains_key(&event.stream) => {
                            let keeper = LeaseKeeper::start(
                                registry.clone(),
                                event.stream.clone(),
                                Role::Package,
                                settings.node.clone(),
                                settings.lease_ttl,
                            );
                            live.insert(
                                event.stream,
                                Live {
                                    keeper,
                                    announced: false,
                                    plan: None,
                                    rungs: BTreeSet::new(),
                                    seen: Instant::now(),
                                },
                            );
                        }
                        EventKind::Ended => {
                            if let Some(stream) = live.remove(&event.stream) {
                                forget(&bus, &event.stream, &stream);
                                stream.keeper.release().await;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Err(error) => warn!(%error, "registry events not read"),
        }
        let sweep = last_sweep.elapsed() >= settings.lease_ttl;
        if sweep {
            last_sweep = Instant::now();
        }
        let mut gone = Vec::new();
        for (name, stream) in &mut live {
            let held = matches!(*stream.keeper.holding().borrow(), Holding::Held(_));
            if sweep {
                match registry.holder(name, Role::Ingest).await {
                    Ok(Some(_)) => stream.seen = Instant::now(),
                    Ok(None) if stream.seen.elapsed() >= abandoned_after => gone.push(name.clone()),
                    _ => {}
                }
            }
            if !held {
                continue;
            }
            if !stream.announced {
                stream.announced = true;
                info!(stream = %name, "holding the stream's package lease");
                bus.announce_claimed(name.as_str().to_owned());
            }
            match registry.plan(name).await {
                Ok(Some(plan)) if stream.plan.as_ref() != Some(&plan) => {
                    for rung in &plan.rungs {
                        let bus_name = BusName::new(name.clone(), rung.clone()).to_string();
                        if stream.rungs.insert(bus_name.clone()) {
                            bus.announce_claimed(bus_name);
                        }
                    }
                    plans(name, plan.clone());
                    stream.plan = Some(plan);
                }
                Ok(_) => {}
                Err(error) => warn!(stream = %name, %error, "rendition plan not read"),
            }
        }
        for name in gone {
            if let Some(stream) = live.remove(&name) {
                info!(stream = %name, "no ingest holds the stream any more: let go");
                forget(&bus, &name, &stream);
                stream.keeper.release().await;
            }
        }
    }
}

fn forget(bus: &ClusterBus, name: &StreamName, stream: &Live) {
    bus.forget_claimed(name.as_str());
    for rung in &stream.rungs {
        bus.forget_claimed(rung);
    }
}
