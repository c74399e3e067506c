//! The transcoder service: the tokio adapter between the bus and one
//! [`Transcoder`] per stream.
//!
//! For every source stream `NAME` on the bus (names without `/`), the
//! service subscribes, plans the ladder for the first video track it sees
//! (and again when the source's video codec or size changes), and runs the
//! transcoder on a thread of its own fed through a bounded queue. Each
//! rung is published on the bus as stream `NAME/RUNG` (the rung's name in
//! the ladder) with its own track set (the rung's video, and the audio
//! passed through or encoded to AAC).
//!
//! ```text
//!  bus NAME ─▶ stream task ──(bounded queue, whole GOPs dropped when full)──▶ worker thread
//!                  ▲                                                          Transcoder
//!                  └──────────────(events: plan, tracks, units, shed)──────────────┘
//!             publishes NAME/720p, NAME/480p, ...
//! ```
//!
//! Lifecycle, mirrored from the source:
//!
//! - the source's publisher goes ([`StreamEvent::PublisherGone`]): the rung
//!   publishers detach too, so rung streams wait out the same reconnect
//!   grace rather than end;
//! - it comes back (a [`BusMessage::Discontinuity`] on the source): rungs
//!   are published again (the bus hands their subscribers a discontinuity),
//!   and the transcoder restarts its keyframes and lag measurements;
//! - a [`BusMessage::Gap`] on the source, or GOPs this service dropped
//!   itself: a `Discontinuity` on every rung;
//! - the source ends: the encoders are drained and every rung stream ends.
//!
//! Bad media never takes the process down: a stream whose transcoder fails
//! is logged with the reason and its rungs end; other streams go on. A
//! stream that lags behind live sheds rungs ([`crate::shed`]); a shed
//! rung's stream ends and is not brought back while the source lives.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use crate::gop_trace::{RungTracer, SourceGops};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferrocast_bus::{BusError, BusMessage, MediaBus, Publisher, StreamEvent, Subscriber};
use ferrocast_media::{AccessUnit, CodecParams, Time90k, TrackInfo, TrackKind};
use ferrocast_telemetry::Metrics;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::gpu::{Backend, EncoderChoice, NvencBudget, assign};
use crate::handover::{GaveUp, HandOverCut, VideoStep};
use crate::ladder::Ladder;
use crate::pipeline::{Output, Transcoder};
use crate::shed::{RungCost, ShedPolicy, Shedder};
use crate::stats::Stats;

/// How often the worker reports its counters (metrics and status).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for rung outputs before looking at the input queue again.
const POLL_SLICE: Duration = Duration::from_millis(2);

/// Events the worker may have queued for the stream task.
const EVENT_QUEUE: usize = 256;

/// Most audio units a rung holds back waiting for its video (about 10 s
/// of AAC): past it the oldest goes out anyway.
const MAX_WAITING_AUDIO: usize = 500;

/// What the service runs with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The ladder every stream gets.
    pub ladder: Ladder,
    /// The machine's encoder choice ([`crate::gpu::select`], made once).
    pub machine: EncoderChoice,
    /// NVENC sessions for all streams together.
    pub nvenc_sessions: u32,
    /// When to shed rungs.
    pub shed: ShedPolicy,
    /// Source units queued per stream before whole GOPs are dropped.
    pub queue_units: usize,
    /// Told the rung names every time a stream's ladder is planned (so the
    /// packager knows which renditions to expect), or `None`.
    pub on_plan: Option<PlanObserver>,
}

/// A callback given a source stream's name and its planned rung names,
/// each time the stream is (re)planned. Called on the stream's task; it
/// must not block.
#[derive(Clone)]
pub struct PlanObserver(pub Arc<PlanFn>);

/// The function inside a [`PlanObserver`]: source stream name, rung names.
pub type PlanFn = dyn Fn(&str, &[String]) + Send + Sync;

impl std::fmt::Debug for PlanObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanObserver")
    }
}

/// True for a stream the service transcodes: a source published by ingest
/// (`NAME`), not a rendition (`NAME/RUNG`).
pub fn is_source(name: &str) -> bool {
    !name.is_empty() && !name.contains('/')
}

/// The bus stream name of rung `rung` of source `source`: `source/rung`.
pub fn rung_stream(source: &str, rung: &str) -> String {
    format!("{source}/{rung}")
}

/// One rung, as the status API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RungStatus {
    /// Rung name.
    pub name: String,
    /// Bus stream it is published on (`NAME/RUNG`).
    pub stream: String,
    /// Output size.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Target bitrate, bit/s.
    pub bitrate: u64,
    /// Encoded frames out.
    pub frames_out: u64,
    /// Shed for lag; its stream has ended.
    pub shed: bool,
}

/// One stream's transcode, as the status API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// Source stream name.
    pub name: String,
    /// Ladder name.
    pub ladder: String,
    /// `nvenc` or `cpu`.
    pub backend: String,
    /// Why that encoder.
    pub encoder_reason: String,
    /// Rungs in plan order (empty until the first video track is planned).
    pub rungs: Vec<RungStatus>,
    /// Largest real-time lag of the active rungs, milliseconds.
    pub lag_ms: i64,
    /// GOPs dropped because the queue was full.
    pub dropped_gops: u64,
    /// Why the transcoder stopped, if it failed.
    pub error: Option<String>,
}

