//! [`HttpUpstream`]: a remote packager origin over HTTP/1.1 with
//! keep-alive, per-request time limits, retries with backoff and jitter,
//! a circuit breaker, and bodies streamed as the origin writes them.
//!
//! - **Streaming.** [`Upstream::fetch_stream`] answers as soon as the
//!   origin's head is there and passes the body on chunk by chunk as it
//!   arrives (a part the origin is still writing reaches the viewer frame
//!   by frame); [`Upstream::fetch`] collects the whole body. A body that
//!   breaks off (the connection closes early, a chunk does not come within
//!   [`HttpUpstreamConfig::idle_timeout_ms`], the body grows past
//!   [`HttpUpstreamConfig::max_body_bytes`]) ends the stream with an `Err`
//!   item, so the edge aborts its response instead of finishing it.
//! - **Time limits.** The origin holds a blocking playlist request
//!   (`_HLS_msn`), any playlist of a stream that has no media yet (the
//!   multivariant also waits for every rendition in the stream's first
//!   moments) and a request for a part not yet written (a preload hint),
//!   up to its maximum hold (`hls.max_hold_ms`, 6 s by default): those get
//!   [`HttpUpstreamConfig::blocking_timeout_ms`], which must be longer,
//!   everything else [`HttpUpstreamConfig::timeout_ms`]. The limit covers
//!   the wait for the head, retries included; for [`Upstream::fetch`] the
//!   body too. A streamed body has the idle limit per chunk instead.
//! - **Retries** ([`Backoff`]): only before the head of the answer given
//!   (never once a body byte was passed on), and only where the request
//!   certainly did no harm and may succeed next time: a connection that
//!   could not be made, or a `502`/`503`/`504`. Never a `4xx`, never a
//!   timeout (a timed-out blocking request has used its wait), and never a
//!   `503` to a request the origin may hold: that is the packager saying
//!   the part did not come within its maximum hold, returned at once and
//!   not counted against the origin by the breaker. When retries run out,
//!   or the time limit leaves no room for the next one, the last `5xx`
//!   response is the answer.
//! - **The circuit breaker** ([`CircuitBreaker`], one per origin): after
//!   [`BreakerConfig::failure_threshold`] consecutive failures (no
//!   connection, no head in time for a request the origin does not hold, a
//!   `502`/`504`) it opens and every
//!   request fails at once with [`UpstreamError::CircuitOpen`], without
//!   touching the network; after [`BreakerConfig::cool_down_ms`] it lets
//!   one trial request through (half-open), whose success closes it and
//!   whose failure opens it again. Any other head is a success: a body
//!   that breaks off later is about that object more than the origin's
//!   health. Neither a `503` nor a held request (blocking playlist, part)
//!   that times out counts either way: the packager answers `503` about
//!   one stream (no media yet, a part that did not come), so counting it
//!   would let one stalled stream cut every other stream off.
//!
//! The configuration, the breaker and the backoff schedule are sans-IO
//! (they take `now` and the jitter as arguments) and exist without the
//! `server` feature, so that `[edge.origin]` is part of the config model.
//! [`HttpUpstream`] reads `now` from a [`Clock`], which tests replace.
//!
//! [`Upstream::fetch_stream`]: crate::upstream::Upstream::fetch_stream
//! [`Upstream::fetch`]: crate::upstream::Upstream::fetch
//! [`UpstreamError::CircuitOpen`]: crate::upstream::UpstreamError::CircuitOpen

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[cfg(feature = "server")]
pub use client::HttpUpstream;

