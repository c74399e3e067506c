//! The transcode role's claims: streams come from the registry's work
//! queue; holding a stream's transcode lease is what makes this process
//! its transcoder.
//!
//! A planned drain hands each stream over without a discontinuity
//! ([`TranscodeClaims::drain`]): the draining transcoder offers the
//! stream (a `handover` record and a work item); the transcoder that takes
//! the item sees the offer, transcodes the stream on standby (its rungs on
//! its own bus, served to nobody yet) and says it is ready; the draining
//! one stops its rungs before the next source keyframe, records that
//! keyframe and lets its lease go; the standby takes the lease, and the
//! packager's subscriptions splice its output in at that keyframe. Any
//! step that does not come in time falls back to letting the lease go
//! (one discontinuity, as when a transcoder dies).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrocast_bus::{MediaBus, StreamEvent};
use ferrocast_hls::{BusName, RenditionPlan};
use ferrocast_media::{StreamName, Time90k};
use ferrocast_registry::{Handover, Holding, LeaseKeeper, NodeId, Role, WorkItem};
use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::bus::ClusterBus;

/// How long a draining transcoder waits for a standby to be ready, and
/// a standby for the draining one to cut: a few GOPs.
const HANDOVER_STEP_WAIT: Duration = Duration::from_secs(8);

/// Stops transcoding a stream at its next source keyframe (the transcode
/// service's `hand_over`): resolves to that keyframe's pts, `None` if the
/// stream ended first.
pub type HandOverFn = Arc<dyn Fn(StreamName) -> BoxFuture<'static, Option<Time90k>> + Send + Sync>;

/// How one stream left a draining transcoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drained {
    /// Handed over to `to` before the source keyframe at `at`: no
    /// discontinuity.
    HandedOver {
        /// The stream.
        stream: StreamName,
        /// The transcoder that took it.
        to: NodeId,
        /// The keyframe's pts.
        at: Time90k,
    },
    /// Its lease was let go without a handover (no standby came in time,
    /// or the stream ended): whoever takes it goes on after a
    /// discontinuity.
    Released {
        /// The stream.
        stream: StreamName,
        /// Why.
        reason: String,
    },
}

/// Runs the transcode role's side of the registry for as long as it lives.
#[derive(Debug)]
pub struct TranscodeClaims {
    task: JoinHandle<()>,
    held: Arc<AtomicUsize>,
    drains: mpsc::Sender<DrainRequest>,
}

