//! The live state the control plane's API reports. For `ferrocast up`:
//! publishers from the SRT listener and the RTP ports, tracks and bitrate
//! from the origin, renditions from the transcoder, viewers from the
//! edge's gauge, and thumbnails of the latest keyframe on the media bus.
//! For a cluster, [`ingest_reports`] is what each ingest process writes to
//! the registry for `ferrocast control`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocast_bus::{BusMessage, InProcessBus, Subscriber};
use ferrocast_control::api::live::{LiveStatus, Publisher, Rendition, RtpStats, SrtStats, Track};
use ferrocast_ingest::{PublisherStatus, RtpIngest, RtpPortStats, SrtIngest};
use ferrocast_media::{AccessUnit, CodecParams, StreamName, TrackInfo, TrackKind};
use ferrocast_packager::Origin;
use ferrocast_transcode::service::TranscodeService;
use prometheus::IntGaugeVec;
use prometheus::core::Collector;

/// Where the live state comes from.
#[derive(Clone)]
pub struct LiveSources {
    /// SRT publishers.
    pub srt: Arc<SrtIngest>,
    /// RTP publishers.
    pub rtp: Arc<RtpIngest>,
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
        for group in self.origin.groups() {
            let Some(stream) = group.source() else {
                continue;
            };
            let name = stream.name().as_str();
            if name.contains('/') {
                continue;
            }
            let status = out.entry(name.to_owned()).or_default();
            // Video and audio, whether the audio has a rendition of its own.
            status.tracks = group.tracks().iter().map(track).collect();
            status.bitrate_bps = Some(stream.lock().bitrate().average);
        }
        add_publishers(&mut out, &self.srt, &self.rtp);
        if let Some(transcoder) = &self.transcoder {
            for (name, renditions) in renditions(transcoder) {
                if let Some(status) = out.get_mut(&name) {
                    status.renditions = renditions;
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
    /// bus's cached GOP starts with it.
    pub async fn thumbnail(&self, stream: &str) -> Option<Arc<Vec<u8>>> {
        let (bus, name) = (self.bus.clone(), stream.to_owned());
        self.thumbnails
            .get(stream, async move { bus.subscribe(&name) })
            .await
    }
}

/// What an ingest process knows of each stream it has a publisher of: the
/// publisher (SRT or RTP) with its statistics, and the source's tracks
/// from the bus; the bitrate is the publisher's.
pub fn ingest_reports(
    srt: &SrtIngest,
    rtp: &RtpIngest,
    bus: &InProcessBus,
) -> BTreeMap<String, LiveStatus> {
    let mut out = BTreeMap::new();
    add_publishers(&mut out, srt, rtp);
    for info in bus.streams() {
        if let Some(status) = out.get_mut(&info.name) {
            status.tracks = info
                .tracks
                .map(|tracks| tracks.iter().map(track).collect())
                .unwrap_or_default();
            status.bitrate_bps = status.publisher.as_ref().map(|p| p.bitrate_bps);
        }
    }
    out
}

/// The renditions of each stream `transcoder` transcodes; in a cluster,
/// what each transcoder writes to the registry for `ferrocast control`
/// (as a [`LiveStatus`] with only `renditions`).
pub fn renditions(transcoder: &TranscodeService) -> BTreeMap<String, Vec<Rendition>> {
    transcoder
        .streams()
        .into_iter()
        .map(|s| {
            let rungs = s
                .rungs
                .iter()
                .map(|r| Rendition {
                    name: r.name.clone(),
                    width: r.width,
                    height: r.height,
                    bitrate_bps: r.bitrate,
                })
                .collect();
            (s.name, rungs)
        })
        .collect()
}

/// `statuses` as the registry keeps them: the stream's name and the
/// status's JSON (a name that is not a stream name is left out).
pub fn registry_reports(statuses: BTreeMap<String, LiveStatus>) -> Vec<(StreamName, String)> {
    statuses
        .into_iter()
        .filter_map(|(name, status)| {
            let name = StreamName::new(&name).ok()?;
            let json = serde_json::to_string(&status).ok()?;
            Some((name, json))
        })
        .collect()
}

/// Marks each stream with a publisher on air, with the publisher.
fn add_publishers(out: &mut BTreeMap<String, LiveStatus>, srt: &SrtIngest, rtp: &RtpIngest) {
    for p in srt.publishers() {
        let status = out.entry(p.stream.clone()).or_default();
        status.on_air = true;
        status.publisher = Some(publisher(&p));
    }
    for port in rtp.stats() {
        if let Some(p) = rtp_publisher(&port) {
            let status = out.entry(port.stream.as_str().to_owned()).or_default();
            status.on_air = true;
            status.publisher = Some(p);
        }
    }
}

impl Thumbnails {
    /// A JPEG of the first video keyframe `subscriber` (resolved only when
    /// no recent thumbnail of `stream` exists) delivers, decoded off the
    /// async threads; `None` when none comes in time or it cannot be
    /// decoded.
    pub async fn get(
        &self,
        stream: &str,
        subscriber: impl Future<Output = Option<Subscriber>>,
    ) -> Option<Arc<Vec<u8>>> {
        let mut recent = self.recent.lock().await;
        if let Some((made, jpeg)) = recent.get(stream)
            && made.elapsed() < THUMBNAIL_TTL
        {
            return Some(jpeg.clone());
        }
        let (track, unit) =
            tokio::time::timeout(KEYFRAME_WAIT, async { keyframe(subscriber.await?).await })
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
}

/// The first video keyframe `subscriber` gets (a new subscriber's cached
/// GOP starts with one), with its track.
async fn keyframe(mut subscriber: Subscriber) -> Option<(TrackInfo, Arc<AccessUnit>)> {
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
        rtp: None,
    }
}

/// The sender publishing through an RTP port, if one is.
fn rtp_publisher(port: &RtpPortStats) -> Option<Publisher> {
    let sender = port.sender?;
    Some(Publisher {
        protocol: "rtp".to_owned(),
        remote: sender.remote.to_string(),
        since_ms: sender.since_unix_ms,
        encrypted: false,
        bytes: port.stats.bytes,
        bitrate_bps: sender.bitrate_bps,
        srt: None,
        rtp: Some(RtpStats {
            listen: port.local_addr.to_string(),
            packets: port.stats.packets,
            lost_packets: port.stats.lost,
            reordered_packets: port.stats.reordered,
            late_packets: port.stats.late,
        }),
    })
}
