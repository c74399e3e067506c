//! Wiring the transcoder service into a process (`ferrocast up` or
//! `ferrocast transcode`): the ladder, the encoder choice (made once,
//! here), and the service on the bus.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_bus::MediaBus;
use ferrocast_config::HlsConfig;
use ferrocast_config::transcode::{GpuPolicy, LadderChoice, TranscodeConfig};
use ferrocast_hls::RenditionName;
use ferrocast_media::StreamName;
use ferrocast_packager::RenditionPlan;
use ferrocast_telemetry::Metrics;
use ferrocast_transcode::FfmpegProbe;
use ferrocast_transcode::gpu::{self, EncoderChoice, NoEncoder};
use ferrocast_transcode::ladder::{Ladder, VideoCodec};
use ferrocast_transcode::service::{PlanObserver, ServiceConfig, TranscodeService, backend_label};
use ferrocast_transcode::shed::ShedPolicy;
use tracing::{error, info, warn};

/// Where each stream's rendition plan goes: the origin in this process, or
/// the registry.
pub type PlanSink = Arc<dyn Fn(&StreamName, RenditionPlan) + Send + Sync>;

/// What [`start`] made of `[transcode]`.
pub enum Transcoder {
    /// `transcode.ladder = "off"`: streams are served as published.
    Off,
    /// Transcoding every stream to the ladder.
    Running(TranscodeService),
    /// The encoder self-test failed: this process may not transcode.
    NoEncoder(NoEncoder),
}

/// Starts the transcoder service unless the ladder is `off` or no encoder
/// passes the start-up self-test. Logs the ladder and the encoder choice
/// with its reason. Each time a stream's ladder is planned, `plans` gets
/// which renditions to list.
pub async fn start(
    config: &TranscodeConfig,
    hls: &HlsConfig,
    bus: Arc<dyn MediaBus>,
    plans: PlanSink,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Transcoder> {
    let choice = config.choice().context("transcode.ladder")?;
    if choice == LadderChoice::Off {
        info!("transcoding off (transcode.ladder = \"off\"): streams are served as published");
        return Ok(Transcoder::Off);
    }
    // The codecs to probe NVENC for: the named ladder's, or H.264 (every
    // built-in ladder's).
    let codecs: Vec<VideoCodec> = match &choice {
        LadderChoice::Named(ladder) => {
            let mut codecs: Vec<VideoCodec> = ladder.rungs.iter().map(|r| r.codec).collect();
            codecs.sort_by_key(|c| *c as u8);
            codecs.dedup();
            codecs
        }
        _ => vec![VideoCodec::H264],
    };
    let policy = config.nvenc;
    let sessions = config.nvenc_sessions;
    // Discovery loads the CUDA driver and probing opens encoders: blocking.
    let machine =
        match tokio::task::spawn_blocking(move || machine_choice(policy, sessions, &codecs))
            .await
            .context("choosing the encoder")?
        {
            Ok(machine) => machine,
            Err(no_encoder) => {
                error!(reason = %no_encoder, "transcoder: encoder self-test failed");
                return Ok(Transcoder::NoEncoder(no_encoder));
            }
        };
    let ladder = match choice {
        LadderChoice::Named(ladder) => ladder,
        _ => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let builtin = Ladder::builtin_for_machine(cpus, machine.is_gpu());
            config
                .ladder(builtin.name())
                .with_context(|| format!("built-in ladder {}", builtin.name()))?
        }
    };
    let ladder = fit_cadence(ladder, hls);
    let source_listed = ladder.source_passthrough;
    info!(
        ladder = %ladder.name,
        rungs = ?ladder.rungs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        backend = backend_label(&machine),
        reason = %machine.reason,
        "transcoder: ladder and encoder chosen"
    );
    Ok(Transcoder::Running(TranscodeService::start(
        bus,
        ServiceConfig {
            ladder,
            machine,
            nvenc_sessions: sessions,
            shed: ShedPolicy {
                lag_threshold: Duration::from_millis(config.shed_lag_ms),
                sustain: Duration::from_millis(config.shed_after_ms),
            },
            queue_units: config.queue_units,
            on_plan: Some(renditions_for(plans, source_listed)),
        },
        metrics,
    )))
}

/// The ladder uploads are transcoded to: the named one, else the
/// built-in that suits this machine's CPUs (uploads encode on the CPU,
/// also where live streams use NVENC, and also with transcoding off for
/// live streams), its keyframe interval fitted like the live one's.
pub fn vod_ladder(config: &ferrocast_config::Config) -> anyhow::Result<Ladder> {
    let ladder = match config.transcode.choice().context("transcode.ladder")? {
        LadderChoice::Named(ladder) => ladder,
        _ => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let builtin = Ladder::builtin_for_machine(cpus, false);
            config
                .transcode
                .ladder(builtin.name())
                .with_context(|| format!("built-in ladder {}", builtin.name()))?
        }
    };
    Ok(fit_cadence(ladder, &config.hls))
}

/// The ladder with a keyframe interval the packager can cut segments at.
///
/// A segment closes at the first keyframe at least `segment_min_ms` in and
/// never lasts longer than the target duration + 0.5 s (EXTINF is rounded).
/// The first GOP after a start is short (the first frame is an IDR, the
/// next ones are on the grid), so the first segment spans up to two
/// intervals: an interval over half of (target + 0.5 s) would force a cut
/// at a frame that is not a keyframe, and segments would no longer start
/// with an IDR on every rung. Such an interval is lowered to
/// `segment_min_ms`, with a warning.
fn fit_cadence(mut ladder: Ladder, hls: &HlsConfig) -> Ladder {
    let limit = (u64::from(hls.target_duration_secs) * 1000 + 500) / 2;
    if u64::from(ladder.keyframe_interval_ms) > limit {
        let fitted = u32::try_from(hls.segment_min_ms.min(limit)).unwrap_or(u32::MAX);
        warn!(
            ladder = %ladder.name,
            keyframe_interval_ms = ladder.keyframe_interval_ms,
            fitted_ms = fitted,
            target_duration_secs = hls.target_duration_secs,
            "keyframe interval too long for the HLS target duration: lowered"
        );
        ladder.keyframe_interval_ms = fitted;
    }
    ladder
}

/// Tells `plans`, each time a stream's ladder is planned, which renditions
/// its multivariant playlist lists and waits for.
fn renditions_for(plans: PlanSink, source_listed: bool) -> PlanObserver {
    PlanObserver(Arc::new(move |stream: &str, rungs: &[String]| {
        let Ok(name) = StreamName::new(stream) else {
            return;
        };
        let rungs = rungs
            .iter()
            .filter_map(|r| match RenditionName::new(r) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(stream, rung = %r, error = %e, "rung name not servable as a rendition");
                    None
                }
            })
            .collect();
        plans(
            &name,
            RenditionPlan {
                source_listed,
                rungs,
            },
        );
    }))
}

/// The encoders this process uses, self-tested: each opened once.
fn machine_choice(
    policy: GpuPolicy,
    sessions: u32,
    codecs: &[VideoCodec],
) -> Result<EncoderChoice, NoEncoder> {
    let choice = if policy == GpuPolicy::Off {
        EncoderChoice::cpu("NVENC disabled (transcode.nvenc = \"off\"): encoding on the CPU")
    } else if sessions == 0 {
        EncoderChoice::cpu("NVENC disabled (transcode.nvenc_sessions = 0): encoding on the CPU")
    } else {
        gpu::select(&gpu::discover(), &FfmpegProbe, codecs)
    };
    gpu::self_test(choice, policy == GpuPolicy::Require, &FfmpegProbe, codecs)
}
