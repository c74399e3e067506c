//! `[recording]`: the recorder of `ferrocast up` and `ferrocast package`, writing every recorded
//! stream to S3 through a spool under `data_dir/spool`, and the recordings
//! the edge serves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_config::{Config, RecordingConfig};
use ferrocast_control::DbAuthorizer;
use ferrocast_media::StreamName;
use ferrocast_packager::RecordingSink;
use ferrocast_recorder::{
    Layout, Recorder, RecorderConfig, RecorderTasks, RecordingPolicy, StoreUpstream, StreamList,
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

/// Which streams are recorded and for how long: each database stream's
/// own policy (`recording` in its settings) where it has one, else
/// `[recording] streams` and `retention_secs`.
#[derive(Debug)]
pub struct StreamPolicies {
    /// The database's streams, as the publish authoriser last loaded them.
    pub db: Option<Arc<DbAuthorizer>>,
    /// `[recording] streams`.
    pub config: StreamList,
}

impl RecordingPolicy for StreamPolicies {
    fn records(&self, stream: &StreamName) -> bool {
        match self
            .db
            .as_ref()
            .and_then(|db| db.recording_of(stream.as_str()))
        {
            Some(own) => own.enabled,
            None => self.config.records(stream),
        }
    }

    fn retention(&self, stream: &StreamName, default: Option<Duration>) -> Option<Duration> {
        let own = self
            .db
            .as_ref()
            .and_then(|db| db.recording_of(stream.as_str()))
            .and_then(|own| own.retention_secs);
        match own {
            Some(0) => None,
            Some(secs) => Some(Duration::from_secs(secs)),
            None => default,
        }
    }

    fn has_own_retention(&self) -> bool {
        self.db.as_ref().is_some_and(|db| db.any_retention())
    }
}

/// Starts the recorder when `[recording]` is set; `db`: the control
/// plane's streams, whose own recording policies come first.
pub async fn start(
    config: &Config,
    metrics: &Metrics,
    epoch: u64,
    db: Option<Arc<DbAuthorizer>>,
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
    let policy = StreamPolicies {
        db,
        config: StreamList {
            only: recording
                .streams
                .as_ref()
                .map(|names| names.iter().cloned().collect::<HashSet<_>>()),
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_control::{Actor, Database, NewStream};

    #[tokio::test]
    async fn a_database_stream_s_own_policy_comes_before_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_sqlite(&dir.path().join("control.db"))
            .await
            .unwrap();
        let actor = Actor::Token("t1".into());
        for (name, recording) in [
            ("off", Some(serde_json::json!({ "enabled": false }))),
            (
                "week",
                Some(serde_json::json!({ "retention_secs": 604800 })),
            ),
            ("forever", Some(serde_json::json!({ "retention_secs": 0 }))),
            ("plain", None),
        ] {
            let new = NewStream {
                name: name.into(),
                recording,
                ..NewStream::default()
            };
            db.create_stream(new, &actor).await.unwrap();
        }
        let authorizer = DbAuthorizer::start(db, &[], Duration::from_secs(60));
        assert!(authorizer.wait_loaded(Duration::from_secs(10)).await);
        let policies = StreamPolicies {
            db: Some(authorizer),
            // The config names only `off` and `forever`.
            config: StreamList {
                only: Some(["off".to_owned(), "forever".to_owned()].into()),
            },
        };
        let name = |n: &str| StreamName::new(n).unwrap();
        let day = Some(Duration::from_secs(86_400));
        // Its own policy first: `off` is not recorded though the config
        // names it; `week` is, though the config does not.
        assert!(!policies.records(&name("off")));
        assert!(policies.records(&name("week")));
        assert!(policies.records(&name("forever")));
        // Without one, the config decides.
        assert!(!policies.records(&name("plain")));
        assert!(!policies.records(&name("elsewhere")));
        assert_eq!(
            policies.retention(&name("week"), day),
            Some(Duration::from_secs(604_800))
        );
        assert_eq!(policies.retention(&name("forever"), day), None);
        assert_eq!(policies.retention(&name("plain"), day), day);
        assert!(policies.has_own_retention());
    }
}
