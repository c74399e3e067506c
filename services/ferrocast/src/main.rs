//! `ferrocast`: the all-in-one Ferrocast binary.
//!
//! `ferrocast up` runs every role in one process with embedded defaults: the
//! SRT listener, the in-process media bus, the packager and the HTTP origin,
//! and with an `[edge]` section the HTTPS / HTTP/3 edge in front of it.
//! `ferrocast edge` runs only the edge, in front of a remote packager origin
//! over HTTP (`[edge.origin]` or `--origin`).
//! Configuration comes from `FERROCAST_*` environment variables, then a TOML
//! file (`--config`), then flags, each winning over the one before.

mod cluster;
mod control;
mod control_role;
mod edge;
mod exposure;
mod live;
mod logging;
mod probe;
mod recording;
mod roles;
mod status;
mod transcode;
mod vod;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferrocast_config::{Config, Layers, Process};
use ferrocast_edge::server::EdgeMetrics;
use logging::LogFormat;
use tracing::{info, warn};

/// Ferrocast: live SRT ingest to Low-Latency HLS.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log lines on stderr: `text` for people, `json` (one object per
    /// line: timestamp, level, target, message and every field, such as
    /// `stream`, with the spans they were logged in) for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "FERROCAST_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role in this process (SRT ingest, packager, HTTP origin).
    ///
    /// Settings are read from, in rising order of precedence: built-in
    /// defaults; `FERROCAST_*` environment variables (`FERROCAST_HTTP_LISTEN`,
    /// `FERROCAST_HLS__PART_TARGET_MS` for `[hls] part_target_ms`, ...); the
    /// TOML file given with `--config` or `FERROCAST_CONFIG`; these flags.
    /// See docs/configuration.md for every key.
    Up(UpArgs),
    /// Run only the edge (HTTPS / HTTP/3, viewer JWTs, edge tokens,
    /// coalescing) in front of a remote packager origin over HTTP.
    ///
    /// Reads the same settings as `up` (environment, `--config` file,
    /// flags): the `[edge]` section, plus the origin from `--origin` or
    /// `[edge.origin] base_url`. `/metrics` and `/healthz` are served on
    /// `http_listen` (`--http-listen`). Stops on Ctrl-C or SIGTERM.
    Edge(EdgeArgs),
    /// Run only SRT and RTP ingest, as one process of a cluster: each
    /// stream published here is held in the Redis registry (`[cluster]`)
    /// and served to the transcode and package processes over the media
    /// bus (`[cluster] bus_listen`). `/metrics`, `/healthz` and `/readyz`
    /// on `http_listen`.
    Ingest(RoleArgs),
    /// Run only the transcoder, as one process of a cluster: takes streams
    /// from the registry's work queue and serves their rungs over the media
    /// bus.
    Transcode(RoleArgs),
    /// Run only the packager and HTTP origin, as one process of a cluster:
    /// packages the streams whose package lease it holds, on `http_listen`.
    Package(RoleArgs),
    /// Run only the control plane, as one process of a cluster: the REST
    /// API under `/api/v1` and the dashboard on `http_listen`, over
    /// `database_url` (PostgreSQL, shared with the ingest processes). Key
    /// changes and disconnections reach the ingest processes through the
    /// Redis registry; live state comes from its leases. Writes the first
    /// admin token to `DATA_DIR/admin-token` against an empty database.
    Control(RoleArgs),
    /// GET a plain-HTTP URL, such as `http://127.0.0.1:8080/readyz`, for
    /// container health checks: exit status 0 on a 2xx answer (its body on
    /// stdout), 1 otherwise (the reason on stderr).
    Probe(ProbeArgs),
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    /// `http://HOST:PORT/PATH`.
    url: String,
    /// How long to wait for the whole answer.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout_ms: u64,
}

/// Flags of the role processes (`ingest`, `transcode`, `package`).
#[derive(Debug, clap::Args)]
struct RoleArgs {
    /// TOML configuration file.
    #[arg(long, env = "FERROCAST_CONFIG")]
    config: Option<PathBuf>,
    /// The Redis registry, `redis://HOST:PORT` [config: cluster.redis_url].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// This process's id in the registry [config: cluster.node_id;
    /// default: HOSTNAME].
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// TCP address of the media bus (ingest, transcode) [config:
    /// cluster.bus_listen; default 0.0.0.0:7000].
    #[arg(long, value_name = "ADDR")]
    bus_listen: Option<SocketAddr>,
    /// TCP address of `/metrics`, `/healthz`, `/readyz` (and the origin of
    /// `package`) [config: http_listen; default 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// UDP address of the SRT listener (ingest) [config: srt_listen;
    /// default 0.0.0.0:9000].
    #[arg(long, value_name = "ADDR")]
    srt_listen: Option<SocketAddr>,
}

