//! Simulated LL-HLS viewers against the HTTPS edge (or a static-file
//! baseline), for a per-core CPU figure; driven by `benches/edge_viewers.sh`.
//!
//! Each viewer is one HTTPS connection (HTTP/1.1 keep-alive, ALPN
//! `http/1.1`, the certificate verified) and behaves like hls.js with
//! `lowLatencyMode`:
//!
//! - **edge** mode: `GET index.m3u8` once with `Authorization: Bearer JWT`
//!   (the viewer's own JWT: one line of `--jwts` each), which gives the
//!   media playlist URI with a session token; one plain playlist request
//!   to find the live edge; then, per part, a blocking playlist request
//!   `_HLS_msn=M&_HLS_part=P` (with `_HLS_skip=YES`, as hls.js asks for
//!   delta updates when the server offers them) for the part after the
//!   last one it fetched, and a `GET` of that part, the URI the previous
//!   playlist hinted (`EXT-X-PRELOAD-HINT`), now listed, with the fresh
//!   token of the playlist just received. The whole body is read.
//! - **static** mode (the nginx baseline, which cannot hold a request):
//!   every `--period-ms` the same two requests without directives: the
//!   playlist, then the next of a list of part files.
//!
//! Viewers are ramped in over `--ramp-s`; after `--warmup-s` the counters
//! are read over a `--window-s` window: requests, body bytes, non-200s,
//! errors, how far behind the live edge each viewer is (edge mode: the
//! duration of the parts a playlist lists after the one the viewer asked
//! for), late cycles (static mode), and the CPU seconds (utime + stime,
//! `/proc/PID/stat`) of the server's processes, of this process and of
//! each core (`/proc/stat`). Several viewer counts run one after the other
//! (`--viewers 100,300,1000`), each on fresh connections.
//!
//! The last line of output is one JSON object with every step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BytesMut};
use clap::{Parser, ValueEnum};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Ferrocast's edge: JWT, blocking playlist reloads, parts.
    Edge,
    /// Static files (nginx): playlist and part every `--period-ms`.
    Static,
}

#[derive(Debug, Parser)]
#[command(
    about = "Simulated LL-HLS viewers (hls.js-like) against an HTTPS edge; server CPU per viewer"
)]
struct Args {
    /// Edge (blocking LL-HLS) or static files (the baseline).
    #[arg(long, value_enum, default_value_t = Mode::Edge)]
    mode: Mode,
    /// The server's HTTPS address.
    #[arg(long)]
    addr: SocketAddr,
    /// The protocol every viewer speaks.
    #[arg(long, value_enum, default_value_t = Protocol::H1)]
    protocol: Protocol,
    /// PEM certificate the server presents (the only one trusted).
    #[arg(long)]
    cert: PathBuf,
    /// Edge mode: path of the multivariant playlist, e.g.
    /// `/live/bench/index.m3u8`.
    #[arg(long, default_value = "/live/bench/index.m3u8")]
    index: String,
    /// Edge mode: a file of viewer JWTs, one a line; viewer i uses line
    /// i modulo their number.
    #[arg(long)]
    jwts: Option<PathBuf>,
    /// Edge mode: ask for delta playlists (`_HLS_skip=YES`), as hls.js does
    /// when the playlist offers CAN-SKIP-UNTIL.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    skip: bool,
    /// Static mode: a file of paths (with query), the playlist first, then
    /// the parts, fetched in turn.
    #[arg(long)]
    static_paths: Option<PathBuf>,
    /// Static mode: one playlist + one part every this many ms (the part
    /// duration).
    #[arg(long, default_value_t = 200)]
    period_ms: u64,
    /// Viewer counts, one step each, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    viewers: Vec<usize>,
    /// PIDs whose CPU time is the server's (repeat or comma separate).
    #[arg(long, value_delimiter = ',', required = true)]
    server_pid: Vec<u32>,
    /// The CPU the server is pinned to (its busy share is read from
    /// `/proc/stat`).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The CPU the generator is pinned to.
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Seconds over which a step's viewers are started.
    #[arg(long, default_value_t = 5.0)]
    ramp_s: f64,
    /// Seconds after the ramp before the window opens.
    #[arg(long, default_value_t = 3.0)]
    warmup_s: f64,
    /// Length of the measuring window (seconds).
    #[arg(long, default_value_t = 20.0)]
    window_s: f64,
    /// Also measure the server with no viewers for this many seconds first
    /// (0: skip).
    #[arg(long, default_value_t = 10.0)]
    idle_s: f64,
    /// Edge mode: a viewer keeps up while the p99 over the window of its
    /// part latency (body read, minus the part's end by
    /// `EXT-X-PROGRAM-DATE-TIME`) stays within this many ms (the default is
    /// PART-HOLD-BACK for 200 ms parts).
    #[arg(long, default_value_t = 600)]
    max_lag_ms: u64,
}

/// Largest response head and kept body (playlists) accepted.
const MAX_HEAD: usize = 16 * 1024;
const MAX_KEPT_BODY: usize = 4 * 1024 * 1024;

