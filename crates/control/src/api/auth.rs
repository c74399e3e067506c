//! Bearer API tokens and what each role may do.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::ApiState;
use super::problem::Problem;
use crate::db::Database;
use crate::tokens::{ApiToken, Role};

/// The caller of a request: its live API token.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

impl Caller {
    /// Fails with 403 unless the caller's role is one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), Problem> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "a {} token may not {what}",
                self.0.role.as_str()
            )))
        }
    }

    /// Who to name in the audit log.
    pub fn actor(&self) -> crate::Actor {
        crate::Actor::Token(self.0.id.clone())
    }
}

/// Streams and keys: admins and operators.
pub const STREAMS: &[Role] = &[Role::Admin, Role::Operator];
/// Viewer tokens: everyone (`viewer-issuer` may do only this).
pub const VIEWER_TOKENS: &[Role] = &[Role::Admin, Role::Operator, Role::ViewerIssuer];
/// Tokens and the audit log: admins.
pub const ADMIN: &[Role] = &[Role::Admin];

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        caller(&parts.headers, &state.db).await
    }
}

/// The live API token in `headers`' `Authorization: Bearer`, or a 401
/// (503 while the database does not answer).
pub async fn caller(headers: &axum::http::HeaderMap, db: &Database) -> Result<Caller, Problem> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("an Authorization: Bearer API token is needed"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Problem::unauthorized("the Authorization header must be Bearer TOKEN"))?;
    // Tokens are made here: 64 hex characters. Anything else is not
    // looked up at all.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Problem::unauthorized("not a valid API token"));
    }
    match db.verify_token(token).await {
        Ok(Some(token)) => Ok(Caller(token)),
        Ok(None) => Err(Problem::unauthorized("not a valid API token")),
        Err(e) => Err(e.into()),
    }
}

/// Paths a token guard lets through: the probes an orchestrator calls.
const UNGUARDED: &[&str] = &["/healthz", "/readyz"];

/// `router` with every route but `/healthz` and `/readyz` needing a live
/// API token of any role (for an origin, `/metrics` and `/status` that
/// listen where the public may reach them; Prometheus sends one with
/// `authorization: {credentials: ...}`).
pub fn guard(router: axum::Router, db: Database) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let db = db.clone();
            async move {
                if UNGUARDED.contains(&request.uri().path()) {
                    return next.run(request).await;
                }
                match caller(request.headers(), &db).await {
                    Ok(_) => next.run(request).await,
                    Err(problem) => axum::response::IntoResponse::into_response(problem),
                }
            }
        },
    ))
}
