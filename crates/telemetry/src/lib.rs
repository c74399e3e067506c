//! Prometheus metrics for every Ferrocast role, and traces over
//! OpenTelemetry ([`trace`]).
//!
//! One [`Metrics`] value owns a registry and the metric families each role
//! updates; roles get it as an `Arc` and never create metrics of their own,
//! so names, labels and help texts live in one place. [`Metrics::render`]
//! produces the text exposition format served on `/metrics`.
//!
//! Per-stream series are removed with [`Metrics::forget_stream`] when a
//! stream ends, so label cardinality follows the live streams.
//!
//! ```
//! let metrics = ferrocast_telemetry::Metrics::new();
//! metrics.ingest.rejections.with_label_values(&["bad_streamid"]).inc();
//! assert!(metrics.render().contains("ferrocast_ingest_rejections_total{reason=\"bad_streamid\"} 1"));
//! ```

pub mod trace;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The `kind` label values of [`IngestMetrics::timeline_corrections`].
pub const TIMELINE_CORRECTION_KINDS: [&str; 3] = ["jump", "wall_drift", "av_drift"];

/// Ingest metrics.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// Connected publishers.
    pub publishers: IntGauge,
    /// Refused callers by reason.
    pub rejections: IntCounterVec,
    /// MPEG-TS bytes received per stream.
    pub bytes: IntCounterVec,
    /// Receive bitrate per stream over the last statistics interval.
    pub bitrate_bps: IntGaugeVec,
    /// SRT round-trip time per stream, microseconds.
    pub srt_rtt_us: IntGaugeVec,
    /// SRT packets lost (detected gaps) per stream, since the session began.
    pub srt_lost_packets: IntGaugeVec,
    /// SRT packets received as retransmissions per stream.
    pub srt_retransmitted_packets: IntGaugeVec,
    /// SRT packets dropped as too late per stream.
    pub srt_dropped_packets: IntGaugeVec,
    /// Bad MPEG-TS input skipped, per stream.
    pub demux_warnings: IntCounterVec,
    /// Source timeline corrections per stream, by kind (`jump`,
    /// `wall_drift`, `av_drift`), since the session began.
    pub timeline_corrections: IntGaugeVec,
    /// Drift of the source's clock against the wall clock per stream,
    /// milliseconds (positive: media time runs slow).
    pub clock_drift_ms: IntGaugeVec,
    /// 1 while the SRT listener serves its port, 0 while it is being
    /// restarted.
    pub srt_listener_up: IntGauge,
    /// Times the SRT listener stopped unexpectedly and was restarted.
    pub srt_listener_restarts: IntCounter,
    /// What the SRT listener did with datagrams and handshakes that did not
    /// become sessions, by event (`parse_error`, `pending_table_full`,
    /// `handshake_expired`).
    pub srt_listener_events: IntCounterVec,
}

/// The `event` label values of [`IngestMetrics::srt_listener_events`].
pub const SRT_LISTENER_EVENTS: [&str; 3] =
    ["parse_error", "pending_table_full", "handshake_expired"];

/// Packager and origin metrics.
#[derive(Debug, Clone)]
pub struct PackagerMetrics {
    /// Time from a frame reaching the packager to the part that holds it
    /// being servable, for frames that complete a part.
    pub part_publish_seconds: Histogram,
    /// Parts published per stream.
    pub parts: IntCounterVec,
    /// Media bytes held in the live window per stream.
    pub window_bytes: IntGaugeVec,
    /// HTTP requests being held (blocking playlist reload, early parts).
    pub held_requests: IntGauge,
    /// Units the bus dropped for a slow packager subscriber, per stream.
    pub bus_dropped_units: IntGaugeVec,
    /// Bytes queued on the bus for the packager, per stream.
    pub bus_queued_bytes: IntGaugeVec,
}

