//! What the edge fetches from: the packager origin, directly or through
//! layers ([`crate::coalesce::Coalescing`] over
//! [`crate::http_upstream::HttpUpstream`]).
//!
//! A request is a path and a query (the viewer's `token` already taken
//! off); a response is a status, headers and the whole body. The trait is
//! object-safe and its futures are `'static`, so an implementation can be
//! shared behind an `Arc` and its fetches spawned.

/// One request to the origin.
///
/// Equal requests ask for the same object: the type is a cache and
/// coalescing key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamRequest {
    /// Absolute path, like `/live/cam/720p/part12.3.m4s`.
    pub path: String,
    /// The query without `token` (and without the leading `?`), if any.
    pub query: Option<String>,
}

/// The origin's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (names as the origin sent them, lower-case over
    /// HTTP/2 and in practice over HTTP/1.1 too).
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: bytes::Bytes,
}

/// Why no response came back from the origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Connection refused or reset, a broken body, a body over the size
    /// limit: the origin gave no usable answer.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No answer within the request's time limit.
    #[error("upstream timed out")]
    Timeout,
    /// The origin's circuit breaker is open: not even tried.
    #[error("circuit open for {0}")]
    CircuitOpen(String),
}

/// A source of playlists, parts, segments and init segments.
pub trait Upstream: Send + Sync + 'static {
    /// Fetch one object.
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> futures::future::BoxFuture<'static, Result<UpstreamResponse, UpstreamError>>;
}
