//! HTTP/3: QUIC connections from quinn, requests from h3, answers from the
//! shared [`Handler`].
//!
//! On shutdown (RFC 9114 §5.2, "Connection Shutdown": "an endpoint can
//! initiate the graceful shutdown of an HTTP/3 connection by sending a
//! GOAWAY frame"): new QUIC connections are refused, each connection sends
//! GOAWAY, finishes the requests it has accepted, then closes with
//! `H3_NO_ERROR`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tracing::{debug, trace};

use ferrocast_connections::{Activity, Admission, ConnectionLimits};

use super::limits::ClientAddr;
use super::metrics::EdgeMetrics;
use super::routes::{Handler, Protocol, ResponseBody};
use super::{Lifecycle, Tracker, TrackerGuard};

/// `H3_NO_ERROR` (RFC 9114 §8.1), the code of a graceful close.
const H3_NO_ERROR: u32 = 0x100;
/// After a drained connection's last response, how long (in round trips,
/// within these bounds) to wait for the client to close it before closing
/// it ourselves: a QUIC close discards stream data not yet acknowledged,
/// and h3 does not say when the last response was.
const LINGER_RTTS: u32 = 4;
const LINGER_MIN: Duration = Duration::from_millis(50);
const LINGER_MAX: Duration = Duration::from_secs(1);

/// The QUIC listener's connection limits beyond what the transport
/// configuration enforces (`tls::quic_config`): admission and the idle
/// close of a connection that keeps itself alive without requests.
pub(crate) struct Limits {
    admission: Arc<Admission>,
    idle_timeout: Duration,
}

impl Limits {
    pub(crate) fn new(config: &ConnectionLimits, metrics: &EdgeMetrics) -> Arc<Limits> {
        Arc::new(Limits {
            admission: Admission::for_listener(config, &metrics.connections, "h3"),
            idle_timeout: config.idle_timeout(),
        })
    }
}

/// Accepts QUIC connections until the endpoint closes, or until the
/// server drains and every connection has finished.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    handler: Handler,
    life: Lifecycle,
    accepting: TrackerGuard,
    limits: Arc<Limits>,
) {
    let connections = Tracker::default();
    let mut accepting = Some(accepting);
    loop {
        let draining = accepting.is_none();
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if draining {
                    incoming.refuse();
                    continue;
                }
                // Refused (CONNECTION_REFUSED) before the handshake costs
                // anything.
                let remote = incoming.remote_address();
                let permit = match limits.admission.admit(remote.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        debug!(%remote, %refusal, "QUIC connection refused");
                        incoming.refuse();
                        continue;
                    }
                };
                let handler = handler.clone();
                let life = life.clone();
                let open = connections.enter();
                let limits = limits.clone();
                tokio::spawn(async move {
                    let _open = (open, permit);
                    let stopped = life.stopped();
                    let serve = async move {
                        match incoming.await {
                            Ok(connection) => connection_loop(connection, handler, life, &limits).await,
                            Err(e) => debug!(%remote, error = %e, "QUIC handshake failed"),
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        () = stopped => debug!(%remote, "QUIC connection closed at shutdown"),
                    }
                });
            }
            () = life.draining(), if !draining => accepting = None,
            () = connections.idle(), if draining => break,
        }
    }
    // Drained. Newcomers are still told no (CONNECTION_REFUSED rather than
    // silence) until the endpoint closes, without holding the shutdown up.
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            incoming.refuse();
        }
    });
}

async fn connection_loop(
    connection: quinn::Connection,
    handler: Handler,
    life: Lifecycle,
    limits: &Limits,
) {
    let remote = connection.remote_address();
    let quic = connection.clone();
    let mut h3 = match h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(
        connection,
    ))
    .await
    {
        Ok(h3) => h3,
        Err(e) => {
            debug!(%remote, error = %e, "HTTP/3 connection setup failed");
            return;
        }
    };
    // This connection's requests, for knowing when a drain is done.
    let requests = Tracker::default();
    let mut draining = false;
    let mut goaway_sent = false;
    let mut drained = false;
    let activity = Activity::new();
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let guards = (life.request(), requests.enter(), activity.request());
                    let handler = handler.clone();
                    let stopped = life.stopped();
                    tokio::spawn(async move {
                        let _guards = guards;
                        tokio::select! {
                            () = answer(resolver, handler, remote) => {}
                            () = stopped => trace!(%remote, "HTTP/3 request cut off at shutdown"),
                        }
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        debug!(%remote, error = %e, "HTTP/3 connection ended");
                    }
                    break;
                }
            },
            () = life.draining(), if !draining => draining = true,
            // QUIC's own idle timeout is reset by any packet (PINGs too);
            // this closes a connection that sends no request.
            () = activity.idle(limits.idle_timeout), if !draining => {
                limits.admission.closed_idle();
                debug!(%remote, "idle HTTP/3 connection closed");
                break;
            }
            () = requests.idle(), if draining && goaway_sent => {
                drained = true;
                break;
            }
        }
        if draining && !goaway_sent {
            // Requests accepted so far are served; later ones are refused
            // with H3_REQUEST_REJECTED, which a client may retry elsewhere.
            if let Err(e) = h3.shutdown(0).await {
                debug!(%remote, error = %e, "HTTP/3 GOAWAY not sent");
                break;
            }
            goaway_sent = true;
        }
    }
    if drained {
        let linger = (quic.rtt() * LINGER_RTTS).clamp(LINGER_MIN, LINGER_MAX);
        let _ = tokio::time::timeout(linger, quic.closed()).await;
    }
    quic.close(H3_NO_ERROR.into(), b"");
}

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;

/// Reads one request and sends the handler's answer.
async fn answer(resolver: Resolver, handler: Handler, remote: SocketAddr) {
    let (mut request, mut stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(e) => {
            debug!(%remote, error = %e, "HTTP/3 request unreadable");
            return;
        }
    };
    request.extensions_mut().insert(ClientAddr(remote));
    let (parts, body) = handler.serve(Protocol::Http3, request).await.into_parts();
    let sent = async {
        stream
            .send_response(http::Response::from_parts(parts, ()))
            .await?;
        match body {
            ResponseBody::Full(bytes) => {
                if !bytes.is_empty() {
                    stream.send_data(bytes).await?;
                }
            }
            // Each chunk in its own DATA frame as it arrives.
            ResponseBody::Stream(mut chunks) => {
                while let Some(chunk) = chunks.next().await {
                    match chunk {
                        Ok(chunk) => stream.send_data(chunk).await?,
                        Err(e) => {
                            // Incomplete: reset, never finish.
                            debug!(%remote, error = %e, "upstream body broke off");
                            stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                            return Ok(());
                        }
                    }
                }
            }
        }
        stream.finish().await
    };
    if let Err(e) = sent.await {
        trace!(%remote, error = %e, "HTTP/3 response not delivered");
    }
}
