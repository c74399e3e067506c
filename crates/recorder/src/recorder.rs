//! The recorder: takes what the packager closes ([`RecordingSink`]), writes
//! it to the spool under the recording's keys, keeps each recording's open
//! marker fresh, and closes a recording when all its renditions end.
//!
//! The packager's call returns at once: items go to a queue bounded in
//! bytes, and a task writes them to the spool (local disk) in order. When
//! the queue is full a segment is dropped and counted
//! (`ferrocast_recording_dropped_total{reason="queue_full"}`); the VOD
//! playlist then has a discontinuity where it is missing. The spool's
//! uploader sends the objects to the store, retrying while it is away.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferrocast_hls::RenditionName;
use ferrocast_media::StreamName;
use ferrocast_packager::{DvrList, DvrSegment, Recorded, RecordedSegment, RecordingSink};
use ferrocast_storage::{ObjectStore, Spool, SpoolError, StoreError, Uploader};
use ferrocast_telemetry::RecordingMetrics;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::closer;
use crate::layout::{Layout, RecordingId, SegmentName, init_file_name, tracks_file_name};
use crate::manifest::{self, ClosedBy, OpenMarker, TracksInfo};
use crate::vod::{self, RenditionRecord};
use crate::vod_upstream::VOD_PREFIX;

/// Which streams are recorded, and how long their recordings are kept.
pub trait RecordingPolicy: Send + Sync + std::fmt::Debug {
    /// Whether a stream starting now is recorded.
    fn records(&self, stream: &StreamName) -> bool;

    /// How long `stream`'s recordings are kept: `default` (the
    /// configured retention) unless the stream has its own; `None` keeps
    /// them.
    fn retention(&self, stream: &StreamName, default: Option<Duration>) -> Option<Duration> {
        let _ = stream;
        default
    }

    /// Whether some stream may have a retention of its own, so that
    /// retention sweeps run even without a default.
    fn has_own_retention(&self) -> bool {
        false
    }
}

/// Every stream, or those named.
#[derive(Debug, Clone, Default)]
pub struct StreamList {
    /// `None`: every stream.
    pub only: Option<HashSet<String>>,
}

impl RecordingPolicy for StreamList {
    fn records(&self, stream: &StreamName) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.contains(stream.as_str()))
    }
}

/// Recorder settings.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Where the objects go.
    pub layout: Layout,
    /// The writer's fencing epoch, in every key it writes (0 for
    /// `ferrocast up`, the package lease's epoch for `ferrocast package`).
    pub epoch: u64,
    /// Who writes, for the open marker (host and process id).
    pub writer: String,
    /// How often an open recording's marker is refreshed.
    pub heartbeat: Duration,
    /// A marker not refreshed for this long belongs to a writer that is
    /// gone: its recording is closed from what the store holds.
    pub stale_after: Duration,
    /// The most bytes of segments waiting between the packager and the
    /// spool.
    pub max_queued_bytes: usize,
    /// Recordings older than this are deleted ([`crate::retention`]);
    /// `None` keeps them.
    pub retention: Option<Duration>,
    /// How far behind live a viewer may go: the recorded segments this
    /// far back are listed in each rendition's DVR playlist
    /// ([`ferrocast_packager::dvr`]); `None`: no DVR.
    pub dvr_window: Option<Duration>,
}

impl RecorderConfig {
    /// Defaults under `layout`: epoch 0, heartbeat every 30 s, stale after
    /// 2 minutes, 64 MiB queued at most.
    pub fn new(layout: Layout) -> Self {
        RecorderConfig {
            layout,
            epoch: 0,
            writer: format!("pid {}", std::process::id()),
            heartbeat: Duration::from_secs(30),
            stale_after: Duration::from_secs(120),
            max_queued_bytes: 64 << 20,
            retention: None,
            dvr_window: None,
        }
    }
}

struct Job {
    stream: StreamName,
    rendition: RenditionName,
    item: Recorded,
    size: usize,
}

