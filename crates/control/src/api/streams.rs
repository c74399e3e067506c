//! `/api/v1/streams/...`: streams and their publish keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use ferrocast_config::{DuplicatePublisher, Secret};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, STREAMS};
use super::live::LiveStatus;
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
    /// Where and how to push with it.
    pub push: PushUrls,
}

/// Ready-made ways to publish a stream, for the host the request was
/// made to (the `Host` header) and this process's SRT port. A stream with
/// a passphrase has `PASSPHRASE` where it goes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PushUrls {
    /// The SRT URL (also OBS's "Server" with the "Custom" service, stream
    /// key left empty).
    pub srt_url: String,
    /// An ffmpeg command line pushing `INPUT`.
    pub ffmpeg: String,
    /// An srt-live-transmit command line pushing MPEG-TS from UDP port
    /// 1234.
    pub srt_live_transmit: String,
}

impl PushUrls {
    /// The URLs for `stream` with `key` at `host` (a host name or
    /// address, no port) and `srt_port`.
    pub fn new(host: &str, srt_port: u16, stream: &str, key: &str, passphrase: bool) -> PushUrls {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let mut srt_url =
            format!("srt://{host}:{srt_port}?streamid=publish:live/{stream}?key={key}");
        if passphrase {
            srt_url.push_str("&passphrase=PASSPHRASE");
        }
        PushUrls {
            ffmpeg: format!(
                "ffmpeg -re -i INPUT -c:v libx264 -preset veryfast -tune zerolatency -g 60 -c:a aac -f mpegts '{srt_url}'"
            ),
            srt_live_transmit: format!("srt-live-transmit udp://:1234 '{srt_url}'"),
            srt_url,
        }
    }
}

/// The host name of a request's `Host` header, without its port.
fn request_host(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("HOST");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        name.to_owned()
    } else {
        "HOST".to_owned()
    }
}

fn with_key(
    state: &ApiState,
    headers: &axum::http::HeaderMap,
    made: crate::WithKey,
) -> StreamWithKey {
    let key = made.publish_key.expose().to_owned();
    let stream: StreamView = made.stream.into();
    let port = state.hooks.srt_port().unwrap_or(DEFAULT_SRT_PORT);
    StreamWithKey {
        push: PushUrls::new(
            &state
                .hooks
                .push_host()
                .unwrap_or_else(|| request_host(headers)),
            port,
            &stream.name,
            &key,
            stream.passphrase_set,
        ),
        stream,
        publish_key: key,
    }
}

/// The SRT port in push URLs when the process does not say.
const DEFAULT_SRT_PORT: u16 = 9000;

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
        Some(v) => crate::streams::StreamRecording::parse(v)
            .map(drop)
            .map_err(|e| Problem::invalid(format!("recording: {e}"))),
        None => Ok(()),
    }
}

/// A stream: its stored settings (when it is in the database) and its
/// live state (while it is live).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StreamState {
    /// The stream's name.
    pub name: String,
    /// Its settings; absent for a live stream that is not in the database
    /// (the config file's `[[streams]]`, or open publishing).
    pub settings: Option<StreamView>,
    /// Its live state; absent while nothing of it is live.
    pub live: Option<LiveStatus>,
}

/// Lists the streams, stored and live, in name order.
#[utoipa::path(
    get,
    path = "/api/v1/streams",
    operation_id = "list_streams",
    params(PageQuery),
    responses(
        (status = 200, description = "OK", body = Page<StreamState>),
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
) -> Result<Json<Page<StreamState>>, Problem> {
    caller.require(STREAMS, "list streams")?;
    let limit = page.limit()?;
    let after = page.after.as_deref();
    let rows = state.db.streams(after, limit + 1).await?;
    let mut live = state.hooks.live().await;
    // The first `limit + 1` names of the union are among the first
    // `limit + 1` stored ones and the live ones after `after`.
    let mut merged: std::collections::BTreeMap<String, StreamState> = rows
        .into_iter()
        .map(|row| {
            let name = row.name.clone();
            let state = StreamState {
                live: live.remove(&name),
                name: name.clone(),
                settings: Some(row.into()),
            };
            (name, state)
        })
        .collect();
    for (name, status) in live {
        if after.is_none_or(|after| name.as_str() > after) {
            merged.insert(
                name.clone(),
                StreamState {
                    name,
                    settings: None,
                    live: Some(status),
                },
            );
        }
    }
    Ok(Json(Page::of(
        merged.into_values().take(limit as usize + 1).collect(),
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
    headers: axum::http::HeaderMap,
    body: super::Body<CreateStream>,
) -> Result<(StatusCode, Json<StreamWithKey>), Problem> {
    caller.require(STREAMS, "create streams")?;
    let body = body.0;
    check_recording(body.recording.as_ref())?;
    let name = body.name.clone();
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
    state.hooks.streams_changed(&name).await;
    Ok((StatusCode::CREATED, Json(with_key(&state, &headers, made))))
}

/// One stream: its settings and live state.
#[utoipa::path(
    get,
    path = "/api/v1/streams/{name}",
    operation_id = "get_stream",
    params(("name" = String, Path, description = "the stream's name")),
    responses(
        (status = 200, description = "OK", body = StreamState),
        (status = 401, description = "No valid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Neither stored nor live", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
    tag = "streams"
)]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<StreamState>, Problem> {
    caller.require(STREAMS, "read streams")?;
    let live = state.hooks.live().await.remove(&name);
    let settings = match state.db.stream(&name).await {
        Ok(row) => Some(StreamView::from(row)),
        Err(crate::DbError::NotFound { .. }) if live.is_some() => None,
        Err(e) => return Err(e.into()),
    };
    Ok(Json(StreamState {
        name,
        settings,
        live,
    }))
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
    state.hooks.streams_changed(&name).await;
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
    state.hooks.streams_changed(&name).await;
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
    headers: axum::http::HeaderMap,
    super::Params(query): super::Params<RotateQuery>,
) -> Result<Json<StreamWithKey>, Problem> {
    caller.require(STREAMS, "rotate keys")?;
    let made = state.db.rotate_key(&name, &caller.actor()).await?;
    state.hooks.streams_changed(&name).await;
    if query.disconnect == Some(true) && state.hooks.disconnect(&name).await {
        crate::audit::record_now(&state.db, &caller.actor(), "stream.disconnect", &name).await?;
    }
    Ok(Json(with_key(&state, &headers, made)))
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
    if state.hooks.disconnect(&name).await {
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
