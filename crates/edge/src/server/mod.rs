//! The edge server: HTTPS with HTTP/1.1 and HTTP/2 on TCP, HTTP/3 on UDP
//! at the same port number, an optional plain-HTTP listener for
//! development, all answering through one [`Handler`].
//!
//! TCP responses carry `Alt-Svc: h3=":PORT"; ma=86400` when HTTP/3 is on.
//! With no `tls_cert`/`tls_key`, a self-signed certificate is generated at
//! start. Either way the base64 SHA-256 of the leaf certificate's
//! SubjectPublicKeyInfo is logged at start and returned by
//! [`EdgeServer::spki_sha256`] (what Chromium's
//! `--ignore-certificate-errors-spki-list` and pinning clients take).
//!
//! Every listener puts the peer address in each request's extensions
//! ([`ClientAddr`]); the [`Handler`] checks the per-IP and per-token rate
//! limits (`[edge.limits]`, [`crate::limits`]) before anything else.
//!
//! [`EdgeServer::shutdown`] drains: it stops accepting connections, sends
//! HTTP/2 and HTTP/3 GOAWAY (HTTP/1.1 connections close after their
//! current response), lets requests in flight finish (blocking playlist
//! requests, parts still streaming) up to a deadline, then closes the
//! rest and reports how many it cut off.
//!
//! Media bodies are streamed: a part the origin is still writing reaches
//! the viewer chunk by chunk as it is written (HTTP/1.1 chunked, HTTP/2 and
//! HTTP/3 DATA frames); a body that breaks off aborts the response rather
//! than ending it, so a client never takes a truncated part for a whole one.
//!
//! ```no_run
//! # async fn run(router: axum::Router, config: ferrocast_edge::EdgeConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use ferrocast_edge::InProcessUpstream;
//! use ferrocast_edge::server::{EdgeMetrics, EdgeServer};
//!
//! let upstream = Arc::new(InProcessUpstream::new(router, Duration::from_secs(10)));
//! let server = EdgeServer::start(&config, upstream, EdgeMetrics::new()?).await?;
//! println!("https={}", server.https_addr());
//! // On SIGTERM: 30 s for requests in flight to finish.
//! let report = server.shutdown(Duration::from_secs(30)).await;
//! println!("cut off {} requests", report.cut_off);
//! # Ok(()) }
//! ```

mod h3;
mod limits;
mod metrics;
pub mod player;
pub mod range;
mod routes;

/// How the edge reads a request path: its route (`multivariant`,
/// `playlist`, `init`, `part`, `segment`, `vod_multivariant`,
/// `vod_playlist`, `vod_media`) and the stream it belongs to (whose JWT or
/// token it needs), or `None` for a path it refuses with 404.
pub fn route_of(path: &str) -> Option<(&'static str, &str)> {
    routes::parse_path(path).map(|target| (target.kind(), target.stream()))
}
mod tls;
mod upstream_metrics;

use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ferrocast_connections::{Activity, Admission, ConnectionLimits, RequestGuard, http_builder};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use http::HeaderValue;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub use limits::ClientAddr;
pub use metrics::EdgeMetrics;
pub use routes::{Clock, Handler, Protocol, ResponseBody};
pub use upstream_metrics::OriginStats;

use crate::upstream::{Upstream, UpstreamError};
use crate::{EdgeConfig, EdgeConfigError};

/// Tries at finding a port free on both TCP and UDP when asked for port 0.
const PORT_TRIES: usize = 16;

/// Why the edge server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The token, JWT or rewriter settings.
    #[error(transparent)]
    Config(#[from] EdgeConfigError),
    /// A PEM file that cannot be read or holds nothing usable.
    #[error("cannot use PEM file {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (never key material).
        reason: String,
    },
    /// TLS set-up failed (certificate and key do not match, ...).
    #[error("TLS: {0}")]
    Tls(String),
    /// A listener could not bind.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics could not be created.
    #[error("edge metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running edge. Dropping it stops every listener and closes every
