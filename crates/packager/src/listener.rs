//! Serving a router over TCP (HTTP/1.1 and cleartext HTTP/2) within
//! [`ConnectionLimits`]: connections past the caps are refused before any
//! byte is read, hyper's header-read timeout runs (with a timer, without
//! which hyper has none), HTTP/2 streams per connection are capped, and a
//! connection with no request in flight for the idle timeout is closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use bytes::Bytes;
use ferrocast_connections::{
    Activity, Admission, ConnectionLimits, ConnectionMetrics, RequestGuard, http_builder,
};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tower::ServiceExt;
use tracing::{debug, warn};

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    admission: Arc<Admission>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.admission.open()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind `addr` and serve `app` (the origin's
/// [`router`](crate::http::router), possibly merged with other routes) with
/// the default [`ConnectionLimits`] and metrics in a registry of its own.
pub async fn serve(addr: SocketAddr, app: Router) -> std::io::Result<HttpServer> {
    let metrics = ConnectionMetrics::new("http", &prometheus::Registry::new())
        .map_err(std::io::Error::other)?;
    serve_with_limits(addr, app, &ConnectionLimits::default(), &metrics).await
}

/// Bind `addr` and serve `app` within `limits`, counting connections in
/// `metrics` (listener label `http`).
pub async fn serve_with_limits(
    addr: SocketAddr,
    app: Router,
    limits: &ConnectionLimits,
    metrics: &ConnectionMetrics,
) -> std::io::Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let admission = Admission::for_listener(limits, metrics, "http");
    let builder = Arc::new(http_builder(limits));
    let idle_timeout = limits.idle_timeout();
    let accepting = admission.clone();
    let task = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = match accepting.admit(remote.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    debug!(%remote, %refusal, "HTTP connection refused");
                    continue;
                }
            };
            let app = app.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let activity = Activity::new();
                let requests = activity.clone();
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let guard = requests.request();
                        let app = app.clone();
                        async move {
                            let response = app
                                .oneshot(request.map(Body::new))
                                .await
                                .unwrap_or_else(|never| match never {});
                            Ok::<_, Infallible>(response.map(|body| GuardedBody {
                                body,
                                _request: guard,
                            }))
                        }
                    });
                let connection = builder.serve_connection(TokioIo::new(tcp), service);
                tokio::select! {
                    result = connection => if let Err(e) = result {
                        debug!(%remote, error = %e, "HTTP connection ended with an error");
                    },
                    () = activity.idle(idle_timeout) => {
                        permit.admission().closed_idle();
                        debug!(%remote, "idle HTTP connection closed");
                    }
                }
                drop(permit);
            });
        }
    });
    Ok(HttpServer {
        local_addr,
        admission,
        task,
    })
}

/// A response body that keeps its request in flight until hyper has sent
/// it (or dropped it with its connection).
struct GuardedBody {
    body: Body,
    _request: RequestGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
