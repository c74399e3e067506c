//! Ferrocast across processes.
//!
//! Each role runs in its own process (ingest, transcode, package) and they
//! find each other through a [`Registry`](ferrocast_registry::Registry):
//!
//! - [`ClusterBus`] is the process's [`MediaBus`](ferrocast_bus::MediaBus).
//!   What the process publishes goes on its local bus, which it serves to
//!   others over gRPC (`ferrocast-bus-grpc`). Subscribing to a stream it
//!   does not publish dials the process the registry names: the holder of
//!   the stream's ingest lease for a source (`NAME`), of its transcode
//!   lease for a rung (`NAME/RUNG`). That subscription survives the
//!   publishing process: when the connection breaks it announces
//!   `PublisherGone`, dials whoever holds the lease next, and goes on after
//!   a `Discontinuity`, as an in-process subscriber does when a publisher
//!   reconnects.
//! - Each role's claims decide which streams this process takes:
//!   [`IngestClaims`] holds the ingest lease of every stream published
//!   here, announces it and offers it to the transcoders;
//!   [`TranscodeClaims`] takes streams from the transcode work queue and
//!   holds their transcode leases; [`PackageClaims`] takes the package
//!   lease of every live stream it can and follows its rendition plan. A
//!   role learns of the streams it holds through the bus's announcements,
//!   exactly as in one process.
//! - [`RegistryOrigins`] tells the edge which packager serves a stream:
//!   the holder of its package lease, so packagers can shard streams.
//! - [`NodePresence`] keeps the process's node record alive in the
//!   registry (its roles and where to reach it) and tells whether the
//!   registry answers.
//!
//! - [`control_notices`] carries the control plane's notices (credentials
//!   changed, disconnect a publisher) from the API process to every
//!   ingest process through the registry's event log.
//! - [`live_reports`] carries what the ingest processes know of their
//!   publishers to the control plane, and subscribes it to a stream's
//!   source for thumbnails.
//!
//! Not here: who may write (the packager's fence decides, from the epochs),
//! the roles themselves.

#![forbid(unsafe_code)]

mod bus;
pub mod control_notices;
mod ingest;
pub mod live_reports;
mod locate;
mod node;
mod origins;
mod package;
mod remote;
mod settings;
mod transcode;

pub use bus::{ClusterBus, ClusterStats};
pub use ingest::IngestClaims;
pub use node::{LoadGauge, NodePresence};
pub use origins::RegistryOrigins;
pub use package::{PackageClaims, PackagerHooks, PlanSink};
pub use settings::ClusterSettings;
pub use transcode::{Drained, HandOverFn, TranscodeClaims};
