//! The origin: every stream being packaged, found by name, each as a group
//! of renditions.
//!
//! A supervisor task watches the bus for new publications and starts a
//! packaging task per bus stream. Bus stream `NAME` is the source
//! rendition of stream `NAME`; `NAME/RUNG` (a transcoder's output) is its
//! rendition `RUNG`. The renditions of a stream share one timeline
//! ([`crate::alignment`]). Ended renditions stay visible (with
//! EXT-X-ENDLIST) for [`ENDED_RETENTION`] so players see the end, then go;
//! a stream goes when its last rendition does.
//!
//! Which renditions the multivariant playlist lists, and waits for, is the
//! stream's [`RenditionPlan`], set by whoever runs the transcoder
//! ([`Origin::set_renditions`], [`Origin::set_source_listed`]); without one,
//! the source is listed along with any rendition that appears.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ferrocast_bus::{MediaBus, StreamEvent};
pub use ferrocast_hls::RenditionPlan;
use ferrocast_hls::{BusName, RenditionName, SequencePoint, StreamProgress, WindowConfig};
use ferrocast_media::{StreamName, Time90k};
use ferrocast_telemetry::Metrics;
use futures::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::alignment::{Alignment, SharedAlignment};
use crate::assembler::{Assembler, CutConfig, TrackSet};
use crate::recording::RecordingSink;
use crate::stream::{self, Check, LiveStream, TimedOut};

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
    /// `PART-HOLD-BACK` in part targets (at least 2).
    pub part_hold_back_parts: u32,
    /// How long after a stream starts a multivariant playlist request waits
    /// for every expected rendition to have media; after that it lists the
    /// renditions that have some.
    pub rendition_wait: Duration,
    /// The audio of a stream with video in a rendition of its own
    /// ([`RenditionName::audio`]) instead of in every video rendition.
    pub separate_audio: bool,
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
            part_hold_back_parts: config.hls.part_hold_back_parts,
            rendition_wait: Duration::from_millis(config.hls.max_hold_ms),
            separate_audio: config.hls.audio == ferrocast_config::AudioLayout::Separate,
        }
    }
}

impl PackagerConfig {
    /// A fresh assembler with these settings, for a stream of one rendition.
    pub fn assembler(&self) -> Result<Assembler, ferrocast_hls::ConfigError> {
        self.rendition_assembler(Alignment::shared())
    }

    /// A fresh assembler with these settings for one rendition of a stream,
    /// on the timeline `align` it shares with the others.
    pub fn rendition_assembler(
        &self,
        align: SharedAlignment,
    ) -> Result<Assembler, ferrocast_hls::ConfigError> {
        self.resumed_assembler(align, None, TrackSet::Muxed)
    }

    /// [`rendition_assembler`](Self::rendition_assembler) that continues
    /// from `resume` (where another packager left the rendition), after a
    /// discontinuity, and packages `track_set`.
    pub fn resumed_assembler(
        &self,
        align: SharedAlignment,
        resume: Option<SequencePoint>,
        track_set: TrackSet,
    ) -> Result<Assembler, ferrocast_hls::ConfigError> {
        let cut = CutConfig {
            part_target: self.part_target,
            segment_min: self.segment_min,
            // RFC 8216bis §4.4.3.1: "The EXTINF duration of each Media
            // Segment ... when rounded to the nearest integer, MUST be less
            // than or equal to the Target Duration": up to target + 0.5 s,
            // exclusive, which leaves room for a GOP a frame longer than
            // planned.
            segment_max: Time90k(i64::from(self.target_duration_secs) * 90_000 + 45_000 - 1),
        };
        let window = WindowConfig {
            part_target: self.part_target,
            target_duration_secs: self.target_duration_secs,
            window_segments: self.window_segments,
            resume,
            part_hold_back_parts: self.part_hold_back_parts,
            ..WindowConfig::default()
        };
        Assembler::with_tracks(cut, window, align, track_set)
    }
}