impl RoleArgs {
    /// The configuration of `process`: only the sections it reads are
    /// parsed and checked.
    fn config(&self, process: Process) -> anyhow::Result<Config> {
        let mut layers = base_layers(self.config.as_ref())?;
        if let Some(url) = &self.redis_url {
            layers = layers.with_value("cluster.redis_url", url.clone());
        }
        if let Some(id) = &self.node_id {
            layers = layers.with_value("cluster.node_id", id.clone());
        }
        if let Some(addr) = self.bus_listen {
            layers = layers.with_value("cluster.bus_listen", addr.to_string());
        }
        if let Some(addr) = self.http_listen {
            layers = layers.with_value("http_listen", addr.to_string());
        }
        if let Some(addr) = self.srt_listen {
            if process != Process::Ingest {
                anyhow::bail!("--srt-listen is for `ferrocast ingest` only");
            }
            layers = layers.with_value("srt_listen", addr.to_string());
        }
        Ok(layers.build_for(process)?)
    }
}

/// The edge's listener flags, shared by `up` and `edge`.
#[derive(Debug, clap::Args)]
struct EdgeFlags {
    /// Address of the edge's HTTPS listener, TCP for HTTP/1.1 and 2 and UDP
    /// for HTTP/3 [config: edge.https_listen; default 0.0.0.0:8443]. Needs
    /// an `[edge]` section (JWT and edge token keys) in the config file.
    #[arg(long, value_name = "ADDR")]
    https_listen: Option<SocketAddr>,
    /// PEM certificate chain of the edge [config: edge.tls_cert; default: a
    /// self-signed certificate generated at start].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` [config: edge.tls_key].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl EdgeFlags {
    fn apply(&self, mut layers: Layers) -> Layers {
        if let Some(addr) = self.https_listen {
            layers = layers.with_value("edge.https_listen", addr.to_string());
        }
        if let Some(cert) = &self.tls_cert {
            layers = layers.with_value("edge.tls_cert", cert.display().to_string());
        }
        if let Some(key) = &self.tls_key {
            layers = layers.with_value("edge.tls_key", key.display().to_string());
        }
        layers
    }
}

/// Defaults, then `FERROCAST_*` variables, then the config file.
fn base_layers(config: Option<&PathBuf>) -> anyhow::Result<Layers> {
    let mut layers = Layers::default().with_env(std::env::vars());
    if let Some(path) = config {
        layers = layers.with_file(path)?;
    }
    Ok(layers)
}

#[derive(Debug, clap::Args)]
struct EdgeArgs {
    /// TOML configuration file (its `[edge]` section).
    #[arg(long, env = "FERROCAST_CONFIG")]
    config: Option<PathBuf>,
    /// Base URL of the packager origin, like `http://packager:8080`
    /// [config: edge.origin.base_url; no default].
    #[arg(long, value_name = "URL", conflicts_with = "redis_url")]
    origin: Option<String>,
    /// Without an origin: the cluster's Redis registry, which names the
    /// packager of each stream [config: cluster.redis_url].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// TCP address for `/metrics` and `/healthz` [config: http_listen;
    /// default 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    #[command(flatten)]
    edge: EdgeFlags,
}

impl EdgeArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut layers = base_layers(self.config.as_ref())?;
        if let Some(origin) = &self.origin {
            layers = layers.with_value("edge.origin.base_url", origin.clone());
        }
        if let Some(url) = &self.redis_url {
            layers = layers.with_value("cluster.redis_url", url.clone());
        }
        if let Some(addr) = self.http_listen {
            layers = layers.with_value("http_listen", addr.to_string());
        }
        Ok(self.edge.apply(layers).build_for(Process::Edge)?)
    }
}

