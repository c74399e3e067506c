//! The one request handler behind HTTP/1.1, HTTP/2 and HTTP/3: path
//! grammar, viewer JWT or edge token, upstream fetch, playlist rewriting,
//! CORS and caching headers.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ferrocast_hls::{MEDIA_PLAYLIST_NAME, RenditionName, ResourceName};
use ferrocast_media::StreamName;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use tracing::{Instrument, debug, debug_span, warn};

use super::limits::Limits;
use super::metrics::EdgeMetrics;
use crate::coalesce::normalize_query;
use crate::edge_token::query_param;
use futures::StreamExt;

use crate::upstream::{
    BodyStream, StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use crate::{EdgeConfig, EdgeConfigError, EdgeTokens, JwtError, JwtVerifier, Rewriter, jwt};

/// RFC 8216bis §4: "Each Playlist file MUST be identifiable either by the
/// path component of its URI or by HTTP Content-Type. ... In the second,
/// the HTTP Content-type MUST be "application/vnd.apple.mpegurl" or
/// "audio/mpegurl"."
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Parts and segments (`.m4s`, CMAF fragments): the media type registered
/// for segments of the ISO base media file format.
const SEGMENT_TYPE: &str = "video/iso.segment";
/// Init segments (`.mp4`).
const MP4_TYPE: &str = "video/mp4";
/// `X-Content-Type-Options: nosniff` (WHATWG Fetch): the browser takes the
/// `Content-Type` the edge chose and never sniffs another from the body,
/// so whatever bytes the origin put in a playlist or segment are never run
/// as HTML or script on the edge's origin.
const NOSNIFF: &str = "nosniff";
/// A stream's DVR multivariant playlist (the origin's `index-dvr.m3u8`).
const DVR_MULTIVARIANT: &str = "index-dvr.m3u8";
/// A rendition's DVR playlist (the origin's `dvr.m3u8`).
const DVR_PLAYLIST: &str = "dvr.m3u8";
/// Parts, segments and init segments never change once complete.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
/// Response headers a browser's script may read besides the safelisted
/// ones.
const EXPOSE_HEADERS: &str = "Age, Date, Content-Length, Content-Range, Accept-Ranges";
/// Longest upstream error body passed on to the viewer.
const MAX_PASSED_ERROR_BODY: usize = 200;

/// A response body: whole (playlists, refusals, cached media) or streamed
/// from the upstream as it arrives (media the origin may still be writing).
pub enum ResponseBody {
    /// The whole body.
    Full(Bytes),
    /// Chunks as the upstream passes them on; an `Err` means the object
    /// is incomplete and the response must be aborted, not finished.
    Stream(BodyStream),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Full(bytes) => f.debug_tuple("Full").field(&bytes.len()).finish(),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// The `Content-Type` of a playlist or media file, from its name alone
/// (the path grammar admits `.m3u8`, `.m4s` and `.mp4` files only); what
/// the upstream said is never passed on.
fn content_type_of(path: &str) -> HeaderValue {
    let file = path.rsplit('/').next().unwrap_or(path);
    HeaderValue::from_static(match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("m3u8") => PLAYLIST_TYPE,
        Some("m4s") => SEGMENT_TYPE,
        Some("mp4") => MP4_TYPE,
        // Unreachable through `parse_path`; never a type a browser runs.
        _ => "application/octet-stream",
    })
}

fn full(response: Response<Bytes>) -> Response<ResponseBody> {
    response.map(ResponseBody::Full)
}

/// Which protocol a request came in on (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x over TLS or plain TCP.
    Http1,
    /// HTTP/2 over TLS or plain TCP.
    Http2,
    /// HTTP/3 over QUIC.
    Http3,
}

impl Protocol {
    /// The label value: `h1`, `h2`, `h3`.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "h1",
            Protocol::Http2 => "h2",
            Protocol::Http3 => "h3",
        }
    }
}

