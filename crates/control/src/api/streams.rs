//! `/api/v1/streams/...`: streams and their publish keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrocast_config::{DuplicatePublisher, Secret};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, STREAMS};
use super::problem::Problem;
use super::{ApiState, Page, PageQuery};
use crate::streams::{NewStream, StreamChanges, StreamRecord};

/// What a second publisher of a live stream gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    /// Refused while the stream is live.
    Reject,
    /// Takes the stream over; the live publisher is dropped.
    TakeOver,
}

impl From<OnDuplicate> for DuplicatePublisher {
    fn from(p: OnDuplicate) -> Self {
        match p {
            OnDuplicate::Reject => DuplicatePublisher::Reject,
            OnDuplicate::TakeOver => DuplicatePublisher::TakeOver,
        }
    }
}

impl From<DuplicatePublisher> for OnDuplicate {
    fn from(p: DuplicatePublisher) -> Self {
        match p {
            DuplicatePublisher::Reject => OnDuplicate::Reject,
            DuplicatePublisher::TakeOver => OnDuplicate::TakeOver,
        }
    }
}

/// A stream's settings (never its key or passphrase).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StreamView {
    /// The stream's name: publishers push `live/NAME`, viewers play
    /// `/live/NAME/index.m3u8`.
    pub name: String,
    /// The first 8 characters of the current publish key.
    pub key_prefix: String,
    /// Whether callers must encrypt with an SRT passphrase.
    pub passphrase_set: bool,
    /// What a second publisher gets.
    pub on_duplicate: OnDuplicate,
    /// The transcoding ladder, if not the default.
    pub ladder: Option<String>,
    /// The recording policy, if any.
    #[schema(value_type = Option<Object>)]
    pub recording: Option<serde_json::Value>,
    /// Created, Unix milliseconds.
    pub created_ms: i64,
    /// Last changed, Unix milliseconds.
    pub updated_ms: i64,
}

impl From<StreamRecord> for StreamView {
    fn from(s: StreamRecord) -> Self {
        StreamView {
            name: s.name,
            key_prefix: s.key_prefix,
            passphrase_set: s.passphrase.is_some(),
            on_duplicate: s.on_duplicate.into(),
            ladder: s.ladder,
            recording: s.recording,
            created_ms: s.created_ms,
            updated_ms: s.updated_ms,
        }
    }
}

/// A stream with its publish key: the answer to creating it or rotating
/// its key, the only times the key is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamWithKey {
    /// The stream.
    pub stream: StreamView,
    /// The publish key: `streamid=publish:live/NAME?key=KEY`.
    pub publish_key: String,
}

/// A new stream.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// Its name: 1 to 64 of `[A-Za-z0-9._-]`, not starting with `.`.
    pub name: String,
    /// An SRT passphrase (10 to 79 of `[A-Za-z0-9._~-]`) callers must
    /// encrypt with.
    #[serde(default)]
    pub passphrase: Option<String>,
    /// What a second publisher gets (default `reject`).
    #[serde(default)]
    pub on_duplicate: Option<OnDuplicate>,
    /// A ladder name.
    #[serde(default)]
    pub ladder: Option<String>,
    /// A recording policy (a JSON object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub recording: Option<serde_json::Value>,
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value; the
/// field's absence (with `#[serde(default)]`) is `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Changes to a stream: absent fields stay, `null` removes.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStream {
    /// A new passphrase, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub passphrase: Option<Option<String>>,
    /// A new duplicate publisher policy.
    #[serde(default)]
    pub on_duplicate: Option<OnDuplicate>,
    /// A new ladder, or `null` for the default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub ladder: Option<Option<String>>,
    /// A new recording policy, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub recording: Option<Option<serde_json::Value>>,
}

fn check_recording(recording: Option<&serde_json::Value>) -> Result<(), Problem> {
    match recording {
        Some(v) if !v.is_object() => Err(Problem::invalid("recording must be a JSON object")),
        _ => Ok(()),
    }
}

/// Lists the streams' settings in name order (`GET /api/v1/streams` is
/// the live status).
#[utoipa::path(
    get,
    path = "/api/v1/stream-settings",
    operation_id = "list_stream_settings",
    params(PageQuery),
    responses(
        (status = 200, description = "OK", body = Page<StreamView>),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    super::Params(page): super::Params<PageQuery>,
) -> Result<Json<Page<StreamView>>, Problem> {
    caller.require(STREAMS, "list streams")?;
    let limit = page.limit()?;
    let rows = state.db.streams(page.after.as_deref(), limit + 1).await?;
    Ok(Json(Page::of(
        rows.into_iter().map(StreamView::from).collect(),
        limit,
        |s| s.name.clone(),
    )))
}

