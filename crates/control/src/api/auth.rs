//! Bearer API tokens and what each role may do.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::ApiState;
use super::problem::Problem;
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
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("an Authorization: Bearer API token is needed"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be Bearer TOKEN")
            })?;
        // Tokens are made here: 64 hex characters. Anything else is not
        // looked up at all.
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Problem::unauthorized("not a valid API token"));
        }
        match state.db.verify_token(token).await {
            Ok(Some(token)) => Ok(Caller(token)),
            Ok(None) => Err(Problem::unauthorized("not a valid API token")),
            Err(e) => Err(e.into()),
        }
    }
}
