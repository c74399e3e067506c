//! A subscription to a stream another process publishes, that outlives
//! that process: when the connection breaks it dials whoever publishes the
//! stream next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use ferrocast_bus::{
    BusError, BusMessage, StreamEvent, Subscriber, SubscriberBackend, SubscriberStats,
};
use ferrocast_bus_grpc::{Delivery, RemoteFrames};
use ferrocast_hls::BusName;
use ferrocast_media::Time90k;
use ferrocast_registry::{Epoch, NodeId};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::bus::{ClusterBus, lock};
use crate::locate::{endpoint_of, publishing_role};

/// Messages buffered between the connection and the subscriber. Small: the
/// bounded queue (and GOP dropping) is at the publisher's end, and a
/// reader that stops pulling stops the connection through HTTP/2 flow
/// control.
const BUFFER: usize = 64;

/// What [`ClusterBus::end_stream`] needs to know of a remote subscription.
pub(crate) struct RemoteState {
    /// Connected and the publisher has not left.
    live: AtomicBool,
    /// Set to end the subscription (its grace ran out).
    end: watch::Sender<bool>,
}

impl RemoteState {
    pub(crate) fn publisher_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    pub(crate) fn end(&self) {
        self.end.send_replace(true);
    }
}

/// Find the publisher of `name` and dial it. Its answer carries the epoch
/// of the lease it publishes under; one older than an epoch already seen
/// for the stream is a stale writer (it paused, or was cut off, past its
/// lease) and is refused.
async fn dial(bus: &ClusterBus, name: &BusName) -> Result<Connection, String> {
    let (holder, endpoint) = endpoint_of(bus.inner.registry.as_ref(), name).await?;
    let frames = ferrocast_bus_grpc::connect(&endpoint, &name.to_string())
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let epoch = frames
        .epoch()
        .ok_or_else(|| format!("{endpoint} serves {name} without a fencing epoch"))?;
    bus.admit(name, Epoch(epoch)).map_err(|stale| {
        warn!(stream = %name, %endpoint, %stale, "stale publisher refused");
        stale.to_string()
    })?;
    Ok(Connection {
        frames,
        holder,
        epoch,
    })
}

/// One connection to the publishing process.
struct Connection {
    frames: RemoteFrames,
    /// The node it is.
    holder: NodeId,
    /// The epoch it serves the stream under.
    epoch: u64,
}

/// The newest holder of a lease the registry named: its epoch and node.
type Newest = (u64, Option<NodeId>);

/// Watches the registry for a newer lease for `name`: sends its epoch and
/// holder. Registry errors are ignored (media that flows keeps flowing
/// while the registry is away).
fn watch_holder(bus: &ClusterBus, name: &BusName) -> (watch::Receiver<Newest>, AbortOnDrop) {
    let (tx, rx) = watch::channel((0, None));
    let registry = bus.inner.registry.clone();
    let period = bus.inner.settings.lease_ttl / 2;
    let (stream, role) = (name.stream.clone(), publishing_role(name));
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            if let Ok(Some(lease)) = registry.holder(&stream, role).await {
                tx.send_if_modified(|newest| {
                    let newer = lease.epoch.0 > newest.0;
                    if newer {
                        *newest = (lease.epoch.0, Some(lease.holder.clone()));
                    }
                    newer
                });
            }
        }
    });
    (rx, AbortOnDrop(task))
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Subscribe to `stream` in whichever process publishes it, trying for
/// [`ClusterSettings::first_dial`](crate::ClusterSettings::first_dial).
pub(crate) async fn open(bus: ClusterBus, stream: String) -> Result<Subscriber, BusError> {
    let name = BusName::parse(&stream).ok_or_else(|| BusError::NotFound {
        stream: stream.clone(),
    })?;
    let settings = &bus.inner.settings;
    let deadline = Instant::now() + settings.first_dial;
    let connection = loop {
        match dial(&bus, &name).await {
            Ok(connection) => break connection,
            Err(reason) if Instant::now() + settings.poll >= deadline => {
                return Err(BusError::Transport { stream, reason });
            }
            Err(reason) => {
                debug!(stream, %reason, "publisher not reachable yet");
                tokio::time::sleep(settings.poll).await;
            }
        }
    };
    let (end, ended) = watch::channel(false);
    let state = Arc::new(RemoteState {
        live: AtomicBool::new(true),
        end,
    });
    {
        let mut remotes = lock(&bus.inner.remotes);
        let list = remotes.entry(stream.clone()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&state));
    }
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(follow(bus, name, connection, tx, state, ended));
    Ok(Subscriber::new(stream, Box::new(Channel { rx })))
}

