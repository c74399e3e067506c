#![allow(clippy::unwrap_used)]

//! Viewer counts aggregated across two real edges through a real
//! `redis-server` started here on a free loopback port: the cluster gauge
//! shows the sum on both edges; with Redis killed or frozen requests are
//! still answered and sync errors counted; Redis back on the same port,
//! the sync resumes; an edge that stops is no longer counted.
//!
//! Skipped (with a message) when `redis-server` is not installed, unless
//! `REQUIRE_REDIS_TESTS` is set.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use ferrocast_edge::server::{EdgeMetrics, EdgeServer};
use ferrocast_edge::{EdgeConfig, InProcessUpstream};

const HS: &str = "viewers-redis-hs256-secret-viewers-redis";
/// Redis's password: it must never reach a log line.
const REDIS_PASSWORD: &str = "redis-password-never-logged";
/// Every wait on the edges or on Redis gives up after this.
const DEADLINE: Duration = Duration::from_secs(30);

/// A `redis-server` of our own, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one on `port` and returns once it says it accepts
    /// connections; `None` if it exits first (the port was taken).
    fn start(port: u16) -> Option<Redis> {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", REDIS_PASSWORD])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        Some(Redis { child, port })
    }

    /// On a free port (tried a few times: another process may take the
    /// port between our probe and Redis's bind).
    fn start_on_free_port() -> Redis {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(redis) = Redis::start(port) {
                return redis;
            }
        }
        panic!("redis-server did not start on a free port");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_installed() -> bool {
    match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(_) if std::env::var_os("REQUIRE_REDIS_TESTS").is_some() => {
            panic!("REQUIRE_REDIS_TESTS is set but redis-server cannot be run")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: redis-server is not installed (apt-get install redis-server); \
                 set REQUIRE_REDIS_TESTS=1 to make this a failure"
            );
            false
        }
    }
}

fn config(edge_id: &str, redis_port: u16) -> EdgeConfig {
    toml::from_str(&format!(
        r#"
        https_listen = "127.0.0.1:0"
        plain_http_listen = "127.0.0.1:0"
        http3 = false
        [jwt]
        audience = "a"
        [[jwt.keys]]
        kid = "k"
        algorithm = "HS256"
        secret = "{HS}"
        [token]
        keys = [{{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }}]
        [viewers]
        window_secs = 3600
        interval_ms = 300
        redis_timeout_ms = 250
        redis_url = "redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"
        edge_id = "{edge_id}"
        "#
    ))
    .unwrap()
}

fn origin() -> Router {
    Router::new()
        .route(
            "/live/{name}/index.m3u8",
            get(|| async { "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nstream.m3u8\n" }),
        )
        .route(
            "/live/{name}/stream.m3u8",
            get(|| async { "#EXTM3U\n#EXTINF:1.0,\nseg1.m4s\n" }),
        )
}

async fn edge(edge_id: &str, redis_port: u16) -> EdgeServer {
    let upstream = Arc::new(InProcessUpstream::new(origin(), Duration::from_secs(5)));
    EdgeServer::start(
        &config(edge_id, redis_port),
        upstream,
        EdgeMetrics::new().unwrap(),
    )
    .await
    .unwrap()
}

fn jwt(sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": sub, "aud": "a", "exp": exp, "streams": ["*"]}),
        &jsonwebtoken::EncodingKey::from_secret(HS.as_bytes()),
    )
    .unwrap()
}

/// Every log line of the test, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures the logs of every thread (the only test in this binary).
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// A viewer on `edge`: logs in to `stream` and loads its media playlist
/// once. Returns the session token.
async fn watch(edge: &EdgeServer, stream: &str, sub: &str) -> String {
    let base = format!("http://{}/live/{stream}", edge.plain_http_addr().unwrap());
    let response = client()
        .get(format!("{base}/index.m3u8"))
        .bearer_auth(jwt(sub))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let token = body
        .lines()
        .nth(2)
        .unwrap()
        .strip_prefix("stream.m3u8?token=")
        .unwrap()
        .to_owned();
    reload(edge, stream, &token).await;
    token
}