/// How an [`HttpUpstream`] talks to its origin (`[edge.origin]`). Every
/// field but `base_url` has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUpstreamConfig {
    /// The origin, like `http://packager:8080` (a path prefix is kept:
    /// `http://host/origin` fetches `/live/..` as `/origin/live/..`).
    /// Required.
    pub base_url: String,
    /// Time limit of a request the origin answers at once. Default 5000 ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Time limit of a request the origin may hold: any playlist or a
    /// part. Set it above the origin's maximum hold (the packager's
    /// `hls.max_hold_ms`, 6 000 ms by default). Default 15 000 ms.
    #[serde(default = "default_blocking_timeout_ms")]
    pub blocking_timeout_ms: u64,
    /// Time limit for making a connection. Default 1000 ms.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the next chunk of a streamed body (a part the
    /// origin writes frame by frame); past it the body ends in
    /// [`UpstreamError::Timeout`](crate::upstream::UpstreamError::Timeout).
    /// Default 5000 ms.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Largest body accepted; a larger one is
    /// [`UpstreamError::Unreachable`](crate::upstream::UpstreamError::Unreachable).
    /// Default 64 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Idle keep-alive connections kept to the origin. Default 64.
    #[serde(default = "default_max_idle_connections")]
    pub max_idle_connections: usize,
    /// Retries after the first attempt. Default 2.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Retry schedule.
    #[serde(default)]
    pub backoff: Backoff,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

fn default_timeout_ms() -> u64 {
    5_000
}
fn default_blocking_timeout_ms() -> u64 {
    15_000
}
fn default_connect_timeout_ms() -> u64 {
    1_000
}
fn default_idle_timeout_ms() -> u64 {
    5_000
}
fn default_max_body_bytes() -> usize {
    64 << 20
}
fn default_max_idle_connections() -> usize {
    64
}
fn default_max_retries() -> u32 {
    2
}

impl HttpUpstreamConfig {
    /// The defaults, for the origin at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout_ms: default_timeout_ms(),
            blocking_timeout_ms: default_blocking_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_body_bytes: default_max_body_bytes(),
            max_idle_connections: default_max_idle_connections(),
            max_retries: default_max_retries(),
            backoff: Backoff::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Exponential backoff with "equal jitter": the `n`th retry waits between
/// half and all of `min(max, initial × 2ⁿ)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// Base delay before the first retry. Default 50 ms.
    pub initial_ms: u64,
    /// Largest base delay. Default 1000 ms.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial_ms: 50,
            max_ms: 1_000,
        }
    }
}

impl Backoff {
    /// The delay before retry `retry` (0 for the first), for `jitter` in
    /// `[0, 1]` (out-of-range values are clamped).
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let base = self
            .initial_ms
            .saturating_mul(1u64.checked_shl(retry).unwrap_or(u64::MAX))
            .min(self.max_ms);
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        // Whole milliseconds: f64 only for the random fraction.
        let half = base / 2;
        let extra = ((base - half) as f64 * jitter).round() as u64;
        Duration::from_millis(half + extra)
    }
}

/// Circuit breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// Time the breaker stays open before a trial request. Default 5000 ms.
    pub cool_down_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down_ms: 5_000,
        }
    }
}

/// Where a [`CircuitBreaker`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests go through.
    Closed,
    /// Requests fail at once.
    Open,
    /// The cool-down is over: the next request is a trial (or one is under
    /// way, and the others fail at once).
    HalfOpen,
}

impl BreakerState {
    /// A label for metrics: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Leave to send one request, from [`CircuitBreaker::try_acquire`]; hand it
/// back with [`CircuitBreaker::success`], [`CircuitBreaker::failure`] or
/// [`CircuitBreaker::abandon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "report the outcome to the breaker"]
pub enum Permit {
    /// The breaker was closed.
    Normal,
    /// The one trial request of a half-open breaker.
    Trial,
}

/// The breaker is open: no request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// When a trial request will be let through (`None`: one is under way).
    pub retry_at: Option<Instant>,
}

