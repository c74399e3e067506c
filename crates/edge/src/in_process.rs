//! [`InProcessUpstream`]: the origin's axum router called in this process,
//! with no socket between the edge and the packager (`ferrocast up`).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures::FutureExt;
use futures::future::BoxFuture;
use tower::ServiceExt;

use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};

/// Largest body taken from the origin: far above any part, segment or
/// playlist the packager makes.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// An [`Upstream`] that calls an [`axum::Router`] (the origin's
/// `ferrocast_packager::http::router`) with `tower::ServiceExt::oneshot`
/// and collects the whole body.
///
/// A preload-hinted part that the origin streams while it is written is
/// therefore answered once it is complete: this increment of the edge does
/// not stream parts chunk by chunk.
#[derive(Clone)]
pub struct InProcessUpstream {
    router: Router,
    timeout: Duration,
}

impl std::fmt::Debug for InProcessUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessUpstream")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl InProcessUpstream {
    /// Wraps `router`. A fetch that takes longer than `timeout` (head and
    /// body; give blocking playlist requests the origin's hold time and a
    /// margin) fails with [`UpstreamError::Timeout`].
    pub fn new(router: Router, timeout: Duration) -> Self {
        InProcessUpstream { router, timeout }
    }
}

impl Upstream for InProcessUpstream {
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let router = self.router.clone();
        let timeout = self.timeout;
        async move {
            let uri = match &req.query {
                Some(query) => format!("{}?{query}", req.path),
                None => req.path.clone(),
            };
            // No Accept-Encoding: the origin answers uncompressed, which
            // the rewriter needs.
            let request = http::Request::get(uri)
                .body(Body::empty())
                .map_err(|e| UpstreamError::Unreachable(format!("bad request URI: {e}")))?;
            let call = async {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
                    .await
                    .map_err(|e| UpstreamError::Unreachable(format!("body: {e}")))?;
                let headers = parts
                    .headers
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect();
                Ok(UpstreamResponse {
                    status: parts.status.as_u16(),
                    headers,
                    body,
                })
            };
            tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| UpstreamError::Timeout)?
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::routing::get;

    fn router() -> Router {
        Router::new()
            .route(
                "/live/{name}/{file}",
                get(
                    |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                        (
                            [("cache-control", "no-cache")],
                            format!("query={}", q.unwrap_or_default()),
                        )
                    },
                ),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
    }

    #[tokio::test]
    async fn calls_the_router_and_collects_the_body() {
        let upstream = InProcessUpstream::new(router(), Duration::from_secs(5));
        let response = upstream
            .fetch(UpstreamRequest {
                path: "/live/cam/stream.m3u8".into(),
                query: Some("_HLS_msn=3".into()),
            })
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"query=_HLS_msn=3");
        assert!(
            response
                .headers
                .iter()
                .any(|(n, v)| n == "cache-control" && v == "no-cache")
        );
        let missing = upstream
            .fetch(UpstreamRequest {
                path: "/nothing".into(),
                query: None,
            })
            .await
            .unwrap();
        assert_eq!(missing.status, 404);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_origin_times_out() {
        let upstream = InProcessUpstream::new(router(), Duration::from_secs(2));
        let result = upstream
            .fetch(UpstreamRequest {
                path: "/slow".into(),
                query: None,
            })
            .await;
        assert_eq!(result.unwrap_err(), UpstreamError::Timeout);
    }
}
