//! What every role process of a cluster shares: the Redis registry, its
//! node record, the media bus served to the other processes, and the
//! operator routes (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_bus::InProcessBus;
use ferrocast_cluster::{ClusterBus, ClusterSettings, ClusterStats, NodePresence};
use ferrocast_config::{ClusterConfig, Config};
use ferrocast_registry::{NodeId, NodeRecord, Registry, Role};
use ferrocast_registry_redis::RedisRegistry;
use ferrocast_telemetry::Metrics;
use tokio::task::JoinHandle;

/// This process as a member of the cluster.
pub struct Membership {
    /// The media bus: local publications, remote subscriptions.
    pub bus: ClusterBus,
    /// Where the bus is served, for processes that publish.
    pub bus_addr: Option<SocketAddr>,
    /// Whether this process takes work (`/readyz`).
    pub readiness: Readiness,
    registry: Arc<dyn Registry>,
    role: Role,
    node: NodeId,
    advertise: Option<String>,
    _bus_server: Option<JoinHandle<()>>,
}

impl Membership {
    /// This process's node id.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Start heartbeating the node record, reachable at `addr` (or at
    /// `[cluster] advertise`). Returns the endpoint advertised.
    pub fn register(&self, addr: SocketAddr) -> anyhow::Result<String> {
        let endpoint = match &self.advertise {
            Some(advertise) => advertise.clone(),
            None => {
                anyhow::ensure!(
                    !addr.ip().is_unspecified(),
                    "listening on {addr}: set cluster.advertise (FERROCAST_CLUSTER__ADVERTISE) \
                     to the URL other processes reach this one at, for instance \
                     http://POD_IP:{}",
                    addr.port()
                );
                format!("http://{addr}")
            }
        };
        let presence = NodePresence::start(
            self.registry.clone(),
            NodeRecord {
                id: self.node.clone(),
                roles: vec![self.role],
                endpoint: endpoint.clone(),
                load: 0,
            },
            self.bus.settings().node_ttl,
            self.bus.load_gauge(),
        );
        let _ = self.readiness.presence.set(Arc::new(presence));
        Ok(endpoint)
    }
}

