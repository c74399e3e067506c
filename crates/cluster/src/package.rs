//! The package role's claims: every live stream (from the registry's
//! events) whose package lease this process can take is packaged here, with
//! the rendition plan its transcoder recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ferrocast_hls::{BusName, RenditionPlan, StreamProgress};
use ferrocast_media::StreamName;
use ferrocast_registry::{EventId, EventKind, Holding, LeaseKeeper, Registry, Role};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::bus::ClusterBus;

/// Where a stream's rendition plan goes (the origin, to list and wait for
/// its rungs).
pub type PlanSink = Arc<dyn Fn(&StreamName, RenditionPlan) + Send + Sync>;

/// Told a stream's package lease epoch when it is taken here.
pub type EpochSink = Arc<dyn Fn(&StreamName, u64) + Send + Sync>;

/// Where a stream's renditions stand in this process's origin.
pub type ProgressSource = Arc<dyn Fn(&StreamName) -> Option<StreamProgress> + Send + Sync>;

/// Where a stream taken over goes on from.
pub type ResumeSink = Arc<dyn Fn(&StreamName, StreamProgress) + Send + Sync>;

/// What the package claims need of the origin in this process.
#[derive(Clone)]
pub struct PackagerHooks {
    /// Where each stream's rendition plan goes.
    pub plans: PlanSink,
    /// Where a stream's renditions stand now (recorded in the registry as
    /// they change).
    pub progress: ProgressSource,
    /// Continue a stream taken over from another packager from its
    /// recorded progress (called before the stream is announced).
    pub resume: ResumeSink,
    /// Whether a bus stream (`NAME` or `NAME/RUNG`) is being packaged: one
    /// announced long ago and still not packaged (its first subscription
    /// failed) is announced again.
    pub packaging: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    /// The fencing epoch of the package lease of a stream about to be
    /// announced here (a recorder writes it into its keys).
    pub held: EpochSink,
}

/// Media sequence numbers a successor skips past the recorded progress:
/// the segment that was open (its parts already listed) and one that may
/// have closed after the last record.
const RESUME_MARGIN: u64 = 2;

/// `progress` as a successor continues it: past the margin.
fn successor_of(progress: StreamProgress) -> StreamProgress {
    StreamProgress {
        renditions: progress
            .renditions
            .into_iter()
            .map(|(rendition, mut point)| {
                point.next_msn = point.next_msn.saturating_add(RESUME_MARGIN);
                (rendition, point)
            })
            .collect(),
    }
}

/// How many events are read per poll.
const EVENTS_PER_POLL: usize = 512;

/// Runs the package role's side of the registry for as long as it lives.
#[derive(Debug)]
pub struct PackageClaims {
    task: JoinHandle<()>,
    drains: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<usize>>,
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
    pub fn start(bus: &ClusterBus, hooks: PackagerHooks) -> PackageClaims {
        let (drains, requests) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(run(bus.clone(), hooks, requests));
        PackageClaims { task, drains }
    }