// ---- clients: HTTP/1.1, HTTP/2, HTTP/3 ----------------------------------------

/// The protocol a viewer speaks, one connection per viewer (as one browser
/// tab has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// HTTP/1.1 over TLS (ALPN `http/1.1`), keep-alive.
    H1,
    /// HTTP/2 over TLS (ALPN `h2`), one request at a time on the
    /// connection, as an LL-HLS player's playlist and part loads come.
    H2,
    /// HTTP/3 over QUIC (ALPN `h3`), one UDP socket per viewer.
    H3,
}

/// What opens a viewer's connection.
#[derive(Clone)]
enum Client {
    H1(TlsConnector),
    H2(TlsConnector),
    H3(quinn::ClientConfig),
}

impl Client {
    fn new(protocol: Protocol, cert: &std::path::Path) -> Result<Client> {
        Ok(match protocol {
            Protocol::H1 => Client::H1(ferrocast_benches::tls::connector(cert, b"http/1.1")?),
            Protocol::H2 => Client::H2(ferrocast_benches::tls::connector(cert, b"h2")?),
            Protocol::H3 => Client::H3(ferrocast_benches::tls::h3_client_config(cert)?),
        })
    }

    async fn open(&self, addr: SocketAddr) -> Result<Conn> {
        Ok(match self {
            Client::H1(tls) => Conn::H1(Box::new(H1Conn::open(tls, addr).await?)),
            Client::H2(tls) => Conn::H2(H2Conn::open(tls, addr).await?),
            Client::H3(quic) => Conn::H3(H3Conn::open(quic, addr).await?),
        })
    }
}

/// One viewer's connection.
enum Conn {
    H1(Box<H1Conn>),
    H2(H2Conn),
    H3(H3Conn),
}

impl Conn {
    /// Sends one GET and reads the whole response.
    async fn get(&mut self, path: &str, bearer: Option<&str>, keep: bool) -> Result<Response> {
        match self {
            Conn::H1(c) => c.get(path, bearer, keep).await,
            Conn::H2(c) => c.get(path, bearer, keep).await,
            Conn::H3(c) => c.get(path, bearer, keep).await,
        }
    }
}

/// A GET for HTTP/2 and HTTP/3, which carry the authority in the request.
fn request(path: &str, bearer: Option<&str>) -> Result<http::Request<()>> {
    let mut builder = http::Request::get(format!("https://localhost{path}"));
    if let Some(jwt) = bearer {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {jwt}"));
    }
    Ok(builder.body(())?)
}

/// Appends `chunk` to `body` when kept, within [`MAX_KEPT_BODY`].
fn keep_chunk(body: &mut Vec<u8>, keep: bool, chunk: &[u8]) -> Result<()> {
    if keep {
        if body.len() + chunk.len() > MAX_KEPT_BODY {
            bail!("body over {MAX_KEPT_BODY} bytes");
        }
        body.extend_from_slice(chunk);
    }
    Ok(())
}

/// HTTP/2 receive window per stream, as Chromium sets it.
const H2_STREAM_WINDOW: u32 = 6 * 1024 * 1024;

/// HTTP/2 receive window per connection, as Chromium sets it.
const H2_CONNECTION_WINDOW: u32 = 15 * 1024 * 1024;

/// An HTTP/2 connection: the `h2` crate's client, its connection driven by
/// a task of its own.
struct H2Conn {
    send: h2::client::SendRequest<bytes::Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl H2Conn {
    async fn open(connector: &TlsConnector, addr: SocketAddr) -> Result<H2Conn> {
        let tls = tls_connect(connector, addr).await?;
        // Chromium's windows (6 MiB per stream, 15 MiB per connection), not
        // the protocol's 64 KiB default: with that, a 100 KB part stalls
        // for a WINDOW_UPDATE round trip, which no browser makes a server
        // do.
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .handshake(tls)
            .await
            .context("HTTP/2 handshake")?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2Conn { send, driver })
    }

