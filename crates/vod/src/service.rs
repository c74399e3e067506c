//! The upload queue: files probed as they arrive (a bad one is refused at
//! once, with the reason), then transcoded one at a time on a blocking
//! thread, away from the live path, each job's state and progress kept
//! for the API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ferrocast_media::StreamName;
use ferrocast_packager::PackagerConfig;
use ferrocast_recorder::{Layout, RecordingId};
use ferrocast_storage::ObjectStore;
use ferrocast_transcode::gpu::StreamEncoders;
use ferrocast_transcode::ladder::Ladder;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::error::VodError;
use crate::job::{self, Destination, JobSpec};
use crate::package::PackageSettings;
use crate::probe::{self, Probe};

/// Job states kept for the API; the oldest finished ones go first.
const MAX_JOBS_KEPT: usize = 1000;

/// Upload settings.
#[derive(Debug, Clone)]
pub struct VodConfig {
    /// Where the VODs go: the recordings' key layout.
    pub layout: Layout,
    /// Uploads being received and their MPEG-TS copies (emptied at start).
    pub work_dir: PathBuf,
    /// The largest upload, bytes.
    pub max_upload_bytes: u64,
    /// The longest upload.
    pub max_duration: Duration,
    /// Uploads that may wait for the transcoder; more are refused.
    pub max_waiting: usize,
    /// The ladder.
    pub ladder: Ladder,
    /// Part and segment timing.
    pub packager: PackagerConfig,
    /// How long a job keeps trying while the store is away before it
    /// fails.
    pub store_patience: Duration,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the transcoder.
    Queued,
    /// Being transcoded and stored.
    Transcoding,
    /// Playable.
    Ready,
    /// Given up (`error` says why); nothing of it is left in the store.
    Failed,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    /// The VOD's id.
    pub id: String,
    /// The stream it is filed under.
    pub stream: String,
    /// Where it is.
    pub state: JobState,
    /// Fraction of the file done, 0 to 1.
    pub progress: f32,
    /// What the probe found.
    pub source: Probe,
    /// When it was accepted, ms since the Unix epoch.
    pub created_unix_ms: i64,
    /// When it became ready or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<i64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The renditions made, once ready.
    pub renditions: Vec<String>,
    /// Its duration as packaged, ms, once ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// The edge's path of its multivariant playlist (with a viewer JWT
    /// for `stream`).
    pub playlist_path: String,
}

struct Inner {
    config: VodConfig,
    jobs: Mutex<BTreeMap<String, JobStatus>>,
    queue: mpsc::Sender<JobSpec>,
    /// Bumped whenever a job's state changes.
    changed: watch::Sender<u64>,
}

/// The upload queue; clones share it.
#[derive(Clone)]
pub struct VodService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VodService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VodService")
            .field("work_dir", &self.inner.config.work_dir)
            .finish_non_exhaustive()
    }
}

