//! Control plane notices through the registry's event log: the API
//! process records that a stream's publish credentials changed, or that
//! its publisher must go, and every ingest process acts on it within one
//! poll (`[cluster] poll_ms`) instead of at its next database poll.
//!
//! Only what happens after a process starts concerns it: a watcher skips
//! the log's history before acting, so an old disconnect request never
//! drops a publisher that came later.

use std::sync::Arc;
use std::time::Duration;

use ferrocast_media::StreamName;
use ferrocast_registry::{Event, EventId, EventKind, Registry, RegistryError};
use tokio::task::JoinHandle;

/// Events read per poll.
const BATCH: usize = 512;

/// What an ingest process does on a notice.
pub trait ControlNoticeHandler: Send + Sync {
    /// Credentials changed: reload them now.
    fn keys_changed(&self);
    /// Drop the publisher of `stream`, if this process has it.
    fn disconnect(&self, stream: &StreamName);
}

/// Records that `stream`'s credentials changed.
pub async fn notify_keys_changed(
    registry: &dyn Registry,
    stream: &StreamName,
) -> Result<(), RegistryError> {
    notify(registry, EventKind::KeysChanged, stream).await
}

/// Asks the ingest process holding `stream` to drop its publisher.
pub async fn request_disconnect(
    registry: &dyn Registry,
    stream: &StreamName,
) -> Result<(), RegistryError> {
    notify(registry, EventKind::DisconnectRequested, stream).await
}

async fn notify(
    registry: &dyn Registry,
    kind: EventKind,
    stream: &StreamName,
) -> Result<(), RegistryError> {
    let at_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    registry
        .publish_event(&Event {
            kind,
            stream: stream.clone(),
            lease: None,
            at_unix_ms,
        })
        .await
        .map(|_| ())
}

/// A running watcher; dropping it stops it.
pub struct NoticeWatcher {
    task: JoinHandle<()>,
    caught_up: tokio::sync::watch::Receiver<bool>,
}

impl NoticeWatcher {
    /// Resolves once the watcher has read to the log's end: notices
    /// recorded from then on are acted on.
    pub async fn caught_up(&self) {
        let mut caught_up = self.caught_up.clone();
        let _ = caught_up.wait_for(|done| *done).await;
    }
}

impl Drop for NoticeWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows the event log every `poll` and calls `handler` for each notice
/// recorded after the watcher caught up with the log's end.
pub fn watch(
    registry: Arc<dyn Registry>,
    poll: Duration,
    handler: Arc<dyn ControlNoticeHandler>,
) -> NoticeWatcher {
    let (reached_end, caught_up) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Catch up with the log's end without acting on its history.
        let mut cursor: Option<EventId> = None;
        loop {
            ticks.tick().await;
            match registry.events(cursor.as_ref(), BATCH).await {
                Ok(events) => {
                    let at_end = events.len() < BATCH;
                    if let Some((id, _)) = events.last() {
                        cursor = Some(id.clone());
                    }
                    if at_end {
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "control notices: registry unreachable");
                }
            }
        }
        let _ = reached_end.send(true);
        loop {
            ticks.tick().await;
            let events = match registry.events(cursor.as_ref(), BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    // The database poll still applies key changes; a
                    // disconnect request waits in the log.
                    tracing::debug!(%error, "control notices: registry unreachable");
                    continue;
                }
            };
            let mut reload = false;
            for (id, event) in events {
                cursor = Some(id);
                match event.kind {
                    EventKind::KeysChanged => reload = true,
                    EventKind::DisconnectRequested => handler.disconnect(&event.stream),
                    _ => {}
                }
            }
            if reload {
                handler.keys_changed();
            }
        }
    });
    NoticeWatcher { task, caught_up }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use ferrocast_registry::InMemoryRegistry;

    use super::*;

    #[derive(Default)]
    struct Seen {
        reloads: Mutex<u32>,
        disconnects: Mutex<Vec<String>>,
        notify: tokio::sync::Notify,
    }

    impl ControlNoticeHandler for Seen {
        fn keys_changed(&self) {
            *self.reloads.lock().unwrap() += 1;
            self.notify.notify_one();
        }
        fn disconnect(&self, stream: &StreamName) {
            self.disconnects
                .lock()
                .unwrap()
                .push(stream.as_str().to_owned());
            self.notify.notify_one();
        }
    }

    #[tokio::test]
    async fn notices_after_the_start_are_acted_on_and_history_is_not() {
        let registry: Arc<dyn Registry> = Arc::new(InMemoryRegistry::default());
        let old = StreamName::new("old").unwrap();
        let cam = StreamName::new("cam").unwrap();
        request_disconnect(registry.as_ref(), &old).await.unwrap();
        let seen = Arc::new(Seen::default());
        let watcher = watch(registry.clone(), Duration::from_millis(10), seen.clone());
        tokio::time::timeout(Duration::from_secs(5), watcher.caught_up())
            .await
            .unwrap();
        request_disconnect(registry.as_ref(), &cam).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), seen.notify.notified())
            .await
            .unwrap();
        notify_keys_changed(registry.as_ref(), &cam).await.unwrap();
        notify_keys_changed(registry.as_ref(), &cam).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while *seen.reloads.lock().unwrap() == 0 {
                seen.notify.notified().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(*seen.disconnects.lock().unwrap(), ["cam"]);
        drop(watcher);
    }
}
