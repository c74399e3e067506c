//! A span per segment of each rendition, a child of the span its first
//! picture came from (the transcoder's GOP, or the ingest's for the source
//! rendition), so that one trace follows a segment across processes.

use ferrocast_media::AccessUnit;
use ferrocast_telemetry::trace::SpanPerGop;
use tracing::info_span;

/// Follows the open segment of one rendition: a `package_segment` span
/// from the unit that opens a segment until it closes.
///
/// A segment opened by a unit without a trace context (tracing off
/// upstream) gets no span: the ingest decides whether a session is
/// traced.
#[derive(Debug, Default)]
pub struct SegmentTracer {
    spans: SpanPerGop,
    open: Option<u64>,
}

impl SegmentTracer {
    /// The open segment is now `msn` (`None`: none is open); `unit`, when
    /// given, is the unit just written, which opened it if it is new.
    pub fn follow(&mut self, stream: &str, msn: Option<u64>, unit: Option<&AccessUnit>) {
        if msn == self.open {
            return;
        }
        self.open = msn;
        match (msn, unit.and_then(|u| u.trace)) {
            (Some(msn), Some(parent)) => {
                let span = info_span!(parent: None, "package_segment", stream, msn);
                self.spans.start(span, Some(&parent));
            }
            _ => self.spans.end(),
        }
    }

    /// The open segment's span context, if it has a span.
    pub fn context(&self) -> Option<ferrocast_media::TraceContext> {
        self.spans.context()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use ferrocast_media::{Time90k, TraceContext, TrackId, TrackKind};
    use ferrocast_telemetry::trace::with_unexported_tracing;

    fn keyframe(trace: Option<TraceContext>) -> AccessUnit {
        AccessUnit {
            track: TrackId(0x100),
            kind: TrackKind::Video,
            pts: Time90k(0),
            dts: Time90k(0),
            keyframe: true,
            data: Bytes::from_static(&[0]),
            captured_unix_ms: None,
            trace,
        }
    }

    #[test]
    fn each_segment_is_a_span_under_the_unit_that_opened_it() {
        with_unexported_tracing(|| {
            let gop = TraceContext::new([3; 16], [4; 8], true).unwrap();
            let mut tracer = SegmentTracer::default();
            tracer.follow("cam/720p", Some(7), Some(&keyframe(Some(gop))));
            let first = tracer.context().unwrap();
            assert_eq!(first.trace_id, gop.trace_id);
            assert_ne!(first.span_id, gop.span_id);
            // Later units of the same segment change nothing.
            tracer.follow("cam/720p", Some(7), Some(&keyframe(None)));
            assert_eq!(tracer.context(), Some(first));
            // The next segment is a new span; a closed one has none.
            tracer.follow("cam/720p", Some(8), Some(&keyframe(Some(gop))));
            assert_ne!(tracer.context().unwrap().span_id, first.span_id);
            tracer.follow("cam/720p", None, None);
            assert_eq!(tracer.context(), None);
        });
    }

    #[test]
    fn a_segment_opened_without_a_context_has_no_span() {
        with_unexported_tracing(|| {
            let mut tracer = SegmentTracer::default();
            tracer.follow("cam", Some(1), Some(&keyframe(None)));
            assert_eq!(tracer.context(), None);
        });
    }
}