/// What the writer task is sent.
enum Message {
    /// Something to record.
    Job(Job),
    /// Answer once every message before this one is handled.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Recordings this process writes, shared with its closer (which leaves
/// them alone).
pub(crate) type OpenSetRef = Arc<Mutex<HashSet<(StreamName, RecordingId)>>>;

/// Per-stream fencing epochs, set by whoever holds the streams' leases.
type Epochs = Arc<Mutex<HashMap<StreamName, u64>>>;

/// The DVR windows of the recordings being written.
type DvrWindows = Arc<Mutex<HashMap<StreamName, DvrStream>>>;

/// One stream's DVR window: its recording and each rendition's recent
/// segments.
struct DvrStream {
    recording: RecordingId,
    renditions: HashMap<RenditionName, DvrRendition>,
}

#[derive(Default)]
struct DvrRendition {
    segments: std::collections::VecDeque<SegmentName>,
    /// The same segments as the packager lists them (URIs made once).
    listed: std::collections::VecDeque<DvrSegment>,
    /// Total duration of `segments`.
    duration: i64,
    discontinuity_sequence: u64,
    /// What [`RecordingSink::dvr`] hands out, made once per segment so
    /// that a playlist request copies nothing.
    snapshot: Arc<DvrList>,
}

impl DvrRendition {
    /// Adds `segment` (its recording's copies under `dir`) and drops from
    /// the front what lies more than `window` behind the end.
    fn push(&mut self, segment: SegmentName, window: i64, dir: &str) {
        self.duration += segment.duration.ticks();
        self.segments.push_back(segment);
        self.listed.push_back(DvrSegment {
            msn: segment.msn,
            duration: segment.duration,
            discontinuity: segment.discontinuity,
            program_date_time_ms: segment.program_date_time_ms,
            init_generation: segment.generation,
            archive_uri: format!("{dir}{}", segment.file_name()),
            archive_init_uri: format!("{dir}{}", init_file_name(segment.generation, segment.epoch)),
        });
        while let Some(front) = self.segments.front().copied() {
            if self.duration - front.duration.ticks() < window {
                break;
            }
            self.segments.pop_front();
            self.listed.pop_front();
            self.duration -= front.duration.ticks();
            if self
                .segments
                .front()
                .is_some_and(|next| next.breaks_after(&front))
            {
                self.discontinuity_sequence += 1;
            }
        }
        self.snapshot = Arc::new(DvrList {
            segments: self.listed.iter().cloned().collect(),
            discontinuity_sequence: self.discontinuity_sequence,
        });
    }
}
type OpenSet = OpenSetRef;

/// The packager's [`RecordingSink`]; dropping it (and the packager's
/// clones) lets the writer task finish.
#[derive(Clone)]
pub struct Recorder {
    jobs: mpsc::UnboundedSender<Message>,
    /// Recordings this process writes, until closed and uploaded.
    open: OpenSet,
    /// Bumped whenever one of `open` is closed and uploaded.
    closed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Fencing epochs of the streams this process writes under a lease.
    epochs: Epochs,
    /// DVR windows, shared with the writer.
    dvr: DvrWindows,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    full_warned: Arc<AtomicBool>,
    policy: Arc<dyn RecordingPolicy>,
    metrics: RecordingMetrics,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The recorder's tasks: the writer, the closer and the spool's uploader.
/// Dropping it stops the closer and the uploader (what is spooled stays
/// on disk for the next start).
#[derive(Debug)]
pub struct RecorderTasks {
    writer: JoinHandle<()>,
    closer: JoinHandle<()>,
    _uploader: Uploader,
}

impl RecorderTasks {
    /// Waits for the writer to finish (after every [`Recorder`] clone is
    /// dropped).
    pub async fn writer_finished(&mut self) {
        let _ = (&mut self.writer).await;
    }
}

impl Drop for RecorderTasks {
    fn drop(&mut self) {
        self.closer.abort();
    }
}

impl Recorder {
    /// Starts recording into `spool`, uploaded to `store`, for the streams
    /// `policy` wants; also starts closing recordings other writers left
    /// open (once what an earlier process left in the spool is uploaded).
    pub fn start(
        config: RecorderConfig,
        spool: Spool,
        store: Arc<dyn ObjectStore>,
        policy: Arc<dyn RecordingPolicy>,
        metrics: RecordingMetrics,
    ) -> (Recorder, RecorderTasks) {
        let (jobs, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let open: OpenSet = Arc::default();
        let closed = Arc::new(tokio::sync::watch::Sender::new(0));
        let epochs: Epochs = Arc::default();
        let dvr: DvrWindows = Arc::default();
        let leftover = spool.mark();
        let uploader = spool.start_uploader(store.clone());
        let writer = Writer {
            config: config.clone(),
            spool: spool.clone(),
            store: store.clone(),
            active: HashMap::new(),
            open: open.clone(),
            closed: closed.clone(),
            epochs: epochs.clone(),
            dvr: dvr.clone(),
            metrics: metrics.clone(),
            queued: queued.clone(),
            reported: ferrocast_storage::SpoolStats::default(),
        };
        let writer = tokio::spawn(writer.run(rx));
        let closer = tokio::spawn(closer::run(
            spool,
            store,
            closer::Sweep {
                layout: config.layout.clone(),
                stale_after: config.stale_after,
                retention: config.retention,
                policy: policy.clone(),
            },
            leftover,
            open.clone(),
            metrics.clone(),
        ));
        let recorder = Recorder {
            jobs,
            open,
            closed,
            epochs,
            dvr,
            queued,
            max_queued: config.max_queued_bytes,
            full_warned: Arc::default(),
            policy,
            metrics,
        };
        (
            recorder,
            RecorderTasks {
                writer,
                closer,
                _uploader: uploader,
            },
        )
    }
}

impl Recorder {
    /// The fencing epoch under which this process now writes `stream` (its
    /// package lease's); a recording started after this carries it in every
    /// key. Streams without one use [`RecorderConfig::epoch`].
    pub fn set_epoch(&self, stream: &StreamName, epoch: u64) {
        self.epochs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(stream.clone(), epoch);
    }

