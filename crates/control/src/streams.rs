//! Streams and their publish keys.

use ferrocast_config::{DuplicatePublisher, Secret};
use ferrocast_media::StreamName;
use sqlx::Row;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, record};
use crate::db::{Database, DbError, bump_revision, now_ms};
use crate::secrets;

/// A stream's recording policy: the `recording` object of its settings.
/// Without one, the stream follows `[recording]` (its `streams` list and
/// `retention_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamRecording {
    /// Record the stream (also when `[recording] streams` does not name
    /// it); `false`: never. Default `true`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Delete its recordings, and the VODs uploaded under it, this many
    /// seconds after they started; `0` keeps them for ever. Absent:
    /// `[recording] retention_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
}

fn enabled_by_default() -> bool {
    true
}

impl StreamRecording {
    /// Reads a policy object, or says what is wrong with it.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(value.clone()).map_err(|e| e.to_string())
    }
}

/// A stream as the store keeps it. The publish key itself is not here: it
/// is shown once, by [`Database::create_stream`] and
/// [`Database::rotate_key`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// The name publishers and viewers use (`live/NAME`).
    pub name: String,
    /// The current key's first characters.
    pub key_prefix: String,
    /// The SRT passphrase callers must encrypt with, if any.
    pub passphrase: Option<Secret>,
    /// What a second publisher of the live stream gets.
    pub on_duplicate: DuplicatePublisher,
    /// The transcoding ladder, if not the default.
    pub ladder: Option<String>,
    /// The recording policy, if any (a JSON object).
    pub recording: Option<serde_json::Value>,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Last changed, Unix ms.
    pub updated_ms: i64,
}

/// What a new stream is made with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewStream {
    /// Its name.
    pub name: String,
    /// An SRT passphrase (10 to 79 of `[A-Za-z0-9._~-]`).
    pub passphrase: Option<Secret>,
    /// Duplicate publisher policy.
    pub on_duplicate: DuplicatePublisher,
    /// A ladder name.
    pub ladder: Option<String>,
    /// A recording policy.
    pub recording: Option<serde_json::Value>,
}

/// Changes to a stream; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamChanges {
    /// A new passphrase, or `Some(None)` to remove it.
    pub passphrase: Option<Option<Secret>>,
    /// A new duplicate publisher policy.
    pub on_duplicate: Option<DuplicatePublisher>,
    /// A new ladder, or `Some(None)` for the default.
    pub ladder: Option<Option<String>>,
    /// A new recording policy, or `Some(None)` for none.
    pub recording: Option<Option<serde_json::Value>>,
}

/// A stream just made (or re-keyed): the only time its key is shown.
#[derive(Debug, Clone)]
pub struct WithKey {
    /// The stream.
    pub stream: StreamRecord,
    /// Its publish key, in clear.
    pub publish_key: Secret,
}

/// What the publish authoriser needs of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// The stream's name.
    pub name: String,
    /// SHA-256 of its key, hex.
    pub key_hash: String,
    /// Its SRT passphrase.
    pub passphrase: Option<Secret>,
    /// Duplicate publisher policy.
    pub on_duplicate: DuplicatePublisher,
    /// Its recording policy, if it has one (a stored object that does not
    /// read as one counts as none, with a warning).
    pub recording: Option<StreamRecording>,
}

fn duplicate_text(policy: DuplicatePublisher) -> &'static str {
    match policy {
        DuplicatePublisher::Reject => "reject",
        DuplicatePublisher::TakeOver => "take_over",
    }
}

fn duplicate_from(text: &str) -> Result<DuplicatePublisher, DbError> {
    match text {
        "reject" => Ok(DuplicatePublisher::Reject),
        "take_over" => Ok(DuplicatePublisher::TakeOver),
        other => Err(DbError::Corrupt(format!("on_duplicate {other:?}"))),
    }
}

fn check_name(name: &str) -> Result<(), DbError> {
    StreamName::new(name)
        .map(|_| ())
        .map_err(|e| DbError::Invalid(format!("stream name {name:?}: {e}")))
}

fn check_passphrase(passphrase: Option<&Secret>) -> Result<(), DbError> {
    match passphrase {
        Some(p) if !ferrocast_config::valid_srt_passphrase(p.expose()) => Err(DbError::Invalid(
            "passphrase must be 10 to 79 characters of [A-Za-z0-9._~-]".into(),
        )),
        _ => Ok(()),
    }
}

/// The columns every read selects (a macro: queries must be literals).
macro_rules! stream_columns {
    () => {
        "name, key_prefix, passphrase, on_duplicate, ladder, recording, created_ms, updated_ms"
    };
}