/// All the renditions of one stream, on one timeline.
#[derive(Debug)]
pub struct StreamGroup {
    name: StreamName,
    align: SharedAlignment,
    renditions: RwLock<BTreeMap<RenditionName, Arc<LiveStream>>>,
    /// Bumped when a rendition is added or one's playlist changes.
    version: Arc<watch::Sender<u64>>,
    started: Instant,
}

impl StreamGroup {
    fn new(name: StreamName) -> Self {
        StreamGroup {
            name,
            align: Alignment::shared(),
            renditions: RwLock::new(BTreeMap::new()),
            version: Arc::new(watch::Sender::new(0)),
            started: Instant::now(),
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &StreamName {
        &self.name
    }

    /// When the stream's first rendition appeared.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Every rendition, by name.
    pub fn renditions(&self) -> Vec<Arc<LiveStream>> {
        self.renditions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// One rendition.
    pub fn rendition(&self, rendition: &RenditionName) -> Option<Arc<LiveStream>> {
        self.renditions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(rendition)
            .cloned()
    }

    /// The source rendition, if it is being packaged.
    pub fn source(&self) -> Option<Arc<LiveStream>> {
        self.rendition(&RenditionName::source())
    }

    /// The tracks a player of the stream gets: the source rendition's,
    /// then the audio rendition's where the audio is packaged apart
    /// (`hls.audio = "separate"`). Empty until the source's tracks are
    /// known.
    pub fn tracks(&self) -> Vec<ferrocast_media::TrackInfo> {
        [self.source(), self.rendition(&RenditionName::audio())]
            .into_iter()
            .flatten()
            .filter_map(|r| r.lock().tracks().cloned())
            .flat_map(|tracks| tracks.to_vec())
            .collect()
    }

    /// True while some rendition has not ended.
    fn is_live(&self) -> bool {
        self.renditions().iter().any(|r| !r.lock().ended())
    }

    /// Run `check` against the renditions now and after every rendition
    /// change until it is done or `deadline` passes. Locks no rendition
    /// itself: `check` locks each one it looks at, one at a time.
    pub async fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&[Arc<LiveStream>]) -> Check<T>,
    ) -> Result<T, TimedOut> {
        let mut version = self.version.subscribe();
        loop {
            if let Check::Done(value) = check(&self.renditions()) {
                return Ok(value);
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(TimedOut),
            }
        }
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
    groups: RwLock<HashMap<StreamName, Arc<StreamGroup>>>,
    plans: RwLock<HashMap<StreamName, RenditionPlan>>,
    /// Where another packager left each stream, to continue from.
    resumes: RwLock<HashMap<StreamName, StreamProgress>>,
    /// Records the streams it wants.
    recorder: Option<Arc<dyn RecordingSink>>,
}

impl Origin {
    /// Start packaging every stream published on `bus`.
    pub fn start(
        bus: Arc<dyn MediaBus>,
        config: PackagerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Origin, ferrocast_hls::ConfigError> {
        Origin::start_recording(bus, config, metrics, None)
    }

    /// [`Origin::start`], handing every rendition of the streams
    /// `recorder` wants to it as it is packaged.
    pub fn start_recording(
        bus: Arc<dyn MediaBus>,
        config: PackagerConfig,
        metrics: Arc<Metrics>,
        recorder: Option<Arc<dyn RecordingSink>>,
    ) -> Result<Origin, ferrocast_hls::ConfigError> {
        config.assembler()?;
        let origin = Origin {
            inner: Arc::new(Inner {
                config,
                metrics,
                groups: RwLock::new(HashMap::new()),
                plans: RwLock::new(HashMap::new()),
                resumes: RwLock::new(HashMap::new()),
                recorder,
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
                        if let Some(stream) = BusName::parse(&name).and_then(|n| {
                            supervisor
                                .group(&n.stream)
                                .and_then(|g| g.rendition(&n.rendition))
                        }) {
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

    /// Sets which renditions of `stream` the multivariant playlist lists
    /// and waits for; may be called before the stream starts, and stays
    /// until [`Origin::clear_renditions`].
    pub fn set_renditions(&self, stream: &StreamName, plan: RenditionPlan) {
        self.inner
            .plans
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream.clone(), plan);
        if let Some(group) = self.group(stream) {
            group.version.send_modify(|v| *v += 1);
        }
    }

    /// Whether the source rendition of `stream` is listed in its
    /// multivariant playlist (keeping the expected rungs of its plan).
    pub fn set_source_listed(&self, stream: &StreamName, listed: bool) {
        let mut plan = self.plan(stream);
        plan.source_listed = listed;
        self.set_renditions(stream, plan);
    }

    /// Back to the default plan for `stream`: the source listed, nothing
    /// else expected.
    pub fn clear_renditions(&self, stream: &StreamName) {
        self.inner
            .plans
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream);
    }

    /// Continue `stream`'s renditions from where another packager left
    /// them (its recorded progress): each rendition packaged from now on
    /// starts past those numbers, after a discontinuity.
    pub fn set_resume(&self, stream: &StreamName, progress: StreamProgress) {
        self.inner
            .resumes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream.clone(), progress);
    }

    /// Where `stream`'s renditions stand now, for a packager that may take
    /// it over; `None` if it is not packaged here.
    pub fn progress(&self, stream: &StreamName) -> Option<StreamProgress> {
        let group = self.group(stream)?;
        let renditions = group
            .renditions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, live)| (name.clone(), live.lock().window.sequence_point()))
            .collect();
        Some(StreamProgress { renditions })
    }

    /// Whether bus stream `bus_name` (`NAME` or `NAME/RUNG`) is being
    /// packaged now (not ended).
    pub fn packaging(&self, bus_name: &str) -> bool {
        BusName::parse(bus_name)
            .and_then(|n| self.group(&n.stream)?.rendition(&n.rendition))
            .is_some_and(|r| !r.lock().ended())
    }

    /// The rendition plan of `stream` (the default if none was set).
    pub fn plan(&self, stream: &StreamName) -> RenditionPlan {
        self.inner
            .plans
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream)
            .cloned()
            .unwrap_or_default()
    }

    /// The source rendition of every stream being served (live or
    /// recently ended), by name.
    pub fn streams(&self) -> Vec<Arc<LiveStream>> {
        let mut all: Vec<Arc<LiveStream>> =
            self.groups().iter().filter_map(|g| g.source()).collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Ends every rendition of every stream now (EXT-X-ENDLIST, and the
    /// end of its recording), as when the process stops.
    pub fn end_all(&self) {
        for group in self.groups() {
            for rendition in group.renditions() {
                rendition.update(Assembler::on_end);
            }
        }
    }

    /// The source rendition of a stream.
    pub fn stream(&self, name: &StreamName) -> Option<Arc<LiveStream>> {
        self.group(name)?.source()
    }

    /// Every stream being served, by name.
    pub fn groups(&self) -> Vec<Arc<StreamGroup>> {
        let mut all: Vec<Arc<StreamGroup>> = self
            .inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// A stream, with all its renditions.
    pub fn group(&self, name: &StreamName) -> Option<Arc<StreamGroup>> {
        self.inner
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Subscribe to `bus_name` and package it (a task: the subscription
    /// may dial another process).
    fn package(&self, bus: &Arc<dyn MediaBus>, bus_name: &str) {
        let Some(BusName {
            stream: stream_name,
            rendition,
        }) = BusName::parse(bus_name)
        else {
            warn!(
                name = bus_name,
                "bus stream with an invalid name not packaged"
            );
            return;
        };
        let mut subscribing = bus.subscribe(bus_name);
        // In process the subscription is ready at once: package it now, in
        // announcement order (a `PublisherGone` that follows finds it).
        if let Some(result) = (&mut subscribing).now_or_never() {
            match result {
                Ok(subscriber) => {
                    self.package_from(bus.clone(), subscriber, stream_name, rendition)
                }
                Err(error) => {
                    warn!(stream = bus_name, %error, "cannot subscribe: stream not packaged")
                }
            }
            return;
        }
        let origin = self.clone();
        let bus = bus.clone();
        tokio::spawn(async move {
            match subscribing.await {
                Ok(subscriber) => origin.package_from(bus, subscriber, stream_name, rendition),
                Err(error) => warn!(%error, "cannot subscribe: stream not packaged"),
            }
        });
    }

    fn package_from(
        &self,
        bus: Arc<dyn MediaBus>,
        subscriber: ferrocast_bus::Subscriber,
        stream_name: StreamName,
        rendition: RenditionName,
    ) {
        let group = {
            let mut groups = self
                .inner
                .groups
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match groups.get(&stream_name) {
                Some(group) if group.is_live() => group.clone(),
                _ => {
                    let group = Arc::new(StreamGroup::new(stream_name.clone()));
                    groups.insert(stream_name.clone(), group.clone());
                    group
                }
            }
        };
        let config = &self.inner.config;
        let track_set = if config.separate_audio {
            TrackSet::WithoutAudio
        } else {
            TrackSet::Muxed
        };
        let Some(live) = self.rendition_stream(&group, &stream_name, &rendition, track_set) else {
            return;
        };
        // The audio rendition is packaged from the source's subscription.
        let audio = if config.separate_audio && rendition.is_source() {
            self.rendition_stream(
                &group,
                &stream_name,
                &RenditionName::audio(),
                TrackSet::AudioBesideVideo,
            )
        } else {
            None
        };
        group.version.send_modify(|v| *v += 1);
        info!(stream = %stream_name, rendition = %rendition, "packaging");
        let origin = self.clone();
        let grace = self.inner.config.reconnect_grace;
        tokio::spawn(async move {
            stream::run(live.clone(), audio.clone(), subscriber, bus, grace).await;
            tokio::time::sleep(ENDED_RETENTION).await;
            let mut groups = origin
                .inner
                .groups
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut renditions = group
                .renditions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for gone in std::iter::once(&live).chain(&audio) {
                let name = gone.rendition_name();
                if renditions.get(name).is_some_and(|s| Arc::ptr_eq(s, gone)) {
                    renditions.remove(name);
                }
            }
            if renditions.is_empty()
                && groups
                    .get(&stream_name)
                    .is_some_and(|g| Arc::ptr_eq(g, &group))
            {
                groups.remove(&stream_name);
            }
            drop(renditions);
            drop(groups);
            group.version.send_modify(|v| *v += 1);
        });
    }

    /// A new rendition `rendition` of `stream_name` packaging `track_set`,
    /// continuing where another packager left it, recorded if the recorder
    /// wants the stream, and added to `group`.
    fn rendition_stream(
        &self,
        group: &StreamGroup,
        stream_name: &StreamName,
        rendition: &RenditionName,
        track_set: TrackSet,
    ) -> Option<Arc<LiveStream>> {
        let resume = self
            .inner
            .resumes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(stream_name)
            .and_then(|p| p.of(rendition));
        let assembler =
            match self
                .inner
                .config
                .resumed_assembler(group.align.clone(), resume, track_set)
            {
                Ok(assembler) => assembler,
                Err(e) => {
                    warn!(error = %e, "cannot package stream");
                    return None;
                }
            };
        if track_set == TrackSet::WithoutAudio && rendition.is_source() {
            // The audio rendition is packaged beside the source: it follows
            // the source's segments and parts.
            assembler.lead_audio();
        }
        let mut live = LiveStream::rendition(
            stream_name.clone(),
            rendition.clone(),
            assembler,
            self.inner.metrics.clone(),
            group.version.clone(),
        );
        if let Some(recorder) = &self.inner.recorder
            && recorder.wants(stream_name)
        {
            live = live.recorded_by(recorder.clone());
        }
        let live = Arc::new(live);
        group
            .renditions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rendition.clone(), live.clone());
        Some(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_lists_every_rung_and_the_source_if_asked() {
        let hd = RenditionName::new("720p").unwrap();
        let plan = RenditionPlan::default();
        assert!(plan.lists(&RenditionName::source()) && plan.lists(&hd));
        let plan = RenditionPlan {
            source_listed: false,
            rungs: vec![hd.clone()],
        };
        assert!(!plan.lists(&RenditionName::source()) && plan.lists(&hd));
    }
}
