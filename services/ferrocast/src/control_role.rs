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
//!   ingest process holds its lease (publisher statistics, tracks and
//!   thumbnails stay in the ingest and packager processes and are not
//!   shown here yet).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_cluster::control_notices;
use ferrocast_config::Config;
use ferrocast_control::api::history::History;
use ferrocast_control::api::live::LiveStatus;
use ferrocast_control::api::viewer_tokens::MintFailure;
use ferrocast_control::api::{self, ApiState, ControlHooks, HookFuture};
use ferrocast_edge::ViewerTokenMinter;
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
    let hooks: Arc<dyn ControlHooks> = Arc::new(ClusterHooks {
        registry: registry.clone(),
        streams,
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
    minter: Option<ViewerTokenMinter>,
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
                if let Ok(Some(_)) = self.registry.holder(&name, Role::Ingest).await {
                    live.insert(
                        name.as_str().to_owned(),
                        LiveStatus {
                            on_air: true,
                            ..LiveStatus::default()
                        },
                    );
                }
            }
            live
        })
    }

    fn mint_viewer_token(
        &self,
        stream: &str,
        subject: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, u64), MintFailure> {
        crate::control::mint(self.minter.as_ref(), stream, subject, ttl_secs)
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
