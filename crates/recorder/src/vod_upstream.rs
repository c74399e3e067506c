//! Recordings as an upstream of the edge: `/vod/STREAM/ID/…` read from the
//! object store, so closed recordings play through the edge like live
//! streams (viewer JWT, tokens on every URI), their segments cached by the
//! edge's coalescing layer (they are immutable).
//!
//! Only a recording's playlists, segments and init segments are served;
//! its summary, tracks files and open markers are not reachable, and a
//! path is mapped to a key only after every part of it has been parsed.

use std::sync::Arc;

use bytes::Bytes;
use ferrocast_edge::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};
use ferrocast_hls::RenditionName;
use ferrocast_media::StreamName;
use ferrocast_storage::{ObjectStore, StoreError};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::layout::{Layout, PLAYLIST_NAME, RecordingId, SegmentName, parse_generation_file};

/// Where the edge's VOD paths start.
pub const VOD_PREFIX: &str = "/vod/";

/// Recordings in `store` under `layout`, as an edge upstream.
#[derive(Clone)]
pub struct StoreUpstream {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
}

impl std::fmt::Debug for StoreUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUpstream")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl StoreUpstream {
    /// Recordings of `store` laid out by `layout`.
    pub fn new(store: Arc<dyn ObjectStore>, layout: Layout) -> Self {
        StoreUpstream { store, layout }
    }

    /// The object key of a VOD path, `None` for a path that names nothing
    /// servable.
    pub fn key_of(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix(VOD_PREFIX)?;
        let mut parts = rest.split('/');
        let stream = StreamName::new(parts.next()?).ok()?;
        let id = RecordingId::parse(parts.next()?)?;
        let third = parts.next()?;
        let fourth = parts.next();
        if parts.next().is_some() {
            return None;
        }
        match fourth {
            None => (third == PLAYLIST_NAME)
                .then(|| format!("{}{PLAYLIST_NAME}", self.layout.root(&stream, &id))),
            Some(file) => {
                let rendition = RenditionName::new(third).ok()?;
                let servable = file == PLAYLIST_NAME
                    || SegmentName::parse(file).is_some()
                    || parse_generation_file(file, "init", ".mp4").is_some();
                servable
                    .then(|| format!("{}{file}", self.layout.rendition(&stream, &id, &rendition)))
            }
        }
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: Bytes) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body,
    }
}

impl Upstream for StoreUpstream {
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let key = self.key_of(&req.path);
        let store = self.store.clone();
        async move {
            let Some(key) = key else {
                return Ok(answer(
                    404,
                    &[],
                    Bytes::from_static(b"no such recording file"),
                ));
            };
            match store.get(&key).await {
                Ok(Some(body)) => {
                    let headers: &[(&str, &str)] = if key.ends_with(".m3u8") {
                        // Rewritten (tokens) by the edge; briefly cached there.
                        &[
                            ("content-type", "application/vnd.apple.mpegurl"),
                            ("cache-control", "max-age=1"),
                        ]
                    } else {
                        &[("cache-control", "public, max-age=31536000, immutable")]
                    };
                    Ok(answer(200, headers, body))
                }
                Ok(None) => Ok(answer(
                    404,
                    &[],
                    Bytes::from_static(b"no such recording file"),
                )),
                Err(StoreError::Refused(e)) => {
                    tracing::warn!(key, error = %e, "the object store refused a recording read");
                    Ok(answer(
                        502,
                        &[],
                        Bytes::from_static(b"recording store refused the read"),
                    ))
                }
                Err(e) => Err(UpstreamError::Unreachable(e.to_string())),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_storage::MemoryStore;

    #[tokio::test]
    async fn paths_map_to_servable_keys_only() {
        let store = MemoryStore::default();
        let upstream = StoreUpstream::new(Arc::new(store.clone()), Layout::new("rec"));
        let id = "20261206T023743Z-1a2b3c4d";
        let segment = "s0000000001-e0-g0-d180000-b4-t1.m4s";
        for (path, key) in [
            (
                format!("/vod/cam/{id}/index.m3u8"),
                format!("rec/cam/{id}/index.m3u8"),
            ),
            (
                format!("/vod/cam/{id}/720p/index.m3u8"),
                format!("rec/cam/{id}/720p/index.m3u8"),
            ),
            (
                format!("/vod/cam/{id}/720p/init-g0-e3.mp4"),
                format!("rec/cam/{id}/720p/init-g0-e3.mp4"),
            ),
            (
                format!("/vod/cam/{id}/720p/{segment}"),
                format!("rec/cam/{id}/720p/{segment}"),
            ),
        ] {
            assert_eq!(upstream.key_of(&path), Some(key), "{path}");
        }
        for path in [
            format!("/vod/cam/{id}/recording.json"),
            format!("/vod/cam/{id}/720p/tracks-g0-e0.json"),
            format!("/vod/.open/cam/{id}"),
            format!("/vod/cam/{id}/720p/seg1.m4s"),
            format!("/vod/cam/{id}/../index.m3u8"),
            format!("/live/cam/{id}/index.m3u8"),
        ] {
            assert_eq!(upstream.key_of(&path), None, "{path}");
        }
        store
            .put(
                &format!("rec/cam/{id}/720p/{segment}"),
                Bytes::from_static(b"moof"),
            )
            .await
            .unwrap();
        let fetch = |path: String| upstream.fetch(UpstreamRequest { path, query: None });
        let found = fetch(format!("/vod/cam/{id}/720p/{segment}"))
            .await
            .unwrap();
        assert_eq!((found.status, &found.body[..]), (200, &b"moof"[..]));
        assert!(found.headers.iter().any(|(_, v)| v.contains("immutable")));
        let missing = fetch(format!("/vod/cam/{id}/360p/{segment}"))
            .await
            .unwrap();
        assert_eq!(missing.status, 404);
        store.set_available(false);
        let away = fetch(format!("/vod/cam/{id}/720p/{segment}")).await;
        assert!(matches!(away, Err(UpstreamError::Unreachable(_))));
    }
}
