//! The HTTP origin: playlists, init segments, parts and segments under
//! `/live/NAME/`.
//!
//! | path | what |
//! |---|---|
//! | `/live/NAME/index.m3u8` | multivariant playlist |
//! | `/live/NAME/stream.m3u8` | LL-HLS media playlist (blocking reload, delta updates) |
//! | `/live/NAME/initN.mp4` | CMAF init segment, generation N |
//! | `/live/NAME/partM.I.m4s` | part I of segment M, streamed as it is written |
//! | `/live/NAME/segM.m4s` | segment M |
//!
//! Every name from the URL is validated against a strict grammar before it
//! is looked up; nothing from a URL reaches a file system.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use ferrocast_hls::{
    BlockingStatus, PartRef, PlaylistRequest, RenderOptions, ResourceName, ResourceStatus, Variant,
};
use ferrocast_media::{StreamName, TrackKind};
use tokio::time::Instant;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::cors::CorsLayer;
use tracing::warn;

use crate::origin::Origin;
use crate::stream::{Check, LiveStream};

/// Media playlist name of the (single, muxed) rendition.
pub const MEDIA_PLAYLIST: &str = "stream.m3u8";

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// The origin's router.
pub fn router(origin: Origin) -> Router {
    // Compress playlists only: media is already compressed, and a gzip
    // encoder would hold back a part that is being streamed.
    let compress = SizeAbove::new(32).and(PlaylistsOnly);
    let metrics = origin.metrics().clone();
    Router::new()
        .route("/live/{name}/{file}", get(live_file))
        .route("/healthz", get(|| async { "ok" }))
        .layer(CompressionLayer::new().gzip(true).compress_when(compress))
        .layer(CorsLayer::permissive())
        .layer(axum::middleware::from_fn(move |request, next| {
            count_request(metrics.clone(), request, next)
        }))
        .with_state(origin)
}

/// Count every request by what it asked for, its HTTP version and status.
async fn count_request(
    metrics: Arc<ferrocast_telemetry::Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let kind = resource_kind(request.uri().path());
    let version = format!("{:?}", request.version());
    let response = next.run(request).await;
    metrics
        .http
        .requests
        .with_label_values(&[kind, version.as_str(), response.status().as_str()])
        .inc();
    response
}

/// A bounded label for a request path.
fn resource_kind(path: &str) -> &'static str {
    let file = path.rsplit('/').next().unwrap_or("");
    if !path.starts_with("/live/") {
        return "other";
    }
    match file {
        "index.m3u8" => "multivariant",
        MEDIA_PLAYLIST => "playlist",
        f if f.starts_with("init") => "init",
        f if f.starts_with("part") => "part",
        f if f.starts_with("seg") => "segment",
        _ => "other",
    }
}

#[derive(Clone, Copy)]
struct PlaylistsOnly;

impl Predicate for PlaylistsOnly {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: axum::body::HttpBody,
    {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == PLAYLIST_TYPE.as_bytes())
    }
}

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind `addr` and serve `app` (the origin's [`router`], possibly merged
/// with other routes).
pub async fn serve(addr: SocketAddr, app: Router) -> std::io::Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    Ok(HttpServer { local_addr, task })
}

