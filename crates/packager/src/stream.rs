//! One live stream as the origin sees it: its assembler behind a lock, and a
//! version counter that wakes every request waiting for it to change.
//!
//! Waiting never polls: a waiter subscribes to the version, checks the state
//! under the lock, and sleeps until the next version if what it wants is not
//! there yet. The lock is never held across an `.await`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use std::sync::Arc;

use ferrocast_bus::{BusMessage, MediaBus, Subscriber};
use ferrocast_hls::{PartRef, RenditionName};
use ferrocast_media::StreamName;
use ferrocast_telemetry::Metrics;
use futures::FutureExt;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::assembler::{Assembler, Changes};
use crate::recording::RecordingSink;
use crate::segment_trace::SegmentTracer;

/// One rendition of a stream being packaged (a stream with no transcoding
/// has one, its source).
#[derive(Debug)]
pub struct LiveStream {
    name: StreamName,
    rendition: RenditionName,
    /// The bus stream it comes from (`NAME` or `NAME/RUNG`), also the
    /// `stream` label of its metrics.
    bus_name: String,
    state: Mutex<Assembler>,
    version: watch::Sender<u64>,
    /// Bumped on playlist changes, shared by the renditions of a stream
    /// (multivariant playlists wait on it).
    group_version: Arc<watch::Sender<u64>>,
    gone: Notify,
    metrics: Arc<Metrics>,
    /// Where closed segments go, when the stream is recorded.
    recorder: Option<Arc<dyn RecordingSink>>,
    /// When the newest parts were listed, newest last
    /// ([`LIST_TIMES_KEPT`] of them).
    listed: Mutex<std::collections::VecDeque<(PartRef, Instant)>>,
}

/// How many part listing times a stream keeps: enough for a segment's
/// parts and the next one's first, at any sensible part target.
const LIST_TIMES_KEPT: usize = 64;

/// What a waiter decided after looking at the state.
pub enum Check<T> {
    /// Answer with this.
    Done(T),
    /// Not yet: wait for the next change.
    Wait,
}

