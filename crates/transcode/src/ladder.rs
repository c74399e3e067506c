//! Ladder profiles: which renditions to make from a source, as an operator
//! writes them in TOML. The schema lives in `ferrocast-config` (so that a
//! bad ladder is an error when the configuration is built) and is
//! re-exported here unchanged; see [`Ladder`], [`BuiltinLadder`] and
//! [`LadderSet`].
//!
//! ```
//! use ferrocast_transcode::ladder::{BuiltinLadder, Ladder};
//!
//! let ladder = Ladder::builtin(BuiltinLadder::Default);
//! assert_eq!(ladder.rungs.iter().map(|r| r.height).collect::<Vec<_>>(), [720, 480, 360]);
//! ladder.validate().unwrap();
//! ```
#![forbid(unsafe_code)]

pub use ferrocast_config::ladder::*;
