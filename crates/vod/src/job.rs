//! One upload's job, run on a blocking thread: the file copied into
//! MPEG-TS, packaged ([`crate::package`]), each object put in the store as
//! it is made (the store's pace holds the transcoder back: nothing piles
//! up in memory), then the VOD playlists and `recording.json`. The
//! multivariant playlist, the VOD's entry point, is written after every
//! segment and media playlist; a job that fails deletes what it wrote, so
//! no half-made VOD can be played.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferrocast_hls::RenditionName;
use ferrocast_media::{StreamName, Time90k};
use ferrocast_packager::Recorded;
use ferrocast_recorder::layout::{init_file_name, tracks_file_name};
use ferrocast_recorder::manifest::{self, ClosedBy, Summary, TracksInfo};
use ferrocast_recorder::vod::{self, RenditionRecord};
use ferrocast_recorder::{Layout, RecordingId, SegmentName};
use ferrocast_storage::{ObjectStore, StoreError};
use ferrocast_transcode::gpu::StreamEncoders;
use tokio::runtime::Handle;
use tracing::warn;

use crate::error::VodError;
use crate::package::{self, PackageSettings, PackageSink};
use crate::probe::Probe;

/// Epoch in the keys of an upload's objects: one writer, no lease.
const UPLOAD_EPOCH: u64 = 0;

/// What one job works on.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The VOD's id (its key directory and URL path).
    pub id: RecordingId,
    /// The stream it is filed under (its viewer JWTs play it).
    pub stream: StreamName,
    /// The uploaded file.
    pub upload: PathBuf,
    /// What the probe found in it.
    pub probe: Probe,
}

/// Where a job writes.
#[derive(Clone)]
pub struct Destination {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Key layout (the recordings').
    pub layout: Layout,
    /// The runtime whose store client the puts go through.
    pub runtime: Handle,
    /// How long a put may keep failing with the store away before the job
    /// gives up.
    pub patience: Duration,
}

/// Runs `spec` to its end: `Ok` with the VOD's summary once every object
/// is stored, or the error after what was written is deleted again.
/// `progress` hears the fraction of the file done.
pub fn run(
    spec: &JobSpec,
    settings: &PackageSettings,
    encoders: StreamEncoders,
    destination: &Destination,
    work_dir: &Path,
    progress: &mut dyn FnMut(f32),
) -> Result<Summary, VodError> {
    let ts = work_dir.join(format!("{}.ts", spec.id));
    let result = make(spec, settings, encoders, destination, &ts, progress);
    if let Err(e) = std::fs::remove_file(&ts)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(file = %ts.display(), error = %e, "cannot delete the upload's MPEG-TS copy");
    }
    if result.is_err() {
        let root = destination.layout.root(&spec.stream, &spec.id);
        destination
            .runtime
            .block_on(delete_all(destination.store.as_ref(), &root));
    }
    result
}

fn make(
    spec: &JobSpec,
    settings: &PackageSettings,
    encoders: StreamEncoders,
    destination: &Destination,
    ts: &Path,
    progress: &mut dyn FnMut(f32),
) -> Result<Summary, VodError> {
    crate::remux::to_mpegts(&spec.upload, ts, &spec.probe)?;
    let mut sink = StoreSink {
        spec,
        destination,
        renditions: BTreeMap::new(),
        duration: spec
            .probe
            .duration_ms
            .map(|ms| Time90k::from_millis(ms as i64)),
        progress,
    };
    package::package(ts, settings, encoders, &mut sink)?;
    let renditions = sink.renditions;
    if renditions.values().all(|r| r.segments.is_empty()) {
        return Err(VodError::NothingDecoded);
    }
    let closing = vod::closing(
        &destination.layout,
        &spec.stream,
        &spec.id,
        &renditions,
        ClosedBy::Upload,
    );
    for (key, body) in closing.objects {
        put(destination, key, body)?;
    }
    Ok(closing.summary)
}

/// Stores what the packaging makes, keyed as recordings are.
struct StoreSink<'a> {
    spec: &'a JobSpec,
    destination: &'a Destination,
    renditions: BTreeMap<RenditionName, RenditionRecord>,
    duration: Option<Time90k>,
    progress: &'a mut dyn FnMut(f32),
}

impl PackageSink for StoreSink<'_> {
    fn item(&mut self, rendition: &RenditionName, item: Recorded) -> Result<(), VodError> {
        let dir = self
            .destination
            .layout
            .rendition(&self.spec.stream, &self.spec.id, rendition);
        let record = self.renditions.entry(rendition.clone()).or_default();
        match item {
            Recorded::Init {
                generation,
                tracks,
                bytes,
            } => {
                let info = TracksInfo::of(&tracks);
                put(
                    self.destination,
                    format!("{dir}{}", init_file_name(generation, UPLOAD_EPOCH)),
                    bytes,
                )?;
                put(
                    self.destination,
                    format!("{dir}{}", tracks_file_name(generation, UPLOAD_EPOCH)),
                    manifest::write(&info),
                )?;
                record.tracks.insert(generation, info);
            }
            Recorded::Segment(segment) => {
                let name = SegmentName {
                    msn: segment.msn,
                    epoch: UPLOAD_EPOCH,
                    generation: segment.init_generation,
                    duration: segment.duration,
                    bytes: segment.len() as u64,
                    program_date_time_ms: segment.program_date_time_ms,
                    discontinuity: segment.discontinuity,
                };
                let mut body = BytesMut::with_capacity(segment.len());
                for chunk in &segment.chunks {
                    body.extend_from_slice(chunk);
                }
                put(
                    self.destination,
                    format!("{dir}{}", name.file_name()),
                    body.freeze(),
                )?;
                record.segments.push(name);
            }
            Recorded::End => {}
        }
        Ok(())
    }

    fn progress(&mut self, done: Time90k) {
        if let Some(total) = self.duration.filter(|d| d.0 > 0) {
            // The last percent waits for the playlists.
            (self.progress)((done.0 as f32 / total.0 as f32).clamp(0.0, 0.99));
        }
    }
}

/// Puts one object, trying again while the store is away (for up to
/// [`Destination::patience`]).
fn put(destination: &Destination, key: String, body: Bytes) -> Result<(), VodError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        match destination
            .runtime
            .block_on(destination.store.put(&key, body.clone()))
        {
            Ok(()) => return Ok(()),
            Err(StoreError::Unavailable(e)) if started.elapsed() < destination.patience => {
                tracing::debug!(key, error = %e, "put failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes every object under `root` (a failed job's), as far as the
/// store lets it.
pub(crate) async fn delete_all(store: &dyn ObjectStore, root: &str) {
    let keys = match store.list(root).await {
        Ok(keys) => keys,
        Err(e) => {
            warn!(root, error = %e, "cannot list a failed upload's objects to delete them");
            return;
        }
    };
    for key in keys {
        if let Err(e) = store.delete(&key).await {
            warn!(key, error = %e, "cannot delete a failed upload's object");
        }
    }
}
