//! The trace context a unit carries between processes: which span of which
//! trace it belongs to (the ingest GOP it came from, the transcoder GOP
//! that encoded it), so that every process's spans for the same media join
//! one trace. Plain bytes here, the W3C Trace Context fields; the
//! OpenTelemetry side lives in `ferrocast-telemetry`.

/// A span's place in a trace: W3C Trace Context `trace-id`, `parent-id`
/// and the sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace (never all zero).
    pub trace_id: [u8; 16],
    /// The span (never all zero).
    pub span_id: [u8; 8],
    /// Whether the trace is recorded.
    pub sampled: bool,
}

/// Bytes of [`TraceContext::to_bytes`].
pub const TRACE_CONTEXT_LEN: usize = 25;

impl TraceContext {
    /// A context, unless an id is all zero (invalid in W3C Trace Context).
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(TraceContext {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// Trace id, span id, flags (bit 0: sampled): the media bus's form.
    pub fn to_bytes(&self) -> [u8; TRACE_CONTEXT_LEN] {
        let mut out = [0; TRACE_CONTEXT_LEN];
        out[..16].copy_from_slice(&self.trace_id);
        out[16..24].copy_from_slice(&self.span_id);
        out[24] = u8::from(self.sampled);
        out
    }

    /// The inverse of [`to_bytes`](Self::to_bytes); `None` for anything
    /// else (wrong length, zero ids): a bad context from the network is
    /// dropped, never an error for the media it came with.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; TRACE_CONTEXT_LEN] = bytes.try_into().ok()?;
        let mut trace_id = [0; 16];
        trace_id.copy_from_slice(&bytes[..16]);
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&bytes[16..24]);
        TraceContext::new(trace_id, span_id, bytes[24] & 1 == 1)
    }

    /// The trace id in lowercase hex, as log collectors and tracing
    /// back-ends show it.
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bytes_round_trip_and_anything_else_is_none(
            trace_id in any::<[u8; 16]>(),
            span_id in any::<[u8; 8]>(),
            sampled in any::<bool>(),
            junk in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            match TraceContext::new(trace_id, span_id, sampled) {
                Some(cx) => prop_assert_eq!(TraceContext::from_bytes(&cx.to_bytes()), Some(cx)),
                None => prop_assert!(trace_id == [0; 16] || span_id == [0; 8]),
            }
            if junk.len() != TRACE_CONTEXT_LEN {
                prop_assert_eq!(TraceContext::from_bytes(&junk), None);
            }
        }
    }

    #[test]
    fn hex_is_lowercase_and_32_digits() {
        let cx = TraceContext::new([0xab; 16], [1; 8], true).unwrap_or_else(|| unreachable!());
        assert_eq!(cx.trace_id_hex(), "ab".repeat(16));
    }
}
