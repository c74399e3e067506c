#![allow(clippy::unwrap_used)]

//! A model of two nodes contending for one stream's lease through real
//! [`LeaseKeeper`]s, under random partitions (a node's registry calls
//! fail) and random time steps, on one clock (Tokio's, paused): at no
//! step do both nodes believe they hold the lease, and the packager's
//! [`Fence`], fed the writes of whoever believes it holds, never accepts
//! a write older than one it accepted (two holders are never both
//! accepted).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocast_hls::{RenditionPlan, StreamProgress};
use ferrocast_media::StreamName;
use ferrocast_registry::{
    Event, EventId, Fence, Handover, Holding, InMemoryRegistry, Lease, LeaseKeeper, NodeId,
    NodeRecord, Registry, RegistryError, Role, WorkItem,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use proptest::prelude::*;

const TTL: Duration = Duration::from_millis(900);

/// The in-memory registry, unreachable for the nodes in `cut`.
struct Partitioned {
    inner: InMemoryRegistry,
    cut: Mutex<HashSet<NodeId>>,
}

impl Partitioned {
    fn reachable(&self, node: &NodeId) -> bool {
        !self.cut.lock().unwrap().contains(node)
    }
}

fn down<T: Send + 'static>() -> BoxFuture<'static, Result<T, RegistryError>> {
    async { Err(RegistryError::Unavailable("partitioned".into())) }.boxed()
}

impl Registry for Partitioned {
    fn acquire(
        &self,
        stream: &StreamName,
        role: Role,
        node: &NodeId,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
        if !self.reachable(node) {
            return down();
        }
        self.inner.acquire(stream, role, node, ttl)
    }
    fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, RegistryError>> {
        if !self.reachable(&lease.holder) {
            return down();
        }
        self.inner.renew(lease, ttl)
    }
    fn release(&self, lease: &Lease) -> BoxFuture<'static, Result<bool, RegistryError>> {
        if !self.reachable(&lease.holder) {
            return down();
        }
        self.inner.release(lease)
    }
    fn holder(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
        self.inner.holder(stream, role)
    }
    fn heartbeat(
        &self,
        node: &NodeRecord,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.heartbeat(node, ttl)
    }
    fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeRecord>, RegistryError>> {
        self.inner.nodes()
    }
    fn publish_event(&self, event: &Event) -> BoxFuture<'static, Result<EventId, RegistryError>> {
        self.inner.publish_event(event)
    }
    fn events(
        &self,
        after: Option<&EventId>,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<(EventId, Event)>, RegistryError>> {
        self.inner.events(after, max)
    }
    fn offer_work(&self, stream: &StreamName) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.offer_work(stream)
    }
    fn take_work(
        &self,
        worker: &NodeId,
    ) -> BoxFuture<'static, Result<Option<WorkItem>, RegistryError>> {
        self.inner.take_work(worker)
    }
    fn ack_work(&self, item: &WorkItem) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.ack_work(item)
    }
    fn reclaim_work(
        &self,
        worker: &NodeId,
        min_idle: Duration,
    ) -> BoxFuture<'static, Result<Vec<WorkItem>, RegistryError>> {
        self.inner.reclaim_work(worker, min_idle)
    }
    fn put_plan(
        &self,
        stream: &StreamName,
        plan: &RenditionPlan,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.put_plan(stream, plan)
    }
    fn plan(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<RenditionPlan>, RegistryError>> {
        self.inner.plan(stream)
    }
    fn put_progress(
        &self,
        stream: &StreamName,
        progress: &StreamProgress,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.put_progress(stream, progress)
    }
    fn progress(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<StreamProgress>, RegistryError>> {
        self.inner.progress(stream)
    }
    fn put_handover(
        &self,
        stream: &StreamName,
        handover: &Handover,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.put_handover(stream, handover)
    }
    fn handover(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<Handover>, RegistryError>> {
        self.inner.handover(stream)
    }
    fn put_live_report(
        &self,
        stream: &StreamName,
        role: Role,
        report: &str,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.inner.put_live_report(stream, role, report)
    }
    fn live_report(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<String>, RegistryError>> {
        self.inner.live_report(stream, role)
    }
}

/// One step of the schedule.
#[derive(Debug, Clone)]
enum Step {
    /// Cut node `0` or `1` off the registry, or reconnect it.
    Toggle(usize),
    /// Let this many milliseconds pass.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..2).prop_map(Step::Toggle),
        (0u64..1500).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn two_holders_are_never_both_accepted(schedule in proptest::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async move {
            let registry = Arc::new(Partitioned {
                inner: InMemoryRegistry::default(),
                cut: Mutex::default(),
            });
            let shared: Arc<dyn Registry> = registry.clone();
            let stream = StreamName::new("cam").unwrap();
            let nodes = [NodeId::new("a").unwrap(), NodeId::new("b").unwrap()];
            let keepers: Vec<LeaseKeeper> = nodes
                .iter()
                .map(|n| LeaseKeeper::start(shared.clone(), stream.clone(), Role::Package, n.clone(), TTL))
                .collect();
            let mut fence = Fence::default();
            let mut newest_admitted = 0;
            for step in schedule {
                match step {
                    Step::Toggle(i) => {
                        let mut cut = registry.cut.lock().unwrap();
                        if !cut.remove(&nodes[i]) {
                            cut.insert(nodes[i].clone());
                        }
                    }
                    Step::Wait(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                }
                // Let every task due now run.
                tokio::task::yield_now().await;
                let held: Vec<Option<Lease>> = keepers
                    .iter()
                    .map(|k| match &*k.holding().borrow() {
                        Holding::Held(lease) => Some(lease.clone()),
                        Holding::Waiting => None,
                    })
                    .collect();
                assert!(
                    !(held[0].is_some() && held[1].is_some()),
                    "both nodes believe they hold the lease: {held:?}"
                );
                // Whoever believes it holds writes; the fence judges.
                for lease in held.into_iter().flatten() {
                    if fence.admit(&stream, lease.epoch).is_ok() {
                        assert!(lease.epoch.0 >= newest_admitted, "an older epoch was admitted");
                        newest_admitted = lease.epoch.0;
                    }
                }
            }
        });
    }
}
