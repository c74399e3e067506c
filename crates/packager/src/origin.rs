//! The origin: every stream being packaged, found by name.
//!
//! A supervisor task watches the bus for new publications and starts a
//! packaging task per stream. Ended streams stay visible (with
//! EXT-X-ENDLIST) for [`ENDED_RETENTION`] so players see the end, then go.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ferrocast_bus::{InProcessBus, StreamEvent};
use ferrocast_hls::WindowConfig;
use ferrocast_media::{StreamName, Time90k};
use ferrocast_telemetry::Metrics;
use tracing::{info, warn};

use crate::assembler::{Assembler, CutConfig};
use crate::stream::{self, LiveStream};

/// How long an ended stream stays visible.
pub const ENDED_RETENTION: Duration = Duration::from_secs(60);

/// Packager and origin settings.
#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// Part target duration.
    pub part_target: Time90k,
    /// Segments close at the first keyframe after this long.
    pub segment_min: Time90k,
    /// EXT-X-TARGETDURATION, seconds.
    pub target_duration_secs: u32,
    /// Segments in the playlist window.
    pub window_segments: usize,
    /// Longest hold of a blocking request.
    pub max_hold: Duration,
    /// Publisher reconnect grace period.
    pub reconnect_grace: Duration,
}

impl From<&ferrocast_config::Config> for PackagerConfig {
    fn from(config: &ferrocast_config::Config) -> Self {
        PackagerConfig {
            part_target: Time90k::from_millis(config.hls.part_target_ms as i64),
            segment_min: Time90k::from_millis(config.hls.segment_min_ms as i64),
            target_duration_secs: config.hls.target_duration_secs,
            window_segments: config.hls.window_segments,
            max_hold: Duration::from_millis(config.hls.max_hold_ms),
            reconnect_grace: Duration::from_millis(config.ingest.reconnect_grace_ms),
        }
    }
}

impl PackagerConfig {
    /// A fresh assembler with these settings.
    pub fn assembler(&self) -> Result<Assembler, ferrocast_hls::ConfigError> {
        let cut = CutConfig {
            part_target: self.part_target,
            segment_min: self.segment_min,
            segment_max: Time90k(i64::from(self.target_duration_secs) * 90_000),
        };
        let window = WindowConfig {
            part_target: self.part_target,
            target_duration_secs: self.target_duration_secs,
            window_segments: self.window_segments,
            ..WindowConfig::default()
        };
        Assembler::new(cut, window)
    }
}

/// Every stream the origin serves. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PackagerConfig,
    metrics: Arc<Metrics>,
    streams: RwLock<HashMap<StreamName, Arc<LiveStream>>>,
}

impl Origin {
    /// Start packaging every stream published on `bus`.
    pub fn start(
        bus: InProcessBus,
        config: PackagerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Origin, ferrocast_hls::ConfigError> {
        config.assembler()?;
        let origin = Origin {
            inner: Arc::new(Inner {
                config,
                metrics,
                streams: RwLock::new(HashMap::new()),
            }),
        };
        let supervisor = origin.clone();
        let mut announcements = bus.announcements();
        // Streams already live before we subscribed to announcements.
        for info in bus.streams() {
            supervisor.package(&bus, &info.name);
        }
        tokio::spawn(async move {
            loop {
                let event = match announcements.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "stream announcements lagged");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                };
                match event {
                    StreamEvent::Started(name) => supervisor.package(&bus, &name),
                    StreamEvent::PublisherGone(name) => {
                        if let Some(stream) = StreamName::new(&name)
                            .ok()
                            .and_then(|n| supervisor.stream(&n))
                        {
                            stream.publisher_gone();
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(origin)
    }

    /// The settings.
    pub fn config(&self) -> &PackagerConfig {
        &self.inner.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Every stream being served (live or recently ended), by name.
    pub fn streams(&self) -> Vec<Arc<LiveStream>> {
        let mut all: Vec<Arc<LiveStream>> = self
            .inner
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// A stream by name.
    pub fn stream(&self, name: &StreamName) -> Option<Arc<LiveStream>> {
        self.inner
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn package(&self, bus: &InProcessBus, name: &str) {
        let Ok(stream_name) = StreamName::new(name) else {
            warn!(name, "bus stream with an invalid name not packaged");
            return;
        };
        let Some(subscriber) = bus.subscribe(name) else {
            return;
        };
        let assembler = match self.inner.config.assembler() {
            Ok(assembler) => assembler,
            Err(e) => {
                warn!(error = %e, "cannot package stream");
                return;
            }
        };
        let live = Arc::new(LiveStream::new(
            stream_name.clone(),
            assembler,
            self.inner.metrics.clone(),
        ));
        self.inner
            .streams
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream_name.clone(), live.clone());
        info!(stream = %stream_name, "packaging");
        let origin = self.clone();
        let bus = bus.clone();
        let grace = self.inner.config.reconnect_grace;
        tokio::spawn(async move {
            stream::run(live.clone(), subscriber, bus, grace).await;
            tokio::time::sleep(ENDED_RETENTION).await;
            let mut streams = origin
                .inner
                .streams
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if streams
                .get(&stream_name)
                .is_some_and(|s| Arc::ptr_eq(s, &live))
            {
                streams.remove(&stream_name);
            }
        });
    }
}
