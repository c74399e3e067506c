//! `[recording]`: the recorder of `ferrocast up` and `ferrocast package`, writing every recorded
//! stream to S3 through a spool under `data_dir/spool`, and the recordings
//! the edge serves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_config::{Config, RecordingConfig};
use ferrocast_packager::RecordingSink;
use ferrocast_recorder::{
    Layout, Recorder, RecorderConfig, RecorderTasks, StoreUpstream, StreamList,
};
use ferrocast_storage::{ObjectStore, S3Options, S3Store, Spool, SpoolConfig};
use ferrocast_telemetry::Metrics;
use tracing::{info, warn};

/// The S3 store `recording` names.
pub async fn store(recording: &RecordingConfig) -> anyhow::Result<S3Store> {
    let s3 = &recording.s3;
    let mut options = S3Options::new(&s3.bucket, &s3.region);
    options.endpoint = s3.endpoint.clone();
    options.path_style = s3.path_style;
    options.credentials = match (&s3.access_key_id, &s3.secret_access_key) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.expose().to_owned())),
        _ => None,
    };
    let store = S3Store::new(options)
        .await
        .context("recording.s3: cannot set up the S3 client")?;
    if s3.create_bucket
        && let Err(e) = store.create_bucket().await
    {
        // The store may be away now and back later: uploads wait for it.
        warn!(bucket = %s3.bucket, error = %e, "cannot create the recording bucket");
    }
    Ok(store)
}

/// A running recorder: the packager's sink, the tasks to keep alive while
/// it records, and its recordings for the edge.
pub struct Recording {
    /// For [`ferrocast_packager::Origin::start_recording`].
    pub sink: Arc<dyn RecordingSink>,
    /// The same recorder, for its per-stream fencing epochs.
    pub recorder: Recorder,
    /// Writer, closer and uploader.
    pub tasks: RecorderTasks,
    /// Closed recordings, for the edge (`/vod/…`).
    pub vod: StoreUpstream,
    /// The store, for VOD uploads.
    pub store: Arc<dyn ObjectStore>,
}

/// The recordings `[recording]` names, for an edge (`ferrocast edge`);
/// `None` without the section.
pub async fn vod(config: &Config) -> anyhow::Result<Option<StoreUpstream>> {
    let Some(recording) = &config.recording else {
        return Ok(None);
    };
    let store: Arc<dyn ObjectStore> = Arc::new(store(recording).await?);
    Ok(Some(StoreUpstream::new(
        store,
        Layout::new(&recording.prefix),
    )))
}

/// Starts the recorder when `[recording]` is set.
pub async fn start(
    config: &Config,
    metrics: &Metrics,
    epoch: u64,
) -> anyhow::Result<Option<Recording>> {
    let Some(recording) = &config.recording else {
        return Ok(None);
    };
    let store: Arc<dyn ObjectStore> = Arc::new(store(recording).await?);
    let dir = config.data_dir.join("spool");
    let spool = Spool::open(SpoolConfig {
        dir: dir.clone(),
        max_bytes: recording.spool_max_bytes,
    })
    .await
    .with_context(|| format!("recording spool {}", dir.display()))?;
    let mut recorder_config = RecorderConfig::new(Layout::new(&recording.prefix));
    recorder_config.epoch = epoch;
    recorder_config.heartbeat = Duration::from_secs(recording.heartbeat_secs);
    recorder_config.stale_after = Duration::from_secs(recording.stale_after_secs);
    recorder_config.retention =
        (recording.retention_secs > 0).then(|| Duration::from_secs(recording.retention_secs));
    recorder_config.dvr_window =
        (recording.dvr_window_secs > 0).then(|| Duration::from_secs(recording.dvr_window_secs));
    recorder_config.writer = format!(
        "{} pid {}",
        std::env::var("HOSTNAME").unwrap_or_default(),
        std::process::id()
    );
    let policy = StreamList {
        only: recording
            .streams
            .as_ref()
            .map(|names| names.iter().cloned().collect::<HashSet<_>>()),
    };
    info!(
        bucket = %recording.s3.bucket,
        endpoint = recording.s3.endpoint.as_deref().unwrap_or("AWS"),
        prefix = %recording.prefix,
        spool = %dir.display(),
        "recording to S3"
    );
    let vod = StoreUpstream::new(store.clone(), recorder_config.layout.clone());
    let (recorder, tasks) = Recorder::start(
        recorder_config,
        spool,
        store.clone(),
        Arc::new(policy),
        metrics.recording.clone(),
    );
    Ok(Some(Recording {
        sink: Arc::new(recorder.clone()),
        recorder,
        tasks,
        vod,
        store,
    }))
}
