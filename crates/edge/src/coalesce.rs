//! Request coalescing and the finished-media cache in front of an
//! [`Upstream`].
//!
//! Ten thousand viewers blocked on the next part must cost one origin
//! request. [`Coalescing`] keys every request by its path and its
//! normalised query ([`normalize_query`]: the LL-HLS delivery directives
//! the resource understands, parsed and written back in one canonical
//! form; everything else dropped), so blocking playlist requests for the
//! same part share one upstream wait by construction, whatever order or
//! spelling (`_HLS_msn=007`) the player used. The key is also what goes
//! upstream: a parameter that is not in the key never reaches the origin.
//! A query whose directives do not parse is answered `400` here and never
//! sent upstream.
//!
//! For each request, in order:
//!
//! 1. **Cache.** Finished media (segments, init segments, complete parts) is
//!    answered from memory. Cached: `200` responses that are not playlists,
//!    whose `Cache-Control` says `immutable`, or whose path names a segment,
//!    init segment or part (`seg*.m4s`, `init*.mp4`, `part*.m4s`) and whose
//!    `Cache-Control` does not say `no-cache` (the packager sends `no-cache`
//!    on a part still being written, `immutable` on a complete one), never
//!    `no-store` or `private`; for `max-age` (capped by
//!    [`CoalescingConfig::max_ttl_ms`]). The cache is an LRU bounded in
//!    bytes.
//!    Playlists are kept briefly: for [`CoalescingConfig::playlist_ttl_ms`]
//!    (25 ms) from the start of their fetch when the request did not block,
//!    for [`CoalescingConfig::blocking_playlist_ttl_ms`] (1 s) from their
//!    arrival when it did (`_HLS_msn`): a playlist reloaded by many viewers
//!    costs one origin request per TTL, and no request gets one older than
//!    its rule allows (see `cache_until`).
//! 2. **In flight.** A request equal to one being fetched joins that fetch
//!    and gets a clone of its outcome, error included. Errors and
//!    non-cacheable responses (404s, 503s) are never kept past the fetch.
//! 3. **Fetch.** Otherwise the request starts a fetch on the Tokio runtime
//!    (a spawned task), so a waiter that goes away never cancels the fetch
//!    for the others; the fetch leaves the in-flight map when it completes.
//!
//! A request joins (or starts) its fetch when [`Upstream::fetch`] is called,
//! not when the returned future is first polled.
//!
//! **One in-flight mechanism.** Every fetch is an upstream
//! [`Upstream::fetch_stream`] on a spawned task, which keeps every chunk it
//! has passed on; [`Upstream::fetch_stream`] here follows it (what the
//! server uses for parts, segments and init segments), and
//! [`Upstream::fetch`] follows it and collects the body (playlists). A
//! request that joins later gets the prefix replayed, then each new chunk
//! as it arrives, so a thousand viewers of the preload-hinted part cost one
//! origin request and all see its first chunks before it is complete. A
//! complete `200` is then cached. The replayed prefix is bounded by
//! [`CoalescingConfig::max_object_bytes`]: past it the fetch takes no more
//! joiners (they fetch on their own) and is not cached; its existing
//! waiters read on.
//!
//! Memory is bounded: the cache by [`CoalescingConfig::cache_bytes`], the
//! in-flight map by [`CoalescingConfig::max_in_flight`] distinct requests
//! (past it a request goes to the upstream on its own, counted in
//! [`CoalescingStats::bypassed`]). Waiters hold one shared handle each; how
//! many there are is the server's concurrency limit.
//!
//! ```no_run
//! use ferrocast_edge::coalesce::{Coalescing, CoalescingConfig};
//! use ferrocast_edge::http_upstream::{HttpUpstream, HttpUpstreamConfig};
//! use ferrocast_edge::upstream::{Upstream, UpstreamRequest};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let origin = HttpUpstream::new(HttpUpstreamConfig::new("http://packager:8080"))?;
//! let edge = Coalescing::new(origin, CoalescingConfig::default());
//! let response = edge
//!     .fetch(UpstreamRequest {
//!         path: "/live/cam/stream.m3u8".into(),
//!         query: Some("_HLS_part=3&_HLS_msn=12".into()),
//!     })
//!     .await?;
//! assert_eq!(response.status, 200);
//! println!("{:?}", edge.stats());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;

use crate::upstream::{
    StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
pub use ferrocast_hls::QueryError;
use ferrocast_hls::{PlaylistRequest, SkipRequest};

/// The query parameters the origin acts on (RFC 8216bis §6.2.5.1 "Client
/// Delivery Directives"), and only on Media Playlist requests; every other
/// parameter, and these on any other resource, is dropped from the key and
/// from the upstream request.
pub const DIRECTIVES: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];

/// The file name of a Multivariant Playlist in the origin's URL grammar
/// (`/live/NAME/index.m3u8`). It takes no delivery directive: RFC 8216bis
/// §6.2.5 defines them for Media Playlist requests only.
const MULTIVARIANT_NAME: &str = "index.m3u8";

pub use crate::coalesce_config::{
    CoalescingConfig, DEFAULT_BLOCKING_PLAYLIST_TTL_MS, DEFAULT_PLAYLIST_TTL_MS,
};

