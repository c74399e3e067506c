#![allow(clippy::unwrap_used)]

//! The topology `docker-compose.yml` describes, as local processes: Redis,
//! PostgreSQL, `ferrocast ingest`, `transcode`, `package`, `edge` and
//! `control`, each started with the command, environment and mounted
//! config file that `docker-compose config` resolves for its service (the
//! edge's secrets interpolated from `EDGE_JWT_SECRET` /
//! `EDGE_TOKEN_SECRET`, set by this test). What changes is only what a
//! container network gives and a loopback test cannot: every listener on
//! 127.0.0.1 and a free port, each advertised address (a compose service
//! name) the advertised listener's loopback address, the Redis URL this
//! test's `redis-server` and the database URL this test's PostgreSQL
//! (`scripts/deploy_checks.py topology` makes those changes). Then ffmpeg
//! pushes a 360p stream over SRT and hls.js in headless Chromium plays it
//! through the edge with a viewer JWT signed with the compose file's key:
//! the default ladder's 360p rung, transcoded in another process.
//!
//! Needs docker-compose (Debian's), Python with PyYAML, Node.js,
//! Chromium and `npm ci` in `tests/browser`: `scripts/test.sh` installs
//! them and sets `REQUIRE_DEPLOY_TESTS=1`, under which a missing one is a
//! failure; elsewhere the test says what is missing and passes. PostgreSQL
//! (Debian's) likewise, under `REQUIRE_POSTGRES_TESTS`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Redis;
use common::{Sender, ServerLog, browser, run_with_timeout};
use ferrocast_testkit::Postgres;

