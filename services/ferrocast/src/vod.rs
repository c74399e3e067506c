//! VOD uploads in the process that serves the API (`ferrocast up`,
//! `ferrocast control`): with `[recording]` set, uploaded files are
//! transcoded to the ladder and stored beside the recordings, where the
//! edge serves them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrocast_config::Config;
use ferrocast_control::api::HookFuture;
use ferrocast_control::api::vod::{UploadRefusal, VodJob, VodUploads};
use ferrocast_media::StreamName;
use ferrocast_recorder::Layout;
use ferrocast_storage::ObjectStore;
use ferrocast_vod::{JobStatus, VodConfig, VodError, VodService};
use tracing::info;

/// How long a job keeps trying while the store is away.
const STORE_PATIENCE: Duration = Duration::from_secs(120);

/// The upload queue, as the API sees it.
struct Uploads(VodService);

/// Starts the upload queue when `[recording]` is set, storing to `store`.
pub fn start(
    config: &Config,
    store: Arc<dyn ObjectStore>,
) -> anyhow::Result<Option<Arc<dyn VodUploads>>> {
    let Some(recording) = &config.recording else {
        return Ok(None);
    };
    let ladder = crate::transcode::vod_ladder(config)?;
    let work_dir = config.data_dir.join("uploads");
    info!(
        ladder = %ladder.name,
        max_bytes = recording.upload_max_bytes,
        work_dir = %work_dir.display(),
        "VOD uploads: POST /api/v1/vod"
    );
    let service = VodService::start(
        VodConfig {
            layout: Layout::new(&recording.prefix),
            work_dir: work_dir.clone(),
            max_upload_bytes: recording.upload_max_bytes,
            max_duration: Duration::from_secs(recording.upload_max_duration_secs),
            max_waiting: recording.upload_queue,
            ladder,
            packager: ferrocast_packager::PackagerConfig::from(config),
            store_patience: STORE_PATIENCE,
        },
        store,
    )
    .with_context(|| format!("VOD upload directory {}", work_dir.display()))?;
    Ok(Some(Arc::new(Uploads(service))))
}

/// The API's view of a job: the same fields.
fn job(status: JobStatus) -> Option<VodJob> {
    serde_json::to_value(status)
        .and_then(serde_json::from_value)
        .ok()
}

impl VodUploads for Uploads {
    fn max_upload_bytes(&self) -> u64 {
        self.0.max_upload_bytes()
    }

    fn incoming_path(&self) -> PathBuf {
        self.0.incoming_path()
    }

    fn submit(
        &self,
        stream: StreamName,
        file: PathBuf,
    ) -> HookFuture<'_, Result<VodJob, UploadRefusal>> {
        Box::pin(async move {
            match self.0.submit(stream, file).await {
                Ok(status) => job(status).ok_or_else(|| {
                    UploadRefusal::Unavailable("the job could not be described".to_owned())
                }),
                Err(e) if e.is_bad_file() => Err(UploadRefusal::BadFile(e.to_string())),
                Err(e @ VodError::QueueFull(_)) => Err(UploadRefusal::Busy(e.to_string())),
                Err(e) => Err(UploadRefusal::Unavailable(e.to_string())),
            }
        })
    }

    fn job(&self, id: &str) -> Option<VodJob> {
        self.0.job(id).and_then(job)
    }

    fn list(&self) -> Vec<VodJob> {
        self.0.list().into_iter().filter_map(job).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_vod::{JobState, Probe};

    #[test]
    fn a_job_status_reads_as_the_api_job() {
        let status = JobStatus {
            id: "20261206T101010Z-0000abcd".into(),
            stream: "lectures".into(),
            state: JobState::Ready,
            progress: 1.0,
            source: Probe {
                format: "mov,mp4,m4a,3gp,3g2,mj2".into(),
                duration_ms: Some(9000),
                video_codec: "h264".into(),
                width: 320,
                height: 240,
                audio_codec: Some("aac".into()),
                video_stream: 0,
                audio_stream: Some(1),
            },
            created_unix_ms: 1,
            finished_unix_ms: Some(2),
            error: None,
            renditions: vec!["180p".into()],
            duration_ms: Some(9010),
            playlist_path: "/vod/lectures/20261206T101010Z-0000abcd/index.m3u8".into(),
        };
        let job = job(status).expect("the same fields");
        assert_eq!(job.state, ferrocast_control::api::vod::VodState::Ready);
        assert_eq!(job.source.audio_codec.as_deref(), Some("aac"));
        assert_eq!(job.duration_ms, Some(9010));
        assert_eq!(job.renditions, ["180p"]);
    }
}
