//! The edge's view of the cluster: which packager origin serves a stream
//! (the holder of its package lease, at its node record's endpoint).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocast_edge::OriginResolver;
use ferrocast_media::StreamName;
use ferrocast_registry::{Registry, Role};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::bus::lock;

/// Resolves a stream to the origin of the packager holding it, through
/// the registry. Answers are kept for `fresh` (so a busy edge asks the
/// registry at most that often per stream); while the registry cannot be
/// reached the last answer stands, so viewers keep playing.
#[derive(Clone)]
pub struct RegistryOrigins {
    registry: Arc<dyn Registry>,
    fresh: Duration,
    known: Arc<Mutex<HashMap<String, Answer>>>,
}

/// An origin (or none) as the registry gave it, and when.
type Answer = (Option<String>, Instant);

impl RegistryOrigins {
    /// Resolve through `registry`, keeping answers for `fresh`.
    pub fn new(registry: Arc<dyn Registry>, fresh: Duration) -> Self {
        RegistryOrigins {
            registry,
            fresh,
            known: Arc::default(),
        }
    }
}

async fn lookup(registry: &dyn Registry, stream: &StreamName) -> Result<Option<String>, ()> {
    let Some(lease) = registry
        .holder(stream, Role::Package)
        .await
        .map_err(|_| ())?
    else {
        return Ok(None);
    };
    let nodes = registry.nodes().await.map_err(|_| ())?;
    Ok(nodes
        .into_iter()
        .find(|n| n.id == lease.holder)
        .map(|n| n.endpoint))
}

impl OriginResolver for RegistryOrigins {
    fn origin_of(&self, stream: &str) -> BoxFuture<'static, Option<String>> {
        let this = self.clone();
        let stream = stream.to_owned();
        async move {
            let cached = lock(&this.known).get(&stream).cloned();
            if let Some((origin, at)) = &cached
                && at.elapsed() < this.fresh
            {
                return origin.clone();
            }
            let name = StreamName::new(&stream).ok()?;
            match lookup(this.registry.as_ref(), &name).await {
                Ok(origin) => {
                    let mut known = lock(&this.known);
                    // Bounded: forget answers long stale before adding one.
                    if known.len() >= 10_000 {
                        known.retain(|_, (_, at)| at.elapsed() < this.fresh * 10);
                    }
                    known.insert(stream, (origin.clone(), Instant::now()));
                    origin
                }
                // The registry is away: the last answer stands.
                Err(()) => cached.and_then(|(origin, _)| origin),
            }
        }
        .boxed()
    }
}