/// What a request path asks for, validated against the origin's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// `/live/NAME/index.m3u8`, or its DVR twin `index-dvr.m3u8`.
    Multivariant { stream: &'a str },
    /// `/live/NAME[/RUNG]/stream.m3u8`, or its DVR twin `dvr.m3u8`.
    MediaPlaylist { stream: &'a str },
    /// `/live/NAME[/RUNG]/{initN.mp4,partM.I.m4s,segM.m4s}`.
    Media { stream: &'a str, kind: MediaKind },
    /// A recording of stream `NAME`: `/vod/NAME/ID/index.m3u8`,
    /// `/vod/NAME/ID/RENDITION/index.m3u8` or `/vod/NAME/ID/RENDITION/FILE`.
    Vod { stream: &'a str, kind: VodKind },
}

/// What a recording's path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VodKind {
    /// Its multivariant playlist: a viewer JWT starts a session.
    Multivariant,
    /// A rendition's media playlist.
    Playlist,
    /// A segment or init segment (byte ranges served).
    Media,
}

/// The kind of a media resource (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    Init,
    Part,
    Segment,
}

impl<'a> Target<'a> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Target::Multivariant { .. } => "multivariant",
            Target::MediaPlaylist { .. } => "playlist",
            Target::Media {
                kind: MediaKind::Init,
                ..
            } => "init",
            Target::Media {
                kind: MediaKind::Part,
                ..
            } => "part",
            Target::Media {
                kind: MediaKind::Segment,
                ..
            } => "segment",
            Target::Vod {
                kind: VodKind::Multivariant,
                ..
            } => "vod_multivariant",
            Target::Vod {
                kind: VodKind::Playlist,
                ..
            } => "vod_playlist",
            Target::Vod {
                kind: VodKind::Media,
                ..
            } => "vod_media",
        }
    }

    pub(crate) fn stream(&self) -> &'a str {
        match *self {
            Target::Multivariant { stream }
            | Target::MediaPlaylist { stream }
            | Target::Media { stream, .. }
            | Target::Vod { stream, .. } => stream,
        }
    }

    /// The entry point of a viewer: answered with a viewer JWT.
    pub(crate) fn is_entry(&self) -> bool {
        matches!(
            self,
            Target::Multivariant { .. }
                | Target::Vod {
                    kind: VodKind::Multivariant,
                    ..
                }
        )
    }
}

/// A recording id in a path: 1 to 64 of `A-Z a-z 0-9 -`.
fn is_recording_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A recording's media file: `NAME.m4s` or `NAME.mp4`, `NAME` of
/// `A-Z a-z 0-9 -` (the recorder's `init-gG-eE.mp4` and `s…-….m4s`).
fn is_recorded_media(file: &str) -> bool {
    let Some((name, extension)) = file.rsplit_once('.') else {
        return false;
    };
    matches!(extension, "m4s" | "mp4")
        && !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `/vod/NAME/ID/index.m3u8`, `/vod/NAME/ID/RENDITION/index.m3u8`,
/// `/vod/NAME/ID/RENDITION/FILE`.
fn parse_vod_path(rest: &str) -> Option<Target<'_>> {
    let mut parts = rest.split('/');
    let stream = parts.next()?;
    let id = parts.next()?;
    let third = parts.next()?;
    let fourth = parts.next();
    if parts.next().is_some() || !is_recording_id(id) {
        return None;
    }
    StreamName::new(stream).ok()?;
    let kind = match fourth {
        None if third == "index.m3u8" => VodKind::Multivariant,
        None => return None,
        Some(file) => {
            RenditionName::new(third).ok()?;
            if file == "index.m3u8" {
                VodKind::Playlist
            } else if is_recorded_media(file) {
                VodKind::Media
            } else {
                return None;
            }
        }
    };
    Some(Target::Vod { stream, kind })
}

/// Parses a request path (no query) against the origin's URL grammar:
/// `/live/NAME/index.m3u8`, `/live/NAME/FILE`, `/live/NAME/RUNG/FILE`. A
/// percent sign (an encoded slash or dot, or anything else encoded) or a
/// `..` is refused outright; names must pass the origin's own parsers.
pub(crate) fn parse_path(path: &str) -> Option<Target<'_>> {
    if path.contains('%') || path.contains("..") {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/vod/") {
        return parse_vod_path(rest);
    }
    let rest = path.strip_prefix("/live/")?;
    let mut parts = rest.split('/');
    let stream = parts.next()?;
    let second = parts.next()?;
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    StreamName::new(stream).ok()?;
    let file = match third {
        None => {
            if second == "index.m3u8" || second == DVR_MULTIVARIANT {
                return Some(Target::Multivariant { stream });
            }
            second
        }
        Some(file) => {
            RenditionName::new(second).ok()?;
            file
        }
    };
    if file == MEDIA_PLAYLIST_NAME || file == DVR_PLAYLIST {
        return Some(Target::MediaPlaylist { stream });
    }
    let kind = match ResourceName::parse(file).ok()? {
        ResourceName::Init { .. } => MediaKind::Init,
        ResourceName::Part(_) => MediaKind::Part,
        ResourceName::Segment { .. } => MediaKind::Segment,
    };
    Some(Target::Media { stream, kind })
}

/// The JWT in a request's `Authorization: Bearer` header, if any.
pub(crate) fn bearer_of<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(jwt::bearer)
}

/// Seconds since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The request handler every listener calls. Cheap to clone.
#[derive(Clone)]
pub struct Handler {
    inner: Arc<Inner>,
}

