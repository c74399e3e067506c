//! The ingest role's claims: every stream published in this process is
//! held (its ingest lease), announced and offered to the transcoders.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrocast_bus::StreamEvent;
use ferrocast_hls::BusName;
use ferrocast_media::StreamName;
use ferrocast_registry::{Event, EventKind, Holding, LeaseKeeper, Registry, Role};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::bus::ClusterBus;

/// How long a stream may go without a transcoder before it is offered
/// again, at most (the wait doubles from the lease TTL up to this).
const REOFFER_MAX: Duration = Duration::from_secs(60);

/// Runs the ingest role's side of the registry for as long as it lives.
#[derive(Debug)]
pub struct IngestClaims {
    task: JoinHandle<()>,
    drains: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<usize>>,
}

impl Drop for IngestClaims {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Held {
    keeper: LeaseKeeper,
    watcher: JoinHandle<()>,
    mirror: JoinHandle<()>,
}

impl IngestClaims {
    /// Follow the streams published on `bus`'s local bus.
    ///
    /// `transcoding`: whether transcoders serve this cluster, so streams
    /// are offered to them (and offered again when no transcoder holds
    /// one).
    pub fn start(bus: &ClusterBus, transcoding: bool) -> IngestClaims {
        let events = bus.local().announcements();
        let (drains, requests) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(run(bus.clone(), events, transcoding, requests));
        IngestClaims { task, drains }
    }

    /// A planned stop: let every ingest lease go (the streams do not end),
    /// so that the ingest process a publisher reconnects to takes its
    /// stream at once rather than after the lease lapses. Resolves to how
    /// many were let go.
    pub async fn drain(&self) -> usize {
        let (reply, released) = tokio::sync::oneshot::channel();
        if self.drains.send(reply).await.is_err() {
            return 0;
        }
        released.await.unwrap_or(0)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn record(registry: &dyn Registry, kind: EventKind, stream: &StreamName) {
    let event = Event {
        kind,
        stream: stream.clone(),
        lease: None,
        at_unix_ms: now_ms(),
    };
    if let Err(error) = registry.publish_event(&event).await {
        warn!(%stream, %error, "stream event not recorded in the registry");
    }
}

async fn run(
    bus: ClusterBus,
    mut events: broadcast::Receiver<StreamEvent>,
    transcoding: bool,
    mut drains: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<usize>>,
) {
    let mut held: HashMap<StreamName, Held> = HashMap::new();
    let mut graces: HashMap<String, JoinHandle<()>> = HashMap::new();
    // Streams published before we listened.
    for info in bus.local().streams() {
        hold(&bus, &mut held, &info.name, transcoding);
    }
    loop {
        let received = tokio::select! {
            received = events.recv() => received,
            Some(reply) = drains.recv() => {
                let mut released = 0;
                for (stream, h) in held.drain() {
                    h.watcher.abort();
                    h.mirror.abort();
                    bus.forget_held(&stream, Role::Ingest);
                    if h.keeper.release().await {
                        info!(%stream, "ingest lease let go: the publisher's next ingest takes the stream");
                        released += 1;
                    }
                }
                let _ = reply.send(released);
                return;
            }
        };
        let event = match received {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            StreamEvent::Started(name) | StreamEvent::Resumed(name) => {
                if let Some(grace) = graces.remove(&name) {
                    grace.abort();
                }
                hold(&bus, &mut held, &name, transcoding);
            }
            StreamEvent::PublisherGone(name) => {
                let local = bus.local().clone();
                let grace = bus.settings().reconnect_grace;
                let stream = name.clone();
                graces.insert(
                    name,
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        if local.end_stream(&stream).is_ok() {
                            info!(stream, "no publisher within the grace period: stream ends");
                        }
                    }),
                );
            }
            StreamEvent::Ended(name) => {
                if let Some(grace) = graces.remove(&name) {
                    grace.abort();
                }
                let Some(stream) = BusName::parse(&name).filter(BusName::is_source) else {
                    continue;
                };
                if let Some(h) = held.remove(&stream.stream) {
                    h.watcher.abort();
                    h.mirror.abort();
                    bus.forget_held(&stream.stream, Role::Ingest);
                    h.keeper.release().await;
                    record(bus.registry().as_ref(), EventKind::Ended, &stream.stream).await;
                }
            }
            _ => {}
        }
    }
}

/// Hold the ingest lease of source `name` (nothing for a rung or a stream
/// already held).
fn hold(bus: &ClusterBus, held: &mut HashMap<StreamName, Held>, name: &str, transcoding: bool) {
    let Some(stream) = BusName::parse(name).filter(BusName::is_source) else {
        return;
    };
    let stream = stream.stream;
    if held.contains_key(&stream) {
        return;
    }
    let settings = bus.settings();
    let keeper = LeaseKeeper::start(
        bus.registry().clone(),
        stream.clone(),
        Role::Ingest,
        settings.node.clone(),
        settings.lease_ttl,
    );
    let watcher = tokio::spawn(watch_lease(
        bus.registry().clone(),
        stream.clone(),
        keeper.holding(),
        settings.lease_ttl,
        transcoding,
    ));
    let mirror = bus.mirror_holding(stream.clone(), Role::Ingest, keeper.holding());
    held.insert(
        stream,
        Held {
            keeper,
            watcher,
            mirror,
        },
    );
}

/// Once the lease is held: the stream is announced and offered to the
/// transcoders, and offered again whenever no transcoder holds it.
async fn watch_lease(
    registry: Arc<dyn Registry>,
    stream: StreamName,
    mut holding: tokio::sync::watch::Receiver<Holding>,
    ttl: Duration,
    transcoding: bool,
) {
    if holding.wait_for(|h| h.lease().is_some()).await.is_err() {
        return;
    }
    let epoch = holding.borrow().lease().map(|l| l.epoch.0);
    info!(%stream, epoch, "holding the stream's ingest lease");
    record(registry.as_ref(), EventKind::Started, &stream).await;
    if !transcoding {
        return;
    }
    if let Err(error) = registry.offer_work(&stream).await {
        warn!(%stream, %error, "stream not offered to the transcoders");
    }
    // A transcoder that died after taking the stream leaves no work item
    // behind: once nobody holds the transcode lease (checked every quarter
    // TTL), offer it again. An offer for a stream that is held after all
    // is acknowledged and dropped by whoever takes it. While no
    // transcoder answers, offers back off up to REOFFER_MAX.
    let mut wait = ttl;
    loop {
        tokio::time::sleep(ttl / 4).await;
        match registry.holder(&stream, Role::Transcode).await {
            Ok(Some(_)) => wait = ttl,
            Ok(None) => {
                info!(%stream, "no transcoder holds the stream: offered again");
                if let Err(error) = registry.offer_work(&stream).await {
                    warn!(%stream, %error, "stream not offered to the transcoders");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(REOFFER_MAX);
            }
            Err(_) => {}
        }
    }
}