    /// Waits, up to `timeout`, until everything recorded so far is handled
    /// and every recording this process writes is closed with its
    /// playlists uploaded (call it after ending the streams, when the
    /// process stops); true when they all are. What is not, the next
    /// process closes from its stale marker.
    pub async fn all_closed(&self, timeout: Duration) -> bool {
        let drained = async {
            let (done, flushed) = tokio::sync::oneshot::channel();
            if self.jobs.send(Message::Flush(done)).is_ok() {
                let _ = flushed.await;
            }
            let mut closed = self.closed.subscribe();
            loop {
                closed.borrow_and_update();
                if self
                    .open
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty()
                {
                    return;
                }
                if closed.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, drained).await.is_ok()
    }
}

impl RecordingSink for Recorder {
    fn wants(&self, stream: &StreamName) -> bool {
        self.policy.records(stream)
    }

    fn record(&self, stream: &StreamName, rendition: &RenditionName, item: Recorded) {
        let size = match &item {
            Recorded::Segment(segment) => segment.len(),
            Recorded::Init { bytes, .. } => bytes.len(),
            Recorded::End => 0,
        };
        // Only segments are ever dropped: an init or an end is small and
        // the recording needs it.
        if matches!(item, Recorded::Segment(_)) {
            let queued = self.queued.load(Ordering::Relaxed);
            if queued.saturating_add(size) > self.max_queued {
                self.metrics
                    .dropped
                    .with_label_values(&["queue_full"])
                    .inc();
                if !self.full_warned.swap(true, Ordering::Relaxed) {
                    warn!(
                        stream = %stream,
                        rendition = %rendition,
                        queued,
                        "recording queue full (the spool's disk is slower than the stream): \
                         segments are dropped from the recording"
                    );
                }
                return;
            }
            self.full_warned.store(false, Ordering::Relaxed);
        }
        self.queued.fetch_add(size, Ordering::Relaxed);
        let job = Job {
            stream: stream.clone(),
            rendition: rendition.clone(),
            item,
            size,
        };
        if self.jobs.send(Message::Job(job)).is_err() {
            self.queued.fetch_sub(size, Ordering::Relaxed);
        }
    }

