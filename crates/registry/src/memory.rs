//! The registry in process memory: the all-in-one process and tests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

// tokio's clock: the same as std's, except in tests that pause time.
use tokio::time::Instant;

use ferrocast_hls::{RenditionPlan, StreamProgress};
use ferrocast_media::StreamName;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::ids::new_token;
use crate::{
    EVENT_LOG_LEN, Epoch, Event, EventId, HANDOVER_TTL, Handover, LIVE_REPORT_TTL, Lease, NodeId,
    NodeRecord, PLAN_TTL, Registry, RegistryError, Role, WorkItem,
};

/// A [`Registry`] in memory, with the same lease and epoch rules as the
/// Redis one. Clones share the state.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRegistry {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    leases: HashMap<(StreamName, Role), (Lease, Instant)>,
    epochs: HashMap<(StreamName, Role), u64>,
    nodes: HashMap<NodeId, (NodeRecord, Instant)>,
    /// The event log: sequence number and event, oldest first.
    events: VecDeque<(u64, Event)>,
    next_event: u64,
    /// Work never delivered, oldest first.
    work: VecDeque<WorkItem>,
    /// Work delivered and not acknowledged: delivered when, to whom.
    pending: Vec<(WorkItem, Instant, NodeId)>,
    next_work: u64,
    plans: HashMap<StreamName, (RenditionPlan, Instant)>,
    progress: HashMap<StreamName, (StreamProgress, Instant)>,
    handovers: HashMap<StreamName, (Handover, Instant)>,
    live_reports: HashMap<(StreamName, Role), (String, Instant)>,
}

impl InMemoryRegistry {
    fn with<T>(&self, f: impl FnOnce(&mut State, Instant) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state, Instant::now())
    }
}

impl State {
    fn live(&mut self, key: &(StreamName, Role), now: Instant) -> Option<&Lease> {
        if self.leases.get(key).is_some_and(|(_, until)| *until <= now) {
            self.leases.remove(key);
        }
        self.leases.get(key).map(|(lease, _)| lease)
    }
}

impl Registry for InMemoryRegistry {
    fn acquire(
        &self,
        stream: &StreamName,
        role: Role,
        node: &NodeId,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
        let key = (stream.clone(), role);
        let lease = self.with(|state, now| {
            if state.live(&key, now).is_some() {
                return None;
            }
            let epoch = state.epochs.entry(key.clone()).or_insert(0);
            *epoch += 1;
            let lease = Lease {
                stream: key.0.clone(),
                role,
                holder: node.clone(),
                epoch: Epoch(*epoch),
                token: new_token(),
            };
            state.leases.insert(key, (lease.clone(), now + ttl));
            Some(lease)
        });
        async move { Ok(lease) }.boxed()
    }

    fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, RegistryError>> {
        let key = (lease.stream.clone(), lease.role);
        let renewed = self.with(|state, now| {
            if state
                .live(&key, now)
                .is_some_and(|held| held.token == lease.token)
            {
                if let Some((_, until)) = state.leases.get_mut(&key) {
                    *until = now + ttl;
                }
                true
            } else {
                false
            }
        });
        async move { Ok(renewed) }.boxed()
    }

