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
//!   ([`operator_router`]: `/metrics`, `/healthz`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_config::HlsConfig;
use ferrocast_edge::http_upstream::HttpUpstreamStats;
use ferrocast_edge::server::{EdgeMetrics, EdgeServer, ShutdownReport};
use ferrocast_edge::{
    BreakerState, Coalescing, CoalescingStats, EdgeConfig, HttpUpstream, HttpUpstreamConfig,
    InProcessUpstream, RoutedUpstream, Upstream,
};
use ferrocast_packager::Origin;
use tracing::{info, warn};

/// How much longer than the origin's longest hold (a blocking playlist
/// request, an early part) the edge waits for an answer.
const UPSTREAM_MARGIN: Duration = Duration::from_secs(4);

/// A running edge: the server and the coalescing layer in front of its
/// upstream. Dropping it stops every listener.
pub struct Edge<U: Upstream> {
    server: EdgeServer,
    upstream: Coalescing<U>,
}

impl<U: Upstream> Edge<U> {
    /// The server (addresses, certificate pin, metrics).
    pub fn server(&self) -> &EdgeServer {
        &self.server
    }

    /// The coalescing layer and, behind it, the upstream.
    pub fn upstream(&self) -> &Coalescing<U> {
        &self.upstream
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

/// Starts the edge in front of `upstream`, wrapped in [`Coalescing`].
pub async fn start<U: Upstream>(
    config: &EdgeConfig,
    upstream: U,
    metrics: EdgeMetrics,
) -> anyhow::Result<Edge<U>> {
    let upstream = Coalescing::new(upstream, config.coalesce.clone());
    let server = EdgeServer::start(config, Arc::new(upstream.clone()), metrics)
        .await
        .with_context(|| format!("starting the edge on {}", config.https_listen))?;
    Ok(Edge { server, upstream })
}

/// Starts the edge in front of the origin in this process (`ferrocast up`).
pub async fn start_in_process(
    config: &EdgeConfig,
    hls: &HlsConfig,
    origin: &Origin,
    metrics: EdgeMetrics,
) -> anyhow::Result<Edge<InProcessUpstream>> {
    let upstream = InProcessUpstream::new(
        ferrocast_packager::http::router(origin.clone()),
        Duration::from_millis(hls.max_hold_ms) + UPSTREAM_MARGIN,
    );
    start(config, upstream, metrics).await
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

/// The origin clients behind an edge, for its metrics.
pub trait OriginClients: Upstream + Clone {
    /// Each origin (`host:port`) and its client's counters.
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)>;
}

impl OriginClients for HttpUpstream {
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)> {
        vec![(self.origin().to_owned(), self.stats())]
    }
}

impl OriginClients for RoutedUpstream {
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)> {
        self.stats()
    }
}

/// The edge-only process's operator routes: `/metrics` (the edge's own
/// metrics, its coalescing layer and its origin clients) and `/healthz`.
pub fn operator_router<U: OriginClients>(edge: &Edge<U>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::<U>))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Operator {
            metrics: edge.server().metrics().clone(),
            upstream: edge.upstream().clone(),
        })
}

#[derive(Clone)]
struct Operator<U: Upstream> {
    metrics: EdgeMetrics,
    upstream: Coalescing<U>,
}

