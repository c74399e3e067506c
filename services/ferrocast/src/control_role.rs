//! `ferrocast control`: the control plane of a cluster. The REST API and
//! the dashboard over the shared database (`database_url`, PostgreSQL in
//! a cluster), with the Redis registry standing in for the media roles
//! `ferrocast up` has in process:
//!
//! - a change to a stream's keys is recorded in the registry's event log,
//!   and every ingest process reloads its credentials within a poll;
//! - disconnecting a publisher is a request in the same log, acted on by
//!   the ingest process that has it;
//! - live state comes from the registry: a stream is on air while an
//!   ingest process holds its lease; the ingest holding it reports its
//!   publisher (SRT or RTP statistics) and tracks, the transcoder its
//!   renditions, every couple of seconds (`ferrocast_cluster::live_reports`);
//! - a thumbnail is the first keyframe of a subscription to the stream's
//!   source on the ingest process's bus, decoded here;
//! - push URLs name `cluster.publish_address`, or this host and
//!   `srt_listen`'s port.
//! - viewers are the edges' totals in Redis (`[edge.viewers] redis_url`,
//!   the edges' own setting), read without counting as an edge; without
//!   it none are shown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_cluster::{control_notices, live_reports};
use ferrocast_config::Config;
use ferrocast_control::api::history::History;
use ferrocast_control::api::live::LiveStatus;
use ferrocast_control::api::viewer_tokens::MintFailure;
use ferrocast_control::api::{self, ApiState, ControlHooks, HookFuture};
use ferrocast_edge::ViewerTokenMinter;
use ferrocast_edge::viewers::ViewerTotals;
use ferrocast_media::StreamName;
use ferrocast_registry::{EventId, EventKind, Registry, Role};
use ferrocast_telemetry::Metrics;
use tracing::{info, warn};

use crate::shutdown_signal;

/// How often the dashboard's charts get a sample.
const HISTORY_PERIOD: Duration = Duration::from_secs(2);

/// Events read per poll of the log.
const EVENTS_PER_POLL: usize = 512;

/// Runs the control plane until a signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let db = crate::control::open(&config, true)
        .await?
        .context("the control plane needs a database")?;
    crate::control::bootstrap(&db, &config).await?;
    let registry = crate::cluster::registry(&config.cluster)?;
    let streams = StreamsSeen::follow(
        registry.clone(),
        Duration::from_millis(config.cluster.poll_ms),
    );
    let publish = config
        .cluster
        .publish_address
        .as_deref()
        .and_then(ferrocast_config::publish_address);
    // VOD uploads are transcoded here, beside the API, into the
    // recordings' store.
    let vod = match &config.recording {
        Some(recording) => {
            let store: Arc<dyn ferrocast_storage::ObjectStore> =
                Arc::new(crate::recording::store(recording).await?);
            crate::vod::start(&config, store)?
        }
        None => None,
    };
    let hooks: Arc<dyn ControlHooks> = Arc::new(ClusterHooks {
        vod,
        registry: registry.clone(),
        streams,
        thumbnails: crate::live::Thumbnails::default(),
        viewers: match config.edge.as_ref() {
            Some(edge) => ViewerTotals::new(&edge.viewers).context("edge.viewers.redis_url")?,
            None => None,
        },
        push_host: publish.as_ref().map(|(host, _)| host.clone()),
        srt_port: publish.map_or(config.srt_listen.port(), |(_, port)| port),
        minter: config
            .edge
            .as_ref()
            .and_then(|edge| ViewerTokenMinter::from_config(&edge.jwt)),
    });
    let metrics = Arc::new(Metrics::new());
    let app = api::router(ApiState {
        db,
        history: History::sampled(hooks.clone(), HISTORY_PERIOD),
        hooks,
    })
    .merge(operator_router(registry, metrics.clone()));
    let http = ferrocast_packager::http::serve_with_limits(
        config.http_listen,
        app,
        &config.http_connections,
        &metrics.connections,
    )
    .await
    .with_context(|| format!("binding the API listener on {}", config.http_listen))?;
    info!(
        http = %http.local_addr(),
        "ferrocast control up: /api/v1 (API token), /dashboard, /healthz, /readyz, /metrics"
    );
    println!("ferrocast control ready http={}", http.local_addr());
    shutdown_signal().await?;
    info!("shutting down");
    Ok(())
}

/// The API's hooks into a cluster, through the registry.
struct ClusterHooks {
    registry: Arc<dyn Registry>,
    streams: StreamsSeen,
    thumbnails: crate::live::Thumbnails,
    /// The edges' viewer totals, with `[edge.viewers] redis_url`.
    viewers: Option<ViewerTotals>,
    push_host: Option<String>,
    srt_port: u16,
    minter: Option<ViewerTokenMinter>,
    /// The VOD upload queue, with `[recording]`.
    vod: Option<Arc<dyn ferrocast_control::api::vod::VodUploads>>,
}

impl ClusterHooks {
    /// `stream`'s live state from the reports of the processes holding
    /// it, if an ingest holds it.
    async fn status(&self, stream: &StreamName) -> Option<LiveStatus> {
        self.registry
            .holder(stream, Role::Ingest)
            .await
            .ok()
            .flatten()?;
        let mut status = self.report(stream, Role::Ingest).await.unwrap_or_default();
        status.on_air = true;
        if let Some(transcoded) = self.report(stream, Role::Transcode).await {
            status.renditions = transcoded.renditions;
        }
        Some(status)
    }

