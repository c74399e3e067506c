//! The control plane's REST API under `/api/v1` (axum), its OpenAPI
//! document generated from these handlers (`utoipa`) at
//! `/api/v1/openapi.json`, bearer API tokens with roles ([`auth`]), and
//! errors as RFC 9457 problem details ([`problem`]).
//!
//! Without a database row a live stream (published under the config
//! file's `[[streams]]`, or freely while nothing restricts publishing)
//! still lists, with its live state and no settings.
//!
//! Lists are pages: `?limit=N` (1 to 1000, default 100) and `?after=` the
//! `next` of the page before; `next` is absent on the last page.

pub mod auth;
pub mod dashboard;
pub mod history;
pub mod live;
pub mod monitoring;
pub mod problem;
pub mod streams;
pub mod tokens;
pub mod viewer_tokens;
pub mod vod;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::db::Database;
use problem::Problem;

/// A hook's answer, later.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the API asks of the process it runs in: `ferrocast up` (its own
/// ingest, origin and edge) or `ferrocast control` (the cluster, through
/// the registry).
pub trait ControlHooks: Send + Sync {
    /// `stream`'s settings or keys changed: the change must be in effect
    /// for new publishers of this process when the returned future is done
    /// (the publish authoriser reloads at once rather than at its next
    /// poll), and be announced to the cluster's ingest processes.
    fn streams_changed<'a>(&'a self, stream: &'a str) -> HookFuture<'a, ()>;

    /// Disconnects the live publisher of `stream`, or asks the process
    /// that has it to; false when it has none.
    fn disconnect<'a>(&'a self, stream: &'a str) -> HookFuture<'a, bool>;

    /// What is live now, by stream name: streams with a publisher or with
    /// media still in their playlist window.
    fn live(&self) -> HookFuture<'_, BTreeMap<String, live::LiveStatus>> {
        Box::pin(async { BTreeMap::new() })
    }

    /// A viewer JWT for `stream` (only), with `subject` as its `sub`,
    /// valid `ttl_secs` from now: the token and when it expires (Unix
    /// seconds).
    fn mint_viewer_token(
        &self,
        stream: &str,
        subject: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, u64), viewer_tokens::MintFailure> {
        let _ = (stream, subject, ttl_secs);
        Err(viewer_tokens::MintFailure::NotConfigured)
    }

    /// The port publishers reach this process's SRT listener on (for the
    /// push URLs shown with a key).
    fn srt_port(&self) -> Option<u16> {
        None
    }

    /// The host publishers reach the SRT listener at, when it is not the
    /// host the API was reached at (a cluster's ingest address).
    fn push_host(&self) -> Option<String> {
        None
    }

    /// The HTTPS port of this process's edge, for player links.
    fn edge_port(&self) -> Option<u16> {
        None
    }

    /// A JPEG of the latest keyframe of `stream`, if it has live video.
    fn thumbnail<'a>(&'a self, stream: &'a str) -> HookFuture<'a, Option<Vec<u8>>> {
        let _ = stream;
        Box::pin(async { None })
    }

    /// The upload queue, where this process takes VOD uploads.
    fn vod(&self) -> Option<Arc<dyn vod::VodUploads>> {
        None
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub db: Database,
    /// The process around the API.
    pub hooks: Arc<dyn ControlHooks>,
    /// The streams' last minutes ([`history::History::sampled`] from the
    /// hooks; empty by default).
    pub history: history::History,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("db", &self.db).finish()
    }
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` (`before` for the audit log) for the next page;
    /// absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` rows: the extra row only says that
    /// there is a next page.
    fn of(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(key) } else { None };
        Page { items: rows, next }
    }
}

/// Query of a list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// The `next` of the page before.
    pub after: Option<String>,
}

/// Default and largest page sizes.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

impl PageQuery {
    fn limit(&self) -> Result<u32, Problem> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Problem::invalid(format!(
                "limit must be 1 to {MAX_LIMIT} (got {n})"
            ))),
        }
    }
}

/// A JSON body whose rejection is a problem document (422, or 415 for a
/// body that is not JSON).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "the body must be JSON (Content-Type: application/json)",
            )),
            Err(e) => Err(Problem::invalid(e.body_text())),
        }
    }
}

/// A query string whose rejection is a problem document (422).
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(e) => Err(Problem::invalid(e.body_text())),
        }
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferrocast control plane",
        description = "Streams, publish keys and API tokens. Authenticate with `Authorization: Bearer TOKEN`; errors are RFC 9457 problem details."
    ),
    paths(
        streams::list,
        streams::create,
        streams::get,
        streams::update,
        streams::delete,
        streams::rotate_key,
        streams::disconnect,
        monitoring::thumbnail,
        monitoring::history,
        viewer_tokens::mint,
        vod::upload,
        vod::list,
        vod::get,
        tokens::list,
        tokens::create,
        tokens::revoke,
        tokens::audit,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "streams", description = "streams, their publish keys and live state"),
        (name = "viewers", description = "viewer tokens for the edge"),
        (name = "vod", description = "uploads to video on demand"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "audit", description = "who changed what (admin)"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the paths name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, as served.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

/// The routes (mount on the process's HTTP listener).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/dashboard", get(dashboard::page))
        .route(
            "/api/v1/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi_json(),
                )
            }),
        )
        .route("/api/v1/streams", get(streams::list).post(streams::create))
        .route(
            "/api/v1/streams/{name}",
            get(streams::get)
                .patch(streams::update)
                .delete(streams::delete),
        )
        .route("/api/v1/streams/{name}/key", post(streams::rotate_key))
        .route(
            "/api/v1/streams/{name}/publisher",
            delete(streams::disconnect),
        )
        .route(
            "/api/v1/streams/{name}/thumbnail",
            get(monitoring::thumbnail),
        )
        .route("/api/v1/streams/{name}/history", get(monitoring::history))
        .route(
            "/api/v1/streams/{name}/viewer-token",
            post(viewer_tokens::mint),
        )
        .route("/api/v1/vod", get(vod::list).post(vod::upload))
        .route("/api/v1/vod/{id}", get(vod::get))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .route("/api/v1/audit", get(tokens::audit))
        .with_state(state)
}
