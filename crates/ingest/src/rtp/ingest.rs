//! The tokio adapter: a UDP socket and a task per configured RTP port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrocast_bus::{BusMessage, MediaBus, Publisher};
use ferrocast_config::{RtpConfig, RtpFormat};
use ferrocast_media::{StreamName, StreamNameError};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, trace, warn};

use super::RtpStats;
use super::elementary::{Media, SdpOverRtp, SdpRtpError};
use super::mpegts::{TsOverRtp, TsRtpError};
use super::reorder::ReorderConfig;
use super::sdp::{Rtcp, SdpError, SdpSession};
use crate::gop_trace::GopTracer;
use crate::interleave::InterleaveConfig;

/// Settings shared by every RTP port.
#[derive(Debug, Clone, Copy)]
pub struct RtpSettings {
    /// A sender silent this long has left: its publisher is dropped (and
    /// the packager's reconnect grace starts).
    pub idle_timeout: Duration,
    /// How a sender's tracks are merged before the bus
    /// ([`InterleaveConfig::for_audio_layout`]).
    pub interleave: InterleaveConfig,
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
    /// The SDP file of a `format = "sdp"` entry cannot be read.
    #[error("RTP port {addr}: cannot read SDP file {}: {source}", path.display())]
    SdpRead {
        /// The address.
        addr: SocketAddr,
        /// The configured file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SDP file describes something this ingest cannot receive.
    #[error("RTP port {addr}: SDP file {}: {source}", path.display())]
    Sdp {
        /// The address.
        addr: SocketAddr,
        /// The configured file.
        path: PathBuf,
        /// What is wrong with it.
        source: SdpError,
    },
    /// The `listen` port is not one of the SDP's `m=` ports (a stale SDP
    /// or a typo: the sender would send elsewhere).
    #[error(
        "RTP port {addr}: the SDP's streams are on ports {ports:?}; listen must use one of them"
    )]
    SdpPort {
        /// The address.
        addr: SocketAddr,
        /// The SDP's ports, video first.
        ports: Vec<u16>,
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
    /// The sender publishing through it now, if any.
    pub sender: Option<RtpSender>,
}

/// The sender publishing through an RTP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpSender {
    /// Where its first packet of the session came from.
    pub remote: SocketAddr,
    /// When it began publishing, Unix milliseconds.
    pub since_unix_ms: i64,
    /// Payload bitrate over the last second or so, bits/s.
    pub bitrate_bps: u64,
}