/// A snapshot of a [`Coalescing`] layer's counters (monotonic, since it was
/// made) and gauges, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalescingStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests that started an upstream fetch.
    pub misses: u64,
    /// Requests that joined a fetch already in flight.
    pub coalesced: u64,
    /// Requests sent upstream on their own because the in-flight map was
    /// full (or no Tokio runtime was there to run a shared fetch).
    pub bypassed: u64,
    /// Responses put in the cache.
    pub stored: u64,
    /// Cached objects dropped to make room.
    pub evictions: u64,
    /// Cached objects dropped because their time was up.
    pub expirations: u64,
    /// Fetches that ended in an [`UpstreamError`] (shared, never cached).
    pub errors: u64,
    /// Bytes in the cache now.
    pub cached_bytes: u64,
    /// Objects in the cache now.
    pub cached_objects: u64,
    /// Distinct requests in flight now.
    pub in_flight: u64,
}

type Outcome = Result<UpstreamResponse, UpstreamError>;

/// Coalesces concurrent equal requests into one upstream fetch and caches
/// finished media; see the [module docs](self).
///
/// Cloning is cheap and clones share everything.
pub struct Coalescing<U: Upstream> {
    inner: Arc<Inner<U>>,
}

impl<U: Upstream> Clone for Coalescing<U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<U: Upstream> std::fmt::Debug for Coalescing<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescing")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner<U> {
    upstream: Arc<U>,
    config: CoalescingConfig,
    state: Mutex<State>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    bypassed: AtomicU64,
    errors: AtomicU64,
}

struct State {
    /// Fetches in flight, whole or streamed: one mechanism for both.
    in_flight: HashMap<UpstreamRequest, Flight>,
    next_flight: u64,
    cache: Cache,
}

/// A fetch that waiters can join: every chunk so far, in a watch channel
/// whose version wakes them on each change.
struct Flight {
    id: u64,
    progress: tokio::sync::watch::Receiver<Progress>,
}

/// A response's status and headers.
type Head = (u16, Vec<(String, String)>);

/// How far a fetch has got.
#[derive(Default)]
struct Progress {
    /// The status and headers, or why none came.
    head: Option<Result<Head, UpstreamError>>,
    /// Every chunk passed on so far, for waiters that join late.
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    bytes: usize,
    /// The end of the body: complete, or broken.
    end: Option<Result<(), UpstreamError>>,
}

impl<U: Upstream> Coalescing<U> {
    /// Put a coalescing layer and cache in front of `upstream`.
    pub fn new(upstream: U, config: CoalescingConfig) -> Self {
        let cache = Cache::new(config.cache_bytes);
        Self {
            inner: Arc::new(Inner {
                upstream: Arc::new(upstream),
                config,
                state: Mutex::new(State {
                    in_flight: HashMap::new(),
                    next_flight: 0,
                    cache,
                }),
                counters: Counters::default(),
            }),
        }
    }

    /// The upstream behind the layer (for its own metrics).
    pub fn upstream(&self) -> &U {
        &self.inner.upstream
    }

    /// The layer's limits.
    pub fn config(&self) -> &CoalescingConfig {
        &self.inner.config
    }

    /// Counters and gauges now.
    pub fn stats(&self) -> CoalescingStats {
        let c = &self.inner.counters;
        let state = self.inner.lock();
        CoalescingStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            bypassed: c.bypassed.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            stored: state.cache.stored,
            evictions: state.cache.evictions,
            expirations: state.cache.expirations,
            cached_bytes: state.cache.bytes as u64,
            cached_objects: state.cache.map.len() as u64,
            in_flight: state.in_flight.len() as u64,
        }
    }

    /// The cached response to `key`, or a fetch of it: joined if one is in
    /// flight, started otherwise (or, past the in-flight bound or outside a
    /// Tokio runtime, sent upstream on its own).
    fn lookup(&self, key: UpstreamRequest) -> Lookup {
        let counters = &self.inner.counters;
        let runtime = tokio::runtime::Handle::try_current();
        let mut state = self.inner.lock();
        if let Some(response) = state.cache.get(&key, Instant::now()) {
            drop(state);
            counters.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Hit(response);
        }
        if let Some(flight) = state.in_flight.get(&key) {
            let progress = flight.progress.clone();
            drop(state);
            counters.coalesced.fetch_add(1, Ordering::Relaxed);
            return Lookup::Fetch(follow(progress).boxed());
        }
        let runtime = match runtime {
            Ok(runtime) if state.in_flight.len() < self.inner.config.max_in_flight => runtime,
            _ => {
                drop(state);
                counters.bypassed.fetch_add(1, Ordering::Relaxed);
                return Lookup::Fetch(self.inner.upstream.fetch_stream(key));
            }
        };
        let (tx, rx) = tokio::sync::watch::channel(Progress::default());
        let id = state.next_flight;
        state.next_flight += 1;
        state.in_flight.insert(
            key.clone(),
            Flight {
                id,
                progress: rx.clone(),
            },
        );
        drop(state);
        counters.misses.fetch_add(1, Ordering::Relaxed);
        let guard = FlightGuard {
            inner: self.inner.clone(),
            key,
            id,
        };
        let started = Instant::now();
        let fetch = self.inner.upstream.fetch_stream(guard.key.clone());
        runtime.spawn(run_flight(guard, started, fetch, tx));
        Lookup::Fetch(follow(rx).boxed())
    }
}

