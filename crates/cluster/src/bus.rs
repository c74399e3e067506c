//! The media bus of one process in a cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use ferrocast_bus::{
    BusError, BusStats, InProcessBus, MediaBus, Publisher, StreamEvent, StreamInfo, SubscribeFuture,
};
use ferrocast_hls::BusName;
use ferrocast_media::StreamName;
use ferrocast_registry::{Epoch, Fence, Holding, Registry, Role, StaleEpoch};
use tokio::sync::{broadcast, watch};

use crate::locate::publishing_role;
use crate::remote::{self, RemoteState};
use crate::settings::ClusterSettings;

/// A process's [`MediaBus`] in a cluster: publishes on the local bus
/// (which [`ferrocast_bus_grpc::serve`] offers to other processes), and
/// subscribes to other processes' streams through the registry. Cheap to
/// clone.
#[derive(Clone)]
pub struct ClusterBus {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) local: InProcessBus,
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) settings: ClusterSettings,
    /// Announcements: the local bus's, forwarded, and the cluster's own
    /// (streams this process's claims took, remote publishers leaving).
    pub(crate) events: broadcast::Sender<StreamEvent>,
    /// Remote subscriptions by bus name, for [`MediaBus::end_stream`].
    pub(crate) remotes: Mutex<HashMap<String, Vec<Weak<RemoteState>>>>,
    /// Streams this process's claims took and announced, by bus name.
    pub(crate) claimed: Mutex<BTreeMap<String, ()>>,
    /// The leases this process holds now, with their epochs: what it
    /// publishes is served under them.
    pub(crate) held: Mutex<HashMap<(StreamName, Role), Epoch>>,
    /// The newest epoch seen per stream, per publishing role: a
    /// publishing process with an older one is refused.
    pub(crate) fences: Mutex<HashMap<Role, Fence>>,
    /// Publishing processes refused for a stale epoch.
    pub(crate) stale_refusals: std::sync::atomic::AtomicU64,
    /// Remote subscriptions that went on from another publishing process.
    pub(crate) publisher_changes: std::sync::atomic::AtomicU64,
    /// Planned handovers followed: joined without a discontinuity, and not.
    pub(crate) handovers_joined: std::sync::atomic::AtomicU64,
    pub(crate) handovers_broken: std::sync::atomic::AtomicU64,
    /// Streams this process holds for its role, for its node record.
    pub(crate) load: crate::node::LoadGauge,
}

