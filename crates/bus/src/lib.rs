//! GOP-aware media bus: publishers, subscribers, bounded fan-out.
//!
//! The bus carries a live stream's [`AccessUnit`](ferrocast_media::AccessUnit)s
//! from the role that makes them (ingest, transcoder) to the roles that use
//! them (transcoder, packager). [`MediaBus`] is the trait; [`InProcessBus`]
//! implements it for roles that share a process, and a remote implementation
//! can sit behind the same [`Publisher`] and [`Subscriber`] types.
//!
//! What it promises:
//!
//! - **Join at a keyframe.** A new subscriber first gets the stream's
//!   [`BusMessage::Tracks`], then the current GOP from its keyframe on (audio
//!   included, in arrival order), so it can start at once. If no GOP is cached
//!   (none yet, or it was too big or too long for
//!   [`BusConfig::gop_cache_bytes`] / [`BusConfig::gop_cache_max_duration`])
//!   its units start at the next keyframe.
//! - **Order.** Each subscriber sees messages in the order they were sent.
//! - **The publisher never waits.** [`Publisher::send`] is synchronous and
//!   never blocks on a subscriber.
//! - **Slow subscribers lose whole GOPs.** Each subscriber has its own queue,
//!   bounded in bytes ([`BusConfig::subscriber_queue_bytes`]). When a new GOP
//!   starts and the queue is over that bound, every queued GOP the subscriber
//!   has not started is dropped (it keeps the rest of the one it is in) and it
//!   gets a [`BusMessage::Gap`]; the next unit is the new keyframe. A stream
//!   with no keyframes meets a hard bound
//!   ([`BusConfig::subscriber_hard_limit_bytes`]): everything queued goes, a
//!   `Gap`, and units are skipped to the next keyframe. Track sets and
//!   discontinuities in dropped GOPs are kept (folded), never lost. Losses are
//!   counted ([`Subscriber::stats`], [`MediaBus::stats`]).
//!
//! "Keyframe" here means a video keyframe when the track set has video, and
//! any audio frame when it has none.
//!
//! # A stream's lifecycle
//!
//! 1. [`MediaBus::publish`] on a new name starts a stream
//!    ([`StreamEvent::Started`]). A second `publish` of a name whose
//!    publisher is live fails with [`BusError::AlreadyPublished`].
//! 2. The publisher sends [`BusMessage::Tracks`] before any unit, then units,
//!    and `Tracks` again whenever the track set changes.
//! 3. If the publisher is dropped (or [`Publisher::detach`]ed), it has gone
//!    but may reconnect ([`StreamEvent::PublisherGone`]): the stream stays,
//!    subscribers stay attached and may still join. A later `publish` of the
//!    same name resumes it ([`StreamEvent::Resumed`]): subscribers get
//!    [`BusMessage::Discontinuity`], then whatever the new publisher sends.
//! 4. The stream ends with [`Publisher::end`], or, when no publisher is
//!    live, with [`MediaBus::end_stream`] (the packager calls it when its
//!    reconnect grace period runs out). Subscribers get [`BusMessage::End`],
//!    then `None` from [`Subscriber::recv`] ([`StreamEvent::Ended`]). The
//!    name is free: the next `publish` of it is a brand-new stream.
//!
//! Roles learn of streams through [`MediaBus::announcements`] and
//! [`MediaBus::streams`].
//!
//! # What it is not
//!
//! Not a recorder or a DVR: it keeps one GOP per stream, no more. It does not
//! parse codecs, look inside payloads or fix timestamps; the publisher marks
//! keyframes and the bus trusts them. It is not a request/response channel.
//!
//! # Smallest use
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use ferrocast_bus::{BusMessage, InProcessBus};
//! use ferrocast_media::{AacParams, AccessUnit, CodecParams, Time90k, TrackId, TrackInfo, TrackKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bus = InProcessBus::default();
//! let publisher = bus.publish("cam1").unwrap();
//! let mut subscriber = bus.subscribe("cam1").unwrap();
//!
//! let aac = AacParams { asc: Bytes::from_static(&[0x11, 0x90]), object_type: 2, sample_rate: 48_000, channels: 2 };
//! publisher.send_tracks(vec![TrackInfo { id: TrackId(257), params: CodecParams::Aac(aac) }]);
//! publisher.send_unit(AccessUnit {
//!     track: TrackId(257),
//!     kind: TrackKind::Audio,
//!     pts: Time90k(0),
//!     dts: Time90k(0),
//!     keyframe: true,
//!     data: Bytes::from_static(&[0x21; 8]),
//!     captured_unix_ms: None,
//!     trace: None,
//! });
//! publisher.end();
//!
//! assert!(matches!(subscriber.recv().await, Some(BusMessage::Tracks(_))));
//! assert!(matches!(subscriber.recv().await, Some(BusMessage::Unit(_))));
//! assert_eq!(subscriber.recv().await, Some(BusMessage::End));
//! assert_eq!(subscriber.recv().await, None);
//! # }
//! ```

#![forbid(unsafe_code)]

mod bus;
mod config;
mod endpoint;
mod error;
mod event;
mod gop;
mod in_process;
mod message;
mod queue;
mod stats;
mod stream;

pub use bus::{MediaBus, SubscribeFuture};
pub use config::BusConfig;
pub use endpoint::{Publisher, PublisherBackend, Subscriber, SubscriberBackend};
pub use error::BusError;
pub use event::{StreamEvent, StreamInfo};
pub use in_process::InProcessBus;
pub use message::BusMessage;
pub use queue::MESSAGE_OVERHEAD_BYTES;
pub use stats::{BusStats, SubscriberStats};
