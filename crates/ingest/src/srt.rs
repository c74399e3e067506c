//! The SRT listener: one UDP port, many publishers, each authorised by its
//! streamid before the handshake completes.
//!
//! Uses srt-tokio's multiplexed [`SrtListener`], which hands every
//! connection request to us before answering it, so a request can be
//! rejected with an SRT reject code instead of being accepted and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrocast_bus::{BusError, InProcessBus};
use futures::StreamExt;
use srt_protocol::options::KeySize;
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use srt_tokio::ConnectionRequest;
use srt_tokio::SrtListener;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::session::{self, SessionConfig};
use crate::streamid::{self, Mode};

/// Settings of the SRT listener.
#[derive(Debug, Clone)]
pub struct SrtConfig {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// SRT receive latency.
    pub latency: Duration,
    /// A publisher sending nothing for this long is dropped.
    pub idle_timeout: Duration,
}

/// A running SRT listener.
#[derive(Debug)]
pub struct SrtIngest {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtError {
    /// Binding the UDP socket failed.
    #[error("cannot bind SRT listener on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SrtIngest {
    /// Bind the listener and start accepting publishers onto `bus`.
    pub async fn start(config: SrtConfig, bus: InProcessBus) -> Result<SrtIngest, SrtError> {
        let socket = tokio::net::UdpSocket::bind(config.listen)
            .await
            .map_err(|source| SrtError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| SrtError::Bind {
            addr: config.listen,
            source,
        })?;
        let (listener, mut incoming) = SrtListener::builder()
            .socket(socket)
            .latency(config.latency)
            .set(|options| options.session.peer_idle_timeout = config.idle_timeout)
            .bind(local_addr)
            .await
            .map_err(|source| SrtError::Bind {
                addr: config.listen,
                source,
            })?;
        let session_config = Arc::new(SessionConfig {
            idle_timeout: config.idle_timeout,
        });
        let task = tokio::spawn(
            async move {
                // The listener's task stops when this handle is dropped.
                let _listener = listener;
                let requests = incoming.incoming();
                while let Some(request) = requests.next().await {
                    let bus = bus.clone();
                    let session_config = session_config.clone();
                    tokio::spawn(handle_request(request, bus, session_config));
                }
            }
            .instrument(info_span!("srt", %local_addr)),
        );
        info!(%local_addr, "SRT listener ready");
        Ok(SrtIngest { local_addr, task })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for SrtIngest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Decide on one connection request, then run the session if accepted.
async fn handle_request(request: ConnectionRequest, bus: InProcessBus, config: Arc<SessionConfig>) {
    let remote = request.remote();
    let streamid = request
        .stream_id()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let span = info_span!("publisher", %remote);
    let verdict = span.in_scope(|| decide(&streamid, request.key_size(), &bus));
    match verdict {
        Err(reason) => {
            if let Err(e) = request.reject(reason).await {
                warn!(parent: &span, error = %e, "sending SRT reject failed");
            }
        }
        Ok((name, publisher)) => {
            // No passphrase is configured for any stream yet, and `decide`
            // refused every caller whose handshake announced a key size. A
            // caller that sends keying material without announcing a key
            // length (libsrt with a passphrase but no pbkeylen) is refused
            // by the handshake itself (`Unsecure`), thanks to the patched
            // srt-protocol in vendor/ (0.4.4 panicked there).
            match request.accept(None).await {
                Ok(socket) => {
                    let span = info_span!(parent: &span, "session", stream = %name);
                    session::run(socket, publisher, &config)
                        .instrument(span)
                        .await;
                }
                Err(e) => {
                    warn!(parent: &span, error = %e, "SRT handshake failed after the stream was granted (for example an encrypting caller on a stream without a passphrase)");
                    // Nothing was published: free the name at once rather
                    // than leave a stream waiting for its publisher.
                    publisher.end();
                }
            }
        }
    }
}

fn decide(
    streamid: &str,
    key_size: KeySize,
    bus: &InProcessBus,
) -> Result<(ferrocast_media::StreamName, ferrocast_bus::Publisher), RejectReason> {
    let request = streamid::parse(streamid).map_err(|e| {
        warn!(error = %e, "SRT caller rejected: bad streamid");
        RejectReason::Server(ServerRejectReason::BadRequest)
    })?;
    if request.mode != Mode::Publish {
        warn!(stream = %request.name, "SRT caller rejected: only publishing is served over SRT");
        return Err(RejectReason::Server(ServerRejectReason::BadMode));
    }
    if key_size != KeySize::Unspecified {
        warn!(stream = %request.name, "SRT caller rejected: it offered encryption and the stream has no passphrase");
        return Err(RejectReason::Server(ServerRejectReason::KeyNotSup));
    }
    match bus.publish(request.name.as_str()) {
        Ok(publisher) => {
            info!(stream = %request.name, "publisher accepted");
            Ok((request.name, publisher))
        }
        Err(BusError::AlreadyPublished { .. }) => {
            warn!(stream = %request.name, "SRT caller rejected: stream already has a publisher");
            Err(RejectReason::Server(ServerRejectReason::Conflict))
        }
        Err(e) => {
            warn!(stream = %request.name, error = %e, "SRT caller rejected");
            Err(RejectReason::Server(
                ServerRejectReason::InternalServerError,
            ))
        }
    }
}
