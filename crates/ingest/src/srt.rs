//! The SRT listener: one UDP port, many publishers, each authorised by its
//! streamid before the handshake completes.
//!
//! Uses srt-tokio's multiplexed [`SrtListener`], which hands every
//! connection request to us before answering it, so a request can be
//! rejected with an SRT reject code instead of being accepted and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;

use ferrocast_bus::{BusError, MediaBus, Publisher};
use ferrocast_config::{DuplicatePublisher, Secret};
use ferrocast_media::StreamName;
use futures::StreamExt;
use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use srt_tokio::ConnectionRequest;
use srt_tokio::{ListenerStatistics, SrtIncoming, SrtListener};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use crate::auth::{AuthError, PublishAuthorizer};
use crate::session::{self, SessionConfig};
use crate::status::{PublisherStatus, StatusRecorder};
use crate::streamid::{self, Mode};
use crate::unix_millis;
use ferrocast_telemetry::Metrics;

/// Settings of the SRT listener.
#[derive(Debug, Clone)]
pub struct SrtConfig {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// SRT receive latency.
    pub latency: Duration,
    /// A publisher sending nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// How each publisher's tracks are merged before the bus
    /// ([`crate::interleave::InterleaveConfig::for_audio_layout`]).
    pub interleave: crate::interleave::InterleaveConfig,
}

/// A running SRT listener.
pub struct SrtIngest {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
    gate: Arc<Gatekeeper>,
    health: Arc<Supervisor>,
}

impl std::fmt::Debug for SrtIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtIngest")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
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

/// Whether the SRT listener serves its port (see [`SrtIngest::health`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerHealth {
    /// The listener's task runs and accepts callers.
    pub up: bool,
    /// How often it stopped unexpectedly and was started again.
    pub restarts: u64,
    /// Why it last stopped, if it ever did.
    pub last_failure: Option<String>,
}