/// Why forwarding one connection stopped.
enum Stop {
    /// The stream is over, or nobody reads any more: the subscription ends.
    Done,
    /// The connection broke: dial again.
    Broken(String),
    /// The publisher handed the stream over (a planned drain): dial the
    /// next one and splice its output in at this time.
    HandedOver(Time90k),
}

/// Forward the stream's messages, from one connection after another.
async fn follow(
    bus: ClusterBus,
    name: BusName,
    mut connection: Connection,
    tx: mpsc::Sender<BusMessage>,
    state: Arc<RemoteState>,
    mut ended: watch::Receiver<bool>,
) {
    let stream = name.to_string();
    let (mut newest, _watcher) = watch_holder(&bus, &name);
    let mut splice = None;
    loop {
        match forward(
            &bus,
            &name,
            &mut connection,
            &mut newest,
            &tx,
            &state,
            &mut ended,
            &mut splice,
        )
        .await
        {
            Stop::Done => return,
            Stop::Broken(reason) => {
                warn!(stream, %reason, "publishing process lost: finding who publishes it next");
                splice = None;
                if state.live.swap(false, Ordering::SeqCst) {
                    bus.announce(StreamEvent::PublisherGone(stream.clone()));
                }
            }
            Stop::HandedOver(at) => {
                info!(
                    stream,
                    at = at.0,
                    "the publisher handed the stream over: finding who publishes it next"
                );
                splice = Some(Splice::new(at));
            }
        }
        connection = loop {
            tokio::select! {
                () = ended_signal(&mut ended) => {
                    let _ = tx.send(BusMessage::End).await;
                    return;
                }
                () = tx.closed() => return,
                () = tokio::time::sleep(bus.inner.settings.poll) => {}
            }
            match dial(&bus, &name).await {
                Ok(connection) => break connection,
                Err(reason) => debug!(stream, %reason, "publisher not reachable yet"),
            }
        };
        bus.inner.publisher_changes.fetch_add(1, Ordering::Relaxed);
        if splice.is_some() {
            // Still live: the next publisher's output is spliced in.
            info!(stream, "the next publisher found: splicing its output in");
            continue;
        }
        info!(
            stream,
            "publishing process found again: the stream goes on after a discontinuity"
        );
        if tx.send(BusMessage::Discontinuity).await.is_err() {
            return;
        }
        state.live.store(true, Ordering::SeqCst);
        bus.announce(StreamEvent::Resumed(stream.clone()));
    }
}

/// Most audio units held back while a splice waits for its video keyframe
/// (about 10 s of AAC): past it the splice gives up and goes on after a
/// discontinuity.
const SPLICE_AUDIO_HELD: usize = 500;

/// Joining the next publisher's output to the last one's after a planned
/// handover at `at`: the previous publisher sent everything before `at`,
/// the next one starts with a video keyframe at `at`. Its earlier units
/// (its GOP cache may begin before `at`) are dropped; audio at or after
/// `at` is held until that keyframe. A first keyframe later than `at`
/// means media was lost in between: the stream goes on after a
/// discontinuity instead.
#[derive(Debug)]
struct Splice {
    at: Time90k,
    /// Audio at or after `at`, waiting for the video keyframe.
    audio: Vec<BusMessage>,
    /// The keyframe arrived: only audio before `at` is still dropped.
    joined: bool,
    /// Set once when the splice is decided: `true` joined without a
    /// discontinuity, `false` not (taken by whoever counts them).
    outcome: Option<bool>,
}

/// What a splice makes of one message.
#[derive(Debug, PartialEq)]
enum Spliced {
    /// Drop it.
    Drop,
    /// Hold it back (the splice keeps it).
    Held,
    /// Send these, in order.
    Send(Vec<BusMessage>),
}

impl Splice {
    fn new(at: Time90k) -> Splice {
        Splice {
            at,
            audio: Vec::new(),
            joined: false,
            outcome: None,
        }
    }

