//! The packager and HTTP origin.
//!
//! Subscribes to every stream on the media bus, writes CMAF chunks, parts
//! and segments ([`assembler`], sans-IO), keeps the LL-HLS live window, and
//! serves it over HTTP ([`http`]) with blocking playlist reload and parts
//! streamed while they are written. Each segment of each rendition is a
//! span ([`segment_trace`]) in the trace of the publisher's session.
//! What it closes can be handed to a recorder ([`recording`]).
//!
//! Not here: TLS, tokens and caching (the edge), transcoding.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = ferrocast_bus::InProcessBus::default();
//! let config = ferrocast_packager::PackagerConfig::from(&ferrocast_config::Config::default());
//! let metrics = std::sync::Arc::new(ferrocast_telemetry::Metrics::new());
//! let origin = ferrocast_packager::Origin::start(std::sync::Arc::new(bus), config, metrics)?;
//! let app = ferrocast_packager::http::router(origin);
//! let server = ferrocast_packager::http::serve("127.0.0.1:0".parse()?, app).await?;
//! println!("serving on {}", server.local_addr());
//! # Ok(()) }
//! ```

pub mod alignment;
pub mod assembler;
pub mod audio_queue;
pub mod dvr;
pub mod http;
pub mod listener;
pub mod media_store;
pub mod origin;
pub mod recording;
pub mod segment_trace;
pub mod stream;

pub use origin::{Origin, PackagerConfig, RenditionPlan, StreamGroup};
pub use recording::{DvrList, DvrSegment, Recorded, RecordedSegment, RecordingSink};
