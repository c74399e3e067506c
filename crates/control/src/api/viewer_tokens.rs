//! `POST /api/v1/streams/{name}/viewer-token`: a viewer JWT for one
//! stream, signed with the edge's key, so players and integrators need no
//! auth service of their own.

use axum::Json;
use axum::extract::{Path, State};
use ferrocast_media::StreamName;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, VIEWER_TOKENS};
use super::problem::Problem;
use super::{ApiState, Body};

/// Lifetime of a token when the request names none, seconds.
pub const DEFAULT_TTL_SECS: u64 = 3600;

/// Longest `subject`, characters.
const MAX_SUBJECT_CHARS: usize = 256;

/// What to mint.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintViewerToken {
    /// Lifetime, seconds: 1 to 86400 (default 3600).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// The token's `sub` (a viewer or ticket id of yours, at most 256
    /// characters); nothing else about the viewer is in the token.
    #[serde(default)]
    pub subject: Option<String>,
}

/// A minted token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ViewerToken {
    /// The JWT: `Authorization: Bearer JWT` on the edge's
    /// `/live/NAME/index.m3u8`.
    pub token: String,
    /// The stream it is for (and only it).
    pub stream: String,
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
    /// The edge's player page for it (the token rides in the fragment,
    /// which browsers never send): prefix the edge's `https://HOST:PORT`.
    pub player_path: String,
}

/// Why the process made no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintFailure {
    /// No edge with an HS256 key in this process.
    NotConfigured,
    /// The request's values were refused (the text says why).
    Invalid(String),
}

/// Mints a viewer JWT for one stream.
#[utoipa::path(
    post,
    path = "/api/v1/streams/{name}/viewer-token",
    operation_id = "mint_viewer_token",
    params(("name" = String, Path, description = "the stream's name")),
    request_body = MintViewerToken,
    responses(
        (status = 200, description = "OK", body = ViewerToken),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No signing key configured (an [edge.jwt] HS256 key)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "viewers"
)]
pub async fn mint(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    Body(request): Body<MintViewerToken>,
) -> Result<Json<ViewerToken>, Problem> {
    caller.require(VIEWER_TOKENS, "mint viewer tokens")?;
    StreamName::new(&name).map_err(|e| Problem::invalid(format!("stream name: {e}")))?;
    if let Some(subject) = &request.subject
        && (subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS)
    {
        return Err(Problem::invalid(format!(
            "subject must be 1 to {MAX_SUBJECT_CHARS} characters"
        )));
    }
    let ttl = request.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    match state
        .hooks
        .mint_viewer_token(&name, request.subject.as_deref(), ttl)
    {
        Ok((token, expires_unix)) => Ok(Json(ViewerToken {
            player_path: format!("/play/{name}#token={token}"),
            token,
            stream: name,
            expires_unix,
        })),
        Err(MintFailure::Invalid(why)) => Err(Problem::invalid(why)),
        Err(MintFailure::NotConfigured) => Err(Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no-signing-key",
            "No signing key",
            "this process has no edge with an HS256 key in [edge.jwt] keys to sign viewer tokens with",
        )),
    }
}