/// A sans-IO circuit breaker: closed → open after consecutive failures →
/// half-open after a cool-down, with one trial request → closed on its
/// success, open again on its failure.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Inner,
    /// Times the breaker opened.
    opened: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial: bool },
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Inner::Closed { failures: 0 },
            opened: 0,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many times the breaker has opened.
    pub fn times_opened(&self) -> u64 {
        self.opened
    }

    /// Ask to send a request at `now`.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
        match self.state {
            Inner::Closed { .. } => Ok(Permit::Normal),
            Inner::Open { until } if now < until => Err(Rejected {
                retry_at: Some(until),
            }),
            Inner::Open { .. } | Inner::HalfOpen { trial: false } => {
                self.state = Inner::HalfOpen { trial: true };
                Ok(Permit::Trial)
            }
            Inner::HalfOpen { trial: true } => Err(Rejected { retry_at: None }),
        }
    }

    /// The request answered.
    pub fn success(&mut self, permit: Permit) {
        match (permit, self.state) {
            (Permit::Trial, _) | (Permit::Normal, Inner::Closed { .. }) => {
                self.state = Inner::Closed { failures: 0 };
            }
            // A request from before the breaker opened says nothing about
            // the origin now; only the trial decides.
            (Permit::Normal, _) => {}
        }
    }

    /// The request failed at `now`.
    pub fn failure(&mut self, permit: Permit, now: Instant) {
        match (permit, self.state) {
            (Permit::Trial, _) => self.open(now),
            (Permit::Normal, Inner::Closed { failures }) => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold.max(1) {
                    self.open(now);
                } else {
                    self.state = Inner::Closed { failures };
                }
            }
            (Permit::Normal, _) => {}
        }
    }

    /// The request was dropped before it had an outcome.
    pub fn abandon(&mut self, permit: Permit) {
        if permit == Permit::Trial && self.state == (Inner::HalfOpen { trial: true }) {
            self.state = Inner::HalfOpen { trial: false };
        }
    }

    fn open(&mut self, now: Instant) {
        self.opened += 1;
        self.state = Inner::Open {
            until: now + Duration::from_millis(self.config.cool_down_ms),
        };
    }
}

/// Where [`HttpUpstream`] reads the time for its circuit breaker.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The configuration cannot make a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpUpstreamConfigError {
    /// `base_url` is not an `http` or `https` URL with a host and no query.
    #[error("upstream base_url {0:?} is not an http(s) URL with a host and no query")]
    BaseUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
}

/// Counters of an [`HttpUpstream`] (monotonic) and its breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpUpstreamStats {
    /// Requests asked of it (whole and streamed).
    pub requests: u64,
    /// Attempts sent to the origin (first tries and retries).
    pub attempts: u64,
    /// Retries.
    pub retries: u64,
    /// Attempts that counted as failures for the breaker.
    pub failures: u64,
    /// Requests refused because the breaker was open.
    pub rejected: u64,
    /// Bodies that broke off after their head (closed early, idle past
    /// the limit, too big).
    pub broken_bodies: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// The breaker now.
    pub breaker: BreakerState,
}

#[cfg(feature = "server")]
mod client {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use futures::future::BoxFuture;
    use futures::{FutureExt, StreamExt};
    use tracing::debug;

    use super::{
        BreakerState, CircuitBreaker, Clock, HttpUpstreamConfig, HttpUpstreamConfigError,
        HttpUpstreamStats, Permit, SystemClock,
    };
    use crate::upstream::{
        StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
    };

    /// A packager origin over HTTP; see the [module docs](super).
    #[derive(Clone)]
    pub struct HttpUpstream {
        inner: Arc<HttpInner>,
    }

