//! The control plane's store: streams and their publish keys, API tokens
//! with roles, and an audit log, in SQLite (a file under `data_dir`, the
//! zero-dependency default) or PostgreSQL, through `sqlx`'s `Any` driver
//! with one set of queries and one set of migrations (the repository's
//! `migrations/`, applied at start, forward only).
//!
//! - [`db`]: opening, migrating, errors, the change counter.
//! - [`streams`]: streams; a publish key is made here, shown once and
//!   stored as its SHA-256 ([`secrets`]).
//! - [`tokens`]: API tokens with roles (`admin`, `operator`,
//!   `viewer-issuer`), stored the same way.
//! - [`audit`]: who changed what, written in the same transaction as the
//!   change, never with a secret.
//! - [`authorizer`]: the ingest's `PublishAuthorizer` answered from a
//!   snapshot of the credentials kept current by polling the change
//!   counter, so no SRT handshake waits on the database.
//! - [`api`]: the REST API under `/api/v1` with its OpenAPI document.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferrocast_control::DbError> {
//! use ferrocast_control::{Actor, Database, NewStream};
//! let db = Database::open("sqlite:///var/lib/ferrocast/control.db").await?;
//! let made = db
//!     .create_stream(NewStream { name: "cam1".into(), ..NewStream::default() }, &Actor::Bootstrap)
//!     .await?;
//! println!("publish key (shown once): {}", made.publish_key.expose());
//! # Ok(()) }
//! ```

pub mod api;
pub mod audit;
pub mod authorizer;
pub mod db;
pub mod secrets;
pub mod streams;
pub mod tokens;

pub use audit::{Actor, AuditEntry};
pub use authorizer::DbAuthorizer;
pub use db::{Backend, Database, DbError};
pub use streams::{Credentials, NewStream, StreamChanges, StreamRecord, StreamRecording, WithKey};
pub use tokens::{ApiToken, NewToken, Role};