struct Inner {
    jwts: JwtVerifier,
    tokens: EdgeTokens,
    /// The rewriter (`templates.rewriter()`) and its templates per
    /// upstream body: a playlist is parsed once per version, not once per
    /// request.
    templates: crate::rewrite::TemplateCache,
    token_param: String,
    upstream: Arc<dyn Upstream>,
    metrics: EdgeMetrics,
    clock: Clock,
    viewers: Arc<crate::viewers::Viewers>,
    limits: Limits,
    /// `[edge] player_script_url`, if set.
    player_script: Option<String>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("jwts", &self.inner.jwts)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

impl Handler {
    /// Builds the handler from the edge's settings, the upstream it fetches
    /// from and its metrics.
    pub fn new(
        config: &EdgeConfig,
        upstream: Arc<dyn Upstream>,
        metrics: EdgeMetrics,
    ) -> Result<Self, EdgeConfigError> {
        Handler::with_clock(config, upstream, metrics, Arc::new(system_clock))
    }

    /// [`Handler::new`] reading the time from `clock` (Unix seconds).
    pub fn with_clock(
        config: &EdgeConfig,
        upstream: Arc<dyn Upstream>,
        metrics: EdgeMetrics,
        clock: Clock,
    ) -> Result<Self, EdgeConfigError> {
        Ok(Handler {
            inner: Arc::new(Inner {
                jwts: JwtVerifier::new(&config.jwt)?,
                tokens: EdgeTokens::new(&config.token)?,
                templates: crate::rewrite::TemplateCache::new(
                    Rewriter::new(&config.rewrite)?,
                    crate::rewrite::DEFAULT_TEMPLATE_CACHE_BYTES,
                ),
                token_param: config.rewrite.token_param.clone(),
                upstream,
                viewers: Arc::new(crate::viewers::Viewers::new(
                    &config.viewers,
                    &metrics,
                    clock.clone(),
                )?),
                limits: Limits::new(&config.limits, metrics.clone())?,
                player_script: config.player_script_url.clone(),
                metrics,
                clock,
            }),
        })
    }

    /// The edge's viewer counting (its periodic task is started by
    /// [`EdgeServer`](super::EdgeServer)).
    pub fn viewers(&self) -> &Arc<crate::viewers::Viewers> {
        &self.inner.viewers
    }

    /// Answers one request with the whole body (collected from the
    /// stream [`Handler::serve`] gives; a broken stream gives what came).
    pub async fn handle(&self, protocol: Protocol, request: Request<()>) -> Response<Bytes> {
        let (mut parts, body) = self.serve(protocol, request).await.into_parts();
        let body = match body {
            ResponseBody::Full(bytes) => bytes,
            ResponseBody::Stream(mut stream) => {
                let mut whole = Vec::new();
                while let Some(Ok(chunk)) = stream.next().await {
                    whole.extend_from_slice(&chunk);
                }
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, whole.len().into());
                Bytes::from(whole)
            }
        };
        Response::from_parts(parts, body)
    }