/// What [`Coalescing::lookup`] found.
enum Lookup {
    Hit(UpstreamResponse),
    Fetch(BoxFuture<'static, Result<StreamingResponse, UpstreamError>>),
}

impl<U> Inner<U> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves maps that are
        // still consistent (every update is a single insert or remove).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Store a complete response if it may be cached; `started` is when
    /// its fetch began.
    fn finish(&self, key: &UpstreamRequest, response: &UpstreamResponse, started: Instant) {
        let Some(expires) = cache_until(key, response, &self.config, started, Instant::now())
        else {
            return;
        };
        let size = entry_size(key, response);
        if size <= self.config.max_object_bytes {
            self.lock()
                .cache
                .insert(key.clone(), response.clone(), size, expires);
        }
    }

    /// Takes a fetch out of the in-flight map (when its task ends, or when
    /// its prefix outgrew the bound).
    fn leave(&self, key: &UpstreamRequest, id: u64) {
        let removed = {
            let mut state = self.lock();
            match state.in_flight.get(key) {
                Some(flight) if flight.id == id => state.in_flight.remove(key),
                _ => None,
            }
        };
        // The flight's receiver is dropped outside the lock.
        drop(removed);
    }
}

/// [`Inner::leave`] when the task that runs a fetch ends, normally or by
/// a panic in the upstream.
struct FlightGuard<U> {
    inner: Arc<Inner<U>>,
    key: UpstreamRequest,
    id: u64,
}

impl<U> Drop for FlightGuard<U> {
    fn drop(&mut self) {
        self.inner.leave(&self.key, self.id);
    }
}

/// Runs one upstream fetch to its end, publishing its progress.
async fn run_flight<U: Upstream>(
    guard: FlightGuard<U>,
    started: Instant,
    fetch: BoxFuture<'static, Result<StreamingResponse, UpstreamError>>,
    progress: tokio::sync::watch::Sender<Progress>,
) {
    // A fetch leaves the in-flight map before its end is published: a
    // request that comes after its waiters woke starts a new fetch rather
    // than joining a finished one (which would hand it an old playlist).
    let inner = guard.inner.clone();
    let response = match fetch.await {
        Ok(response) => response,
        Err(e) => {
            inner.counters.errors.fetch_add(1, Ordering::Relaxed);
            drop(guard);
            progress.send_modify(|p| p.head = Some(Err(e)));
            return;
        }
    };
    let StreamingResponse {
        status,
        headers,
        mut body,
    } = response;
    progress.send_modify(|p| p.head = Some(Ok((status, headers.clone()))));
    let mut joinable = true;
    let end = loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                let mut bytes = 0;
                progress.send_modify(|p| {
                    p.bytes += chunk.len();
                    bytes = p.bytes;
                    p.chunks.push(chunk);
                });
                if joinable && bytes > inner.config.max_object_bytes {
                    joinable = false;
                    inner.leave(&guard.key, guard.id);
                }
            }
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    match &end {
        Ok(()) if joinable => {
            let body = {
                let p = progress.borrow();
                concat(&p.chunks, p.bytes)
            };
            let whole = UpstreamResponse {
                status,
                headers,
                body,
            };
            // Cache first, then leave the in-flight map (the guard's drop):
            // a request in between finds one or the other, never neither.
            inner.finish(&guard.key, &whole, started);
        }
        Ok(()) => {}
        Err(_) => {
            inner.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(guard);
    progress.send_modify(|p| p.end = Some(end));
}

/// Chunks as one `Bytes`; a single chunk is not copied.
fn concat(chunks: &[Bytes], len: usize) -> Bytes {
    match chunks {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut whole = bytes::BytesMut::with_capacity(len);
            for chunk in many {
                whole.extend_from_slice(chunk);
            }
            whole.freeze()
        }
    }
}

/// A streamed response collected whole (its body's size is the
/// upstream's to bound).
async fn collect(response: StreamingResponse) -> Outcome {
    let StreamingResponse {
        status,
        headers,
        mut body,
    } = response;
    let mut chunks = Vec::new();
    let mut len = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        len += chunk.len();
        chunks.push(chunk);
    }
    Ok(UpstreamResponse {
        status,
        headers,
        body: concat(&chunks, len),
    })
}

