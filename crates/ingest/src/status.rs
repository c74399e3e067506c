//! What ingest knows about each connected publisher, for the status API and
//! metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use ferrocast_telemetry::{Metrics, TIMELINE_CORRECTION_KINDS};

use crate::timeline::TimelineStats;

/// A snapshot of one publisher session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherStatus {
    /// Stream name (`NAME` of `live/NAME`).
    pub stream: String,
    /// The caller's address.
    pub remote: SocketAddr,
    /// When the session began, Unix milliseconds.
    pub since_unix_ms: i64,
    /// Whether the session is SRT-encrypted.
    pub encrypted: bool,
    /// MPEG-TS bytes received.
    pub bytes: u64,
    /// Access units passed on to the bus.
    pub units: u64,
    /// Bad MPEG-TS input skipped.
    pub demux_warnings: u64,
    /// Receive bitrate over the last statistics interval.
    pub bitrate_bps: u64,
    /// SRT round-trip time, microseconds.
    pub rtt_us: u64,
    /// SRT packets detected lost.
    pub lost_packets: u64,
    /// SRT packets received as retransmissions.
    pub retransmitted_packets: u64,
    /// SRT packets dropped as too late.
    pub dropped_packets: u64,
    /// Source timestamp jumps corrected.
    pub timestamp_jumps: u64,
    /// Times the source clock drifted too far from the wall clock.
    pub clock_resyncs: u64,
    /// Times audio was shifted back into step with video.
    pub av_corrections: u64,
    /// Measured drift of the source clock against the wall clock,
    /// milliseconds (positive: media time runs slow), once known.
    pub clock_drift_ms: Option<i64>,
}

impl Default for PublisherStatus {
    fn default() -> Self {
        PublisherStatus {
            stream: String::new(),
            remote: SocketAddr::from(([0, 0, 0, 0], 0)),
            since_unix_ms: 0,
            encrypted: false,
            bytes: 0,
            units: 0,
            demux_warnings: 0,
            bitrate_bps: 0,
            rtt_us: 0,
            lost_packets: 0,
            retransmitted_packets: 0,
            dropped_packets: 0,
            timestamp_jumps: 0,
            clock_resyncs: 0,
            av_corrections: 0,
            clock_drift_ms: None,
        }
    }
}

/// Keeps a publisher's [`PublisherStatus`] and the matching metric series
/// in step.
#[derive(Debug)]
pub struct StatusRecorder {
    status: std::sync::Mutex<PublisherStatus>,
    metrics: Arc<Metrics>,
    bytes_counter: prometheus::IntCounter,
    warnings_counter: prometheus::IntCounter,
    last_stats_bytes: std::sync::Mutex<Option<(u64, std::time::Duration)>>,
}

/// One SRT statistics sample, as the session hands it over.
#[derive(Debug, Clone, Copy, Default)]
pub struct SrtSample {
    /// Time since the session began.
    pub elapsed: std::time::Duration,
    /// Total payload bytes received so far (what the bitrate is computed from).
    pub rx_bytes: u64,
    /// Round-trip time.
    pub rtt: std::time::Duration,
    /// Lost packets so far.
    pub lost: u64,
    /// Retransmitted packets received so far.
    pub retransmitted: u64,
    /// Packets dropped as too late so far.
    pub dropped: u64,
}

impl StatusRecorder {
    /// A recorder for a new session.
    pub fn new(status: PublisherStatus, metrics: Arc<Metrics>) -> Self {
        let labels = [status.stream.as_str()];
        let bytes_counter = metrics.ingest.bytes.with_label_values(&labels);
        let warnings_counter = metrics.ingest.demux_warnings.with_label_values(&labels);
        metrics.ingest.publishers.inc();
        StatusRecorder {
            status: std::sync::Mutex::new(status),
            metrics,
            bytes_counter,
            warnings_counter,
            last_stats_bytes: std::sync::Mutex::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut PublisherStatus) -> T) -> T {
        f(&mut self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// A snapshot.
    pub fn snapshot(&self) -> PublisherStatus {
        self.with(|s| s.clone())
    }

    /// Totals from the session pipeline.
    pub fn record_media(&self, bytes: u64, units: u64, demux_warnings: u64) {
        let (db, dw) = self.with(|s| {
            let d = (
                bytes.saturating_sub(s.bytes),
                demux_warnings.saturating_sub(s.demux_warnings),
            );
            s.bytes = bytes;
            s.units = units;
            s.demux_warnings = demux_warnings;
            d
        });
        self.bytes_counter.inc_by(db);
        self.warnings_counter.inc_by(dw);
    }

    /// The session's timeline corrections and clock drift so far.
    pub fn record_timeline(&self, stats: TimelineStats, drift_ms: Option<i64>) {
        let stream = self.with(|s| {
            s.timestamp_jumps = stats.jumps;
            s.clock_resyncs = stats.wall_resyncs;
            s.av_corrections = stats.av_corrections;
            s.clock_drift_ms = drift_ms;
            s.stream.clone()
        });
        let i = &self.metrics.ingest;
        let counts = [stats.jumps, stats.wall_resyncs, stats.av_corrections];
        for (kind, count) in TIMELINE_CORRECTION_KINDS.into_iter().zip(counts) {
            i.timeline_corrections
                .with_label_values(&[stream.as_str(), kind])
                .set(count as i64);
        }
        if let Some(drift) = drift_ms {
            i.clock_drift_ms
                .with_label_values(&[stream.as_str()])
                .set(drift);
        }
    }

    /// An SRT statistics sample.
    pub fn record_srt(&self, sample: SrtSample) {
        let bitrate = {
            let mut last = self
                .last_stats_bytes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let bitrate = match *last {
                Some((bytes, at)) if sample.elapsed > at => {
                    let secs = (sample.elapsed - at).as_secs_f64();
                    ((sample.rx_bytes.saturating_sub(bytes)) as f64 * 8.0 / secs) as u64
                }
                _ => 0,
            };
            *last = Some((sample.rx_bytes, sample.elapsed));
            bitrate
        };
        let stream = self.with(|s| {
            s.bitrate_bps = bitrate;
            s.rtt_us = sample.rtt.as_micros() as u64;
            s.lost_packets = sample.lost;
            s.retransmitted_packets = sample.retransmitted;
            s.dropped_packets = sample.dropped;
            s.stream.clone()
        });
        let i = &self.metrics.ingest;
        let labels = [stream.as_str()];
        let set = |g: &prometheus::IntGaugeVec, v: u64| g.with_label_values(&labels).set(v as i64);
        set(&i.bitrate_bps, bitrate);
        set(&i.srt_rtt_us, sample.rtt.as_micros() as u64);
        set(&i.srt_lost_packets, sample.lost);
        set(&i.srt_retransmitted_packets, sample.retransmitted);
        set(&i.srt_dropped_packets, sample.dropped);
    }
}

impl Drop for StatusRecorder {
    fn drop(&mut self) {
        self.metrics.ingest.publishers.dec();
        let stream = self.with(|s| s.stream.clone());
        let labels = [stream.as_str()];
        let i = &self.metrics.ingest;
        for gauge in [
            &i.bitrate_bps,
            &i.srt_rtt_us,
            &i.srt_lost_packets,
            &i.srt_retransmitted_packets,
            &i.srt_dropped_packets,
            &i.clock_drift_ms,
        ] {
            let _ = gauge.remove_label_values(&labels);
        }
        for kind in TIMELINE_CORRECTION_KINDS {
            let _ = i
                .timeline_corrections
                .remove_label_values(&[stream.as_str(), kind]);
        }
    }
}
