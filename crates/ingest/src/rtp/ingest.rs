//! The tokio adapter: a UDP socket and a task per configured RTP port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrocast_bus::{BusMessage, InProcessBus, Publisher};
use ferrocast_config::{RtpConfig, RtpFormat};
use ferrocast_media::{StreamName, StreamNameError};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, trace, warn};

use super::RtpStats;
use super::mpegts::TsOverRtp;
use super::reorder::ReorderConfig;

/// Settings shared by every RTP port.
#[derive(Debug, Clone, Copy)]
pub struct RtpSettings {
    /// A sender silent this long has left: its publisher is dropped (and
    /// the packager's reconnect grace starts).
    pub idle_timeout: Duration,
}

/// Why RTP ingest could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtpIngestError {
    /// Binding a UDP port failed.
    #[error("cannot bind RTP port {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configured stream name is not valid.
    #[error("RTP port {addr}: stream {stream:?}: {source}")]
    Stream {
        /// The address.
        addr: SocketAddr,
        /// The configured name.
        stream: String,
        /// What is wrong with it.
        source: StreamNameError,
    },
    /// A payload format this build does not receive yet.
    #[error("RTP port {addr}: format {format:?} is not supported yet (use \"mpegts\")")]
    Unsupported {
        /// The address.
        addr: SocketAddr,
        /// The configured format.
        format: RtpFormat,
    },
}

/// Counters of one configured port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPortStats {
    /// The stream it feeds.
    pub stream: StreamName,
    /// The bound UDP address.
    pub local_addr: SocketAddr,
    /// Its counters.
    pub stats: RtpStats,
}

#[derive(Debug)]
struct Port {
    stream: StreamName,
    local_addr: SocketAddr,
    stats: Arc<Mutex<RtpStats>>,
    task: JoinHandle<()>,
}

/// Running RTP inputs; dropping it stops them.
#[derive(Debug)]
pub struct RtpIngest {
    ports: Vec<Port>,
}

impl RtpIngest {
    /// Bind every configured port and start receiving onto `bus`.
    ///
    /// Fails, binding nothing, if any entry cannot be served.
    pub async fn start(
        entries: &[RtpConfig],
        settings: RtpSettings,
        bus: InProcessBus,
    ) -> Result<RtpIngest, RtpIngestError> {
        let mut ports = Vec::with_capacity(entries.len());
        for entry in entries {
            let addr = entry.listen;
            let stream =
                StreamName::new(&entry.stream).map_err(|source| RtpIngestError::Stream {
                    addr,
                    stream: entry.stream.clone(),
                    source,
                })?;
            if entry.format != RtpFormat::Mpegts {
                return Err(RtpIngestError::Unsupported {
                    addr,
                    format: entry.format,
                });
            }
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| RtpIngestError::Bind { addr, source })?;
            let local_addr = socket
                .local_addr()
                .map_err(|source| RtpIngestError::Bind { addr, source })?;
            let stats = Arc::new(Mutex::new(RtpStats::default()));
            let receiver = Receiver {
                socket,
                stream: stream.clone(),
                bus: bus.clone(),
                core: TsOverRtp::new(ReorderConfig::with_window(Duration::from_millis(
                    entry.jitter_ms,
                ))),
                idle_timeout: settings.idle_timeout,
                stats: stats.clone(),
                sessions: 0,
                warned_invalid: false,
            };
            let span = info_span!("rtp", %local_addr, stream = %stream);
            let task = tokio::spawn(receiver.run().instrument(span));
            info!(%local_addr, stream = %stream, format = "mpegts", "RTP port ready");
            ports.push(Port {
                stream,
                local_addr,
                stats,
                task,
            });
        }
        Ok(RtpIngest { ports })
    }

    /// The bound address of each port, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|p| p.local_addr).collect()
    }

    /// Counters of each port, in config order.
    pub fn stats(&self) -> Vec<RtpPortStats> {
        self.ports
            .iter()
            .map(|p| RtpPortStats {
                stream: p.stream.clone(),
                local_addr: p.local_addr,
                stats: *p
                    .stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            })
            .collect()
    }
}

impl Drop for RtpIngest {
    fn drop(&mut self) {
        for port in &self.ports {
            port.task.abort();
        }
    }
}

/// How often a refused publish (the name is live from another publisher)
/// is retried.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

struct Receiver {
    socket: UdpSocket,
    stream: StreamName,
    bus: InProcessBus,
    core: TsOverRtp,
    idle_timeout: Duration,
    stats: Arc<Mutex<RtpStats>>,
    sessions: u64,
    warned_invalid: bool,
}

/// The live sender of a port, if any.
struct Session {
    publisher: Option<Publisher>,
    last_packet: Instant,
    last_publish_try: Option<Instant>,
}

impl Receiver {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::new();
        let mut session: Option<Session> = None;
        loop {
            let deadline = self.core.deadline();
            let idle_at = session.as_ref().map(|s| s.last_packet + self.idle_timeout);
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let (len, from) = match received {
                        Ok(r) => r,
                        Err(e) => {
                            debug!(error = %e, "UDP receive failed");
                            continue;
                        }
                    };
                    let now = Instant::now();
                    let datagram = buf.get(..len).unwrap_or_default();
                    match self.core.push_datagram(datagram, now, &mut out) {
                        Ok(()) => {
                            let s = session.get_or_insert_with(|| {
                                info!(%from, "RTP sender started");
                                Session {
                                    publisher: None,
                                    last_packet: now,
                                    last_publish_try: None,
                                }
                            });
                            s.last_packet = now;
                            if s.publisher.is_none() {
                                self.try_publish(s, now);
                            }
                        }
                        Err(e) => {
                            if !std::mem::replace(&mut self.warned_invalid, true) {
                                warn!(%from, error = %e, "datagram ignored; further ones are logged at trace level and counted");
                            } else {
                                trace!(%from, error = %e, "datagram ignored");
                            }
                        }
                    }
                }
                () = sleep_until(deadline) => self.core.poll(Instant::now(), &mut out),
                () = sleep_until(idle_at) => {
                    self.core.finish(&mut out);
                    forward(session.as_ref(), &mut out);
                    warn!(timeout_ms = self.idle_timeout.as_millis() as u64, "RTP sender idle: publisher left");
                    session = None;
                    self.warned_invalid = false;
                }
            }
            forward(session.as_ref(), &mut out);
            let mut stats = self.core.stats();
            stats.sessions = self.sessions;
            *self
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
        }
    }

    fn try_publish(&mut self, session: &mut Session, now: Instant) {
        if session
            .last_publish_try
            .is_some_and(|at| now.duration_since(at) < PUBLISH_RETRY)
        {
            // Until the name is ours, what the sender sends has nowhere to go.
            self.core.discard();
            return;
        }
        session.last_publish_try = Some(now);
        match self.bus.publish(self.stream.as_str()) {
            Ok(publisher) => {
                info!("RTP publisher live");
                self.sessions += 1;
                session.publisher = Some(publisher);
            }
            Err(e) => {
                warn!(error = %e, "RTP packets arrive but the stream cannot be published; retrying");
                self.core.discard();
            }
        }
    }
}

fn forward(session: Option<&Session>, out: &mut Vec<BusMessage>) {
    match session.and_then(|s| s.publisher.as_ref()) {
        Some(publisher) => out.drain(..).for_each(|m| publisher.send(m)),
        None => out.clear(),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