/// How long the player plays.
const PLAY_SECONDS: u32 = 12;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether docker-compose and PyYAML are here; see the module doc.
fn tools_available() -> bool {
    let have_compose = Command::new("docker-compose")
        .arg("version")
        .env("PYTHONNOUSERSITE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let have_yaml = Command::new("python3")
        .args(["-c", "import yaml, tomllib"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !(have_compose && have_yaml) {
        assert!(
            std::env::var("REQUIRE_DEPLOY_TESTS").as_deref() != Ok("1"),
            "REQUIRE_DEPLOY_TESTS=1 but docker-compose or python3 with PyYAML is missing"
        );
        eprintln!("SKIP: docker-compose or python3 with PyYAML missing (run scripts/test.sh)");
    }
    have_compose && have_yaml
}

/// One compose service as `deploy_checks.py topology` describes it.
struct Service {
    service: String,
    role: String,
    argv: Vec<String>,
    env: HashMap<String, String>,
    cwd: PathBuf,
}

/// A started service; killed on drop.
struct Running {
    name: String,
    child: Child,
    ready: String,
    log: Arc<ServerLog>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(service: &Service) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocast"))
            .args(&service.argv)
            .env_clear()
            .envs(&service.env)
            // The binary's own log filter, as in the container, not the
            // roles check's quieter one.
            .env_remove("FERROCAST_LOG")
            .current_dir(&service.cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferrocast binary starts");
        let (ready, log) =
            common::until_ready(&mut child, &format!("ferrocast {} ready", service.role));
        Running {
            name: service.service.clone(),
            child,
            ready,
            log,
        }
    }

    fn field(&self, key: &str) -> String {
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.ready))
            .to_owned()
    }
}

/// The compose file's services, resolved by `docker-compose config` with
/// the edge's secrets, as local processes against `redis` and `pg`.
fn topology(
    redis: &Redis,
    pg: &Postgres,
    scratch: &std::path::Path,
    secrets: &[(&str, &str)],
) -> Vec<Service> {
    let (ok, resolved, err) = run_with_timeout(
        Command::new("docker-compose")
            .arg("-f")
            .arg(repo().join("docker-compose.yml"))
            .arg("config")
            .env("PYTHONNOUSERSITE", "1")
            .envs(secrets.iter().copied()),
        Duration::from_secs(60),
    );
    assert!(ok, "docker-compose config: {err}");
    let compose = scratch.join("compose.yml");
    std::fs::write(&compose, resolved).unwrap();
    let (ok, json, err) = run_with_timeout(
        Command::new("python3")
            .arg(repo().join("scripts/deploy_checks.py"))
            .arg("topology")
            .arg("--compose")
            .arg(&compose)
            .arg("--scratch")
            .arg(scratch.join("services"))
            .args(["--redis-port", &redis.port().to_string()])
            .args(["--database-url", &pg.url()]),
        Duration::from_secs(60),
    );
    assert!(ok, "deploy_checks.py topology: {err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    list.iter()
        .map(|s| Service {
            service: text(&s["service"]),
            role: text(&s["role"]),
            argv: s["argv"].as_array().unwrap().iter().map(text).collect(),
            env: s["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            cwd: PathBuf::from(text(&s["cwd"])),
        })
        .collect()
}

/// ffmpeg pushing 640x360 with AAC to `srt` as `streamid`: big enough for
/// the default ladder's 360p rung (the ladder never upscales).
fn push_360p(srt: &str, streamid: &str, seconds: u32) -> Sender {
    let url = format!("srt://{srt}?streamid={streamid}&pkt_size=1316");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "50"])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .args(["-t", &seconds.to_string(), "-f", "mpegts", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts");
    Sender(child)
}

/// A viewer JWT for `stream` as the compose file's edge expects it:
/// HS256 with kid `viewer-auth`, audience `ferrocast`.
fn viewer_jwt(stream: &str, secret: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("viewer-auth".into());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({
            "sub": "viewer-1",
            "aud": "ferrocast",
            "exp": common::edge::now() + 600,
            "streams": [stream],
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_a_stream_through_the_compose_topology_run_as_local_processes() {
    if !browser::available() || !tools_available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let Some(redis) = Redis::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let jwt_secret = random_secret();
    let token_secret = random_secret();
    let mut services = topology(
        &redis,
        &pg,
        scratch.path(),
        &[
            ("EDGE_JWT_SECRET", &jwt_secret),
            ("EDGE_TOKEN_SECRET", &token_secret),
        ],
    );
    let roles: Vec<&str> = services.iter().map(|s| s.role.as_str()).collect();
    for role in ["ingest", "transcode", "package", "edge", "control"] {
        assert!(roles.contains(&role), "no {role} service in {roles:?}");
    }
    // In the order compose starts them (the edge waits for the packager).
    let order = |role: &str| {
        ["ingest", "transcode", "package", "edge", "control"]
            .iter()
            .position(|r| *r == role)
    };
    services.sort_by_key(|s| order(&s.role));
    let running: Vec<Running> = services.iter().map(Running::start).collect();
    let log = || {
        running
            .iter()
            .map(|r| format!("{}:\n{}", r.name, r.log.text()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let by_role = |role: &str| {
        let i = services.iter().position(|s| s.role == role).unwrap();
        &running[i]
    };
    let _push = push_360p(&by_role("ingest").field("srt"), "publish:live/demo", 90);

    // The default ladder's 360p rung, from the transcoder process, listed
    // by the packager.
    let origin = format!(
        "http://{}/live/demo/index.m3u8",
        by_role("package").field("http")
    );
    let http = common::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = common::get_text(&http, &origin).await;
        if code == 200 && body.contains("360p/stream.m3u8") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 360p rung on {origin}: {code} {body}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let edge = by_role("edge");
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        edge.field("spki_sha256")
    );
    let url = format!(
        "https://{}/live/demo/index.m3u8?token={}",
        edge.field("https"),
        viewer_jwt("demo", &jwt_secret)
    );
    let report = browser::play(&url, PLAY_SECONDS, &["--chromium-arg", &pin]);
    assert_eq!(report["supported"], true, "{report}");
    assert_eq!(
        report["fatal"].as_array().unwrap().len(),
        0,
        "{report}\n{}",
        log()
    );
    assert_eq!(report["playing"], true, "{report}\n{}", log());
    // The transcoded rung's media, through the edge.
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(640), Some(360)),
        "{report}"
    );
    let rung_media = report["requests"].as_array().unwrap().iter().any(|r| {
        r["status"] == 200
            && r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/live/demo/360p/") && !p.contains(".m3u8"))
    });
    assert!(rung_media, "no 360p media request: {report}");
    let played = browser::played_seconds(&browser::current_times(&report));
    assert!(played > 4.0, "played only {played:.1} s: {report}");
    // No rebuffering once playing (tests/browser.rs says why none).
    assert_eq!(
        report["stalls"],
        0,
        "playback stalled:\n{}",
        browser::timeline(&report)
    );
}
