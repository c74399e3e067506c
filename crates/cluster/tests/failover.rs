#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The cluster bus across real gRPC connections, with the registry in
//! memory: a subscription follows its stream from a publishing process
//! that dies to the one that takes the stream over, with one
//! discontinuity, and the package claims announce what their lease holds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrocast_bus::{BusMessage, InProcessBus, MediaBus, StreamEvent, Subscriber};
use ferrocast_cluster::{ClusterBus, ClusterSettings, IngestClaims, NodePresence, PackageClaims};
use ferrocast_hls::{RenditionName, RenditionPlan};
use ferrocast_media::{
    AacParams, AccessUnit, CodecParams, StreamName, Time90k, TrackId, TrackInfo, TrackKind,
};
use ferrocast_registry::{InMemoryRegistry, NodeId, NodeRecord, Registry, Role};

fn settings(node: &str) -> ClusterSettings {
    ClusterSettings {
        lease_ttl: Duration::from_millis(600),
        poll: Duration::from_millis(50),
        ..ClusterSettings::new(NodeId::new(node).unwrap())
    }
}

fn tracks() -> Vec<TrackInfo> {
    let aac = AacParams {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    };
    vec![TrackInfo {
        id: TrackId(257),
        params: CodecParams::Aac(aac),
    }]
}

fn unit(n: i64) -> AccessUnit {
    AccessUnit {
        track: TrackId(257),
        kind: TrackKind::Audio,
        pts: Time90k(n * 1920),
        dts: Time90k(n * 1920),
        keyframe: true,
        data: Bytes::from(vec![n as u8; 8]),
        captured_unix_ms: None,
        trace: None,
    }
}

async fn next(subscriber: &mut Subscriber) -> BusMessage {
    tokio::time::timeout(Duration::from_secs(10), subscriber.recv())
        .await
        .expect("a message in time")
        .expect("the subscription goes on")
}

/// An ingest process on its own runtime (so that dropping the runtime
/// kills it, connections and all): it serves its bus, holds the stream's
/// ingest lease, and publishes `first` then a unit every 20 ms.
struct Process(Option<tokio::runtime::Runtime>);