    /// What becomes of `message`, the next one from the new publisher.
    fn filter(&mut self, message: BusMessage) -> Spliced {
        let unit = match &message {
            BusMessage::Unit(unit) => unit.clone(),
            BusMessage::Tracks(tracks) => {
                if !self.joined
                    && !tracks
                        .iter()
                        .any(|t| t.kind() == ferrocast_media::TrackKind::Video)
                {
                    // No keyframe will come to splice at.
                    return self.give_up(vec![message]);
                }
                return Spliced::Send(vec![message]);
            }
            // The next publisher broke its own timeline: nothing to join.
            BusMessage::Discontinuity | BusMessage::Gap | BusMessage::End => {
                return self.give_up(vec![message]);
            }
            BusMessage::HandedOver(_) => return Spliced::Send(vec![message]),
        };
        let video = unit.kind == ferrocast_media::TrackKind::Video;
        if self.joined {
            return if !video && unit.pts < self.at {
                Spliced::Drop
            } else {
                Spliced::Send(vec![message])
            };
        }
        if !video {
            if unit.pts < self.at {
                return Spliced::Drop;
            }
            if self.audio.len() >= SPLICE_AUDIO_HELD {
                return self.give_up(vec![message]);
            }
            self.audio.push(message);
            return Spliced::Held;
        }
        if !unit.keyframe || unit.pts < self.at {
            return Spliced::Drop;
        }
        self.joined = true;
        self.outcome = Some(unit.pts == self.at);
        let mut out = Vec::with_capacity(self.audio.len() + 2);
        if unit.pts > self.at {
            warn!(
                at = self.at.0,
                keyframe = unit.pts.0,
                "the next publisher starts after the handover point: a discontinuity"
            );
            out.push(BusMessage::Discontinuity);
        }
        out.append(&mut self.audio);
        out.push(message);
        Spliced::Send(out)
    }

    /// Stop joining: a discontinuity, what was held, then `rest`.
    fn give_up(&mut self, rest: Vec<BusMessage>) -> Spliced {
        let mut out = Vec::new();
        if !self.joined {
            out.push(BusMessage::Discontinuity);
            self.outcome = Some(false);
        }
        self.joined = true;
        self.at = Time90k(i64::MIN);
        out.append(&mut self.audio);
        out.extend(rest);
        Spliced::Send(out)
    }
}

/// Forward one connection's messages until it breaks, the stream ends,
/// or the registry names another holder with a newer epoch. The same
/// holder under a newer epoch (it took its lease again, say after the
/// registry was away) goes on: its newer epoch is admitted. Messages pass
/// through `splice` while one is joining.
#[allow(clippy::too_many_arguments)]
async fn forward(
    bus: &ClusterBus,
    name: &BusName,
    connection: &mut Connection,
    newest: &mut watch::Receiver<Newest>,
    tx: &mpsc::Sender<BusMessage>,
    state: &RemoteState,
    ended: &mut watch::Receiver<bool>,
    splice: &mut Option<Splice>,
) -> Stop {
    let stream = name.to_string();
    let stream = stream.as_str();
    let mut watching = true;
    loop {
        let (epoch, holder) = newest.borrow_and_update().clone();
        if epoch > connection.epoch {
            if holder.as_ref() != Some(&connection.holder) {
                return Stop::Broken(format!(
                    "superseded: the stream is held under epoch {epoch} now, this connection has {}",
                    connection.epoch
                ));
            }
            if bus.admit(name, Epoch(epoch)).is_ok() {
                debug!(
                    stream,
                    epoch, "the publisher holds the stream under a newer epoch"
                );
                connection.epoch = epoch;
            }
        }
        let frames = &mut connection.frames;
        let item = tokio::select! {
            item = frames.next() => item,
            changed = newest.changed(), if watching => {
                watching = changed.is_ok();
                continue;
            }
            () = ended_signal(ended) => {
                let _ = tx.send(BusMessage::End).await;
                return Stop::Done;
            }
            () = tx.closed() => return Stop::Done,
        };
        match item {
            Some(Ok(Delivery::Message(BusMessage::HandedOver(at)))) => {
                return Stop::HandedOver(at);
            }
            Some(Ok(Delivery::Message(message))) => {
                let messages = match splice.as_mut() {
                    None => vec![message],
                    Some(splice) => {
                        let spliced = splice.filter(message);
                        match splice.outcome.take() {
                            Some(true) => {
                                bus.inner.handovers_joined.fetch_add(1, Ordering::Relaxed)
                            }
                            Some(false) => {
                                bus.inner.handovers_broken.fetch_add(1, Ordering::Relaxed)
                            }
                            None => 0,
                        };
                        match spliced {
                            Spliced::Drop | Spliced::Held => continue,
                            Spliced::Send(messages) => messages,
                        }
                    }
                };
                for message in messages {
                    if let Some(stop) = deliver(bus, stream, message, tx, state).await {
                        return stop;
                    }
                }
            }
            Some(Ok(Delivery::PublisherGone)) => {
                if state.live.swap(false, Ordering::SeqCst) {
                    bus.announce(StreamEvent::PublisherGone(stream.to_owned()));
                }
            }
            Some(Err(e)) => return Stop::Broken(e.to_string()),
            None => return Stop::Broken("connection closed".to_owned()),
        }
    }
}

