//! The registry of a multi-process Ferrocast: which nodes are alive, which
//! node holds each role (ingest, transcode, package) for each stream, and
//! the fencing rule that keeps a stale holder from writing.
//!
//! A [`Lease`] names its holder and carries a **fencing epoch**, a number
//! that only grows per stream and role (Redis `INCR` in the Redis
//! implementation). Leases expire unless renewed; once one has, another
//! node may take the role with a higher epoch. A paused or partitioned
//! process can outlive its lease without knowing it, and Redis replicates
//! asynchronously, so the registry alone never decides who may write:
//! whoever receives the writes (the packager) keeps a [`Fence`] and refuses
//! anything stamped with an epoch older than the newest it has seen.
//!
//! [`Registry`] is the trait roles depend on; [`InMemoryRegistry`] serves
//! the all-in-one process and tests, `ferrocast-registry-redis` serves
//! processes apart.
//!
//! ```
//! # futures::executor::block_on(async {
//! use std::time::Duration;
//! use ferrocast_registry::{Fence, InMemoryRegistry, NodeId, Registry, Role};
//! let registry = InMemoryRegistry::default();
//! let stream = ferrocast_media::StreamName::new("cam").unwrap();
//! let a = NodeId::new("transcoder-a").unwrap();
//! let lease = registry.acquire(&stream, Role::Transcode, &a, Duration::from_secs(10)).await.unwrap().unwrap();
//! let mut fence = Fence::default();
//! assert!(fence.admit(&stream, lease.epoch).is_ok());
//! # });
//! ```

#[doc(hidden)]
pub mod conformance;
mod events;
mod fence;
mod handover;
mod ids;
mod keeper;
mod memory;

pub use events::{Event, EventId, EventKind, WorkItem};
pub use fence::{Fence, StaleEpoch};
pub use handover::Handover;
pub use ids::{Epoch, IdError, Lease, NodeId, NodeRecord, Role};
pub use keeper::{Holding, LeaseKeeper};
pub use memory::InMemoryRegistry;

use std::time::Duration;

use ferrocast_hls::{RenditionPlan, StreamProgress};
use ferrocast_media::StreamName;
use futures::future::BoxFuture;

/// Why a registry operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry's store could not be reached or answered an error; the
    /// caller retries later (a lease it holds may lapse meanwhile).
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The store holds something this version cannot read.
    #[error("registry record malformed: {0}")]
    Malformed(String),
}