fn record_from(row: &sqlx::any::AnyRow) -> Result<StreamRecord, DbError> {
    let recording: Option<String> = row.try_get("recording")?;
    Ok(StreamRecord {
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        passphrase: row
            .try_get::<Option<String>, _>("passphrase")?
            .map(Secret::new),
        on_duplicate: duplicate_from(&row.try_get::<String, _>("on_duplicate")?)?,
        ladder: row.try_get("ladder")?,
        recording: recording
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| DbError::Corrupt(format!("recording: {e}")))?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

impl Database {
    /// Makes a stream with a new publish key.
    pub async fn create_stream(&self, new: NewStream, actor: &Actor) -> Result<WithKey, DbError> {
        check_name(&new.name)?;
        check_passphrase(new.passphrase.as_ref())?;
        let key = secrets::generate();
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO streams (name, key_hash, key_prefix, passphrase, on_duplicate, ladder, recording, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&new.name)
        .bind(secrets::hash(&key))
        .bind(secrets::prefix(&key))
        .bind(new.passphrase.as_ref().map(|p| p.expose().to_owned()))
        .bind(duplicate_text(new.on_duplicate))
        .bind(&new.ladder)
        .bind(new.recording.as_ref().map(|r| r.to_string()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::or_duplicate(e, "stream", &new.name))?;
        bump_revision(&mut tx).await?;
        record(
            &mut tx,
            actor,
            "stream.create",
            &new.name,
            serde_json::json!({ "key_prefix": secrets::prefix(&key) }),
        )
        .await?;
        tx.commit().await?;
        Ok(WithKey {
            stream: self.stream(&new.name).await?,
            publish_key: Secret::new(key),
        })
    }

    /// The stream `name`.
    pub async fn stream(&self, name: &str) -> Result<StreamRecord, DbError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            stream_columns!(),
            " FROM streams WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| DbError::NotFound {
            what: "stream",
            name: name.to_owned(),
        })?;
        record_from(&row)
    }

    /// Up to `limit` streams in name order, after `after` (a page's last
    /// name) if given.
    pub async fn streams(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StreamRecord>, DbError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            stream_columns!(),
            " FROM streams WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record_from).collect()
    }

    /// Replaces the stream's publish key with a new one: the old one
    /// stops working for new connections.
    pub async fn rotate_key(&self, name: &str, actor: &Actor) -> Result<WithKey, DbError> {
        let key = secrets::generate();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE streams SET key_hash = $1, key_prefix = $2, updated_ms = $3 WHERE name = $4",
        )
        .bind(secrets::hash(&key))
        .bind(secrets::prefix(&key))
        .bind(now_ms())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound {
                what: "stream",
                name: name.to_owned(),
            });
        }
        bump_revision(&mut tx).await?;
        record(
            &mut tx,
            actor,
            "stream.rotate-key",
            name,
            serde_json::json!({ "key_prefix": secrets::prefix(&key) }),
        )
        .await?;
        tx.commit().await?;
        Ok(WithKey {
            stream: self.stream(name).await?,
            publish_key: Secret::new(key),
        })
    }

    /// Changes some of a stream's settings.
    pub async fn update_stream(
        &self,
        name: &str,
        changes: StreamChanges,
        actor: &Actor,
    ) -> Result<StreamRecord, DbError> {
        if let Some(passphrase) = &changes.passphrase {
            check_passphrase(passphrase.as_ref())?;
        }
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            stream_columns!(),
            " FROM streams WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| DbError::NotFound {
            what: "stream",
            name: name.to_owned(),
        })?;
        let old = record_from(&row)?;
        let passphrase = changes.passphrase.clone().unwrap_or(old.passphrase);
        let on_duplicate = changes.on_duplicate.unwrap_or(old.on_duplicate);
        let ladder = changes.ladder.clone().unwrap_or(old.ladder);
        let recording = changes.recording.clone().unwrap_or(old.recording);
        sqlx::query(
            "UPDATE streams SET passphrase = $1, on_duplicate = $2, ladder = $3, recording = $4, updated_ms = $5 WHERE name = $6",
        )
        .bind(passphrase.as_ref().map(|p| p.expose().to_owned()))
        .bind(duplicate_text(on_duplicate))
        .bind(&ladder)
        .bind(recording.as_ref().map(|r| r.to_string()))
        .bind(now_ms())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
        // Which settings changed, never their values (a passphrase).
        let changed: Vec<&str> = [
            ("passphrase", changes.passphrase.is_some()),
            ("on_duplicate", changes.on_duplicate.is_some()),
            ("ladder", changes.ladder.is_some()),
            ("recording", changes.recording.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(field, _)| *field)
        .collect();
        record(
            &mut tx,
            actor,
            "stream.update",
            name,
            serde_json::json!({ "changed": changed }),
        )
        .await?;
        tx.commit().await?;
        self.stream(name).await
    }

    /// Deletes a stream: its key stops working for new connections.
    pub async fn delete_stream(&self, name: &str, actor: &Actor) -> Result<(), DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM streams WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound {
                what: "stream",
                name: name.to_owned(),
            });
        }
        bump_revision(&mut tx).await?;
        record(&mut tx, actor, "stream.delete", name, serde_json::json!({})).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stream's credentials, for the publish authoriser's cache.
    pub async fn credentials(&self) -> Result<Vec<Credentials>, DbError> {
        let rows =
            sqlx::query("SELECT name, key_hash, passphrase, on_duplicate, recording FROM streams")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("name")?;
                let recording = row
                    .try_get::<Option<String>, _>("recording")?
                    .and_then(|text| {
                        let policy = serde_json::from_str::<serde_json::Value>(&text)
                            .map_err(|e| e.to_string())
                            .and_then(|v| StreamRecording::parse(&v));
                        policy
                            .map_err(|e| {
                                tracing::warn!(stream = %name, error = %e, "stored recording policy unreadable: [recording] applies");
                            })
                            .ok()
                    });
                Ok(Credentials {
                    recording,
                    name,
                    key_hash: row.try_get("key_hash")?,
                    passphrase: row
                        .try_get::<Option<String>, _>("passphrase")?
                        .map(Secret::new),
                    on_duplicate: duplicate_from(&row.try_get::<String, _>("on_duplicate")?)?,
                })
            })
            .collect()
    }
}
