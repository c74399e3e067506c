//! Several packager origins, each stream routed to the one that packages
//! it: packagers shard streams, and the edge asks an [`OriginResolver`]
//! (in a cluster, the registry's package leases) which origin holds a
//! stream.
//!
//! Each origin has its own [`HttpUpstream`], so its own connection pool
//! and circuit breaker: an origin that fails opens only its own breaker,
//! and a stalled stream (requests held until they time out) opens none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::http_upstream::{HttpUpstream, HttpUpstreamConfig, HttpUpstreamStats};
use crate::upstream::{
    StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};

/// Which origin serves a stream.
pub trait OriginResolver: Send + Sync + 'static {
    /// The base URL (`http://HOST:PORT`) of the origin that packages
    /// `stream` now, `None` if none does.
    fn origin_of(&self, stream: &str) -> BoxFuture<'static, Option<String>>;
}

/// An [`Upstream`] over many origins, routed per stream; see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct RoutedUpstream {
    resolver: Arc<dyn OriginResolver>,
    template: HttpUpstreamConfig,
    origins: Arc<Mutex<HashMap<String, HttpUpstream>>>,
}

impl std::fmt::Debug for RoutedUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutedUpstream")
            .field("origins", &self.stats().len())
            .finish_non_exhaustive()
    }
}

/// The stream a request is for: `NAME` of `/live/NAME/...`.
fn stream_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/live/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

fn not_packaged() -> UpstreamResponse {
    UpstreamResponse {
        status: 404,
        headers: vec![("content-type".to_owned(), "text/plain".to_owned())],
        body: bytes::Bytes::from_static(b"no packager holds this stream\n"),
    }
}

impl RoutedUpstream {
    /// Route through `resolver`; each origin's client is made from
    /// `template` (its `base_url` is replaced by the origin's).
    pub fn new(resolver: Arc<dyn OriginResolver>, template: HttpUpstreamConfig) -> Self {
        RoutedUpstream {
            resolver,
            template,
            origins: Arc::default(),
        }
    }

    /// Each origin used so far, with its client's counters.
    pub fn stats(&self) -> Vec<(String, HttpUpstreamStats)> {
        let origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(String, HttpUpstreamStats)> = origins
            .values()
            .map(|u| (u.origin().to_owned(), u.stats()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The client of the origin that holds the request's stream.
    async fn route(&self, req: &UpstreamRequest) -> Result<Option<HttpUpstream>, UpstreamError> {
        let Some(stream) = stream_of(&req.path) else {
            return Ok(None);
        };
        let Some(base) = self.resolver.origin_of(stream).await else {
            return Ok(None);
        };
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(upstream) = origins.get(&base) {
            return Ok(Some(upstream.clone()));
        }
        let config = HttpUpstreamConfig {
            base_url: base.clone(),
            ..self.template.clone()
        };
        let upstream = HttpUpstream::new(config)
            .map_err(|e| UpstreamError::Unreachable(format!("origin {base}: {e}")))?;
        origins.insert(base, upstream.clone());
        Ok(Some(upstream))
    }
}

impl Upstream for RoutedUpstream {
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let this = self.clone();
        async move {
            match this.route(&req).await? {
                Some(upstream) => upstream.fetch(req).await,
                None => Ok(not_packaged()),
            }
        }
        .boxed()
    }

    fn fetch_stream(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
        let this = self.clone();
        async move {
            match this.route(&req).await? {
                Some(upstream) => upstream.fetch_stream(req).await,
                None => Ok(StreamingResponse::from(not_packaged())),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::stream_of;

    #[test]
    fn requests_name_their_stream() {
        assert_eq!(stream_of("/live/cam/720p/stream.m3u8"), Some("cam"));
        assert_eq!(stream_of("/live/cam/index.m3u8"), Some("cam"));
        assert_eq!(stream_of("/live//x"), None);
        assert_eq!(stream_of("/metrics"), None);
    }
}