/// The running service; cheap to clone. Dropping every clone does not
/// stop it (it lives as long as the bus and the runtime).
#[derive(Clone)]
pub struct TranscodeService {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TranscodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscodeService")
            .field("ladder", &self.shared.config.ladder.name)
            .field("machine", &self.shared.config.machine)
            .finish_non_exhaustive()
    }
}

struct Shared {
    bus: Arc<dyn MediaBus>,
    config: ServiceConfig,
    budget: NvencBudget,
    metrics: Arc<Metrics>,
    streams: Mutex<HashMap<String, StreamEntry>>,
    generation: AtomicU64,
}

struct StreamEntry {
    generation: u64,
    publisher_live: watch::Sender<bool>,
    status: Arc<Mutex<StreamStatus>>,
    /// Asks the stream task to hand the stream over ([`TranscodeService::hand_over`]).
    hand_over: mpsc::Sender<HandOverReply>,
}

/// Where the answer to a handover request goes: the source keyframe the
/// rungs stopped before, or `None` if the stream ended without one.
type HandOverReply = oneshot::Sender<Option<Time90k>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TranscodeService {
    /// Starts transcoding every source stream on `bus`, those already there
    /// and those to come. Must be called inside a tokio runtime.
    pub fn start(
        bus: Arc<dyn MediaBus>,
        config: ServiceConfig,
        metrics: Arc<Metrics>,
    ) -> TranscodeService {
        let backend = backend_label(&config.machine);
        metrics
            .transcode
            .encoder
            .with_label_values(&[backend, &config.machine.reason])
            .set(1);
        let shared = Arc::new(Shared {
            budget: NvencBudget::new(config.nvenc_sessions),
            bus,
            config,
            metrics,
            streams: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        });
        let mut announcements = shared.bus.announcements();
        resync(&shared);
        let supervisor = shared.clone();
        tokio::spawn(async move {
            loop {
                match announcements.recv().await {
                    Ok(event) => on_event(&supervisor, event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "transcoder: stream announcements lagged");
                        resync(&supervisor);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        TranscodeService { shared }
    }

    /// The ladder streams get.
    pub fn ladder(&self) -> &Ladder {
        &self.shared.config.ladder
    }

    /// The machine's encoder choice.
    pub fn machine(&self) -> &EncoderChoice {
        &self.shared.config.machine
    }

    /// Stop transcoding source `name` at its next video keyframe, for
    /// another process to go on from there (a planned drain): the rungs get
    /// everything before that keyframe (the encoders are drained; audio
    /// before it still arriving is passed on), then
    /// [`BusMessage::HandedOver`] with its pts, and their publishers leave
    /// without ending the streams. Resolves to that pts, or `None` when the
    /// stream is not transcoded here or ended (or failed) first.
    pub fn hand_over(&self, name: &str) -> impl Future<Output = Option<Time90k>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let asked = lock(&self.shared.streams)
            .get(name)
            .is_some_and(|e| e.hand_over.try_send(reply).is_ok());
        async move {
            if !asked {
                return None;
            }
            answer.await.ok().flatten()
        }
    }

    /// Every stream being transcoded, by name.
    pub fn streams(&self) -> Vec<StreamStatus> {
        let mut all: Vec<StreamStatus> = lock(&self.shared.streams)
            .values()
            .map(|e| lock(&e.status).clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// `nvenc` or `cpu`, for labels.
pub fn backend_label(choice: &EncoderChoice) -> &'static str {
    match choice.backend {
        Backend::Nvenc { .. } => "nvenc",
        Backend::Cpu => "cpu",
    }
}

fn on_event(shared: &Arc<Shared>, event: StreamEvent) {
    let name = event.stream().to_owned();
    if !is_source(&name) {
        return;
    }
    match event {
        StreamEvent::Started(_) => spawn_stream(shared, &name, true),
        StreamEvent::Resumed(_) => {
            let running = lock(&shared.streams)
                .get(&name)
                .map(|e| e.publisher_live.send_replace(true));
            if running.is_none() {
                // Not transcoding it (it failed before): try again.
                spawn_stream(shared, &name, false);
            }
        }
        StreamEvent::PublisherGone(_) => {
            if let Some(e) = lock(&shared.streams).get(&name) {
                e.publisher_live.send_replace(false);
            }
        }
        _ => {}
    }
}

/// Catch up with the bus after missing announcements (or at start).
fn resync(shared: &Arc<Shared>) {
    for info in shared.bus.streams() {
        if !is_source(&info.name) {
            continue;
        }
        let known = lock(&shared.streams)
            .get(&info.name)
            .map(|e| e.publisher_live.send_replace(info.publisher_live));
        if known.is_none() {
            spawn_stream(shared, &info.name, false);
        }
    }
}

/// Starts the stream task for `name`. `fresh`: a brand-new stream, which
/// replaces any task still draining an ended stream of the same name.
fn spawn_stream(shared: &Arc<Shared>, name: &str, fresh: bool) {
    let mut streams = lock(&shared.streams);
    if !fresh && streams.contains_key(name) {
        return;
    }
    let subscribing = shared.bus.subscribe(name);
    let generation = shared.generation.fetch_add(1, Ordering::Relaxed);
    let (live_tx, live_rx) = watch::channel(true);
    let (hand_over_tx, hand_over_rx) = mpsc::channel(1);
    let status = Arc::new(Mutex::new(StreamStatus {
        name: name.to_owned(),
        ladder: shared.config.ladder.name.clone(),
        backend: backend_label(&shared.config.machine).to_owned(),
        encoder_reason: shared.config.machine.reason.clone(),
        ..StreamStatus::default()
    }));
    streams.insert(
        name.to_owned(),
        StreamEntry {
            generation,
            publisher_live: live_tx,
            status: status.clone(),
            hand_over: hand_over_tx,
        },
    );
    drop(streams);
    info!(stream = name, ladder = %shared.config.ladder.name, "transcoding");
    let shared = shared.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        // Ready at once in process; a dial to the publishing process on a
        // bus between processes.
        let rungs = match subscribing.await {
            Ok(subscriber) => {
                StreamTask::new(shared.clone(), name.clone(), status)
                    .run(subscriber, live_rx, hand_over_rx)
                    .await
            }
            Err(error) => {
                warn!(stream = %name, %error, "cannot subscribe to the source: not transcoded");
                Vec::new()
            }
        };
        shared.metrics.transcode.forget_stream(&name, &rungs);
        let mut streams = lock(&shared.streams);
        if streams
            .get(&name)
            .is_some_and(|e| e.generation == generation)
        {
            streams.remove(&name);
        }
    });
}

/// From the stream task to the worker, in source order.
#[derive(Debug)]
enum Input {
    Tracks(Arc<[TrackInfo]>),
    Unit(Arc<AccessUnit>),
    /// The source's timeline broke (reconnect, or the bus dropped units).
    Discontinuity,
    /// This service dropped GOPs (its queue was full).
    Dropped,
    /// The source ended: drain and stop.
    Finish,
}

/// From the worker to the stream task, in output order.
#[derive(Debug)]
enum Event {
    /// A new plan: these rungs from now on (names, sizes, bitrates).
    Plan {
        rungs: Vec<RungStatus>,
        encoder: EncoderChoice,
    },
    /// Rung `rung`'s track set changed.
    Tracks {
        rung: usize,
        tracks: Arc<[TrackInfo]>,
    },
    /// A video unit of rung `rung`.
    Video { rung: usize, unit: AccessUnit },
    /// An audio unit, for every rung.
    Audio(AccessUnit),
    /// The output timeline breaks here on every rung.
    Discontinuity,
    /// Rung `rung` was shed.
    Shed { rung: usize, lag_ms: i64 },
    /// Counters.
    Stats(Stats),
    /// The transcoder failed; nothing follows.
    Failed(String),
}

/// Whether a source unit enters the worker's queue: the queue is bounded,
/// and when it is full the rest of the current GOP and whole GOPs after it
/// are dropped until a video keyframe finds room. Sans-IO.
#[derive(Debug, Default)]
struct Admission {
    skipping: bool,
    dropped_gops: u64,
}

/// What to do with one unit.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Queue it.
    Send,
    /// Queue a [`Input::Dropped`] marker, then it.
    SendAfterDrop,
    /// Drop it.
    Drop,
}

impl Admission {
    /// `room`: free slots in the queue now.
    fn admit(&mut self, unit: &AccessUnit, room: usize) -> Admit {
        let starts_gop = unit.keyframe && unit.kind == TrackKind::Video;
        if self.skipping {
            if starts_gop && room >= 2 {
                self.skipping = false;
                return Admit::SendAfterDrop;
            }
            if starts_gop {
                self.dropped_gops += 1;
            }
            return Admit::Drop;
        }
        if room >= 1 {
            return Admit::Send;
        }
        self.skipping = true;
        self.dropped_gops += 1;
        Admit::Drop
    }
}

/// One published rung.
struct RungSlot {
    status: RungStatus,
    stream: String,
    publisher: Option<Publisher>,
    tracks: Option<Arc<[TrackInfo]>>,
    /// Tracks not yet sent on the current publisher.
    tracks_pending: bool,
    shed: bool,
    /// Frames already counted in the metric.
    frames_counted: u64,
    /// The newest keyframe published.
    last_keyframe: Option<Time90k>,
    /// The latest video time published on this timeline.
    video_reached: Option<Time90k>,
    /// Audio waiting for the video to reach its time.
    audio: std::collections::VecDeque<Arc<AccessUnit>>,
    /// The span of the GOP being published.
    trace: RungTracer,
}

struct StreamTask {
    shared: Arc<Shared>,
    name: String,
    status: Arc<Mutex<StreamStatus>>,
    rungs: Vec<RungSlot>,
    /// The source's publisher has gone: rung publishers are detached and
    /// output is dropped until the source resumes.
    source_gone: bool,
    /// Every rung name used, for forgetting metrics.
    seen_rungs: Vec<String>,
    /// The source has an audio track.
    has_audio: bool,
    /// The newest source unit the ingest stamped: (pts, Unix ms). Output
    /// units are stamped from it (their pts are the source's).
    wall_clock: Option<(Time90k, i64)>,
    /// The trace contexts of the newest source GOPs, the parents of the
    /// rungs' GOP spans.
    source_gops: SourceGops,
    /// A handover under way, and where its outcome goes.
    cut: Option<(HandOverCut, HandOverReply)>,
}

impl StreamTask {
    fn new(shared: Arc<Shared>, name: String, status: Arc<Mutex<StreamStatus>>) -> Self {
        StreamTask {
            shared,
            name,
            status,
            rungs: Vec::new(),
            source_gone: false,
            seen_rungs: Vec::new(),
            has_audio: false,
            wall_clock: None,
            source_gops: SourceGops::default(),
            cut: None,
        }
    }

    /// Runs until the source ends or the transcoder fails; returns every
    /// rung name used.
    async fn run(
        mut self,
        mut subscriber: Subscriber,
        mut live: watch::Receiver<bool>,
        mut hand_over: mpsc::Receiver<HandOverReply>,
    ) -> Vec<String> {
        let (input_tx, input_rx) = mpsc::channel(self.shared.config.queue_units.max(2));
        let (event_tx, mut events) = mpsc::channel(EVENT_QUEUE);
        let worker = Worker {
            name: self.name.clone(),
            ladder: self.shared.config.ladder.clone(),
            machine: self.shared.config.machine.clone(),
            budget: self.shared.budget.clone(),
            shed: self.shared.config.shed,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("transcode {}", self.name))
            .spawn(move || worker.run(input_rx, event_tx));
        if let Err(e) = spawned {
            error!(stream = %self.name, error = %e, "cannot start a transcoder thread");
            return Vec::new();
        }
        let mut input = Some(input_tx);
        let mut admission = Admission::default();
        let mut counted_drops = 0;
        let mut hand_over_open = true;
        let mut failed = false;
        loop {
            tokio::select! {
                request = hand_over.recv(), if hand_over_open && self.cut.is_none() && input.is_some() => {
                    match request {
                        Some(reply) => self.start_cut(reply),
                        None => hand_over_open = false,
                    }
                }
                // Source messages, until it ended (then only events).
                message = subscriber.recv(), if input.is_some() => {
                    let Some(tx) = input.as_ref() else { continue };
                    let forward = match message {
                        Some(BusMessage::Tracks(tracks)) => {
                            self.has_audio = tracks.iter().any(|t| t.kind() == TrackKind::Audio);
                            Some(Input::Tracks(tracks))
                        }
                        Some(BusMessage::Unit(unit)) => {
                            if let Some(ms) = unit.captured_unix_ms {
                                self.wall_clock = Some((unit.pts, ms));
                            }
                            self.source_gops.on_source(&unit);
                            match admission.admit(&unit, tx.capacity()) {
                                Admit::Send => Some(Input::Unit(unit)),
                                Admit::SendAfterDrop => {
                                    let _ = tx.try_send(Input::Dropped);
                                    Some(Input::Unit(unit))
                                }
                                Admit::Drop => None,
                            }
                        }
                        Some(BusMessage::Discontinuity | BusMessage::Gap) => {
                            Some(Input::Discontinuity)
                        }
                        // Sources are published by ingest, which never
                        // hands over; a remote subscription consumes it.
                        Some(BusMessage::HandedOver(_)) => None,
                        Some(BusMessage::End) | None => Some(Input::Finish),
                    };
                    if admission.dropped_gops > counted_drops {
                        let new = admission.dropped_gops - counted_drops;
                        counted_drops = admission.dropped_gops;
                        self.shared
                            .metrics
                            .transcode
                            .dropped_gops
                            .with_label_values(&[&self.name])
                            .inc_by(new);
                        lock(&self.status).dropped_gops = counted_drops;
                        warn!(stream = %self.name, dropped_gops = counted_drops, "transcoder queue full: dropping whole GOPs");
                    }
                    let finish = matches!(forward, Some(Input::Finish));
                    if let Some(forward) = forward
                        && tx.send(forward).await.is_err()
                    {
                        // The worker stopped; its last event says why.
                        input = None;
                    }
                    if finish {
                        input = None;
                    }
                }
                changed = live.changed() => {
                    if changed.is_err() {
                        // The supervisor replaced us; the source ends anyway.
                        live = watch::channel(true).1;
                        continue;
                    }
                    let live_now = *live.borrow_and_update();
                    self.publisher_live(live_now);
                }
                event = events.recv() => {
                    match event {
                        Some(Event::Failed(reason)) => {
                            // Logged in a rung's open GOP span, if traced,
                            // so the failure is in the session's trace.
                            let span = self
                                .rungs
                                .iter()
                                .find_map(|r| r.trace.span().cloned())
                                .unwrap_or_else(tracing::Span::none);
                            error!(parent: &span, stream = %self.name, error = %reason, "transcoder failed; its renditions end");
                            lock(&self.status).error = Some(reason);
                            failed = true;
                            break;
                        }
                        Some(event) => {
                            self.on_event(event);
                            if self.cut.as_ref().is_some_and(|(cut, _)| cut.complete()) {
                                break;
                            }
                        }
                        None => break,
                    }
                }
            }
        }
        match self.cut.take() {
            Some((cut, reply)) if cut.complete() && !failed => {
                let at = cut.at();
                if let Some(at) = at {
                    self.hand_over_all(at);
                }
                let _ = reply.send(at);
            }
            cut => {
                self.end_all();
                if let Some((_, reply)) = cut {
                    let _ = reply.send(None);
                }
            }
        }
        self.seen_rungs
    }

    /// Hand the stream over at the next rung keyframe ([`HandOverCut`]).
    fn start_cut(&mut self, reply: HandOverReply) {
        info!(stream = %self.name, "handing over at the next keyframe");
        let cut = HandOverCut::new(
            self.rungs.iter().map(|r| r.last_keyframe),
            self.rungs.iter().map(|r| !r.shed && r.publisher.is_some()),
            self.has_audio,
        );
        self.cut = Some((cut, reply));
    }

    /// Give the handover up (the claims let the lease go instead): what
    /// was held back is published.
    fn give_up_cut(&mut self) {
        let Some((mut cut, reply)) = self.cut.take() else {
            return;
        };
        warn!(stream = %self.name, "too much audio before a rung keyframe: handover given up");
        let _ = reply.send(None);
        for unit in cut.take_held_audio() {
            self.publish_audio(unit);
        }
    }

    /// Date an output unit from the source's wall-clock stamps (its pts is
    /// the source's), unless it carries its own.
    fn stamp(&self, unit: &mut AccessUnit) {
        if unit.captured_unix_ms.is_none()
            && let Some((pts, ms)) = self.wall_clock
        {
            unit.captured_unix_ms = Some(ms + (unit.pts - pts).as_millis());
        }
    }

    /// An audio unit on every rung that has its track set.
    ///
    /// Each rung publishes audio interleaved with its video by time: an
    /// audio unit waits until the rung has published video up to its time
    /// (the video comes out of the encoders later than the audio), so a
    /// subscriber that starts at a rung keyframe gets the audio from that
    /// keyframe on. Another transcoder's output spliced in at a keyframe
    /// after a handover relies on it.
    fn publish_audio(&mut self, unit: AccessUnit) {
        let unit = Arc::new(unit);
        for rung in 0..self.rungs.len() {
            // Audio waits for the rung's video track set.
            if self.rungs[rung].tracks.is_some() {
                self.rungs[rung].audio.push_back(unit.clone());
                self.release_audio(rung, false);
            }
        }
    }

    /// Publish rung `rung`'s waiting audio that its video has caught up
    /// with (all of it with `all`, before a marker or an end; the oldest
    /// past [`MAX_WAITING_AUDIO`] too).
    fn release_audio(&mut self, rung: usize, all: bool) {
        let Some(slot) = self.rungs.get_mut(rung) else {
            return;
        };
        let mut due = Vec::new();
        while let Some(front) = slot.audio.front() {
            let caught_up = slot.video_reached.is_some_and(|v| front.pts <= v);
            if !(all || caught_up || slot.audio.len() > MAX_WAITING_AUDIO) {
                break;
            }
            due.extend(slot.audio.pop_front());
        }
        for unit in due {
            self.send(rung, BusMessage::Unit(unit));
        }
    }

    /// Publish every rung's waiting audio (before a marker or an end).
    fn release_all_audio(&mut self) {
        for rung in 0..self.rungs.len() {
            self.release_audio(rung, true);
            self.rungs[rung].video_reached = None;
        }
    }

    /// The rungs are complete up to `at`: say so on each, and leave its
    /// stream to the next publisher.
    fn hand_over_all(&mut self, at: Time90k) {
        self.release_all_audio();
        for slot in &mut self.rungs {
            if let Some(p) = slot.publisher.take() {
                p.send(BusMessage::HandedOver(at));
                p.detach();
            }
        }
        info!(stream = %self.name, at = at.0, "handed over: the rungs stop before this keyframe");
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Plan { rungs, encoder } => self.plan(rungs, encoder),
            Event::Tracks { rung, tracks } => {
                if let Some(slot) = self.rungs.get_mut(rung) {
                    slot.tracks = Some(tracks);
                    slot.tracks_pending = true;
                }
            }
            Event::Video { rung, mut unit } => {
                self.stamp(&mut unit);
                let mut released = Vec::new();
                let step = match self.cut.as_mut() {
                    Some((cut, _)) => cut.video(rung, &unit, &mut released),
                    None => VideoStep::Publish,
                };
                for audio in released {
                    self.publish_audio(audio);
                }
                if step == VideoStep::Drop {
                    return;
                }
                let pts = unit.pts;
                if let Some(slot) = self.rungs.get_mut(rung) {
                    slot.trace.stamp(&slot.stream, &mut unit, &self.source_gops);
                    if unit.keyframe {
                        slot.last_keyframe = Some(pts);
                    }
                    slot.video_reached = Some(slot.video_reached.map_or(pts, |v| v.max(pts)));
                }
                self.send(rung, BusMessage::Unit(Arc::new(unit)));
                self.release_audio(rung, false);
            }
            Event::Audio(mut unit) => {
                self.stamp(&mut unit);
                let unit = match self.cut.as_mut().map(|(cut, _)| cut.audio(unit.clone())) {
                    None => Some(unit),
                    Some(Ok(unit)) => unit,
                    Some(Err(GaveUp)) => {
                        self.give_up_cut();
                        Some(unit)
                    }
                };
                if let Some(unit) = unit {
                    self.publish_audio(unit);
                }
            }
            Event::Discontinuity => {
                // Also the in-band sign that a gone source is back.
                self.source_gone = false;
                self.release_all_audio();
                for slot in &mut self.rungs {
                    if let Some(p) = &slot.publisher {
                        p.send(BusMessage::Discontinuity);
                    }
                }
            }
            Event::Shed { rung, lag_ms } => self.shed(rung, lag_ms),
            Event::Stats(stats) => self.stats(&stats),
            Event::Failed(_) => {}
        }
    }

    fn plan(&mut self, rungs: Vec<RungStatus>, encoder: EncoderChoice) {
        if let Some(observer) = &self.shared.config.on_plan {
            let names: Vec<String> = rungs.iter().map(|r| r.name.clone()).collect();
            (observer.0)(&self.name, &names);
        }
        self.release_all_audio();
        let mut old: HashMap<String, RungSlot> = self
            .rungs
            .drain(..)
            .map(|s| (s.status.name.clone(), s))
            .collect();
        for status in rungs {
            if !self.seen_rungs.contains(&status.name) {
                self.seen_rungs.push(status.name.clone());
            }
            let slot = match old.remove(&status.name) {
                // A re-plan: the rung goes on after a discontinuity, with
                // the track set its new encoder will announce.
                Some(mut slot) if !slot.shed => {
                    if let Some(p) = &slot.publisher {
                        p.send(BusMessage::Discontinuity);
                    }
                    slot.tracks = None;
                    slot.status = status;
                    slot.frames_counted = 0;
                    slot
                }
                _ => RungSlot {
                    stream: rung_stream(&self.name, &status.name),
                    status,
                    publisher: None,
                    tracks: None,
                    tracks_pending: false,
                    shed: false,
                    frames_counted: 0,
                    last_keyframe: None,
                    video_reached: None,
                    audio: std::collections::VecDeque::new(),
                    trace: RungTracer::default(),
                },
            };
            self.rungs.push(slot);
        }
        for (_, slot) in old {
            self.end_rung(slot);
        }
        info!(
            stream = %self.name,
            rungs = ?self.rungs.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>(),
            backend = backend_label(&encoder),
            encoder = %encoder.reason,
            "transcoder planned"
        );
        let mut status = lock(&self.status);
        status.backend = backend_label(&encoder).to_owned();
        status.encoder_reason = encoder.reason;
        status.rungs = self.rungs.iter().map(|r| r.status.clone()).collect();
        status.error = None;
    }

    /// Publish `message` on rung `rung`, publishing the rung stream first
    /// if needed.
    fn send(&mut self, rung: usize, message: BusMessage) {
        let source_gone = self.source_gone;
        let Some(slot) = self.rungs.get_mut(rung) else {
            return;
        };
        if slot.shed || slot.tracks.is_none() {
            return;
        }
        if slot.publisher.is_none() {
            if source_gone {
                // The tail of a session whose publisher left: the rung
                // streams wait for the source to come back.
                return;
            }
            match self.shared.bus.publish(&slot.stream) {
                Ok(p) => {
                    debug!(stream = %slot.stream, "publishing rendition");
                    slot.publisher = Some(p);
                    slot.tracks_pending = true;
                }
                Err(e @ BusError::AlreadyPublished { .. }) => {
                    // An earlier stream of this name is still draining.
                    debug!(stream = %slot.stream, error = %e, "rendition not published yet");
                    return;
                }
                Err(e) => {
                    warn!(stream = %slot.stream, error = %e, "cannot publish rendition");
                    return;
                }
            }
        }
        let Some(publisher) = &slot.publisher else {
            return;
        };
        if slot.tracks_pending
            && let Some(tracks) = &slot.tracks
        {
            publisher.send(BusMessage::Tracks(tracks.clone()));
            slot.tracks_pending = false;
        }
        publisher.send(message);
    }

    fn publisher_live(&mut self, live: bool) {
        if live {
            // The source is back only in band, with the discontinuity that
            // follows the old session's tail through the worker: units of
            // that tail still arriving now must not publish the rungs again
            // (their subscribers would see two discontinuities).
            return;
        }
        self.release_all_audio();
        self.source_gone = true;
        for slot in &mut self.rungs {
            if let Some(p) = slot.publisher.take() {
                debug!(stream = %slot.stream, "source publisher gone: rendition waits too");
                p.detach();
            }
        }
    }

    fn shed(&mut self, rung: usize, lag_ms: i64) {
        let Some(slot) = self.rungs.get_mut(rung) else {
            return;
        };
        slot.shed = true;
        slot.status.shed = true;
        warn!(
            stream = %self.name,
            rung = %slot.status.name,
            lag_ms,
            "transcoder cannot keep up with live: rung shed (not restored while the source lives)"
        );
        self.shared
            .metrics
            .transcode
            .shed_rungs
            .with_label_values(&[&self.name])
            .inc();
        let stream = slot.stream.clone();
        let publisher = slot.publisher.take();
        end_stream(self.shared.bus.as_ref(), &stream, publisher);
        lock(&self.status).rungs = self.rungs.iter().map(|r| r.status.clone()).collect();
    }

    fn stats(&mut self, stats: &Stats) {
        let mut lag: Option<i64> = None;
        for (slot, rung) in self.rungs.iter_mut().zip(&stats.rungs) {
            let new = rung.frames_out.saturating_sub(slot.frames_counted);
            if new > 0 {
                self.shared
                    .metrics
                    .transcode
                    .frames
                    .with_label_values(&[&self.name, &slot.status.name])
                    .inc_by(new);
            }
            slot.frames_counted = rung.frames_out;
            slot.status.frames_out = rung.frames_out;
            if !slot.shed && rung.frames_out > 0 {
                lag = Some(lag.map_or(rung.realtime_lag_ms, |l| l.max(rung.realtime_lag_ms)));
            }
        }
        let lag = lag.unwrap_or(0);
        self.shared
            .metrics
            .transcode
            .lag_ms
            .with_label_values(&[&self.name])
            .set(lag);
        let mut status = lock(&self.status);
        status.lag_ms = lag;
        status.rungs = self.rungs.iter().map(|r| r.status.clone()).collect();
    }

    fn end_rung(&self, slot: RungSlot) {
        if !slot.shed {
            end_stream(self.shared.bus.as_ref(), &slot.stream, slot.publisher);
        }
    }

    fn end_all(&mut self) {
        self.release_all_audio();
        for slot in std::mem::take(&mut self.rungs) {
            self.end_rung(slot);
        }
    }
}

/// Ends a rendition stream: through its publisher if it holds one, else
/// on the bus (a detached stream waiting for its source).
fn end_stream(bus: &dyn MediaBus, stream: &str, publisher: Option<Publisher>) {
    match publisher {
        Some(p) => p.end(),
        None => match bus.end_stream(stream) {
            Ok(()) | Err(BusError::NotFound { .. }) => {}
            Err(e) => debug!(stream, error = %e, "rendition not ended"),
        },
    }
}

/// The blocking side: owns the transcoder.
struct Worker {
    name: String,
    ladder: Ladder,
    machine: EncoderChoice,
    budget: NvencBudget,
    shed: ShedPolicy,
}

/// What a change of which means a new plan.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PlanKey {
    H264(u32, u32),
    H265(u32, u32),
    Av1(u32, u32),
    Other(String),
}

