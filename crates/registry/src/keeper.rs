//! Holding a lease over time: take it when free, renew it well before it
//! expires, and say so the moment it may no longer be held.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_media::StreamName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Lease, NodeId, Registry, Role};

/// Where a [`LeaseKeeper`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Not held: someone else holds it, or the registry cannot be reached.
    Waiting,
    /// Held: write with this lease's epoch.
    Held(Lease),
}

impl Holding {
    /// The lease, when held.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            Holding::Held(lease) => Some(lease),
            Holding::Waiting => None,
        }
    }
}

/// Keeps one role of one stream for this node: tries to take it every
/// `ttl / 3` while someone else holds it, renews it every `ttl / 3` while
/// held. It counts a lease as lost (and stops reporting it held) when the
/// registry says it is gone **or** when `ttl` minus a margin has passed
/// since the last renewal it could confirm: with the registry unreachable
/// the holder must stop before another node could take over.
pub struct LeaseKeeper {
    holding: watch::Receiver<Holding>,
    task: JoinHandle<()>,
    registry: Arc<dyn Registry>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("holding", &*self.holding.borrow())
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// Start keeping `role` of `stream` for `node`, with leases of `ttl`.
    pub fn start(
        registry: Arc<dyn Registry>,
        stream: StreamName,
        role: Role,
        node: NodeId,
        ttl: Duration,
    ) -> LeaseKeeper {
        let (tx, holding) = watch::channel(Holding::Waiting);
        let task = tokio::spawn(keep(registry.clone(), stream, role, node, ttl, tx));
        LeaseKeeper {
            holding,
            task,
            registry,
        }
    }

    /// The current state, and a way to wait for changes.
    pub fn holding(&self) -> watch::Receiver<Holding> {
        self.holding.clone()
    }

