//! The role processes of a cluster: `ferrocast ingest`, `ferrocast
//! transcode` and `ferrocast package`. Thin wiring: the roles are the same
//! services `ferrocast up` runs, on a [`ferrocast_cluster::ClusterBus`]
//! instead of the in-process bus, with each role's claims deciding which
//! streams this process takes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_bus::MediaBus;
use ferrocast_cluster::control_notices::{self, ControlNoticeHandler};
use ferrocast_cluster::live_reports;
use ferrocast_cluster::{
    Drained, HandOverFn, IngestClaims, PackageClaims, PackagerHooks, TranscodeClaims,
};
use ferrocast_config::{Config, LadderChoice};
use ferrocast_control::api::live::LiveStatus;
use ferrocast_ingest::{RtpIngest, RtpSettings, SrtConfig, SrtIngest};
use ferrocast_media::StreamName;
use ferrocast_packager::{Origin, PackagerConfig};
use ferrocast_registry::Role;
use ferrocast_telemetry::Metrics;
use tracing::info;

use crate::cluster::{self, ReadyCheck, operator_router};
use crate::transcode::Transcoder;
use crate::{shutdown_signal, transcode};

/// How often the ingest and transcode processes write what the control
/// plane shows of their streams to the registry.
const LIVE_REPORT_PERIOD: Duration = Duration::from_secs(2);

/// Always alive, always ready beyond the shared checks.
/// How SRT and RTP ingest merge a publisher's tracks: video does not wait
/// for audio where the packager puts audio in a rendition of its own
/// (`hls.audio = "separate"`).
pub(crate) fn ingest_interleave(config: &Config) -> ferrocast_ingest::interleave::InterleaveConfig {
    ferrocast_ingest::interleave::InterleaveConfig::for_audio_layout(
        config.hls.audio == ferrocast_config::AudioLayout::Separate,
    )
}

fn no_check() -> ReadyCheck {
    Arc::new(|| None)
}

/// What an ingest process does on the control plane's notices.
struct IngestNotices {
    reloader: Option<Arc<ferrocast_control::DbAuthorizer>>,
    srt: Arc<SrtIngest>,
}

impl ControlNoticeHandler for IngestNotices {
    fn keys_changed(&self) {
        if let Some(reloader) = self.reloader.clone() {
            tokio::spawn(async move {
                if let Err(error) = reloader.reload().await {
                    // The next poll tries again.
                    tracing::warn!(%error, "publish credentials not reloaded on a notice");
                }
            });
        }
    }

    fn disconnect(&self, stream: &StreamName) {
        // Logged by the listener when it has the publisher.
        self.srt.disconnect(stream.as_str());
    }
}