/// Transcoder metrics.
#[derive(Debug, Clone)]
pub struct TranscodeMetrics {
    /// The encoder family chosen at start: 1 for the one in use, labelled
    /// `backend` (`nvenc` or `cpu`) and `reason` (why).
    pub encoder: IntGaugeVec,
    /// Encoded frames out, per stream and rung (its rate is the rung's fps).
    pub frames: IntCounterVec,
    /// How far the stream's transcode lags behind live, milliseconds (the
    /// largest real-time lag of its rungs).
    pub lag_ms: IntGaugeVec,
    /// Rungs shed because the transcoder could not keep up, per stream.
    pub shed_rungs: IntCounterVec,
    /// Source GOPs dropped because the transcoder's queue was full, per
    /// stream.
    pub dropped_gops: IntCounterVec,
}

impl TranscodeMetrics {
    /// Drop every series of `stream` whose rungs were `rungs`.
    pub fn forget_stream<S: AsRef<str>>(&self, stream: &str, rungs: &[S]) {
        for rung in rungs {
            let _ = self.frames.remove_label_values(&[stream, rung.as_ref()]);
        }
        let _ = self.lag_ms.remove_label_values(&[stream]);
        let _ = self.shed_rungs.remove_label_values(&[stream]);
        let _ = self.dropped_gops.remove_label_values(&[stream]);
    }
}

/// Metrics of a role process's part in a cluster (`ferrocast ingest`,
/// `transcode`, `package`); zero in `ferrocast up`.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// Streams this process holds a lease of for its role.
    pub streams_held: IntGauge,
    /// 1 while the last heartbeat reached the registry.
    pub registry_reachable: IntGauge,
    /// Publishing processes refused because their fencing epoch was older
    /// than one already seen for the stream.
    pub stale_publishers_refused: IntCounter,
    /// Remote subscriptions that went on from another publishing process
    /// (after a crash, a pause or a handover).
    pub publisher_changes: IntCounter,
    /// Planned handovers a subscription followed, by `outcome`: `joined`
    /// (no discontinuity) or `discontinuity` (the next publisher started
    /// later than the handover point).
    pub handovers: IntCounterVec,
}

/// Recording to object storage (`ferrocast_recording_*`); zero while
/// recording is off.
#[derive(Debug, Clone)]
pub struct RecordingMetrics {
    /// Segments written to the spool.
    pub segments: IntCounter,
    /// Their bytes.
    pub bytes: IntCounter,
    /// Segments not recorded, by `reason`: `queue_full` (the recorder fell
    /// behind the live path), `spool_full`, `spool_error`.
    pub dropped: IntCounterVec,
    /// Recordings being written by this process.
    pub open: IntGauge,
    /// Recordings closed, by `by`: `writer` (the stream ended) or
    /// `recovery` (closed for a writer that stopped without closing it).
    pub closed: IntCounterVec,
    /// Recordings deleted because they were past retention.
    pub expired: IntCounter,
    /// Bytes in the spool waiting for the store.
    pub spool_bytes: IntGauge,
    /// Objects in the spool waiting for the store.
    pub spool_objects: IntGauge,
    /// Objects the store has taken.
    pub uploaded: IntCounter,
    /// Failed upload attempts (each tried again).
    pub upload_retries: IntCounter,
}

/// HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// Requests by resource kind, HTTP version and status.
    pub requests: IntCounterVec,
}

/// Every metric, and the registry they are in.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Ingest.
    pub ingest: IngestMetrics,
    /// Packager and origin.
    pub packager: PackagerMetrics,
    /// HTTP.
    pub http: HttpMetrics,
    /// Transcoder.
    pub transcode: TranscodeMetrics,
    /// The process's part in a cluster.
    pub cluster: ClusterMetrics,
    /// Recording to object storage.
    pub recording: RecordingMetrics,
    /// HTTP connections of the origin's listener (open, refused at a
    /// limit, closed idle): `ferrocast_http_connections_*`.
    pub connections: ferrocast_connections::ConnectionMetrics,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, &e));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable_metric(name, &e));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).unwrap_or_else(|e| unreachable_metric(name, &e));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).unwrap_or_else(|e| unreachable_metric(name, &e));
    register(registry, Box::new(metric.clone()), name);
    metric
}

