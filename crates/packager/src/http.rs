//! The HTTP origin: playlists, init segments, parts and segments under
//! `/live/NAME/`.
//!
//! | path | what |
//! |---|---|
//! | `/live/NAME/index.m3u8` | multivariant playlist: every listed rendition |
//! | `/live/NAME/stream.m3u8` | the source rendition's LL-HLS media playlist (blocking reload, delta updates, rendition reports) |
//! | `/live/NAME/initN.mp4` | its CMAF init segment, generation N |
//! | `/live/NAME/partM.I.m4s` | its part I of segment M, streamed as it is written |
//! | `/live/NAME/segM.m4s` | its segment M |
//! | `/live/NAME/RUNG/{stream.m3u8,initN.mp4,partM.I.m4s,segM.m4s}` | the same for rendition RUNG (`source` names the source rendition) |
//! | `/live/NAME/index-dvr.m3u8`, `/live/NAME[/RUNG]/dvr.m3u8` | with a recorder that keeps a DVR window: the multivariant and media playlists of the recorded window ([`crate::dvr`]) |
//!
//! Every name from the URL is validated against a strict grammar before it
//! is looked up (a rendition name that is not `[A-Za-z0-9._-]{1,32}`, not
//! starting with `.`, is a 404); nothing from a URL reaches a file system.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use ferrocast_hls::{
    AudioRendition, BlockTarget, BlockingStatus, PartRef, PlaylistRequest, RenderOptions,
    RenditionName, RenditionReport, ResourceName, ResourceStatus, Variant,
};
use ferrocast_media::{StreamName, TrackKind};
use tokio::time::Instant;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::cors::CorsLayer;
use tracing::warn;

use crate::dvr::{DVR_MULTIVARIANT, DVR_PLAYLIST};
use crate::origin::{Origin, RenditionPlan, StreamGroup};
use crate::stream::{Check, LiveStream};

/// Media playlist name of every (muxed) rendition.
pub const MEDIA_PLAYLIST: &str = ferrocast_hls::MEDIA_PLAYLIST_NAME;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// The origin's router.
pub fn router(origin: Origin) -> Router {
    // Compress playlists only: media is already compressed, and a gzip
    // encoder would hold back a part that is being streamed.
    let compress = SizeAbove::new(32).and(PlaylistsOnly);
    let metrics = origin.metrics().clone();
    Router::new()
        .route("/live/{name}/{file}", get(live_file))
        .route("/live/{name}/{rendition}/{file}", get(rendition_file))
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
        "index.m3u8" | DVR_MULTIVARIANT => "multivariant",
        MEDIA_PLAYLIST | DVR_PLAYLIST => "playlist",
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

pub use crate::listener::{HttpServer, serve, serve_with_limits};

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
    let (name, group) = find_group(&origin, &name)?;
    let deadline = Instant::now() + origin.config().max_hold;
    if file == "index.m3u8" || file == DVR_MULTIVARIANT {
        let plan = origin.plan(&name);
        let all_deadline = deadline.min(group.started() + origin.config().rendition_wait);
        if file == DVR_MULTIVARIANT {
            return dvr_multivariant(&group, &plan, all_deadline, deadline).await;
        }
        return multivariant(&group, &plan, all_deadline, deadline).await;
    }
    let plan = origin.plan(&name);
    rendition_resource(
        group,
        RenditionName::source(),
        &plan,
        &file,
        query,
        deadline,
    )
    .await
}

