//! Object storage for recordings.
//!
//! - [`ObjectStore`] is what recording needs of a store: put, get, list,
//!   delete. [`S3Store`] is it on S3 or an S3-compatible server
//!   (`aws-sdk-s3`, multipart for large objects); [`MemoryStore`] is it in
//!   memory, for unit tests.
//! - [`Spool`] sits between the live path and the store: an object is
//!   written to a bounded directory on local disk and the call returns;
//!   its [`Uploader`] sends the objects to the store oldest first,
//!   retrying with backoff while the store is away, so an outage loses
//!   nothing while the spool has room, and a restart uploads what the
//!   last process left.
//!
//! Not here: what is recorded under which key (the recorder), and the
//! playlists of a recording.

#![forbid(unsafe_code)]

mod s3;
mod spool;
mod store;

pub use s3::{MIN_PART_SIZE, S3Options, S3Store};
pub use spool::{Spool, SpoolConfig, SpoolError, SpoolStats, Uploader};
pub use store::{MemoryStore, ObjectStore, StoreError, check_key, dirs_of};