    async fn get(&mut self, path: &str, bearer: Option<&str>, keep: bool) -> Result<Response> {
        let mut send = self.send.clone().ready().await.context("HTTP/2 ready")?;
        let (response, _) = send.send_request(request(path, bearer)?, true)?;
        let response = response.await.context("HTTP/2 response")?;
        let status = response.status().as_u16();
        let mut stream = response.into_body();
        let (mut body, mut body_len) = (Vec::new(), 0u64);
        while let Some(chunk) = stream.data().await {
            let chunk = chunk.context("HTTP/2 body")?;
            let _ = stream.flow_control().release_capacity(chunk.len());
            keep_chunk(&mut body, keep, &chunk)?;
            body_len += chunk.len() as u64;
        }
        Ok(Response {
            status,
            body_len,
            body,
            close: false,
        })
    }
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// An HTTP/3 connection: quinn and the `h3` crate's client, on a UDP
/// socket of its own.
struct H3Conn {
    _endpoint: quinn::Endpoint,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl H3Conn {
    async fn open(config: &quinn::ClientConfig, addr: SocketAddr) -> Result<H3Conn> {
        let mut endpoint = quinn::Endpoint::client(SocketAddr::new(addr.ip(), 0))
            .context("a UDP socket for QUIC")?;
        endpoint.set_default_client_config(config.clone());
        let connection = endpoint
            .connect(addr, "localhost")?
            .await
            .context("QUIC handshake")?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
            .await
            .context("HTTP/3 setup")?;
        let driver = tokio::spawn(async move {
            std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(H3Conn {
            _endpoint: endpoint,
            send,
            driver,
        })
    }

    async fn get(&mut self, path: &str, bearer: Option<&str>, keep: bool) -> Result<Response> {
        let mut stream = self.send.send_request(request(path, bearer)?).await?;
        stream.finish().await?;
        let response = stream.recv_response().await?;
        let status = response.status().as_u16();
        let (mut body, mut body_len) = (Vec::new(), 0u64);
        while let Some(mut chunk) = stream.recv_data().await? {
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                let n = piece.len();
                keep_chunk(&mut body, keep, piece)?;
                body_len += n as u64;
                chunk.advance(n);
            }
        }
        Ok(Response {
            status,
            body_len,
            body,
            close: false,
        })
    }
}

impl Drop for H3Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn tls_connect(connector: &TlsConnector, addr: SocketAddr) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(addr.ip().into());
    connector.connect(name, tcp).await.context("TLS handshake")
}

/// A minimal HTTP/1.1 keep-alive client.
struct H1Conn {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
}

struct Response {
    status: u16,
    body_len: u64,
    /// The body, when asked to keep it.
    body: Vec<u8>,
    close: bool,
}

impl H1Conn {
    async fn open(connector: &TlsConnector, addr: SocketAddr) -> Result<H1Conn> {
        let stream = tls_connect(connector, addr).await?;
        Ok(H1Conn {
            stream,
            buf: BytesMut::with_capacity(32 * 1024),
        })
    }

    async fn fill(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < 8 * 1024 {
            self.buf.reserve(32 * 1024);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("connection closed mid-response");
        }
        Ok(())
    }

    async fn line(&mut self) -> Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.advance(i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                bail!("line too long");
            }
            self.fill().await?;
        }
    }

    /// Reads `n` body bytes, keeping them in `keep` when given.
    async fn body(&mut self, mut n: u64, mut keep: Option<&mut Vec<u8>>) -> Result<()> {
        while n > 0 {
            if self.buf.is_empty() {
                self.fill().await?;
            }
            let take = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            if let Some(keep) = keep.as_deref_mut() {
                if keep.len() + take > MAX_KEPT_BODY {
                    bail!("body over {MAX_KEPT_BODY} bytes");
                }
                keep.extend_from_slice(&self.buf[..take]);
            }
            self.buf.advance(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Sends one GET and reads the whole response (Content-Length or
    /// chunked).
    async fn get(&mut self, path: &str, bearer: Option<&str>, keep: bool) -> Result<Response> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(jwt) = bearer {
            request.push_str("Authorization: Bearer ");
            request.push_str(jwt);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).await?;
        self.stream.flush().await?;

        let status_line = self.line().await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        let mut head = status_line.len();
        loop {
            let line = self.line().await?;
            head += line.len();
            if head > MAX_HEAD {
                bail!("response head over {MAX_HEAD} bytes");
            }
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                bail!("bad header line");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<u64>().context("bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let mut body = Vec::new();
        let mut body_len = 0u64;
        if chunked {
            loop {
                let size_line = self.line().await?;
                let size = size_line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).context("bad chunk size")?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.body(size, keep.then_some(&mut body)).await?;
                body_len += size;
                if !self.line().await?.is_empty() {
                    bail!("no CRLF after a chunk");
                }
            }
        } else if let Some(n) = length {
            self.body(n, keep.then_some(&mut body)).await?;
            body_len = n;
        } else {
            bail!("response without a length");
        }
        Ok(Response {
            status,
            body_len,
            body,
            close,
        })
    }
}

// ---- playlists ---------------------------------------------------------------

/// One `EXT-X-PART` of a media playlist, in playlist order.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    msn: u64,
    index: u64,
    duration_ms: f64,
    uri: String,
    /// When the part's last sample was due, Unix ms: its segment's
    /// `EXT-X-PROGRAM-DATE-TIME` plus the durations of the parts up to and
    /// including it. `None` without a date-time.
    end_unix_ms: Option<f64>,
}

/// Unix milliseconds of an `EXT-X-PROGRAM-DATE-TIME` in UTC,
/// `YYYY-MM-DDThh:mm:ss[.SSS]Z` (what Ferrocast writes); `None` otherwise.
fn parse_date_time(v: &str) -> Option<f64> {
    let v = v.trim().strip_suffix('Z')?;
    let (date, time) = v.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss) * 1000.0)
}

fn unix_ms_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    // Attribute lists here hold no commas inside quoted values but URIs
    // (which are quoted and come whole).
    let mut rest = tag;
    while !rest.is_empty() {
        let (pair, tail) = if let Some(eq) = rest.find('=') {
            let value = &rest[eq + 1..];
            let end = if let Some(quoted) = value.strip_prefix('"') {
                quoted.find('"').map_or(value.len(), |q| q + 2)
            } else {
                value.find(',').unwrap_or(value.len())
            };
            let end = eq + 1 + end;
            (&rest[..end], rest[end..].trim_start_matches(','))
        } else {
            (rest, "")
        };
        if let Some((k, v)) = pair.split_once('=')
            && k.trim() == name
        {
            return Some(v.trim_matches('"'));
        }
        rest = tail;
    }
    None
}

