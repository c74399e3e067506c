//! The edge in the all-in-one process: the HTTPS / HTTP/3 server in front
//! of the origin's router, called in process (no socket in between),
//! through the coalescing cache: concurrent requests for the same playlist
//! state or part cost one origin call, and finished parts and segments are
//! served from memory (bounded; `CoalescingConfig`'s defaults).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_config::HlsConfig;
use ferrocast_edge::server::{EdgeMetrics, EdgeServer};
use ferrocast_edge::{Coalescing, CoalescingConfig, EdgeConfig, InProcessUpstream};
use ferrocast_packager::Origin;

/// How much longer than the origin's longest hold (a blocking playlist
/// request, an early part) the edge waits for an answer.
const UPSTREAM_MARGIN: Duration = Duration::from_secs(4);

/// Starts the edge; it stops when the returned server is dropped.
pub async fn start(
    config: &EdgeConfig,
    hls: &HlsConfig,
    origin: &Origin,
    metrics: EdgeMetrics,
) -> anyhow::Result<EdgeServer> {
    let upstream = InProcessUpstream::new(
        ferrocast_packager::http::router(origin.clone()),
        Duration::from_millis(hls.max_hold_ms) + UPSTREAM_MARGIN,
    );
    let upstream = Coalescing::new(upstream, CoalescingConfig::default());
    EdgeServer::start(config, Arc::new(upstream), metrics)
        .await
        .with_context(|| format!("starting the edge on {}", config.https_listen))
}