/// Short text errors; details go to the log, never to the client.
#[derive(Debug)]
enum HttpError {
    NotFound(&'static str),
    BadRequest(&'static str),
    Unavailable(&'static str),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            HttpError::NotFound(t) => (StatusCode::NOT_FOUND, t),
            HttpError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            HttpError::Unavailable(t) => (StatusCode::SERVICE_UNAVAILABLE, t),
        };
        let mut response = (status, format!("{text}\n")).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

async fn live_file(
    State(origin): State<Origin>,
    Path((name, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let name = StreamName::new(&name).map_err(|_| HttpError::NotFound("no such stream"))?;
    let stream = origin
        .stream(&name)
        .ok_or(HttpError::NotFound("no such stream"))?;
    let deadline = Instant::now() + origin.config().max_hold;
    match file.as_str() {
        "index.m3u8" => multivariant(&stream, deadline).await,
        MEDIA_PLAYLIST => media_playlist(&stream, query.as_deref(), deadline).await,
        other => match ResourceName::parse(other) {
            Ok(ResourceName::Init { generation }) => init(&stream, generation),
            Ok(ResourceName::Part(part_ref)) => part(stream, part_ref, deadline).await,
            Ok(ResourceName::Segment { msn }) => segment(&stream, msn, deadline).await,
            Err(_) => Err(HttpError::NotFound("no such file")),
        },
    }
}

fn playlist_response(text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, PLAYLIST_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

fn media_response(body: Body, immutable: bool) -> Response {
    let cache = if immutable {
        "public, max-age=3600, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, "video/mp4"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

async fn multivariant(stream: &LiveStream, deadline: Instant) -> Result<Response, HttpError> {
    // A player may ask as the publisher connects: hold until the first part.
    let text = stream
        .wait_for(deadline, |a| {
            let Some(tracks) = a.tracks() else {
                return Check::Wait;
            };
            if a.window.last_part().is_none() {
                return Check::Wait;
            }
            let bitrate = a.bitrate();
            let codecs: Vec<String> = tracks.iter().map(|t| t.params.codec_string()).collect();
            let video = tracks.iter().find(|t| t.kind() == TrackKind::Video);
            let resolution = video.and_then(|t| t.params.resolution());
            let frame_rate = video.and_then(|t| t.params.frame_rate());
            let variant = Variant {
                uri: MEDIA_PLAYLIST.to_owned(),
                bandwidth: bitrate.peak.max(1),
                average_bandwidth: Some(bitrate.average.max(1)),
                codecs: codecs.join(","),
                resolution,
                frame_rate,
            };
            Check::Done(ferrocast_hls::render_multivariant(&[variant], true))
        })
        .await
        .map_err(|_| HttpError::Unavailable("stream has no media yet"))?
        .map_err(|e| {
            warn!(error = %e, "cannot render multivariant playlist");
            HttpError::Unavailable("stream description not available")
        })?;
    Ok(playlist_response(text))
}

async fn media_playlist(
    stream: &LiveStream,
    query: Option<&str>,
    deadline: Instant,
) -> Result<Response, HttpError> {
    let request = PlaylistRequest::from_query(query.unwrap_or(""))
        .map_err(|_| HttpError::BadRequest("bad _HLS_msn/_HLS_part/_HLS_skip"))?;
    let text = stream
        .wait_for(deadline, |a| {
            if a.tracks().is_none() || a.window.last_part().is_none() {
                return Check::Wait;
            }
            let status = match request.block {
                Some(target) => a.window.blocking_status(target),
                None => BlockingStatus::Ready,
            };
            match status {
                BlockingStatus::Ready => Check::Done(Ok(a.window.render(&RenderOptions {
                    skip: request.skip.wants_delta(),
                    ..RenderOptions::default()
                }))),
                BlockingStatus::TooFarAhead => Check::Done(Err(HttpError::BadRequest(
                    "_HLS_msn is more than two segments ahead of the playlist",
                ))),
                BlockingStatus::Wait => Check::Wait,
            }
        })
        .await
        .map_err(|_| {
            HttpError::Unavailable("playlist did not reach the requested part in time")
        })??;
    Ok(playlist_response(text))
}

fn init(stream: &LiveStream, generation: u32) -> Result<Response, HttpError> {
    let bytes = stream
        .lock()
        .store
        .init(generation)
        .cloned()
        .ok_or(HttpError::NotFound("no such init segment"))?;
    Ok(media_response(Body::from(bytes), true))
}

async fn segment(stream: &LiveStream, msn: u64, deadline: Instant) -> Result<Response, HttpError> {
    let chunks = stream
        .wait_for(deadline, |a| match a.store.segment(msn) {
            Some(s) if s.complete => Check::Done(Some(s.chunks().cloned().collect::<Vec<_>>())),
            Some(_) => Check::Wait,
            None => Check::Done(None),
        })
        .await
        .map_err(|_| HttpError::Unavailable("segment not finished in time"))?
        .ok_or(HttpError::NotFound("no such segment"))?;
    let body = Body::from_stream(futures::stream::iter(
        chunks
            .into_iter()
            .map(Ok::<Bytes, std::convert::Infallible>),
    ));
    Ok(media_response(body, true))
}

async fn part(
    stream: Arc<LiveStream>,
    part_ref: PartRef,
    deadline: Instant,
) -> Result<Response, HttpError> {
    let PartRef { msn, index } = part_ref;
    // Wait for the part to start (a preload-hinted part requested early).
    let first = stream
        .wait_for(deadline, |a| match a.store.part(msn, index) {
            Some(p) if !p.chunks.is_empty() || p.complete => {
                Check::Done(Some((p.chunks.clone(), p.complete)))
            }
            Some(_) => Check::Wait,
            // Not started, but it is the preload-hinted part: hold.
            None if a.window.part_status(part_ref) == ResourceStatus::Pending => Check::Wait,
            None => Check::Done(None),
        })
        .await
        .map_err(|_| HttpError::Unavailable("part not started in time"))?
        .ok_or(HttpError::NotFound("no such part"))?;
    let (chunks, complete) = first;
    if complete {
        let body = Body::from_stream(futures::stream::iter(
            chunks
                .into_iter()
                .map(Ok::<Bytes, std::convert::Infallible>),
        ));
        return Ok(media_response(body, true));
    }
    // Stream the chunks written so far, then each new one as it is written.
    let sent = chunks.len();
    let initial = futures::stream::iter(chunks.into_iter().map(Ok::<Bytes, std::io::Error>));
    let follow = futures::stream::unfold(
        (stream, sent, false),
        move |(stream, sent, done)| async move {
            if done {
                return None;
            }
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            let next = stream
                .wait_for(deadline, |a| match a.store.part(msn, index) {
                    Some(p) if p.chunks.len() > sent => {
                        Check::Done(Some((p.chunks[sent..].to_vec(), p.complete)))
                    }
                    Some(p) if p.complete => Check::Done(None),
                    Some(_) => Check::Wait,
                    None => Check::Done(None),
                })
                .await;
            match next {
                Ok(Some((new, complete))) => {
                    let sent = sent + new.len();
                    let bytes = concat(new);
                    Some((Ok(bytes), (stream, sent, complete)))
                }
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "part stalled",
                    )),
                    (stream, sent, true),
                )),
            }
        },
    );
    use futures::StreamExt;
    Ok(media_response(
        Body::from_stream(initial.chain(follow)),
        false,
    ))
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut out = bytes::BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in chunks {
        out.extend_from_slice(&chunk);
    }
    out.freeze()
}