impl VodService {
    /// Empties `config.work_dir` (what a stopped process left is of no
    /// use: its jobs are gone) and starts the transcoding task.
    pub fn start(config: VodConfig, store: Arc<dyn ObjectStore>) -> Result<VodService, VodError> {
        std::fs::create_dir_all(&config.work_dir)?;
        for entry in std::fs::read_dir(&config.work_dir)?.flatten() {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                warn!(file = %entry.path().display(), error = %e, "cannot delete a leftover upload");
            }
        }
        let (queue, rx) = mpsc::channel(config.max_waiting.max(1));
        let inner = Arc::new(Inner {
            config,
            jobs: Mutex::new(BTreeMap::new()),
            queue,
            changed: watch::Sender::new(0),
        });
        let destination = Destination {
            store,
            layout: inner.config.layout.clone(),
            runtime: tokio::runtime::Handle::current(),
            patience: inner.config.store_patience,
        };
        tokio::spawn(work(Arc::downgrade(&inner), rx, destination));
        Ok(VodService { inner })
    }

    /// The largest upload, bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.inner.config.max_upload_bytes
    }

    /// A fresh path in the work directory for an upload being received.
    pub fn incoming_path(&self) -> PathBuf {
        self.inner
            .config
            .work_dir
            .join(format!("incoming-{:016x}", rand::random::<u64>()))
    }

    /// Takes the file at `upload` (received whole, within the size limit)
    /// for `stream`: probes it and queues its job, or refuses it with the
    /// reason. The file is the service's from now on (deleted when its job
    /// ends, or at once when refused).
    pub async fn submit(&self, stream: StreamName, upload: PathBuf) -> Result<JobStatus, VodError> {
        let path = upload.clone();
        let max_ms = u64::try_from(self.inner.config.max_duration.as_millis()).unwrap_or(u64::MAX);
        let probed = tokio::task::spawn_blocking(move || probe::probe(&path, max_ms))
            .await
            .unwrap_or_else(|e| Err(VodError::Media(format!("the probe failed: {e}"))));
        let probe = match probed {
            Ok(probe) => probe,
            Err(e) => {
                remove(&upload);
                return Err(e);
            }
        };
        let id = RecordingId::new(unix_ms());
        let status = JobStatus {
            id: id.to_string(),
            stream: stream.as_str().to_owned(),
            state: JobState::Queued,
            progress: 0.0,
            source: probe.clone(),
            created_unix_ms: unix_ms(),
            finished_unix_ms: None,
            error: None,
            renditions: Vec::new(),
            duration_ms: None,
            playlist_path: format!("/vod/{}/{id}/index.m3u8", stream.as_str()),
        };
        let spec = JobSpec {
            id,
            stream,
            upload: upload.clone(),
            probe,
        };
        self.keep(status.clone());
        if let Err(e) = self.inner.queue.try_send(spec) {
            self.forget(&status.id);
            remove(&upload);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => {
                    VodError::QueueFull(self.inner.config.max_waiting)
                }
                mpsc::error::TrySendError::Closed(_) => VodError::Stopped,
            });
        }
        info!(
            stream = %status.stream,
            vod = %status.id,
            format = %status.source.format,
            video = %status.source.video_codec,
            "upload accepted"
        );
        Ok(status)
    }

    /// Waits until job `id` is ready or has failed, and returns it;
    /// `None` for an unknown job.
    pub async fn finished(&self, id: &str) -> Option<JobStatus> {
        let mut changed = self.inner.changed.subscribe();
        loop {
            let job = self.job(id)?;
            if matches!(job.state, JobState::Ready | JobState::Failed) {
                return Some(job);
            }
            if changed.changed().await.is_err() {
                return self.job(id);
            }
        }
    }

    /// One job's state.
    pub fn job(&self, id: &str) -> Option<JobStatus> {
        self.jobs().get(id).cloned()
    }

    /// Every job kept, newest first.
    pub fn list(&self) -> Vec<JobStatus> {
        self.jobs().values().rev().cloned().collect()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobStatus>> {
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn keep(&self, status: JobStatus) {
        let mut jobs = self.jobs();
        jobs.insert(status.id.clone(), status);
        while jobs.len() > MAX_JOBS_KEPT {
            let oldest_done = jobs
                .iter()
                .find(|(_, j)| matches!(j.state, JobState::Ready | JobState::Failed))
                .map(|(id, _)| id.clone());
            match oldest_done {
                Some(id) => jobs.remove(&id),
                None => break,
            };
        }
    }

    fn forget(&self, id: &str) {
        self.jobs().remove(id);
    }
}

/// Updates job `id` in `inner`, if both still exist; a new state is
/// announced to [`VodService::finished`].
fn update(inner: &std::sync::Weak<Inner>, id: &str, change: impl FnOnce(&mut JobStatus)) {
    let Some(inner) = inner.upgrade() else {
        return;
    };
    let moved = {
        let mut jobs = inner.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(job) = jobs.get_mut(id) else {
            return;
        };
        let before = job.state;
        change(job);
        job.state != before
    };
    if moved {
        inner.changed.send_modify(|n| *n += 1);
    }
}

/// The transcoding task: one job at a time, each on a blocking thread.
async fn work(
    inner: std::sync::Weak<Inner>,
    mut rx: mpsc::Receiver<JobSpec>,
    destination: Destination,
) {
    while let Some(spec) = rx.recv().await {
        let Some(config) = inner.upgrade().map(|i| i.config.clone()) else {
            remove(&spec.upload);
            return;
        };
        let id = spec.id.to_string();
        update(&inner, &id, |j| j.state = JobState::Transcoding);
        info!(stream = %spec.stream, vod = %id, "upload: transcoding");
        let settings = PackageSettings {
            ladder: config.ladder.clone(),
            packager: config.packager.clone(),
            expect_audio: spec.probe.audio_stream.is_some(),
            started_ms: spec.id.started_ms().unwrap_or_else(unix_ms),
        };
        let task_inner = inner.clone();
        let task_id = id.clone();
        let task_destination = destination.clone();
        let task_spec = spec.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut progress = |fraction: f32| {
                update(&task_inner, &task_id, |j| j.progress = fraction);
            };
            job::run(
                &task_spec,
                &settings,
                StreamEncoders::cpu(
                    "uploads are encoded on the CPU: NVENC sessions stay with live streams",
                ),
                &task_destination,
                &config.work_dir,
                &mut progress,
            )
        })
        .await
        .unwrap_or_else(|e| Err(VodError::Media(format!("the job stopped: {e}"))));
        remove(&spec.upload);
        match result {
            Ok(summary) => {
                info!(stream = %spec.stream, vod = %id, duration_ms = summary.duration_ms, "upload: ready");
                update(&inner, &id, |j| {
                    j.state = JobState::Ready;
                    j.progress = 1.0;
                    j.finished_unix_ms = Some(unix_ms());
                    j.duration_ms = Some(summary.duration_ms);
                    j.renditions = summary.renditions.iter().map(|r| r.name.clone()).collect();
                });
            }
            Err(e) => {
                warn!(stream = %spec.stream, vod = %id, error = %e, "upload: failed");
                update(&inner, &id, |j| {
                    j.state = JobState::Failed;
                    j.finished_unix_ms = Some(unix_ms());
                    j.error = Some(e.to_string());
                });
            }
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(file = %path.display(), error = %e, "cannot delete an upload");
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