/// connection at once; [`EdgeServer::shutdown`] drains them first.
#[derive(Debug)]
pub struct EdgeServer {
    https: SocketAddr,
    h3: Option<SocketAddr>,
    plain: Option<SocketAddr>,
    spki_sha256: String,
    endpoint: Option<quinn::Endpoint>,
    metrics: EdgeMetrics,
    /// One per listener; each ends once its connections have ended.
    tasks: Vec<JoinHandle<()>>,
    /// Work beside the listeners (viewer counting); aborted last.
    background: Vec<JoinHandle<()>>,
    /// Taken by `shutdown`; dropping it stops everything.
    phase: Option<watch::Sender<Phase>>,
    /// Requests in flight on every listener.
    requests: Tracker,
    /// One entry per listener still accepting connections.
    accepting: Tracker,
}

impl EdgeServer {
    /// Binds the listeners of `config` and serves `upstream` through them.
    pub async fn start(
        config: &EdgeConfig,
        upstream: Arc<dyn Upstream>,
        metrics: EdgeMetrics,
    ) -> Result<EdgeServer, ServerError> {
        config.validate()?;
        let handler = Handler::new(config, upstream, metrics.clone())?;
        EdgeServer::start_with_handler(config, handler, metrics).await
    }

    /// [`EdgeServer::start`] with a handler built by the caller (for a
    /// test clock).
    pub async fn start_with_handler(
        config: &EdgeConfig,
        handler: Handler,
        metrics: EdgeMetrics,
    ) -> Result<EdgeServer, ServerError> {
        let identity = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => tls::load(cert, key)?,
            (None, None) => tls::self_signed(config.https_listen.ip())?,
            _ => return Err(EdgeConfigError::CertWithoutKey.into()),
        };
        let acceptor = TlsAcceptor::from(Arc::new(tls::tcp_config(&identity)?));
        let (listener, endpoint) = if config.http3 {
            let quic = tls::quic_config(&identity, &config.connections)?;
            let (listener, endpoint) = bind_pair(config.https_listen, quic).await?;
            (listener, Some(endpoint))
        } else {
            let listener = bind_tcp(config.https_listen).await?;
            (listener, None)
        };
        let https = local_addr(&listener, config.https_listen)?;
        let spki = &identity.spki_sha256;
        match &config.tls_cert {
            Some(cert) => info!(
                spki_sha256 = %spki,
                cert = %cert.display(),
                "edge: serving the configured certificate"
            ),
            None => info!(
                spki_sha256 = %spki,
                "edge: no tls_cert configured, serving a self-signed certificate generated at start \
                 (Chromium: --ignore-certificate-errors-spki-list={spki})"
            ),
        }
        let alt_svc = endpoint.as_ref().and_then(|_| {
            HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", https.port())).ok()
        });
        let (phase, _) = watch::channel(Phase::Serving);
        let life = Lifecycle {
            phase: phase.subscribe(),
            requests: Tracker::default(),
        };
        let accepting = Tracker::default();
        // Listener tasks (they end once drained) and background tasks
        // (stopped once the listeners are done).
        let mut tasks = Vec::new();
        let mut background = Vec::new();
        // Viewer counting: periodic sweep, gauges and Redis sync (crate::viewers).
        background.extend(handler.viewers().start());
        let h3 = match &endpoint {
            Some(endpoint) => {
                let addr = endpoint.local_addr().map_err(|source| ServerError::Bind {
                    addr: config.https_listen,
                    source,
                })?;
                tasks.push(tokio::spawn(h3::serve(
                    endpoint.clone(),
                    handler.clone(),
                    life.clone(),
                    accepting.enter(),
                    h3::Limits::new(&config.connections, &metrics),
                )));
                Some(addr)
            }
            None => None,
        };
        tasks.push(tokio::spawn(serve_tcp(
            listener,
            Some(acceptor),
            handler.clone(),
            alt_svc,
            life.clone(),
            accepting.enter(),
            Limits::new(&config.connections, &metrics, "https"),
        )));
        let plain = match config.plain_http_listen {
            Some(addr) => {
                let listener = bind_tcp(addr).await?;
                let bound = local_addr(&listener, addr)?;
                tasks.push(tokio::spawn(serve_tcp(
                    listener,
                    None,
                    handler,
                    None,
                    life.clone(),
                    accepting.enter(),
                    Limits::new(&config.connections, &metrics, "plain"),
                )));
                Some(bound)
            }
            None => None,
        };
        info!(https = %https, h3 = ?h3, plain_http = ?plain, "edge listening");
        Ok(EdgeServer {
            https,
            h3,
            plain,
            spki_sha256: identity.spki_sha256,
            endpoint,
            metrics,
            tasks,
            background,
            phase: Some(phase),
            requests: life.requests,
            accepting,
        })
    }

    /// The HTTPS (TCP) address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The HTTP/3 (UDP) address, when HTTP/3 is on: the same port number.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3
    }

    /// The plain-HTTP address, when configured.
    pub fn plain_http_addr(&self) -> Option<SocketAddr> {
        self.plain
    }

    /// Base64 (standard alphabet, padded) of the SHA-256 of the leaf
    /// certificate's DER SubjectPublicKeyInfo: of the generated
    /// certificate, or of the first certificate in `tls_cert`. Equal to
    /// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
    /// openssl dgst -sha256 -binary | base64`.
    pub fn spki_sha256(&self) -> Option<&str> {
        Some(&self.spki_sha256)
    }

    /// The edge's metrics.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }

    /// Requests being answered now, on every listener (a response whose
    /// body is still being sent counts).
    pub fn requests_in_flight(&self) -> usize {
        self.requests.count()
    }

    /// Shuts the edge down gracefully; must be called within the tokio
    /// runtime the server runs on.
    ///
    /// At once: the TCP listeners close (new connections are refused),
    /// QUIC refuses new connections, HTTP/2 and HTTP/3 connections get
    /// GOAWAY and HTTP/1.1 connections close after their current
    /// response. Requests in flight — blocking playlist requests, parts
    /// still streaming — go on for up to `drain`; then every connection
    /// still open is closed and the requests still in flight are counted
    /// as cut off. Await the returned [`Shutdown`] for the
    /// [`ShutdownReport`]; the shutdown goes on even if it is dropped.
    pub fn shutdown(mut self, drain: Duration) -> Shutdown {
        let phase = self.phase.take();
        let tasks = std::mem::take(&mut self.tasks);
        let background = std::mem::take(&mut self.background);
        let endpoint = self.endpoint.take();
        let requests = self.requests.clone();
        let accepting = self.accepting.clone();
        let task = tokio::spawn(async move {
            let report = drain_then_close(phase, tasks, endpoint, requests, drain).await;
            for task in background {
                task.abort();
            }
            report
        });
        Shutdown { accepting, task }
    }
}

