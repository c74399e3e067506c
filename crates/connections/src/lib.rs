//! Admission and limits for HTTP connections, shared by the origin and the
//! edge (HTTP/1.1, HTTP/2 and HTTP/3), so that a slowloris, an idle-connection
//! hoard or a connection flood cannot exhaust file descriptors or memory.
//!
//! - [`ConnectionLimits`]: the settings (a config section), validated.
//! - [`Admission`]: how many connections a listener holds, overall and per
//!   client address (IPv6 by prefix); a connection past a cap is refused and
//!   counted before any byte of it is read.
//! - [`Activity`]: a connection's requests in flight and its last activity,
//!   to close it once idle (HTTP/2 and the protocol sniffing of the first
//!   bytes have no timer of their own; HTTP/1.1 uses hyper's header-read
//!   timeout, which also runs while a keep-alive connection waits).
//! - [`http_builder`]: hyper's HTTP/1.1 + HTTP/2 server builder with the
//!   header-read timeout, a timer and the stream cap set.
//!
//! Not for: per-request rate limits (the edge's `limits`), TLS. Without the
//! default `runtime` feature only the settings and [`ip_key`] are built.
//!
//! ```
//! use ferrocast_connections::{Admission, ConnectionLimits, ConnectionMetrics};
//! let registry = prometheus::Registry::new();
//! let limits = ConnectionLimits { max_connections_per_client: 1, ..Default::default() };
//! let admission = Admission::new(&limits, ConnectionMetrics::new("doc", &registry).unwrap());
//! let client = "192.0.2.1".parse().unwrap();
//! let first = admission.admit(client).unwrap();
//! assert!(admission.admit(client).is_err());
//! drop(first);
//! assert!(admission.admit(client).is_ok());
//! ```

#[cfg(feature = "runtime")]
mod activity;
#[cfg(feature = "runtime")]
mod admission;
#[cfg(feature = "runtime")]
mod builder;
mod limits;

#[cfg(feature = "runtime")]
pub use activity::{Activity, RequestGuard};
#[cfg(feature = "runtime")]
pub use admission::{Admission, ConnectionMetrics, Permit, Refusal};
#[cfg(feature = "runtime")]
pub use builder::http_builder;
pub use limits::{ConnectionLimits, ConnectionLimitsError, ip_key};
