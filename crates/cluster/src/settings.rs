//! Timings every role of a cluster shares.

use std::time::Duration;

use ferrocast_registry::NodeId;

/// This process's identity and the cluster's timings.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This process.
    pub node: NodeId,
    /// How long a lease lasts unless renewed: a dead holder's streams move
    /// on about this long after it died.
    pub lease_ttl: Duration,
    /// How long a node record lasts unless renewed.
    pub node_ttl: Duration,
    /// How often the registry is polled for events, work and plans, and
    /// how often a broken subscription dials again.
    pub poll: Duration,
    /// How long a stream whose publisher left waits for it before it ends
    /// (the ingest process keeps the stream that long).
    pub reconnect_grace: Duration,
    /// How long a new subscription keeps trying to reach the publishing
    /// process before it fails.
    pub first_dial: Duration,
}

impl ClusterSettings {
    /// Defaults for `node`: 3 s leases, 10 s node records, 200 ms polls,
    /// 10 s grace and first dial.
    pub fn new(node: NodeId) -> Self {
        ClusterSettings {
            node,
            lease_ttl: Duration::from_secs(3),
            node_ttl: Duration::from_secs(10),
            poll: Duration::from_millis(200),
            reconnect_grace: Duration::from_secs(10),
            first_dial: Duration::from_secs(10),
        }
    }
}