    fn dvr(&self, stream: &StreamName, rendition: &RenditionName) -> Option<Arc<DvrList>> {
        let windows = self.dvr.lock().unwrap_or_else(PoisonError::into_inner);
        let window = windows.get(stream)?;
        Some(
            window
                .renditions
                .get(rendition)
                .map_or_else(Arc::default, |r| r.snapshot.clone()),
        )
    }
}

/// A recording being written.
struct Active {
    id: RecordingId,
    /// The writer's fencing epoch for this recording.
    epoch: u64,
    started_ms: i64,
    renditions: BTreeMap<RenditionName, RenditionState>,
}

#[derive(Default)]
struct RenditionState {
    record: RenditionRecord,
    ended: bool,
}

struct Writer {
    config: RecorderConfig,
    spool: Spool,
    store: Arc<dyn ObjectStore>,
    active: HashMap<StreamName, Active>,
    open: OpenSet,
    closed: Arc<tokio::sync::watch::Sender<u64>>,
    epochs: Epochs,
    dvr: DvrWindows,
    metrics: RecordingMetrics,
    queued: Arc<AtomicUsize>,
    /// Spool counters already added to the metrics.
    reported: ferrocast_storage::SpoolStats,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    None => break,
                    Some(Message::Job(job)) => {
                        let size = job.size;
                        self.handle(job).await;
                        self.queued.fetch_sub(size, Ordering::Relaxed);
                    }
                    Some(Message::Flush(done)) => {
                        let _ = done.send(());
                    }
                },
                _ = heartbeat.tick() => self.refresh_markers().await,
                _ = gauges.tick() => self.report_spool(),
            }
        }
        self.report_spool();
    }

    async fn handle(&mut self, job: Job) {
        let Job {
            stream,
            rendition,
            item,
            ..
        } = job;
        match item {
            Recorded::Init {
                generation,
                tracks,
                bytes,
            } => {
                let dir = self.rendition_dir(&stream, &rendition).await;
                let epoch = self.epoch_of(&stream);
                self.put(format!("{dir}{}", init_file_name(generation, epoch)), bytes)
                    .await;
                let info = TracksInfo::of(&tracks);
                self.put(
                    format!("{dir}{}", tracks_file_name(generation, epoch)),
                    manifest::write(&info),
                )
                .await;
                if let Some(state) = self.state(&stream, &rendition) {
                    state.record.tracks.insert(generation, info);
                }
            }
            Recorded::Segment(segment) => self.segment(&stream, &rendition, segment).await,
            Recorded::End => {
                let Some(active) = self.active.get_mut(&stream) else {
                    return;
                };
                active.renditions.entry(rendition).or_default().ended = true;
                if active.renditions.values().all(|r| r.ended) {
                    self.finish(&stream).await;
                }
            }
        }
    }

    /// Lists a spooled segment in its rendition's DVR window.
    fn add_to_dvr(&self, stream: &StreamName, rendition: &RenditionName, name: SegmentName) {
        let (Some(window), Some(active)) = (self.config.dvr_window, self.active.get(stream)) else {
            return;
        };
        let window = i64::try_from(window.as_millis().saturating_mul(90)).unwrap_or(i64::MAX);
        let dir = format!("{VOD_PREFIX}{}/{}/{rendition}/", stream.as_str(), active.id);
        let mut windows = self.dvr.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = windows.entry(stream.clone()).or_insert_with(|| DvrStream {
            recording: active.id.clone(),
            renditions: HashMap::new(),
        });
        if entry.recording != active.id {
            *entry = DvrStream {
                recording: active.id.clone(),
                renditions: HashMap::new(),
            };
        }
        entry
            .renditions
            .entry(rendition.clone())
            .or_default()
            .push(name, window, &dir);
    }

