//! The edge server: HTTPS with HTTP/1.1 and HTTP/2 on TCP, HTTP/3 on UDP
//! at the same port number, an optional plain-HTTP listener for
//! development, all answering through one [`Handler`].
//!
//! TCP responses carry `Alt-Svc: h3=":PORT"; ma=86400` when HTTP/3 is on.
//! With no `tls_cert`/`tls_key`, a self-signed certificate is generated at
//! start and the base64 SHA-256 of its SubjectPublicKeyInfo is logged and
//! returned by [`EdgeServer::spki_sha256`] (what Chromium's
//! `--ignore-certificate-errors-spki-list` and pinning clients take).
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
//! # Ok(()) }
//! ```

mod h3;
mod metrics;
mod routes;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use http::HeaderValue;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub use metrics::EdgeMetrics;
pub use routes::{Clock, Handler, Protocol, ResponseBody};

use crate::upstream::{Upstream, UpstreamError};
use crate::{EdgeConfig, EdgeConfigError};

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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

/// A running edge. Dropping it stops every listener.
#[derive(Debug)]
pub struct EdgeServer {
    https: SocketAddr,
    h3: Option<SocketAddr>,
    plain: Option<SocketAddr>,
    spki_sha256: Option<String>,
    endpoint: Option<quinn::Endpoint>,
    metrics: EdgeMetrics,
    tasks: Vec<JoinHandle<()>>,
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
            let quic = tls::quic_config(&identity)?;
            let (listener, endpoint) = bind_pair(config.https_listen, quic).await?;
            (listener, Some(endpoint))
        } else {
            let listener = bind_tcp(config.https_listen).await?;
            (listener, None)
        };
        let https = local_addr(&listener, config.https_listen)?;
        if let Some(spki) = &identity.spki_sha256 {
            info!(
                spki_sha256 = %spki,
                "edge: no tls_cert configured, serving a self-signed certificate generated at start \
                 (Chromium: --ignore-certificate-errors-spki-list={spki})"
            );
        }
        let alt_svc = endpoint.as_ref().and_then(|_| {
            HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", https.port())).ok()
        });
        let mut tasks = Vec::new();
        let h3 = match &endpoint {
            Some(endpoint) => {
                let addr = endpoint.local_addr().map_err(|source| ServerError::Bind {
                    addr: config.https_listen,
                    source,
                })?;
                tasks.push(tokio::spawn(h3::serve(endpoint.clone(), handler.clone())));
                Some(addr)
            }
            None => None,
        };
        tasks.push(tokio::spawn(serve_tls(
            listener,
            acceptor,
            handler.clone(),
            alt_svc,
        )));
        let plain = match config.plain_http_listen {
            Some(addr) => {
                let listener = bind_tcp(addr).await?;
                let bound = local_addr(&listener, addr)?;
                tasks.push(tokio::spawn(serve_plain(listener, handler)));
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

    /// Base64 SHA-256 of the generated certificate's SPKI (`None` with a
    /// configured certificate).
    pub fn spki_sha256(&self) -> Option<&str> {
        self.spki_sha256.as_deref()
    }

    /// The edge's metrics.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }
}

impl Drop for EdgeServer {
    fn drop(&mut self) {
        if let Some(endpoint) = &self.endpoint {
            endpoint.close(0u32.into(), b"shutdown");
        }
        for task in &self.tasks {
            task.abort();
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

async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Handler,
    alt_svc: Option<HeaderValue>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_backoff(&e).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let alt_svc = alt_svc.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%remote, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            serve_connection(tls, handler, alt_svc).await;
        });
    }
}

async fn serve_plain(listener: TcpListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(serve_connection(tcp, handler.clone(), None));
            }
            Err(e) => accept_backoff(&e).await,
        }
    }
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

/// HTTP/1.1 or HTTP/2 (by ALPN, or the HTTP/2 preface on plain TCP) on one
/// connection.
async fn serve_connection<I>(io: I, handler: Handler, alt_svc: Option<HeaderValue>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let handler = handler.clone();
        let alt_svc = alt_svc.clone();
        async move {
            let protocol = if request.version() == http::Version::HTTP_2 {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            let (parts, _body) = request.into_parts();
            let mut response = handler
                .serve(protocol, http::Request::from_parts(parts, ()))
                .await;
            if let Some(alt_svc) = alt_svc {
                response
                    .headers_mut()
                    .insert(http::header::ALT_SVC, alt_svc);
            }
            Ok::<_, Infallible>(response.map(hyper_body))
        }
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        debug!(error = %e, "HTTP connection ended with an error");
    }
}
