//! hyper's server builder with the limits applied.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::ConnectionLimits;

/// An HTTP/1.1 + HTTP/2 connection builder with `limits` applied: the
/// header-read timeout (it needs a timer: without one hyper silently has no
/// header timeout, the slowloris hole), and the HTTP/2 concurrent stream
/// cap (RFC 9113 §5.1.2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
pub fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection);
    builder
}