fn plan_key(track: &TrackInfo) -> PlanKey {
    match &track.params {
        CodecParams::H264(p) => PlanKey::H264(p.width, p.height),
        CodecParams::H265(p) => PlanKey::H265(p.width, p.height),
        CodecParams::Av1(p) => PlanKey::Av1(p.width, p.height),
        other => PlanKey::Other(other.codec_string()),
    }
}

struct Active {
    transcoder: Transcoder,
    key: PlanKey,
    sent_tracks: Vec<Option<Arc<[TrackInfo]>>>,
    shedder: Shedder,
    costs: Vec<RungCost>,
}

impl Worker {
    fn run(self, mut input: mpsc::Receiver<Input>, events: mpsc::Sender<Event>) {
        let mut active: Option<Active> = None;
        let mut out = Vec::new();
        let mut last_stats = Instant::now();
        let mut unplannable: Option<PlanKey> = None;
        loop {
            // Between source units, hand out what the rungs finish as soon
            // as they finish it (each poll waits at most POLL_SLICE, so a
            // unit that arrives meanwhile waits no longer than that).
            let message = match input.try_recv() {
                Ok(message) => message,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => match active.as_mut() {
                    Some(a) if a.transcoder.pending() > 0 => {
                        if let Err(e) = a.transcoder.poll(&mut out, POLL_SLICE) {
                            let _ = events.blocking_send(Event::Failed(e.to_string()));
                            return;
                        }
                        if !flush(a, &mut out, &events) {
                            return;
                        }
                        continue;
                    }
                    _ => match input.blocking_recv() {
                        Some(message) => message,
                        None => break,
                    },
                },
            };
            let marker = matches!(message, Input::Discontinuity | Input::Dropped);
            let result = match message {
                Input::Tracks(tracks) => {
                    self.tracks(&tracks, &mut active, &mut unplannable, &mut out, &events)
                }
                Input::Unit(unit) => match active.as_mut() {
                    Some(a) => a
                        .transcoder
                        .push(&unit, &mut out)
                        .map_err(|e| e.to_string()),
                    None => Ok(()),
                },
                Input::Discontinuity => match active.as_mut() {
                    Some(a) => {
                        a.shedder.reset();
                        a.transcoder
                            .discontinuity(&mut out)
                            .map_err(|e| e.to_string())
                    }
                    None => Ok(()),
                },
                Input::Dropped => Ok(()),
                Input::Finish => {
                    if let Some(a) = active.as_mut()
                        && let Err(e) = a.transcoder.finish(&mut out)
                    {
                        debug!(stream = %self.name, error = %e, "draining the encoders failed");
                    }
                    if let Some(a) = active.as_mut() {
                        flush(a, &mut out, &events);
                        let _ = events.blocking_send(Event::Stats(a.transcoder.stats()));
                    }
                    return;
                }
            };
            if let Err(reason) = result {
                let _ = events.blocking_send(Event::Failed(reason));
                return;
            }
            let Some(a) = active.as_mut() else {
                out.clear();
                // Still said: it is also how a gone source comes back.
                if marker && events.blocking_send(Event::Discontinuity).is_err() {
                    return;
                }
                continue;
            };
            if !flush(a, &mut out, &events) {
                return;
            }
            // Order: a discontinuity marker goes after what came before it.
            if marker && events.blocking_send(Event::Discontinuity).is_err() {
                return;
            }
            let now = Instant::now();
            let stats = a.transcoder.stats();
            let lag = stats
                .rungs
                .iter()
                .zip(a.transcoder.active_rungs())
                .filter(|(r, active)| **active && r.frames_out > 0)
                .map(|(r, _)| r.realtime_lag_ms)
                .max();
            if let Some(lag) = lag {
                for (cost, active) in a.costs.iter_mut().zip(a.transcoder.active_rungs()) {
                    cost.active = *active;
                }
                if let Some(rung) = a.shedder.observe(now, lag, &a.costs)
                    && a.transcoder.shed_rung(rung)
                    && events
                        .blocking_send(Event::Shed { rung, lag_ms: lag })
                        .is_err()
                {
                    return;
                }
            }
            if now.duration_since(last_stats) >= STATS_INTERVAL {
                last_stats = now;
                if events.blocking_send(Event::Stats(stats)).is_err() {
                    return;
                }
            }
        }
    }

