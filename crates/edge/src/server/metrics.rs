//! The edge's Prometheus metrics, in a registry of their own that the
//! process renders next to its other metrics on `/metrics`.

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

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
}

impl EdgeMetrics {
    /// Creates the metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
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
        Ok(EdgeMetrics {
            registry,
            requests,
            upstream_errors,
        })
    }

    /// The text exposition format of the edge's metrics.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding counters into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
