//! The media bus between processes, over gRPC (`proto/bus.proto`, tonic +
//! prost).
//!
//! The process that publishes a stream serves its bus with [`serve`]; a
//! process that needs the stream dials it with [`subscribe`] and gets an
//! ordinary [`ferrocast_bus::Subscriber`], so the layers above do not know
//! whether their stream is local. The publishing side keeps its GOP cache,
//! so a remote subscriber starts on a keyframe, and backpressure reaches it
//! through HTTP/2 flow control: a remote reader that falls behind stops
//! pulling, its subscription's bounded queue at the publisher fills, and it
//! loses whole GOPs (a `Gap`) exactly as an in-process subscriber does; the
//! publisher never waits.
//!
//! Messages may be large (an intra frame of a 4K stream): both sides allow
//! [`MAX_MESSAGE_BYTES`] rather than tonic's 4 MiB default, and HTTP/2 uses
//! an adaptive window rather than the 64 KiB default.
//!
//! Not for: choosing which process to dial (the registry says who
//! publishes), or publishing into a remote bus.

mod client;
mod convert;
mod server;

/// The generated protobuf types and gRPC stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("ferrocast.bus.v1");
}

pub use client::{RemoteError, RemoteFrames, connect, subscribe};
pub use convert::{
    ConvertError, Delivery, delivery_of, frame_of, message_of, publisher_gone_frame,
};
pub use server::{BusServer, EPOCH_HEADER, EpochOf, serve, serve_with};

/// The largest bus message either side accepts: 64 MiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
