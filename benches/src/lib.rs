//! Latency and ingest load benchmarks for Ferrocast.
//!
//! What is here: the small pieces the benchmark binaries share — a
//! real-time send schedule for an MPEG-TS file derived from its PCRs
//! ([`pcr`]), percentile summaries ([`summary`]), a reader for the first
//! `tfdt` of a CMAF chunk ([`tfdt`]), used to check which frames landed in
//! which LL-HLS part, the load tools' TLS and QUIC client settings
//! ([`tls`]), and a cheap SRT live sender for load generation
//! ([`srt_raw`]). The binaries (`ingest_to_part`, `srt_load`) and the
//! scripts (`benches/latency.sh`, `benches/ingest_load.sh`) do the timing;
//! `docs/BENCHMARKS.md` says what they measure and how to reproduce the
//! figures.
//!
//! Not here: anything the server needs. This crate is a workspace member but
//! not a default member, and is never published.
//!
//! ```
//! use ferrocast_benches::summary::Summary;
//!
//! let s = Summary::of(&[5, 1, 4, 2, 3]).expect("not empty");
//! assert_eq!((s.median, s.max), (3, 5));
//! ```

#![forbid(unsafe_code)]

pub mod pcr;
pub mod srt_raw;
pub mod summary;
pub mod tfdt;
pub mod tls;