/// `ferrocast ingest`: SRT and RTP ingest; each stream published here is
/// held in the registry and served to the other processes over the bus.
pub async fn ingest(config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // The SRT listener is bound below; until then (and while its supervisor
    // rebinds it) the process is neither alive nor ready.
    let srt_slot: Arc<std::sync::OnceLock<Arc<SrtIngest>>> = Arc::default();
    let srt_check: ReadyCheck = {
        let slot = srt_slot.clone();
        Arc::new(move || match slot.get() {
            None => Some("srt listener not bound yet".to_owned()),
            Some(srt) => {
                let health = srt.health();
                (!health.up).then(|| {
                    format!(
                        "srt listener down: {}",
                        health.last_failure.as_deref().unwrap_or("unknown")
                    )
                })
            }
        })
    };
    let member = cluster::join(&config, Role::Ingest, true, srt_check.clone()).await?;
    let transcoding = config.transcode.choice().context("transcode.ladder")? != LadderChoice::Off;
    let claims = IngestClaims::start(&member.bus, transcoding);
    let bus: Arc<dyn MediaBus> = Arc::new(member.bus.clone());
    let control =
        crate::control::start(&config, crate::control::open(&config, false).await?, false).await?;
    let srt = SrtIngest::start(
        SrtConfig {
            listen: config.srt_listen,
            latency: Duration::from_millis(config.ingest.srt_latency_ms),
            idle_timeout: Duration::from_millis(config.ingest.idle_timeout_ms),
            interleave: ingest_interleave(&config),
        },
        bus.clone(),
        control.authorizer,
        metrics.clone(),
    )
    .await?;
    let srt = Arc::new(srt);
    let _ = srt_slot.set(srt.clone());
    // The control plane's notices: key changes, disconnect requests.
    let _notices = control_notices::watch(
        member.bus.registry().clone(),
        Duration::from_millis(config.cluster.poll_ms),
        Arc::new(IngestNotices {
            reloader: control.reloader,
            srt: srt.clone(),
        }),
    );
    let rtp = Arc::new(
        RtpIngest::start(
            &config.rtp,
            RtpSettings {
                idle_timeout: Duration::from_millis(config.ingest.idle_timeout_ms),
                interleave: ingest_interleave(&config),
            },
            bus,
        )
        .await?,
    );
    // What the control plane shows of each publisher here.
    let _reports = {
        let (srt, rtp, local) = (srt.clone(), rtp.clone(), member.bus.local().clone());
        live_reports::report(
            member.bus.registry().clone(),
            Role::Ingest,
            LIVE_REPORT_PERIOD,
            Arc::new(move || {
                crate::live::registry_reports(crate::live::ingest_reports(&srt, &rtp, &local))
            }),
        )
    };
    let bus_addr = member.bus_addr.context("the ingest bus is served")?;
    let endpoint = member.register(bus_addr)?;
    let http = ferrocast_packager::http::serve_with_limits(
        config.http_listen,
        operator_router(&member, metrics.clone(), srt_check),
        &config.http_connections,
        &metrics.connections,
    )
    .await
    .with_context(|| format!("binding the operator listener on {}", config.http_listen))?;
    info!(node = %member.node(), srt = %srt.local_addr(), bus = %endpoint, "ferrocast ingest up");
    println!(
        "ferrocast ingest ready srt={} bus={} http={} node={}",
        srt.local_addr(),
        bus_addr,
        http.local_addr(),
        member.node()
    );
    shutdown_signal().await?;
    member.readiness.drain();
    let released = claims.drain().await;
    info!(
        released,
        "shutting down: ingest leases let go, the publishers' reconnects land elsewhere"
    );
    Ok(())
}

/// `ferrocast transcode`: takes streams from the registry's work queue
/// (at most `[cluster] max_transcodes`), transcodes their ladder and
/// serves the rungs over the bus; each stream's rendition plan goes to the
/// registry. When the encoder self-test fails (no NVENC under
/// `transcode.nvenc = "require"`, a CPU encoder missing) the process stays
/// up, not ready with the reason, and takes no work.
pub async fn transcode(config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let no_encoder: Arc<std::sync::OnceLock<String>> = Arc::default();
    let encoder_check: ReadyCheck = {
        let no_encoder = no_encoder.clone();
        Arc::new(move || no_encoder.get().cloned())
    };
    let member = cluster::join(&config, Role::Transcode, true, encoder_check).await?;
    let plans: transcode::PlanSink = {
        let bus = member.bus.clone();
        Arc::new(move |stream, plan| TranscodeClaims::publish_plan(&bus, stream, plan))
    };
    let started = transcode::start(
        &config.transcode,
        &config.hls,
        Arc::new(member.bus.clone()),
        plans,
        metrics.clone(),
    )
    .await?;
    let bus_addr = member.bus_addr.context("the transcoder's bus is served")?;
    let operator = |member: &cluster::Membership| {
        ferrocast_packager::http::serve_with_limits(
            config.http_listen,
            operator_router(member, metrics.clone(), no_check()),
            &config.http_connections,
            &metrics.connections,
        )
    };
    let service = match started {
        Transcoder::Running(service) => service,
        Transcoder::Off => anyhow::bail!(
            "transcode.ladder is \"off\": a transcode process has nothing to do (run no \
             transcoders, and set it off for the ingest processes too)"
        ),
        Transcoder::NoEncoder(reason) => {
            // Not registered: a node record would count as a transcoder
            // with room, and the others would leave it the work.
            let _ = no_encoder.set(reason.to_string());
            let http = operator(&member).await.with_context(|| {
                format!("binding the operator listener on {}", config.http_listen)
            })?;
            println!(
                "ferrocast transcode not-ready http={} node={} reason={reason}",
                http.local_addr(),
                member.node()
            );
            shutdown_signal().await?;
            return Ok(());
        }
    };
    let claims = TranscodeClaims::start(&member.bus, config.cluster.max_transcodes);
    // The renditions the control plane shows of each stream transcoded here.
    let _reports = {
        let service = service.clone();
        live_reports::report(
            member.bus.registry().clone(),
            Role::Transcode,
            LIVE_REPORT_PERIOD,
            Arc::new(move || {
                let statuses = crate::live::renditions(&service)
                    .into_iter()
                    .map(|(name, renditions)| {
                        let status = LiveStatus {
                            renditions,
                            ..LiveStatus::default()
                        };
                        (name, status)
                    })
                    .collect();
                crate::live::registry_reports(statuses)
            }),
        )
    };
    let endpoint = member.register(bus_addr)?;
    let http = operator(&member)
        .await
        .with_context(|| format!("binding the operator listener on {}", config.http_listen))?;
    info!(node = %member.node(), bus = %endpoint, ladder = %service.ladder().name, "ferrocast transcode up");
    println!(
        "ferrocast transcode ready bus={} http={} node={}",
        bus_addr,
        http.local_addr(),
        member.node()
    );
    shutdown_signal().await?;
    member.readiness.drain();
    info!("draining: handing every stream over to another transcoder");
    let hand_over: HandOverFn =
        Arc::new(move |stream| Box::pin(service.hand_over(stream.as_str())));
    for drained in claims.drain(hand_over).await {
        match drained {
            Drained::HandedOver { stream, to, at } => {
                info!(%stream, %to, at = at.0, "handed over without a discontinuity");
            }
            Drained::Released { stream, reason } => {
                info!(%stream, %reason, "let go without a handover");
            }
        }
    }
    info!("shutting down");
    Ok(())
}