impl Drop for EdgeServer {
    fn drop(&mut self) {
        // Dropping `phase` (when still here) stops every connection task.
        if let Some(endpoint) = &self.endpoint {
            endpoint.close(0u32.into(), b"shutdown");
        }
        for task in self.tasks.iter().chain(&self.background) {
            task.abort();
        }
    }
}

/// A shutdown under way, from [`EdgeServer::shutdown`]. Await it for the
/// [`ShutdownReport`].
#[derive(Debug)]
pub struct Shutdown {
    accepting: Tracker,
    task: JoinHandle<ShutdownReport>,
}

impl Shutdown {
    /// Resolves once no listener accepts new connections: the TCP
    /// listeners are closed and QUIC refuses new connections.
    pub async fn stopped_accepting(&self) {
        self.accepting.idle().await;
    }
}

impl IntoFuture for Shutdown {
    type Output = ShutdownReport;
    type IntoFuture = BoxFuture<'static, ShutdownReport>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            // The task only fails if the runtime is going away, which
            // stops every connection anyway.
            self.task.await.unwrap_or_default()
        })
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Requests in flight when the shutdown began.
    pub in_flight: usize,
    /// Requests still in flight when the drain deadline passed, whose
    /// connections were then closed under them.
    pub cut_off: usize,
}

