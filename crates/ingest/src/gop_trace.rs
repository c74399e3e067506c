//! A span per GOP of a publisher's session, its context stamped on the
//! GOP's units so that the transcoder's and packager's spans for the same
//! media join the session's trace.

use ferrocast_media::{AccessUnit, TrackKind};
use ferrocast_telemetry::trace::SpanPerGop;
use tracing::{Span, info_span};

/// Opens a `gop` span at each video keyframe, under the session's span,
/// and stamps every unit leaving for the bus with the open one's context.
///
/// Units before the first keyframe (and every unit of an audio-only
/// stream, which has no GOPs) carry the context of no GOP: they are
/// stamped with the session's own context, so they still join its trace.
/// With tracing off every context is `None` and this costs a branch.
#[derive(Debug)]
pub struct GopTracer {
    session: Span,
    gops: SpanPerGop,
    count: u64,
}

impl Default for GopTracer {
    fn default() -> Self {
        GopTracer::new(Span::none())
    }
}

impl GopTracer {
    /// GOP spans under `session` (the publisher's span, a trace root).
    pub fn new(session: Span) -> Self {
        GopTracer {
            session,
            gops: SpanPerGop::default(),
            count: 0,
        }
    }

    /// Stamps `unit` with its GOP's context, opening a GOP at a video
    /// keyframe.
    pub fn stamp(&mut self, unit: &mut AccessUnit) {
        if unit.kind == TrackKind::Video && unit.keyframe {
            self.count += 1;
            let span =
                info_span!(parent: &self.session, "ingest_gop", gop = self.count, pts = unit.pts.0);
            self.gops.start(span, None);
        }
        unit.trace = self
            .gops
            .context()
            .or_else(|| ferrocast_telemetry::trace::context_of(&self.session));
    }

    /// Ends the open GOP's span (the session ended or broke).
    pub fn end(&mut self) {
        self.gops.end();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use ferrocast_media::{Time90k, TrackId};

    fn unit(kind: TrackKind, keyframe: bool, pts: i64) -> AccessUnit {
        AccessUnit {
            track: TrackId(if kind == TrackKind::Video {
                0x100
            } else {
                0x101
            }),
            kind,
            pts: Time90k(pts),
            dts: Time90k(pts),
            keyframe,
            data: Bytes::from_static(&[0]),
            captured_unix_ms: None,
            trace: None,
        }
    }

    #[test]
    fn each_video_keyframe_opens_a_gop_of_the_sessions_trace() {
        ferrocast_telemetry::trace::with_unexported_tracing(|| {
            let session = info_span!("publisher");
            let session_cx = ferrocast_telemetry::trace::context_of(&session).unwrap();
            let mut tracer = GopTracer::new(session);
            let mut units = [
                unit(TrackKind::Audio, true, 0),
                unit(TrackKind::Video, true, 0),
                unit(TrackKind::Audio, true, 1800),
                unit(TrackKind::Video, false, 3600),
                unit(TrackKind::Video, true, 180_000),
                unit(TrackKind::Audio, true, 180_000),
            ];
            for u in &mut units {
                tracer.stamp(u);
            }
            let cx: Vec<_> = units.iter().map(|u| u.trace.unwrap()).collect();
            assert!(cx.iter().all(|c| c.trace_id == session_cx.trace_id));
            // Before the first keyframe: the session itself.
            assert_eq!(cx[0], session_cx);
            // The first GOP, then the second.
            assert_ne!(cx[1].span_id, session_cx.span_id);
            assert_eq!(cx[1], cx[2]);
            assert_eq!(cx[1], cx[3]);
            assert_ne!(cx[4].span_id, cx[1].span_id);
            assert_eq!(cx[4], cx[5]);
        });
    }

    #[test]
    fn with_tracing_off_no_unit_carries_a_context() {
        let mut tracer = GopTracer::default();
        let mut u = unit(TrackKind::Video, true, 0);
        tracer.stamp(&mut u);
        assert_eq!(u.trace, None);
    }
}