impl std::fmt::Debug for ClusterBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBus")
            .field("node", &self.inner.settings.node)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClusterBus {
    /// A cluster bus over `local` (the streams this process publishes) and
    /// `registry`. Must be called within a Tokio runtime.
    pub fn new(
        local: InProcessBus,
        registry: Arc<dyn Registry>,
        settings: ClusterSettings,
    ) -> ClusterBus {
        let (events, _) = broadcast::channel(1024);
        let mut local_events = local.announcements();
        let forward = events.clone();
        tokio::spawn(async move {
            loop {
                match local_events.recv().await {
                    Ok(event) => {
                        let _ = forward.send(event);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        ClusterBus {
            inner: Arc::new(Inner {
                local,
                registry,
                settings,
                events,
                remotes: Mutex::default(),
                claimed: Mutex::default(),
                held: Mutex::default(),
                fences: Mutex::default(),
                stale_refusals: std::sync::atomic::AtomicU64::new(0),
                publisher_changes: std::sync::atomic::AtomicU64::new(0),
                handovers_joined: std::sync::atomic::AtomicU64::new(0),
                handovers_broken: std::sync::atomic::AtomicU64::new(0),
                load: crate::node::LoadGauge::default(),
            }),
        }
    }

    /// The local bus: what this process publishes.
    pub fn local(&self) -> &InProcessBus {
        &self.inner.local
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.inner.registry
    }

    /// How many streams this process's claims hold: give it to its
    /// [`NodePresence`](crate::NodePresence).
    pub fn load_gauge(&self) -> crate::node::LoadGauge {
        self.inner.load.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.inner.settings
    }

    /// Serve the local bus on `addr` to the other processes, each stream
    /// under the epoch of the lease this process holds for it (a stream it
    /// does not hold is refused).
    pub async fn serve(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
        let bus = self.clone();
        let epochs: ferrocast_bus_grpc::EpochOf = Arc::new(move |name: &str| {
            let name = BusName::parse(name)?;
            let role = publishing_role(&name);
            lock(&bus.inner.held).get(&(name.stream, role)).map(|e| e.0)
        });
        ferrocast_bus_grpc::serve_with(
            ferrocast_bus_grpc::BusServer::fenced(self.inner.local.clone(), epochs),
            addr,
        )
        .await
    }

    /// Keep the held-lease table in step with a keeper's `holding` until
    /// the task is aborted (the caller aborts it when it lets the stream go,
    /// and calls [`ClusterBus::forget_held`]).
    pub(crate) fn mirror_holding(
        &self,
        stream: StreamName,
        role: Role,
        mut holding: watch::Receiver<Holding>,
    ) -> tokio::task::JoinHandle<()> {
        let bus = self.clone();
        tokio::spawn(async move {
            loop {
                let epoch = holding.borrow_and_update().lease().map(|l| l.epoch);
                {
                    let mut held = lock(&bus.inner.held);
                    match epoch {
                        Some(epoch) => held.insert((stream.clone(), role), epoch),
                        None => held.remove(&(stream.clone(), role)),
                    };
                }
                if holding.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// This process no longer holds `role` of `stream`.
    pub(crate) fn forget_held(&self, stream: &StreamName, role: Role) {
        lock(&self.inner.held).remove(&(stream.clone(), role));
    }

    /// Admit a publishing process of `name` that serves it under `epoch`:
    /// refused if an older epoch than one already seen for the stream.
    pub(crate) fn admit(&self, name: &BusName, epoch: Epoch) -> Result<(), StaleEpoch> {
        let admitted = lock(&self.inner.fences)
            .entry(publishing_role(name))
            .or_default()
            .admit(&name.stream, epoch);
        if admitted.is_err() {
            self.inner
                .stale_refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        admitted
    }

    /// How many publishing processes were refused for a stale epoch (their
    /// lease had passed to a newer holder).
    pub fn stale_refusals(&self) -> u64 {
        self.inner
            .stale_refusals
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This process's counters, since it started.
    pub fn stats(&self) -> ClusterStats {
        let read = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        ClusterStats {
            streams_held: self.inner.load.get(),
            stale_refusals: read(&self.inner.stale_refusals),
            publisher_changes: read(&self.inner.publisher_changes),
            handovers_joined: read(&self.inner.handovers_joined),
            handovers_broken: read(&self.inner.handovers_broken),
        }
    }

    /// A claim took `name`: the roles in this process start on it.
    pub(crate) fn announce_claimed(&self, name: String) {
        let fresh = lock(&self.inner.claimed).insert(name.clone(), ()).is_none();
        if fresh {
            let _ = self.inner.events.send(StreamEvent::Started(name));
        }
    }

    /// A claim let `name` go.
    pub(crate) fn forget_claimed(&self, name: &str) {
        lock(&self.inner.claimed).remove(name);
    }

    /// The live remote subscriptions to `stream`.
    fn remote_states(&self, stream: &str) -> Vec<Arc<RemoteState>> {
        lock(&self.inner.remotes)
            .get(stream)
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// End every remote subscription to `stream` here: its publishing side
    /// is gone for good. Subscribers get `End`.
    pub(crate) fn end_remote(&self, stream: &str) {
        for state in self.remote_states(stream) {
            state.end();
        }
    }

    pub(crate) fn announce(&self, event: StreamEvent) {
        let _ = self.inner.events.send(event);
    }
}

/// A process's cluster counters ([`ClusterBus::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Streams its claims hold for its role (`u32::MAX` while a transcoder
    /// drains).
    pub streams_held: u32,
    /// Publishing processes refused for a stale epoch.
    pub stale_refusals: u64,
    /// Remote subscriptions that went on from another publishing process
    /// (after a crash, a pause or a handover).
    pub publisher_changes: u64,
    /// Planned handovers a subscription joined without a discontinuity.
    pub handovers_joined: u64,
    /// Planned handovers whose next publisher started later than the
    /// handover point (a discontinuity).
    pub handovers_broken: u64,
}

impl MediaBus for ClusterBus {
    fn publish(&self, stream: &str) -> Result<Publisher, BusError> {
        self.inner.local.publish(stream)
    }

    fn subscribe(&self, stream: &str) -> SubscribeFuture {
        if let Some(subscriber) = self.inner.local.subscribe(stream) {
            return Box::pin(std::future::ready(Ok(subscriber)));
        }
        Box::pin(remote::open(self.clone(), stream.to_owned()))
    }

    /// Ends a stream published in this process. A stream another process
    /// publishes is not ended from here ([`BusError::StillPublished`]):
    /// its own process ends it after its grace period, and a stream whose
    /// publishing side is gone for good is ended by the claims that hold
    /// it (the publisher of a rung, a transcoder, can die and be replaced
    /// well after a reconnect grace period).
    fn end_stream(&self, stream: &str) -> Result<(), BusError> {
        match self.inner.local.end_stream(stream) {
            Err(BusError::NotFound { .. }) => {}
            other => return other,
        }
        if self.remote_states(stream).is_empty() {
            return Err(BusError::NotFound {
                stream: stream.to_owned(),
            });
        }
        Err(BusError::StillPublished {
            stream: stream.to_owned(),
        })
    }

    fn streams(&self) -> Vec<StreamInfo> {
        let mut all = self.inner.local.streams();
        let claimed: Vec<String> = lock(&self.inner.claimed).keys().cloned().collect();
        for name in claimed {
            if all.iter().any(|s| s.name == name) {
                continue;
            }
            let states = self.remote_states(&name);
            all.push(StreamInfo {
                publisher_live: states.iter().any(|s| s.publisher_live()),
                subscribers: states.len(),
                tracks: None,
                name,
            });
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn announcements(&self) -> broadcast::Receiver<StreamEvent> {
        self.inner.events.subscribe()
    }

    fn stats(&self) -> BusStats {
        self.inner.local.stats()
    }
}