/// `ferrocast up`'s default `http_listen`.
const UP_HTTP_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// TOML configuration file.
    #[arg(long, env = "FERROCAST_CONFIG")]
    config: Option<PathBuf>,
    /// UDP address for the SRT listener [config: srt_listen; default 0.0.0.0:9000].
    #[arg(long, value_name = "ADDR")]
    srt_listen: Option<SocketAddr>,
    /// TCP address for the HTTP origin, `/metrics`, `/status`, the API and
    /// the dashboard [config: http_listen; default 127.0.0.1:8080 (for
    /// `up` only: loopback unless you say otherwise)]. Off loopback with an
    /// `[edge]`, the origin, `/metrics` and `/status` need an API token.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// Directory for local state [config: data_dir; default ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// ABR ladder for every stream: a built-in (`default`, `small`) or
    /// `[[transcode.ladders]]` name, `auto` for the built-in that suits this
    /// machine, or `off` to serve streams untranscoded
    /// [config: transcode.ladder; env FERROCAST_TRANSCODE__LADDER; default auto].
    #[arg(long, value_name = "NAME|off")]
    ladder: Option<String>,
    #[command(flatten)]
    edge: EdgeFlags,
}

impl UpArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut layers = base_layers(self.config.as_ref())?;
        if let Some(addr) = self.srt_listen {
            layers = layers.with_value("srt_listen", addr.to_string());
        }
        if let Some(addr) = self.http_listen {
            layers = layers.with_value("http_listen", addr.to_string());
        }
        if let Some(dir) = &self.data_dir {
            layers = layers.with_value("data_dir", dir.display().to_string());
        }
        if let Some(ladder) = &self.ladder {
            layers = layers.with_value("transcode.ladder", ladder.clone());
        }
        // The all-in-one process serves media without tokens on
        // http_listen: only this machine reaches it unless configured.
        let layers = self
            .edge
            .apply(layers)
            .with_default("http_listen", UP_HTTP_LISTEN);
        Ok(layers.build()?)
    }
}

fn main() -> anyhow::Result<()> {
    // Two providers are compiled in (ring, and aws-lc-rs through the S3
    // client); whatever builds a TLS config without naming one gets ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    if let Command::Probe(args) = &cli.command {
        // A health check's failure is an answer, not a crash: one line on
        // stderr, exit status 1, never a backtrace.
        let answer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(probe::probe(
                &args.url,
                Duration::from_millis(args.timeout_ms),
            ));
        match answer {
            Ok(body) => {
                print!("{body}");
                return Ok(());
            }
            Err(e) => {
                eprintln!("{e:#}");
                std::process::exit(1);
            }
        }
    }
    let (role, config) = match &cli.command {
        Command::Up(args) => ("up", args.config()?),
        Command::Edge(args) => ("edge", args.config()?),
        Command::Ingest(args) => ("ingest", args.config(Process::Ingest)?),
        Command::Transcode(args) => ("transcode", args.config(Process::Transcode)?),
        Command::Package(args) => ("package", args.config(Process::Package)?),
        Command::Control(args) => ("control", args.config(Process::Control)?),
        Command::Probe(_) => return Ok(()),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let instance = config
        .cluster
        .node_id
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("{role}-{}", std::process::id()));
    // The OTLP exporter's gRPC channel runs on the runtime.
    let tracing = {
        let _entered = runtime.enter();
        logging::init(cli.log_format, role, instance, &config.telemetry)?
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Up(_) => up(config).await,
            Command::Edge(_) => edge_only(config).await,
            Command::Ingest(_) => roles::ingest(config).await,
            Command::Transcode(_) => roles::transcode(config).await,
            Command::Package(_) => roles::package(config).await,
            Command::Control(_) => control_role::run(config).await,
            Command::Probe(_) => Ok(()),
        }
    });
    // Spans still buffered go out while the runtime runs.
    if let Some(tracing) = tracing {
        tracing.shutdown(Duration::from_secs(3));
    }
    outcome
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for Ctrl-C"),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")
    }
}

