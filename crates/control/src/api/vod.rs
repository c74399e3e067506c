//! Uploads to video on demand: `POST /api/v1/vod?stream=NAME` with the
//! media file as the request body (streamed to disk, size-limited, its
//! type found by probing, not by name), then `GET /api/v1/vod/{id}` for
//! its state and progress until it is `ready` (playable through the edge
//! at its `playlist_path` with a viewer JWT for the stream) or `failed`.

use std::path::PathBuf;

use axum::Json;
use axum::body::Body as RawBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrocast_media::StreamName;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Caller, STREAMS};
use super::problem::Problem;
use super::{ApiState, HookFuture, Params};

/// Where an upload's job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VodState {
    /// Waiting for the transcoder.
    Queued,
    /// Being transcoded and stored.
    Transcoding,
    /// Playable through the edge.
    Ready,
    /// Given up (`error` says why); nothing of it was kept.
    Failed,
}

/// What the probe found in an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VodSource {
    /// The container FFmpeg recognised.
    pub format: String,
    /// Its duration, ms, when the container says.
    pub duration_ms: Option<u64>,
    /// Video codec (`h264`, `hevc`).
    pub video_codec: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Audio codec (`aac`, `opus`), if any.
    pub audio_codec: Option<String>,
}

/// An upload's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VodJob {
    /// The VOD's id.
    pub id: String,
    /// The stream it is filed under: viewer JWTs for it play it.
    pub stream: String,
    /// Where it is.
    pub state: VodState,
    /// Fraction of the file done, 0 to 1.
    pub progress: f32,
    /// What the probe found.
    pub source: VodSource,
    /// When it was accepted, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// When it became ready or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The renditions made, once ready.
    pub renditions: Vec<String>,
    /// Its duration as packaged, ms, once ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The edge's path of its multivariant playlist.
    pub playlist_path: String,
}

/// Why an upload was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRefusal {
    /// The file is not media the ladder can take (the text says why).
    BadFile(String),
    /// Too many uploads wait already.
    Busy(String),
    /// The service cannot take uploads now.
    Unavailable(String),
}

/// The upload queue of the process serving the API.
pub trait VodUploads: Send + Sync {
    /// The largest upload, bytes.
    fn max_upload_bytes(&self) -> u64;

    /// A fresh file path to receive an upload to.
    fn incoming_path(&self) -> PathBuf;

    /// Takes the received file at `file` for `stream`: probes and queues
    /// it, or refuses it. The file is the service's from now on.
    fn submit(
        &self,
        stream: StreamName,
        file: PathBuf,
    ) -> HookFuture<'_, Result<VodJob, UploadRefusal>>;

    /// One job.
    fn job(&self, id: &str) -> Option<VodJob>;

    /// Every job kept, newest first.
    fn list(&self) -> Vec<VodJob>;
}

/// Query of an upload.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The stream the VOD is filed under (a viewer JWT for it plays it).
    pub stream: String,
}

fn not_configured() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "vod-unavailable",
        "VOD uploads unavailable",
        "this process takes no uploads: VOD needs [recording] (an object store) and a process \
         that serves the API",
    )
}

fn too_large(max: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload-too-large",
        "Upload too large",
        format!("an upload may be at most {max} bytes (recording.upload_max_bytes)"),
    )
}

/// Uploads a media file to become a VOD.
#[utoipa::path(
    post,
    path = "/api/v1/vod",
    operation_id = "upload_vod",
    params(UploadQuery),
    request_body(content = Vec<u8>, description = "The media file itself (MP4, MPEG-TS, Matroska, …; H.264 or HEVC video, AAC or Opus audio)", content_type = "application/octet-stream"),
    responses(
        (status = 202, description = "Accepted: transcoding follows; poll the job", body = VodJob),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than recording.upload_max_bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not media the ladder can take (a problem document says why)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No stream, a bad stream name, or an empty body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No uploads here, or too many waiting", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "vod"
)]
pub async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    Params(query): Params<UploadQuery>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, Problem> {
    caller.require(STREAMS, "upload VOD")?;
    let stream =
        StreamName::new(&query.stream).map_err(|e| Problem::invalid(format!("stream: {e}")))?;
    let vod = state.hooks.vod().ok_or_else(not_configured)?;
    let max = vod.max_upload_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large(max));
    }
    let path = vod.incoming_path();
    let received = receive(body, &path, max).await;
    let size = match received {
        Ok(size) => size,
        Err(problem) => {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(problem);
        }
    };
    if size == 0 {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(Problem::invalid(
            "the body is empty: send the media file itself as the request body",
        ));
    }
    match vod.submit(stream, path).await {
        Ok(job) => {
            // The job runs already: a failed audit write is logged, not
            // answered as the upload's failure.
            if let Err(e) =
                crate::audit::record_now(&state.db, &caller.actor(), "vod.upload", &job.stream)
                    .await
            {
                tracing::warn!(vod = %job.id, error = %e, "cannot write the audit entry of an upload");
            }
            let location = format!("/api/v1/vod/{}", job.id);
            Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, location)],
                Json(job),
            )
                .into_response())
        }
        Err(UploadRefusal::BadFile(why)) => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media",
            "Unsupported media",
            why,
        )),
        Err(UploadRefusal::Busy(why)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vod-busy",
            "Too many uploads waiting",
            why,
        )),
        Err(UploadRefusal::Unavailable(why)) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vod-unavailable",
            "VOD uploads unavailable",
            why,
        )),
    }
}

/// Writes the request body to `path`, refusing it once past `max` bytes;
/// the size written.
async fn receive(body: RawBody, path: &std::path::Path, max: u64) -> Result<u64, Problem> {
    let storage = |e: std::io::Error| {
        tracing::warn!(file = %path.display(), error = %e, "cannot write an upload");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "vod-unavailable",
            "VOD uploads unavailable",
            "the upload could not be written to local disk",
        )
    };
    let mut file = tokio::fs::File::create(path).await.map_err(storage)?;
    let mut size = 0u64;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "upload-interrupted",
                "Upload interrupted",
                format!("the request body ended in error: {e}"),
            )
        })?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large(max));
        }
        file.write_all(&chunk).await.map_err(storage)?;
    }
    file.flush().await.map_err(storage)?;
    Ok(size)
}

/// One upload's job: its state and progress.
#[utoipa::path(
    get,
    path = "/api/v1/vod/{id}",
    operation_id = "get_vod",
    params(("id" = String, Path, description = "the VOD's id")),
    responses(
        (status = 200, description = "OK", body = VodJob),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload in this process", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No uploads here", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "vod"
)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VodJob>, Problem> {
    caller.require(STREAMS, "read VOD uploads")?;
    let vod = state.hooks.vod().ok_or_else(not_configured)?;
    vod.job(&id).map(Json).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no upload {id:?} in this process"),
        )
    })
}

/// The uploads this process knows, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/vod",
    operation_id = "list_vod",
    responses(
        (status = 200, description = "OK", body = Vec<VodJob>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No uploads here", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "vod"
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<VodJob>>, Problem> {
    caller.require(STREAMS, "read VOD uploads")?;
    let vod = state.hooks.vod().ok_or_else(not_configured)?;
    Ok(Json(vod.list()))
}
