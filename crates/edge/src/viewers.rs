//! Concurrent viewers per stream, counted from edge-token sessions.
//!
//! **How a viewer is counted.** A Multivariant Playlist request whose JWT
//! verifies starts a session: `Viewers::new_session` draws 16 random
//! bytes (base64url, 22 characters) that are signed into the session token
//! ([`crate::EdgeTokens::sign_session`]) and carried over into every media
//! token. The id is random rather than derived from the JWT: nothing about
//! the viewer reaches a URL, and two players of one viewer are two
//! viewers. Every later request whose token verifies calls
//! `Viewers::seen`; a session counts as a concurrent viewer of its stream
//! while it was seen within `window_secs`. A player that fetches the
//! Multivariant Playlist again starts a new session, and the old one is
//! counted until its window ends.
//!
//! **What it is not.** No audience analytics: nothing is stored but a
//! fingerprint and a time per session, in memory, capped
//! ([`ViewerTracker`]). Past a cap, new sessions are served and not counted.
//!
//! **Across edges.** With `redis_url`, a background task publishes this
//! edge's counts every `interval_ms` and reads the totals of all edges (the
//! layout is in `cluster`'s docs). The request path never waits on Redis:
//! it touches only the in-memory tracker, and an unreachable Redis costs
//! the cluster totals, counted in `ferrocast_edge_viewer_sync_errors_total`.
//!
//! Metrics: `ferrocast_edge_viewers{stream}` (this edge),
//! `ferrocast_edge_viewers_cluster{stream}` (all edges),
//! `ferrocast_edge_viewer_sync_errors_total`,
//! `ferrocast_edge_viewer_requests_untracked_total`.

#[cfg(feature = "server")]
mod cluster;
mod config;
mod tracker;

pub use config::{
    DEFAULT_INTERVAL_MS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSIONS_PER_STREAM,
    DEFAULT_MAX_STREAMS, DEFAULT_REDIS_KEY_PREFIX, DEFAULT_REDIS_TIMEOUT_MS, DEFAULT_WINDOW_SECS,
    MAX_ID_LEN, ViewersConfig, ViewersConfigError, redact_url,
};
pub use tracker::{Cap, Seen, TrackerLimits, ViewerCounts, ViewerTracker};

#[cfg(feature = "server")]
pub use cluster::{SyncError, ViewerTotals};
#[cfg(feature = "server")]
pub use runtime::Viewers;

#[cfg(feature = "server")]
mod runtime {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use prometheus::IntGaugeVec;
    use tokio::task::JoinHandle;
    use tokio::time::MissedTickBehavior;
    use tracing::{debug, info, warn};

    use super::cluster::Cluster;
    use super::{
        Seen, TrackerLimits, ViewerCounts, ViewerTracker, ViewersConfig, ViewersConfigError,
        redact_url,
    };
    use crate::edge_token::SessionId;
    use crate::server::{Clock, EdgeMetrics};

    /// Random bytes in a session id (22 base64url characters).
    const SESSION_BYTES: usize = 16;

    /// The edge's viewer counting: the tracker the request path feeds, the
    /// gauges, and the settings of the periodic sweep and Redis sync
    /// ([`Viewers::start`]). Built by the request handler from
    /// `[edge.viewers]`.
    pub struct Viewers {
        /// `None` when counting is off.
        tracker: Option<ViewerTracker>,
        metrics: EdgeMetrics,
        clock: Clock,
        interval: Duration,
        redis: Option<RedisTarget>,
        edge_id: String,
        /// Streams with a series in each gauge, to drop the ones that go.
        local_series: Mutex<BTreeSet<String>>,
        cluster_series: Mutex<BTreeSet<String>>,
    }

    struct RedisTarget {
        client: redis::Client,
        /// For logs: the URL without its password.
        redacted_url: String,
        timeout: Duration,
        prefix: String,
        max_streams: usize,
    }