fn register(registry: &Registry, metric: Box<dyn prometheus::core::Collector>, name: &str) {
    if let Err(e) = registry.register(metric) {
        unreachable_metric(name, &e);
    }
}

/// Metric definitions are constants: a bad one is a programming error that
/// the unit tests catch, never something input can cause.
#[allow(clippy::panic)]
fn unreachable_metric(name: &str, error: &prometheus::Error) -> ! {
    panic!("metric {name} is malformed: {error}")
}

impl Metrics {
    /// Create every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        let streams = &["stream"];
        let ingest = IngestMetrics {
            publishers: gauge(&r, "ferrocast_ingest_publishers", "Connected publishers."),
            rejections: counter_vec(
                &r,
                "ferrocast_ingest_rejections_total",
                "Callers refused, by reason.",
                &["reason"],
            ),
            bytes: counter_vec(
                &r,
                "ferrocast_ingest_bytes_total",
                "MPEG-TS bytes received.",
                streams,
            ),
            bitrate_bps: gauge_vec(
                &r,
                "ferrocast_ingest_bitrate_bps",
                "Receive bitrate over the last statistics interval.",
                streams,
            ),
            srt_rtt_us: gauge_vec(
                &r,
                "ferrocast_ingest_srt_rtt_microseconds",
                "SRT round-trip time.",
                streams,
            ),
            srt_lost_packets: gauge_vec(
                &r,
                "ferrocast_ingest_srt_lost_packets",
                "SRT packets detected lost in this session.",
                streams,
            ),
            srt_retransmitted_packets: gauge_vec(
                &r,
                "ferrocast_ingest_srt_retransmitted_packets",
                "SRT packets received as retransmissions in this session.",
                streams,
            ),
            srt_dropped_packets: gauge_vec(
                &r,
                "ferrocast_ingest_srt_dropped_packets",
                "SRT packets dropped as too late in this session.",
                streams,
            ),
            demux_warnings: counter_vec(
                &r,
                "ferrocast_ingest_demux_warnings_total",
                "Bad MPEG-TS input skipped.",
                streams,
            ),
            timeline_corrections: gauge_vec(
                &r,
                "ferrocast_ingest_timeline_corrections",
                "Source timestamp jumps and clock drifts corrected in this session, by kind.",
                &["stream", "kind"],
            ),
            clock_drift_ms: gauge_vec(
                &r,
                "ferrocast_ingest_clock_drift_milliseconds",
                "Drift of the source clock against the wall clock (positive: media time runs slow).",
                streams,
            ),
            srt_listener_up: gauge(
                &r,
                "ferrocast_ingest_srt_listener_up",
                "1 while the SRT listener serves its port, 0 while it is being restarted.",
            ),
            srt_listener_restarts: counter(
                &r,
                "ferrocast_ingest_srt_listener_restarts_total",
                "Times the SRT listener stopped unexpectedly and was restarted.",
            ),
            srt_listener_events: counter_vec(
                &r,
                "ferrocast_ingest_srt_listener_events_total",
                "Datagrams and handshakes the SRT listener dropped, by event.",
                &["event"],
            ),
        };
        let part_publish_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ferrocast_packager_part_publish_seconds",
                "Frame in at the packager to the part holding it servable, for part-completing frames.",
            )
            .buckets(vec![0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05]),
        )
        .unwrap_or_else(|e| unreachable_metric("ferrocast_packager_part_publish_seconds", &e));
        register(
            &r,
            Box::new(part_publish_seconds.clone()),
            "part_publish_seconds",
        );
        let packager = PackagerMetrics {
            part_publish_seconds,
            parts: counter_vec(
                &r,
                "ferrocast_packager_parts_total",
                "LL-HLS parts published.",
                streams,
            ),
            window_bytes: gauge_vec(
                &r,
                "ferrocast_packager_window_bytes",
                "Media bytes held for the live window.",
                streams,
            ),
            held_requests: gauge(
                &r,
                "ferrocast_http_held_requests",
                "Requests held for a blocking reload or an early part.",
            ),
            bus_dropped_units: gauge_vec(
                &r,
                "ferrocast_bus_dropped_units",
                "Units the bus dropped for the packager because it fell behind.",
                streams,
            ),
            bus_queued_bytes: gauge_vec(
                &r,
                "ferrocast_bus_queued_bytes",
                "Bytes the bus holds for the packager's subscription.",
                streams,
            ),
        };
        let http = HttpMetrics {
            requests: counter_vec(
                &r,
                "ferrocast_http_requests_total",
                "HTTP requests by resource kind, version and status.",
                &["kind", "version", "status"],
            ),
        };
        let transcode = TranscodeMetrics {
            encoder: gauge_vec(
                &r,
                "ferrocast_transcode_encoder",
                "Encoder family in use (1), with the reason it was chosen.",
                &["backend", "reason"],
            ),
            frames: counter_vec(
                &r,
                "ferrocast_transcode_frames_total",
                "Encoded frames out, per stream and rung.",
                &["stream", "rung"],
            ),
            lag_ms: gauge_vec(
                &r,
                "ferrocast_transcode_lag_milliseconds",
                "How far the transcode lags behind live (largest rung lag).",
                streams,
            ),
            shed_rungs: counter_vec(
                &r,
                "ferrocast_transcode_shed_rungs_total",
                "Rungs shed because the transcoder could not keep up.",
                streams,
            ),
            dropped_gops: counter_vec(
                &r,
                "ferrocast_transcode_dropped_gops_total",
                "Source GOPs dropped because the transcoder's queue was full.",
                streams,
            ),
        };
        let cluster = ClusterMetrics {
            streams_held: gauge(
                &r,
                "ferrocast_cluster_streams_held",
                "Streams this process holds a lease of for its role.",
            ),
            registry_reachable: gauge(
                &r,
                "ferrocast_cluster_registry_reachable",
                "1 while the last heartbeat reached the registry.",
            ),
            stale_publishers_refused: counter(
                &r,
                "ferrocast_cluster_stale_publishers_refused_total",
                "Publishing processes refused for a fencing epoch older than one already seen.",
            ),
            publisher_changes: counter(
                &r,
                "ferrocast_cluster_publisher_changes_total",
                "Remote subscriptions that went on from another publishing process.",
            ),
            handovers: counter_vec(
                &r,
                "ferrocast_cluster_handovers_total",
                "Planned handovers a subscription followed, by outcome (joined, discontinuity).",
                &["outcome"],
            ),
        };
        let connections = ferrocast_connections::ConnectionMetrics::new("http", &r)
            .unwrap_or_else(|e| unreachable_metric("ferrocast_http_connections", &e));
        let recording = RecordingMetrics {
            segments: counter(
                &r,
                "ferrocast_recording_segments_total",
                "Segments written to the recording spool.",
            ),
            bytes: counter(
                &r,
                "ferrocast_recording_bytes_total",
                "Bytes of the segments written to the recording spool.",
            ),
            dropped: counter_vec(
                &r,
                "ferrocast_recording_dropped_total",
                "Segments not recorded, by reason (queue_full, spool_full, spool_error).",
                &["reason"],
            ),
            open: gauge(
                &r,
                "ferrocast_recording_open",
                "Recordings this process is writing.",
            ),
            closed: counter_vec(
                &r,
                "ferrocast_recording_closed_total",
                "Recordings closed, by who closed them (writer, recovery).",
                &["by"],
            ),
            expired: counter(
                &r,
                "ferrocast_recording_expired_total",
                "Recordings deleted because they were past retention.",
            ),
            spool_bytes: gauge(
                &r,
                "ferrocast_recording_spool_bytes",
                "Bytes in the recording spool waiting for the object store.",
            ),
            spool_objects: gauge(
                &r,
                "ferrocast_recording_spool_objects",
                "Objects in the recording spool waiting for the object store.",
            ),
            uploaded: counter(
                &r,
                "ferrocast_recording_uploaded_total",
                "Objects the object store has taken from the spool.",
            ),
            upload_retries: counter(
                &r,
                "ferrocast_recording_upload_retries_total",
                "Failed uploads to the object store, each tried again.",
            ),
        };
        Metrics {
            cluster,
            recording,
            registry: r,
            ingest,
            packager,
            http,
            transcode,
            connections,
        }
    }

    /// The registry every metric is in: the process's one registry, which
    /// other components (the edge) register their metrics in too.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format of every metric in the registry.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Drop every per-stream series of `stream`.
    pub fn forget_stream(&self, stream: &str) {
        let labels = &[stream];
        let i = &self.ingest;
        let _ = i.bytes.remove_label_values(labels);
        let _ = i.demux_warnings.remove_label_values(labels);
        for gauge in [
            &i.bitrate_bps,
            &i.srt_rtt_us,
            &i.srt_lost_packets,
            &i.srt_retransmitted_packets,
            &i.srt_dropped_packets,
            &i.clock_drift_ms,
        ] {
            let _ = gauge.remove_label_values(labels);
        }
        for kind in TIMELINE_CORRECTION_KINDS {
            let _ = i.timeline_corrections.remove_label_values(&[stream, kind]);
        }
        let p = &self.packager;
        let _ = p.parts.remove_label_values(labels);
        let _ = p.window_bytes.remove_label_values(labels);
        let _ = p.bus_dropped_units.remove_label_values(labels);
        let _ = p.bus_queued_bytes.remove_label_values(labels);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_and_streams_are_forgotten() {
        let m = Metrics::new();
        m.ingest.bytes.with_label_values(&["cam"]).inc_by(1316);
        m.packager.parts.with_label_values(&["cam"]).inc();
        m.packager.part_publish_seconds.observe(0.0002);
        m.http
            .requests
            .with_label_values(&["part", "HTTP/1.1", "200"])
            .inc();
        let text = m.render();
        assert!(
            text.contains("ferrocast_ingest_bytes_total{stream=\"cam\"} 1316"),
            "{text}"
        );
        assert!(
            text.contains("ferrocast_packager_part_publish_seconds_bucket{le=\"0.00025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "ferrocast_http_requests_total{kind=\"part\",status=\"200\",version=\"HTTP/1.1\"} 1"
            ),
            "{text}"
        );
        m.transcode
            .encoder
            .with_label_values(&["cpu", "no NVIDIA driver"])
            .set(1);
        m.transcode.frames.with_label_values(&["cam", "240p"]).inc();
        m.transcode.lag_ms.with_label_values(&["cam"]).set(12);
        m.transcode.shed_rungs.with_label_values(&["cam"]).inc();
        m.transcode.dropped_gops.with_label_values(&["cam"]).inc();
        let text = m.render();
        assert!(
            text.contains("ferrocast_transcode_frames_total{rung=\"240p\",stream=\"cam\"} 1"),
            "{text}"
        );
        m.forget_stream("cam");
        m.transcode.forget_stream("cam", &["240p"]);
        let text = m.render();
        assert!(!text.contains("stream=\"cam\""), "{text}");
        assert!(
            text.contains(
                "ferrocast_transcode_encoder{backend=\"cpu\",reason=\"no NVIDIA driver\"} 1"
            ),
            "{text}"
        );
    }
}