async fn drain_then_close(
    phase: Option<watch::Sender<Phase>>,
    mut tasks: Vec<JoinHandle<()>>,
    endpoint: Option<quinn::Endpoint>,
    requests: Tracker,
    drain: Duration,
) -> ShutdownReport {
    let in_flight = requests.count();
    info!(in_flight, drain_ms = drain.as_millis(), "edge: draining");
    if let Some(phase) = &phase {
        phase.send_replace(Phase::Draining);
    }
    // Each listener task ends once its connections have all closed.
    let listeners = futures::future::join_all(tasks.iter_mut());
    let cut_off = match tokio::time::timeout(drain, listeners).await {
        Ok(_) => 0,
        Err(_) => {
            let cut_off = requests.count();
            // Every connection task closes its connection on this.
            if let Some(phase) = &phase {
                phase.send_replace(Phase::Stopped);
            }
            for task in &tasks {
                task.abort();
            }
            cut_off
        }
    };
    drop(phase);
    if let Some(endpoint) = endpoint {
        endpoint.close(0u32.into(), b"shutdown");
        // Bounded by QUIC itself: three probe timeouts (RFC 9000 §10.2).
        endpoint.wait_idle().await;
    }
    if cut_off == 0 {
        info!(in_flight, "edge: shut down, every request finished");
    } else {
        warn!(
            in_flight,
            cut_off, "edge: shut down, requests cut off at the drain deadline"
        );
    }
    ShutdownReport { in_flight, cut_off }
}

/// Where the server is in its life; only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Accept nothing new, let requests in flight finish.
    Draining,
    /// Close everything now.
    Stopped,
}

/// What every listener task shares: the phase and the in-flight count.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    phase: watch::Receiver<Phase>,
    requests: Tracker,
}

impl Lifecycle {
    /// Resolves once the server reaches `phase` (or is dropped).
    fn reached(&self, phase: Phase) -> impl Future<Output = ()> + use<> {
        let mut rx = self.phase.clone();
        async move {
            // An error means the sender is gone: the server was dropped.
            let _ = rx.wait_for(|now| *now >= phase).await;
        }
    }

    /// Resolves once the server starts draining.
    pub(crate) fn draining(&self) -> impl Future<Output = ()> + use<> {
        self.reached(Phase::Draining)
    }

    /// Resolves once the server closes everything.
    pub(crate) fn stopped(&self) -> impl Future<Output = ()> + use<> {
        self.reached(Phase::Stopped)
    }

    /// Counts a request in flight until the guard drops.
    pub(crate) fn request(&self) -> TrackerGuard {
        self.requests.enter()
    }
}

/// A count of things in progress that can be waited on to reach zero.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    count: AtomicUsize,
    idle: Notify,
}

/// One thing in progress; dropping it ends it.
#[derive(Debug)]
pub(crate) struct TrackerGuard(Arc<TrackerInner>);

impl Tracker {
    pub(crate) fn enter(&self) -> TrackerGuard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.0.clone())
    }

    pub(crate) fn count(&self) -> usize {
        self.0.count.load(Ordering::SeqCst)
    }

    /// Resolves once nothing is in progress.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a drop in between wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

fn local_addr(listener: &TcpListener, asked: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: asked,
        source,
    })
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Binds TCP and UDP on one port number. With port 0 the TCP listener
/// picks a port and UDP follows; if UDP finds it taken, try another.
async fn bind_pair(
    addr: SocketAddr,
    quic: quinn::ServerConfig,
) -> Result<(TcpListener, quinn::Endpoint), ServerError> {
    let mut last_error = None;
    for _ in 0..PORT_TRIES {
        let listener = bind_tcp(addr).await?;
        let port = local_addr(&listener, addr)?.port();
        let udp = SocketAddr::new(addr.ip(), port);
        match quinn::Endpoint::server(quic.clone(), udp) {
            Ok(endpoint) => return Ok((listener, endpoint)),
            Err(source) if addr.port() == 0 => last_error = Some(source),
            Err(source) => return Err(ServerError::Bind { addr: udp, source }),
        }
    }
    Err(ServerError::Bind {
        addr,
        source: last_error.unwrap_or_else(|| std::io::Error::other("no free TCP+UDP port")),
    })
}

