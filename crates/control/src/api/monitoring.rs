//! What the dashboard watches: a stream's current picture and its last
//! minutes of bitrate, loss and viewers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::auth::{Caller, STREAMS};
use super::history::Sample;
use super::problem::Problem;

/// A JPEG of the stream's latest keyframe (at most 320 pixels wide).
#[utoipa::path(
    get,
    path = "/api/v1/streams/{name}/thumbnail",
    operation_id = "stream_thumbnail",
    params(("name" = String, Path, description = "the stream's name")),
    responses(
        (status = 200, description = "A JPEG", content_type = "image/jpeg", body = Vec<u8>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No video of it is live in this process", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn thumbnail(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    caller.require(STREAMS, "see streams")?;
    match state.hooks.thumbnail(&name).await {
        Some(jpeg) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response()),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("stream {name:?} has no live video in this process"),
        )),
    }
}

/// The stream's samples over the last minutes (one every 2 s, oldest
/// first; empty for a stream not live lately).
#[utoipa::path(
    get,
    path = "/api/v1/streams/{name}/history",
    operation_id = "stream_history",
    params(("name" = String, Path, description = "the stream's name")),
    responses(
        (status = 200, description = "OK", body = Vec<Sample>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<Sample>>, Problem> {
    caller.require(STREAMS, "see streams")?;
    Ok(Json(state.history.of(&name)))
}