/// The parts a media playlist lists (delta updates included).
fn parse_parts(playlist: &str) -> Result<Vec<Part>> {
    let mut media_sequence = None;
    let mut segments = 0u64;
    let mut index = 0u64;
    // Where the next part ends, from the current segment's date-time.
    let mut clock: Option<f64> = None;
    let mut parts = Vec::new();
    for line in playlist.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = Some(v.parse::<u64>().context("bad EXT-X-MEDIA-SEQUENCE")?);
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            segments += attribute(v, "SKIPPED-SEGMENTS")
                .context("EXT-X-SKIP without SKIPPED-SEGMENTS")?
                .parse::<u64>()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            clock = parse_date_time(v);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            let msn = media_sequence.context("EXT-X-PART before EXT-X-MEDIA-SEQUENCE")? + segments;
            let duration: f64 = attribute(v, "DURATION")
                .context("EXT-X-PART without DURATION")?
                .parse()?;
            let uri = attribute(v, "URI").context("EXT-X-PART without URI")?;
            clock = clock.map(|c| c + duration * 1000.0);
            parts.push(Part {
                msn,
                index,
                duration_ms: duration * 1000.0,
                uri: uri.to_owned(),
                end_unix_ms: clock,
            });
            index += 1;
        } else if !line.is_empty() && !line.starts_with('#') {
            segments += 1;
            index = 0;
            clock = None;
        }
    }
    Ok(parts)
}

/// Where a viewer that asked for `(msn, index)` stands in `parts`: the
/// position of the first listed part at or after it (the one to fetch),
/// and the milliseconds of parts listed after that one (how far behind the
/// live edge it is). `None` when the playlist lists nothing at or after it.
fn position(parts: &[Part], msn: u64, index: u64) -> Option<(usize, f64)> {
    let at = parts
        .iter()
        .position(|p| (p.msn, p.index) >= (msn, index))?;
    let behind = parts[at + 1..]
        .iter()
        .fold(0.0, |sum, p| sum + p.duration_ms);
    Some((at, behind))
}

// ---- counters ------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    playlists: AtomicU64,
    parts: AtomicU64,
    bytes: AtomicU64,
    non_200: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
    late_cycles: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    requests: u64,
    playlists: u64,
    parts: u64,
    bytes: u64,
    non_200: u64,
    errors: u64,
    reconnects: u64,
    resyncs: u64,
    late_cycles: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            requests: l(&self.requests),
            playlists: l(&self.playlists),
            parts: l(&self.parts),
            bytes: l(&self.bytes),
            non_200: l(&self.non_200),
            errors: l(&self.errors),
            reconnects: l(&self.reconnects),
            resyncs: l(&self.resyncs),
            late_cycles: l(&self.late_cycles),
        }
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// What every viewer of a step shares.
struct Shared {
    client: Client,
    addr: SocketAddr,
    counters: Counters,
    /// Set while the window is open: viewers keep their lag samples.
    measuring: AtomicBool,
    statuses: std::sync::Mutex<BTreeMap<u16, u64>>,
    error_kinds: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn status(&self, status: u16) {
        add(&self.counters.non_200, 1);
        *self
            .statuses
            .lock()
            .expect("not poisoned")
            .entry(status)
            .or_default() += 1;
    }

    fn error(&self, e: &anyhow::Error) {
        add(&self.counters.errors, 1);
        let kind: String = format!("{e:#}").chars().take(100).collect();
        let mut kinds = self.error_kinds.lock().expect("not poisoned");
        // Bounded: the first 50 kinds, then counted under one.
        if kinds.len() < 50 || kinds.contains_key(&kind) {
            *kinds.entry(kind).or_default() += 1;
        } else {
            *kinds.entry("(other)".into()).or_default() += 1;
        }
    }
}

// ---- viewers ---------------------------------------------------------------------

/// A GET counted in the step's totals; a non-200 is an error for the
/// caller.
async fn counted_get(
    shared: &Shared,
    conn: &mut Conn,
    path: &str,
    bearer: Option<&str>,
    keep: bool,
) -> Result<Response> {
    let response = conn.get(path, bearer, keep).await?;
    add(&shared.counters.requests, 1);
    add(&shared.counters.bytes, response.body_len);
    if response.status != 200 {
        shared.status(response.status);
        bail!("HTTP {}", response.status);
    }
    Ok(response)
}

