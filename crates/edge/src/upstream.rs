//! What the edge fetches from: the packager origin, directly or through
//! layers ([`crate::coalesce::Coalescing`] over
//! [`crate::http_upstream::HttpUpstream`]).
//!
//! A request is a path and a query (the viewer's `token` already taken
//! off); a response is a status, headers and the whole body
//! ([`Upstream::fetch`]) or a body that arrives chunk by chunk
//! ([`Upstream::fetch_stream`]: a part the origin is still writing reaches
//! the viewer as it is written). The trait is object-safe and its futures
//! are `'static`, so an implementation can be shared behind an `Arc` and its
//! fetches spawned.

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

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

/// A body arriving chunk by chunk; an `Err` ends it (the object is
/// incomplete), the end of the stream completes it.
pub type BodyStream = BoxStream<'static, Result<bytes::Bytes, UpstreamError>>;

/// The origin's answer with its body still arriving
/// ([`Upstream::fetch_stream`]).
pub struct StreamingResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers, as in [`UpstreamResponse::headers`].
    pub headers: Vec<(String, String)>,
    /// The body, in the chunks the origin wrote.
    pub body: BodyStream,
}

impl std::fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl From<UpstreamResponse> for StreamingResponse {
    /// A whole body as a stream of one chunk (none when it is empty).
    fn from(response: UpstreamResponse) -> Self {
        let body = response.body;
        let chunks = (!body.is_empty()).then_some(Ok(body));
        StreamingResponse {
            status: response.status,
            headers: response.headers,
            body: futures::stream::iter(chunks).boxed(),
        }
    }
}

/// A source of playlists, parts, segments and init segments.
pub trait Upstream: Send + Sync + 'static {
    /// Fetch one object.
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>>;

    /// Fetch one object, answering as soon as the head is there and
    /// passing the body on chunk by chunk as it arrives. The default waits
    /// for [`Upstream::fetch`]'s whole body and gives it as one chunk.
    fn fetch_stream(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
        self.fetch(req)
            .map(|outcome| outcome.map(StreamingResponse::from))
            .boxed()
    }
}
