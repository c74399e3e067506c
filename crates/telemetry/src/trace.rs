//! Traces over OpenTelemetry: the OTLP exporter behind `tracing`, and the
//! spans that follow media across processes.
//!
//! A publisher's session is one trace. Ingest opens a span per GOP and
//! stamps its context on every unit of the GOP
//! ([`AccessUnit::trace`](ferrocast_media::AccessUnit::trace)); the media
//! bus carries it to the other processes; the transcoder opens a span per
//! rung GOP as a child of the source GOP it came from and stamps its own
//! context on its output; the packager opens a span per segment of each
//! rendition as a child of the context on the segment's first unit. So
//! one segment's spans in ingest, transcoder and packager share a trace.
//!
//! Without an OTLP endpoint nothing is exported and no unit carries a
//! context: [`context_of`] is `None` when no OpenTelemetry layer is
//! installed.

use std::time::Duration;

use ferrocast_media::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where and how traces are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The OTLP/gRPC endpoint, like `http://otel-collector:4317`.
    pub endpoint: String,
    /// The share of new traces recorded, 0.0 to 1.0; a trace continued
    /// from another process follows that process's decision.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute: `ferrocast-ROLE`.
    pub service_name: String,
    /// The node id (`service.instance.id`).
    pub instance: String,
}

/// The exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {endpoint}: {source}")]
pub struct TraceExportError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The running exporter. [`Tracing::shutdown`] (or dropping it) sends
/// what is still buffered.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Sends what is buffered, within `timeout`, and stops exporting.
    pub fn shutdown(&self, timeout: Duration) {
        let _ = self.provider.shutdown_with_timeout(timeout);
    }
}

/// The `tracing` layer that exports spans over OTLP/gRPC, and the exporter
/// behind it. Must be called inside a Tokio runtime (the gRPC channel runs
/// on it); that runtime must outlive the [`Tracing`].
///
/// Spans of level ERROR events get the error status, and the batch
/// processor drops spans rather than block the media path when the
/// collector is slow or away.
pub fn otlp_layer<S>(
    export: &TraceExport,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        Tracing,
    ),
    TraceExportError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|source| TraceExportError {
            endpoint: export.endpoint.clone(),
            source,
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(export.sample_ratio))
        .with_resource(
            Resource::builder()
                .with_service_name(export.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    export.instance.clone(),
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("ferrocast");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_error_events_to_status(true)
        .with_tracked_inactivity(false);
    Ok((layer, Tracing { provider }))
}

/// New traces (publisher sessions) are recorded at `ratio`; a span
/// continued from a parent (a GOP, a segment in another process) follows
/// the parent's decision, so a trace is whole or absent.
fn sampler(ratio: f64) -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio.clamp(0.0, 1.0))))
}

/// The trace context of `span`: `None` when the span is disabled or no
/// OpenTelemetry layer is installed (tracing off).
pub fn context_of(span: &Span) -> Option<TraceContext> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return None;
    }
    TraceContext::new(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.is_sampled(),
    )
}

/// Makes `span` a child of `parent`, a span of this or another process.
/// Call it right after creating the span, before its context is read.
pub fn continue_trace(span: &Span, parent: &TraceContext) {
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// Makes `span` the root of a trace of its own, whatever span it was
/// created in (a publisher's session under the long-lived listener span).
/// Call it right after creating the span, before its context is read.
pub fn new_trace(span: &Span) {
    let _ = span.set_parent(opentelemetry::Context::new());
}

/// Runs `f` with an OpenTelemetry layer that records spans and exports
/// them nowhere, so that spans have contexts: for tests of code that
/// stamps or continues traces.
pub fn with_unexported_tracing<R>(f: impl FnOnce() -> R) -> R {
    use tracing_subscriber::layer::SubscriberExt;
    let provider = SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("unexported"));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f)
}

/// One span at a time, each covering a GOP (or a segment): starting the
/// next ends the one before.
#[derive(Debug, Default)]
pub struct SpanPerGop {
    current: Option<(Span, Option<TraceContext>)>,
}

impl SpanPerGop {
    /// Ends the current span and makes `span` the current one, a child of
    /// `parent` when given (else of the span it was created in). Returns
    /// its context, to stamp on the GOP's units.
    pub fn start(&mut self, span: Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
        self.current = None;
        if let Some(parent) = parent {
            continue_trace(&span, parent);
        }
        let cx = context_of(&span);
        self.current = Some((span, cx));
        cx
    }

    /// The current span's context.
    pub fn context(&self) -> Option<TraceContext> {
        self.current.as_ref().and_then(|(_, cx)| *cx)
    }

    /// The current span, if any.
    pub fn span(&self) -> Option<&Span> {
        self.current.as_ref().map(|(span, _)| span)
    }

    /// Ends the current span.
    pub fn end(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn without_an_opentelemetry_layer_no_span_has_a_context() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let mut gops = SpanPerGop::default();
            assert_eq!(gops.start(tracing::info_span!("gop"), None), None);
            assert_eq!(gops.context(), None);
        });
    }

    #[test]
    fn a_continued_span_joins_the_parents_trace() {
        with_unexported_tracing(|| {
            let parent = TraceContext::new([7; 16], [9; 8], true).unwrap();
            let mut gops = SpanPerGop::default();
            let child = gops
                .start(tracing::info_span!("gop"), Some(&parent))
                .unwrap();
            assert_eq!(child.trace_id, parent.trace_id);
            assert_ne!(child.span_id, parent.span_id);
            assert!(child.sampled);
            // A fresh root span starts a trace of its own.
            let root = gops.start(tracing::info_span!("gop"), None).unwrap();
            assert_ne!(root.trace_id, parent.trace_id);
            assert_eq!(gops.context(), Some(root));
        });
    }

    #[test]
    fn sessions_are_sampled_at_the_ratio_and_their_spans_follow_the_session() {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler(0.0))
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            // A new trace at ratio 0: not sampled, but it has a context
            // that tells the other processes so.
            let session = tracing::info_span!("publisher");
            let cx = context_of(&session).unwrap();
            assert!(!cx.sampled);
            let mut gops = SpanPerGop::default();
            assert!(
                !gops
                    .start(tracing::info_span!("gop"), Some(&cx))
                    .unwrap()
                    .sampled
            );
            // A sampled parent from elsewhere is followed despite the ratio.
            let sampled = TraceContext::new([1; 16], [2; 8], true).unwrap();
            assert!(
                gops.start(tracing::info_span!("gop"), Some(&sampled))
                    .unwrap()
                    .sampled
            );
        });
    }

    #[test]
    fn a_new_trace_leaves_the_span_it_was_created_in() {
        with_unexported_tracing(|| {
            let listener = tracing::info_span!("listener");
            let _entered = listener.enter();
            let inherited = tracing::info_span!("session");
            let own = tracing::info_span!("session");
            new_trace(&own);
            let listener_trace = context_of(&listener).unwrap().trace_id;
            assert_eq!(context_of(&inherited).unwrap().trace_id, listener_trace);
            assert_ne!(context_of(&own).unwrap().trace_id, listener_trace);
        });
    }
}
