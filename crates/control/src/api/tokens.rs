//! `/api/v1/tokens` and `/api/v1/audit`: API tokens and the audit log
//! (admins only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{ADMIN, Caller};
use super::problem::Problem;
use super::{ApiState, Page, PageQuery};
use crate::audit::AuditEntry;
use crate::tokens::{ApiToken, Role};

/// A token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenView {
    /// Its id.
    pub id: String,
    /// The token's first 8 characters.
    pub prefix: String,
    /// `admin`, `operator` or `viewer-issuer`.
    #[schema(value_type = String)]
    pub role: Role,
    /// What it is for.
    pub description: String,
    /// Created, Unix milliseconds.
    pub created_ms: i64,
    /// Revoked, Unix milliseconds, if it is.
    pub revoked_ms: Option<i64>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        TokenView {
            id: t.id,
            prefix: t.prefix,
            role: t.role,
            description: t.description,
            created_ms: t.created_ms,
            revoked_ms: t.revoked_ms,
        }
    }
}

/// A token just made: the only time it is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenWithSecret {
    /// The token's record.
    pub token: TokenView,
    /// The bearer token: `Authorization: Bearer SECRET`.
    pub secret: String,
}

/// A new token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin` (everything), `operator` (streams and keys, no tokens) or
    /// `viewer-issuer` (mint viewer tokens only).
    #[schema(value_type = String)]
    pub role: Role,
    /// What it is for (at most 200 bytes).
    #[serde(default)]
    pub description: String,
}

/// Lists tokens in id (creation) order.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "list_tokens",
    params(PageQuery),
    responses(
        (status = 200, description = "OK", body = Page<TokenView>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "tokens"
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    super::Params(page): super::Params<PageQuery>,
) -> Result<Json<Page<TokenView>>, Problem> {
    caller.require(ADMIN, "list tokens")?;
    let limit = page.limit()?;
    let rows = state.db.tokens(page.after.as_deref(), limit + 1).await?;
    Ok(Json(Page::of(
        rows.into_iter().map(TokenView::from).collect(),
        limit,
        |t| t.id.clone(),
    )))
}

/// Makes a token (shown once).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "create_token",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created", body = TokenWithSecret),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "tokens"
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: super::Body<CreateToken>,
) -> Result<(StatusCode, Json<TokenWithSecret>), Problem> {
    caller.require(ADMIN, "make tokens")?;
    let made = state
        .db
        .create_token(body.0.role, &body.0.description, &caller.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenWithSecret {
            token: made.token.into(),
            secret: made.secret.expose().to_owned(),
        }),
    ))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revoke_token",
    params(("id" = String, Path, description = "the token's id")),
    responses(
        (status = 200, description = "OK", body = TokenView),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "tokens"
)]
pub async fn revoke(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, Problem> {
    caller.require(ADMIN, "revoke tokens")?;
    Ok(Json(
        state.db.revoke_token(&id, &caller.actor()).await?.into(),
    ))
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditView {
    /// Sortable id.
    pub id: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who: `api-token:ID` or `bootstrap`.
    pub actor: String,
    /// What: `stream.create`, `stream.rotate-key`, `token.revoke`, ...
    pub action: String,
    /// On what: a stream name or a token id.
    pub subject: String,
    /// Details (never a secret).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            id: e.id,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            detail: e.detail,
        }
    }
}

/// Query of the audit log: newest first, `limit` (1 to 1000, default
/// 100), `before` (the `next` of the page before), `subject` to filter.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries per page.
    pub limit: Option<u32>,
    /// Entries older than this id.
    pub before: Option<String>,
    /// Only entries about this stream or token.
    pub subject: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "list_audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "OK", body = Page<AuditView>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "audit"
)]
pub async fn audit(
    State(state): State<ApiState>,
    caller: Caller,
    super::Params(query): super::Params<AuditQuery>,
) -> Result<Json<Page<AuditView>>, Problem> {
    caller.require(ADMIN, "read the audit log")?;
    let limit = PageQuery {
        limit: query.limit,
        after: None,
    }
    .limit()?;
    let rows = state
        .db
        .audit_log(query.subject.as_deref(), query.before.as_deref(), limit + 1)
        .await?;
    Ok(Json(Page::of(
        rows.into_iter().map(AuditView::from).collect(),
        limit,
        |e| e.id.clone(),
    )))
}
