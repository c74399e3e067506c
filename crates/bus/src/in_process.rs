//! The bus for roles that share a process.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::broadcast;

use crate::bus::{MediaBus, SubscribeFuture};
use crate::config::BusConfig;
use crate::endpoint::{Publisher, PublisherBackend, Subscriber, SubscriberBackend};
use crate::error::BusError;
use crate::event::{StreamEvent, StreamInfo};
use crate::message::BusMessage;
use crate::stats::{BusStats, Counters, SubscriberStats};
use crate::stream::{Slot, Stream, lock};

/// Largest announcement backlog accepted (tokio's broadcast has a ceiling).
const MAX_ANNOUNCEMENT_CAPACITY: usize = 1 << 16;

/// The in-process [`MediaBus`]: a cheaply cloneable handle; clones share one bus.
///
/// Its methods are also inherent, so callers need not import the trait.
/// When the last handle and the last publisher are gone, every remaining
/// stream ends (nothing could resume it) and its subscribers get `End`.
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: BusConfig,
    streams: Mutex<BTreeMap<String, Arc<Stream>>>,
    events: broadcast::Sender<StreamEvent>,
    counters: Arc<Counters>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        InProcessBus::new(BusConfig::default())
    }
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBus")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl InProcessBus {
    /// A bus with these limits. An `announcement_capacity` of 0 is taken as 1,
    /// and one above 65536 as 65536.
    pub fn new(config: BusConfig) -> Self {
        let capacity = config
            .announcement_capacity
            .clamp(1, MAX_ANNOUNCEMENT_CAPACITY);
        let (events, _) = broadcast::channel(capacity);
        InProcessBus {
            inner: Arc::new(Inner {
                config,
                streams: Mutex::new(BTreeMap::new()),
                events,
                counters: Arc::default(),
            }),
        }
    }

    /// The limits this bus was made with.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// See [`MediaBus::publish`].
    pub fn publish(&self, stream: &str) -> Result<Publisher, BusError> {
        if stream.is_empty() {
            return Err(BusError::EmptyStreamName);
        }
        let inner = &self.inner;
        let mut streams = lock(&inner.streams);
        let stream = match streams.get(stream) {
            Some(existing) => {
                existing.resume()?;
                Arc::clone(existing)
            }
            None => {
                let new = Arc::new(Stream::start(
                    stream,
                    &inner.config,
                    Arc::clone(&inner.counters),
                    inner.events.clone(),
                ));
                streams.insert(stream.to_owned(), Arc::clone(&new));
                new
            }
        };
        drop(streams);
        let name = Arc::clone(stream.name());
        Ok(Publisher::new(
            name,
            Box::new(InProcessPublisher {
                bus: Arc::clone(inner),
                stream,
            }),
        ))
    }

    /// See [`MediaBus::subscribe`].
    pub fn subscribe(&self, stream: &str) -> Option<Subscriber> {
        let streams = lock(&self.inner.streams);
        let stream = Arc::clone(streams.get(stream)?);
        // Still under the map lock, so the stream cannot end in between.
        let slot = stream.subscribe()?;
        drop(streams);
        let name = Arc::clone(stream.name());
        Some(Subscriber::new(
            name,
            Box::new(InProcessSubscription { stream, slot }),
        ))
    }

    /// See [`MediaBus::end_stream`].
    pub fn end_stream(&self, stream: &str) -> Result<(), BusError> {
        let mut streams = lock(&self.inner.streams);
        let Some(found) = streams.get(stream) else {
            return Err(BusError::NotFound {
                stream: stream.to_owned(),
            });
        };
        // Checked under the map lock, which `publish` also holds: a
        // publisher cannot come back between the check and the end.
        if found.is_publisher_live() {
            return Err(BusError::StillPublished {
                stream: stream.to_owned(),
            });
        }
        if let Some(found) = streams.remove(stream) {
            found.finish();
        }
        Ok(())
    }

    /// See [`MediaBus::streams`].
    pub fn streams(&self) -> Vec<StreamInfo> {
        lock(&self.inner.streams)
            .values()
            .map(|s| s.info())
            .collect()
    }

    /// See [`MediaBus::announcements`].
    pub fn announcements(&self) -> broadcast::Receiver<StreamEvent> {
        self.inner.events.subscribe()
    }

    /// See [`MediaBus::stats`].
    pub fn stats(&self) -> BusStats {
        let streams = lock(&self.inner.streams);
        let mut stats = BusStats {
            streams: streams.len(),
            dropped_units: self.inner.counters.dropped_units(),
            gaps: self.inner.counters.gaps(),
            ..BusStats::default()
        };
        for info in streams.values().map(|s| s.info()) {
            stats.live_publishers += usize::from(info.publisher_live);
            stats.subscribers += info.subscribers;
        }
        stats
    }
}

impl MediaBus for InProcessBus {
    fn publish(&self, stream: &str) -> Result<Publisher, BusError> {
        InProcessBus::publish(self, stream)
    }

    fn subscribe(&self, stream: &str) -> SubscribeFuture {
        let result = InProcessBus::subscribe(self, stream).ok_or_else(|| BusError::NotFound {
            stream: stream.to_owned(),
        });
        Box::pin(std::future::ready(result))
    }

    fn end_stream(&self, stream: &str) -> Result<(), BusError> {
        InProcessBus::end_stream(self, stream)
    }

    fn streams(&self) -> Vec<StreamInfo> {
        InProcessBus::streams(self)
    }

    fn announcements(&self) -> broadcast::Receiver<StreamEvent> {
        InProcessBus::announcements(self)
    }

    fn stats(&self) -> BusStats {
        InProcessBus::stats(self)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No handle and no publisher is left, so nothing can resume these.
        let streams = std::mem::take(
            self.streams
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for stream in streams.values() {
            stream.finish();
        }
    }
}

struct InProcessPublisher {
    /// Keeps the bus alive while a publisher is: a stream with a publisher
    /// can still be resumed or ended by it.
    bus: Arc<Inner>,
    stream: Arc<Stream>,
}

impl PublisherBackend for InProcessPublisher {
    fn send(&self, message: BusMessage) -> Result<(), BusError> {
        if message != BusMessage::End {
            return self.stream.send(message);
        }
        let mut streams = lock(&self.bus.streams);
        if self.stream.is_ended() {
            return Err(BusError::Ended {
                stream: self.stream.name().to_string(),
            });
        }
        let name: &str = self.stream.name();
        // This publisher is live, so the map still holds its stream.
        if streams
            .get(name)
            .is_some_and(|s| Arc::ptr_eq(s, &self.stream))
        {
            streams.remove(name);
        }
        self.stream.finish();
        Ok(())
    }
}

impl Drop for InProcessPublisher {
    fn drop(&mut self) {
        self.stream.detach();
    }
}

struct InProcessSubscription {
    stream: Arc<Stream>,
    slot: Arc<Slot>,
}

impl SubscriberBackend for InProcessSubscription {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        self.slot.queue().poll_pop(cx)
    }

    fn stats(&self) -> SubscriberStats {
        self.slot.stats()
    }
}

impl Drop for InProcessSubscription {
    fn drop(&mut self) {
        self.stream.unsubscribe(&self.slot);
        self.slot.queue().clear();
    }
}