/// Follows a fetch: waits for its head, then replays the chunks already
/// passed on and follows the new ones.
async fn follow(
    mut progress: tokio::sync::watch::Receiver<Progress>,
) -> Result<StreamingResponse, UpstreamError> {
    let gone = || UpstreamError::Unreachable("the shared fetch failed".into());
    let (status, headers) = loop {
        if let Some(head) = &progress.borrow_and_update().head {
            break head.clone()?;
        }
        progress.changed().await.map_err(|_| gone())?;
    };
    let body = futures::stream::unfold(
        (progress, 0usize, false),
        move |(mut progress, next, done)| async move {
            if done {
                return None;
            }
            loop {
                let item = {
                    let p = progress.borrow_and_update();
                    match (p.chunks.get(next), &p.end) {
                        (Some(chunk), _) => Some(Ok(chunk.clone())),
                        (None, Some(Ok(()))) => return None,
                        (None, Some(Err(e))) => Some(Err(e.clone())),
                        (None, None) => None,
                    }
                };
                match item {
                    Some(Ok(chunk)) => return Some((Ok(chunk), (progress, next + 1, false))),
                    Some(Err(e)) => return Some((Err(e), (progress, next, true))),
                    None => {
                        if progress.changed().await.is_err() {
                            return Some((Err(gone()), (progress, next, true)));
                        }
                    }
                }
            }
        },
    );
    Ok(StreamingResponse {
        status,
        headers,
        body: body.boxed(),
    })
}

/// The coalescing and cache key of a request, which is also what is sent
/// upstream: its path and [`normalize_query`].
fn key_of(req: UpstreamRequest) -> Result<UpstreamRequest, QueryError> {
    Ok(UpstreamRequest {
        query: normalize_query(&req.path, req.query.as_deref())?,
        path: req.path,
    })
}

/// The answer to a request whose delivery directives do not parse: what
/// the origin would answer (RFC 8216bis §6.2.5: "the Server MUST return
/// Bad Request, such as HTTP 400"), given here so that it costs the origin
/// nothing. Never cached. The reason names the parameter, never its value.
fn bad_request(e: QueryError) -> UpstreamResponse {
    UpstreamResponse {
        status: 400,
        headers: vec![
            ("content-type".into(), "text/plain; charset=utf-8".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Bytes::from(format!("{e}\n")),
    }
}

impl<U: Upstream> Upstream for Coalescing<U> {
    fn fetch_stream(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
        let key = match key_of(req) {
            Ok(key) => key,
            Err(e) => return futures::future::ready(Ok(bad_request(e).into())).boxed(),
        };
        match self.lookup(key) {
            Lookup::Hit(response) => futures::future::ready(Ok(response.into())).boxed(),
            Lookup::Fetch(fetch) => fetch,
        }
    }

    /// A streamed fetch ([`Upstream::fetch_stream`]) collected whole: one
    /// in-flight mechanism for both.
    fn fetch(&self, req: UpstreamRequest) -> BoxFuture<'static, Outcome> {
        let key = match key_of(req) {
            Ok(key) => key,
            Err(e) => return futures::future::ready(Ok(bad_request(e))).boxed(),
        };
        match self.lookup(key) {
            Lookup::Hit(response) => futures::future::ready(Ok(response)).boxed(),
            Lookup::Fetch(fetch) => async move { collect(fetch.await?).await }.boxed(),
        }
    }
}

/// The query to send upstream for `path`, and to key its response by:
/// only the delivery directives the resource understands, in one canonical
/// spelling; `Ok(None)` when none is left.
///
/// - **Media Playlists** (any `*.m3u8` but `index.m3u8`): `_HLS_msn`,
///   `_HLS_part` and `_HLS_skip`, parsed by
///   [`PlaylistRequest::from_query`] (the origin's own parser, so the edge
///   and the origin agree on what is valid) and written back as
///   `_HLS_msn=M[&_HLS_part=P][&_HLS_skip=YES|v2]`: decimal without
///   leading zeros, so `_HLS_msn=007` and `_HLS_msn=7` are one key. Every
///   other parameter (a token, a cache buster) is dropped.
/// - **Everything else** (the Multivariant Playlist `index.m3u8`, parts,
///   segments, init segments, other paths): no parameter at all. RFC
///   8216bis §6.2.5 defines the directives for Media Playlist requests
///   only; on other resources they are unknown parameters like any other,
///   dropped unread, so `seg3.m4s?_HLS_skip=YES` is `seg3.m4s`.
///
/// Refused, for the caller to answer `400` (never forwarded): on a Media
/// Playlist, a directive that is not a valid decimal-integer in range
/// (ASCII digits only, at most 20 for `_HLS_msn` and 10 for `_HLS_part`
/// leading zeros included, fitting `u64` / `u32`), `_HLS_skip` other than `YES` or `v2`,
/// `_HLS_part` without `_HLS_msn` (§6.2.5: "If the _HLS_part directive is
/// present without a corresponding _HLS_msn, the Server MUST return Bad
/// Request, such as HTTP 400"), a query longer than
/// [`ferrocast_hls::MAX_QUERY_LEN`], and a directive given more than once
/// (`_HLS_msn=1&_HLS_msn=2`: which one the origin would act on is
/// ambiguous, so neither is picked). Names are case-sensitive
/// (`_hls_msn` is not a directive) and values are not percent-decoded
/// (valid values never need it, so `_HLS_msn=%37` is refused).
///
/// Idempotent, and insensitive to the order of the parameters (but for
/// which of two bad directives an error names).
///
/// ```
/// use ferrocast_edge::coalesce::normalize_query;
/// let q = normalize_query("/live/cam/stream.m3u8", Some("token=t&_HLS_part=02&_HLS_msn=007"));
/// assert_eq!(q, Ok(Some("_HLS_msn=7&_HLS_part=2".to_owned())));
/// assert_eq!(normalize_query("/live/cam/part7.2.m4s", Some("_HLS_skip=YES")), Ok(None));
/// assert!(normalize_query("/live/cam/stream.m3u8", Some("_HLS_msn=x")).is_err());
/// ```
pub fn normalize_query(path: &str, query: Option<&str>) -> Result<Option<String>, QueryError> {
    if path_kind(path) != PathKind::MediaPlaylist {
        return Ok(None);
    }
    let Some(query) = query else {
        return Ok(None);
    };
    let request = PlaylistRequest::from_query(query)?;
    // Written in DIRECTIVES order (which is also their sorted order).
    let mut out = String::new();
    if let Some(block) = request.block {
        out.push_str("_HLS_msn=");
        out.push_str(&block.msn.to_string());
        if let Some(part) = block.part {
            out.push_str("&_HLS_part=");
            out.push_str(&part.to_string());
        }
    }
    let skip = match request.skip {
        SkipRequest::No => None,
        SkipRequest::Yes => Some("YES"),
        // Kept apart from YES: the origin answers both alike today, but
        // they are different requests.
        SkipRequest::V2 => Some("v2"),
    };
    if let Some(skip) = skip {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str("_HLS_skip=");
        out.push_str(skip);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// What a path names, as far as caching and delivery directives are
/// concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    /// `index.m3u8`.
    MultivariantPlaylist,
    /// Any other `*.m3u8`.
    MediaPlaylist,
    /// A segment, a part or an init segment.
    Media,
    Other,
}

fn path_kind(path: &str) -> PathKind {
    let file = path.rsplit('/').next().unwrap_or("");
    if file == MULTIVARIANT_NAME {
        PathKind::MultivariantPlaylist
    } else if file.ends_with(".m3u8") {
        PathKind::MediaPlaylist
    } else if (file.starts_with("seg") || file.starts_with("part")) && file.ends_with(".m4s")
        || file.starts_with("init") && file.ends_with(".mp4")
    {
        PathKind::Media
    } else {
        PathKind::Other
    }
}

/// The `Cache-Control` directives that matter here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct CacheControl {
    immutable: bool,
    no_cache: bool,
    no_store: bool,
    private: bool,
    max_age: Option<u64>,
}

fn cache_control(headers: &[(String, String)]) -> CacheControl {
    let mut cc = CacheControl::default();
    let values = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("cache-control"));
    for (_, value) in values {
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive
                .split_once('=')
                .map_or((directive, None), |(n, a)| (n.trim(), Some(a.trim())));
            match name.to_ascii_lowercase().as_str() {
                "immutable" => cc.immutable = true,
                "no-cache" => cc.no_cache = true,
                "no-store" => cc.no_store = true,
                "private" => cc.private = true,
                "max-age" => {
                    let age = arg.and_then(|a| a.trim_matches('"').parse().ok());
                    // RFC 9111 §4.2.1: an invalid max-age means stale.
                    cc.max_age = Some(cc.max_age.unwrap_or(u64::MAX).min(age.unwrap_or(0)));
                }
                _ => {}
            }
        }
    }
    cc
}

