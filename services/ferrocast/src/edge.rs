//! The edge: the HTTPS / HTTP/3 server in front of a packager origin,
//! through the coalescing cache (concurrent requests for the same playlist
//! state or part cost one origin call, and finished parts and segments are
//! served from memory, bounded by `[edge.coalesce]`).
//!
//! The same [`start`] serves both deployments:
//!
//! - `ferrocast up` with `[edge]`: the origin's router called in process
//!   ([`start_in_process`], no socket in between);
//! - `ferrocast edge`: a remote origin over HTTP ([`remote_origin`], from
//!   `[edge.origin]` or `--origin`), with its own operator listener
//!   ([`operator_router`]: `/metrics`, `/healthz`, `/readyz`).
//!
//! With `[recording]`, closed recordings are served too (`/vod/…`, read
//! from the object store: [`WithRecordings`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_config::HlsConfig;
use ferrocast_edge::server::{EdgeMetrics, EdgeServer, OriginStats, ShutdownReport};
use ferrocast_edge::upstream::{
    StreamingResponse, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use ferrocast_edge::{
    Coalescing, EdgeConfig, HttpUpstream, HttpUpstreamConfig, InProcessUpstream, RoutedUpstream,
    Upstream,
};
use ferrocast_packager::Origin;
use ferrocast_recorder::StoreUpstream;
use ferrocast_recorder::vod_upstream::VOD_PREFIX;
use futures::future::BoxFuture;
use tracing::{info, warn};

/// How much longer than the origin's longest hold (a blocking playlist
/// request, an early part) the edge waits for an answer.
const UPSTREAM_MARGIN: Duration = Duration::from_secs(4);

/// A running edge: the server in front of the coalescing layer and its
/// upstream. Dropping it stops every listener.
pub struct Edge {
    server: EdgeServer,
    draining: Arc<AtomicBool>,
}

impl Edge {
    /// The server (addresses, certificate pin, metrics).
    pub fn server(&self) -> &EdgeServer {
        &self.server
    }

    /// Stops the edge gracefully: new connections are refused at once,
    /// HTTP/2 and HTTP/3 clients get GOAWAY, and requests in flight get
    /// `edge.shutdown_drain_ms` to finish, or until `cut_short` resolves
    /// (a second signal: `None`, everything closes when the process exits).
    pub async fn drain(
        self,
        config: &EdgeConfig,
        cut_short: impl std::future::Future<Output = ()>,
    ) -> Option<ShutdownReport> {
        self.draining.store(true, Ordering::SeqCst);
        let drain = Duration::from_millis(config.shutdown_drain_ms);
        let shutdown = self.server.shutdown(drain);
        info!(
            drain_ms = config.shutdown_drain_ms,
            "edge draining: refusing new connections, finishing requests in flight"
        );
        tokio::select! {
            report = shutdown => Some(report),
            () = cut_short => {
                warn!("second signal: closing the edge's connections without draining");
                None
            }
        }
    }
}

/// The live upstream, and closed recordings (`/vod/…`) from the object
/// store when `[recording]` is set.
pub struct WithRecordings<U> {
    live: U,
    vod: Option<StoreUpstream>,
}

impl<U: Upstream> WithRecordings<U> {
    fn upstream_of(&self, path: &str) -> &dyn Upstream {
        match &self.vod {
            Some(vod) if path.starts_with(VOD_PREFIX) => vod,
            _ => &self.live,
        }
    }
}

impl<U: Upstream> Upstream for WithRecordings<U> {
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        self.upstream_of(&req.path).fetch(req)
    }

    fn fetch_stream(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
        self.upstream_of(&req.path).fetch_stream(req)
    }
}

impl<U: OriginStats> OriginStats for WithRecordings<U> {
    fn origin_stats(&self) -> Vec<(String, ferrocast_edge::http_upstream::HttpUpstreamStats)> {
        self.live.origin_stats()
    }
}

/// Starts the edge in front of `upstream` (and `recordings`, if any),
/// wrapped in [`Coalescing`]; the upstream's metrics join `metrics`'
/// registry.
pub async fn start<U: Upstream + OriginStats + 'static>(
    config: &EdgeConfig,
    upstream: U,
    recordings: Option<StoreUpstream>,
    metrics: EdgeMetrics,
) -> anyhow::Result<Edge> {
    let upstream = WithRecordings {
        live: upstream,
        vod: recordings,
    };
    let upstream = Coalescing::new(upstream, config.coalesce.clone());
    metrics
        .register_upstream(&upstream)
        .context("edge upstream metrics")?;
    let server = EdgeServer::start(config, Arc::new(upstream.clone()), metrics)
        .await
        .with_context(|| format!("starting the edge on {}", config.https_listen))?;
    Ok(Edge {
        server,
        draining: Arc::default(),
    })
}

/// Starts the edge in front of the origin in this process (`ferrocast up`).
pub async fn start_in_process(
    config: &EdgeConfig,
    hls: &HlsConfig,
    origin: &Origin,
    recordings: Option<StoreUpstream>,
    metrics: EdgeMetrics,
) -> anyhow::Result<Edge> {
    let upstream = InProcessUpstream::new(
        ferrocast_packager::http::router(origin.clone()),
        Duration::from_millis(hls.max_hold_ms) + UPSTREAM_MARGIN,
    );
    start(config, upstream, recordings, metrics).await
}

/// The HTTP client for `[edge.origin]` (`ferrocast edge`).
pub fn remote_origin(config: &EdgeConfig) -> anyhow::Result<HttpUpstream> {
    let origin = config.origin.clone().context(
        "ferrocast edge needs an origin: pass --origin http://PACKAGER:8080 or set \
         [edge.origin] base_url in the config file (or, in a cluster, --redis-url: each \
         stream then goes to the packager the registry names)",
    )?;
    HttpUpstream::new(origin).context("edge.origin")
}

/// The edge's origins through the registry (`ferrocast edge` without an
/// origin, in a cluster): each stream goes to the packager holding it.
/// `[edge.origin]`, if present, sets the client's knobs (its `base_url`
/// is not used).
pub fn routed_origin(
    config: &EdgeConfig,
    registry: Arc<dyn ferrocast_registry::Registry>,
    fresh: Duration,
) -> RoutedUpstream {
    let template = config
        .origin
        .clone()
        .unwrap_or_else(|| HttpUpstreamConfig::new("http://origin.invalid"));
    RoutedUpstream::new(
        Arc::new(ferrocast_cluster::RegistryOrigins::new(registry, fresh)),
        template,
    )
}

/// The edge-only process's operator routes: `/metrics` (the process's one
/// registry: the edge's own metrics, its coalescing layer and its origin
/// clients), `/healthz` (the process is alive) and `/readyz` (503 once it
/// drains).
///
/// Readiness does not follow the origin: an edge whose origin is down
/// still answers viewers (502 or 503 with the reason, cached media), and
/// its circuit breaker only closes again through requests, so an edge
/// taken out of rotation for a broken origin could never come back.
pub fn operator_router(edge: &Edge) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Operator {
            metrics: edge.server().metrics().clone(),
            draining: edge.draining.clone(),
        })
}

#[derive(Clone)]
struct Operator {
    metrics: EdgeMetrics,
    draining: Arc<AtomicBool>,
}

async fn metrics(State(op): State<Operator>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        op.metrics.render(),
    )
}

async fn readyz(State(op): State<Operator>) -> impl IntoResponse {
    if op.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