    /// A source track set: plan (or re-plan) for its video, set up audio.
    fn tracks(
        &self,
        tracks: &Arc<[TrackInfo]>,
        active: &mut Option<Active>,
        unplannable: &mut Option<PlanKey>,
        out: &mut Vec<Output>,
        events: &mpsc::Sender<Event>,
    ) -> Result<(), String> {
        let Some(video) = tracks.iter().find(|t| t.kind() == TrackKind::Video) else {
            // Audio only: nothing to transcode (yet).
            if let Some(a) = active.as_mut() {
                a.transcoder.set_tracks(tracks).map_err(|e| e.to_string())?;
            }
            return Ok(());
        };
        let key = plan_key(video);
        if let Some(a) = active.as_mut()
            && a.key == key
        {
            return a.transcoder.set_tracks(tracks).map_err(|e| e.to_string());
        }
        if unplannable.as_ref() == Some(&key) {
            return Ok(());
        }
        if let Some(mut old) = active.take() {
            info!(stream = %self.name, from = ?old.key, to = ?key, "source video changed: re-planning the ladder");
            if let Err(e) = old.transcoder.finish(out) {
                debug!(stream = %self.name, error = %e, "draining the old encoders failed");
            }
            flush(&mut old, out, events);
        }
        let plan = match crate::plan::plan(&self.ladder, video) {
            Ok(plan) => plan,
            Err(e) => {
                // An AV1 or unusable source: served as published, untranscoded.
                warn!(stream = %self.name, error = %e, "source not transcoded");
                *unplannable = Some(key);
                return Ok(());
            }
        };
        *unplannable = None;
        let rung_count = u32::try_from(plan.rungs.len()).unwrap_or(u32::MAX);
        let encoders = assign(&self.name, &self.machine, &self.budget, rung_count);
        let rungs: Vec<RungStatus> = plan
            .rungs
            .iter()
            .map(|r| RungStatus {
                name: r.name.clone(),
                stream: rung_stream(&self.name, &r.name),
                width: r.width,
                height: r.height,
                bitrate: r.bitrate,
                ..RungStatus::default()
            })
            .collect();
        let costs = plan
            .rungs
            .iter()
            .map(|r| RungCost {
                active: true,
                pixel_rate: r.pixel_rate(),
                shed_priority: r.shed_priority,
            })
            .collect();
        let mut transcoder = Transcoder::new(plan, encoders).map_err(|e| e.to_string())?;
        transcoder.set_tracks(tracks).map_err(|e| e.to_string())?;
        let _ = events.blocking_send(Event::Plan {
            rungs,
            encoder: transcoder.encoders().clone(),
        });
        *active = Some(Active {
            sent_tracks: vec![None; transcoder.plan().rungs.len()],
            transcoder,
            key,
            shedder: Shedder::new(self.shed),
            costs,
        });
        Ok(())
    }
}