async fn metrics<U: OriginClients>(State(op): State<Operator<U>>) -> impl IntoResponse {
    let mut text = op.metrics.render();
    render_origins(&mut text, &op.upstream.upstream().origin_stats());
    render_coalescing(&mut text, &op.upstream.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Appends one metric family in the Prometheus text format.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The origin clients' counters and breaker states, each labelled with
/// its origin's `host:port` (never a path or credentials); one family
/// header each, whatever the number of origins.
fn render_origins(out: &mut String, origins: &[(String, HttpUpstreamStats)]) {
    let labelled: Vec<(String, &HttpUpstreamStats)> = origins
        .iter()
        .map(|(origin, s)| (origin.replace(['"', '\\', '\n'], "_"), s))
        .collect();
    type Counter = fn(&HttpUpstreamStats) -> u64;
    let counters: [(&str, &str, Counter); 7] = [
        (
            "ferrocast_edge_origin_requests_total",
            "Requests the edge made of the origin (after coalescing).",
            |s| s.requests,
        ),
        (
            "ferrocast_edge_origin_attempts_total",
            "Attempts sent to the origin, retries included.",
            |s| s.attempts,
        ),
        (
            "ferrocast_edge_origin_retries_total",
            "Retries after a failed connection or a 502/503/504.",
            |s| s.retries,
        ),
        (
            "ferrocast_edge_origin_failures_total",
            "Attempts that counted as failures for the circuit breaker.",
            |s| s.failures,
        ),
        (
            "ferrocast_edge_origin_rejected_total",
            "Requests refused at once because the circuit breaker was open.",
            |s| s.rejected,
        ),
        (
            "ferrocast_edge_origin_broken_bodies_total",
            "Origin bodies that broke off after their head.",
            |s| s.broken_bodies,
        ),
        (
            "ferrocast_edge_origin_breaker_opened_total",
            "Times the origin's circuit breaker opened.",
            |s| s.breaker_opened,
        ),
    ];
    for (name, help, value) in counters {
        let labels: Vec<(String, u64)> = labelled
            .iter()
            .map(|(origin, s)| (format!("{{origin=\"{origin}\"}}"), value(s)))
            .collect();
        let samples: Vec<(&str, u64)> = labels.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family(out, name, "counter", help, &samples);
    }
    let mut states = Vec::new();
    for (origin, s) in &labelled {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            states.push((
                format!("{{origin=\"{origin}\",state=\"{}\"}}", state.as_str()),
                u64::from(s.breaker == state),
            ));
        }
    }
    let samples: Vec<(&str, u64)> = states.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    family(
        out,
        "ferrocast_edge_origin_breaker_state",
        "gauge",
        "The origin's circuit breaker: 1 for the state it is in.",
        &samples,
    );
}

/// The coalescing layer's counters and gauges.
fn render_coalescing(out: &mut String, s: &CoalescingStats) {
    family(
        out,
        "ferrocast_edge_coalesce_requests_total",
        "counter",
        "Edge upstream requests by outcome: answered from the cache (hit), started a fetch \
         (miss), joined a fetch in flight (coalesced), went upstream alone (bypassed).",
        &[
            ("{outcome=\"hit\"}", s.hits),
            ("{outcome=\"miss\"}", s.misses),
            ("{outcome=\"coalesced\"}", s.coalesced),
            ("{outcome=\"bypassed\"}", s.bypassed),
        ],
    );
    for (name, kind, help, value) in [
        (
            "ferrocast_edge_coalesce_errors_total",
            "counter",
            "Shared fetches that ended in an upstream error.",
            s.errors,
        ),
        (
            "ferrocast_edge_cache_bytes",
            "gauge",
            "Bytes of finished media in the edge's cache.",
            s.cached_bytes,
        ),
        (
            "ferrocast_edge_cache_objects",
            "gauge",
            "Objects in the edge's cache.",
            s.cached_objects,
        ),
        (
            "ferrocast_edge_coalesce_in_flight",
            "gauge",
            "Distinct upstream fetches in flight.",
            s.in_flight,
        ),
    ] {
        family(out, name, kind, help, &[("", value)]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn origin_metrics_are_prometheus_text_with_one_header_per_family() {
        let stats = |requests, breaker| HttpUpstreamStats {
            requests,
            attempts: 7,
            retries: 2,
            failures: 3,
            rejected: 1,
            broken_bodies: 0,
            breaker_opened: 1,
            breaker,
        };
        let mut text = String::new();
        render_origins(
            &mut text,
            &[
                ("packager:8080".to_owned(), stats(5, BreakerState::Open)),
                ("packager-2:8080".to_owned(), stats(9, BreakerState::Closed)),
            ],
        );
        for line in [
            "# TYPE ferrocast_edge_origin_requests_total counter",
            "ferrocast_edge_origin_requests_total{origin=\"packager:8080\"} 5",
            "ferrocast_edge_origin_requests_total{origin=\"packager-2:8080\"} 9",
            "ferrocast_edge_origin_breaker_opened_total{origin=\"packager:8080\"} 1",
            "ferrocast_edge_origin_breaker_state{origin=\"packager:8080\",state=\"open\"} 1",
            "ferrocast_edge_origin_breaker_state{origin=\"packager:8080\",state=\"closed\"} 0",
            "ferrocast_edge_origin_breaker_state{origin=\"packager-2:8080\",state=\"closed\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE ferrocast_edge_origin_requests_total counter")
                .count(),
            1
        );
    }
}