    impl std::fmt::Debug for Viewers {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Viewers")
                .field("enabled", &self.tracker.is_some())
                .field("edge_id", &self.edge_id)
                .field(
                    "redis",
                    &self.redis.as_ref().map(|r| r.redacted_url.as_str()),
                )
                .finish_non_exhaustive()
        }
    }

    impl Viewers {
        /// Builds the counting of `config` (checked first) reading the time
        /// from `clock`. Opens nothing: Redis is connected by
        /// [`Viewers::start`]'s task.
        pub fn new(
            config: &ViewersConfig,
            metrics: &EdgeMetrics,
            clock: Clock,
        ) -> Result<Self, ViewersConfigError> {
            config.validate()?;
            let redis = match (&config.redis_url, config.enabled) {
                (Some(url), true) => Some(RedisTarget {
                    client: redis::Client::open(url.expose())
                        .map_err(|_| ViewersConfigError::RedisUrl("the Redis client refuses it"))?,
                    redacted_url: redact_url(url.expose()),
                    timeout: Duration::from_millis(config.redis_timeout_ms),
                    prefix: config.redis_key_prefix.clone(),
                    max_streams: config.max_streams,
                }),
                _ => None,
            };
            let tracker = config.enabled.then(|| {
                ViewerTracker::new(TrackerLimits {
                    window_secs: config.window_secs,
                    max_sessions: config.max_sessions,
                    max_sessions_per_stream: config.max_sessions_per_stream,
                    max_streams: config.max_streams,
                })
            });
            Ok(Viewers {
                tracker,
                metrics: metrics.clone(),
                clock,
                interval: Duration::from_millis(config.interval_ms),
                redis,
                edge_id: config.edge_id.clone().unwrap_or_else(default_edge_id),
                local_series: Mutex::default(),
                cluster_series: Mutex::default(),
            })
        }

        /// A new random session id, or `None` when counting is off (the
        /// token then carries none).
        pub fn new_session(&self) -> Option<SessionId> {
            self.tracker.as_ref()?;
            let bytes: [u8; SESSION_BYTES] = rand::random();
            SessionId::new(URL_SAFE_NO_PAD.encode(bytes)).ok()
        }

        /// Marks a request of `session` (from a verified token) to `stream`
        /// at `now`. Tokens without a session are not counted.
        pub fn seen(&self, stream: &str, session: Option<&SessionId>, now: u64) {
            let (Some(tracker), Some(session)) = (&self.tracker, session) else {
                return;
            };
            if let Seen::Untracked(cap) = tracker.seen(stream, session.as_str(), now) {
                debug!(stream, ?cap, "viewer session not tracked: cap reached");
                self.metrics.viewer_requests_untracked.inc();
            }
        }

        /// The tracker, when counting is on.
        pub fn tracker(&self) -> Option<&ViewerTracker> {
            self.tracker.as_ref()
        }

        /// This edge's id in Redis.
        pub fn edge_id(&self) -> &str {
            &self.edge_id
        }

        /// Sweeps the tracker at the clock's `now` and sets
        /// `ferrocast_edge_viewers` from what is left; streams without
        /// viewers lose their series. What the periodic task does every
        /// interval before syncing.
        pub fn update(&self) -> ViewerCounts {
            let Some(tracker) = &self.tracker else {
                return ViewerCounts::new();
            };
            let counts = tracker.sweep((self.clock)());
            set_gauge(&self.metrics.viewers, &self.local_series, &counts);
            counts
        }

        /// Starts the periodic sweep (and, with `redis_url`, the sync);
        /// `None` when counting is off. Abort the task to stop it.
        pub fn start(self: &Arc<Self>) -> Option<JoinHandle<()>> {
            self.tracker.as_ref()?;
            Some(tokio::spawn(run(self.clone())))
        }

        fn set_cluster(&self, totals: &ViewerCounts) {
            set_gauge(&self.metrics.viewers_cluster, &self.cluster_series, totals);
        }
    }

    /// The sweep and sync loop: one tick per interval; a slow Redis delays
    /// the next tick rather than piling ticks up.
    async fn run(viewers: Arc<Viewers>) {
        let mut cluster = viewers.redis.as_ref().and_then(|target| {
            info!(
                edge_id = %viewers.edge_id,
                redis = %target.redacted_url,
                "edge viewer counts shared through Redis"
            );
            match Cluster::new(
                target.client.clone(),
                &target.prefix,
                &viewers.edge_id,
                viewers.interval,
                target.timeout,
                target.max_streams,
            ) {
                Ok(cluster) => Some(cluster),
                Err(e) => {
                    viewers.metrics.viewer_sync_errors.inc();
                    warn!(redis = %target.redacted_url, error = %e, "viewer counts stay local");
                    None
                }
            }
        });
        let mut failing = false;
        let mut ticks = tokio::time::interval(viewers.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let counts = viewers.update();
            let (Some(cluster), Some(target)) = (&mut cluster, &viewers.redis) else {
                continue;
            };
            match cluster.sync(&counts).await {
                Ok(totals) => {
                    if failing {
                        info!(
                            edge_id = %viewers.edge_id,
                            redis = %target.redacted_url,
                            "viewer count sync with Redis resumed"
                        );
                        failing = false;
                    }
                    viewers.set_cluster(&totals);
                }
                Err(e) => {
                    viewers.metrics.viewer_sync_errors.inc();
                    warn!(
                        edge_id = %viewers.edge_id,
                        redis = %target.redacted_url,
                        error = %e,
                        "viewer count sync with Redis failed"
                    );
                    failing = true;
                    // Stale totals would mislead: no series until Redis answers.
                    viewers.set_cluster(&ViewerCounts::new());
                }
            }
        }
    }

    /// Sets one series per stream in `counts` and removes the series of the
    /// streams that had one last time and are gone now.
    fn set_gauge(gauge: &IntGaugeVec, series: &Mutex<BTreeSet<String>>, counts: &ViewerCounts) {
        let mut series = series.lock().unwrap_or_else(PoisonError::into_inner);
        for gone in series.iter().filter(|s| !counts.contains_key(*s)) {
            let _ = gauge.remove_label_values(&[gone]);
        }
        for (stream, n) in counts {
            gauge
                .with_label_values(&[stream])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        *series = counts.keys().cloned().collect();
    }

    /// The host name (Linux: `/proc/sys/kernel/hostname`, else `$HOSTNAME`)
    /// and 6 random hex digits, so that two edges on one host, or one edge
    /// restarted, never share an id.
    fn default_edge_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .take(super::MAX_ID_LEN - 7)
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "edge".to_owned());
        let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
        format!("{host}-{suffix:06x}")
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]

        use std::sync::atomic::{AtomicU64, Ordering};

        use bytes::Bytes;
        use http::Request;

        use super::*;
        use crate::server::{Handler, Protocol};
        use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};
        use crate::{EdgeConfig, EdgeTokens};
        use futures::FutureExt;
        use futures::future::BoxFuture;

        const NOW: u64 = 1_750_000_000;
        const HS: &str = "viewers-test-hs256-secret-viewers-test";

        /// A multivariant, a media playlist and a part, whatever the path's
        /// stream.
        struct Origin;

        impl Upstream for Origin {
            fn fetch(
                &self,
                req: UpstreamRequest,
            ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
                let body = if req.path.ends_with("index.m3u8") {
                    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nstream.m3u8\n"
                } else if req.path.ends_with("stream.m3u8") {
                    "#EXTM3U\n#EXT-X-PART:DURATION=0.2,URI=\"part1.0.m4s\"\n"
                } else {
                    "PART"
                };
                let response = UpstreamResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: Bytes::from_static(body.as_bytes()),
                };
                async move { Ok(response) }.boxed()
            }
        }

        fn config(viewers: &str) -> EdgeConfig {
            toml::from_str(&format!(
                r#"
                [jwt]
                audience = "a"
                [[jwt.keys]]
                kid = "k"
                algorithm = "HS256"
                secret = "{HS}"
                [token]
                keys = [{{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }}]
                [viewers]
                {viewers}
                "#
            ))
            .unwrap()
        }

        fn jwt(sub: &str) -> String {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some("k".into());
            jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": sub, "aud": "a", "exp": NOW + 3600, "streams": ["*"]}),
                &jsonwebtoken::EncodingKey::from_secret(HS.as_bytes()),
            )
            .unwrap()
        }

        async fn get(handler: &Handler, uri: &str) -> (u16, String) {
            let response = handler
                .handle(Protocol::Http1, Request::get(uri).body(()).unwrap())
                .await;
            let status = response.status().as_u16();
            (
                status,
                String::from_utf8(response.into_body().to_vec()).unwrap(),
            )
        }

        /// The session token on the multivariant's one URI.
        async fn login(handler: &Handler, stream: &str, sub: &str) -> String {
            let (status, body) = get(
                handler,
                &format!("/live/{stream}/index.m3u8?token={}", jwt(sub)),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body.lines()
                .nth(2)
                .unwrap()
                .strip_prefix("stream.m3u8?token=")
                .unwrap()
                .to_owned()
        }

        fn handler(viewers: &str, now: Arc<AtomicU64>) -> Handler {
            Handler::with_clock(
                &config(viewers),
                Arc::new(Origin),
                EdgeMetrics::new().unwrap(),
                Arc::new(move || now.load(Ordering::Relaxed)),
            )
            .unwrap()
        }

        fn gauge(handler: &Handler, stream: &str) -> Option<i64> {
            let metrics = handler.viewers().metrics.viewers.clone();
            let families = prometheus::core::Collector::collect(&metrics);
            families[0]
                .get_metric()
                .iter()
                .find(|m| m.get_label()[0].value() == stream)
                .map(|m| m.get_gauge().get_value() as i64)
        }

        #[tokio::test]
        async fn two_logins_are_two_viewers_and_one_session_counts_once() {
            let now = Arc::new(AtomicU64::new(NOW));
            let handler = handler("", now.clone());
            let first = login(&handler, "cam", "viewer-1").await;
            let second = login(&handler, "cam", "viewer-2").await;
            // A 22-character session id rides in the token: 66 characters,
            // not 36.
            assert_eq!(first.len(), 66, "{first}");
            let tokens = EdgeTokens::new(&config("").token).unwrap();
            let a = tokens.verify(&first, "cam", NOW).unwrap().session.unwrap();
            let b = tokens.verify(&second, "cam", NOW).unwrap().session.unwrap();
            assert_ne!(a, b);
            assert_eq!(a.as_str().len(), 22);

            // The first viewer plays: playlist reloads and parts, all one
            // session; the media tokens carry it on.
            for _ in 0..3 {
                let (status, body) =
                    get(&handler, &format!("/live/cam/stream.m3u8?token={first}")).await;
                assert_eq!(status, 200);
                let media = body
                    .split("token=")
                    .nth(1)
                    .unwrap()
                    .trim_end_matches("\"\n");
                assert_eq!(
                    tokens.verify(media, "cam", NOW).unwrap().session.as_ref(),
                    Some(&a)
                );
                let (status, _) =
                    get(&handler, &format!("/live/cam/part1.0.m4s?token={media}")).await;
                assert_eq!(status, 200);
            }
            // Logging in alone is not watching.
            assert_eq!(handler.viewers().update()["cam"], 1);
            assert_eq!(gauge(&handler, "cam"), Some(1));
            let (status, _) = get(&handler, &format!("/live/cam/stream.m3u8?token={second}")).await;
            assert_eq!(status, 200);
            assert_eq!(handler.viewers().update()["cam"], 2);
            assert_eq!(gauge(&handler, "cam"), Some(2));
            // A refused token counts nobody.
            let (status, _) = get(&handler, &format!("/live/news/stream.m3u8?token={first}")).await;
            assert_eq!(status, 401);

            // The second viewer keeps watching; the first stops.
            now.store(NOW + 20, Ordering::Relaxed);
            get(&handler, &format!("/live/cam/stream.m3u8?token={second}")).await;
            now.store(NOW + 30, Ordering::Relaxed);
            assert_eq!(handler.viewers().update()["cam"], 1);
            assert_eq!(gauge(&handler, "cam"), Some(1));
            // Nobody: the stream's series goes.
            now.store(NOW + 50, Ordering::Relaxed);
            assert!(handler.viewers().update().is_empty());
            assert_eq!(gauge(&handler, "cam"), None);
        }

        #[tokio::test]
        async fn counting_off_keeps_tokens_short() {
            let handler = handler("enabled = false", Arc::new(AtomicU64::new(NOW)));
            let session = login(&handler, "cam", "viewer-1").await;
            assert_eq!(session.len(), 36);
            let (status, _) =
                get(&handler, &format!("/live/cam/stream.m3u8?token={session}")).await;
            assert_eq!(status, 200);
            assert!(handler.viewers().update().is_empty());
            assert!(handler.viewers().start().is_none());
        }

        #[tokio::test]
        async fn a_full_tracker_still_serves() {
            let handler = handler("max_sessions = 1", Arc::new(AtomicU64::new(NOW)));
            let first = login(&handler, "cam", "viewer-1").await;
            let second = login(&handler, "cam", "viewer-2").await;
            for token in [&first, &second, &second] {
                let (status, _) =
                    get(&handler, &format!("/live/cam/stream.m3u8?token={token}")).await;
                assert_eq!(status, 200);
            }
            assert_eq!(handler.viewers().update()["cam"], 1);
            assert_eq!(handler.viewers().metrics.viewer_requests_untracked.get(), 2);
        }

        #[test]
        fn default_edge_ids_differ() {
            let (a, b) = (default_edge_id(), default_edge_id());
            assert_ne!(a, b);
            assert!(super::super::config::is_id(&a), "{a}");
        }
    }
}