/// Sends changed rung track sets, then `out`'s units, in order. False if
/// the stream task has gone.
fn flush(a: &mut Active, out: &mut Vec<Output>, events: &mpsc::Sender<Event>) -> bool {
    if out.is_empty() {
        return true;
    }
    let tracks = a.transcoder.tracks();
    for (rung, video) in tracks.rungs.iter().enumerate() {
        let Some(video) = video else { continue };
        let set: Vec<TrackInfo> = std::iter::once(video.clone())
            .chain(tracks.audio.iter().cloned())
            .collect();
        let changed = a.sent_tracks[rung]
            .as_deref()
            .is_none_or(|sent| sent != set.as_slice());
        if changed {
            let set: Arc<[TrackInfo]> = set.into();
            a.sent_tracks[rung] = Some(set.clone());
            if events
                .blocking_send(Event::Tracks { rung, tracks: set })
                .is_err()
            {
                return false;
            }
        }
    }
    for output in out.drain(..) {
        let event = match output {
            Output::Video { rung, unit } => Event::Video { rung, unit },
            Output::Audio(unit) => Event::Audio(unit),
            // The packager serves the source itself as the passthrough
            // rendition.
            Output::Passthrough(_) => continue,
        };
        if events.blocking_send(event).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrocast_media::{Time90k, TrackId};

    use super::*;

    fn unit(kind: TrackKind, keyframe: bool) -> AccessUnit {
        AccessUnit {
            track: TrackId(256),
            kind,
            pts: Time90k(0),
            dts: Time90k(0),
            keyframe,
            data: Bytes::new(),
            captured_unix_ms: None,
            trace: None,
        }
    }

    #[test]
    fn names() {
        assert!(is_source("cam1"));
        assert!(!is_source("cam1/720p"));
        assert!(!is_source(""));
        assert_eq!(rung_stream("cam1", "720p"), "cam1/720p");
    }

    #[test]
    fn a_full_queue_drops_whole_gops() {
        let video = |key| unit(TrackKind::Video, key);
        let audio = unit(TrackKind::Audio, true);
        let mut a = Admission::default();
        assert_eq!(a.admit(&video(true), 5), Admit::Send);
        assert_eq!(a.admit(&video(false), 1), Admit::Send);
        // Full: the rest of this GOP goes, audio included.
        assert_eq!(a.admit(&video(false), 0), Admit::Drop);
        assert_eq!(a.dropped_gops, 1);
        assert_eq!(a.admit(&audio, 10), Admit::Drop);
        assert_eq!(a.admit(&video(false), 10), Admit::Drop);
        // A keyframe with no room: that whole GOP goes too.
        assert_eq!(a.admit(&video(true), 1), Admit::Drop);
        assert_eq!(a.dropped_gops, 2);
        assert_eq!(a.admit(&video(false), 10), Admit::Drop);
        // A keyframe with room for the marker and itself: back in.
        assert_eq!(a.admit(&video(true), 2), Admit::SendAfterDrop);
        assert_eq!(a.admit(&audio, 1), Admit::Send);
        assert_eq!(a.dropped_gops, 2);
    }
}