/// Hand one message to the subscriber; `Some` when the subscription is
/// over.
async fn deliver(
    bus: &ClusterBus,
    stream: &str,
    message: BusMessage,
    tx: &mpsc::Sender<BusMessage>,
    state: &RemoteState,
) -> Option<Stop> {
    let end = message == BusMessage::End;
    if message == BusMessage::Discontinuity {
        // The remote publisher came back.
        state.live.store(true, Ordering::SeqCst);
    }
    if tx.send(message).await.is_err() {
        return Some(Stop::Done);
    }
    if end {
        state.live.store(false, Ordering::SeqCst);
        bus.announce(StreamEvent::Ended(stream.to_owned()));
        return Some(Stop::Done);
    }
    None
}

/// Resolves once the subscription is to end (or never, if it cannot be).
async fn ended_signal(ended: &mut watch::Receiver<bool>) {
    if ended.wait_for(|e| *e).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The subscriber's end of the forwarding task.
struct Channel {
    rx: mpsc::Receiver<BusMessage>,
}

impl SubscriberBackend for Channel {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        self.rx.poll_recv(cx)
    }

    fn stats(&self) -> SubscriberStats {
        // Queueing and losses happen at the publisher's end.
        SubscriberStats::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use bytes::Bytes;
    use ferrocast_media::{AccessUnit, TrackId, TrackKind};

    use super::*;

    fn unit(kind: TrackKind, pts: i64, keyframe: bool) -> BusMessage {
        BusMessage::Unit(Arc::new(AccessUnit {
            track: TrackId(if kind == TrackKind::Video { 1 } else { 2 }),
            kind,
            pts: Time90k(pts),
            dts: Time90k(pts),
            keyframe,
            data: Bytes::from_static(b"x"),
            captured_unix_ms: None,
            trace: None,
        }))
    }

    fn run(splice: &mut Splice, messages: Vec<BusMessage>) -> Vec<BusMessage> {
        let mut out = Vec::new();
        for message in messages {
            if let Spliced::Send(sent) = splice.filter(message) {
                out.extend(sent);
            }
        }
        out
    }

    #[test]
    fn the_next_publisher_joins_at_the_handover_keyframe() {
        let (video, audio) = (TrackKind::Video, TrackKind::Audio);
        let mut splice = Splice::new(Time90k(9000));
        let out = run(
            &mut splice,
            vec![
                // Its GOP cache starts before the handover point.
                unit(video, 0, true),
                unit(audio, 8000, false),
                unit(video, 3000, false),
                unit(audio, 9100, false),
                unit(video, 9000, true),
                unit(audio, 8900, false),
                unit(video, 12000, false),
            ],
        );
        assert_eq!(
            out,
            vec![
                unit(audio, 9100, false),
                unit(video, 9000, true),
                unit(video, 12000, false),
            ],
            "units before the handover are dropped, audio after it waits for the keyframe"
        );
        assert_eq!(splice.outcome, Some(true));
    }

    #[test]
    fn a_later_keyframe_or_a_broken_timeline_is_a_discontinuity() {
        let (video, audio) = (TrackKind::Video, TrackKind::Audio);
        let mut splice = Splice::new(Time90k(9000));
        let out = run(
            &mut splice,
            vec![unit(audio, 9100, false), unit(video, 18000, true)],
        );
        assert_eq!(
            out,
            vec![
                BusMessage::Discontinuity,
                unit(audio, 9100, false),
                unit(video, 18000, true),
            ]
        );
        assert_eq!(splice.outcome, Some(false));
        let mut splice = Splice::new(Time90k(9000));
        let out = run(
            &mut splice,
            vec![
                unit(audio, 9100, false),
                BusMessage::Gap,
                unit(video, 100, true),
            ],
        );
        assert_eq!(
            out,
            vec![
                BusMessage::Discontinuity,
                unit(audio, 9100, false),
                BusMessage::Gap,
                unit(video, 100, true),
            ]
        );
        // Held audio is bounded.
        let mut splice = Splice::new(Time90k(0));
        let out = run(
            &mut splice,
            (0..=SPLICE_AUDIO_HELD as i64)
                .map(|i| unit(audio, i * 1920, false))
                .collect(),
        );
        assert_eq!(out.len(), SPLICE_AUDIO_HELD + 2);
        assert_eq!(out[0], BusMessage::Discontinuity);
    }
}