/// Until when `response` to `key` may be cached, if at all; its fetch
/// started at `started` and ended at `now`.
///
/// Playlists: for a blocking request, `blocking_playlist_ttl_ms` from
/// `now`. RFC 8216bis §6.2.5.2 (recalled): a server that receives
/// `_HLS_msn=M` (and `_HLS_part=P`) holds the request until the playlist
/// contains that segment (and part) and then answers; every playlist made
/// after that moment answers it, so equal requests may share one for a
/// while. For any other playlist request, `playlist_ttl_ms` from
/// `started`: the origin made the playlist after the fetch started, so no
/// request is answered with one older than that bound (§6.2.2: the
/// playlist must reflect the live state; Appendix C lets a client work
/// out its delivery directives from a playlist a cache held briefly).
/// The origin's `no-cache` on playlists is for caches downstream; this
/// layer is part of the origin's deployment and bounds the age itself.
fn cache_until(
    key: &UpstreamRequest,
    response: &UpstreamResponse,
    config: &CoalescingConfig,
    started: Instant,
    now: Instant,
) -> Option<Instant> {
    if response.status != 200 {
        return None;
    }
    let cc = cache_control(&response.headers);
    if cc.no_store || cc.private {
        return None;
    }
    let kind = path_kind(&key.path);
    if matches!(
        kind,
        PathKind::MultivariantPlaylist | PathKind::MediaPlaylist
    ) {
        let blocking = key.query.as_deref().is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == "_HLS_msn")
        });
        let (ttl, from) = if blocking {
            (config.blocking_playlist_ttl_ms, now)
        } else {
            (config.playlist_ttl_ms, started)
        };
        let ttl = Duration::from_millis(ttl.min(config.max_ttl_ms));
        return (!ttl.is_zero() && from + ttl > now).then(|| from + ttl);
    }
    let finished = cc.immutable || kind == PathKind::Media && !cc.no_cache;
    if !finished {
        return None;
    }
    let max = Duration::from_millis(config.max_ttl_ms);
    let ttl = cc.max_age.map_or(max, |s| Duration::from_secs(s).min(max));
    (!ttl.is_zero()).then(|| now + ttl)
}

