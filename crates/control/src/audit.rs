//! The audit log: who changed what, when. Written in the same transaction
//! as the change; never holds a secret (a key's prefix at most).

use sqlx::Row;

use crate::db::{Database, DbError, now_ms};
use crate::secrets;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A request with an API token (its id).
    Token(String),
    /// The process itself at first start (the bootstrap admin token).
    Bootstrap,
}

impl Actor {
    fn text(&self) -> String {
        match self {
            Actor::Token(id) => format!("api-token:{id}"),
            Actor::Bootstrap => "bootstrap".to_owned(),
        }
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Sortable id (time first).
    pub id: String,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who: `api-token:ID` or `bootstrap`.
    pub actor: String,
    /// What: `stream.create`, `stream.rotate-key`, `stream.update`,
    /// `stream.delete`, `stream.disconnect`, `vod.upload`, `token.create`,
    /// `token.revoke`.
    pub action: String,
    /// On what: a stream name or a token id.
    pub subject: String,
    /// Details (a JSON object).
    pub detail: serde_json::Value,
}

/// Appends an entry inside `tx`.
pub(crate) async fn record(
    tx: &mut sqlx::AnyConnection,
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO audit_log (id, at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(secrets::new_id(now))
    .bind(now)
    .bind(actor.text())
    .bind(action)
    .bind(subject)
    .bind(detail.to_string())
    .execute(tx)
    .await?;
    Ok(())
}

/// Appends an entry on its own (an action that changes nothing stored,
/// like disconnecting a publisher).
pub(crate) async fn record_now(
    db: &Database,
    actor: &Actor,
    action: &str,
    subject: &str,
) -> Result<(), DbError> {
    let mut conn = db.pool().acquire().await?;
    record(&mut conn, actor, action, subject, serde_json::json!({})).await
}

impl Database {
    /// Up to `limit` entries, newest first, older than `before` (a page's
    /// last id) if given; only those about `subject` if given.
    pub async fn audit_log(
        &self,
        subject: Option<&str>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, subject, detail FROM audit_log \
             WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(subject.unwrap_or(""))
        .bind(before.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at_ms")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| DbError::Corrupt(format!("audit detail: {e}")))?,
                })
            })
            .collect()
    }
}