/// Resolves on a second Ctrl-C or SIGTERM (or never, if the handlers
/// cannot be installed): cuts a graceful drain short.
async fn second_signal() {
    if shutdown_signal().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `ferrocast edge`: the edge alone, in front of `[edge.origin]` over HTTP,
/// or, without an origin but with `[cluster] redis_url`, in front of every
/// packager of a cluster (each stream routed to the one holding it).
async fn edge_only(config: Config) -> anyhow::Result<()> {
    let edge_config = config.edge.as_ref().context(
        "ferrocast edge needs an [edge] section (with [edge.jwt] and [edge.token]) in the \
         config file given with --config",
    )?;
    let fixed = edge_config
        .origin
        .as_ref()
        .is_some_and(|o| !o.base_url.is_empty());
    match (&config.cluster.redis_url, fixed) {
        (Some(url), false) => {
            let registry: Arc<dyn ferrocast_registry::Registry> =
                Arc::new(ferrocast_registry_redis::RedisRegistry::open(
                    url.expose(),
                    &config.cluster.prefix,
                )?);
            let fresh = Duration::from_millis(config.cluster.poll_ms);
            let upstream = edge::routed_origin(edge_config, registry, fresh);
            run_edge(&config, edge_config, upstream, "registry").await
        }
        _ => {
            let upstream = edge::remote_origin(edge_config)?;
            let origin = upstream.origin().to_owned();
            run_edge(&config, edge_config, upstream, &origin).await
        }
    }
}

async fn run_edge<U: ferrocast_edge::Upstream + ferrocast_edge::server::OriginStats + 'static>(
    config: &Config,
    edge_config: &ferrocast_edge::EdgeConfig,
    upstream: U,
    origin: &str,
) -> anyhow::Result<()> {
    let metrics = EdgeMetrics::new().context("edge metrics")?;
    let recordings = recording::vod(config).await?;
    let edge = edge::start(edge_config, upstream, recordings, metrics).await?;
    let operator = ferrocast_packager::http::serve_with_limits(
        config.http_listen,
        edge::operator_router(&edge),
        &config.http_connections,
        &edge.server().metrics().connections,
    )
    .await
    .with_context(|| format!("binding the metrics listener on {}", config.http_listen))?;
    let server = edge.server();
    info!(
        https = %server.https_addr(),
        metrics = %operator.local_addr(),
        origin = %origin,
        "ferrocast edge up"
    );
    // A machine-readable line for scripts and tests, like `ferrocast ready`.
    println!(
        "ferrocast edge ready https={} metrics={}{}",
        server.https_addr(),
        operator.local_addr(),
        server
            .spki_sha256()
            .map(|spki| format!(" spki_sha256={spki}"))
            .unwrap_or_default()
    );
    shutdown_signal().await?;
    info!("shutting down");
    // The one place the edge stops: held requests drain first.
    edge.drain(edge_config, second_signal()).await;
    drop(operator);
    Ok(())
}