    /// The report `role` wrote of `stream`, if one is there and reads.
    async fn report(&self, stream: &StreamName, role: Role) -> Option<LiveStatus> {
        let json = self.registry.live_report(stream, role).await.ok()??;
        match serde_json::from_str(&json) {
            Ok(status) => Some(status),
            Err(error) => {
                warn!(%error, %stream, role = role.as_str(), "live report unreadable");
                None
            }
        }
    }
}

impl ControlHooks for ClusterHooks {
    fn streams_changed<'a>(&'a self, stream: &'a str) -> HookFuture<'a, ()> {
        Box::pin(async move {
            let Ok(name) = StreamName::new(stream) else {
                return;
            };
            if let Err(error) =
                control_notices::notify_keys_changed(self.registry.as_ref(), &name).await
            {
                // The ingest processes' database poll applies it anyway.
                warn!(%error, stream, "key change not announced to the ingest processes");
            }
        })
    }

    fn disconnect<'a>(&'a self, stream: &'a str) -> HookFuture<'a, bool> {
        Box::pin(async move {
            let Ok(name) = StreamName::new(stream) else {
                return false;
            };
            match self.registry.holder(&name, Role::Ingest).await {
                Ok(Some(_)) => {
                    match control_notices::request_disconnect(self.registry.as_ref(), &name).await {
                        Ok(()) => true,
                        Err(error) => {
                            warn!(%error, stream, "disconnect request not recorded");
                            false
                        }
                    }
                }
                Ok(None) => false,
                Err(error) => {
                    warn!(%error, stream, "registry unreachable: nothing disconnected");
                    false
                }
            }
        })
    }

    fn live(&self) -> HookFuture<'_, BTreeMap<String, LiveStatus>> {
        Box::pin(async move {
            let mut live = BTreeMap::new();
            for name in self.streams.names() {
                if let Some(status) = self.status(&name).await {
                    live.insert(name.as_str().to_owned(), status);
                }
            }
            if let Some(viewers) = &self.viewers {
                match viewers.read().await {
                    Ok(totals) => {
                        for (name, status) in live.iter_mut() {
                            status.viewers = Some(totals.get(name).copied().unwrap_or(0));
                        }
                    }
                    // Every sample would say it again: once per read, at debug.
                    Err(error) => tracing::debug!(%error, "viewer totals not read"),
                }
            }
            live
        })
    }

    fn thumbnail<'a>(&'a self, stream: &'a str) -> HookFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let name = StreamName::new(stream).ok()?;
            let subscriber = async {
                match live_reports::source_subscriber(self.registry.as_ref(), &name).await {
                    Ok(subscriber) => Some(subscriber),
                    Err(error) => {
                        tracing::debug!(%error, stream, "no thumbnail");
                        None
                    }
                }
            };
            let jpeg = self.thumbnails.get(stream, subscriber).await?;
            Some(jpeg.as_ref().clone())
        })
    }

    fn srt_port(&self) -> Option<u16> {
        Some(self.srt_port)
    }

    fn push_host(&self) -> Option<String> {
        self.push_host.clone()
    }

    fn mint_viewer_token(
        &self,
        stream: &str,
        subject: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, u64), MintFailure> {
        crate::control::mint(self.minter.as_ref(), stream, subject, ttl_secs)
    }

    fn vod(&self) -> Option<Arc<dyn ferrocast_control::api::vod::VodUploads>> {
        self.vod.clone()
    }
}

/// The streams the event log says started and have not ended, followed
/// from the log's oldest kept event.
#[derive(Clone, Default)]
struct StreamsSeen {
    names: Arc<Mutex<BTreeSet<StreamName>>>,
}

impl StreamsSeen {
    fn follow(registry: Arc<dyn Registry>, poll: Duration) -> StreamsSeen {
        let seen = StreamsSeen::default();
        let names = Arc::downgrade(&seen.names);
        tokio::spawn(async move {
            let mut cursor: Option<EventId> = None;
            let mut ticks = tokio::time::interval(poll);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(names) = names.upgrade() else { return };
                let Ok(events) = registry.events(cursor.as_ref(), EVENTS_PER_POLL).await else {
                    continue;
                };
                let mut names = names.lock().unwrap_or_else(PoisonError::into_inner);
                for (id, event) in events {
                    cursor = Some(id);
                    match event.kind {
                        EventKind::Started => {
                            names.insert(event.stream);
                        }
                        EventKind::Ended => {
                            names.remove(&event.stream);
                        }
                        _ => {}
                    }
                }
            }
        });
        seen
    }

    fn names(&self) -> Vec<StreamName> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names.iter().cloned().collect()
    }
}

#[derive(Clone)]
struct Operator {
    registry: Arc<dyn Registry>,
    metrics: Arc<Metrics>,
}

/// `/healthz` (the process answers), `/readyz` (the registry answers),
/// `/metrics`.
fn operator_router(registry: Arc<dyn Registry>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Operator { registry, metrics })
}

async fn readyz(State(op): State<Operator>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(2), op.registry.nodes()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_owned()),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: registry unreachable\n".to_owned(),
        ),
    }
}

async fn metrics_text(State(op): State<Operator>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        op.metrics.render(),
    )
}