    /// Stop, giving the lease up if held (a planned handover: the next
    /// holder need not wait for it to expire).
    pub async fn release(self) -> bool {
        self.task.abort();
        let lease = self.holding.borrow().lease().cloned();
        match lease {
            Some(lease) => self.registry.release(&lease).await.unwrap_or(false),
            None => false,
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        // Without `release` the lease simply expires (as when the process
        // dies).
        self.task.abort();
    }
}

async fn keep(
    registry: Arc<dyn Registry>,
    stream: StreamName,
    role: Role,
    node: NodeId,
    ttl: Duration,
    holding: watch::Sender<Holding>,
) {
    let period = ttl / 3;
    // Stop counting the lease held this long before it could expire: the
    // registry's clock and ours are not the same clock.
    let margin = ttl / 10;
    let mut held: Option<(Lease, Instant)> = None;
    loop {
        held = match held {
            None => {
                let asked = Instant::now();
                match registry.acquire(&stream, role, &node, ttl).await {
                    Ok(Some(lease)) => {
                        holding.send_replace(Holding::Held(lease.clone()));
                        Some((lease, asked))
                    }
                    _ => None,
                }
            }
            Some((lease, confirmed)) => {
                let asked = Instant::now();
                match registry.renew(&lease, ttl).await {
                    Ok(true) => Some((lease, asked)),
                    Ok(false) => {
                        holding.send_replace(Holding::Waiting);
                        None
                    }
                    // Unreachable: still ours until the deadline.
                    Err(_) if Instant::now() < confirmed + ttl - margin => Some((lease, confirmed)),
                    Err(_) => {
                        holding.send_replace(Holding::Waiting);
                        None
                    }
                }
            }
        };
        let wake = match &held {
            // Never sleep past the moment the lease must count as lost.
            Some((_, confirmed)) => (Instant::now() + period).min(*confirmed + ttl - margin),
            None => Instant::now() + period,
        };
        tokio::time::sleep_until(wake).await;
        if held
            .as_ref()
            .is_some_and(|(_, confirmed)| Instant::now() >= *confirmed + ttl - margin)
        {
            // No renewal came through in time: from now on another node
            // may hold it. Claim it afresh (a new epoch) when it is free.
            holding.send_replace(Holding::Waiting);
            held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::{Event, EventId, InMemoryRegistry, NodeRecord, RegistryError, WorkItem};

    const TTL: Duration = Duration::from_millis(600);

    async fn until_held(keeper: &LeaseKeeper) -> Lease {
        let mut rx = keeper.holding();
        let held = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|h| h.lease().is_some()),
        )
        .await
        .expect("held in time")
        .unwrap()
        .clone();
        held.lease().cloned().unwrap()
    }

    fn keeper(registry: &Arc<dyn Registry>, node: &str) -> LeaseKeeper {
        LeaseKeeper::start(
            registry.clone(),
            StreamName::new("cam").unwrap(),
            Role::Transcode,
            NodeId::new(node).unwrap(),
            TTL,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn one_holder_and_the_other_takes_over_when_it_dies_or_hands_over() {
        let registry: Arc<dyn Registry> = Arc::new(InMemoryRegistry::default());
        let a = keeper(&registry, "a");
        let first = until_held(&a).await;
        let b = keeper(&registry, "b");
        // Renewed by a, b waits, for several lease lifetimes.
        tokio::time::sleep(TTL * 3).await;
        assert_eq!(*b.holding().borrow(), Holding::Waiting);
        assert_eq!(a.holding().borrow().lease(), Some(&first));
        // a dies without a word (kill -9): b takes over once it expired.
        drop(a);
        let second = until_held(&b).await;
        assert_eq!(second.holder.as_str(), "b");
        assert!(second.epoch > first.epoch);
        // A planned handover: released at once, c need not wait a TTL.
        let c = keeper(&registry, "c");
        assert!(b.release().await);
        let third = until_held(&c).await;
        assert!(third.epoch > second.epoch);
    }

    /// A registry that stops answering after the first claim.
    struct Unreachable(InMemoryRegistry, std::sync::atomic::AtomicBool);

    impl Registry for Unreachable {
        fn acquire(
            &self,
            stream: &StreamName,
            role: Role,
            node: &NodeId,
            ttl: Duration,
        ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return async { Err(RegistryError::Unavailable("down".into())) }.boxed();
            }
            self.0.acquire(stream, role, node, ttl)
        }
        fn renew(&self, _: &Lease, _: Duration) -> BoxFuture<'static, Result<bool, RegistryError>> {
            async { Err(RegistryError::Unavailable("down".into())) }.boxed()
        }
        fn release(&self, lease: &Lease) -> BoxFuture<'static, Result<bool, RegistryError>> {
            self.0.release(lease)
        }
        fn holder(
            &self,
            stream: &StreamName,
            role: Role,
        ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
            self.0.holder(stream, role)
        }
        fn heartbeat(
            &self,
            node: &NodeRecord,
            ttl: Duration,
        ) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.heartbeat(node, ttl)
        }
        fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeRecord>, RegistryError>> {
            self.0.nodes()
        }
        fn publish_event(
            &self,
            event: &Event,
        ) -> BoxFuture<'static, Result<EventId, RegistryError>> {
            self.0.publish_event(event)
        }
        fn events(
            &self,
            after: Option<&EventId>,
            max: usize,
        ) -> BoxFuture<'static, Result<Vec<(EventId, Event)>, RegistryError>> {
            self.0.events(after, max)
        }
        fn offer_work(&self, stream: &StreamName) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.offer_work(stream)
        }
        fn take_work(
            &self,
            worker: &NodeId,
        ) -> BoxFuture<'static, Result<Option<WorkItem>, RegistryError>> {
            self.0.take_work(worker)
        }
        fn ack_work(&self, item: &WorkItem) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.ack_work(item)
        }
        fn reclaim_work(
            &self,
            worker: &NodeId,
            min_idle: Duration,
        ) -> BoxFuture<'static, Result<Vec<WorkItem>, RegistryError>> {
            self.0.reclaim_work(worker, min_idle)
        }
        fn put_plan(
            &self,
            stream: &StreamName,
            plan: &ferrocast_hls::RenditionPlan,
        ) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.put_plan(stream, plan)
        }
        fn plan(
            &self,
            stream: &StreamName,
        ) -> BoxFuture<'static, Result<Option<ferrocast_hls::RenditionPlan>, RegistryError>>
        {
            self.0.plan(stream)
        }
        fn put_progress(
            &self,
            stream: &StreamName,
            progress: &ferrocast_hls::StreamProgress,
        ) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.put_progress(stream, progress)
        }
        fn progress(
            &self,
            stream: &StreamName,
        ) -> BoxFuture<'static, Result<Option<ferrocast_hls::StreamProgress>, RegistryError>>
        {
            self.0.progress(stream)
        }
        fn put_handover(
            &self,
            stream: &StreamName,
            handover: &crate::Handover,
        ) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.put_handover(stream, handover)
        }
        fn handover(
            &self,
            stream: &StreamName,
        ) -> BoxFuture<'static, Result<Option<crate::Handover>, RegistryError>> {
            self.0.handover(stream)
        }
        fn put_live_report(
            &self,
            stream: &StreamName,
            role: Role,
            report: &str,
        ) -> BoxFuture<'static, Result<(), RegistryError>> {
            self.0.put_live_report(stream, role, report)
        }
        fn live_report(
            &self,
            stream: &StreamName,
            role: Role,
        ) -> BoxFuture<'static, Result<Option<String>, RegistryError>> {
            self.0.live_report(stream, role)
        }
    }

    /// With the registry unreachable the holder cannot know whether its
    /// lease still stands: it stops counting it held before it could have
    /// expired (so before another node could take it).
    #[tokio::test(start_paused = true)]
    async fn a_holder_cut_off_from_the_registry_stops_before_its_lease_could_expire() {
        let inner = Arc::new(Unreachable(InMemoryRegistry::default(), false.into()));
        let registry: Arc<dyn Registry> = inner.clone();
        let a = keeper(&registry, "a");
        until_held(&a).await;
        let held_at = Instant::now();
        inner.1.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut rx = a.holding();
        tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|h| *h == Holding::Waiting),
        )
        .await
        .expect("gave up in time")
        .unwrap();
        assert!(held_at.elapsed() < TTL, "{:?}", held_at.elapsed());
        // ... while the registry still had it: nobody else held it yet.
        let stream = StreamName::new("cam").unwrap();
        let still = inner.0.holder(&stream, Role::Transcode).await.unwrap();
        assert_eq!(still.map(|l| l.holder), Some(NodeId::new("a").unwrap()));
    }
}
