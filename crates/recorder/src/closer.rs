//! Closing recordings whose writer stopped without closing them (a crash,
//! a kill, a lost node): no recording stays without a playlist.
//!
//! A writer keeps an open marker per recording and refreshes it every
//! heartbeat. The closer lists the markers; one whose heartbeat is older
//! than `stale_after`, and that this process is not writing, is closed from
//! a listing of its objects (the segment keys carry their playlist
//! attributes), then its marker is deleted. Closing twice writes the same
//! playlists, so two closers racing do no harm.
//!
//! The closer of a process starts only after the spool has uploaded what
//! an earlier process left in it, so a recording cut off here is closed
//! with every segment that reached the local disk.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ferrocast_hls::RenditionName;
use ferrocast_media::StreamName;
use ferrocast_storage::{ObjectStore, Spool, StoreError};
use ferrocast_telemetry::RecordingMetrics;
use tracing::{info, warn};

use crate::layout::{Layout, RecordingId, SegmentName, parse_generation_file};
use crate::manifest::{self, ClosedBy, OpenMarker, Summary, TracksInfo};
use crate::recorder::{delete_with_retry, unix_ms};
use crate::vod::{self, RenditionRecord};

/// Closes the recordings whose markers under `layout` are older than
/// `stale_after` at `now_ms`, except those `writing` says this process
/// writes; returns their summaries.
pub async fn close_abandoned(
    store: &dyn ObjectStore,
    layout: &Layout,
    stale_after: Duration,
    now_ms: i64,
    writing: impl Fn(&StreamName, &RecordingId) -> bool,
) -> Result<Vec<Summary>, StoreError> {
    let mut closed = Vec::new();
    for key in store.list(&layout.markers()).await? {
        let Some((stream, id)) = layout.parse_marker(&key) else {
            warn!(key, "not a recording marker; left alone");
            continue;
        };
        if writing(&stream, &id) {
            continue;
        }
        let Some(body) = store.get(&key).await? else {
            continue;
        };
        match manifest::read::<OpenMarker>(&key, &body) {
            Ok(marker) => {
                let age = now_ms.saturating_sub(marker.heartbeat_ms);
                if age < stale_after.as_millis() as i64 {
                    continue;
                }
            }
            // Closed anyway: a marker nobody can read is refreshed by
            // nobody.
            Err(e) => warn!(error = %e, "unreadable recording marker"),
        }
        let summary = close_from_listing(store, layout, &stream, &id).await?;
        delete_with_retry(store, &key).await;
        info!(
            stream = %stream,
            recording = %id,
            duration_ms = summary.duration_ms,
            "closed a recording its writer left open"
        );
        closed.push(summary);
    }
    Ok(closed)
}

/// Writes the playlists and summary of recording `id` of `stream` from
/// the objects the store holds.
pub async fn close_from_listing(
    store: &dyn ObjectStore,
    layout: &Layout,
    stream: &StreamName,
    id: &RecordingId,
) -> Result<Summary, StoreError> {
    let root = layout.root(stream, id);
    let mut renditions: BTreeMap<RenditionName, RenditionRecord> = BTreeMap::new();
    for key in store.list(&root).await? {
        let Some((rendition, file)) = key.strip_prefix(&root).and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        let Ok(rendition) = RenditionName::new(rendition) else {
            continue;
        };
        if let Some(segment) = SegmentName::parse(file) {
            renditions
                .entry(rendition)
                .or_default()
                .segments
                .push(segment);
        } else if let Some((generation, _)) = parse_generation_file(file, "tracks", ".json") {
            let Some(body) = store.get(&key).await? else {
                continue;
            };
            match manifest::read::<TracksInfo>(&key, &body) {
                Ok(info) => {
                    renditions
                        .entry(rendition)
                        .or_default()
                        .tracks
                        .insert(generation, info);
                }
                Err(e) => warn!(error = %e, "unreadable tracks file; its variant is left out"),
            }
        }
    }
    let closing = vod::closing(layout, stream, id, &renditions, ClosedBy::Recovery);
    for (key, body) in closing.objects {
        store.put(&key, body).await?;
    }
    Ok(closing.summary)
}

/// What the closer task looks after.
pub(crate) struct Sweep {
    pub(crate) layout: Layout,
    pub(crate) stale_after: Duration,
    /// The default retention.
    pub(crate) retention: Option<Duration>,
    /// Per-stream retention over the default.
    pub(crate) policy: Arc<dyn crate::RecordingPolicy>,
}

/// The closer task of a recorder: waits for the spool to upload what was
/// there before `leftover`, then closes abandoned recordings (and deletes
/// those past retention) now and every half `stale_after` (at least every
/// second, at most every minute).
pub(crate) async fn run(
    spool: Spool,
    store: Arc<dyn ObjectStore>,
    sweep: Sweep,
    leftover: u64,
    open: crate::recorder::OpenSetRef,
    metrics: RecordingMetrics,
) {
    let Sweep {
        layout,
        stale_after,
        retention,
        policy,
    } = sweep;
    spool.uploaded_through(leftover).await;
    let every = (stale_after / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let writing = |stream: &StreamName, id: &RecordingId| {
            open.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&(stream.clone(), id.clone()))
        };
        match close_abandoned(store.as_ref(), &layout, stale_after, unix_ms(), writing).await {
            Ok(closed) => {
                metrics
                    .closed
                    .with_label_values(&["recovery"])
                    .inc_by(closed.len() as u64);
            }
            Err(e) => warn!(error = %e, "cannot look for recordings left open; trying again later"),
        }
        if retention.is_some() || policy.has_own_retention() {
            let keep = |stream: &StreamName| policy.retention(stream, retention);
            let writing = |stream: &StreamName, id: &RecordingId| {
                open.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(&(stream.clone(), id.clone()))
            };
            match crate::retention::delete_expired(
                store.as_ref(),
                &layout,
                &keep,
                unix_ms(),
                writing,
            )
            .await
            {
                Ok(deleted) => metrics.expired.inc_by(deleted.len() as u64),
                Err(e) => {
                    warn!(error = %e, "cannot delete recordings past retention; trying again later")
                }
            }
        }
    }
}