/// A wait that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl LiveStream {
    /// The source rendition of a stream, around a fresh assembler.
    pub fn new(name: StreamName, assembler: Assembler, metrics: Arc<Metrics>) -> Self {
        LiveStream::rendition(
            name,
            RenditionName::source(),
            assembler,
            metrics,
            Arc::new(watch::Sender::new(0)),
        )
    }

    /// Rendition `rendition` of stream `name`; `group_version` is shared
    /// with the stream's other renditions and bumped whenever this one's
    /// playlist changes.
    pub fn rendition(
        name: StreamName,
        rendition: RenditionName,
        assembler: Assembler,
        metrics: Arc<Metrics>,
        group_version: Arc<watch::Sender<u64>>,
    ) -> Self {
        let bus_name = ferrocast_hls::BusName::new(name.clone(), rendition.clone()).to_string();
        LiveStream {
            name,
            rendition,
            bus_name,
            state: Mutex::new(assembler),
            version: watch::Sender::new(0),
            group_version,
            gone: Notify::new(),
            metrics,
            recorder: None,
            listed: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// `part` became the newest listed part now.
    fn note_listed(&self, part: PartRef) {
        let mut listed = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        if listed.len() >= LIST_TIMES_KEPT {
            listed.pop_front();
        }
        listed.push_back((part, Instant::now()));
    }

    /// When the last part of segment `msn` was listed, if that is still
    /// known.
    pub fn last_part_listed_at(&self, msn: u64) -> Option<Instant> {
        self.listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(part, _)| part.msn == msn)
            .map(|(_, at)| *at)
    }

    /// Hands this rendition's init segments, closed segments and end to
    /// `recorder` (and turns collecting them on in the assembler).
    pub fn recorded_by(mut self, recorder: Arc<dyn RecordingSink>) -> Self {
        self.state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .set_recording(true);
        self.recorder = Some(recorder);
        self
    }

    /// The DVR window of this rendition, from its recorder, if it keeps one.
    pub fn dvr(&self) -> Option<Arc<crate::recording::DvrList>> {
        self.recorder.as_ref()?.dvr(&self.name, &self.rendition)
    }

    /// Which rendition of the stream this is.
    pub fn rendition_name(&self) -> &RenditionName {
        &self.rendition
    }

    /// The bus stream it is packaged from: `NAME`, or `NAME/RUNG`.
    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }

    /// The publisher left: the stream's task finishes what is open and
    /// starts the reconnect grace period.
    pub fn publisher_gone(&self) {
        self.gone.notify_one();
    }

    /// The stream's name.
    pub fn name(&self) -> &StreamName {
        &self.name
    }

    /// Lock the assembler (briefly; never across an await).
    pub fn lock(&self) -> MutexGuard<'_, Assembler> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Apply a change and wake waiters if anything changed.
    pub fn update(&self, f: impl FnOnce(&mut Assembler) -> Changes) {
        let (changes, recorded) = {
            let mut assembler = self.lock();
            let changes = f(&mut assembler);
            let recorded = match &self.recorder {
                Some(_) => assembler.take_recorded(),
                None => Vec::new(),
            };
            (changes, recorded)
        };
        if changes.chunk || changes.playlist {
            self.version.send_modify(|v| *v += 1);
        }
        if changes.playlist {
            self.group_version.send_modify(|v| *v += 1);
        }
        // After the waiters are woken: recording never delays a viewer.
        if let Some(recorder) = &self.recorder {
            for item in recorded {
                recorder.record(&self.name, &self.rendition, item);
            }
        }
    }

    /// Run `check` against the state now and after every change until it is
    /// done or `deadline` passes.
    pub async fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&Assembler) -> Check<T>,
    ) -> Result<T, TimedOut> {
        // Subscribe before checking, so a change between the check and the
        // wait is not missed.
        let mut version = self.version.subscribe();
        if let Check::Done(value) = check(&self.lock()) {
            return Ok(value);
        }
        let held = &self.metrics.packager.held_requests;
        held.inc();
        let _release = scopeguard(|| held.dec());
        loop {
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`; treat a closed channel
                // like a timeout rather than spinning.
                Ok(Err(_)) | Err(_) => return Err(TimedOut),
            }
            if let Check::Done(value) = check(&self.lock()) {
                return Ok(value);
            }
        }
    }
}

/// Feed a stream's assembler from its bus subscription until the stream ends.
///
/// When the publisher leaves (the origin calls [`LiveStream::publisher_gone`]),
/// the open part and segment are finished at once; if no publisher returns
/// within `grace`, the stream ends with EXT-X-ENDLIST and the bus forgets it.
///
/// `audio`, the stream's audio rendition when its audio is packaged apart
/// from its video, gets every message right after `stream` does: it places
/// its frames by the video `stream` has just written.
pub async fn run(
    stream: Arc<LiveStream>,
    audio: Option<Arc<LiveStream>>,
    mut subscriber: Subscriber,
    bus: Arc<dyn MediaBus>,
    grace: Duration,
) {
    let name = stream.bus_name().to_owned();
    let mut grace_deadline: Option<Instant> = None;
    let mut messages: u64 = 0;
    let mut segments = SegmentTracer::default();
    let mut audio_segments = SegmentTracer::default();
    loop {
        tokio::select! {
            biased;
            message = subscriber.recv() => {
                let Some(message) = message else { break };
                if matches!(message, BusMessage::End) {
                    break;
                }
                if matches!(message, BusMessage::Discontinuity | BusMessage::Tracks(_)) {
                    grace_deadline = None;
                }
                apply_with_audio(&stream, audio.as_deref(), message, &mut segments, &mut audio_segments);
                messages += 1;
                if messages.is_multiple_of(64) {
                    record_bus_stats(&stream, &subscriber);
                }
            }
            () = stream.gone.notified() => {
                // Everything the publisher sent is already queued: take it
                // before finishing the open segment.
                while let Some(Some(message)) = subscriber.recv().now_or_never() {
                    if matches!(message, BusMessage::End) {
                        break;
                    }
                    apply_with_audio(&stream, audio.as_deref(), message, &mut segments, &mut audio_segments);
                }
                for rendition in std::iter::once(&stream).chain(&audio) {
                    rendition.update(Assembler::on_publisher_gone);
                }
                segments.follow(&name, None, None);
                audio_segments.follow(&name, None, None);
                info!(stream = %name, grace_ms = grace.as_millis() as u64, "publisher gone; waiting for it to return");
                grace_deadline = Some(Instant::now() + grace);
            }
            () = sleep_until_some(grace_deadline) => {
                match bus.end_stream(&name) {
                    Ok(()) => {
                        info!(stream = %name, "no publisher within the grace period: stream ends");
                        break;
                    }
                    // A publisher came back just now.
                    Err(_) => grace_deadline = None,
                }
            }
        }
    }
    for rendition in std::iter::once(&stream).chain(&audio) {
        rendition.update(Assembler::on_end);
        rendition.metrics.forget_stream(rendition.bus_name());
    }
    info!(stream = %name, "stream ended");
}

/// [`apply`] to `stream`, then to its audio rendition if it has one.
fn apply_with_audio(
    stream: &LiveStream,
    audio: Option<&LiveStream>,
    message: BusMessage,
    segments: &mut SegmentTracer,
    audio_segments: &mut SegmentTracer,
) {
    match audio {
        Some(audio) => {
            apply(stream, message.clone(), segments);
            apply(audio, message, audio_segments);
        }
        None => apply(stream, message, segments),
    }
}

/// Per-stream memory on the bus side and losses, for the metrics.
fn record_bus_stats(stream: &LiveStream, subscriber: &Subscriber) {
    let stats = subscriber.stats();
    let labels = [stream.bus_name.as_str()];
    let packager = &stream.metrics.packager;
    packager
        .bus_queued_bytes
        .with_label_values(&labels)
        .set(stats.queued_bytes as i64);
    packager
        .bus_dropped_units
        .with_label_values(&labels)
        .set(stats.dropped_units as i64);
}

/// Writes `message` into the stream's assembler; `segments` follows the
/// open segment for its span.
fn apply(stream: &LiveStream, message: BusMessage, segments: &mut SegmentTracer) {
    match message {
        BusMessage::Tracks(tracks) => stream.update(|a| a.on_tracks(tracks)),
        BusMessage::Unit(unit) => {
            let received = std::time::Instant::now();
            // Dated by when the ingest received it, where it says: every
            // rendition and every packager then dates a segment alike.
            let now = unit.captured_unix_ms.unwrap_or_else(unix_millis);
            let mut part_completed = false;
            let mut newest = None;
            stream.update(|a| {
                let before = a.window.last_part();
                let changes = a.on_unit(&unit, now);
                segments.follow(&stream.bus_name, a.open_msn(), Some(&unit));
                newest = a.window.last_part();
                part_completed = newest != before;
                if part_completed {
                    let labels = [stream.bus_name.as_str()];
                    let packager = &stream.metrics.packager;
                    packager.parts.with_label_values(&labels).inc();
                    packager
                        .window_bytes
                        .with_label_values(&labels)
                        .set(a.store.bytes() as i64);
                }
                changes
            });
            if let Some(part) = newest.filter(|_| part_completed) {
                stream.note_listed(part);
            }
            if part_completed {
                // Servable from here: waiters were woken inside `update`.
                let seconds = received.elapsed().as_secs_f64();
                stream
                    .metrics
                    .packager
                    .part_publish_seconds
                    .observe(seconds);
            }
        }
        BusMessage::Discontinuity => {
            debug!(stream = %stream.bus_name(), "discontinuity");
            stream.update(Assembler::on_discontinuity);
            segments.follow(&stream.bus_name, None, None);
        }
        BusMessage::Gap => {
            debug!(stream = %stream.bus_name(), "gap: media lost on the bus");
            stream.update(Assembler::on_gap);
            segments.follow(&stream.bus_name, None, None);
        }
        // Consumed by a subscription that follows a stream across
        // processes; on the publisher's own bus the units just go on.
        BusMessage::HandedOver(_) | BusMessage::End => {}
    }
}

/// Runs `f` when dropped (also when a waiting future is cancelled).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
