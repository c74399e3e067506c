//! One stream's state and its fan-out to subscribers.
//!
//! Lock order: the bus's stream map, then a stream's state, then a
//! subscriber's queue. Nothing here awaits; every lock is held only while
//! messages are moved, and wakers are called after the queue lock is released.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ferrocast_media::{AccessUnit, TrackInfo, TrackKind};
use tokio::sync::broadcast;

use crate::config::BusConfig;
use crate::error::BusError;
use crate::event::{StreamEvent, StreamInfo};
use crate::gop::GopCache;
use crate::message::BusMessage;
use crate::queue::{Limits, SubscriberQueue};
use crate::stats::{Counters, SubscriberStats};

/// Lock a mutex, carrying on if a panic elsewhere poisoned it: every
/// critical section leaves the data usable, and a panicking subscriber
/// task must not take the publisher down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A subscriber's place in a stream.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    queue: Mutex<SubscriberQueue>,
}

impl Slot {
    pub(crate) fn queue(&self) -> MutexGuard<'_, SubscriberQueue> {
        lock(&self.queue)
    }

    pub(crate) fn stats(&self) -> SubscriberStats {
        self.queue().stats()
    }
}

#[derive(Debug)]
struct State {
    tracks: Option<Arc<[TrackInfo]>>,
    /// The track set has video, so only video keyframes start GOPs.
    has_video: bool,
    cache: GopCache,
    subscribers: Vec<Arc<Slot>>,
    next_id: u64,
    publisher_live: bool,
    ended: bool,
}

/// One named stream.
#[derive(Debug)]
pub(crate) struct Stream {
    name: Arc<str>,
    limits: Limits,
    counters: Arc<Counters>,
    events: broadcast::Sender<StreamEvent>,
    state: Mutex<State>,
}

impl Stream {
    /// A new stream with a live publisher; announces it.
    pub(crate) fn start(
        name: &str,
        config: &BusConfig,
        counters: Arc<Counters>,
        events: broadcast::Sender<StreamEvent>,
    ) -> Self {
        let stream = Stream {
            name: Arc::from(name),
            limits: Limits::new(
                config.subscriber_queue_bytes,
                config.subscriber_hard_limit_bytes,
            ),
            counters,
            events,
            state: Mutex::new(State {
                tracks: None,
                has_video: false,
                cache: GopCache::new(config.gop_cache_bytes, config.gop_cache_max_duration),
                subscribers: Vec::new(),
                next_id: 0,
                publisher_live: true,
                ended: false,
            }),
        };
        stream.announce(StreamEvent::Started);
        stream
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn announce(&self, event: fn(String) -> StreamEvent) {
        // No receivers is fine: nobody is listening yet.
        let _ = self.events.send(event(self.name.to_string()));
    }

    /// A new publisher takes over a stream whose publisher had gone.
    pub(crate) fn resume(&self) -> Result<(), BusError> {
        let mut state = lock(&self.state);
        if state.publisher_live {
            return Err(BusError::AlreadyPublished {
                stream: self.name.to_string(),
            });
        }
        state.publisher_live = true;
        state.cache.invalidate();
        fan_out(&state.subscribers, BusMessage::Discontinuity, false);
        self.announce(StreamEvent::Resumed);
        Ok(())
    }

    /// The publisher went without ending the stream.
    pub(crate) fn detach(&self) {
        let mut state = lock(&self.state);
        if state.ended || !state.publisher_live {
            return;
        }
        state.publisher_live = false;
        self.announce(StreamEvent::PublisherGone);
    }

    /// End the stream: `End` to every subscriber, then nothing more.
    pub(crate) fn finish(&self) {
        let mut state = lock(&self.state);
        if state.ended {
            return;
        }
        state.ended = true;
        state.publisher_live = false;
        state.cache.invalidate();
        fan_out(&state.subscribers, BusMessage::End, false);
        state.subscribers.clear();
        self.announce(StreamEvent::Ended);
    }

    pub(crate) fn is_publisher_live(&self) -> bool {
        lock(&self.state).publisher_live
    }

    pub(crate) fn is_ended(&self) -> bool {
        lock(&self.state).ended
    }

    /// A publisher's `Tracks`, `Unit`, `Discontinuity` or `HandedOver`.
    pub(crate) fn send(&self, message: BusMessage) -> Result<(), BusError> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if state.ended {
            return Err(BusError::Ended {
                stream: self.name.to_string(),
            });
        }
        match message {
            BusMessage::Unit(unit) => {
                let starts_gop = self.check_unit(state, &unit)?;
                state.cache.push(&unit, starts_gop);
                fan_out(&state.subscribers, BusMessage::Unit(unit), starts_gop);
            }
            BusMessage::Tracks(tracks) => {
                self.check_tracks(&tracks)?;
                if state.tracks.as_deref() != Some(&*tracks) {
                    // Cached units belong to the old track set.
                    state.cache.invalidate();
                    state.has_video = tracks.iter().any(|t| t.kind() == TrackKind::Video);
                }
                state.tracks = Some(Arc::clone(&tracks));
                fan_out(&state.subscribers, BusMessage::Tracks(tracks), false);
            }
            BusMessage::Discontinuity => {
                state.cache.invalidate();
                fan_out(&state.subscribers, BusMessage::Discontinuity, false);
            }
            BusMessage::HandedOver(at) => {
                // Nothing cached is this publisher's to serve any more.
                state.cache.invalidate();
                fan_out(&state.subscribers, BusMessage::HandedOver(at), false);
            }
            BusMessage::Gap | BusMessage::End => {
                return Err(BusError::NotPublishable {
                    stream: self.name.to_string(),
                    message: message.kind_name(),
                });
            }
        }
        Ok(())
    }