    /// Answers one request; media comes as the upstream passes it on (a
    /// part still being written: each chunk as the origin writes it). The
    /// body of `request` is ignored (the edge serves GET, HEAD and CORS
    /// preflights only).
    pub async fn serve(&self, protocol: Protocol, request: Request<()>) -> Response<ResponseBody> {
        let path = request.uri().path();
        let target = parse_path(path);
        let kind = match (&target, request.method()) {
            (_, &Method::OPTIONS) => "preflight",
            (Some(t), _) => t.kind(),
            (None, _) => "other",
        };
        let span = debug_span!(
            "edge_request",
            protocol = protocol.label(),
            kind,
            stream = target.as_ref().map(|t| t.stream()).unwrap_or(""),
        );
        // Preflights and health checks are never limited.
        let limited = (request.method() != Method::OPTIONS && path != "/healthz")
            .then(|| {
                let inner = &self.inner;
                inner.limits.check(
                    &request,
                    target,
                    &inner.tokens,
                    &inner.token_param,
                    (inner.clock)(),
                    tokio::time::Instant::now().into_std(),
                )
            })
            .flatten();
        let mut response = match limited {
            Some(refusal) => full(refusal),
            None => self.respond(&request, target).instrument(span).await,
        };
        let length = match response.body() {
            ResponseBody::Full(bytes) => Some(bytes.len()),
            ResponseBody::Stream(_) => None,
        };
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        // On every response, media, playlists and refusals alike: each
        // carries the type the edge chose.
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static(NOSNIFF),
        );
        if let Some(length) = length {
            headers.insert(header::CONTENT_LENGTH, length.into());
        }
        if request.method() == Method::HEAD {
            *response.body_mut() = ResponseBody::Full(Bytes::new());
        }
        self.inner
            .metrics
            .requests
            .with_label_values(&[protocol.label(), kind, response.status().as_str()])
            .inc();
        response
    }

    async fn respond(
        &self,
        request: &Request<()>,
        target: Option<Target<'_>>,
    ) -> Response<ResponseBody> {
        match *request.method() {
            Method::OPTIONS => return full(preflight()),
            Method::GET | Method::HEAD => {}
            _ => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                response.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                return full(response);
            }
        }
        let path = request.uri().path();
        if path == "/healthz" {
            return full(text(StatusCode::OK, "ok"));
        }
        if let Some(stream) = super::player::stream_of(path) {
            return full(super::player::page(
                stream,
                self.inner.player_script.as_deref(),
            ));
        }
        let Some(target) = target else {
            return full(text(StatusCode::NOT_FOUND, "not found"));
        };
        let inner = &self.inner;
        // The token the viewer presented: the first `token` parameter.
        let presented = request
            .uri()
            .query()
            .and_then(|query| query_param(query, &inner.token_param));
        let now = (inner.clock)();
        let stream = target.stream();
        // The viewer (JWT `sub`, and the JWT) of a Multivariant Playlist
        // request, whose answer starts a session.
        let mut mint = None;
        // The token to sign into a playlist's URIs, if this is a playlist.
        let sign_with = match target {
            _ if target.is_entry() => {
                let Some(presented) = bearer_of(request).or(presented) else {
                    return full(refuse(
                        JwtError::Missing.status(),
                        JwtError::Missing.reason(),
                    ));
                };
                match inner.jwts.verify(presented, stream, now) {
                    Ok(viewer) => {
                        mint = Some((viewer.subject.clone(), presented));
                        let session = inner.viewers.new_session();
                        let tokens = &inner.tokens;
                        Some(tokens.sign_session(stream, &viewer, session.as_ref(), now))
                    }
                    Err(e) => {
                        debug!(reason = e.reason(), "viewer JWT refused");
                        return full(refuse(e.status(), e.reason()));
                    }
                }
            }
            _ => {
                let claims = match inner.tokens.verify(presented.unwrap_or(""), stream, now) {
                    Ok(claims) => claims,
                    Err(e) => {
                        debug!(reason = e.reason(), "edge token refused");
                        return full(refuse(e.status(), e.reason()));
                    }
                };
                inner.viewers.seen(stream, claims.session.as_ref(), now);
                matches!(
                    target,
                    Target::MediaPlaylist { .. }
                        | Target::Vod {
                            kind: VodKind::Playlist,
                            ..
                        }
                )
                .then(|| inner.tokens.sign_media(stream, &claims, now))
            }
        };
        // Only the delivery directives the resource understands go
        // upstream, in one spelling (the coalescing key): never the token,
        // never a parameter the origin would ignore but a cache would key
        // on. Directives that do not parse are refused here rather than
        // forwarded (after the token check, so that a request without a
        // valid token learns nothing about them).
        let upstream_query = match normalize_query(path, request.uri().query()) {
            Ok(query) => query,
            Err(e) => {
                debug!(reason = %e, "delivery directives refused");
                return full(text(StatusCode::BAD_REQUEST, &e.to_string()));
            }
        };
        let upstream_request = UpstreamRequest {
            path: path.to_owned(),
            query: upstream_query,
        };
        if let Target::Vod {
            kind: VodKind::Media,
            ..
        } = target
        {
            // A recording's media: whole objects, so byte ranges.
            let range = request
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok());
            return match inner.upstream.fetch(upstream_request).await {
                Ok(upstream) if upstream.status == 200 => {
                    full(recorded_media(upstream, path, range))
                }
                Ok(upstream) => full(upstream_error(&upstream)),
                Err(e) => full(self.upstream_failed(&e, path)),
            };
        }
        let Some(token) = sign_with else {
            // Media: passed on as it arrives.
            return match inner.upstream.fetch_stream(upstream_request).await {
                Ok(upstream) if upstream.status == 200 => media_stream(upstream, path),
                Ok(upstream) => full(upstream_error(&collect_error(upstream).await)),
                Err(e) => full(self.upstream_failed(&e, path)),
            };
        };
        let upstream = match inner.upstream.fetch(upstream_request).await {
            Ok(upstream) => upstream,
            Err(e) => return full(self.upstream_failed(&e, path)),
        };
        if upstream.status != 200 {
            return full(upstream_error(&upstream));
        }
        // Each session handed out counts as a viewer: one JWT may not start
        // them without end. Only answers that hand one out count (a player
        // polling for a stream that is not live yet uses up nothing).
        if let Some((subject, jwt)) = mint
            && let Some(refusal) = inner.limits.mint_session(
                subject.as_deref(),
                jwt,
                tokio::time::Instant::now().into_std(),
            )
        {
            return full(refusal);
        }
        full(match inner.templates.rewrite(&upstream.body, &token) {
            Ok(body) => {
                let mut response = Response::new(body);
                let headers = response.headers_mut();
                // Room for these two and what `serve` adds (CORS, length):
                // the map is sized once, not grown per insert.
                headers.reserve(8);
                headers.insert(header::CONTENT_TYPE, content_type_of(path));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
                response
            }
            Err(e) => {
                warn!(error = %e, path, "upstream playlist not rewritable");
                inner
                    .metrics
                    .upstream_errors
                    .with_label_values(&["bad_playlist"])
                    .inc();
                text(StatusCode::BAD_GATEWAY, "bad playlist from upstream")
            }
        })
    }

    /// The answer when the upstream gave none, counted by reason.
    fn upstream_failed(&self, e: &UpstreamError, path: &str) -> Response<Bytes> {
        {
            {
                let (label, status, reason) = match e {
                    UpstreamError::Timeout => {
                        ("timeout", StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
                    }
                    UpstreamError::CircuitOpen(_) => (
                        "circuit_open",
                        StatusCode::BAD_GATEWAY,
                        "upstream unavailable",
                    ),
                    _ => (
                        "unreachable",
                        StatusCode::BAD_GATEWAY,
                        "upstream unreachable",
                    ),
                };
                warn!(error = %e, path, "upstream fetch failed");
                self.inner
                    .metrics
                    .upstream_errors
                    .with_label_values(&[label])
                    .inc();
                text(status, reason)
            }
        }
    }
}

