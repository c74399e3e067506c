//! API tokens with roles. A token is shown once, when made; the store
//! keeps its SHA-256.

use sqlx::Row;

use crate::audit::{Actor, record};
use crate::db::{Database, DbError, bump_revision, now_ms};
use crate::secrets;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Streams and keys; not tokens.
    Operator,
    /// Mint viewer tokens only.
    ViewerIssuer,
}

impl Role {
    /// The name stored and shown: `admin`, `operator`, `viewer-issuer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::ViewerIssuer => "viewer-issuer",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer-issuer" => Some(Role::ViewerIssuer),
            _ => None,
        }
    }
}

/// A token as the store keeps it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: String,
    /// The token's first characters.
    pub prefix: String,
    /// What it may do.
    pub role: Role,
    /// What it is for.
    pub description: String,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Revoked, Unix ms, if it is.
    pub revoked_ms: Option<i64>,
}

/// A token just made: the only time it is shown.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its record.
    pub token: ApiToken,
    /// The bearer token, in clear.
    pub secret: ferrocast_config::Secret,
}

fn token_from(row: &sqlx::any::AnyRow) -> Result<ApiToken, DbError> {
    let role: String = row.try_get("role")?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        prefix: row.try_get("token_prefix")?,
        role: Role::parse(&role).ok_or_else(|| DbError::Corrupt(format!("role {role:?}")))?,
        description: row.try_get("description")?,
        created_ms: row.try_get("created_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

/// The columns every read selects (a macro: queries must be literals).
macro_rules! token_columns {
    () => {
        "id, token_prefix, role, description, created_ms, revoked_ms"
    };
}

impl Database {
    /// Makes a token with `role`.
    pub async fn create_token(
        &self,
        role: Role,
        description: &str,
        actor: &Actor,
    ) -> Result<NewToken, DbError> {
        if description.len() > 200 {
            return Err(DbError::Invalid(
                "description must be at most 200 bytes".into(),
            ));
        }
        let mut tx = self.pool().begin().await?;
        let (id, secret) = insert_token(&mut tx, role, description, actor).await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(NewToken {
            token: self.token(&id).await?,
            secret: ferrocast_config::Secret::new(secret),
        })
    }

    /// The token with id `id`.
    pub async fn token(&self, id: &str) -> Result<ApiToken, DbError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| DbError::NotFound {
            what: "token",
            name: id.to_owned(),
        })?;
        token_from(&row)
    }

    /// Up to `limit` tokens in id order, after `after` if given.
    pub async fn tokens(&self, after: Option<&str>, limit: u32) -> Result<Vec<ApiToken>, DbError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(token_from).collect()
    }

    /// The live (not revoked) token whose secret is `given`, if any.
    pub async fn verify_token(&self, given: &str) -> Result<Option<ApiToken>, DbError> {
        // Looked up by hash: the comparison is the database's index, on a
        // value the caller cannot steer towards a stored one.
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE token_hash = $1 AND revoked_ms IS NULL"
        ))
        .bind(secrets::hash(given))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_from).transpose()
    }

    /// Revokes a token: it stops working at once.
    pub async fn revoke_token(&self, id: &str, actor: &Actor) -> Result<ApiToken, DbError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound {
                what: "live token",
                name: id.to_owned(),
            });
        }
        bump_revision(&mut tx).await?;
        record(&mut tx, actor, "token.revoke", id, serde_json::json!({})).await?;
        tx.commit().await?;
        self.token(id).await
    }

    /// At first start (no token at all yet), makes an admin token and
    /// returns it, to be shown once; `None` once any token exists.
    pub async fn bootstrap_admin(&self) -> Result<Option<NewToken>, DbError> {
        let mut tx = self.pool().begin().await?;
        // The change counter's row first: a write lock that a second
        // process bootstrapping at the same moment waits on, and after
        // which it sees this one's token (and makes none).
        bump_revision(&mut tx).await?;
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&mut *tx)
            .await?;
        if count > 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let (id, secret) = insert_token(
            &mut tx,
            Role::Admin,
            "bootstrap admin token",
            &Actor::Bootstrap,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(NewToken {
            token: self.token(&id).await?,
            secret: ferrocast_config::Secret::new(secret),
        }))
    }
}

/// Adds a token and its audit entry inside `tx`: its id and secret.
async fn insert_token(
    tx: &mut sqlx::AnyConnection,
    role: Role,
    description: &str,
    actor: &Actor,
) -> Result<(String, String), DbError> {
    let secret = secrets::generate();
    let now = now_ms();
    let id = secrets::new_id(now);
    sqlx::query(
        "INSERT INTO api_tokens (id, token_hash, token_prefix, role, description, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(secrets::hash(&secret))
    .bind(secrets::prefix(&secret))
    .bind(role.as_str())
    .bind(description)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| DbError::or_duplicate(e, "token", &id))?;
    record(
        tx,
        actor,
        "token.create",
        &id,
        serde_json::json!({ "role": role.as_str(), "prefix": secrets::prefix(&secret) }),
    )
    .await?;
    Ok((id, secret))
}