/// How long the payload bitrate of a sender is averaged over.
const BITRATE_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Port {
    stream: StreamName,
    local_addr: SocketAddr,
    stats: Arc<Mutex<RtpStats>>,
    sender: Arc<Mutex<Option<RtpSender>>>,
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
        bus: Arc<dyn MediaBus>,
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
            let reorder = ReorderConfig::with_window(Duration::from_millis(entry.jitter_ms));
            let (core, wanted) = match (entry.format, &entry.sdp) {
                (RtpFormat::Mpegts, _) => (
                    Core::Ts(Box::new(
                        TsOverRtp::new(reorder).with_interleave(settings.interleave),
                    )),
                    vec![(addr, Media::Video, false)],
                ),
                (RtpFormat::Sdp, Some(path)) => {
                    let session = read_sdp(addr, path).await?;
                    let ports = session.ports();
                    if !ports.contains(&addr.port()) {
                        return Err(RtpIngestError::SdpPort { addr, ports });
                    }
                    // Each stream's RTP port, then its RTCP port unless RTCP
                    // shares the RTP port (`a=rtcp-mux`).
                    let mut wanted = Vec::new();
                    let streams = [
                        session
                            .video
                            .as_ref()
                            .map(|v| (v.port, v.rtcp, Media::Video)),
                        session
                            .audio
                            .as_ref()
                            .map(|a| (a.port, a.rtcp, Media::Audio)),
                    ];
                    for (port, rtcp, media) in streams.into_iter().flatten() {
                        wanted.push((SocketAddr::new(addr.ip(), port), media, false));
                        if let Rtcp::Port(rtcp) = rtcp {
                            wanted.push((SocketAddr::new(addr.ip(), rtcp), media, true));
                        }
                    }
                    (
                        Core::Sdp(Box::new(
                            SdpOverRtp::new(&session, reorder).with_interleave(settings.interleave),
                        )),
                        wanted,
                    )
                }
                (format @ RtpFormat::Sdp, None) => {
                    return Err(RtpIngestError::Unsupported { addr, format });
                }
            };
            let mut sockets = Vec::with_capacity(wanted.len());
            let mut local_addr = addr;
            for (at, media, rtcp) in wanted {
                let socket = UdpSocket::bind(at)
                    .await
                    .map_err(|source| RtpIngestError::Bind { addr: at, source })?;
                let bound = socket
                    .local_addr()
                    .map_err(|source| RtpIngestError::Bind { addr: at, source })?;
                if at == addr {
                    local_addr = bound;
                }
                sockets.push(Input {
                    socket,
                    media,
                    rtcp,
                });
            }
            let format = match entry.format {
                RtpFormat::Mpegts => "mpegts",
                RtpFormat::Sdp => "sdp",
            };
            let stats = Arc::new(Mutex::new(RtpStats::default()));
            let sender = Arc::new(Mutex::new(None));
            let receiver = Receiver {
                sender: sender.clone(),
                sockets,
                stream: stream.clone(),
                bus: bus.clone(),
                core,
                idle_timeout: settings.idle_timeout,
                stats: stats.clone(),
                sessions: 0,
                warned_invalid: false,
            };
            let span = info_span!("rtp", %local_addr, stream = %stream);
            let task = tokio::spawn(receiver.run().instrument(span));
            info!(%local_addr, stream = %stream, format, "RTP port ready");
            ports.push(Port {
                stream,
                local_addr,
                stats,
                sender,
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
                sender: *p
                    .sender
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

/// Read and check the SDP of a `format = "sdp"` entry.
async fn read_sdp(addr: SocketAddr, path: &std::path::Path) -> Result<SdpSession, RtpIngestError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| RtpIngestError::SdpRead {
            addr,
            path: path.to_path_buf(),
            source,
        })?;
    SdpSession::from_sdp(&text).map_err(|source| RtpIngestError::Sdp {
        addr,
        path: path.to_path_buf(),
        source,
    })
}

/// The sans-IO receiver of one `[[rtp]]` entry.
#[derive(Debug)]
enum Core {
    Ts(Box<TsOverRtp>),
    Sdp(Box<SdpOverRtp>),
}

#[derive(Debug, thiserror::Error)]
enum CoreError {
    #[error(transparent)]
    Ts(#[from] TsRtpError),
    #[error(transparent)]
    Sdp(#[from] SdpRtpError),
}

impl Core {
    fn push_datagram(
        &mut self,
        input: (Media, bool),
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), CoreError> {
        match (self, input) {
            (Core::Ts(core), _) => Ok(core.push_datagram(datagram, now, out)?),
            (Core::Sdp(core), (media, false)) => Ok(core.push_datagram(media, datagram, now, out)?),
            (Core::Sdp(core), (media, true)) => Ok(core.push_rtcp(media, datagram, now, out)?),
        }
    }

    fn poll(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        match self {
            Core::Ts(core) => core.poll(now, out),
            Core::Sdp(core) => core.poll(now, out),
        }
    }

    fn deadline(&mut self) -> Option<Instant> {
        match self {
            Core::Ts(core) => core.deadline(),
            Core::Sdp(core) => core.deadline(),
        }
    }

    fn finish(&mut self, out: &mut Vec<BusMessage>) {
        match self {
            Core::Ts(core) => core.finish(out),
            Core::Sdp(core) => core.finish(out),
        }
    }

    fn discard(&mut self) {
        match self {
            Core::Ts(core) => core.discard(),
            Core::Sdp(core) => core.discard(),
        }
    }

    fn stats(&self) -> RtpStats {
        match self {
            Core::Ts(core) => core.stats(),
            Core::Sdp(core) => core.stats(),
        }
    }
}

/// One bound UDP port of an entry and what it carries.
struct Input {
    socket: UdpSocket,
    media: Media,
    /// RTCP (the stream's RTCP port) rather than RTP.
    rtcp: bool,
}

/// Receive on the `index`th input, or never if there is none.
async fn recv(
    inputs: &[Input],
    index: usize,
    buf: &mut [u8],
) -> (std::io::Result<(usize, SocketAddr)>, (Media, bool)) {
    match inputs.get(index) {
        Some(input) => (input.socket.recv_from(buf).await, (input.media, input.rtcp)),
        None => std::future::pending().await,
    }
}

struct Receiver {
    sockets: Vec<Input>,
    stream: StreamName,
    bus: Arc<dyn MediaBus>,
    core: Core,
    idle_timeout: Duration,
    stats: Arc<Mutex<RtpStats>>,
    /// The publishing sender, as [`RtpIngest::stats`] shows it.
    sender: Arc<Mutex<Option<RtpSender>>>,
    sessions: u64,
    warned_invalid: bool,
}

/// The live sender of a port, if any.
struct Session {
    publisher: Option<Publisher>,
    /// Where its first packet came from.
    from: SocketAddr,
    /// Payload bytes counted at the start of the bitrate window, and when
    /// that window began.
    window: (u64, Instant),
    last_packet: Instant,
    last_publish_try: Option<Instant>,
    /// The sender's span (a trace of its own) and its GOP spans.
    gops: GopTracer,
}

impl Receiver {
    async fn run(mut self) {
        let inputs = std::mem::take(&mut self.sockets);
        // At most four inputs: video and audio, RTP and RTCP each.
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut buf2 = vec![0u8; MAX_DATAGRAM];
        let mut buf3 = vec![0u8; MAX_DATAGRAM];
        let mut buf4 = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::new();
        let mut session: Option<Session> = None;
        loop {
            let deadline = self.core.deadline();
            let idle_at = session.as_ref().map(|s| s.last_packet + self.idle_timeout);
            tokio::select! {
                (received, media) = recv(&inputs, 0, &mut buf) => {
                    self.on_received(received, media, &buf, &mut session, &mut out);
                }
                (received, media) = recv(&inputs, 1, &mut buf2) => {
                    self.on_received(received, media, &buf2, &mut session, &mut out);
                }
                (received, media) = recv(&inputs, 2, &mut buf3) => {
                    self.on_received(received, media, &buf3, &mut session, &mut out);
                }
                (received, media) = recv(&inputs, 3, &mut buf4) => {
                    self.on_received(received, media, &buf4, &mut session, &mut out);
                }
                () = sleep_until(deadline) => self.core.poll(Instant::now(), &mut out),
                () = sleep_until(idle_at) => {
                    self.core.finish(&mut out);
                    forward(session.as_mut(), &mut out);
                    warn!(timeout_ms = self.idle_timeout.as_millis() as u64, "RTP sender idle: publisher left");
                    session = None;
                    self.warned_invalid = false;
                    *lock(&self.sender) = None;
                }
            }
            forward(session.as_mut(), &mut out);
            let mut stats = self.core.stats();
            stats.sessions = self.sessions;
            if let Some(s) = session.as_mut().filter(|s| s.publisher.is_some()) {
                let (bytes, since) = s.window;
                let elapsed = since.elapsed();
                if elapsed >= BITRATE_WINDOW {
                    let bits = stats.bytes.saturating_sub(bytes).saturating_mul(8);
                    let bitrate = (bits as f64 / elapsed.as_secs_f64()) as u64;
                    s.window = (stats.bytes, Instant::now());
                    if let Some(sender) = lock(&self.sender).as_mut() {
                        sender.bitrate_bps = bitrate;
                    }
                }
            }
            *lock(&self.stats) = stats;
        }
    }

    fn on_received(
        &mut self,
        received: std::io::Result<(usize, SocketAddr)>,
        media: (Media, bool),
        buf: &[u8],
        session: &mut Option<Session>,
        out: &mut Vec<BusMessage>,
    ) {
        let (len, from) = match received {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "UDP receive failed");
                return;
            }
        };
        let now = Instant::now();
        let datagram = buf.get(..len).unwrap_or_default();
        match self.core.push_datagram(media, datagram, now, out) {
            // RTCP alone neither starts a sender's session nor keeps it
            // alive: its reports wait in the core for the media.
            Ok(()) if media.1 => {}
            Ok(()) => {
                let s = session.get_or_insert_with(|| {
                    info!(%from, "RTP sender started");
                    let span = info_span!("publisher", %from, stream = %self.stream);
                    ferrocast_telemetry::trace::new_trace(&span);
                    Session {
                        publisher: None,
                        from,
                        window: (0, now),
                        last_packet: now,
                        last_publish_try: None,
                        gops: GopTracer::new(span),
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
                session.window = (self.core.stats().bytes, now);
                *lock(&self.sender) = Some(RtpSender {
                    remote: session.from,
                    since_unix_ms: crate::unix_millis(),
                    bitrate_bps: 0,
                });
            }
            Err(e) => {
                warn!(error = %e, "RTP packets arrive but the stream cannot be published; retrying");
                self.core.discard();
            }
        }
    }
}

/// Sends what the core produced, each unit stamped with its GOP's trace
/// context, or drops it while the sender is not publishing.
fn forward(session: Option<&mut Session>, out: &mut Vec<BusMessage>) {
    let Some(Session {
        publisher: Some(publisher),
        gops,
        ..
    }) = session
    else {
        out.clear();
        return;
    };
    for mut message in out.drain(..) {
        if let BusMessage::Unit(unit) = &mut message {
            // Fresh from the core: the only reference, so no copy.
            gops.stamp(Arc::make_mut(unit));
        }
        publisher.send(message);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