impl Process {
    /// Dies at once, as with `kill -9`: its tasks and sockets are gone.
    fn kill(mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn ingest_process(registry: Arc<dyn Registry>, node: &'static str, first: i64) -> Process {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let settings = settings(node);
        let bus = ClusterBus::new(InProcessBus::default(), registry.clone(), settings.clone());
        let (addr, _server) = bus.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let _presence = NodePresence::start(
            registry.clone(),
            NodeRecord {
                id: settings.node.clone(),
                roles: vec![Role::Ingest],
                endpoint: format!("http://{addr}"),
                load: 0,
            },
            Duration::from_secs(5),
            ferrocast_cluster::LoadGauge::default(),
        );
        let _claims = IngestClaims::start(&bus, false);
        let publisher = bus.publish("cam").unwrap();
        publisher.send_tracks(tracks());
        let mut n = first;
        loop {
            publisher.send_unit(unit(n));
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Process(Some(runtime))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_follows_its_stream_to_the_next_publishing_process() {
    let memory = InMemoryRegistry::default();
    let registry: Arc<dyn Registry> = Arc::new(memory.clone());
    let a = ingest_process(registry.clone(), "ingest-a", 0);

    let packager = ClusterBus::new(
        InProcessBus::default(),
        registry.clone(),
        settings("package-a"),
    );
    let mut announcements = packager.announcements();
    // The first dial waits for the ingest process to hold the stream.
    let mut subscriber = packager.subscribe("cam").await.unwrap();
    assert_eq!(
        next(&mut subscriber).await,
        BusMessage::Tracks(tracks().into())
    );
    let BusMessage::Unit(first) = next(&mut subscriber).await else {
        panic!("a unit")
    };
    assert!(first.pts.0 < 1000 * 1920, "from process a");

    // Process a dies; b takes the stream once a's lease has expired.
    a.kill();
    let _b = ingest_process(registry.clone(), "ingest-b", 1000);
    let mut discontinuities = 0;
    loop {
        match next(&mut subscriber).await {
            BusMessage::Unit(unit) if unit.pts.0 >= 1000 * 1920 => break,
            BusMessage::Unit(_) | BusMessage::Tracks(_) => {}
            BusMessage::Discontinuity => discontinuities += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(discontinuities, 1, "one discontinuity at the handover");
    let holder = registry
        .holder(&StreamName::new("cam").unwrap(), Role::Ingest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder.holder.as_str(), "ingest-b");
    assert!(holder.epoch.0 >= 2, "a newer epoch: {holder:?}");
    // The packager was told the publisher left, then that it is back.
    let mut seen = Vec::new();
    while let Ok(event) = announcements.try_recv() {
        seen.push(event);
    }
    assert!(
        seen.contains(&StreamEvent::PublisherGone("cam".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&StreamEvent::Resumed("cam".into())),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_claims_announce_the_stream_and_its_planned_rungs_to_one_packager() {
    let registry: Arc<dyn Registry> = Arc::new(InMemoryRegistry::default());
    let _ingest = ingest_process(registry.clone(), "ingest-a", 0);
    let stream = StreamName::new("cam").unwrap();
    let plan = RenditionPlan {
        source_listed: false,
        rungs: vec![RenditionName::new("360p").unwrap()],
    };
    registry.put_plan(&stream, &plan).await.unwrap();

    let (plans_tx, mut plans_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut packagers = Vec::new();
    for node in ["package-a", "package-b"] {
        let bus = ClusterBus::new(InProcessBus::default(), registry.clone(), settings(node));
        let announcements = bus.announcements();
        let tx = plans_tx.clone();
        let claims = PackageClaims::start(
            &bus,
            ferrocast_cluster::PackagerHooks {
                plans: Arc::new(move |stream: &StreamName, plan: RenditionPlan| {
                    let _ = tx.send((node, stream.clone(), plan));
                }),
                progress: Arc::new(|_| None),
                resume: Arc::new(|_, _| {}),
                packaging: Arc::new(|_| true),
                held: Arc::new(|_, _| {}),
            },
        );
        packagers.push((node, bus, announcements, claims));
    }
    let (node, got_stream, got_plan) =
        tokio::time::timeout(Duration::from_secs(10), plans_rx.recv())
            .await
            .unwrap()
            .unwrap();
    assert_eq!((got_stream, got_plan), (stream.clone(), plan));
    let holder = registry
        .holder(&stream, Role::Package)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        holder.holder.as_str(),
        node,
        "the plan went to the lease holder"
    );
    for (name, _bus, announcements, _claims) in &mut packagers {
        let mut seen = Vec::new();
        while let Ok(event) = announcements.try_recv() {
            seen.push(event);
        }
        if *name == node {
            assert_eq!(
                seen,
                [
                    StreamEvent::Started("cam".into()),
                    StreamEvent::Started("cam/360p".into())
                ]
            );
        } else {
            assert_eq!(seen, [], "the standby announces nothing");
        }
    }
}

/// A registry whose `holder` answers can be overridden: the stale answer a
/// lagging replica or a partition would give.
struct Lagging {
    inner: InMemoryRegistry,
    stale: std::sync::Mutex<Option<ferrocast_registry::Lease>>,
}

impl Registry for Lagging {
    fn acquire(
        &self,
        s: &StreamName,
        r: Role,
        n: &NodeId,
        t: Duration,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<ferrocast_registry::Lease>, ferrocast_registry::RegistryError>,
    > {
        self.inner.acquire(s, r, n, t)
    }
    fn renew(
        &self,
        l: &ferrocast_registry::Lease,
        t: Duration,
    ) -> futures::future::BoxFuture<'static, Result<bool, ferrocast_registry::RegistryError>> {
        self.inner.renew(l, t)
    }
    fn release(
        &self,
        l: &ferrocast_registry::Lease,
    ) -> futures::future::BoxFuture<'static, Result<bool, ferrocast_registry::RegistryError>> {
        self.inner.release(l)
    }
    fn holder(
        &self,
        s: &StreamName,
        r: Role,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<ferrocast_registry::Lease>, ferrocast_registry::RegistryError>,
    > {
        if let Some(stale) = self.stale.lock().unwrap().clone() {
            return Box::pin(async move { Ok(Some(stale)) });
        }
        self.inner.holder(s, r)
    }
    fn heartbeat(
        &self,
        n: &NodeRecord,
        t: Duration,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.heartbeat(n, t)
    }
    fn nodes(
        &self,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<NodeRecord>, ferrocast_registry::RegistryError>,
    > {
        self.inner.nodes()
    }
    fn publish_event(
        &self,
        e: &ferrocast_registry::Event,
    ) -> futures::future::BoxFuture<
        'static,
        Result<ferrocast_registry::EventId, ferrocast_registry::RegistryError>,
    > {
        self.inner.publish_event(e)
    }
    fn events(
        &self,
        a: Option<&ferrocast_registry::EventId>,
        m: usize,
    ) -> futures::future::BoxFuture<
        'static,
        Result<
            Vec<(ferrocast_registry::EventId, ferrocast_registry::Event)>,
            ferrocast_registry::RegistryError,
        >,
    > {
        self.inner.events(a, m)
    }
    fn offer_work(
        &self,
        s: &StreamName,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.offer_work(s)
    }
    fn take_work(
        &self,
        n: &NodeId,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<ferrocast_registry::WorkItem>, ferrocast_registry::RegistryError>,
    > {
        self.inner.take_work(n)
    }
    fn ack_work(
        &self,
        w: &ferrocast_registry::WorkItem,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.ack_work(w)
    }
    fn reclaim_work(
        &self,
        n: &NodeId,
        d: Duration,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<ferrocast_registry::WorkItem>, ferrocast_registry::RegistryError>,
    > {
        self.inner.reclaim_work(n, d)
    }
    fn put_plan(
        &self,
        s: &StreamName,
        p: &RenditionPlan,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.put_plan(s, p)
    }
    fn plan(
        &self,
        s: &StreamName,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<RenditionPlan>, ferrocast_registry::RegistryError>,
    > {
        self.inner.plan(s)
    }
    fn put_progress(
        &self,
        s: &StreamName,
        p: &ferrocast_hls::StreamProgress,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.put_progress(s, p)
    }
    fn progress(
        &self,
        s: &StreamName,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<ferrocast_hls::StreamProgress>, ferrocast_registry::RegistryError>,
    > {
        self.inner.progress(s)
    }
    fn put_handover(
        &self,
        s: &StreamName,
        h: &ferrocast_registry::Handover,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.put_handover(s, h)
    }
    fn handover(
        &self,
        s: &StreamName,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<ferrocast_registry::Handover>, ferrocast_registry::RegistryError>,
    > {
        self.inner.handover(s)
    }
    fn put_live_report(
        &self,
        stream: &StreamName,
        role: Role,
        report: &str,
    ) -> futures::future::BoxFuture<'static, Result<(), ferrocast_registry::RegistryError>> {
        self.inner.put_live_report(stream, role, report)
    }
    fn live_report(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<String>, ferrocast_registry::RegistryError>,
    > {
        self.inner.live_report(stream, role)
    }
}

/// A stale writer (a process whose lease passed to another, which the
/// registry still names, as a lagging replica would) is refused: none of
/// its media reaches the subscriber, which goes on with the newer holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_with_a_stale_epoch_is_refused() {
    let lagging = Arc::new(Lagging {
        inner: InMemoryRegistry::default(),
        stale: std::sync::Mutex::new(None),
    });
    let registry: Arc<dyn Registry> = lagging.clone();
    let a = ingest_process(registry.clone(), "ingest-a", 0);
    let packager = ClusterBus::new(
        InProcessBus::default(),
        registry.clone(),
        settings("package-a"),
    );
    let mut subscriber = packager.subscribe("cam").await.unwrap();
    let stream = StreamName::new("cam").unwrap();
    let first = registry
        .holder(&stream, Role::Ingest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.holder.as_str(), "ingest-a");

    // a is cut off (its runtime stops) while b takes the stream: epoch 2.
    a.kill();
    let _b = ingest_process(registry.clone(), "ingest-b", 1000);
    loop {
        if let BusMessage::Unit(unit) = next(&mut subscriber).await
            && unit.pts.0 >= 1000 * 1920
        {
            break;
        }
    }
    // a comes back (a new process under a's name, still publishing under
    // a's old epoch), and the registry lags: it names a with epoch 1.
    let stale_lease = first.clone();
    let _a_again = stale_process(registry.clone(), "ingest-a", 5000, first.epoch.0);
    *lagging.stale.lock().unwrap() = Some(stale_lease);
    // b goes away, so that the subscriber must dial again, and only the
    // stale a is named.
    drop(_b);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while packager.stale_refusals() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale writer was never dialed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing of a's got through.
    while let Some(Some(message)) = futures::FutureExt::now_or_never(subscriber.recv()) {
        if let BusMessage::Unit(unit) = message {
            assert!(
                unit.pts.0 < 5000 * 1920,
                "a stale writer's unit was delivered"
            );
        }
    }
}

/// A process that serves `cam` under a fixed `epoch` whatever the registry
/// says, heartbeating the node record of `node`.
fn stale_process(
    registry: Arc<dyn Registry>,
    node: &'static str,
    first: i64,
    epoch: u64,
) -> Process {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let local = InProcessBus::default();
        let epochs: ferrocast_bus_grpc::EpochOf = Arc::new(move |_| Some(epoch));
        let (addr, _server) = ferrocast_bus_grpc::serve_with(
            ferrocast_bus_grpc::BusServer::fenced(local.clone(), epochs),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let _presence = NodePresence::start(
            registry,
            NodeRecord {
                id: NodeId::new(node).unwrap(),
                roles: vec![Role::Ingest],
                endpoint: format!("http://{addr}"),
                load: 0,
            },
            Duration::from_secs(5),
            ferrocast_cluster::LoadGauge::default(),
        );
        let publisher = local.publish("cam").unwrap();
        publisher.send_tracks(tracks());
        let mut n = first;
        loop {
            publisher.send_unit(unit(n));
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Process(Some(runtime))
}
