//! Operator endpoints of the all-in-one process: `/healthz` (liveness,
//! the SRT listener's included), `/readyz` (503 while the SRT listener is
//! down or the process drains), `/metrics` (Prometheus text format: the
//! process's one registry, the edge's metrics included when it runs) and
//! `/status` (JSON status of everything in the process: streams and their
//! publishers, RTP inputs, the media bus, the transcoder; the control
//! plane's `/api/v1/streams` is the stable, authenticated view).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ferrocast_bus::InProcessBus;
use ferrocast_ingest::{ListenerHealth, PublisherStatus, RtpIngest, SrtIngest};
use ferrocast_media::TrackInfo;
use ferrocast_packager::Origin;
use ferrocast_transcode::service::TranscodeService;
use serde_json::{Value, json};

#[derive(Clone)]
struct Status {
    origin: Origin,
    srt: Arc<SrtIngest>,
    rtp: Arc<RtpIngest>,
    bus: InProcessBus,
    transcoder: Option<TranscodeService>,
    draining: Arc<AtomicBool>,
}

/// The operator routes; `/readyz` answers 503 once `draining` is set.
pub fn router(
    origin: Origin,
    srt: Arc<SrtIngest>,
    rtp: Arc<RtpIngest>,
    bus: InProcessBus,
    transcoder: Option<TranscodeService>,
    draining: Arc<AtomicBool>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(streams))
        .with_state(Status {
            origin,
            srt,
            rtp,
            bus,
            transcoder,
            draining,
        })
}

/// Liveness: 200 while every listener of this process serves its port; 503
/// with the reason while the SRT listener is down (its supervisor is binding
/// it again; an orchestrator's probe restarts a process stuck there).
async fn healthz(State(status): State<Status>) -> axum::response::Response {
    health_answer(&status.srt.health()).into_response()
}

/// Readiness: live, and not draining.
async fn readyz(State(status): State<Status>) -> axum::response::Response {
    if status.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n").into_response();
    }
    match health_answer(&status.srt.health()) {
        (StatusCode::OK, _) => (StatusCode::OK, "ready\n".to_owned()).into_response(),
        (code, reason) => (code, format!("not ready: {reason}")).into_response(),
    }
}

fn health_answer(srt: &ListenerHealth) -> (StatusCode, String) {
    if srt.up {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        let reason = srt.last_failure.as_deref().unwrap_or("unknown");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("srt listener down: {reason}\n"),
        )
    }
}

fn track_json(t: &TrackInfo) -> Value {
    serde_json::to_value(crate::live::track(t)).unwrap_or(Value::Null)
}

/// The transcoder's ladder, encoder choice and per-stream state.
fn transcode_json(t: &TranscodeService) -> Value {
    let streams: Vec<Value> = t
        .streams()
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "ladder": s.ladder,
                "backend": s.backend,
                "encoder_reason": s.encoder_reason,
                "lag_ms": s.lag_ms,
                "dropped_gops": s.dropped_gops,
                "error": s.error,
                "rungs": s.rungs.iter().map(|r| json!({
                    "name": r.name,
                    "stream": r.stream,
                    "width": r.width,
                    "height": r.height,
                    "bitrate_bps": r.bitrate,
                    "frames_out": r.frames_out,
                    "shed": r.shed,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "ladder": t.ladder().name,
        "source_passthrough": t.ladder().source_passthrough,
        "backend": ferrocast_transcode::service::backend_label(t.machine()),
        "encoder_reason": t.machine().reason,
        "streams": streams,
    })
}

async fn metrics(State(status): State<Status>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        status.origin.metrics().render(),
    )
}

fn publisher_json(p: &PublisherStatus) -> Value {
    json!({
        "remote": p.remote.to_string(),
        "since_unix_ms": p.since_unix_ms,
        "encrypted": p.encrypted,
        "bytes": p.bytes,
        "units": p.units,
        "demux_warnings": p.demux_warnings,
        "bitrate_bps": p.bitrate_bps,
        "timeline": {
            "timestamp_jumps": p.timestamp_jumps,
            "clock_resyncs": p.clock_resyncs,
            "av_corrections": p.av_corrections,
            "clock_drift_ms": p.clock_drift_ms,
        },
        "srt": {
            "rtt_us": p.rtt_us,
            "lost_packets": p.lost_packets,
            "retransmitted_packets": p.retransmitted_packets,
            "dropped_packets": p.dropped_packets,
        },
    })
}

async fn streams(State(status): State<Status>) -> impl IntoResponse {
    let mut publishers = status.srt.publishers();
    let mut out = Vec::new();
    for group in status.origin.groups() {
        let Some(stream) = group.source() else {
            continue;
        };
        let name = stream.name().as_str().to_owned();
        let publisher = publishers
            .iter()
            .position(|p| p.stream == name)
            .map(|i| publishers.remove(i));
        // Video and audio, whether the audio has a rendition of its own.
        let tracks: Vec<Value> = group.tracks().iter().map(track_json).collect();
        let a = stream.lock();
        let bitrate = a.bitrate();
        out.push(json!({
            "name": name,
            "ended": a.ended(),
            "tracks": tracks,
            "media_sequence": a.window.media_sequence(),
            "last_part": a.window.last_part().map(|p| json!({"msn": p.msn, "index": p.index})),
            "bitrate_bps": {"peak": bitrate.peak, "average": bitrate.average},
            "window_bytes": a.store.bytes(),
            "publisher": publisher.as_ref().map(publisher_json),
        }));
    }
    // Publishers whose stream has no media yet.
    for p in &publishers {
        out.push(json!({
            "name": p.stream,
            "ended": false,
            "tracks": [],
            "publisher": publisher_json(p),
        }));
    }
    let rtp: Vec<Value> = status
        .rtp
        .stats()
        .iter()
        .map(|port| {
            let s = &port.stats;
            json!({
                "stream": port.stream.as_str(),
                "listen": port.local_addr.to_string(),
                "packets": s.packets,
                "bytes": s.bytes,
                "invalid": s.invalid,
                "reordered": s.reordered,
                "duplicates": s.duplicates,
                "late": s.late,
                "lost": s.lost,
                "damaged": s.damaged,
                "out_of_order": s.out_of_order,
                "sender_reports": s.sender_reports,
                "rtcp_synced": s.rtcp_synced,
                "units": s.units,
            })
        })
        .collect();
    // Every stream on the media bus: sources and transcoded renditions
    // (`NAME/RUNG`), whether or not the origin serves them.
    let bus: Vec<Value> = status
        .bus
        .streams()
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "publisher_live": s.publisher_live,
                "subscribers": s.subscribers,
                "tracks": s.tracks.as_deref().map(|t| t.iter().map(track_json).collect::<Vec<_>>()),
            })
        })
        .collect();
    let transcode = status.transcoder.as_ref().map(transcode_json);
    axum::Json(json!({
        "streams": out,
        "rtp_inputs": rtp,
        "bus": bus,
        "transcode": transcode,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_a_down_srt_listener_with_its_reason() {
        let mut health = ListenerHealth {
            up: true,
            restarts: 1,
            last_failure: Some("its task ended".into()),
        };
        assert_eq!(health_answer(&health), (StatusCode::OK, "ok\n".into()));
        health.up = false;
        let (status, body) = health_answer(&health);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "srt listener down: its task ended\n");
    }
}