/// The start of an upstream refusal's body (enough for its short reason),
/// as a whole response for [`upstream_error`].
async fn collect_error(mut upstream: StreamingResponse) -> UpstreamResponse {
    let mut body = Vec::new();
    while body.len() <= MAX_PASSED_ERROR_BODY {
        match upstream.body.next().await {
            Some(Ok(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    UpstreamResponse {
        status: upstream.status,
        headers: upstream.headers,
        body: Bytes::from(body),
    }
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A part, segment or init segment at `path`. Complete objects are
/// immutable; the origin's own `Cache-Control` wins when it says otherwise
/// (a part it was still writing). The `Content-Type` is the edge's, from
/// the file name ([`content_type_of`]), whatever the origin sent.
fn media_stream(upstream: StreamingResponse, path: &str) -> Response<ResponseBody> {
    let content_type = content_type_of(path);
    let cache = match header_of(&upstream.headers, "cache-control") {
        None => HeaderValue::from_static(IMMUTABLE),
        Some(v) if v.contains("immutable") => HeaderValue::from_static(IMMUTABLE),
        Some(v) => HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(NO_CACHE)),
    };
    let mut response = Response::new(ResponseBody::Stream(upstream.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, cache);
    response
}

/// A recording's segment or init segment, whole or the byte range asked
/// for ([`super::range`]); recordings never change, so they are immutable.
fn recorded_media(upstream: UpstreamResponse, path: &str, range: Option<&str>) -> Response<Bytes> {
    use super::range::{RangeAnswer, answer};
    let len = upstream.body.len() as u64;
    let mut response = match answer(range, len) {
        RangeAnswer::Whole => Response::new(upstream.body),
        RangeAnswer::Part { start, end } => {
            // `answer` keeps start <= end < len.
            let mut response = Response::new(upstream.body.slice(start as usize..=end as usize));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        RangeAnswer::Unsatisfiable => {
            let mut response = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type_of(path));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}

/// The origin's refusal, passed on: its status (a redirect or an
/// informational status becomes 502) and its short text reason.
fn upstream_error(upstream: &UpstreamResponse) -> Response<Bytes> {
    let status = StatusCode::from_u16(upstream.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body = std::str::from_utf8(&upstream.body)
        .ok()
        .map(str::trim)
        .filter(|t| {
            !t.is_empty()
                && t.len() <= MAX_PASSED_ERROR_BODY
                && t.chars().all(|c| c == ' ' || c.is_ascii_graphic())
        });
    match body {
        Some(body) => text(status, body),
        None => text(
            status,
            status.canonical_reason().unwrap_or("upstream error"),
        ),
    }
}

fn refuse(status: u16, reason: &str) -> Response<Bytes> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = text(status, reason);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ferrocast\""),
        );
    }
    response
}

fn text(status: StatusCode, reason: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(format!("{reason}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    response
}

/// CORS preflight: a player sending `Authorization` asks first.
fn preflight() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Range"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use futures::FutureExt;
    use futures::future::BoxFuture;

    use super::*;

    const NOW: u64 = 1_750_000_000;
    const HS: &str = "unit-test-hs256-secret-unit-test-hs256";

    /// Answers from a table and records what it was asked.
    struct Fake {
        answers: Vec<(&'static str, Result<UpstreamResponse, UpstreamError>)>,
        asked: Mutex<Vec<UpstreamRequest>>,
    }

    impl Upstream for Fake {
        fn fetch(
            &self,
            req: UpstreamRequest,
        ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
            let answer = self
                .answers
                .iter()
                .find(|(suffix, _)| req.path.ends_with(suffix))
                .map(|(_, a)| a.clone())
                .unwrap_or(Ok(ok(404, &[], "no such stream\n")));
            self.asked.lock().unwrap().push(req);
            async move { answer }.boxed()
        }
    }

    fn ok(status: u16, headers: &[(&str, &str)], body: &str) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Bytes::from(body.to_owned()),
        }
    }

    fn config() -> EdgeConfig {
        toml::from_str(&format!(
            r#"
            [jwt]
            audience = "a"
            [[jwt.keys]]
            kid = "k"
            algorithm = "HS256"
            secret = "{HS}"
            [token]
            keys = [{{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }}]
            "#
        ))
        .unwrap()
    }

    fn handler(
        answers: Vec<(&'static str, Result<UpstreamResponse, UpstreamError>)>,
    ) -> (Handler, Arc<Fake>) {
        let fake = Arc::new(Fake {
            answers,
            asked: Mutex::new(Vec::new()),
        });
        let handler = Handler::with_clock(
            &config(),
            fake.clone(),
            EdgeMetrics::new().unwrap(),
            Arc::new(|| NOW),
        )
        .unwrap();
        (handler, fake)
    }

    fn jwt(streams: &[&str]) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k".into());
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({"aud": "a", "exp": NOW + 3600, "streams": streams}),
            &jsonwebtoken::EncodingKey::from_secret(HS.as_bytes()),
        )
        .unwrap()
    }

    /// A viewer JWT for `streams`, with `sub` if given, expiring `exp_in`
    /// seconds from `NOW`.
    fn jwt_of(sub: Option<&str>, streams: &[&str], exp_in: u64) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k".into());
        let mut claims = serde_json::json!({"aud": "a", "exp": NOW + exp_in, "streams": streams});
        if let Some(sub) = sub {
            claims["sub"] = sub.into();
        }
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(HS.as_bytes()),
        )
        .unwrap()
    }

    /// One JWT (or one `sub` over several JWTs) may start at most
    /// `sessions_per_viewer` sessions: a burst of 20, then one per 6 s.
    #[tokio::test(start_paused = true)]
    async fn one_viewer_cannot_mint_sessions_without_end() {
        let (handler, fake) = handler(vec![("cam/index.m3u8", Ok(ok(200, &[], MULTIVARIANT)))]);
        let index = |token: &str| format!("/live/cam/index.m3u8?token={token}");
        let alice = jwt_of(Some("alice"), &["cam"], 3600);
        for _ in 0..20 {
            assert_eq!(get(&handler, &index(&alice)).await.status(), 200);
        }
        let refused = get(&handler, &index(&alice)).await;
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "6");
        assert_eq!(&refused.body()[..], b"too many sessions for this viewer\n");
        // Another JWT of the same viewer draws from the same bucket.
        let alice_again = jwt_of(Some("alice"), &["cam"], 7200);
        assert_eq!(get(&handler, &index(&alice_again)).await.status(), 429);
        // Other viewers, and a JWT without `sub` (counted by itself), are
        // not affected.
        let bob = jwt_of(Some("bob"), &["cam"], 3600);
        assert_eq!(get(&handler, &index(&bob)).await.status(), 200);
        let anonymous = jwt_of(None, &["cam"], 3600);
        assert_eq!(get(&handler, &index(&anonymous)).await.status(), 200);
        // The bucket refills at the configured rate.
        tokio::time::advance(std::time::Duration::from_secs(6)).await;
        assert_eq!(get(&handler, &index(&alice)).await.status(), 200);
        assert_eq!(get(&handler, &index(&alice)).await.status(), 429);
        assert_eq!(
            handler
                .inner
                .metrics
                .rate_limited
                .with_label_values(&["viewer_sessions"])
                .get(),
            3
        );
        // A request for a stream that is not live hands out no session and
        // uses up nothing.
        let none_live = jwt_of(Some("carol"), &["off"], 3600);
        for _ in 0..30 {
            let answer = get(&handler, &format!("/live/off/index.m3u8?token={none_live}")).await;
            assert_eq!(answer.status(), 404);
        }
        let carol = jwt_of(Some("carol"), &["cam"], 3600);
        assert_eq!(get(&handler, &index(&carol)).await.status(), 200);
        drop(fake);
    }

    async fn get(handler: &Handler, uri: &str) -> Response<Bytes> {
        handler
            .handle(Protocol::Http2, Request::get(uri).body(()).unwrap())
            .await
    }

    #[test]
    fn paths_follow_the_origin_grammar() {
        assert_eq!(
            parse_path("/live/cam/index.m3u8"),
            Some(Target::Multivariant { stream: "cam" })
        );
        assert_eq!(
            parse_path("/live/cam/720p/stream.m3u8"),
            Some(Target::MediaPlaylist { stream: "cam" })
        );
        assert_eq!(
            parse_path("/live/cam/part12.3.m4s"),
            Some(Target::Media {
                stream: "cam",
                kind: MediaKind::Part
            })
        );
        assert_eq!(
            parse_path("/live/cam/source/seg4.m4s").map(|t| t.kind()),
            Some("segment")
        );
        for bad in [
            "/live/cam/../stream.m3u8",
            "/live/../cam/stream.m3u8",
            "/live/cam/..%2Fstream.m3u8",
            "/live/cam%2F720p/stream.m3u8",
            "/live/cam/720p/index.m3u8",
            "/live/.cam/stream.m3u8",
            "/live/cam/part01.3.m4s",
            "/live/cam/a/b/stream.m3u8",
            "/live/cam/",
            "/live/cam",
            "/live//stream.m3u8",
            "/other/cam/stream.m3u8",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn dvr_playlists_are_playlists() {
        assert_eq!(
            parse_path("/live/cam/index-dvr.m3u8"),
            Some(Target::Multivariant { stream: "cam" })
        );
        for path in ["/live/cam/dvr.m3u8", "/live/cam/720p/dvr.m3u8"] {
            assert_eq!(
                parse_path(path),
                Some(Target::MediaPlaylist { stream: "cam" })
            );
        }
        assert_eq!(parse_path("/live/cam/720p/index-dvr.m3u8"), None);
    }

    #[test]
    fn recordings_have_their_own_grammar() {
        let vod = |kind| {
            Some(Target::Vod {
                stream: "cam",
                kind,
            })
        };
        let id = "20261206T023743Z-1a2b3c4d";
        assert_eq!(
            parse_path(&format!("/vod/cam/{id}/index.m3u8")),
            vod(VodKind::Multivariant)
        );
        assert_eq!(
            parse_path(&format!("/vod/cam/{id}/720p/index.m3u8")),
            vod(VodKind::Playlist)
        );
        assert_eq!(
            parse_path(&format!("/vod/cam/{id}/720p/init-g0-e0.mp4")),
            vod(VodKind::Media)
        );
        assert_eq!(
            parse_path(&format!(
                "/vod/cam/{id}/source/s0000000001-e0-g0-d180000-b1-t1.m4s"
            )),
            vod(VodKind::Media)
        );
        for path in [
            "/vod/cam/index.m3u8",
            "/vod/cam/id/720p/tracks-g0-e0.json",
            "/vod/cam/id/recording.json",
            "/vod/cam/id/720p/x.mp4/more",
            "/vod/cam/id_x/index.m3u8",
            "/vod/cam/../index.m3u8",
            "/vod/.cam/id/index.m3u8",
            "/vod/cam/id/../720p/index.m3u8",
            "/vod/cam/id/720p/a.b.m4s",
            "/vod/cam/id/720p/.m4s",
            "/vod/cam/id/stream.m3u8",
        ] {
            assert_eq!(parse_path(path), None, "{path}");
        }
    }

    #[test]
    fn content_types_come_from_the_file_name() {
        for (path, expected) in [
            ("/live/cam/index.m3u8", PLAYLIST_TYPE),
            ("/live/cam/720p/stream.m3u8", PLAYLIST_TYPE),
            ("/live/cam/part3.1.m4s", SEGMENT_TYPE),
            ("/live/cam/seg3.m4s", SEGMENT_TYPE),
            ("/live/cam/720p/init0.mp4", MP4_TYPE),
            ("/live/cam/x.html", "application/octet-stream"),
            ("/live/cam/noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type_of(path), expected, "{path}");
        }
    }

    const MULTIVARIANT: &str = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nstream.m3u8\n";
    const MEDIA: &str = "#EXTM3U\n#EXT-X-MAP:URI=\"init0.mp4\"\n#EXTINF:1.0,\nseg1.m4s\n";

    #[tokio::test]
    async fn a_session_from_a_jwt_then_media_tokens() {
        let (handler, fake) = handler(vec![
            ("index.m3u8", Ok(ok(200, &[], MULTIVARIANT))),
            ("stream.m3u8", Ok(ok(200, &[], MEDIA))),
            (
                "seg1.m4s",
                Ok(ok(
                    200,
                    &[("cache-control", "public, max-age=3600, immutable")],
                    "SEG",
                )),
            ),
            (
                "part2.0.m4s",
                Ok(ok(200, &[("Cache-Control", "no-cache")], "PART")),
            ),
        ]);
        let response = get(
            &handler,
            &format!("/live/cam/index.m3u8?token={}", jwt(&["cam"])),
        )
        .await;
        assert_eq!(response.status(), 200);
        let body = std::str::from_utf8(response.body()).unwrap().to_owned();
        let session = body
            .lines()
            .nth(2)
            .unwrap()
            .strip_prefix("stream.m3u8?token=")
            .unwrap();

        let response = get(
            &handler,
            &format!("/live/cam/stream.m3u8?_HLS_msn=1&token={session}"),
        )
        .await;
        assert_eq!(response.status(), 200);
        let body = std::str::from_utf8(response.body()).unwrap();
        let media = body
            .lines()
            .nth(3)
            .unwrap()
            .strip_prefix("seg1.m4s?token=")
            .unwrap();
        assert_ne!(media, session);
        let asked = fake.asked.lock().unwrap().clone();
        assert_eq!(asked[1].path, "/live/cam/stream.m3u8");
        assert_eq!(asked[1].query.as_deref(), Some("_HLS_msn=1"));

        let response = get(&handler, &format!("/live/cam/seg1.m4s?token={media}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], IMMUTABLE);
        assert_eq!(response.headers()["content-length"], "3");
        // A part the origin was still writing keeps the origin's policy.
        let response = get(&handler, &format!("/live/cam/part2.0.m4s?token={media}")).await;
        assert_eq!(response.headers()["cache-control"], "no-cache");
        // The token is bound to the stream.
        let response = get(&handler, &format!("/live/news/seg1.m4s?token={media}")).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            fake.asked.lock().unwrap().len(),
            4,
            "refused before upstream"
        );
    }

    #[tokio::test]
    async fn only_understood_directives_go_upstream_in_one_spelling() {
        let (handler, fake) = handler(vec![
            ("stream.m3u8", Ok(ok(200, &[], MEDIA))),
            ("index.m3u8", Ok(ok(200, &[], MULTIVARIANT))),
            ("seg1.m4s", Ok(ok(200, &[], "SEG"))),
        ]);
        let tokens = EdgeTokens::new(&config().token).unwrap();
        let token = tokens.sign("cam", NOW + 60, None);
        let jwt = jwt(&["cam"]);
        for (uri, query) in [
            (
                format!("/live/cam/stream.m3u8?x=1&_HLS_part=02&token={token}&_HLS_msn=007"),
                Some("_HLS_msn=7&_HLS_part=2"),
            ),
            (
                format!("/live/cam/stream.m3u8?_HLS_skip=v2&_HLS_foo=1&token={token}"),
                Some("_HLS_skip=v2"),
            ),
            (
                format!("/live/cam/seg1.m4s?_HLS_msn=x&_HLS_skip=YES&token={token}"),
                None,
            ),
            (
                format!("/live/cam/index.m3u8?_HLS_msn=1&_HLS_skip=YES&token={jwt}"),
                None,
            ),
        ] {
            let response = get(&handler, &uri).await;
            assert_eq!(response.status(), 200, "{uri}");
            let asked = fake.asked.lock().unwrap().pop().unwrap();
            assert_eq!(asked.query.as_deref(), query, "{uri}");
        }
        let response = get(
            &handler,
            &format!("/live/cam/stream.m3u8?_HLS_msn=1&_HLS_msn=2&token={token}"),
        )
        .await;
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(fake.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn refusals_and_upstream_failures() {
        let (handler, fake) = handler(vec![
            ("index.m3u8", Ok(ok(200, &[], "not a playlist"))),
            ("seg1.m4s", Err(UpstreamError::Timeout)),
            (
                "seg2.m4s",
                Err(UpstreamError::Unreachable("refused".into())),
            ),
            ("seg3.m4s", Err(UpstreamError::CircuitOpen("origin".into()))),
        ]);
        let response = get(&handler, "/live/cam/index.m3u8").await;
        assert_eq!(response.status(), 401);
        let forbidden = jwt(&["news"]);
        let response = get(&handler, &format!("/live/cam/index.m3u8?token={forbidden}")).await;
        assert_eq!(response.status(), 403);
        assert!(
            !std::str::from_utf8(response.body())
                .unwrap()
                .contains(&forbidden)
        );
        let response = get(
            &handler,
            &format!("/live/cam/index.m3u8?token={}", jwt(&["cam"])),
        )
        .await;
        assert_eq!(response.status(), 502);

        let tokens = EdgeTokens::new(&config().token).unwrap();
        let token = tokens.sign("cam", NOW + 60, None);
        for (file, status) in [
            ("seg1.m4s", 504),
            ("seg2.m4s", 502),
            ("seg3.m4s", 502),
            ("seg4.m4s", 404),
        ] {
            let response = get(&handler, &format!("/live/cam/{file}?token={token}")).await;
            assert_eq!(response.status(), status, "{file}");
        }
        let response = get(&handler, &format!("/live/cam/seg5.txt?token={token}")).await;
        assert_eq!(response.status(), 404);
        assert_eq!(
            fake.asked.lock().unwrap().len(),
            5,
            "bad paths never go upstream"
        );
        let response = handler
            .handle(
                Protocol::Http1,
                Request::post("/live/cam/seg1.m4s").body(()).unwrap(),
            )
            .await;
        assert_eq!(response.status(), 405);
    }
}