    /// Whether `unit` may go on the stream, and if so whether it starts a GOP.
    fn check_unit(&self, state: &State, unit: &AccessUnit) -> Result<bool, BusError> {
        let Some(tracks) = &state.tracks else {
            return Err(BusError::NoTracks {
                stream: self.name.to_string(),
            });
        };
        if !tracks.iter().any(|t| t.id == unit.track) {
            return Err(BusError::UnknownTrack {
                stream: self.name.to_string(),
                track: unit.track,
            });
        }
        // With video, GOPs are cut at video keyframes only (every audio frame
        // is a "keyframe"); without it, at any audio frame.
        Ok(unit.keyframe && (unit.kind == TrackKind::Video || !state.has_video))
    }

    fn check_tracks(&self, tracks: &[TrackInfo]) -> Result<(), BusError> {
        let invalid = |reason| BusError::InvalidTracks {
            stream: self.name.to_string(),
            reason,
        };
        if tracks.is_empty() {
            return Err(invalid("no tracks"));
        }
        for (i, track) in tracks.iter().enumerate() {
            if tracks[..i].iter().any(|t| t.id == track.id) {
                return Err(invalid("a track id appears twice"));
            }
        }
        Ok(())
    }

    /// Attach a subscriber, primed with the track set and the cached GOP.
    /// `None` once the stream has ended.
    pub(crate) fn subscribe(&self) -> Option<Arc<Slot>> {
        let mut state = lock(&self.state);
        if state.ended {
            return None;
        }
        let mut queue = SubscriberQueue::new(
            self.limits,
            Arc::clone(&self.counters),
            state.cache.is_valid(),
        );
        if let Some(tracks) = &state.tracks {
            queue.push(BusMessage::Tracks(Arc::clone(tracks)), false);
        }
        for (message, starts_gop) in state.cache.replay() {
            queue.push(message, starts_gop);
        }
        let slot = Arc::new(Slot {
            id: state.next_id,
            queue: Mutex::new(queue),
        });
        state.next_id += 1;
        state.subscribers.push(Arc::clone(&slot));
        Some(slot)
    }

    pub(crate) fn unsubscribe(&self, slot: &Slot) {
        lock(&self.state).subscribers.retain(|s| s.id != slot.id);
    }

    pub(crate) fn info(&self) -> StreamInfo {
        let state = lock(&self.state);
        StreamInfo {
            name: self.name.to_string(),
            publisher_live: state.publisher_live,
            subscribers: state.subscribers.len(),
            tracks: state.tracks.clone(),
        }
    }
}

/// Queue `message` for every subscriber and wake those that wait.
fn fan_out(subscribers: &[Arc<Slot>], message: BusMessage, starts_gop: bool) {
    for slot in subscribers {
        // The queue guard is a temporary, released before the wake.
        let waker = slot.queue().push(message.clone(), starts_gop);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}