/// `ferrocast package`: packages every live stream whose package lease it
/// holds (source and rungs together) and serves it as the HTTP origin.
pub async fn package(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let member = cluster::join(&config, Role::Package, false, no_check()).await?;
    // Recording ([recording]): each stream's keys carry its package lease's
    // epoch; the tasks live as long as the process.
    // With database_url, each stream's own recording policy comes first.
    let streams = match &config.recording {
        Some(_) => {
            crate::control::start(&config, crate::control::open(&config, false).await?, false)
                .await?
                .reloader
        }
        None => None,
    };
    let recording = crate::recording::start(&config, &metrics, 0, streams).await?;
    let origin = Origin::start_recording(
        Arc::new(member.bus.clone()),
        PackagerConfig::from(&config),
        metrics.clone(),
        recording.as_ref().map(|r| r.sink.clone()),
    )
    .context("packager configuration")?;
    let recorder = recording.as_ref().map(|r| r.recorder.clone());
    let app = ferrocast_packager::http::router(origin.clone()).merge(operator_router(
        &member,
        metrics.clone(),
        no_check(),
    ));
    let http = ferrocast_packager::http::serve_with_limits(
        config.http_listen,
        app,
        &config.http_connections,
        &metrics.connections,
    )
    .await
    .with_context(|| format!("binding the HTTP origin on {}", config.http_listen))?;
    let endpoint = member.register(http.local_addr())?;
    let claims = PackageClaims::start(
        &member.bus,
        PackagerHooks {
            plans: {
                let origin = origin.clone();
                Arc::new(move |stream, plan| origin.set_renditions(stream, plan))
            },
            progress: {
                let origin = origin.clone();
                Arc::new(move |stream| origin.progress(stream))
            },
            resume: {
                let origin = origin.clone();
                Arc::new(move |stream, progress| origin.set_resume(stream, progress))
            },
            packaging: Arc::new(move |bus_name| origin.packaging(bus_name)),
            held: Arc::new(move |stream, epoch| {
                if let Some(recorder) = &recorder {
                    recorder.set_epoch(stream, epoch);
                }
            }),
        },
    );
    info!(node = %member.node(), origin = %endpoint, "ferrocast package up");
    println!(
        "ferrocast package ready http={} node={}",
        http.local_addr(),
        member.node()
    );
    shutdown_signal().await?;
    member.readiness.drain();
    let released = claims.drain().await;
    info!(
        released,
        "shutting down: package leases let go, standbys take the streams"
    );
    Ok(())
}