    /// The epoch `stream`'s recording is written under.
    fn epoch_of(&self, stream: &StreamName) -> u64 {
        self.active
            .get(stream)
            .map_or(self.config.epoch, |active| active.epoch)
    }

    fn state(
        &mut self,
        stream: &StreamName,
        rendition: &RenditionName,
    ) -> Option<&mut RenditionState> {
        self.active.get_mut(stream)?.renditions.get_mut(rendition)
    }

    async fn segment(
        &mut self,
        stream: &StreamName,
        rendition: &RenditionName,
        segment: RecordedSegment,
    ) {
        let dir = self.rendition_dir(stream, rendition).await;
        let name = SegmentName {
            msn: segment.msn,
            epoch: self.epoch_of(stream),
            generation: segment.init_generation,
            duration: segment.duration,
            bytes: segment.len() as u64,
            program_date_time_ms: segment.program_date_time_ms,
            discontinuity: segment.discontinuity,
        };
        let body = match segment.chunks.as_slice() {
            [one] => one.clone(),
            chunks => {
                let mut body = BytesMut::with_capacity(segment.len());
                for chunk in chunks {
                    body.extend_from_slice(chunk);
                }
                body.freeze()
            }
        };
        let key = format!("{dir}{}", name.file_name());
        match self.spool.enqueue(&key, body).await {
            Ok(()) => {
                self.metrics.segments.inc();
                self.metrics.bytes.inc_by(name.bytes);
                if let Some(state) = self.state(stream, rendition) {
                    state.record.segments.push(name);
                }
                self.add_to_dvr(stream, rendition, name);
            }
            Err(e) => {
                let reason = match e {
                    SpoolError::Full { .. } => "spool_full",
                    _ => "spool_error",
                };
                self.metrics.dropped.with_label_values(&[reason]).inc();
                // A full spool logs once by itself; other errors each time.
                if reason != "spool_full" {
                    warn!(stream = %stream, rendition = %rendition, error = %e, "segment not recorded");
                }
            }
        }
    }

    /// The directory of `rendition` in `stream`'s recording, starting the
    /// recording (and its marker) if there is none.
    async fn rendition_dir(&mut self, stream: &StreamName, rendition: &RenditionName) -> String {
        if !self.active.contains_key(stream) {
            let now = unix_ms();
            let id = RecordingId::new(now);
            let epoch = self
                .epochs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(stream)
                .copied()
                .unwrap_or(self.config.epoch);
            info!(stream = %stream, recording = %id, epoch, "recording starts");
            self.active.insert(
                stream.clone(),
                Active {
                    id: id.clone(),
                    epoch,
                    started_ms: now,
                    renditions: BTreeMap::new(),
                },
            );
            self.open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((stream.clone(), id));
            self.metrics.open.inc();
            self.put_marker(stream).await;
        }
        let Some(active) = self.active.get_mut(stream) else {
            return String::new();
        };
        active.renditions.entry(rendition.clone()).or_default();
        self.config.layout.rendition(stream, &active.id, rendition)
    }

    async fn put_marker(&self, stream: &StreamName) {
        let Some(active) = self.active.get(stream) else {
            return;
        };
        let marker = OpenMarker {
            stream: stream.as_str().to_owned(),
            recording: active.id.to_string(),
            epoch: active.epoch,
            writer: self.config.writer.clone(),
            started_ms: active.started_ms,
            heartbeat_ms: unix_ms(),
        };
        self.put(
            self.config.layout.marker(stream, &active.id),
            manifest::write(&marker),
        )
        .await;
    }

    async fn refresh_markers(&self) {
        let streams: Vec<StreamName> = self.active.keys().cloned().collect();
        for stream in streams {
            self.put_marker(&stream).await;
        }
    }

    async fn put(&self, key: String, body: Bytes) {
        if let Err(e) = self.spool.enqueue(&key, body).await {
            warn!(key, error = %e, "recording object not spooled");
        }
    }

