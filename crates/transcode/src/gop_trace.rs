//! Spans of the transcoder's output GOPs, each a child of the ingest GOP
//! its first picture came from, so that one trace follows a segment from
//! ingest through every rung to the packager.
//!
//! The ingest stamps each source unit with its GOP span's context
//! ([`AccessUnit::trace`]); [`SourceGops`] remembers the recent source
//! keyframes' contexts by time, and a [`RungTracer`] per rung opens a
//! `transcode_gop` span at each output keyframe under the source GOP that
//! covers it, then stamps the rung's units with it. Output timestamps are
//! the source's, so the lookup is by pts. A source without contexts
//! (tracing off at the ingest) gets no spans here either: the ingest
//! decides whether a session is traced and sampled, the transcoder
//! follows.

use std::collections::VecDeque;

use ferrocast_media::{AccessUnit, Time90k, TraceContext, TrackKind};
use ferrocast_telemetry::trace::SpanPerGop;
use tracing::info_span;

/// How many source GOPs are remembered: far more than any rung lags
/// behind its source (a rung that lags seconds is shed).
const REMEMBERED_GOPS: usize = 32;

/// The trace contexts of the newest source keyframes, by pts.
#[derive(Debug, Default)]
pub(crate) struct SourceGops {
    recent: VecDeque<(Time90k, TraceContext)>,
}

impl SourceGops {
    /// Remembers `unit`'s context if it starts a source GOP.
    pub(crate) fn on_source(&mut self, unit: &AccessUnit) {
        if unit.kind != TrackKind::Video || !unit.keyframe {
            return;
        }
        if let Some(cx) = unit.trace {
            if self.recent.len() == REMEMBERED_GOPS {
                self.recent.pop_front();
            }
            self.recent.push_back((unit.pts, cx));
        }
    }

    /// The context of the source GOP that covers `pts`: the newest source
    /// keyframe at or before it.
    pub(crate) fn covering(&self, pts: Time90k) -> Option<TraceContext> {
        self.recent
            .iter()
            .rev()
            .find(|(at, _)| *at <= pts)
            .map(|(_, cx)| *cx)
    }
}

/// The open output GOP span of one rung.
#[derive(Debug, Default)]
pub(crate) struct RungTracer {
    gops: SpanPerGop,
}

impl RungTracer {
    /// Stamps a video unit of rung stream `stream` with its output GOP's
    /// context, opening a span at a keyframe.
    pub(crate) fn stamp(&mut self, stream: &str, unit: &mut AccessUnit, source: &SourceGops) {
        if unit.keyframe {
            match source.covering(unit.pts) {
                Some(parent) => {
                    let span = info_span!(parent: None, "transcode_gop", stream, pts = unit.pts.0);
                    self.gops.start(span, Some(&parent));
                }
                None => self.gops.end(),
            }
        }
        unit.trace = self.gops.context();
    }

    /// The open GOP's span, if it has one.
    pub(crate) fn span(&self) -> Option<&tracing::Span> {
        self.gops.span()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use bytes::Bytes;
    use ferrocast_media::TrackId;
    use ferrocast_telemetry::trace::with_unexported_tracing;

    fn video(pts: i64, keyframe: bool, trace: Option<TraceContext>) -> AccessUnit {
        AccessUnit {
            track: TrackId(0x100),
            kind: TrackKind::Video,
            pts: Time90k(pts),
            dts: Time90k(pts),
            keyframe,
            data: Bytes::from_static(&[0]),
            captured_unix_ms: None,
            trace,
        }
    }

    fn cx(trace: u8, span: u8) -> TraceContext {
        TraceContext::new([trace; 16], [span; 8], true).unwrap()
    }

    #[test]
    fn an_output_gop_is_a_child_of_the_source_gop_that_covers_it() {
        with_unexported_tracing(|| {
            let mut source = SourceGops::default();
            source.on_source(&video(0, true, Some(cx(1, 1))));
            source.on_source(&video(3600, false, Some(cx(1, 1))));
            source.on_source(&video(180_000, true, Some(cx(1, 2))));
            assert_eq!(source.covering(Time90k(-1)), None);
            assert_eq!(source.covering(Time90k(179_999)), Some(cx(1, 1)));
            assert_eq!(source.covering(Time90k(180_000)), Some(cx(1, 2)));

            let mut rung = RungTracer::default();
            let mut key = video(90_000, true, None);
            rung.stamp("cam/720p", &mut key, &source);
            let gop = key.trace.unwrap();
            assert_eq!(gop.trace_id, [1; 16]);
            assert_ne!(gop.span_id, [1; 8]);
            let mut next = video(93_600, false, None);
            rung.stamp("cam/720p", &mut next, &source);
            assert_eq!(next.trace, Some(gop));
            let mut later = video(180_000, true, None);
            rung.stamp("cam/720p", &mut later, &source);
            assert_ne!(later.trace.unwrap().span_id, gop.span_id);
        });
    }

    #[test]
    fn a_source_without_contexts_gets_no_spans() {
        with_unexported_tracing(|| {
            let mut source = SourceGops::default();
            source.on_source(&video(0, true, None));
            let mut rung = RungTracer::default();
            let mut key = video(0, true, None);
            rung.stamp("cam/720p", &mut key, &source);
            assert_eq!(key.trace, None);
        });
    }

    #[test]
    fn only_the_newest_source_gops_are_remembered() {
        let mut source = SourceGops::default();
        for i in 0..(REMEMBERED_GOPS as i64 + 8) {
            source.on_source(&video(i * 90_000, true, Some(cx(1, i as u8 + 1))));
        }
        assert_eq!(source.recent.len(), REMEMBERED_GOPS);
        assert_eq!(source.covering(Time90k(0)), None);
    }
}