/// A request to drain, and where its outcome goes.
struct DrainRequest {
    hand_over: HandOverFn,
    reply: oneshot::Sender<Vec<Drained>>,
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
        let (drains, requests) = mpsc::channel(1);
        let task = tokio::spawn(run(bus.clone(), max_streams, held.clone(), requests));
        TranscodeClaims { task, held, drains }
    }

    /// Take no more work and hand every held stream over to another
    /// transcoder (see the module's text), all at once; resolves when each
    /// has left, with how.
    pub async fn drain(&self, hand_over: HandOverFn) -> Vec<Drained> {
        let (reply, outcome) = oneshot::channel();
        if self
            .drains
            .send(DrainRequest { hand_over, reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        outcome.await.unwrap_or_default()
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

async fn run(
    bus: ClusterBus,
    max_streams: usize,
    count: Arc<AtomicUsize>,
    mut drains: mpsc::Receiver<DrainRequest>,
) {
    let mut events = bus.announcements();
    let mut draining = false;
    // When each held stream last had an ingest holder: a stream whose
    // ingest died and whose publisher did not come back is let go.
    let mut ingest_seen: HashMap<StreamName, tokio::time::Instant> = HashMap::new();
    let abandoned_after = bus.settings().reconnect_grace + bus.settings().lease_ttl * 2;
    let mut last_sweep = tokio::time::Instant::now();
    let mut held: HashMap<StreamName, (LeaseKeeper, [JoinHandle<()>; 2])> = HashMap::new();
    let settings = bus.settings().clone();
    let registry = bus.registry().clone();
    let mut ticks = tokio::time::interval(settings.poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            Some(request) = drains.recv(), if !draining => {
                draining = true;
                // Never the least loaded again: no work comes here.
                bus.load_gauge().set(usize::MAX);
                let streams: Vec<_> = held.drain().collect();
                count.store(0, Ordering::SeqCst);
                let bus = bus.clone();
                tokio::spawn(async move {
                    let all = streams.into_iter().map(|(stream, (keeper, tasks))| {
                        hand_over(&bus, stream, keeper, tasks, &request.hand_over)
                    });
                    let _ = request.reply.send(futures::future::join_all(all).await);
                });
                continue;
            }
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
                if !draining {
                    held_now(&bus, &count, held.len());
                }
                continue;
            }
        }
        if draining {
            continue;
        }
        if last_sweep.elapsed() >= settings.lease_ttl {
            last_sweep = tokio::time::Instant::now();
            for stream in abandoned(&bus, &held, &mut ingest_seen, abandoned_after).await {
                if let Some((keeper, tasks)) = held.remove(&stream) {
                    warn!(%stream, "no ingest holds the stream any more: transcode lease let go");
                    tasks.iter().for_each(JoinHandle::abort);
                    bus.forget_held(&stream, Role::Transcode);
                    keeper.release().await;
                    // Ends the source subscription: the rungs end.
                    bus.end_remote(stream.as_str());
                    bus.forget_claimed(stream.as_str());
                }
            }
        }
        held_now(&bus, &count, held.len());
        if held.len() >= max_streams || !least_loaded(&bus, held.len()).await {
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
        held_now(&bus, &count, held.len());
    }
}

/// The held streams no ingest has held for `after` (checked now). A
/// registry that does not answer says nothing, and its time away does not
/// count.
async fn abandoned<T>(
    bus: &ClusterBus,
    held: &HashMap<StreamName, T>,
    seen: &mut HashMap<StreamName, tokio::time::Instant>,
    after: Duration,
) -> Vec<StreamName> {
    let now = tokio::time::Instant::now();
    seen.retain(|stream, _| held.contains_key(stream));
    let mut gone = Vec::new();
    for stream in held.keys() {
        let last = *seen.entry(stream.clone()).or_insert(now);
        match bus.registry().holder(stream, Role::Ingest).await {
            Ok(Some(_)) => {
                seen.insert(stream.clone(), now);
            }
            Ok(None) if now.duration_since(last) >= after => gone.push(stream.clone()),
            Ok(None) => {}
            Err(_) => {
                seen.insert(stream.clone(), now);
            }
        }
    }
    gone
}

/// This process holds `n` streams: counted, and published in its node
/// record (at once).
fn held_now(bus: &ClusterBus, count: &AtomicUsize, n: usize) {
    count.store(n, Ordering::SeqCst);
    bus.load_gauge().set(n);
}

/// Whether no live transcoder holds fewer streams than this one (`mine`):
/// work goes to the least loaded first, so streams spread evenly. When the
/// registry cannot say, yes.
async fn least_loaded(bus: &ClusterBus, mine: usize) -> bool {
    let me = &bus.settings().node;
    match bus.registry().nodes().await {
        Ok(nodes) => !nodes
            .iter()
            .any(|n| &n.id != me && n.roles.contains(&Role::Transcode) && (n.load as usize) < mine),
        Err(_) => true,
    }
}

/// Hand `stream` over to a standby (see the module's text), or let its
/// lease go.
async fn hand_over(
    bus: &ClusterBus,
    stream: StreamName,
    keeper: LeaseKeeper,
    tasks: [JoinHandle<()>; 2],
    stop: &HandOverFn,
) -> Drained {
    let registry = bus.registry();
    let me = bus.settings().node.clone();
    let offered = async {
        registry
            .put_handover(&stream, &Handover::Offered { from: me.clone() })
            .await?;
        registry.offer_work(&stream).await
    };
    let outcome = match offered.await {
        Err(error) => Err(format!("the registry did not take the offer: {error}")),
        Ok(()) => match wait_for_handover(bus, &stream, |h| match h {
            Handover::Ready { from, to } if *from == me => Some(to.clone()),
            _ => None,
        })
        .await
        {
            None => Err("no standby was ready in time".to_owned()),
            Some(to) => {
                match tokio::time::timeout(HANDOVER_STEP_WAIT, stop(stream.clone())).await {
                    Ok(Some(at)) => Ok((to, at)),
                    Ok(None) => Err("the stream ended before its next keyframe".to_owned()),
                    Err(_) => Err("no source keyframe came in time".to_owned()),
                }
            }
        },
    };
    let drained = match outcome {
        Ok((to, at)) => {
            let cut = Handover::Cut {
                from: me.clone(),
                to: to.clone(),
                at: at.0,
            };
            if let Err(error) = registry.put_handover(&stream, &cut).await {
                warn!(%stream, %error, "handover point not recorded: the standby takes the lease when it lapses");
            }
            info!(%stream, %to, at = at.0, "stream handed over");
            Drained::HandedOver {
                stream: stream.clone(),
                to,
                at,
            }
        }
        Err(reason) => {
            warn!(%stream, %reason, "no handover: letting the lease go (the next transcoder goes on after a discontinuity)");
            Drained::Released {
                stream: stream.clone(),
                reason,
            }
        }
    };
    tasks.iter().for_each(JoinHandle::abort);
    bus.forget_held(&stream, Role::Transcode);
    keeper.release().await;
    drained
}

/// Poll `stream`'s handover record until `accept` takes it, for at most
/// [`HANDOVER_STEP_WAIT`].
async fn wait_for_handover<T>(
    bus: &ClusterBus,
    stream: &StreamName,
    accept: impl Fn(&Handover) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + HANDOVER_STEP_WAIT;
    loop {
        if let Ok(Some(record)) = bus.registry().handover(stream).await
            && let Some(accepted) = accept(&record)
        {
            return Some(accepted);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(bus.settings().poll).await;
    }
}

/// Transcode `stream` on standby for `from`, which offered it: start
/// transcoding (rungs on this process's bus, served to nobody while
/// another holds the lease), say so once every planned rung is published
/// here, and wait for `from` to cut and let its lease go.
async fn stand_by(bus: &ClusterBus, stream: &StreamName, from: NodeId) {
    let me = bus.settings().node.clone();
    info!(%stream, %from, "standing by to take the stream over");
    bus.announce_claimed(stream.as_str().to_owned());
    let registry = bus.registry();
    let deadline = tokio::time::Instant::now() + HANDOVER_STEP_WAIT;
    loop {
        let rungs_here = match registry.plan(stream).await {
            Ok(Some(plan)) => plan.rungs.iter().all(|rung| {
                let name = BusName::new(stream.clone(), rung.clone()).to_string();
                bus.local()
                    .streams()
                    .iter()
                    .any(|s| s.name == name && s.publisher_live)
            }),
            _ => false,
        };
        if rungs_here {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(%stream, "standby not ready in time: taking the stream when its lease is let go");
            return;
        }
        tokio::time::sleep(bus.settings().poll).await;
    }
    let ready = Handover::Ready {
        from: from.clone(),
        to: me.clone(),
    };
    if let Err(error) = registry.put_handover(stream, &ready).await {
        warn!(%stream, %error, "standby readiness not recorded");
        return;
    }
    let cut = wait_for_handover(bus, stream, |h| match h {
        Handover::Cut { from: f, to, at } if *f == from && *to == me => Some(*at),
        _ => None,
    })
    .await;
    match cut {
        Some(at) => info!(%stream, at, "the draining transcoder cut: taking the stream"),
        None => warn!(%stream, "no cut came: taking the stream when its lease is let go"),
    }
}

/// Try to take the item's stream: hold its lease, acknowledge the item,
/// announce the stream. An item whose stream another transcoder holds is
/// acknowledged and dropped, unless that transcoder offered it for a
/// handover: then this one stands by first ([`stand_by`]).
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
    let standby = match (
        registry.holder(&stream, Role::Transcode).await,
        registry.handover(&stream).await,
    ) {
        (Ok(Some(lease)), Ok(Some(Handover::Offered { from })))
            if lease.holder == from && from != settings.node =>
        {
            stand_by(bus, &stream, from).await;
            true
        }
        _ => false,
    };
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
        if standby {
            // Stop the standby transcode: its source subscription ends.
            bus.end_remote(stream.as_str());
            bus.forget_claimed(stream.as_str());
        }
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