impl ListenerHealth {
    fn lock(this: &Mutex<ListenerHealth>) -> std::sync::MutexGuard<'_, ListenerHealth> {
        this.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long the supervisor waits before binding again, doubling up to
/// [`REBIND_MAX`]: the old socket is closed only once every connection of
/// the dead listener has ended.
const REBIND_FIRST: Duration = Duration::from_millis(50);
const REBIND_MAX: Duration = Duration::from_secs(2);

impl SrtIngest {
    /// Bind the listener and start accepting publishers that `authorizer`
    /// lets in onto `bus`.
    ///
    /// The listener runs under a supervisor: srt-tokio carries every SRT
    /// session on the port in one task, and if that task ever ends (a panic
    /// in the SRT stack on input nobody foresaw), the supervisor logs it,
    /// counts it (`ferrocast_ingest_srt_listener_restarts_total`), reports
    /// the listener down in [`SrtIngest::health`] and binds the same port
    /// again, so new publishers can connect.
    pub async fn start(
        config: SrtConfig,
        bus: Arc<dyn MediaBus>,
        authorizer: Arc<dyn PublishAuthorizer>,
        metrics: Arc<Metrics>,
    ) -> Result<SrtIngest, SrtError> {
        let (listener, incoming, local_addr) = bind(config.listen, &config).await?;
        if authorizer.is_open() {
            warn!(
                "no [[streams]] configured: any caller may publish any stream name without a key"
            );
        }
        let gate = Arc::new(Gatekeeper {
            bus,
            authorizer,
            metrics,
            sessions: Sessions::default(),
            session_config: SessionConfig {
                idle_timeout: config.idle_timeout,
                interleave: config.interleave,
            },
        });
        let health = Arc::new(Supervisor {
            health: Mutex::new(ListenerHealth {
                up: true,
                restarts: 0,
                last_failure: None,
            }),
            fail: Notify::new(),
        });
        gate.metrics.ingest.srt_listener_up.set(1);
        let task = tokio::spawn(
            supervise(
                listener,
                incoming,
                local_addr,
                config,
                gate.clone(),
                health.clone(),
            )
            .instrument(info_span!("srt", %local_addr)),
        );
        info!(%local_addr, "SRT listener ready");
        Ok(SrtIngest {
            local_addr,
            task,
            gate,
            health,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the listener serves its port now, and its restarts.
    pub fn health(&self) -> ListenerHealth {
        ListenerHealth::lock(&self.health.health).clone()
    }

    /// Stop the listener's task as a fault in the SRT stack would; the
    /// supervisor then restarts it. For tests of that recovery.
    #[doc(hidden)]
    pub fn inject_listener_failure(&self) {
        self.health.fail.notify_one();
    }

    /// Disconnects the live publisher of stream `name` (an operator's
    /// request); false when it has none. A publisher whose key was rotated
    /// cannot come back with the old one.
    pub fn disconnect(&self, name: &str) -> bool {
        let Ok(name) = StreamName::new(name) else {
            return false;
        };
        let handle = self.gate.sessions.lock().get(&name).cloned();
        match handle {
            Some(handle) => {
                info!(stream = %name, "publisher disconnected by an operator");
                handle.stop.notify_one();
                true
            }
            None => false,
        }
    }

    /// Every connected publisher, sorted by stream name.
    pub fn publishers(&self) -> Vec<PublisherStatus> {
        let mut all: Vec<PublisherStatus> = self
            .gate
            .sessions
            .lock()
            .values()
            .map(|h| h.status.snapshot())
            .collect();
        all.sort_by(|a, b| a.stream.cmp(&b.stream));
        all
    }
}

/// What the supervisor shares with [`SrtIngest`].
#[derive(Debug)]
struct Supervisor {
    health: Mutex<ListenerHealth>,
    /// Fault injection for tests ([`SrtIngest::inject_listener_failure`]).
    fail: Notify,
}

/// Bind the SRT listener on `addr`.
async fn bind(
    addr: SocketAddr,
    config: &SrtConfig,
) -> Result<(SrtListener, SrtIncoming, SocketAddr), SrtError> {
    let bind_error = |source| SrtError::Bind { addr, source };
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(bind_error)?;
    let local_addr = socket.local_addr().map_err(bind_error)?;
    let idle_timeout = config.idle_timeout;
    let (listener, incoming) = SrtListener::builder()
        .socket(socket)
        .latency(config.latency)
        .set(|options| options.session.peer_idle_timeout = idle_timeout)
        .bind(local_addr)
        .await
        .map_err(bind_error)?;
    Ok((listener, incoming, local_addr))
}

/// Serve callers; whenever the listener's task ends, bind the port again.
async fn supervise(
    mut listener: SrtListener,
    mut incoming: SrtIncoming,
    local_addr: SocketAddr,
    config: SrtConfig,
    gate: Arc<Gatekeeper>,
    supervisor: Arc<Supervisor>,
) {
    loop {
        let reason = serve(&mut listener, &mut incoming, &gate, &supervisor.fail).await;
        error!(%local_addr, %reason, "SRT listener stopped; restarting it");
        gate.metrics.ingest.srt_listener_up.set(0);
        gate.metrics.ingest.srt_listener_restarts.inc();
        {
            let mut health = ListenerHealth::lock(&supervisor.health);
            health.up = false;
            health.restarts += 1;
            health.last_failure = Some(reason.to_owned());
        }
        let mut wait = REBIND_FIRST;
        (listener, incoming) = loop {
            match bind(local_addr, &config).await {
                Ok((listener, incoming, _)) => break (listener, incoming),
                Err(e) => {
                    warn!(error = %e, retry_ms = wait.as_millis() as u64, "SRT listener not bound yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(REBIND_MAX);
                }
            }
        };
        ListenerHealth::lock(&supervisor.health).up = true;
        gate.metrics.ingest.srt_listener_up.set(1);
        info!(%local_addr, "SRT listener restarted");
    }
}

/// Hand every connection request to [`handle_request`] until the
/// listener's task ends; returns why it ended.
async fn serve(
    listener: &mut SrtListener,
    incoming: &mut SrtIncoming,
    gate: &Arc<Gatekeeper>,
    fail: &Notify,
) -> &'static str {
    let mut statistics = listener.statistics().clone();
    let mut seen = ListenerStatistics::default();
    let requests = incoming.incoming();
    loop {
        tokio::select! {
            request = requests.next() => match request {
                Some(request) => {
                    tokio::spawn(handle_request(request, gate.clone()));
                }
                // srt-tokio drops the request channel only when its task
                // ends: after a panic in it, or after a close.
                None => return "its task ended (a panic in the SRT stack, or closed)",
            },
            Some(now) = statistics.next() => {
                count_listener_events(&gate.metrics, &seen, &now);
                seen = now;
            }
            () = fail.notified() => {
                listener.close().await;
                return "stopped by fault injection";
            }
        }
    }
}

/// Add what the listener counted since `before` to the Prometheus counters.
fn count_listener_events(metrics: &Metrics, before: &ListenerStatistics, now: &ListenerStatistics) {
    for (event, then, count) in [
        ("parse_error", before.rx_parse_errors, now.rx_parse_errors),
        (
            "pending_table_full",
            before.rx_pending_refused,
            now.rx_pending_refused,
        ),
        ("handshake_expired", before.cx_expired, now.cx_expired),
    ] {
        let delta = count.saturating_sub(then);
        if delta > 0 {
            metrics
                .ingest
                .srt_listener_events
                .with_label_values(&[event])
                .inc_by(delta);
        }
    }
}

impl Drop for SrtIngest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Live publisher sessions by stream, so a newcomer can take one over.
#[derive(Debug, Default)]
struct Sessions {
    live: Mutex<HashMap<StreamName, SessionHandle>>,
}

#[derive(Debug, Clone)]
struct SessionHandle {
    stop: Arc<Notify>,
    done: watch::Receiver<bool>,
    status: Arc<StatusRecorder>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamName, SessionHandle>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Everything a connection request is judged with.
struct Gatekeeper {
    bus: Arc<dyn MediaBus>,
    authorizer: Arc<dyn PublishAuthorizer>,
    metrics: Arc<Metrics>,
    sessions: Sessions,
    session_config: SessionConfig,
}

/// How long a takeover waits for the old publisher's session to end.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// Decide on one connection request, then run the session if accepted.
async fn handle_request(request: ConnectionRequest, gate: Arc<Gatekeeper>) {
    let remote = request.remote();
    let streamid = request
        .stream_id()
        .map(|s| s.to_string())
        .unwrap_or_default();
    // Each publisher's session is a trace of its own, not a part of the
    // listener's.
    let span = info_span!("publisher", %remote);
    ferrocast_telemetry::trace::new_trace(&span);
    let verdict = decide(&streamid, request.key_size(), &gate)
        .instrument(span.clone())
        .await;
    let (name, publisher, passphrase) = match verdict {
        Ok(granted) => granted,
        Err(reason) => {
            if let Err(e) = request.reject(reason).await {
                warn!(parent: &span, error = %e, "sending SRT reject failed");
            }
            return;
        }
    };
    // A stream with a passphrase is accepted with the caller's own key
    // length (`Unspecified` lets the keying material decide); a caller that
    // does not encrypt is then refused by the handshake (`Unsecure`). A
    // stream without one is accepted without keys; `decide` refused callers
    // that announced a key length, and the patched srt-protocol in vendor/
    // refuses those that send keying material anyway (0.4.4 panicked).
    let encrypted = passphrase.is_some();
    let keys = passphrase.map(|p| KeySettings {
        key_size: request.key_size(),
        passphrase: Passphrase::from(p.expose()),
    });
    match request.accept(keys).await {
        Ok(socket) => {
            let stop = Arc::new(Notify::new());
            let (done_tx, done_rx) = watch::channel(false);
            let status = Arc::new(StatusRecorder::new(
                PublisherStatus {
                    stream: name.as_str().to_owned(),
                    remote,
                    since_unix_ms: unix_millis(),
                    encrypted,
                    ..PublisherStatus::default()
                },
                gate.metrics.clone(),
            ));
            gate.sessions.lock().insert(
                name.clone(),
                SessionHandle {
                    stop: stop.clone(),
                    done: done_rx,
                    status: status.clone(),
                },
            );
            let session_span = info_span!(parent: &span, "session", stream = %name);
            session::run(socket, publisher, &gate.session_config, &stop, &status)
                .instrument(session_span)
                .await;
            let mut live = gate.sessions.lock();
            if live.get(&name).is_some_and(|h| Arc::ptr_eq(&h.stop, &stop)) {
                live.remove(&name);
            }
            drop(live);
            let _ = done_tx.send(true);
        }
        Err(e) => {
            warn!(parent: &span, error = %e, "SRT handshake failed after the stream was granted (for example a caller whose encryption does not match the stream's)");
            // Nothing was published: free the name at once rather than
            // leave a stream waiting for its publisher.
            publisher.end();
        }
    }
}

type Granted = (StreamName, Publisher, Option<Secret>);

/// Count a refusal under `reason` and return the SRT reject code.
fn refuse(gate: &Gatekeeper, reason: &str, code: ServerRejectReason) -> RejectReason {
    gate.metrics
        .ingest
        .rejections
        .with_label_values(&[reason])
        .inc();
    RejectReason::Server(code)
}

async fn decide(
    streamid: &str,
    key_size: KeySize,
    gate: &Gatekeeper,
) -> Result<Granted, RejectReason> {
    let request = streamid::parse(streamid).map_err(|e| {
        warn!(error = %e, "SRT caller rejected: bad streamid");
        refuse(gate, "bad_streamid", ServerRejectReason::BadRequest)
    })?;
    let name = request.name.clone();
    if request.mode != Mode::Publish {
        warn!(stream = %name, "SRT caller rejected: only publishing is served over SRT");
        return Err(refuse(gate, "bad_mode", ServerRejectReason::BadMode));
    }
    let grant = gate.authorizer.authorize(&request).map_err(|e| {
        warn!(stream = %name, reason = %e, "SRT caller rejected: not authorised to publish");
        match e {
            AuthError::UnknownStream => {
                refuse(gate, "unknown_stream", ServerRejectReason::Notfound)
            }
            AuthError::Unavailable => refuse(gate, "unavailable", ServerRejectReason::Down),
            _ => refuse(gate, "unauthorized", ServerRejectReason::Unauthorized),
        }
    })?;
    if grant.passphrase.is_none() && key_size != KeySize::Unspecified {
        warn!(stream = %name, "SRT caller rejected: it offered encryption and the stream has no passphrase");
        return Err(refuse(
            gate,
            "encryption_mismatch",
            ServerRejectReason::KeyNotSup,
        ));
    }
    let publisher = match gate.bus.publish(name.as_str()) {
        Ok(publisher) => publisher,
        Err(BusError::AlreadyPublished { .. })
            if grant.on_duplicate == DuplicatePublisher::TakeOver =>
        {
            take_over(&name, gate).await?
        }
        Err(BusError::AlreadyPublished { .. }) => {
            warn!(stream = %name, "SRT caller rejected: stream already has a publisher");
            return Err(refuse(
                gate,
                "duplicate_publisher",
                ServerRejectReason::Conflict,
            ));
        }
        Err(e) => {
            warn!(stream = %name, error = %e, "SRT caller rejected");
            return Err(refuse(
                gate,
                "internal",
                ServerRejectReason::InternalServerError,
            ));
        }
    };
    info!(stream = %name, encrypted = grant.passphrase.is_some(), "publisher accepted");
    Ok((name, publisher, grant.passphrase))
}

/// Stop the live publisher of `name` and publish in its place.
async fn take_over(name: &StreamName, gate: &Gatekeeper) -> Result<Publisher, RejectReason> {
    let conflict = RejectReason::Server(ServerRejectReason::Conflict);
    let handle = gate.sessions.lock().get(name).cloned();
    let Some(SessionHandle { stop, mut done, .. }) = handle else {
        warn!(stream = %name, "SRT caller rejected: the live publisher cannot be taken over");
        return Err(conflict);
    };
    info!(stream = %name, "new publisher takes the stream over");
    stop.notify_one();
    if tokio::time::timeout(TAKEOVER_WAIT, done.wait_for(|d| *d))
        .await
        .is_err()
    {
        warn!(stream = %name, "SRT caller rejected: the old publisher did not stop in time");
        return Err(conflict);
    }
    gate.bus.publish(name.as_str()).map_err(|e| {
        warn!(stream = %name, error = %e, "SRT caller rejected: stream was claimed again");
        conflict
    })
}
