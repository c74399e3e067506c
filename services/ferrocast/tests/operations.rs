#![allow(clippy::unwrap_used)]

//! Operator endpoints: Prometheus metrics and the JSON stream status.

mod common;

use std::time::Duration;

use common::{Server, client, ffmpeg_push, get_text, playlist_with_segment};

/// The value of the first sample line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_describe_live_streams() {
    let server = Server::start("");
    let _push = ffmpeg_push(server.srt, "publish:live/ops", 40);
    let http = client();
    playlist_with_segment(&http, &server, "ops", 2).await;
    // One refused caller, to be counted.
    let refused = srt_tokio::SrtSocket::builder()
        .call(server.srt, Some("publish:vod/nope"))
        .await;
    assert!(refused.is_err());

    // SRT statistics arrive once a second: wait for the first report.
    let base = format!("http://{}", server.http);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let (code, body) = get_text(&http, &format!("{base}/status")).await;
        assert_eq!(code, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let stream = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "ops")
            .cloned();
        if let Some(stream) = stream
            && stream["publisher"]["bitrate_bps"].as_u64().unwrap_or(0) > 0
        {
            break stream;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no publisher statistics: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status["ended"], false);
    let codecs: Vec<&str> = status["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["codec"].as_str().unwrap())
        .collect();
    assert_eq!(codecs.len(), 2, "{status}");
    assert!(
        codecs[0].starts_with("avc1.") && codecs[1] == "mp4a.40.2",
        "{status}"
    );
    assert_eq!(status["tracks"][0]["width"], 320);
    let publisher = &status["publisher"];
    assert!(publisher["bytes"].as_u64().unwrap() > 10_000, "{publisher}");
    assert!(publisher["units"].as_u64().unwrap() > 10, "{publisher}");
    assert_eq!(publisher["encrypted"], false);
    assert!(publisher["srt"]["lost_packets"].is_u64(), "{publisher}");
    assert!(
        status["last_part"]["msn"].as_u64().unwrap() >= 2,
        "{status}"
    );

    let (code, metrics) = get_text(&http, &format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    assert!(
        sample(&metrics, "ferrocast_ingest_bytes_total{stream=\"ops\"}").unwrap() > 10_000.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "ferrocast_ingest_bitrate_bps{stream=\"ops\"}").unwrap() > 0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "ferrocast_ingest_publishers "),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "ferrocast_ingest_rejections_total{reason=\"bad_streamid\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "ferrocast_packager_parts_total{stream=\"ops\"}").unwrap() >= 10.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "ferrocast_packager_part_publish_seconds_count").unwrap() >= 10.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "ferrocast_packager_window_bytes{stream=\"ops\"}").unwrap() > 0.0,
        "{metrics}"
    );
    // Per-stream memory on the bus side is visible (and small: the packager keeps up).
    let queued = sample(&metrics, "ferrocast_bus_queued_bytes{stream=\"ops\"}").unwrap();
    assert!((0.0..16.0 * 1024.0 * 1024.0).contains(&queued), "{metrics}");
    assert_eq!(
        sample(&metrics, "ferrocast_bus_dropped_units{stream=\"ops\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "ferrocast_http_requests_total{kind=\"playlist\",status=\"200\",version=\"HTTP/1.1\"}"
        )
        .unwrap()
            >= 1.0,
        "{metrics}"
    );
    // Secrets and stream payloads are not in the metrics; the text is the
    // Prometheus exposition format.
    assert!(metrics.contains("# TYPE ferrocast_packager_part_publish_seconds histogram"));
}

/// `--log-format json`: every line on stderr is one JSON object with the
/// timestamp, level and target, an event's message and fields (the stream
/// name) as keys of their own, and the spans it was logged in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_their_fields() {
    let server = Server::start_with_args("", &["--log-format", "json"]);
    let _push = ffmpeg_push(server.srt, "publish:live/jsonlog", 10);
    assert!(
        server.wait_for_log("publisher accepted", Duration::from_secs(30)),
        "{}",
        server.log()
    );
    let lines: Vec<serde_json::Value> = server
        .log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line[key].is_string(), "no {key}: {line}");
        }
        // The process's role on every line; no trace id without an OTLP
        // endpoint (nothing is traced).
        assert_eq!(line["role"], "up", "{line}");
        assert!(line.get("trace_id").is_none(), "{line}");
    }
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "publisher accepted")
        .unwrap();
    assert_eq!(accepted["stream"], "live/jsonlog", "{accepted}");
    assert_eq!(accepted["spans"][0]["name"], "publisher", "{accepted}");
}