async fn up(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let database = control::open(&config, true).await?;
    let control = control::start(&config, database, true).await?;
    let bus = ferrocast_bus::InProcessBus::default();
    let metrics = Arc::new(ferrocast_telemetry::Metrics::new());
    let connection_metrics = metrics.connections.clone();
    // One registry per process: the edge's metrics join the others.
    let edge_metrics = match &config.edge {
        Some(_) => Some(EdgeMetrics::new_in(metrics.registry()).context("edge metrics")?),
        None => None,
    };
    // Recording to S3 ([recording]); the tasks live as long as `up`.
    let (recorder, _recorder_tasks, recordings, uploads, writer) =
        match recording::start(&config, &metrics, 0, control.reloader.clone()).await? {
            Some(r) => {
                let uploads = vod::start(&config, r.store)?;
                (
                    Some(r.sink),
                    Some(r.tasks),
                    Some(r.vod),
                    uploads,
                    Some(r.recorder),
                )
            }
            None => (None, None, None, None, None),
        };
    let origin = ferrocast_packager::Origin::start_recording(
        Arc::new(bus.clone()),
        ferrocast_packager::PackagerConfig::from(&config),
        metrics.clone(),
        recorder,
    )
    .context("packager configuration")?;
    // RTP ingest ([[rtp]] ports); dropping it stops them, so it lives as long as `up`.
    let rtp = ferrocast_ingest::RtpIngest::start(
        &config.rtp,
        ferrocast_ingest::RtpSettings {
            idle_timeout: Duration::from_millis(config.ingest.idle_timeout_ms),
            interleave: roles::ingest_interleave(&config),
        },
        Arc::new(bus.clone()),
    )
    .await?;
    let rtp = Arc::new(rtp);
    // The transcoder tells the origin, per stream, which renditions to list.
    let plans = {
        let origin = origin.clone();
        Arc::new(move |stream: &ferrocast_media::StreamName, plan| {
            origin.set_renditions(stream, plan);
        })
    };
    let transcoder = transcode::start(
        &config.transcode,
        &config.hls,
        Arc::new(bus.clone()),
        plans,
        metrics.clone(),
    )
    .await?;
    let transcoder = match transcoder {
        transcode::Transcoder::Off => None,
        transcode::Transcoder::Running(service) => Some(service),
        transcode::Transcoder::NoEncoder(no_encoder) => anyhow::bail!(
            "{no_encoder}: set transcode.nvenc = \"auto\" to encode on the CPU where NVENC \
             does not open, or transcode.ladder = \"off\" to serve streams as published"
        ),
    };
    let srt = ferrocast_ingest::SrtIngest::start(
        ferrocast_ingest::SrtConfig {
            listen: config.srt_listen,
            latency: Duration::from_millis(config.ingest.srt_latency_ms),
            idle_timeout: Duration::from_millis(config.ingest.idle_timeout_ms),
            interleave: roles::ingest_interleave(&config),
        },
        Arc::new(bus.clone()),
        control.authorizer,
        metrics,
    )
    .await?;
    let srt = Arc::new(srt);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let live = live::LiveSources {
        srt: srt.clone(),
        rtp: rtp.clone(),
        origin: origin.clone(),
        transcoder: transcoder.clone(),
        viewers: edge_metrics.as_ref().map(|m| m.viewers.clone()),
        bus: bus.clone(),
        thumbnails: live::Thumbnails::default(),
        edge_port: Arc::default(),
    };
    let edge_port = live.edge_port.clone();
    let mut app = ferrocast_packager::http::router(origin.clone()).merge(status::router(
        origin.clone(),
        srt.clone(),
        rtp,
        bus,
        transcoder,
        draining.clone(),
    ));
    // With an edge in front, the origin off loopback needs an API token.
    let guarded = match &control.db {
        Some(db) if config.edge.is_some() && !config.http_listen.ip().is_loopback() => {
            app = ferrocast_control::api::auth::guard(app, db.clone());
            true
        }
        _ => false,
    };
    if let Some(api) = control.api {
        app = app.merge(api(live, uploads));
    }
    let http = ferrocast_packager::http::serve_with_limits(
        config.http_listen,
        app,
        &config.http_connections,
        &connection_metrics,
    )
    .await
    .with_context(|| format!("binding HTTP origin on {}", config.http_listen))?;
    let edge = match (&config.edge, edge_metrics) {
        (Some(edge), Some(metrics)) => {
            if edge.origin.is_some() {
                warn!(
                    "edge.origin is for `ferrocast edge`; `ferrocast up` serves its edge from \
                     the origin in this process"
                );
            }
            let edge =
                edge::start_in_process(edge, &config.hls, &origin, recordings, metrics).await?;
            let _ = edge_port.set(edge.server().https_addr().port());
            Some(edge)
        }
        _ => None,
    };
    info!(srt = %srt.local_addr(), http = %http.local_addr(), "ferrocast up");
    exposure::log(
        &config,
        http.local_addr(),
        edge.as_ref().map(|e| e.server()),
        guarded,
    );
    // A machine-readable line for scripts and tests that start us on port 0.
    match &edge {
        // `spki_sha256=` is the certificate's pin, generated or configured
        // (for Chromium's --ignore-certificate-errors-spki-list).
        Some(edge) => println!(
            "ferrocast ready srt={} http={} https={}{}",
            srt.local_addr(),
            http.local_addr(),
            edge.server().https_addr(),
            edge.server()
                .spki_sha256()
                .map(|spki| format!(" spki_sha256={spki}"))
                .unwrap_or_default()
        ),
        None => println!(
            "ferrocast ready srt={} http={}",
            srt.local_addr(),
            http.local_addr()
        ),
    }
    shutdown_signal().await?;
    info!("shutting down");
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    // Viewers' held requests drain through the edge while the origin (and
    // ingest) still run, so they are answered rather than cut.
    if let (Some(edge), Some(edge_config)) = (edge, &config.edge) {
        edge.drain(edge_config, second_signal()).await;
    }
    // Recordings are closed as if their streams had ended, their
    // playlists uploaded while the store lets them; what is left is
    // closed by the next process from its stale marker.
    if let Some(writer) = writer {
        origin.end_all();
        if writer.all_closed(RECORDINGS_CLOSE_WAIT).await {
            info!("recordings closed");
        } else {
            warn!(
                wait_secs = RECORDINGS_CLOSE_WAIT.as_secs(),
                "recordings not all closed and uploaded in time: the next start closes them"
            );
        }
    }
    Ok(())
}

/// How long a stopping `ferrocast up` waits for its recordings to close.
const RECORDINGS_CLOSE_WAIT: Duration = Duration::from_secs(15);