    /// A planned stop: claim nothing more, record where each held stream
    /// stands and let its lease go, so that a standby packager takes it at
    /// once rather than after the lease lapses. Resolves to how many were
    /// let go; what is packaged here stays served until the process exits.
    pub async fn drain(&self) -> usize {
        let (reply, released) = tokio::sync::oneshot::channel();
        if self.drains.send(reply).await.is_err() {
            return 0;
        }
        released.await.unwrap_or(0)
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
    /// The progress last recorded in the registry.
    recorded: Option<StreamProgress>,
    /// When each bus stream of it was last announced.
    announced_at: BTreeMap<String, Instant>,
}

/// Whether any transcoder is alive in the cluster.
async fn transcoders(registry: &dyn Registry) -> bool {
    registry
        .nodes()
        .await
        .is_ok_and(|nodes| nodes.iter().any(|n| n.roles.contains(&Role::Transcode)))
}

async fn run(
    bus: ClusterBus,
    hooks: PackagerHooks,
    mut drains: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<usize>>,
) {
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
    let mut registry_reachable = true;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            Some(reply) = drains.recv() => {
                let _ = reply.send(let_go(registry.as_ref(), &hooks, live).await);
                return;
            }
        }
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
                                    recorded: None,
                                    announced_at: BTreeMap::new(),
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
            Err(error) => {
                // The registry is away: what is packaged goes on; nothing
                // is claimed, recorded or let go until it is back. Said
                // once, not every poll.
                if registry_reachable {
                    warn!(%error, "registry unreachable: packaging goes on, claims wait");
                    registry_reachable = false;
                }
                continue;
            }
        }
        if !registry_reachable {
            info!("registry reachable again");
            registry_reachable = true;
            // Nothing could be seen while it was away: no stream counts as
            // abandoned for that time.
            for stream in live.values_mut() {
                stream.seen = Instant::now();
            }
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
                // Taken over from another packager: continue its numbers.
                match registry.progress(name).await {
                    Ok(Some(progress)) => {
                        info!(stream = %name, progress = %progress.encode(), "continuing from the previous packager");
                        (hooks.resume)(name, successor_of(progress));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        // Announcing without it could send numbers back.
                        warn!(stream = %name, %error, "stream progress not read: not packaged yet");
                        continue;
                    }
                }
                if let Some(lease) = stream.keeper.holding().borrow().lease() {
                    (hooks.held)(name, lease.epoch.0);
                }
                stream.announced = true;
                info!(stream = %name, "holding the stream's package lease");
                bus.announce_claimed(name.as_str().to_owned());
                stream
                    .announced_at
                    .insert(name.as_str().to_owned(), Instant::now());
            } else if let Some(progress) = (hooks.progress)(name)
                && stream.recorded.as_ref() != Some(&progress)
            {
                match registry.put_progress(name, &progress).await {
                    Ok(()) => stream.recorded = Some(progress),
                    Err(error) => warn!(stream = %name, %error, "stream progress not recorded"),
                }
            }
            match plan {
                Ok(Some(plan)) if stream.plan.as_ref() != Some(&plan) => {
                    for rung in &plan.rungs {
                        let bus_name = BusName::new(name.clone(), rung.clone()).to_string();
                        if stream.rungs.insert(bus_name.clone()) {
                            stream.announced_at.insert(bus_name.clone(), Instant::now());
                            bus.announce_claimed(bus_name);
                        }
                    }
                    (hooks.plans)(name, plan.clone());
                    stream.plan = Some(plan);
                }
                Ok(_) => {}
                Err(error) => warn!(stream = %name, %error, "rendition plan not read"),
            }
            if sweep {
                // A subscription that failed for good is not retried by
                // the origin: announce its stream again.
                let patience = settings.first_dial + settings.lease_ttl;
                for (bus_name, at) in &mut stream.announced_at {
                    if at.elapsed() >= patience && !(hooks.packaging)(bus_name) {
                        warn!(stream = %bus_name, "announced but not packaged: announced again");
                        bus.announce(ferrocast_bus::StreamEvent::Started(bus_name.clone()));
                        *at = Instant::now();
                    }
                }
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

/// Record where each held stream stands and let every lease go; returns
/// how many were held.
async fn let_go(
    registry: &dyn Registry,
    hooks: &PackagerHooks,
    live: BTreeMap<StreamName, Live>,
) -> usize {
    let mut released = 0;
    for (name, stream) in live {
        if stream.announced
            && let Some(progress) = (hooks.progress)(&name)
            && let Err(error) = registry.put_progress(&name, &progress).await
        {
            warn!(stream = %name, %error, "stream progress not recorded before letting go");
        }
        if stream.keeper.release().await {
            info!(stream = %name, "package lease let go: a standby takes the stream");
            released += 1;
        }
    }
    released
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
