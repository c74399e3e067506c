#![allow(clippy::unwrap_used)]

//! Traces across processes: `ferrocast ingest`, `transcode` and `package`,
//! each exporting spans over OTLP/gRPC to a collector this test runs (the
//! collector's own gRPC service from `opentelemetry-proto`, on a free
//! port), carry one publisher's session as one trace: each packaged
//! segment of a rung is a span under the transcoder's span for that GOP of
//! the rung, itself under the ingest's span for the source GOP. The
//! ingest's JSON log lines name the same trace.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Node, Redis};
use common::ffmpeg_push;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One exported span, as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    /// The resource's `service.name`.
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    /// String and integer attributes, as text.
    attributes: HashMap<String, String>,
}

/// A minimal OTLP/gRPC trace collector: keeps every span it is sent.
#[derive(Debug, Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref())?)))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Received {
                        service: service.clone(),
                        attributes: attributes(&span.attributes),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free loopback port.
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// A packaged segment of `rendition` whose span chain reaches back to the
/// ingest: (package_segment, transcode_gop, ingest_gop).
fn chain(spans: &[Received], rendition: &str) -> Option<(Received, Received, Received)> {
    let by_id: HashMap<&[u8], &Received> =
        spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    spans
        .iter()
        .filter(|s| {
            s.name == "package_segment"
                && s.attributes.get("stream").map(String::as_str) == Some(rendition)
        })
        .find_map(|segment| {
            let gop = by_id.get(segment.parent_span_id.as_slice())?;
            let source = by_id.get(gop.parent_span_id.as_slice())?;
            Some((segment.clone(), (*gop).clone(), (*source).clone()))
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_segment_from_ingest_through_the_transcoder_to_the_packager() {
    let Some(redis) = Redis::start() else { return };
    let collector = Collector::default();
    let endpoint = format!("http://{}", collector.start().await);
    let env = [
        ("FERROCAST_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("FERROCAST_LOG_FORMAT", "json"),
    ];
    let node = |role: &str| {
        let ready = format!("ferrocast {role} ready");
        Node::start_with(role, &format!("{role}-t"), &redis, "", &env, &ready)
    };
    let ingest = node("ingest");
    let transcoder = node("transcode");
    let packager = node("package");
    let log = || {
        format!(
            "ingest:\n{}\ntranscode:\n{}\npackage:\n{}",
            ingest.log(),
            transcoder.log(),
            packager.log()
        )
    };
    let _push = ffmpeg_push(ingest.addr("srt"), "publish:live/traced", 40);

    // The batch exporters send every few seconds: wait for a whole chain.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (segment, gop, source) = loop {
        if let Some(found) = chain(&collector.spans(), "traced/240p") {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no package_segment → transcode_gop → ingest_gop chain; spans: {:#?}\n{}",
            collector
                .spans()
                .iter()
                .map(|s| (&s.service, &s.name, &s.attributes))
                .collect::<Vec<_>>(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Each from its own process, all one trace.
    assert_eq!(segment.service, "ferrocast-package");
    assert_eq!(gop.service, "ferrocast-transcode");
    assert_eq!(gop.name, "transcode_gop");
    assert_eq!(gop.attributes["stream"], "traced/240p");
    assert_eq!(source.service, "ferrocast-ingest");
    assert_eq!(source.name, "ingest_gop");
    assert_eq!(segment.trace_id, gop.trace_id);
    assert_eq!(gop.trace_id, source.trace_id);
    assert!(
        segment.attributes["msn"].parse::<u64>().is_ok(),
        "{segment:?}"
    );
    // The source GOP is under the publisher's session, which starts the
    // trace (it is exported when the session ends).
    assert!(!source.parent_span_id.is_empty(), "{source:?}");
    // Every rung's segments join the same trace.
    for rung in ["180p", "144p"] {
        let found = loop {
            if let Some(found) = chain(&collector.spans(), &format!("traced/{rung}")) {
                break found;
            }
            assert!(Instant::now() < deadline, "no chain for {rung}\n{}", log());
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(found.0.trace_id, source.trace_id);
    }

    // The ingest's JSON log lines logged in the session carry its role,
    // the trace id the collector shows and the session's span with its
    // stream.
    let trace_id = hex(&source.trace_id);
    let lines: Vec<serde_json::Value> = ingest
        .log()
        .lines()
        .filter(|l| l.contains(&trace_id))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !lines.is_empty(),
        "no log line with trace {trace_id}\n{}",
        log()
    );
    for line in &lines {
        assert_eq!(line["role"], "ingest", "{line}");
        assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
    }
    let in_session = |line: &serde_json::Value| {
        line["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|s| s["name"] == "session" && s["stream"] == "live/traced")
        })
    };
    assert!(lines.iter().any(in_session), "{lines:#?}");
}