async fn reload(edge: &EdgeServer, stream: &str, token: &str) {
    let url = format!(
        "http://{}/live/{stream}/stream.m3u8?token={token}",
        edge.plain_http_addr().unwrap()
    );
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The value of `name{stream="STREAM"}` in the edge's metrics, if it has
/// that series.
fn gauge(edge: &EdgeServer, name: &str, stream: &str) -> Option<i64> {
    let prefix = format!("{name}{{stream=\"{stream}\"}} ");
    edge.metrics()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
}

fn sync_errors(edge: &EdgeServer) -> u64 {
    edge.metrics().viewer_sync_errors.get()
}

/// Polls `done` until it holds, failing after [`DEADLINE`] with the
/// viewer metrics of `edges`.
async fn until(what: &str, edges: &[&EdgeServer], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > DEADLINE {
            let metrics: Vec<String> = edges
                .iter()
                .map(|edge| {
                    edge.metrics()
                        .render()
                        .lines()
                        .filter(|line| line.starts_with("ferrocast_edge_viewer"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .collect();
            panic!("timed out waiting: {what}\n{}", metrics.join("\n--\n"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_share_counts_and_survive_a_redis_outage() {
    if !redis_installed() {
        return;
    }
    let logs = Logs::capture();
    let redis = Redis::start_on_free_port();
    let port = redis.port;
    let a = edge("edge-a", port).await;
    let b = edge("edge-b", port).await;

    // Edge A: two viewers of cam (one of them reloading, still one
    // viewer). Edge B: one of cam, one of news.
    let first = watch(&a, "cam", "viewer-1").await;
    reload(&a, "cam", &first).await;
    watch(&a, "cam", "viewer-2").await;
    watch(&b, "cam", "viewer-3").await;
    watch(&b, "news", "viewer-4").await;

    let cluster = "ferrocast_edge_viewers_cluster";
    let local = "ferrocast_edge_viewers";
    until("cluster totals on both edges", &[&a, &b], || {
        [&a, &b].iter().all(|edge| {
            gauge(edge, cluster, "cam") == Some(3) && gauge(edge, cluster, "news") == Some(1)
        })
    })
    .await;
    assert_eq!(gauge(&a, local, "cam"), Some(2));
    assert_eq!(gauge(&a, local, "news"), None);
    assert_eq!(gauge(&b, local, "cam"), Some(1));
    assert_eq!(gauge(&b, local, "news"), Some(1));
    // The control plane's reader sees the same totals without counting as
    // an edge.
    let totals = ferrocast_edge::viewers::ViewerTotals::new(&config("control", port).viewers)
        .unwrap()
        .unwrap();
    let read = totals.read().await.unwrap();
    assert_eq!(
        (read.get("cam"), read.get("news")),
        (Some(&3), Some(&1)),
        "{read:?}"
    );

    // Redis gone: requests are answered as before, local counting goes on,
    // every sync fails and is counted, the cluster series go.
    drop(redis);
    reload(&a, "cam", &first).await;
    watch(&a, "cam", "viewer-5").await;
    until("local count without Redis", &[&a], || {
        gauge(&a, local, "cam") == Some(3)
    })
    .await;
    until("sync errors counted on both edges", &[&a, &b], || {
        sync_errors(&a) >= 2 && sync_errors(&b) >= 2
    })
    .await;
    until("no stale cluster totals", &[&a, &b], || {
        gauge(&a, cluster, "cam").is_none() && gauge(&b, cluster, "cam").is_none()
    })
    .await;

    // Redis back, empty, on the same port: the edges reconnect and publish
    // again.
    let redis = Redis::start(port).expect("redis-server restarts on its port");
    until("cluster totals after Redis came back", &[&a, &b], || {
        [&a, &b]
            .iter()
            .all(|edge| gauge(edge, cluster, "cam") == Some(4))
    })
    .await;

    // Redis frozen (accepts nothing, answers nothing): syncs time out,
    // requests are still answered.
    redis.signal("-STOP");
    let errors = sync_errors(&a);
    reload(&a, "cam", &first).await;
    watch(&b, "cam", "viewer-6").await;
    until("sync timeouts counted", &[&a], || sync_errors(&a) > errors).await;
    redis.signal("-CONT");
    until("cluster totals after Redis thawed", &[&a, &b], || {
        [&a, &b]
            .iter()
            .all(|edge| gauge(edge, cluster, "cam") == Some(5))
    })
    .await;

    // The failures were logged, with the address and never the password.
    let logs = logs.text();
    assert!(
        logs.contains("viewer count sync with Redis failed"),
        "{logs}"
    );
    assert!(logs.contains(&format!("redis://:***@127.0.0.1:{port}/0")));
    assert!(!logs.contains(REDIS_PASSWORD));

    // Edge B stops: its counts expire from Redis within three intervals
    // and leave the totals.
    drop(b);
    until("the stopped edge's viewers leave the totals", &[&a], || {
        gauge(&a, cluster, "cam") == Some(3) && gauge(&a, cluster, "news").is_none()
    })
    .await;
}