    impl std::fmt::Debug for HttpUpstream {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HttpUpstream")
                .field("origin", &self.inner.origin)
                .field("breaker", &self.breaker_state())
                .finish_non_exhaustive()
        }
    }

    struct HttpInner {
        client: reqwest::Client,
        /// Base URL without a trailing `/`.
        base: String,
        /// `host:port`, for errors and logs.
        origin: String,
        config: HttpUpstreamConfig,
        breaker: Mutex<CircuitBreaker>,
        clock: Arc<dyn Clock>,
        requests: AtomicU64,
        attempts: AtomicU64,
        retries: AtomicU64,
        failures: AtomicU64,
        rejected: AtomicU64,
        broken_bodies: AtomicU64,
    }

    impl HttpUpstream {
        /// A client for the origin at `config.base_url`, on the system clock.
        pub fn new(config: HttpUpstreamConfig) -> Result<Self, HttpUpstreamConfigError> {
            Self::with_clock(config, Arc::new(SystemClock))
        }

        /// The same, reading the breaker's time from `clock`.
        pub fn with_clock(
            config: HttpUpstreamConfig,
            clock: Arc<dyn Clock>,
        ) -> Result<Self, HttpUpstreamConfigError> {
            let bad = || HttpUpstreamConfigError::BaseUrl(config.base_url.clone());
            let url = reqwest::Url::parse(&config.base_url).map_err(|_| bad())?;
            if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
                return Err(bad());
            }
            let host = url.host_str().ok_or_else(bad)?;
            let origin = match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            };
            let client = reqwest::Client::builder()
                .http1_only()
                .pool_max_idle_per_host(config.max_idle_connections)
                .pool_idle_timeout(Duration::from_secs(90))
                .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                .tcp_nodelay(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| HttpUpstreamConfigError::Client(e.to_string()))?;
            Ok(Self {
                inner: Arc::new(HttpInner {
                    client,
                    base: url.as_str().trim_end_matches('/').to_owned(),
                    origin,
                    breaker: Mutex::new(CircuitBreaker::new(config.breaker)),
                    config,
                    clock,
                    requests: AtomicU64::new(0),
                    attempts: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                    rejected: AtomicU64::new(0),
                    broken_bodies: AtomicU64::new(0),
                }),
            })
        }

        /// `host:port` of the origin (no path, no credentials).
        pub fn origin(&self) -> &str {
            &self.inner.origin
        }

        /// The circuit breaker's state now.
        pub fn breaker_state(&self) -> BreakerState {
            let now = self.inner.clock.now();
            self.inner.breaker().state(now)
        }

        /// Counters and the breaker's state, for metrics.
        pub fn stats(&self) -> HttpUpstreamStats {
            let i = &self.inner;
            let now = i.clock.now();
            let breaker = i.breaker();
            HttpUpstreamStats {
                requests: i.requests.load(Ordering::Relaxed),
                attempts: i.attempts.load(Ordering::Relaxed),
                retries: i.retries.load(Ordering::Relaxed),
                failures: i.failures.load(Ordering::Relaxed),
                rejected: i.rejected.load(Ordering::Relaxed),
                broken_bodies: i.broken_bodies.load(Ordering::Relaxed),
                breaker_opened: breaker.times_opened(),
                breaker: breaker.state(now),
            }
        }
    }

    /// Whether the origin may hold `req` until media exists.
    pub(super) fn may_block(req: &UpstreamRequest) -> bool {
        let file = req.path.rsplit('/').next().unwrap_or("");
        // Every playlist: a blocking one waits for its part, and any other
        // waits for the stream's first media (a player asking as the
        // publisher connects). Given the plain limit, such a request could
        // time out at the edge before the origin's own answer.
        let playlist = file.ends_with(".m3u8");
        let part = file.starts_with("part") && file.ends_with(".m4s");
        playlist || part
    }

    /// Headers that describe one hop, not the object.
    fn end_to_end(name: &str) -> bool {
        !matches!(
            name,
            "connection"
                | "keep-alive"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
        )
    }

    /// The origin's head, its body not read yet.
    struct Head {
        status: u16,
        headers: Vec<(String, String)>,
        response: reqwest::Response,
    }

    /// What one attempt came to.
    enum Attempt {
        Head(Head),
        /// No connection could be made: safe to retry.
        Connect(String),
        /// Any other failure (a declared body over the limit, a protocol
        /// error).
        Other(String),
    }

    /// The answer to give, from [`HttpInner::head`].
    enum Answer {
        /// A head whose body is still to be read (the one passed on).
        Head(Head),
        /// The last retryable `5xx`, its body already read.
        Whole(UpstreamResponse),
    }

    /// Reads the rest of `response` into memory, at most `max` bytes.
    async fn collect(mut response: reqwest::Response, max: usize) -> Result<bytes::Bytes, String> {
        let mut body = bytes::BytesMut::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(format!("body over {max} bytes"));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(e) => return Err(format!("body: {e}")),
            }
        }
    }

    impl HttpInner {
        fn breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
            self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
        }

        fn url(&self, req: &UpstreamRequest) -> String {
            match &req.query {
                Some(q) => format!("{}{}?{q}", self.base, req.path),
                None => format!("{}{}", self.base, req.path),
            }
        }

        /// The head's time limit for `req`, from now.
        fn deadline(&self, req: &UpstreamRequest) -> tokio::time::Instant {
            let limit = if may_block(req) {
                self.config.blocking_timeout_ms
            } else {
                self.config.timeout_ms
            };
            tokio::time::Instant::now() + Duration::from_millis(limit)
        }

        async fn attempt(&self, url: &str) -> Attempt {
            let response = match self.client.get(url).send().await {
                Ok(response) => response,
                Err(e) if e.is_connect() => return Attempt::Connect(e.to_string()),
                Err(e) => return Attempt::Other(e.to_string()),
            };
            let max = self.config.max_body_bytes;
            if response
                .content_length()
                .is_some_and(|len| len > max as u64)
            {
                return Attempt::Other(format!("body over {max} bytes"));
            }
            let headers = response
                .headers()
                .iter()
                .filter(|(name, _)| end_to_end(name.as_str()))
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            Attempt::Head(Head {
                status: response.status().as_u16(),
                headers,
                response,
            })
        }

        /// Sends `req` under the retry and breaker rules until there is an
        /// answer to give: a head (its body unread) or the last retryable
        /// `5xx`. Nothing of a body has been passed on when this returns,
        /// so every retry happens here.
        async fn head(
            &self,
            req: &UpstreamRequest,
            deadline: tokio::time::Instant,
        ) -> Result<Answer, UpstreamError> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let blocking = may_block(req);
            let url = self.url(req);
            // The last retryable outcome: a 5xx response or a connect error.
            let mut last: Option<Result<UpstreamResponse, UpstreamError>> = None;
            let mut retry = 0;
            loop {
                let acquired = self.breaker().try_acquire(self.clock.now());
                let permit = match acquired {
                    Ok(permit) => permit,
                    Err(_) => {
                        self.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(UpstreamError::CircuitOpen(self.origin.clone()));
                    }
                };
                // Hands the permit back if this future is dropped mid-attempt.
                let mut held = HeldPermit {
                    inner: self,
                    permit: Some(permit),
                };
                self.attempts.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout_at(deadline, self.attempt(&url)).await {
                    // The packager's answer to a hold that ran out: the part
                    // did not come in time. Nothing is wrong with the origin,
                    // and asking again would only hold the viewer longer.
                    Ok(Attempt::Head(head)) if head.status == 503 && blocking => {
                        held.finish(Some(false));
                        return Ok(Answer::Head(head));
                    }
                    Ok(Attempt::Head(head)) if matches!(head.status, 502..=504) => {
                        // A 503 from the packager is about one stream (no
                        // media yet, a part that did not come): retried,
                        // but never held against the origin, or one stalled
                        // stream would open the breaker for every stream.
                        held.finish((head.status != 503).then_some(true));
                        // Read (bounded, within the limit) so that the
                        // connection can be reused and the origin's reason
                        // given if this stays the last answer.
                        let status = head.status;
                        let headers = head.headers;
                        let body = tokio::time::timeout_at(
                            deadline,
                            collect(head.response, self.config.max_body_bytes),
                        )
                        .await;
                        last = Some(match body {
                            Ok(Ok(body)) => Ok(UpstreamResponse {
                                status,
                                headers,
                                body,
                            }),
                            Ok(Err(e)) => Err(UpstreamError::Unreachable(e)),
                            Err(_) => Err(UpstreamError::Timeout),
                        });
                    }
                    Ok(Attempt::Head(head)) => {
                        held.finish(Some(false));
                        return Ok(Answer::Head(head));
                    }
                    Ok(Attempt::Connect(e)) => {
                        held.finish(Some(true));
                        debug!(origin = %self.origin, error = %e, "upstream connect failed");
                        last = Some(Err(UpstreamError::Unreachable(e)));
                    }
                    Ok(Attempt::Other(e)) => {
                        // The origin answered, in a way that is about this
                        // object more than the origin's health.
                        held.finish(None);
                        debug!(origin = %self.origin, error = %e, "upstream request failed");
                        return Err(UpstreamError::Unreachable(e));
                    }
                    Err(_) => {
                        // A held request that outlived its wait is about
                        // its stream (the part never came); only a plain
                        // request going unanswered says the origin is sick.
                        held.finish((!blocking).then_some(true));
                        // An earlier 5xx is the origin's own answer: better
                        // than no answer.
                        return match last {
                            Some(Ok(r)) => Ok(Answer::Whole(r)),
                            _ => Err(UpstreamError::Timeout),
                        };
                    }
                }
                let delay = self.config.backoff.delay(retry, rand::random::<f64>());
                if retry >= self.config.max_retries
                    || tokio::time::Instant::now() + delay >= deadline
                {
                    return match last {
                        Some(Ok(r)) => Ok(Answer::Whole(r)),
                        Some(Err(e)) => Err(e),
                        None => Err(UpstreamError::Timeout),
                    };
                }
                tokio::time::sleep(delay).await;
                retry += 1;
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
        }

        /// A body that broke off after its head: counted and logged.
        fn broken(&self, path: &str, error: &UpstreamError) {
            self.broken_bodies.fetch_add(1, Ordering::Relaxed);
            debug!(origin = %self.origin, path, error = %error, "upstream body broke off");
        }

        async fn fetch(
            self: Arc<Self>,
            req: UpstreamRequest,
        ) -> Result<UpstreamResponse, UpstreamError> {
            let deadline = self.deadline(&req);
            let head = match self.head(&req, deadline).await? {
                Answer::Whole(response) => return Ok(response),
                Answer::Head(head) => head,
            };
            let body = tokio::time::timeout_at(
                deadline,
                collect(head.response, self.config.max_body_bytes),
            )
            .await;
            let body = match body {
                Ok(Ok(body)) => body,
                Ok(Err(e)) => {
                    let e = UpstreamError::Unreachable(e);
                    self.broken(&req.path, &e);
                    return Err(e);
                }
                Err(_) => {
                    self.broken(&req.path, &UpstreamError::Timeout);
                    return Err(UpstreamError::Timeout);
                }
            };
            Ok(UpstreamResponse {
                status: head.status,
                headers: head.headers,
                body,
            })
        }

        async fn fetch_stream(
            self: Arc<Self>,
            req: UpstreamRequest,
        ) -> Result<StreamingResponse, UpstreamError> {
            let deadline = self.deadline(&req);
            let head = match self.head(&req, deadline).await? {
                Answer::Whole(response) => return Ok(response.into()),
                Answer::Head(head) => head,
            };
            let idle = Duration::from_millis(self.config.idle_timeout_ms);
            let max = self.config.max_body_bytes;
            let inner = self.clone();
            let path: Arc<str> = req.path.into();
            // State: the response while the body lasts, the bytes passed on.
            let chunks =
                futures::stream::unfold((Some(head.response), 0usize), move |(response, taken)| {
                    let inner = inner.clone();
                    let path = path.clone();
                    async move {
                        let mut response = response?;
                        let next = match tokio::time::timeout(idle, response.chunk()).await {
                            Err(_) => Err(UpstreamError::Timeout),
                            Ok(Ok(None)) => return None,
                            Ok(Err(e)) => Err(UpstreamError::Unreachable(format!("body: {e}"))),
                            Ok(Ok(Some(chunk))) if taken + chunk.len() > max => {
                                Err(UpstreamError::Unreachable(format!("body over {max} bytes")))
                            }
                            Ok(Ok(Some(chunk))) => Ok(chunk),
                        };
                        match next {
                            Ok(chunk) => {
                                let taken = taken + chunk.len();
                                Some((Ok(chunk), (Some(response), taken)))
                            }
                            // The error ends the body: the connection is
                            // dropped with it, never reused half-read.
                            Err(e) => {
                                inner.broken(&path, &e);
                                Some((Err(e), (None, taken)))
                            }
                        }
                    }
                });
            Ok(StreamingResponse {
                status: head.status,
                headers: head.headers,
                body: chunks.boxed(),
            })
        }
    }

    /// A breaker permit that reports `abandon` if dropped unreported.
    struct HeldPermit<'a> {
        inner: &'a HttpInner,
        permit: Option<Permit>,
    }

    impl HeldPermit<'_> {
        /// Report a failure (`Some(true)`), a success (`Some(false)`) or
        /// neither (`None`).
        fn finish(&mut self, failed: Option<bool>) {
            let Some(permit) = self.permit.take() else {
                return;
            };
            let now = self.inner.clock.now();
            let mut breaker = self.inner.breaker();
            match failed {
                Some(true) => {
                    self.inner.failures.fetch_add(1, Ordering::Relaxed);
                    breaker.failure(permit, now);
                }
                Some(false) => breaker.success(permit),
                None => breaker.abandon(permit),
            }
        }
    }

    impl Drop for HeldPermit<'_> {
        fn drop(&mut self) {
            if let Some(permit) = self.permit.take() {
                self.inner.breaker().abandon(permit);
            }
        }
    }

    impl Upstream for HttpUpstream {
        fn fetch(
            &self,
            req: UpstreamRequest,
        ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
            self.inner.clone().fetch(req).boxed()
        }

        fn fetch_stream(
            &self,
            req: UpstreamRequest,
        ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
            self.inner.clone().fetch_stream(req).boxed()
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]

        use super::*;

        #[test]
        fn which_requests_may_be_held() {
            let req = |path: &str, query: Option<&str>| UpstreamRequest {
                path: path.into(),
                query: query.map(Into::into),
            };
            assert!(may_block(&req("/live/cam/stream.m3u8", Some("_HLS_msn=3"))));
            assert!(may_block(&req(
                "/live/cam/720p/stream.m3u8",
                Some("_HLS_part=1&_HLS_msn=3")
            )));
            assert!(may_block(&req("/live/cam/part3.1.m4s", None)));
            // The origin holds these until the stream has media.
            assert!(may_block(&req("/live/cam/index.m3u8", None)));
            assert!(may_block(&req("/live/cam/stream.m3u8", None)));
            assert!(may_block(&req(
                "/live/cam/stream.m3u8",
                Some("_HLS_skip=YES")
            )));
            assert!(!may_block(&req("/live/cam/seg3.m4s", None)));
            assert!(!may_block(&req("/live/cam/init0.mp4", None)));
        }

        #[test]
        fn base_url_is_checked() {
            for bad in ["", "packager:8080", "ftp://x/", "http://x/?a=1", "http://"] {
                assert!(
                    HttpUpstream::new(HttpUpstreamConfig::new(bad)).is_err(),
                    "{bad}"
                );
            }
            let ok =
                HttpUpstream::new(HttpUpstreamConfig::new("http://127.0.0.1:9/origin/")).unwrap();
            assert_eq!(ok.inner.base, "http://127.0.0.1:9/origin");
            assert_eq!(ok.origin(), "127.0.0.1:9");
            assert_eq!(ok.breaker_state(), BreakerState::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 1_000,
        };
        let ms = |retry, jitter| b.delay(retry, jitter).as_millis();
        assert_eq!([ms(0, 0.0), ms(0, 1.0)], [50, 100]);
        assert_eq!([ms(1, 0.0), ms(1, 0.5), ms(1, 1.0)], [100, 150, 200]);
        assert_eq!([ms(3, 0.0), ms(3, 1.0)], [400, 800]);
        assert_eq!([ms(4, 0.0), ms(4, 1.0)], [500, 1_000]);
        assert_eq!(ms(200, 1.0), 1_000);
        assert_eq!([ms(0, -3.0), ms(0, f64::NAN), ms(0, 7.0)], [50, 50, 100]);
    }

    proptest! {
        #[test]
        fn backoff_stays_in_its_band(
            initial in 0u64..10_000, max in 0u64..100_000, retry in 0u32..100, jitter in 0.0f64..=1.0,
        ) {
            let b = Backoff { initial_ms: initial, max_ms: max };
            let d = b.delay(retry, jitter).as_millis() as u64;
            let base = initial.saturating_mul(1u64.checked_shl(retry).unwrap_or(u64::MAX)).min(max);
            prop_assert!(d >= base / 2 && d <= base);
            // Never shrinks from one retry to the next (at the same jitter).
            prop_assert!(b.delay(retry + 1, jitter) >= b.delay(retry, jitter));
        }
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_a_trial_closes_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 3,
            cool_down_ms: 10_000,
        });
        // A success in between resets the count.
        for _ in 0..2 {
            let p = b.try_acquire(t0).unwrap();
            b.failure(p, t0);
        }
        let p = b.try_acquire(t0).unwrap();
        b.success(p);
        for _ in 0..2 {
            let p = b.try_acquire(t0).unwrap();
            b.failure(p, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        // A request sent before the breaker opens and answered after.
        let late = b.try_acquire(t0).unwrap();
        let p = b.try_acquire(t0).unwrap();
        b.failure(p, t0 + s(1));
        assert_eq!(b.state(t0 + s(1)), BreakerState::Open);
        assert_eq!(b.times_opened(), 1);
        b.success(late);
        assert_eq!(
            b.state(t0 + s(2)),
            BreakerState::Open,
            "only a trial closes it"
        );
        assert_eq!(
            b.try_acquire(t0 + s(5)),
            Err(Rejected {
                retry_at: Some(t0 + s(11))
            })
        );
        // Half-open after the cool-down: one trial, the others refused.
        assert_eq!(b.state(t0 + s(11)), BreakerState::HalfOpen);
        let trial = b.try_acquire(t0 + s(11)).unwrap();
        assert_eq!(trial, Permit::Trial);
        assert_eq!(b.try_acquire(t0 + s(11)), Err(Rejected { retry_at: None }));
        // The trial fails: open for another cool-down.
        b.failure(trial, t0 + s(12));
        assert_eq!(b.state(t0 + s(21)), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
        // An abandoned trial lets the next request try.
        let trial = b.try_acquire(t0 + s(22)).unwrap();
        b.abandon(trial);
        let trial = b.try_acquire(t0 + s(22)).unwrap();
        assert_eq!(trial, Permit::Trial);
        b.success(trial);
        assert_eq!(b.state(t0 + s(22)), BreakerState::Closed);
        assert_eq!(b.try_acquire(t0 + s(22)), Ok(Permit::Normal));
    }

    #[test]
    fn the_origin_section_needs_only_a_base_url() {
        let config: HttpUpstreamConfig = toml::from_str(
            r#"
            base_url = "http://packager:8080"
            idle_timeout_ms = 2000
            breaker = { failure_threshold = 3 }
            "#,
        )
        .unwrap();
        assert_eq!(
            config,
            HttpUpstreamConfig {
                idle_timeout_ms: 2_000,
                breaker: BreakerConfig {
                    failure_threshold: 3,
                    ..BreakerConfig::default()
                },
                ..HttpUpstreamConfig::new("http://packager:8080")
            }
        );
        let missing = toml::from_str::<HttpUpstreamConfig>("timeout_ms = 1").unwrap_err();
        assert!(missing.to_string().contains("base_url"), "{missing}");
        let typo = toml::from_str::<HttpUpstreamConfig>("base_url = \"http://x\"\ntimeout = 1")
            .unwrap_err();
        assert!(typo.to_string().contains("timeout"), "{typo}");
    }
}