async fn rendition_file(
    State(origin): State<Origin>,
    Path((name, rendition, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    // Validated before anything is looked up with it.
    let rendition =
        RenditionName::new(&rendition).map_err(|_| HttpError::NotFound("no such rendition"))?;
    let (name, group) = find_group(&origin, &name)?;
    let deadline = Instant::now() + origin.config().max_hold;
    let plan = origin.plan(&name);
    rendition_resource(group, rendition, &plan, &file, query, deadline).await
}

fn find_group(origin: &Origin, name: &str) -> Result<(StreamName, Arc<StreamGroup>), HttpError> {
    let name = StreamName::new(name).map_err(|_| HttpError::NotFound("no such stream"))?;
    let group = origin
        .group(&name)
        .ok_or(HttpError::NotFound("no such stream"))?;
    Ok((name, group))
}

async fn rendition_resource(
    group: Arc<StreamGroup>,
    rendition: RenditionName,
    plan: &RenditionPlan,
    file: &str,
    query: Option<String>,
    deadline: Instant,
) -> Result<Response, HttpError> {
    let stream = group
        .rendition(&rendition)
        .ok_or(if rendition.is_source() {
            HttpError::NotFound("no such stream")
        } else {
            HttpError::NotFound("no such rendition")
        })?;
    match file {
        MEDIA_PLAYLIST => media_playlist(&group, &stream, plan, query.as_deref(), deadline).await,
        DVR_PLAYLIST => dvr_playlist(&stream, query.as_deref()),
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

/// One rendition's `EXT-X-STREAM-INF`, once it has media.
fn variant_of(stream: &LiveStream) -> Option<Variant> {
    let a = stream.lock();
    let tracks = a.tracks()?;
    a.window.last_part()?;
    let bitrate = a.bitrate();
    let codecs: Vec<String> = tracks.iter().map(|t| t.params.codec_string()).collect();
    let video = tracks.iter().find(|t| t.kind() == TrackKind::Video);
    Some(Variant {
        uri: stream.rendition_name().playlist_uri(),
        bandwidth: bitrate.peak.max(1),
        average_bandwidth: Some(bitrate.average.max(1)),
        codecs: codecs.join(","),
        resolution: video.and_then(|t| t.params.resolution()),
        frame_rate: video.and_then(|t| t.params.frame_rate()),
    })
}

/// The listed renditions that have media, highest bandwidth first, and
/// whether every expected one is among them. With the audio in a rendition
/// of its own, each variant counts it (CODECS, BANDWIDTH) and the audio
/// rendition comes with them; it is expected once it has tracks (a stream
/// with video and audio), and the variants are complete only with it.
fn variants(
    renditions: &[Arc<LiveStream>],
    plan: &RenditionPlan,
) -> (Vec<Variant>, Option<AudioRendition>, bool) {
    let mut expected: Vec<RenditionName> = plan.rungs.clone();
    if plan.source_listed {
        expected.push(RenditionName::source());
    }
    let mut ready = Vec::new();
    let mut ready_names = Vec::new();
    let mut audio = None;
    for stream in renditions {
        let rendition = stream.rendition_name();
        if rendition.is_audio() {
            if stream.lock().tracks().is_some() {
                expected.push(rendition.clone());
                if let Some(variant) = variant_of(stream) {
                    audio = Some((variant, audio_rendition(stream)));
                    ready_names.push(rendition.clone());
                }
            }
            continue;
        }
        if !plan.lists(rendition) {
            continue;
        }
        if !expected.contains(rendition) {
            // Not announced, but here: expected too.
            expected.push(rendition.clone());
        }
        if let Some(variant) = variant_of(stream) {
            ready.push(variant);
            ready_names.push(rendition.clone());
        }
    }
    let complete = expected.iter().all(|e| ready_names.contains(e));
    let audio = audio.map(|(media, rendition)| {
        for variant in &mut ready {
            variant.add_audio(&media);
        }
        rendition
    });
    // RFC 8216bis §6.2.4 leaves the order to the server; players start with
    // the first one, so the best goes first.
    ready.sort_by(|a, b| {
        b.bandwidth
            .cmp(&a.bandwidth)
            .then_with(|| a.uri.cmp(&b.uri))
    });
    (ready, audio, complete)
}

/// The `EXT-X-MEDIA` of the audio rendition.
fn audio_rendition(stream: &LiveStream) -> AudioRendition {
    let channels = stream
        .lock()
        .tracks()
        .and_then(|tracks| tracks.iter().find_map(|t| t.params.channels()));
    AudioRendition {
        group_id: ferrocast_hls::AUDIO_GROUP_ID.to_owned(),
        uri: stream.rendition_name().playlist_uri(),
        channels,
    }
}

async fn multivariant(
    group: &StreamGroup,
    plan: &RenditionPlan,
    all_deadline: Instant,
    deadline: Instant,
) -> Result<Response, HttpError> {
    // A player may ask as the publisher connects: hold until every expected
    // rendition has a part, but only within the stream's first moments
    // (`all_deadline`); then take what has media, for as long as a request
    // may be held.
    let complete = group
        .wait_for(all_deadline, |renditions| {
            match variants(renditions, plan) {
                (ready, audio, true) if !ready.is_empty() => Check::Done((ready, audio)),
                _ => Check::Wait,
            }
        })
        .await;
    let (ready, audio) = match complete {
        Ok(ready) => ready,
        Err(_) => group
            .wait_for(deadline, |renditions| {
                let (ready, audio, _) = variants(renditions, plan);
                if !ready.is_empty() {
                    return Check::Done((ready, audio));
                }
                // Nothing listed has media: an unlisted source is better
                // than no playlist at all.
                match renditions
                    .iter()
                    .find(|r| r.rendition_name().is_source())
                    .and_then(|r| variant_of(r))
                {
                    Some(source) => Check::Done((vec![source], None)),
                    None => Check::Wait,
                }
            })
            .await
            .map_err(|_| HttpError::Unavailable("stream has no media yet"))?,
    };
    let text = ferrocast_hls::render_multivariant_with_audio(&ready, audio.as_ref(), true)
        .map_err(|e| {
            warn!(error = %e, "cannot render multivariant playlist");
            HttpError::Unavailable("stream description not available")
        })?;
    Ok(playlist_response(text))
}

/// `EXT-X-RENDITION-REPORT`s for the other listed renditions of `stream`'s
/// group. Locks each of them in turn, never two at once.
fn rendition_reports(
    group: &StreamGroup,
    stream: &LiveStream,
    plan: &RenditionPlan,
) -> Vec<RenditionReport> {
    let own = stream.rendition_name();
    // Reports name the renditions a player may switch to: the other video
    // renditions; the audio rendition has none.
    group
        .renditions()
        .iter()
        .filter(|r| {
            let name = r.rendition_name();
            name != own && plan.lists(name) && !name.is_audio() && !own.is_audio()
        })
        .filter_map(|r| {
            let last = r.lock().window.last_part();
            RenditionReport::new(&own.uri_of(r.rendition_name()), last).ok()
        })
        .collect()
}

async fn media_playlist(
    group: &StreamGroup,
    stream: &LiveStream,
    plan: &RenditionPlan,
    query: Option<&str>,
    deadline: Instant,
) -> Result<Response, HttpError> {
    let request = PlaylistRequest::from_query(query.unwrap_or(""))
        .map_err(|_| HttpError::BadRequest("bad _HLS_msn/_HLS_part/_HLS_skip"))?;
    stream
        .wait_for(deadline, |a| {
            if a.tracks().is_none() || a.window.last_part().is_none() {
                return Check::Wait;
            }
            let status = match request.block {
                Some(target) => a.window.blocking_status(target),
                None => BlockingStatus::Ready,
            };
            match status {
                BlockingStatus::Ready => Check::Done(Ok(())),
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
    if let Some(target) = request.block {
        pace_segment_close(stream, target, deadline).await;
    }
    // The other renditions' state, taken before this one's lock (never two
    // rendition locks at once); the window only moves forward, so it still
    // satisfies the request when rendered below.
    let reports = rendition_reports(group, stream, plan);
    let options = RenderOptions {
        skip: request.skip.wants_delta(),
        rendition_reports: &reports,
    };
    // A blocking request gets the playlist as of the part that satisfied
    // it, one part per reload (`LiveWindow::as_of`): the answer to a given
    // `_HLS_msn`/`_HLS_part` is the same whenever it is asked, so the
    // edge's coalescing of equal requests hands every viewer the same one.
    let window = &stream.lock().window;
    let text = match request.block {
        Some(target) => window.render_for(target, &options),
        None => window.render(&options),
    };
    Ok(playlist_response(text))
}

/// Holds the answer to a blocking request that closes a segment (the part
/// that satisfies it starts the next one) until one part target after the
/// segment's last part was listed.
///
/// Why: media that reaches the packager in bursts (a transcoder's rung
/// behind a sender that batches its audio) can list a segment's last part
/// and the next segment's first part, which closes it, within a few
/// milliseconds. hls.js 1.7, still appending parts it loaded while the
/// segment was open, then takes the whole segment for buffered once it has
/// closed and never loads its last part: a hole, and a stall, seen in the
/// ABR browser test at start-up. The answer itself is the same whenever it
/// is given (`LiveWindow::as_of`); only its time moves, and only when the
/// two parts came closer together than a part's duration.
async fn pace_segment_close(stream: &LiveStream, target: BlockTarget, deadline: Instant) {
    let Some(index) = target.part else { return };
    let (answer, part_target) = {
        let a = stream.lock();
        let answer = a.window.first_part_from(PartRef {
            msn: target.msn,
            index,
        });
        (answer, a.window.config().part_target)
    };
    let Some(answer) = answer.filter(|p| p.index == 0 && p.msn > 0) else {
        return;
    };
    let Some(listed) = stream.last_part_listed_at(answer.msn - 1) else {
        return;
    };
    let part_target = Duration::from_millis(part_target.as_millis().max(0) as u64);
    let ready = (listed + part_target).min(deadline);
    if ready > Instant::now() {
        tokio::time::sleep_until(ready).await;
    }
}

/// A rendition's DVR playlist ([`crate::dvr`]): `404` when the stream
/// has no DVR, `503` until its first segment is recorded.
fn dvr_playlist(stream: &LiveStream, query: Option<&str>) -> Result<Response, HttpError> {
    let request = PlaylistRequest::from_query(query.unwrap_or(""))
        .map_err(|_| HttpError::BadRequest("bad _HLS_msn/_HLS_part/_HLS_skip"))?;
    let list = stream
        .dvr()
        .ok_or(HttpError::NotFound("no DVR for this stream"))?;
    if list.segments.is_empty() {
        return Err(HttpError::Unavailable("no segment recorded yet"));
    }
    let a = stream.lock();
    let text = crate::dvr::render(
        &list,
        a.window.config().target_duration_secs,
        |msn| a.store.segment(msn).is_some_and(|s| s.complete),
        request.skip.wants_delta(),
    );
    Ok(playlist_response(text))
}

/// The multivariant playlist of a stream's DVR playlists: the live one's
/// variants, each naming its rendition's `dvr.m3u8`.
async fn dvr_multivariant(
    group: &StreamGroup,
    plan: &RenditionPlan,
    all_deadline: Instant,
    deadline: Instant,
) -> Result<Response, HttpError> {
    if !group.renditions().iter().any(|r| r.dvr().is_some()) {
        return Err(HttpError::NotFound("no DVR for this stream"));
    }
    let live = multivariant(group, plan, all_deadline, deadline).await?;
    let body = axum::body::to_bytes(live.into_body(), 1 << 20)
        .await
        .map_err(|_| HttpError::Unavailable("stream description not available"))?;
    let text = String::from_utf8_lossy(&body)
        .lines()
        .map(|line| match line.strip_suffix(MEDIA_PLAYLIST) {
            Some(rendition) if !line.starts_with('#') => format!("{rendition}{DVR_PLAYLIST}\n"),
            // The audio rendition's URI attribute.
            _ if line.starts_with("#EXT-X-MEDIA:") => format!(
                "{}\n",
                line.replace(&format!("{MEDIA_PLAYLIST}\""), &format!("{DVR_PLAYLIST}\""))
            ),
            _ => format!("{line}\n"),
        })
        .collect();
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
