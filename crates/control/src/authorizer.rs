//! Publish authorisation from the database, answered from memory.
//!
//! The SRT handshake must never wait on a database, so [`DbAuthorizer`]
//! answers from a snapshot of every stream's credentials (name, key hash,
//! passphrase, duplicate policy) and a task keeps the snapshot current:
//! it reads the one-row change counter (`control_revision`) every
//! `poll` (and at once when [`DbAuthorizer::refresh_now`] is called, by
//! the API after a change or on a change notice from another process) and
//! reloads the snapshot when the counter moved. A rotated or revoked key
//! thus stops working for new connections within one poll interval,
//! whether the database is then reachable or not.
//!
//! Streams of the config file's `[[streams]]` list are checked first, as
//! before, and cannot be changed through the database. With no stream in
//! either, publishing is open (any name, no key), as without a database.
//! Until the first snapshot is loaded, streams not in the config file are
//! refused with [`AuthError::Unavailable`]: nobody gets in on a guess.
//!
//! The same snapshot answers each stream's recording policy
//! ([`DbAuthorizer::recording_of`]) for the recorder, which asks when a
//! stream starts and must not wait on the database either.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferrocast_config::{DuplicatePublisher, StreamConfig};
use ferrocast_ingest::streamid::StreamRequest;
use ferrocast_ingest::{AuthError, PublishAuthorizer, PublishGrant, StaticAuthorizer};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::db::Database;
use crate::secrets;
use crate::streams::Credentials;

/// The credentials as last loaded, and the change counter they match.
#[derive(Debug)]
struct Snapshot {
    revision: i64,
    streams: HashMap<String, Credentials>,
}

/// Authorises publishers against the config file's streams, then the
/// database's (see the module doc).
#[derive(Debug)]
pub struct DbAuthorizer {
    db: Database,
    fixed: StaticAuthorizer,
    snapshot: RwLock<Option<Snapshot>>,
    refresh: Arc<Notify>,
    /// True once the first snapshot is in.
    loaded: tokio::sync::watch::Sender<bool>,
}

impl DbAuthorizer {
    /// Starts the authoriser and the task that keeps its snapshot current
    /// (which stops once the authoriser is dropped). Call inside a Tokio
    /// runtime.
    pub fn start(db: Database, fixed: &[StreamConfig], poll: Duration) -> Arc<DbAuthorizer> {
        let authorizer = Arc::new(DbAuthorizer {
            db,
            fixed: StaticAuthorizer::from_config(fixed),
            snapshot: RwLock::new(None),
            refresh: Arc::new(Notify::new()),
            loaded: tokio::sync::watch::Sender::new(false),
        });
        let weak = Arc::downgrade(&authorizer);
        let refresh = authorizer.refresh.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let Some(me) = weak.upgrade() else { return };
                match me.reload().await {
                    Ok(()) if failing => {
                        info!("control-plane database reachable again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        warn!(error = %e, "control-plane database unreachable: publishers are checked against the streams last loaded");
                        failing = true;
                    }
                    Err(e) => debug!(error = %e, "control-plane database still unreachable"),
                }
                drop(me);
                let _ = tokio::time::timeout(poll, refresh.notified()).await;
            }
        });
        authorizer
    }

    /// Reload now rather than at the next poll (after a change this
    /// process made, or on another process's change notice).
    pub fn refresh_now(&self) {
        self.refresh.notify_one();
    }

    /// Whether the first snapshot has been loaded.
    pub fn loaded(&self) -> bool {
        self.read().is_some()
    }

    /// Waits up to `timeout` for the first snapshot; whether it came.
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        tokio::time::timeout(timeout, loaded.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The recording policy of database stream `name`, as last loaded;
    /// `None` when it has none (or is not in the database).
    pub fn recording_of(&self, name: &str) -> Option<crate::StreamRecording> {
        self.read().as_ref()?.streams.get(name)?.recording
    }

    /// Whether some database stream has a retention period of its own.
    pub fn any_retention(&self) -> bool {
        self.read().as_ref().is_some_and(|s| {
            s.streams
                .values()
                .any(|c| c.recording.is_some_and(|r| r.retention_secs.is_some()))
        })
    }

    /// The change counter of the snapshot in use.
    pub fn revision(&self) -> Option<i64> {
        self.read().as_ref().map(|s| s.revision)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reloads the snapshot now if the database changed since it was
    /// loaded; when this returns `Ok`, every change committed before the
    /// call is in effect.
    pub async fn reload(&self) -> Result<(), crate::DbError> {
        let db = &self.db;
        let revision = db.revision().await?;
        if self.revision() == Some(revision) {
            return Ok(());
        }
        let streams = db
            .credentials()
            .await?
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect::<HashMap<_, _>>();
        debug!(
            revision,
            streams = streams.len(),
            "publish credentials loaded"
        );
        let mut snapshot = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A concurrent reload (the poll and an API change) may have put a
        // newer snapshot in meanwhile: never go back to an older one.
        if snapshot.as_ref().is_none_or(|s| s.revision <= revision) {
            *snapshot = Some(Snapshot { revision, streams });
        }
        drop(snapshot);
        self.loaded.send_replace(true);
        Ok(())
    }
}

impl PublishAuthorizer for DbAuthorizer {
    fn authorize(&self, request: &StreamRequest) -> Result<PublishGrant, AuthError> {
        let name = request.name.as_str();
        if !self.fixed.is_open() {
            match self.fixed.authorize(request) {
                Err(AuthError::UnknownStream) => {}
                listed => return listed,
            }
        }
        let snapshot = self.read();
        let Some(snapshot) = snapshot.as_ref() else {
            return Err(AuthError::Unavailable);
        };
        let Some(entry) = snapshot.streams.get(name) else {
            if snapshot.streams.is_empty() && self.fixed.is_open() {
                return Ok(PublishGrant {
                    passphrase: None,
                    on_duplicate: DuplicatePublisher::Reject,
                });
            }
            return Err(AuthError::UnknownStream);
        };
        let given = request.key.as_ref().ok_or(AuthError::MissingKey)?;
        if secrets::matches(given.expose(), &entry.key_hash) {
            Ok(PublishGrant {
                passphrase: entry.passphrase.clone(),
                on_duplicate: entry.on_duplicate,
            })
        } else {
            Err(AuthError::WrongKey)
        }
    }

    fn is_open(&self) -> bool {
        self.fixed.is_open() && self.read().as_ref().is_some_and(|s| s.streams.is_empty())
    }
}
