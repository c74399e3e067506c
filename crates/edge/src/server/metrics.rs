//! The edge's Prometheus metrics, in the process's one registry (or a
//! fresh one when the edge runs alone).

use super::upstream_metrics::OriginStats;
use crate::{Coalescing, Upstream};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// Edge metrics. Cheap to clone (the metric handles are shared).
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    registry: Registry,
    /// Requests by protocol (`h1`, `h2`, `h3`), kind (`multivariant`,
    /// `playlist`, `init`, `part`, `segment`, `preflight`, `other`) and
    /// status.
    pub requests: IntCounterVec,
    /// Upstream fetches that gave no usable answer, by error
    /// (`unreachable`, `timeout`, `circuit_open`, `bad_playlist`).
    pub upstream_errors: IntCounterVec,
    /// Requests refused with 429 by a rate limit, by limit (`ip`, `token`).
    pub rate_limited: IntCounterVec,
    /// Requests let through without a bucket because a rate limit's key
    /// table was full of active keys (it fails open), by limit.
    pub rate_limit_untracked: IntCounterVec,
    /// Concurrent viewers of each stream on this edge (sessions seen
    /// within `edge.viewers.window_secs`), updated every
    /// `edge.viewers.interval_ms`. A stream without viewers has no series.
    pub viewers: IntGaugeVec,
    /// Concurrent viewers of each stream over every edge sharing the
    /// Redis of `edge.viewers.redis_url`; no series while Redis cannot be
    /// read.
    pub viewers_cluster: IntGaugeVec,
    /// Failed or timed-out exchanges with the viewer-count Redis.
    pub viewer_sync_errors: IntCounter,
    /// Requests of sessions not counted because a viewer-tracking cap
    /// (`edge.viewers.max_*`) was reached.
    pub viewer_requests_untracked: IntCounter,
    /// Connections per listener (`https`, `h3`, `plain`, and the operator
    /// listener `http` of `ferrocast edge`): open, refused at a limit,
    /// closed idle (`ferrocast_edge_connections_*`).
    pub connections: ferrocast_connections::ConnectionMetrics,
}

impl EdgeMetrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        Self::new_in(&Registry::new())
    }

    /// Creates the metrics in `registry`, the process's one registry, so
    /// that one scrape renders them with every other metric.
    pub fn new_in(registry: &Registry) -> Result<Self, prometheus::Error> {
        let registry = registry.clone();
        let requests = IntCounterVec::new(
            Opts::new(
                "ferrocast_edge_requests_total",
                "Edge requests by protocol, resource kind and status.",
            ),
            &["protocol", "kind", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "ferrocast_edge_upstream_errors_total",
                "Upstream fetches that gave no usable answer, by error.",
            ),
            &["error"],
        )?;
        registry.register(Box::new(upstream_errors.clone()))?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "ferrocast_edge_rate_limited_total",
                "Requests refused with 429 by a rate limit, by limit.",
            ),
            &["by"],
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        let rate_limit_untracked = IntCounterVec::new(
            Opts::new(
                "ferrocast_edge_rate_limit_untracked_total",
                "Requests let through unlimited because a rate limit's key table was full.",
            ),
            &["by"],
        )?;
        registry.register(Box::new(rate_limit_untracked.clone()))?;
        let viewers = IntGaugeVec::new(
            Opts::new(
                "ferrocast_edge_viewers",
                "Concurrent viewers of a stream on this edge.",
            ),
            &["stream"],
        )?;
        registry.register(Box::new(viewers.clone()))?;
        let viewers_cluster = IntGaugeVec::new(
            Opts::new(
                "ferrocast_edge_viewers_cluster",
                "Concurrent viewers of a stream over all edges sharing the viewer-count Redis.",
            ),
            &["stream"],
        )?;
        registry.register(Box::new(viewers_cluster.clone()))?;
        let viewer_sync_errors = IntCounter::new(
            "ferrocast_edge_viewer_sync_errors_total",
            "Failed or timed-out exchanges with the viewer-count Redis.",
        )?;
        registry.register(Box::new(viewer_sync_errors.clone()))?;
        let viewer_requests_untracked = IntCounter::new(
            "ferrocast_edge_viewer_requests_untracked_total",
            "Requests of sessions not counted because a viewer-tracking cap was reached.",
        )?;
        registry.register(Box::new(viewer_requests_untracked.clone()))?;
        let connections = ferrocast_connections::ConnectionMetrics::new("edge", &registry)?;
        Ok(EdgeMetrics {
            connections,
            registry,
            requests,
            upstream_errors,
            rate_limited,
            rate_limit_untracked,
            viewers,
            viewers_cluster,
            viewer_sync_errors,
            viewer_requests_untracked,
        })
    }

    /// Adds the upstream side of an edge to the registry: the coalescing
    /// layer's counters and cache gauges, and (for an upstream over the
    /// network) each origin's counters and circuit breaker, read at each
    /// scrape. Once per registry: a second edge in the same registry is
    /// an error.
    pub fn register_upstream<U>(&self, upstream: &Coalescing<U>) -> Result<(), prometheus::Error>
    where
        U: Upstream + OriginStats + 'static,
    {
        self.registry
            .register(super::upstream_metrics::boxed(upstream.clone())?)
    }

    /// The registry the metrics are in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format of every metric in the registry.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding counters into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