    /// Every rendition ended: write the playlists and summary, then delete
    /// the marker once they are uploaded.
    async fn finish(&mut self, stream: &StreamName) {
        let Some(active) = self.active.remove(stream) else {
            return;
        };
        self.dvr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(stream);
        let renditions: BTreeMap<RenditionName, RenditionRecord> = active
            .renditions
            .into_iter()
            .map(|(name, state)| (name, state.record))
            .collect();
        let layout = &self.config.layout;
        let closing = vod::closing(layout, stream, &active.id, &renditions, ClosedBy::Writer);
        for (key, body) in closing.objects {
            self.put(key, body).await;
        }
        info!(
            stream = %stream,
            recording = %active.id,
            duration_ms = closing.summary.duration_ms,
            renditions = closing.summary.renditions.len(),
            "recording closed"
        );
        let marker = layout.marker(stream, &active.id);
        let mark = self.spool.mark();
        let spool = self.spool.clone();
        let store = self.store.clone();
        let open = self.open.clone();
        let closed = self.closed.clone();
        let id = active.id;
        let stream = stream.clone();
        self.metrics.open.dec();
        self.metrics.closed.with_label_values(&["writer"]).inc();
        tokio::spawn(async move {
            spool.uploaded_through(mark).await;
            delete_with_retry(store.as_ref(), &marker).await;
            open.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&(stream, id));
            closed.send_modify(|n| *n += 1);
        });
    }

    fn report_spool(&mut self) {
        let stats = self.spool.stats();
        self.metrics.spool_bytes.set(stats.bytes as i64);
        self.metrics.spool_objects.set(stats.queued as i64);
        self.metrics
            .uploaded
            .inc_by(stats.uploaded.saturating_sub(self.reported.uploaded));
        self.metrics
            .upload_retries
            .inc_by(stats.retries.saturating_sub(self.reported.retries));
        self.reported = stats;
    }
}

/// Deletes `key`, retrying with backoff while the store is unavailable.
pub(crate) async fn delete_with_retry(store: &dyn ObjectStore, key: &str) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match store.delete(key).await {
            Ok(()) => return,
            Err(StoreError::Unavailable(e)) => {
                tracing::debug!(key, error = %e, "delete failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                warn!(key, error = %e, "cannot delete");
                return;
            }
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_media::Time90k;

    fn segment(msn: u64, discontinuity: bool) -> SegmentName {
        SegmentName {
            msn,
            epoch: 0,
            generation: 0,
            duration: Time90k::from_millis(2000),
            bytes: 1,
            program_date_time_ms: 0,
            discontinuity,
        }
    }

    #[test]
    fn a_dvr_window_slides_by_duration_and_counts_what_leaves() {
        let mut dvr = DvrRendition::default();
        let window = Time90k::from_millis(10_000).ticks();
        for msn in 0..5 {
            dvr.push(segment(msn, false), window, "/vod/cam/ID/720p/");
        }
        assert_eq!(dvr.segments.len(), 5, "10 s fit a 10 s window");
        dvr.push(segment(5, true), window, "/vod/cam/ID/720p/");
        dvr.push(segment(6, false), window, "/vod/cam/ID/720p/");
        assert_eq!(dvr.segments.front().map(|s| s.msn), Some(2));
        assert_eq!(dvr.discontinuity_sequence, 0);
        // Segment 5's discontinuity leaves the front with segment 4.
        for msn in 7..10 {
            dvr.push(segment(msn, false), window, "/vod/cam/ID/720p/");
        }
        assert_eq!(dvr.segments.front().map(|s| s.msn), Some(5));
        assert_eq!(dvr.discontinuity_sequence, 1);
        assert_eq!(dvr.duration, window);
        // What the packager gets is the same window, made once.
        let listed: Vec<u64> = dvr.snapshot.segments.iter().map(|s| s.msn).collect();
        assert_eq!(listed, [5, 6, 7, 8, 9]);
        assert_eq!(dvr.snapshot.discontinuity_sequence, 1);
        assert!(
            dvr.snapshot.segments[0]
                .archive_uri
                .starts_with("/vod/cam/ID/720p/s0000000005-e0-g0-")
        );
    }
}