/// The directory of a path (`/live/bench/stream.m3u8?x` → `/live/bench/`).
fn directory(path: &str) -> &str {
    let path = path.split('?').next().unwrap_or(path);
    &path[..path.rfind('/').map_or(0, |i| i + 1)]
}

fn with_query(path: &str, extra: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{extra}")
}

/// One edge viewer until `stop`; returns its lag samples (ms) taken while
/// measuring.
async fn edge_viewer(
    shared: Arc<Shared>,
    index_path: String,
    jwt: String,
    skip: bool,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let mut lags = Vec::new();
    let mut behind = Vec::new();
    let run = async {
        let mut conn: Option<Conn> = None;
        // The media playlist path with its session token, once known.
        let mut media: Option<String> = None;
        // The next part to fetch, once the live edge is known.
        let mut next: Option<(u64, u64)> = None;
        loop {
            let step = async {
                if conn.is_none() {
                    conn = Some(shared.client.open(shared.addr).await?);
                }
                let c = conn.as_mut().expect("just opened");
                let media_path = match &media {
                    Some(m) => m.clone(),
                    None => {
                        let r = counted_get(&shared, c, &index_path, Some(&jwt), true).await?;
                        add(&shared.counters.playlists, 1);
                        let text = String::from_utf8_lossy(&r.body);
                        let uri = text
                            .lines()
                            .map(str::trim)
                            .find(|l| !l.is_empty() && !l.starts_with('#'))
                            .context("no media playlist in the multivariant playlist")?;
                        let m = format!("{}{uri}", directory(&index_path));
                        media = Some(m.clone());
                        m
                    }
                };
                let dir = directory(&media_path).to_owned();
                let (msn, index) = match next {
                    Some(n) => n,
                    None => {
                        // The live edge: start with the newest listed part.
                        let r = counted_get(&shared, c, &media_path, None, true).await?;
                        add(&shared.counters.playlists, 1);
                        let parts = parse_parts(&String::from_utf8_lossy(&r.body))?;
                        let last = parts.last().context("the playlist lists no part")?;
                        (last.msn, last.index)
                    }
                };
                // Blocking reload for the part we want next.
                let mut directives = format!("_HLS_msn={msn}&_HLS_part={index}");
                if skip {
                    directives.push_str("&_HLS_skip=YES");
                }
                let r = counted_get(
                    &shared,
                    c,
                    &with_query(&media_path, &directives),
                    None,
                    true,
                )
                .await?;
                add(&shared.counters.playlists, 1);
                let parts = parse_parts(&String::from_utf8_lossy(&r.body))?;
                let (at, behind_ms) = match position(&parts, msn, index) {
                    Some(found) => found,
                    None => {
                        add(&shared.counters.resyncs, 1);
                        next = None;
                        bail!("the playlist lists nothing at or after {msn}.{index}");
                    }
                };
                let part = &parts[at];
                if (part.msn, part.index) != (msn, index) && part.index != 0 {
                    // What it asked for left the window: it fell behind.
                    add(&shared.counters.resyncs, 1);
                }
                let end_unix_ms = part.end_unix_ms;
                let r = counted_get(&shared, c, &format!("{dir}{}", part.uri), None, false).await?;
                add(&shared.counters.parts, 1);
                if shared.measuring.load(Ordering::Relaxed) {
                    behind.push(behind_ms);
                    if let Some(end) = end_unix_ms {
                        lags.push(unix_ms_now() - end);
                    }
                }
                next = Some((part.msn, part.index + 1));
                Ok::<bool, anyhow::Error>(r.close)
            };
            match step.await {
                Ok(true) => conn = None,
                Ok(false) => {}
                Err(e) => {
                    shared.error(&e);
                    conn = None;
                    next = None;
                    add(&shared.counters.reconnects, 1);
                    // Back off a part's time rather than spin on a failing server.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    tokio::select! {
        () = run => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    Samples { lags, behind }
}

/// What a viewer measured while the window was open (edge mode).
#[derive(Debug, Default)]
struct Samples {
    /// Wall clock when a part's body was read, minus when its last sample
    /// was due (its `EXT-X-PROGRAM-DATE-TIME` end), ms.
    lags: Vec<f64>,
    /// Parts listed after the one it fetched, in ms of their durations.
    behind: Vec<f64>,
}

/// One static-file viewer until `stop`: playlist then part every period.
async fn static_viewer(
    shared: Arc<Shared>,
    paths: Arc<Vec<String>>,
    first_part: usize,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> Samples {
    let run = async {
        let mut conn: Option<Conn> = None;
        let mut k = first_part;
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let due = tick.tick().await;
            let step = async {
                if conn.is_none() {
                    conn = Some(shared.client.open(shared.addr).await?);
                }
                let c = conn.as_mut().expect("just opened");
                let r = counted_get(&shared, c, &paths[0], None, true).await?;
                add(&shared.counters.playlists, 1);
                if r.close {
                    bail!("server closed the connection");
                }
                let part = &paths[1 + k % (paths.len() - 1)];
                k += 1;
                let r = counted_get(&shared, c, part, None, false).await?;
                add(&shared.counters.parts, 1);
                Ok::<bool, anyhow::Error>(r.close)
            };
            match step.await {
                Ok(close) => {
                    if close {
                        conn = None;
                    }
                }
                Err(e) => {
                    shared.error(&e);
                    conn = None;
                    add(&shared.counters.reconnects, 1);
                }
            }
            if due.elapsed() > period && shared.measuring.load(Ordering::Relaxed) {
                add(&shared.counters.late_cycles, 1);
            }
        }
    };
    tokio::select! {
        () = run => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    Samples::default()
}

// ---- CPU accounting ----------------------------------------------------------------

/// utime + stime of a process, in clock ticks.
fn process_ticks(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("bad /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5) are the 12th and 13th after the name.
    Ok(fields.get(11).context("short stat")?.parse::<u64>()?
        + fields.get(12).context("short stat")?.parse::<u64>()?)
}

/// Busy and total ticks of one CPU from `/proc/stat`.
fn cpu_ticks(cpu: usize) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    server: u64,
    me: u64,
    server_core: (u64, u64),
    load_core: (u64, u64),
}

fn cpu_sample(args: &Args) -> Result<CpuSample> {
    let mut server = 0;
    for pid in &args.server_pid {
        server += process_ticks(&pid.to_string())?;
    }
    Ok(CpuSample {
        at: Instant::now(),
        server,
        me: process_ticks("self")?,
        server_core: cpu_ticks(args.server_cpu)?,
        load_core: cpu_ticks(args.load_cpu)?,
    })
}

/// Shares of one core over a window: server process, generator process,
/// the server's core and the generator's core (anyone's use).
fn cpu_shares(a: &CpuSample, b: &CpuSample, hz: f64) -> serde_json::Value {
    let wall = (b.at - a.at).as_secs_f64();
    let core = |x: (u64, u64), y: (u64, u64)| {
        let total = (y.1 - x.1).max(1) as f64;
        (y.0 - x.0) as f64 / total
    };
    serde_json::json!({
        "wall_s": wall,
        "server_cpu_s": (b.server - a.server) as f64 / hz,
        "server_util": (b.server - a.server) as f64 / hz / wall,
        "generator_util": (b.me - a.me) as f64 / hz / wall,
        "server_core_busy": core(a.server_core, b.server_core),
        "load_core_busy": core(a.load_core, b.load_core),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---- one step ------------------------------------------------------------------------

async fn step(
    args: &Args,
    client: &Client,
    n: usize,
    jwts: &Arc<Vec<String>>,
    paths: &Arc<Vec<String>>,
    hz: f64,
) -> Result<serde_json::Value> {
    let shared = Arc::new(Shared {
        client: client.clone(),
        addr: args.addr,
        counters: Counters::default(),
        measuring: AtomicBool::new(false),
        statuses: Default::default(),
        error_kinds: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let period = Duration::from_millis(args.period_ms);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        // Evenly over the ramp, so requests do not arrive in lockstep.
        let start_at = tokio::time::Instant::now()
            + Duration::from_secs_f64(args.ramp_s * i as f64 / n.max(1) as f64);
        let shared = shared.clone();
        let stop = stop_rx.clone();
        let (jwts, paths) = (jwts.clone(), paths.clone());
        let (mode, index, skip) = (args.mode, args.index.clone(), args.skip);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start_at).await;
            match mode {
                Mode::Edge => {
                    let jwt = jwts[i % jwts.len()].clone();
                    edge_viewer(shared, index, jwt, skip, stop).await
                }
                Mode::Static => static_viewer(shared, paths, i, period, stop).await,
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.ramp_s + args.warmup_s)).await;

    let c0 = shared.counters.snapshot();
    let cpu0 = cpu_sample(args)?;
    shared.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.window_s)).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let cpu1 = cpu_sample(args)?;
    let c1 = shared.counters.snapshot();

    stop_tx.send_replace(true);
    let (mut lags, mut behind) = (Vec::new(), Vec::new());
    let mut viewer_p99_over = 0usize;
    for task in tasks {
        let mut v = task.await.context("viewer task")?;
        v.lags.sort_by(f64::total_cmp);
        if percentile(&v.lags, 99.0) > args.max_lag_ms as f64 {
            viewer_p99_over += 1;
        }
        lags.extend(v.lags);
        behind.extend(v.behind);
    }
    lags.sort_by(f64::total_cmp);
    behind.sort_by(f64::total_cmp);
    let elapsed = started.elapsed().as_secs_f64();

    let wall = (cpu1.at - cpu0.at).as_secs_f64();
    let d = |f: fn(&Snapshot) -> u64| f(&c1) - f(&c0);
    let cpu = cpu_shares(&cpu0, &cpu1, hz);
    let server_util = cpu["server_util"].as_f64().unwrap_or(0.0);
    let generator_util = cpu["generator_util"].as_f64().unwrap_or(0.0);
    let parts_per_s = d(|s| s.parts) as f64 / wall;
    // 1.0 when every viewer fetched one part per part duration.
    let keep_up = parts_per_s * args.period_ms as f64 / 1000.0 / n.max(1) as f64;
    let lag_p99 = percentile(&lags, 99.0);
    let errors = d(|s| s.errors);
    let kept_up = errors == 0
        && d(|s| s.resyncs) == 0
        && d(|s| s.late_cycles) == 0
        && viewer_p99_over == 0
        && (args.mode == Mode::Edge || keep_up > 0.95);
    let statuses = shared.statuses.lock().expect("not poisoned").clone();
    let error_kinds = shared.error_kinds.lock().expect("not poisoned").clone();
    Ok(serde_json::json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "viewers": n,
        "window_s": wall,
        "requests": d(|s| s.requests),
        "req_per_s": d(|s| s.requests) as f64 / wall,
        "playlists_per_s": d(|s| s.playlists) as f64 / wall,
        "parts_per_s": parts_per_s,
        "mb_per_s": d(|s| s.bytes) as f64 / wall / 1e6,
        "keep_up_ratio": keep_up,
        "non_200": d(|s| s.non_200),
        "errors": errors,
        "reconnects": d(|s| s.reconnects),
        "resyncs": d(|s| s.resyncs),
        "late_cycles": d(|s| s.late_cycles),
        "statuses_whole_step": statuses,
        "errors_whole_step": error_kinds,
        "lag_ms": {
            "n": lags.len(),
            "p50": percentile(&lags, 50.0),
            "p99": lag_p99,
            "max": lags.last().copied().unwrap_or(0.0),
        },
        "behind_ms": {
            "p50": percentile(&behind, 50.0),
            "p99": percentile(&behind, 99.0),
            "max": behind.last().copied().unwrap_or(0.0),
        },
        "viewers_p99_lag_over_max": viewer_p99_over,
        "cpu": cpu,
        "viewers_per_core": if server_util > 0.0 { n as f64 / server_util } else { 0.0 },
        "server_cpu_us_per_req": server_util * wall * 1e6 / (d(|s| s.requests).max(1)) as f64,
        "kept_up": kept_up,
        "server_saturated": server_util > 0.9,
        "generator_saturated": generator_util > 0.9,
        "step_s": elapsed,
    }))
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = Client::new(args.protocol, &args.cert)?;

    let (jwts, paths) = match args.mode {
        Mode::Edge => {
            let jwts = read_lines(
                args.jwts
                    .as_ref()
                    .context("--jwts is needed in edge mode")?,
            )?;
            if jwts.is_empty() {
                bail!("--jwts lists no JWT");
            }
            (jwts, Vec::new())
        }
        Mode::Static => {
            let paths = read_lines(
                args.static_paths
                    .as_ref()
                    .context("--static-paths is needed in static mode")?,
            )?;
            if paths.len() < 2 {
                bail!("--static-paths needs the playlist and at least one part");
            }
            (Vec::new(), paths)
        }
    };
    let (jwts, paths) = (Arc::new(jwts), Arc::new(paths));
    let hz = clock_ticks_per_s();

    let idle = if args.idle_s > 0.0 {
        let a = cpu_sample(&args)?;
        tokio::time::sleep(Duration::from_secs_f64(args.idle_s)).await;
        let b = cpu_sample(&args)?;
        let idle = cpu_shares(&a, &b, hz);
        eprintln!(
            "edge_viewers: {:?} idle: server {:.1} % of a core",
            args.mode,
            idle["server_util"].as_f64().unwrap_or(0.0) * 100.0
        );
        idle
    } else {
        serde_json::Value::Null
    };
    let idle_util = idle["server_util"].as_f64().unwrap_or(0.0);

    let mut steps = Vec::new();
    for &n in &args.viewers {
        let mut s = step(&args, &client, n, &jwts, &paths, hz).await?;
        let util = s["cpu"]["server_util"].as_f64().unwrap_or(0.0);
        // Viewers per core counting only what they add above the idle server.
        s["viewers_per_core_marginal"] = serde_json::json!(if util > idle_util {
            n as f64 / (util - idle_util)
        } else {
            0.0
        });
        eprintln!(
            "edge_viewers: {:?} {n:>5} viewers: {:>7.0} req/s, {:>6.1} MB/s, server {:>5.1} % (core {:>5.1} %), generator {:>5.1} %, keep-up {:.3}, lag p99 {:.0} ms, errors {}, non-200 {} -> {:.0} viewers/core{}",
            args.mode,
            s["req_per_s"].as_f64().unwrap_or(0.0),
            s["mb_per_s"].as_f64().unwrap_or(0.0),
            util * 100.0,
            s["cpu"]["server_core_busy"].as_f64().unwrap_or(0.0) * 100.0,
            s["cpu"]["generator_util"].as_f64().unwrap_or(0.0) * 100.0,
            s["keep_up_ratio"].as_f64().unwrap_or(0.0),
            s["lag_ms"]["p99"].as_f64().unwrap_or(0.0),
            s["errors"],
            s["non_200"],
            s["viewers_per_core"].as_f64().unwrap_or(0.0),
            if s["kept_up"].as_bool() == Some(true) {
                ""
            } else {
                " (NOT every viewer kept up)"
            },
        );
        steps.push(s);
        // Let the server close the old connections before the next step.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "edge_viewers",
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "protocol": format!("{:?}", args.protocol).to_lowercase(),
            "period_ms": args.period_ms,
            "idle": idle,
            "steps": steps,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYLIST: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part7.0.m4s?token=a\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part7.1.m4s?token=a\"\n\
        #EXTINF:0.4,\nseg7.m4s?token=a\n\
        #EXT-X-PART:DURATION=0.2,URI=\"part8.0.m4s?token=a\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part8.1.m4s?token=a\"\n";

    #[test]
    fn parts_are_numbered_by_segment() {
        let parts = parse_parts(PLAYLIST).unwrap();
        let ids: Vec<_> = parts.iter().map(|p| (p.msn, p.index)).collect();
        assert_eq!(ids, [(7, 0), (7, 1), (8, 0)]);
        assert_eq!(parts[2].uri, "part8.0.m4s?token=a");
        assert!((parts[0].duration_ms - 200.0).abs() < 1e-9);
    }

    #[test]
    fn skipped_segments_count_in_the_sequence() {
        let delta = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:3\n#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n\
            #EXT-X-PART:DURATION=0.2,URI=\"part7.0.m4s\"\n#EXTINF:0.2,\nseg7.m4s\n\
            #EXT-X-PART:DURATION=0.2,URI=\"part8.0.m4s\"\n";
        let ids: Vec<_> = parse_parts(delta)
            .unwrap()
            .iter()
            .map(|p| (p.msn, p.index))
            .collect();
        assert_eq!(ids, [(7, 0), (8, 0)]);
    }

    #[test]
    fn position_finds_the_part_and_the_lag_behind_it() {
        let parts = parse_parts(PLAYLIST).unwrap();
        // Caught up: the part asked for is the newest.
        assert_eq!(position(&parts, 8, 0).map(|(i, _)| i), Some(2));
        assert_eq!(position(&parts, 8, 0).unwrap().1, 0.0);
        // Two parts listed after it: 400 ms behind.
        let (at, behind) = position(&parts, 7, 0).unwrap();
        assert_eq!(at, 0);
        assert!((behind - 400.0).abs() < 1e-9);
        // A part past the segment's end is the next segment's first.
        assert_eq!(position(&parts, 7, 2).map(|(i, _)| i), Some(2));
        // Nothing at or after it.
        assert_eq!(position(&parts, 8, 1), None);
    }

    #[test]
    fn part_ends_follow_the_program_date_time() {
        let t0 = 1_764_554_924_123i64;
        let playlist = format!(
            "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PROGRAM-DATE-TIME:{}\n\
             #EXT-X-PART:DURATION=0.2,URI=\"part1.0.m4s\"\n\
             #EXT-X-PART:DURATION=0.16,URI=\"part1.1.m4s\"\n#EXTINF:0.36,\nseg1.m4s\n\
             #EXT-X-PART:DURATION=0.2,URI=\"part2.0.m4s\"\n",
            ferrocast_hls::format_program_date_time(t0)
        );
        let ends: Vec<_> = parse_parts(&playlist)
            .unwrap()
            .iter()
            .map(|p| p.end_unix_ms)
            .collect();
        let t0 = t0 as f64;
        assert!((ends[0].unwrap() - (t0 + 200.0)).abs() < 1e-3);
        assert!((ends[1].unwrap() - (t0 + 360.0)).abs() < 1e-3);
        // A segment without its own date-time has no ends.
        assert_eq!(ends[2], None);
    }

    #[test]
    fn date_times_against_the_packagers_formatter() {
        for ms in [0i64, 951_782_400_000, 1_700_000_000_123, 4_102_444_799_999] {
            let text = ferrocast_hls::format_program_date_time(ms);
            assert_eq!(parse_date_time(&text), Some(ms as f64), "{text}");
        }
        assert_eq!(parse_date_time("2026-12-01T02:08:44.123+01:00"), None);
        assert_eq!(parse_date_time("2026-13-01T02:08:44Z"), None);
    }

    #[test]
    fn attributes_with_quoted_values() {
        let tag = "DURATION=0.2,URI=\"a,b.m4s?x=1\",INDEPENDENT=YES";
        assert_eq!(attribute(tag, "URI"), Some("a,b.m4s?x=1"));
        assert_eq!(attribute(tag, "INDEPENDENT"), Some("YES"));
        assert_eq!(attribute(tag, "DURATION"), Some("0.2"));
        assert_eq!(attribute(tag, "GAP"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(directory("/live/bench/index.m3u8"), "/live/bench/");
        assert_eq!(
            directory("/live/bench/stream.m3u8?token=a/b"),
            "/live/bench/"
        );
        assert_eq!(
            with_query("/a.m3u8?token=x", "_HLS_msn=1"),
            "/a.m3u8?token=x&_HLS_msn=1"
        );
        assert_eq!(with_query("/a.m3u8", "_HLS_msn=1"), "/a.m3u8?_HLS_msn=1");
    }
}