/// Creates a stream and its publish key (shown once).
#[utoipa::path(
    post,
    path = "/api/v1/streams",
    operation_id = "create_stream",
    request_body = CreateStream,
    responses(
        (status = 201, description = "Created", body = StreamWithKey),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    body: super::Body<CreateStream>,
) -> Result<(StatusCode, Json<StreamWithKey>), Problem> {
    caller.require(STREAMS, "create streams")?;
    let body = body.0;
    check_recording(body.recording.as_ref())?;
    let made = state
        .db
        .create_stream(
            NewStream {
                name: body.name,
                passphrase: body.passphrase.map(Secret::new),
                on_duplicate: body.on_duplicate.map(Into::into).unwrap_or_default(),
                ladder: body.ladder,
                recording: body.recording,
            },
            &caller.actor(),
        )
        .await?;
    state.hooks.streams_changed().await;
    Ok((
        StatusCode::CREATED,
        Json(StreamWithKey {
            stream: made.stream.into(),
            publish_key: made.publish_key.expose().to_owned(),
        }),
    ))
}

/// One stream's settings.
#[utoipa::path(
    get,
    path = "/api/v1/streams/{name}",
    operation_id = "get_stream",
    params(("name" = String, Path, description = "the stream's name")),
    responses(
        (status = 200, description = "OK", body = StreamView),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<StreamView>, Problem> {
    caller.require(STREAMS, "read streams")?;
    Ok(Json(state.db.stream(&name).await?.into()))
}

/// Changes some of a stream's settings.
#[utoipa::path(
    patch,
    path = "/api/v1/streams/{name}",
    operation_id = "update_stream",
    params(("name" = String, Path, description = "the stream's name")),
    request_body = UpdateStream,
    responses(
        (status = 200, description = "OK", body = StreamView),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request (a problem document says why)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: super::Body<UpdateStream>,
) -> Result<Json<StreamView>, Problem> {
    caller.require(STREAMS, "change streams")?;
    let body = body.0;
    check_recording(body.recording.as_ref().and_then(Option::as_ref))?;
    let record = state
        .db
        .update_stream(
            &name,
            StreamChanges {
                passphrase: body.passphrase.map(|p| p.map(Secret::new)),
                on_duplicate: body.on_duplicate.map(Into::into),
                ladder: body.ladder,
                recording: body.recording,
            },
            &caller.actor(),
        )
        .await?;
    state.hooks.streams_changed().await;
    Ok(Json(record.into()))
}

/// Deletes a stream: its key stops working for new publishers.
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{name}",
    operation_id = "delete_stream",
    params(("name" = String, Path, description = "the stream's name")),
    responses(
        (status = 204, description = "Done, no content"),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(STREAMS, "delete streams")?;
    state.db.delete_stream(&name, &caller.actor()).await?;
    state.hooks.streams_changed().await;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of a key rotation.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RotateQuery {
    /// Also disconnect the live publisher, once the old key is refused
    /// (it cannot come back with it).
    pub disconnect: Option<bool>,
}

/// Replaces the stream's publish key (the new one is shown once); the old
/// one is refused for new publishers of this process before the answer,
/// of other processes within a second. With `?disconnect=true` the live
/// publisher is disconnected too.
#[utoipa::path(
    post,
    path = "/api/v1/streams/{name}/key",
    operation_id = "rotate_stream_key",
    params(("name" = String, Path, description = "the stream's name"), RotateQuery),
    responses(
        (status = 200, description = "OK", body = StreamWithKey),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn rotate_key(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    super::Params(query): super::Params<RotateQuery>,
) -> Result<Json<StreamWithKey>, Problem> {
    caller.require(STREAMS, "rotate keys")?;
    let made = state.db.rotate_key(&name, &caller.actor()).await?;
    state.hooks.streams_changed().await;
    if query.disconnect == Some(true) && state.hooks.disconnect(&name) {
        crate::audit::record_now(&state.db, &caller.actor(), "stream.disconnect", &name).await?;
    }
    Ok(Json(StreamWithKey {
        stream: made.stream.into(),
        publish_key: made.publish_key.expose().to_owned(),
    }))
}

/// Disconnects the stream's live publisher (it may come back with a valid
/// key: rotate the key first to keep it out).
#[utoipa::path(
    delete,
    path = "/api/v1/streams/{name}/publisher",
    operation_id = "disconnect_publisher",
    params(("name" = String, Path, description = "the stream's name")),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No live publisher", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn disconnect(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(STREAMS, "disconnect publishers")?;
    if state.hooks.disconnect(&name) {
        crate::audit::record_now(&state.db, &caller.actor(), "stream.disconnect", &name).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("stream {name:?} has no live publisher in this process"),
        ))
    }
}
