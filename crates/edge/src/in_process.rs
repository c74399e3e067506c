//! [`InProcessUpstream`]: the origin's axum router called in this process,
//! with no socket between the edge and the packager (`ferrocast up`).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tower::ServiceExt;

use crate::upstream::{
    StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};

/// Largest body taken from the origin: far above any part, segment or
/// playlist the packager makes.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// An [`Upstream`] that calls an [`axum::Router`] (the origin's
/// `ferrocast_packager::http::router`) with `tower::ServiceExt::oneshot`.
///
/// [`Upstream::fetch`] collects the whole body; [`Upstream::fetch_stream`]
/// passes on each chunk the router's body yields, so a preload-hinted part
/// that the origin streams while it is written goes on as it is written.
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

/// The router's request for `req`.
fn request(req: &UpstreamRequest) -> Result<http::Request<Body>, UpstreamError> {
    let uri = match &req.query {
        Some(query) => format!("{}?{query}", req.path),
        None => req.path.clone(),
    };
    // No Accept-Encoding: the origin answers uncompressed, which the
    // rewriter needs.
    http::Request::get(uri)
        .body(Body::empty())
        .map_err(|e| UpstreamError::Unreachable(format!("bad request URI: {e}")))
}

/// The origin's headers, less those of its CORS layer (`vary`,
/// `access-control-*`): the edge answers CORS itself and never passes
/// them on, and a cached response is copied on every hit.
fn headers_of(parts: &http::response::Parts) -> Vec<(String, String)> {
    parts
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name != "vary" && !name.starts_with("access-control-")
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

impl Upstream for InProcessUpstream {
    fn fetch_stream(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<StreamingResponse, UpstreamError>> {
        let router = self.router.clone();
        let deadline = tokio::time::Instant::now() + self.timeout;
        async move {
            let request = request(&req)?;
            let response = match tokio::time::timeout_at(deadline, router.oneshot(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => return Err(UpstreamError::Timeout),
            };
            let (parts, body) = response.into_parts();
            // Head and body share the one deadline; a body over the size
            // limit ends in an error, like `fetch`.
            let chunks = futures::stream::unfold(
                (body.into_data_stream(), 0usize, false),
                move |(mut body, mut taken, done)| async move {
                    if done {
                        return None;
                    }
                    let next = match tokio::time::timeout_at(deadline, body.next()).await {
                        Err(_) => Err(UpstreamError::Timeout),
                        Ok(None) => return None,
                        Ok(Some(Err(e))) => Err(UpstreamError::Unreachable(format!("body: {e}"))),
                        Ok(Some(Ok(chunk))) => {
                            taken += chunk.len();
                            if taken > MAX_BODY_BYTES {
                                Err(UpstreamError::Unreachable(
                                    "body: length limit exceeded".into(),
                                ))
                            } else {
                                Ok(chunk)
                            }
                        }
                    };
                    let failed = next.is_err();
                    Some((next, (body, taken, failed)))
                },
            );
            Ok(StreamingResponse {
                status: parts.status.as_u16(),
                headers: headers_of(&parts),
                body: chunks.boxed(),
            })
        }
        .boxed()
    }

    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let router = self.router.clone();
        let timeout = self.timeout;
        async move {
            let request = request(&req)?;
            let call = async {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
                    .await
                    .map_err(|e| UpstreamError::Unreachable(format!("body: {e}")))?;
                Ok(UpstreamResponse {
                    status: parts.status.as_u16(),
                    headers: headers_of(&parts),
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
                            [
                                ("cache-control", "no-cache"),
                                ("vary", "origin"),
                                ("access-control-allow-origin", "*"),
                            ],
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
        // The origin's CORS headers stay behind (the edge sets its own).
        assert!(
            response
                .headers
                .iter()
                .all(|(n, _)| n != "vary" && !n.starts_with("access-control-")),
            "{:?}",
            response.headers
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

    #[tokio::test]
    async fn streams_each_chunk_as_the_router_writes_it() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(Some(rx)));
        let router = Router::new().route(
            "/live/{name}/{file}",
            get(move || {
                let rx = rx.lock().unwrap().take().unwrap();
                async move {
                    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|chunk| (chunk, rx))
                    }))
                }
            }),
        );
        let upstream = InProcessUpstream::new(router, Duration::from_secs(5));
        let mut response = upstream
            .fetch_stream(UpstreamRequest {
                path: "/live/cam/part3.1.m4s".into(),
                query: None,
            })
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        // The first chunk arrives while the origin has not finished.
        tx.send(Ok(bytes::Bytes::from_static(b"moof1")))
            .await
            .unwrap();
        assert_eq!(&response.body.next().await.unwrap().unwrap()[..], b"moof1");
        tx.send(Ok(bytes::Bytes::from_static(b"moof2")))
            .await
            .unwrap();
        assert_eq!(&response.body.next().await.unwrap().unwrap()[..], b"moof2");
        drop(tx);
        assert!(response.body.next().await.is_none());
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
