//! The live state the control plane's API reports for `ferrocast up`:
//! publishers from the SRT listener, tracks and bitrate from the origin,
//! renditions from the transcoder, viewers from the edge's gauge, and
//! thumbnails of the latest keyframe on the media bus.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocast_bus::{BusMessage, InProcessBus};
use ferrocast_control::api::live::{LiveStatus, Publisher, Rendition, SrtStats, Track};
use ferrocast_ingest::{PublisherStatus, SrtIngest};
use ferrocast_media::{AccessUnit, CodecParams, TrackInfo, TrackKind};
use ferrocast_packager::Origin;
use ferrocast_transcode::service::TranscodeService;
use prometheus::IntGaugeVec;
use prometheus::core::Collector;

/// Where the live state comes from.
#[derive(Clone)]
pub struct LiveSources {
    /// Publishers.
    pub srt: Arc<SrtIngest>,
    /// Tracks and bitrate of what is packaged.
    pub origin: Origin,
    /// Renditions, when transcoding.
    pub transcoder: Option<TranscodeService>,
    /// `ferrocast_edge_viewers{stream}`, when an edge runs.
    pub viewers: Option<IntGaugeVec>,
    /// The media bus: the latest keyframe of each source, for thumbnails.
    pub bus: InProcessBus,
    /// Thumbnails made lately.
    pub thumbnails: Thumbnails,
    /// The edge's HTTPS port, once it listens.
    pub edge_port: Arc<std::sync::OnceLock<u16>>,
}

/// How long a thumbnail is reused before a new one is made.
const THUMBNAIL_TTL: Duration = Duration::from_secs(2);

/// How long to wait for a stream's cached keyframe on the bus.
const KEYFRAME_WAIT: Duration = Duration::from_secs(2);

/// Widest thumbnail, pixels.
const THUMBNAIL_WIDTH: u32 = 320;

/// Recent thumbnails by stream, made at most once per [`THUMBNAIL_TTL`]
/// each (concurrent askers wait for one decode).
#[derive(Clone, Default)]
pub struct Thumbnails {
    recent: Arc<tokio::sync::Mutex<BTreeMap<String, Made>>>,
}

/// A thumbnail and when it was made.
type Made = (Instant, Arc<Vec<u8>>);

impl LiveSources {
    /// Every stream with a publisher or with media in the origin's window
    /// (renditions, `NAME/RUNG`, are folded into their stream).
    pub fn live(&self) -> BTreeMap<String, LiveStatus> {
        let mut out: BTreeMap<String, LiveStatus> = BTreeMap::new();
        for stream in self.origin.streams() {
            let name = stream.name().as_str();
            if name.contains('/') {
                continue;
            }
            let assembler = stream.lock();
            let status = out.entry(name.to_owned()).or_default();
            status.tracks = assembler
                .tracks()
                .map(|tracks| tracks.iter().map(track).collect())
                .unwrap_or_default();
            status.bitrate_bps = Some(assembler.bitrate().average);
        }
        for p in self.srt.publishers() {
            let status = out.entry(p.stream.clone()).or_default();
            status.on_air = true;
            status.publisher = Some(publisher(&p));
        }
        if let Some(transcoder) = &self.transcoder {
            for s in transcoder.streams() {
                if let Some(status) = out.get_mut(&s.name) {
                    status.renditions = s
                        .rungs
                        .iter()
                        .map(|r| Rendition {
                            name: r.name.clone(),
                            width: r.width,
                            height: r.height,
                            bitrate_bps: r.bitrate,
                        })
                        .collect();
                }
            }
        }
        if let Some(viewers) = &self.viewers {
            let counts = viewer_counts(viewers);
            for (name, status) in out.iter_mut() {
                status.viewers = Some(counts.get(name).copied().unwrap_or(0));
            }
        }
        out
    }
}