/// Bytes an entry is charged: body, headers, key, and a little for the
/// map's own bookkeeping.
fn entry_size(key: &UpstreamRequest, response: &UpstreamResponse) -> usize {
    const OVERHEAD: usize = 128;
    let headers: usize = response
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 48)
        .sum();
    let key_len = key.path.len() + key.query.as_ref().map_or(0, String::len);
    OVERHEAD + response.body.len() + headers + 2 * key_len
}

/// An LRU of responses bounded in bytes.
struct Cache {
    /// Keys shared with `order` (a hit touches the LRU order without
    /// copying its key).
    map: HashMap<Arc<UpstreamRequest>, CacheEntry>,
    /// Last use → key; the first is the least recently used.
    order: BTreeMap<u64, Arc<UpstreamRequest>>,
    tick: u64,
    bytes: usize,
    capacity: usize,
    stored: u64,
    evictions: u64,
    expirations: u64,
}

struct CacheEntry {
    key: Arc<UpstreamRequest>,
    response: UpstreamResponse,
    size: usize,
    expires: Instant,
    used: u64,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            capacity,
            stored: 0,
            evictions: 0,
            expirations: 0,
        }
    }

    fn get(&mut self, key: &UpstreamRequest, now: Instant) -> Option<UpstreamResponse> {
        let entry = self.map.get_mut(key)?;
        if entry.expires <= now {
            self.remove(key);
            self.expirations += 1;
            return None;
        }
        self.tick += 1;
        self.order.remove(&entry.used);
        entry.used = self.tick;
        self.order.insert(self.tick, entry.key.clone());
        Some(entry.response.clone())
    }

    fn insert(
        &mut self,
        key: UpstreamRequest,
        response: UpstreamResponse,
        size: usize,
        expires: Instant,
    ) {
        if size > self.capacity {
            return;
        }
        self.remove(&key);
        while self.bytes + size > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.map.remove(&*oldest) {
                self.bytes -= entry.size;
                self.evictions += 1;
            }
        }
        self.tick += 1;
        let key = Arc::new(key);
        self.order.insert(self.tick, key.clone());
        self.map.insert(
            key.clone(),
            CacheEntry {
                key,
                response,
                size,
                expires,
                used: self.tick,
            },
        );
        self.bytes += size;
        self.stored += 1;
    }

    fn remove(&mut self, key: &UpstreamRequest) {
        if let Some(entry) = self.map.remove(key) {
            self.order.remove(&entry.used);
            self.bytes -= entry.size;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn response(status: u16, cache_control: &str, body: &'static [u8]) -> UpstreamResponse {
        UpstreamResponse {
            status,
            headers: vec![("cache-control".into(), cache_control.into())],
            body: bytes::Bytes::from_static(body),
        }
    }

    fn key(path: &str) -> UpstreamRequest {
        UpstreamRequest {
            path: path.into(),
            query: None,
        }
    }

    const PLAYLIST: &str = "/live/cam/720p/stream.m3u8";

    fn norm(path: &str, query: &str) -> Result<Option<String>, QueryError> {
        normalize_query(path, Some(query))
    }

    fn some(query: &str) -> Result<Option<String>, QueryError> {
        Ok(Some(query.to_owned()))
    }

    #[test]
    fn media_playlists_keep_their_directives_in_one_spelling() {
        assert_eq!(normalize_query(PLAYLIST, None), Ok(None));
        assert_eq!(norm(PLAYLIST, ""), Ok(None));
        assert_eq!(norm(PLAYLIST, "token=abc&x=1&&"), Ok(None));
        assert_eq!(
            norm(PLAYLIST, "_HLS_skip=YES&token=t&_HLS_part=2&_HLS_msn=273"),
            some("_HLS_msn=273&_HLS_part=2&_HLS_skip=YES")
        );
        // Leading zeros, order, unknown parameters: one key.
        for q in [
            "_HLS_msn=7&_HLS_part=2",
            "_HLS_msn=007&_HLS_part=02",
            "_HLS_part=0002&x=&_HLS_msn=0000000000000000007",
            "_hls_msn=1&_HLS_msn=7&_HLS_part=2&_HLS_msnx=1&_HLS=2",
        ] {
            assert_eq!(norm(PLAYLIST, q), some("_HLS_msn=7&_HLS_part=2"), "{q}");
        }
        assert_eq!(norm(PLAYLIST, "_HLS_skip=v2"), some("_HLS_skip=v2"));
        assert_eq!(norm(PLAYLIST, "_HLS_msn=0"), some("_HLS_msn=0"));
        assert_eq!(
            norm(
                PLAYLIST,
                "_HLS_msn=18446744073709551615&_HLS_part=4294967295"
            ),
            some("_HLS_msn=18446744073709551615&_HLS_part=4294967295")
        );
    }

    #[test]
    fn bad_directives_are_refused_on_media_playlists_only() {
        use ferrocast_hls::{NumberError, QueryParam};
        let number = |param, reason| Err(QueryError::BadNumber { param, reason });
        for (query, expected) in [
            (
                "_HLS_msn=x",
                number(QueryParam::Msn, NumberError::NotDigits),
            ),
            (
                "_HLS_msn=%37",
                number(QueryParam::Msn, NumberError::NotDigits),
            ),
            (
                "_HLS_msn=-1",
                number(QueryParam::Msn, NumberError::NotDigits),
            ),
            (
                "_HLS_msn=+1",
                number(QueryParam::Msn, NumberError::NotDigits),
            ),
            ("_HLS_msn", number(QueryParam::Msn, NumberError::Empty)),
            (
                "_HLS_msn=18446744073709551616",
                number(QueryParam::Msn, NumberError::OutOfRange),
            ),
            (
                "_HLS_msn=1&_HLS_part=4294967296",
                number(QueryParam::Part, NumberError::OutOfRange),
            ),
            ("_HLS_part=1", Err(QueryError::PartWithoutMsn)),
            ("_HLS_skip=yes", Err(QueryError::BadSkip)),
            ("_HLS_skip=NO", Err(QueryError::BadSkip)),
            (
                "_HLS_msn=1&_HLS_msn=1",
                Err(QueryError::Duplicate(QueryParam::Msn)),
            ),
            (
                "_HLS_skip=YES&_HLS_skip=YES",
                Err(QueryError::Duplicate(QueryParam::Skip)),
            ),
        ] {
            assert_eq!(norm(PLAYLIST, query), expected, "{query}");
        }
        let long = format!("_HLS_msn=1&x={}", "a".repeat(ferrocast_hls::MAX_QUERY_LEN));
        assert_eq!(norm(PLAYLIST, &long), Err(QueryError::TooLong));
        // Resources that take no directive ignore them, valid or not.
        for path in [
            "/live/cam/index.m3u8",
            "/live/cam/seg3.m4s",
            "/live/cam/720p/part3.1.m4s",
            "/live/cam/init0.mp4",
            "/healthz",
        ] {
            for query in [
                "_HLS_msn=7&_HLS_part=2&_HLS_skip=YES",
                "_HLS_msn=x",
                "_HLS_part=1",
                "_HLS_msn=1&_HLS_msn=2",
                long.as_str(),
            ] {
                assert_eq!(norm(path, query), Ok(None), "{path}?{query}");
            }
        }
    }

    fn query_parts() -> impl Strategy<Value = Vec<String>> {
        let name = prop_oneof![
            Just("_HLS_msn".to_owned()),
            Just("_HLS_part".to_owned()),
            Just("_HLS_skip".to_owned()),
            Just("token".to_owned()),
            "[a-zA-Z_]{0,8}",
        ];
        let value = prop_oneof![
            "0{0,3}[0-9]{1,3}",
            Just("YES".to_owned()),
            Just("v2".to_owned()),
            "[0-9A-Za-z%.]{0,6}",
        ];
        let pair = (name, proptest::option::of(value)).prop_map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n,
        });
        proptest::collection::vec(pair, 0..8)
    }

    proptest! {
        #[test]
        fn normalization_is_order_insensitive(parts in query_parts(), seed in any::<u64>()) {
            let mut shuffled = parts.clone();
            // A deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let a = normalize_query(PLAYLIST, Some(&parts.join("&")));
            let b = normalize_query(PLAYLIST, Some(&shuffled.join("&")));
            // Accepted or refused alike; when two directives are wrong,
            // which one the error names may depend on the order.
            prop_assert_eq!(a.is_ok(), b.is_ok());
            prop_assert_eq!(a.ok(), b.ok());
        }

        #[test]
        fn normalization_is_idempotent(parts in query_parts()) {
            let once = normalize_query(PLAYLIST, Some(&parts.join("&")));
            if let Ok(once) = once {
                let twice = normalize_query(PLAYLIST, once.as_deref());
                prop_assert_eq!(&Ok(once.clone()), &twice);
                if let Some(q) = &once {
                    for pair in q.split('&') {
                        let (name, value) = pair.split_once('=').unwrap();
                        prop_assert!(DIRECTIVES.contains(&name), "{}", q);
                        prop_assert!(value == "0" || !value.starts_with('0'), "{}", q);
                    }
                }
            }
            // Nothing reaches the key of any other resource.
            for path in ["/live/cam/index.m3u8", "/live/cam/seg1.m4s", "/live/cam/part1.0.m4s"] {
                prop_assert_eq!(normalize_query(path, Some(&parts.join("&"))), Ok(None));
            }
        }
    }

    #[test]
    fn what_is_cached_and_for_how_long() {
        let max = Duration::from_secs(60);
        let config = CoalescingConfig::default();
        let now = Instant::now();
        let ttl = |path: &str, r: &UpstreamResponse| {
            cache_until(&key(path), r, &config, now, now).map(|until| until - now)
        };
        let immutable = response(200, "public, max-age=3600, immutable", b"x");
        // The packager's finished media: capped at the maximum.
        assert_eq!(ttl("/live/cam/seg3.m4s", &immutable), Some(max));
        assert_eq!(ttl("/live/cam/part3.1.m4s", &immutable), Some(max));
        assert_eq!(ttl("/live/cam/720p/init0.mp4", &immutable), Some(max));
        // A part still being written when its headers left.
        assert_eq!(
            ttl("/live/cam/part3.2.m4s", &response(200, "no-cache", b"x")),
            None
        );
        // Media by name, with a shorter max-age.
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(200, "max-age=5", b"x")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(200, "", b"x")),
            Some(max)
        );
        // Never: errors, no-store, private, max-age=0, unknown paths
        // without immutable.
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(404, "max-age=60", b"x")),
            None
        );
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(200, "no-store", b"x")),
            None
        );
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(200, "Private", b"x")),
            None
        );
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(200, "max-age=0", b"x")),
            None
        );
        assert_eq!(
            ttl("/live/cam/seg3.m4s", &response(200, "max-age=bad", b"x")),
            None
        );
        assert_eq!(ttl("/healthz", &response(200, "max-age=60", b"x")), None);
        assert_eq!(ttl("/static/logo.png", &immutable), Some(max));
    }

    #[test]
    fn playlists_are_kept_briefly_whatever_they_say() {
        let config = CoalescingConfig {
            playlist_ttl_ms: 25,
            blocking_playlist_ttl_ms: 1_000,
            ..CoalescingConfig::default()
        };
        let started = Instant::now();
        let until = |path: &str, query: Option<&str>, r: &UpstreamResponse, now: Instant| {
            let key = UpstreamRequest {
                path: path.into(),
                query: query.map(str::to_owned),
            };
            cache_until(&key, r, &config, started, now)
        };
        let no_cache = response(200, "no-cache", b"#EXTM3U\n");
        let ms = Duration::from_millis;
        // Not blocking: from the start of the fetch, so a slow fetch is
        // kept for less (or not at all).
        for query in [None, Some("_HLS_skip=YES")] {
            for path in ["/live/cam/stream.m3u8", "/live/cam/index.m3u8"] {
                assert_eq!(
                    until(path, query, &no_cache, started),
                    Some(started + ms(25))
                );
                assert_eq!(
                    until(path, query, &no_cache, started + ms(20)),
                    Some(started + ms(25))
                );
                assert_eq!(until(path, query, &no_cache, started + ms(25)), None);
            }
        }
        // Blocking: from its arrival.
        for query in [
            "_HLS_msn=4",
            "_HLS_msn=4&_HLS_part=1",
            "_HLS_msn=4&_HLS_skip=v2",
        ] {
            let arrived = started + ms(700);
            assert_eq!(
                until("/live/cam/stream.m3u8", Some(query), &no_cache, arrived),
                Some(arrived + ms(1_000))
            );
        }
        // Never: errors, no-store, private; or with the TTLs at 0.
        let path = "/live/cam/stream.m3u8";
        assert_eq!(
            until(path, None, &response(503, "no-cache", b"x"), started),
            None
        );
        assert_eq!(
            until(path, None, &response(200, "no-store", b"x"), started),
            None
        );
        assert_eq!(
            until(path, None, &response(200, "private", b"x"), started),
            None
        );
        let off = CoalescingConfig {
            playlist_ttl_ms: 0,
            blocking_playlist_ttl_ms: 0,
            ..CoalescingConfig::default()
        };
        for query in [None, Some("_HLS_msn=4".to_owned())] {
            let key = UpstreamRequest {
                path: path.into(),
                query,
            };
            assert_eq!(cache_until(&key, &no_cache, &off, started, started), None);
        }
    }

    #[test]
    fn lru_by_bytes() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut cache = Cache::new(300);
        let r = response(200, "immutable", b"");
        cache.insert(key("/a"), r.clone(), 100, later);
        cache.insert(key("/b"), r.clone(), 100, later);
        cache.insert(key("/c"), r.clone(), 100, later);
        assert_eq!(cache.bytes, 300);
        // Touch /a: /b is now the least recently used.
        assert!(cache.get(&key("/a"), now).is_some());
        cache.insert(key("/d"), r.clone(), 150, later);
        assert!(cache.get(&key("/b"), now).is_none());
        assert!(cache.get(&key("/c"), now).is_none());
        assert!(cache.get(&key("/a"), now).is_some());
        assert_eq!((cache.bytes, cache.evictions), (250, 2));
        // Bigger than the whole cache: not stored, nothing evicted.
        cache.insert(key("/huge"), r.clone(), 301, later);
        assert_eq!((cache.map.len(), cache.evictions), (2, 2));
        // Replacing an entry charges its new size once.
        cache.insert(key("/a"), r.clone(), 50, later);
        assert_eq!(cache.bytes, 200);
        // Expired entries are gone on the next look.
        assert!(cache.get(&key("/a"), later).is_none());
        assert_eq!((cache.expirations, cache.bytes), (1, 150));
        assert_eq!(cache.order.len(), cache.map.len());
    }
}
