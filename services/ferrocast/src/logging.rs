//! The process's `tracing` subscriber: log lines on stderr (text, or one
//! JSON object per line with `role` and, inside a traced span, `trace_id`)
//! and, with an OTLP endpoint, spans exported over OpenTelemetry.

use std::fmt::Write as _;

use anyhow::Context;
use ferrocast_config::TelemetryConfig;
use ferrocast_telemetry::trace::{TraceExport, Tracing, otlp_layer};
use tracing::Subscriber;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log filter when `FERROCAST_LOG` is unset. srt-protocol logs every
/// unparseable datagram at `warn`: anyone can send those, so they are kept
/// out of the log by default rather than let a stranger flood it.
const DEFAULT_LOG_FILTER: &str = "info,srt_protocol=warn,srt_protocol::listener=error";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the subscriber for `role` (`up`, `ingest`, ...). With an OTLP
/// endpoint (`[telemetry] otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`)
/// spans are exported too: call inside the Tokio runtime that outlives
/// the returned [`Tracing`], and shut that down before the runtime.
pub fn init(
    format: LogFormat,
    role: &'static str,
    instance: String,
    telemetry: &TelemetryConfig,
) -> anyhow::Result<Option<Tracing>> {
    let filter = EnvFilter::try_from_env("FERROCAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .fmt_fields(JsonFields::new())
            .event_format(WithRoleAndTrace {
                json: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(true),
                role,
            })
            .boxed(),
    };
    let endpoint = telemetry.endpoint(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok());
    let (otel, tracing) = match endpoint {
        Some(endpoint) => {
            let (layer, tracing) = otlp_layer(&TraceExport {
                endpoint,
                sample_ratio: telemetry.sample_ratio.0,
                service_name: format!("ferrocast-{role}"),
                instance,
            })
            .context("telemetry.otlp_endpoint")?;
            (Some(layer), Some(tracing))
        }
        None => (None, None),
    };
    // One global filter: disabled callsites cost nothing, and the
    // exporter sees the spans the log sees.
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .try_init()
        .context("installing the log subscriber")?;
    Ok(tracing)
}

/// JSON lines with two fields of our own in front: the
/// process's `role` and, when the event happened inside a traced span,
/// its `trace_id` (the same id the trace back-end shows).
struct WithRoleAndTrace {
    json: Format<Json>,
    role: &'static str,
}

impl<S, N> FormatEvent<S, N> for WithRoleAndTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        let trace_id = ctx.lookup_current().and_then(|span| {
            let id = span.id();
            tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&id, dispatch)
            })
        });
        let mut front = format!("{{\"role\":\"{}\"", self.role);
        if let Some(cx) = trace_id {
            use opentelemetry::trace::TraceContextExt as _;
            let span = cx.span();
            let sc = span.span_context();
            if sc.is_valid() {
                let _ = write!(front, ",\"trace_id\":\"{}\"", sc.trace_id());
            }
        }
        match line.strip_prefix('{') {
            Some(rest) if rest.starts_with('}') => writer.write_str(&format!("{front}{rest}")),
            Some(rest) => writer.write_str(&format!("{front},{rest}")),
            None => writer.write_str(&line),
        }
    }
}
