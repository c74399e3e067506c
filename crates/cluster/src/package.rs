//! The package role's claims: every live stream (from the registry's
//! events) whose package lease this process can take is packaged here, with
//! the rendition plan its transcoder recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferrocast_hls::{BusName, RenditionPlan};
use ferrocast_media::StreamName;
use ferrocast_registry::{EventId, EventKind, Holding, LeaseKeeper, Registry, Role};
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
    /// When this process first saw itself holding the lease.
    held_since: Option<Instant>,
}

/// Whether any transcoder is alive in the cluster.
async fn transcoders(registry: &dyn Registry) -> bool {
    registry
        .nodes()
        .await
        .is_ok_and(|nodes| nodes.iter().any(|n| n.roles.contains(&Role::Transcode)))
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
                                    held_since: None,
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
            let plan = registry.plan(name).await;
            if !stream.announced {
                // With transcoders in the cluster, wait (a while) for the
                // stream's plan, so that the first multivariant playlist
                // already lists the rungs.
                let held_since = *stream.held_since.get_or_insert_with(Instant::now);
                let planned = matches!(plan, Ok(Some(_)));
                if !planned
                    && held_since.elapsed() < settings.first_dial
                    && transcoders(registry.as_ref()).await
                {
                    continue;
                }
                stream.announced = true;
                info!(stream = %name, "holding the stream's package lease");
                bus.announce_claimed(name.as_str().to_owned());
            }
            match plan {
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
                info!(stream = %name, "no ingest holds the stream any more: it ends");
                abandon(&bus, &name, &stream);
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

/// The stream's ingest is gone for good: end what is packaged of it.
fn abandon(bus: &ClusterBus, name: &StreamName, stream: &Live) {
    bus.end_remote(name.as_str());
    for rung in &stream.rungs {
        bus.end_remote(rung);
    }
    forget(bus, name, stream);
}