/// This process's node id: `[cluster] node_id`, else `HOSTNAME` (a pod's
/// name), else the role and a random suffix.
fn node_id(config: &ClusterConfig, role: Role) -> anyhow::Result<NodeId> {
    if let Some(id) = &config.node_id {
        return NodeId::new(id).context("cluster.node_id");
    }
    if let Ok(host) = std::env::var("HOSTNAME")
        && let Ok(id) = NodeId::new(&host)
    {
        return Ok(id);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    NodeId::new(&format!(
        "{}-{:x}{:x}",
        role.as_str(),
        std::process::id(),
        nanos
    ))
    .context("generated node id")
}

/// The registry named by `[cluster] redis_url`.
pub fn registry(config: &ClusterConfig) -> anyhow::Result<Arc<dyn Registry>> {
    let url = config.redis_url.as_ref().context(
        "role processes need the Redis registry: set cluster.redis_url \
         (FERROCAST_CLUSTER__REDIS_URL), like redis://redis:6379",
    )?;
    let registry = RedisRegistry::open(url.expose(), &config.prefix)?;
    Ok(Arc::new(registry))
}

/// The cluster timings of `config`.
pub fn settings(config: &Config, node: NodeId) -> ClusterSettings {
    let cluster = &config.cluster;
    ClusterSettings {
        lease_ttl: Duration::from_millis(cluster.lease_ttl_ms),
        node_ttl: Duration::from_millis(cluster.node_ttl_ms),
        poll: Duration::from_millis(cluster.poll_ms),
        reconnect_grace: Duration::from_millis(config.ingest.reconnect_grace_ms),
        ..ClusterSettings::new(node)
    }
}

/// Join the cluster as `role` with its own readiness `check`. A process
/// that publishes (`serve_bus`: ingest, transcode) serves its bus on
/// `[cluster] bus_listen`. Nothing is advertised until
/// [`Membership::register`].
pub async fn join(
    config: &Config,
    role: Role,
    serve_bus: bool,
    check: ReadyCheck,
) -> anyhow::Result<Membership> {
    let cluster = &config.cluster;
    let node = node_id(cluster, role)?;
    let registry = registry(cluster)?;
    let settings = settings(config, node.clone());
    let bus = ClusterBus::new(InProcessBus::default(), registry.clone(), settings);
    let (bus_addr, server) = if serve_bus {
        let (addr, server) = bus
            .serve(cluster.bus_listen)
            .await
            .with_context(|| format!("binding the media bus on {}", cluster.bus_listen))?;
        (Some(addr), Some(server))
    } else {
        (None, None)
    };
    Ok(Membership {
        bus,
        bus_addr,
        readiness: Readiness {
            presence: Arc::default(),
            draining: Arc::default(),
            check,
        },
        registry,
        role,
        node,
        advertise: cluster.advertise.clone(),
        _bus_server: server,
    })
}

/// What `/readyz` checks beyond the registry and draining: `None` when
/// ready, else why not.
pub type ReadyCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Whether this process takes work: it is registered and the registry
/// answers, it is not draining, and its own check passes.
#[derive(Clone)]
pub struct Readiness {
    presence: Arc<OnceLock<Arc<NodePresence>>>,
    draining: Arc<AtomicBool>,
    check: ReadyCheck,
}

impl Readiness {
    /// From now on `/readyz` answers 503: the process is stopping.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the last heartbeat reached the registry.
    fn registry_reachable(&self) -> bool {
        self.presence.get().is_some_and(|p| p.registry_reachable())
    }

    fn answer(&self) -> (StatusCode, String) {
        // The process's own reason first: it says more than "registry
        // unreachable" of a process that never registers (a transcoder
        // without an encoder).
        let reason = if self.draining.load(Ordering::SeqCst) {
            Some("draining".to_owned())
        } else if let Some(reason) = (self.check)() {
            Some(reason)
        } else if !self.registry_reachable() {
            Some("registry unreachable".to_owned())
        } else {
            None
        };
        match reason {
            None => (StatusCode::OK, "ready\n".to_owned()),
            Some(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        }
    }
}

#[derive(Clone)]
struct Operator {
    readiness: Readiness,
    bus: ClusterBus,
    metrics: Arc<Metrics>,
    alive: ReadyCheck,
}

/// `/healthz` (alive: `alive` passes; never depends on the registry),
/// `/readyz` and `/metrics`.
pub fn operator_router(member: &Membership, metrics: Arc<Metrics>, alive: ReadyCheck) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Operator {
            readiness: member.readiness.clone(),
            bus: member.bus.clone(),
            metrics,
            alive,
        })
}

async fn healthz(State(op): State<Operator>) -> impl IntoResponse {
    match (op.alive)() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn readyz(State(op): State<Operator>) -> impl IntoResponse {
    op.readiness.answer()
}

async fn metrics_text(State(op): State<Operator>) -> impl IntoResponse {
    record_cluster_stats(
        &op.metrics.cluster,
        &op.bus.stats(),
        op.readiness.registry_reachable(),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        op.metrics.render(),
    )
}

/// Bring the cluster metrics up to `stats` (read at each scrape).
fn record_cluster_stats(
    metrics: &ferrocast_telemetry::ClusterMetrics,
    stats: &ClusterStats,
    reachable: bool,
) {
    let catch_up = |counter: &prometheus::IntCounter, total: u64| {
        counter.inc_by(total.saturating_sub(counter.get()));
    };
    metrics
        .streams_held
        .set(i64::from(stats.streams_held.min(i32::MAX as u32)));
    metrics.registry_reachable.set(i64::from(reachable));
    catch_up(&metrics.stale_publishers_refused, stats.stale_refusals);
    catch_up(&metrics.publisher_changes, stats.publisher_changes);
    catch_up(
        &metrics.handovers.with_label_values(&["joined"]),
        stats.handovers_joined,
    );
    catch_up(
        &metrics.handovers.with_label_values(&["discontinuity"]),
        stats.handovers_broken,
    );
}