/// Waits a little after a failed `accept` (out of file descriptors) rather
/// than spinning.
async fn accept_backoff(error: &std::io::Error) {
    warn!(error = %error, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Accepts TCP connections (with TLS when `tls` is set) until the server
/// drains, then closes the listener and waits for its connections to end.
async fn serve_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    alt_svc: Option<HeaderValue>,
    life: Lifecycle,
    accepting: TrackerGuard,
    limits: Arc<Limits>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_backoff(&e).await;
                    continue;
                }
            },
            () = life.draining() => break,
        };
        // Refused before a byte is read: no TLS handshake, no buffers.
        let permit = match limits.admission.admit(remote.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                debug!(%remote, %refusal, "connection refused");
                continue;
            }
        };
        let connection = Connection {
            limits: limits.clone(),
            handler: handler.clone(),
            alt_svc: alt_svc.clone(),
            remote,
            life: life.clone(),
            // Taken before the task starts, so a shutdown signalled while
            // its TLS handshake runs still reaches it.
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        let handshake_timeout = limits.handshake_timeout;
        let stopped = life.stopped();
        tokio::spawn(async move {
            let _permit = permit;
            let serve = async move {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => serve_connection(tls, connection).await,
                            Ok(Err(e)) => debug!(%remote, error = %e, "TLS handshake failed"),
                            Err(_) => debug!(%remote, "TLS handshake timed out"),
                        }
                    }
                    None => serve_connection(tcp, connection).await,
                }
            };
            tokio::select! {
                () = serve => {}
                () = stopped => debug!(%remote, "connection closed at shutdown"),
            }
        });
    }
    drop(listener);
    drop(accepting);
    // Sends GOAWAY / closes idle keep-alive connections, then waits for
    // every watched connection to end.
    graceful.shutdown().await;
}

/// A hyper body for `body`; a stream error aborts the response (hyper
/// resets the HTTP/2 stream or closes the HTTP/1.1 connection before the
/// last chunk).
fn hyper_body(body: ResponseBody) -> UnsyncBoxBody<bytes::Bytes, UpstreamError> {
    match body {
        ResponseBody::Full(bytes) => Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
        ResponseBody::Stream(stream) => StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync(),
    }
}

/// A response body that counts its request as in flight until hyper has
/// sent it (or dropped it with its connection).
struct TrackedBody {
    body: UnsyncBoxBody<bytes::Bytes, UpstreamError>,
    _request: (TrackerGuard, RequestGuard),
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A TCP listener's connection limits: its admission and the builder and
/// idle timeout its connections are served with.
struct Limits {
    admission: Arc<Admission>,
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    /// The TLS handshake gets the header-read timeout: a client slow to
    /// finish it is a slowloris one layer down.
    handshake_timeout: Duration,
}

impl Limits {
    fn new(config: &ConnectionLimits, metrics: &EdgeMetrics, listener: &str) -> Arc<Limits> {
        Arc::new(Limits {
            admission: Admission::for_listener(config, &metrics.connections, listener),
            builder: http_builder(config),
            idle_timeout: config.idle_timeout(),
            handshake_timeout: config.header_read_timeout(),
        })
    }
}

/// What one TCP connection needs.
struct Connection {
    limits: Arc<Limits>,
    handler: Handler,
    alt_svc: Option<HeaderValue>,
    remote: SocketAddr,
    life: Lifecycle,
    watcher: Watcher,
}

/// HTTP/1.1 or HTTP/2 (by ALPN, or the HTTP/2 preface on plain TCP) on one
/// connection, shut down gracefully when the server drains.
async fn serve_connection<I>(io: I, connection: Connection)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Connection {
        limits,
        handler,
        alt_svc,
        remote,
        life,
        watcher,
    } = connection;
    let activity = Activity::new();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let handler = handler.clone();
        let alt_svc = alt_svc.clone();
        let in_flight = (life.request(), requests.request());
        async move {
            let protocol = if request.version() == http::Version::HTTP_2 {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            let (mut parts, _body) = request.into_parts();
            parts.extensions.insert(ClientAddr(remote));
            // Past the drain deadline the connection is dropped, and this
            // future with it (HTTP/2: hyper drops a stream's service
            // future when its connection goes).
            let mut response = handler
                .serve(protocol, http::Request::from_parts(parts, ()))
                .await;
            if let Some(alt_svc) = alt_svc {
                response
                    .headers_mut()
                    .insert(http::header::ALT_SVC, alt_svc);
            }
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body: hyper_body(body),
                _request: in_flight,
            }))
        }
    });
    let connection = limits.builder.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        result = watcher.watch(connection) => if let Err(e) = result {
            debug!(error = %e, "HTTP connection ended with an error");
        },
        // HTTP/2 and the sniffing of the first bytes have no timer of their
        // own; HTTP/1.1's header-read timeout also covers keep-alive waits.
        () = activity.idle(limits.idle_timeout) => {
            limits.admission.closed_idle();
            debug!(%remote, "idle connection closed");
        }
    }
}
