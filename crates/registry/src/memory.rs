//! The registry in process memory: the all-in-one process and tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferrocast_media::StreamName;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::ids::new_token;
use crate::{Epoch, Lease, NodeId, NodeRecord, Registry, RegistryError, Role};

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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn leases_follow_the_rules() {
        crate::conformance::lease_rules(&InMemoryRegistry::default()).await;
    }
}