    fn release(&self, lease: &Lease) -> BoxFuture<'static, Result<bool, RegistryError>> {
        let key = (lease.stream.clone(), lease.role);
        let released = self.with(|state, now| {
            if state
                .live(&key, now)
                .is_some_and(|held| held.token == lease.token)
            {
                state.leases.remove(&key);
                true
            } else {
                false
            }
        });
        async move { Ok(released) }.boxed()
    }

    fn holder(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>> {
        let key = (stream.clone(), role);
        let lease = self.with(|state, now| state.live(&key, now).cloned());
        async move { Ok(lease) }.boxed()
    }

    fn heartbeat(
        &self,
        node: &NodeRecord,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.with(|state, now| {
            state
                .nodes
                .insert(node.id.clone(), (node.clone(), now + ttl));
        });
        async move { Ok(()) }.boxed()
    }

    fn publish_event(&self, event: &Event) -> BoxFuture<'static, Result<EventId, RegistryError>> {
        let id = self.event_log().publish(event);
        async move { Ok(id) }.boxed()
    }

    fn events(
        &self,
        after: Option<&EventId>,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<(EventId, Event)>, RegistryError>> {
        let events = self.event_log().after(after, max);
        async move { Ok(events) }.boxed()
    }

    fn offer_work(&self, stream: &StreamName) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.with(|state, _| {
            state.next_work += 1;
            let id = state.next_work.to_string();
            state.work.push_back(WorkItem {
                id,
                stream: stream.clone(),
            });
        });
        async move { Ok(()) }.boxed()
    }

    fn take_work(
        &self,
        worker: &NodeId,
    ) -> BoxFuture<'static, Result<Option<WorkItem>, RegistryError>> {
        let item = self.with(|state, now| {
            let item = state.work.pop_front()?;
            state.pending.push((item.clone(), now, worker.clone()));
            Some(item)
        });
        async move { Ok(item) }.boxed()
    }

    fn ack_work(&self, item: &WorkItem) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.with(|state, _| {
            state
                .pending
                .retain(|(pending, _, _)| pending.id != item.id)
        });
        async move { Ok(()) }.boxed()
    }

    fn reclaim_work(
        &self,
        worker: &NodeId,
        min_idle: Duration,
    ) -> BoxFuture<'static, Result<Vec<WorkItem>, RegistryError>> {
        let items = self.with(|state, now| {
            let mut items = Vec::new();
            for (item, delivered, owner) in &mut state.pending {
                if now.saturating_duration_since(*delivered) >= min_idle {
                    *delivered = now;
                    *owner = worker.clone();
                    items.push(item.clone());
                }
            }
            items
        });
        async move { Ok(items) }.boxed()
    }

    fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeRecord>, RegistryError>> {
        let mut nodes = self.with(|state, now| {
            state.nodes.retain(|_, (_, until)| *until > now);
            state
                .nodes
                .values()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
        });
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        async move { Ok(nodes) }.boxed()
    }

    fn put_plan(
        &self,
        stream: &StreamName,
        plan: &RenditionPlan,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.with(|state, now| {
            state
                .plans
                .insert(stream.clone(), (plan.clone(), now + PLAN_TTL));
        });
        async move { Ok(()) }.boxed()
    }

    fn plan(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<RenditionPlan>, RegistryError>> {
        let plan = self.with(|state, now| {
            state
                .plans
                .get(stream)
                .filter(|(_, until)| *until > now)
                .map(|(plan, _)| plan.clone())
        });
        async move { Ok(plan) }.boxed()
    }

    fn put_progress(
        &self,
        stream: &StreamName,
        progress: &StreamProgress,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.with(|state, now| {
            state
                .progress
                .insert(stream.clone(), (progress.clone(), now + PLAN_TTL));
        });
        async move { Ok(()) }.boxed()
    }

    fn progress(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<StreamProgress>, RegistryError>> {
        let progress = self.with(|state, now| {
            state
                .progress
                .get(stream)
                .filter(|(_, until)| *until > now)
                .map(|(progress, _)| progress.clone())
        });
        async move { Ok(progress) }.boxed()
    }

    fn put_handover(
        &self,
        stream: &StreamName,
        handover: &Handover,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        self.with(|state, now| {
            state
                .handovers
                .insert(stream.clone(), (handover.clone(), now + HANDOVER_TTL));
        });
        async move { Ok(()) }.boxed()
    }

    fn handover(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<Handover>, RegistryError>> {
        let handover = self.with(|state, now| {
            state
                .handovers
                .get(stream)
                .filter(|(_, until)| *until > now)
                .map(|(handover, _)| handover.clone())
        });
        async move { Ok(handover) }.boxed()
    }

    fn put_live_report(
        &self,
        stream: &StreamName,
        role: Role,
        report: &str,
    ) -> BoxFuture<'static, Result<(), RegistryError>> {
        let stored = crate::check_live_report(stream, report).map(|()| {
            self.with(|state, now| {
                state.live_reports.retain(|_, (_, until)| *until > now);
                state.live_reports.insert(
                    (stream.clone(), role),
                    (report.to_owned(), now + LIVE_REPORT_TTL),
                );
            })
        });
        async move { stored }.boxed()
    }

    fn live_report(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<String>, RegistryError>> {
        let report = self.with(|state, now| {
            state
                .live_reports
                .get(&(stream.clone(), role))
                .filter(|(_, until)| *until > now)
                .map(|(report, _)| report.clone())
        });
        async move { Ok(report) }.boxed()
    }
}

impl InMemoryRegistry {
    fn event_log(&self) -> InMemoryEvents<'_> {
        InMemoryEvents(self)
    }
}

/// The event and work operations, apart from the lease ones above.
struct InMemoryEvents<'a>(&'a InMemoryRegistry);

impl InMemoryEvents<'_> {
    fn publish(&self, event: &Event) -> EventId {
        self.0.with(|state, _| {
            state.next_event += 1;
            let seq = state.next_event;
            state.events.push_back((seq, event.clone()));
            while state.events.len() > EVENT_LOG_LEN {
                state.events.pop_front();
            }
            EventId(seq.to_string())
        })
    }

    fn after(&self, after: Option<&EventId>, max: usize) -> Vec<(EventId, Event)> {
        let after: u64 = after.and_then(|id| id.0.parse().ok()).unwrap_or(0);
        self.0.with(|state, _| {
            state
                .events
                .iter()
                .filter(|(seq, _)| *seq > after)
                .take(max)
                .map(|(seq, event)| (EventId(seq.to_string()), event.clone()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn leases_follow_the_rules() {
        crate::conformance::lease_rules(&InMemoryRegistry::default()).await;
    }

    #[tokio::test]
    async fn events_and_work_follow_the_rules() {
        crate::conformance::event_and_work_rules(&InMemoryRegistry::default()).await;
        crate::conformance::plan_rules(&InMemoryRegistry::default()).await;
    }
}