impl LiveSources {
    /// A JPEG of the latest keyframe of `stream`'s source video: the
    /// bus's cached GOP starts with it, decoded off the async threads.
    pub async fn thumbnail(&self, stream: &str) -> Option<Arc<Vec<u8>>> {
        let mut recent = self.thumbnails.recent.lock().await;
        if let Some((made, jpeg)) = recent.get(stream)
            && made.elapsed() < THUMBNAIL_TTL
        {
            return Some(jpeg.clone());
        }
        let (track, unit) = tokio::time::timeout(KEYFRAME_WAIT, self.keyframe(stream))
            .await
            .ok()??;
        let jpeg = tokio::task::spawn_blocking(move || {
            ferrocast_transcode::thumbnail::keyframe_jpeg(&track, &unit, THUMBNAIL_WIDTH)
        })
        .await
        .ok()?;
        let jpeg = match jpeg {
            Ok(jpeg) => Arc::new(jpeg),
            Err(e) => {
                tracing::debug!(stream, error = %e, "no thumbnail");
                return None;
            }
        };
        recent.retain(|_, (made, _)| made.elapsed() < Duration::from_secs(60));
        recent.insert(stream.to_owned(), (Instant::now(), jpeg.clone()));
        Some(jpeg)
    }

    /// The first video keyframe a new subscriber of `stream` gets, with
    /// its track.
    async fn keyframe(&self, stream: &str) -> Option<(TrackInfo, Arc<AccessUnit>)> {
        let mut subscriber = self.bus.subscribe(stream)?;
        let mut tracks: Option<Arc<[TrackInfo]>> = None;
        while let Some(message) = subscriber.recv().await {
            match message {
                BusMessage::Tracks(t) => tracks = Some(t),
                BusMessage::Unit(unit) if unit.keyframe && unit.kind == TrackKind::Video => {
                    let track = tracks.as_ref()?.iter().find(|t| t.id == unit.track)?;
                    return Some((track.clone(), unit));
                }
                BusMessage::End => return None,
                _ => {}
            }
        }
        None
    }
}

/// The gauge's value per `stream` label, read without making a series
/// for a stream that has none.
fn viewer_counts(gauge: &IntGaugeVec) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for family in gauge.collect() {
        for metric in family.get_metric() {
            let stream = metric
                .get_label()
                .iter()
                .find(|l| l.name() == "stream")
                .map(|l| l.value().to_owned());
            if let Some(stream) = stream {
                let value = metric.get_gauge().get_value();
                counts.insert(stream, if value > 0.0 { value as u64 } else { 0 });
            }
        }
    }
    counts
}

/// A source track as the API shows it.
pub fn track(t: &TrackInfo) -> Track {
    let mut out = Track {
        kind: if t.kind() == TrackKind::Video {
            "video"
        } else {
            "audio"
        }
        .to_owned(),
        codec: t.params.codec_string(),
        width: None,
        height: None,
        sample_rate: None,
        channels: None,
    };
    match &t.params {
        CodecParams::H264(p) => (out.width, out.height) = (Some(p.width), Some(p.height)),
        CodecParams::H265(p) => (out.width, out.height) = (Some(p.width), Some(p.height)),
        CodecParams::Aac(p) => {
            (out.sample_rate, out.channels) = (Some(p.sample_rate), Some(u32::from(p.channels)))
        }
        CodecParams::Opus(p) => {
            (out.sample_rate, out.channels) = (Some(p.sample_rate), Some(u32::from(p.channels)))
        }
        _ => {}
    }
    out
}

fn publisher(p: &PublisherStatus) -> Publisher {
    Publisher {
        protocol: "srt".to_owned(),
        remote: p.remote.to_string(),
        since_ms: p.since_unix_ms,
        encrypted: p.encrypted,
        bytes: p.bytes,
        bitrate_bps: p.bitrate_bps,
        srt: Some(SrtStats {
            rtt_us: p.rtt_us,
            lost_packets: p.lost_packets,
            retransmitted_packets: p.retransmitted_packets,
            dropped_packets: p.dropped_packets,
        }),
    }
}