/// What every role needs from the registry. Implementations: in memory
/// ([`InMemoryRegistry`]) and Redis (`ferrocast-registry-redis`).
pub trait Registry: Send + Sync {
    /// Take `role` for `stream` for `ttl` if nobody holds it; `None` if
    /// someone does. A new lease has a higher epoch than any before it.
    fn acquire(
        &self,
        stream: &StreamName,
        role: Role,
        node: &NodeId,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>>;

    /// Extend `lease` to `ttl` from now; false if it is no longer held (it
    /// expired, and perhaps another node took the role).
    fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, RegistryError>>;

    /// Give `lease` up (a planned handover); false if it was no longer held.
    fn release(&self, lease: &Lease) -> BoxFuture<'static, Result<bool, RegistryError>>;

    /// Who holds `role` for `stream` now, if anyone.
    fn holder(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<Lease>, RegistryError>>;

    /// Record `node` as alive for `ttl` (a heartbeat: call every `ttl / 4`).
    fn heartbeat(
        &self,
        node: &NodeRecord,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// Every node whose heartbeat has not expired.
    fn nodes(&self) -> BoxFuture<'static, Result<Vec<NodeRecord>, RegistryError>>;

    /// Append a lifecycle event to the log, which keeps about the newest
    /// [`EVENT_LOG_LEN`] (older ones are trimmed).
    fn publish_event(&self, event: &Event) -> BoxFuture<'static, Result<EventId, RegistryError>>;

    /// Up to `max` events after `after` (from the oldest kept when
    /// `None`), oldest first. Readers poll with the last id they saw; no
    /// event is lost while the reader is away, as long as the log keeps it.
    fn events(
        &self,
        after: Option<&EventId>,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<(EventId, Event)>, RegistryError>>;

    /// Offer `stream` to the transcode workers.
    fn offer_work(&self, stream: &StreamName) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// The next work item nobody has been given, delivered to `worker`
    /// alone; `None` when there is none.
    fn take_work(
        &self,
        worker: &NodeId,
    ) -> BoxFuture<'static, Result<Option<WorkItem>, RegistryError>>;

    /// The worker holds the item's stream (its lease): done with the item.
    /// Acknowledge at once, not when the transcode ends: an item's idle
    /// time counts from its delivery.
    fn ack_work(&self, item: &WorkItem) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// Items delivered at least `min_idle` ago and never acknowledged (their
    /// worker died before taking the lease), now delivered to `worker`.
    fn reclaim_work(
        &self,
        worker: &NodeId,
        min_idle: Duration,
    ) -> BoxFuture<'static, Result<Vec<WorkItem>, RegistryError>>;

    /// Record `stream`'s rendition plan (the transcoder, each time it plans
    /// the ladder); kept for [`PLAN_TTL`] after the last write.
    fn put_plan(
        &self,
        stream: &StreamName,
        plan: &RenditionPlan,
    ) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// `stream`'s rendition plan, if one was recorded (the packager, to
    /// list and wait for the rungs).
    fn plan(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<RenditionPlan>, RegistryError>>;

    /// Record where `stream`'s renditions stand (the packager holding it,
    /// as segments close); kept for [`PLAN_TTL`] after the last write.
    fn put_progress(
        &self,
        stream: &StreamName,
        progress: &StreamProgress,
    ) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// Where `stream`'s renditions stood when last recorded (a packager
    /// taking the stream over continues from there).
    fn progress(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<StreamProgress>, RegistryError>>;

    /// Record where a planned handover of `stream`'s transcode stands
    /// (the two transcoders taking part); kept for [`HANDOVER_TTL`].
    fn put_handover(
        &self,
        stream: &StreamName,
        handover: &Handover,
    ) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// Where a planned handover of `stream`'s transcode stands, if one is
    /// under way.
    fn handover(
        &self,
        stream: &StreamName,
    ) -> BoxFuture<'static, Result<Option<Handover>, RegistryError>>;

    /// Record what the holder of `role` for `stream` knows of it now (the
    /// ingest: its publisher, the publisher's transport statistics, the
    /// source's tracks; the transcoder: its renditions), for the control
    /// plane to show; kept for [`LIVE_REPORT_TTL`] after the last write,
    /// so a report outlives its writer only briefly. The registry stores
    /// `report` as given (the control plane's JSON); one longer than
    /// [`MAX_LIVE_REPORT`] bytes is refused with
    /// [`RegistryError::Malformed`].
    fn put_live_report(
        &self,
        stream: &StreamName,
        role: Role,
        report: &str,
    ) -> BoxFuture<'static, Result<(), RegistryError>>;

    /// The last report `role` recorded for `stream`, if it has not
    /// expired.
    fn live_report(
        &self,
        stream: &StreamName,
        role: Role,
    ) -> BoxFuture<'static, Result<Option<String>, RegistryError>>;
}

/// How long a live report is kept after it was last written: its writer
/// writes one every couple of seconds while it holds the stream.
pub const LIVE_REPORT_TTL: Duration = Duration::from_secs(10);

/// The longest live report the registry stores, bytes.
pub const MAX_LIVE_REPORT: usize = 16 * 1024;

/// [`RegistryError::Malformed`] for a live report over [`MAX_LIVE_REPORT`]:
/// the check every [`Registry::put_live_report`] makes first.
pub fn check_live_report(stream: &StreamName, report: &str) -> Result<(), RegistryError> {
    if report.len() > MAX_LIVE_REPORT {
        return Err(RegistryError::Malformed(format!(
            "live report of {stream}: {} bytes, more than {MAX_LIVE_REPORT}",
            report.len()
        )));
    }
    Ok(())
}

/// How long a handover record is kept after it was last written: a
/// handover takes a GOP or two; a record left by a process that died
/// half-way must not outlive the next one.
pub const HANDOVER_TTL: Duration = Duration::from_secs(30);

/// How long a rendition plan is kept after it was last written; the
/// transcoder writes it again well within this while it holds the stream.
pub const PLAN_TTL: Duration = Duration::from_secs(24 * 3600);

/// About how many lifecycle events the log keeps.
pub const EVENT_LOG_LEN: usize = 10_000;
