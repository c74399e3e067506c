//! Edge test tooling: a certificate and keys made at test time, an
//! `[edge]` config, viewer JWTs, HTTPS clients pinned to the certificate,
//! and the independent HTTP/3 client (`tests/h3/fetch.py`, aioquic).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// The audience the test edge answers to.
pub const AUDIENCE: &str = "ferrocast-test";
/// The test-only HS256 secret shared with the "auth service" (the test).
pub const HS256_SECRET: &str = "test-only-hs256-secret-test-only-hs256";
const EDGE_TOKEN_SECRET: &str = "test-only-edge-token-secret-0123456789";

/// Keys and a certificate generated for one test.
pub struct EdgeKeys {
    pub dir: tempfile::TempDir,
    pub cert_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    es256_private_pem: String,
    es256_public_pem: String,
}

impl EdgeKeys {
    pub fn generate() -> EdgeKeys {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        let cert_pem = generated.cert.pem();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
        let es256 = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let es256_private_pem = es256.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let es256_public_pem = es256
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        EdgeKeys {
            dir,
            cert_pem,
            cert_path,
            key_path,
            es256_private_pem,
            es256_public_pem,
        }
    }

    /// An `[edge]` section on a free loopback port with this certificate,
    /// the HS256 and ES256 viewer keys and one edge token key.
    pub fn config_toml(&self) -> String {
        format!(
            r#"
[edge]
https_listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"

[edge.jwt]
audience = "{AUDIENCE}"

[[edge.jwt.keys]]
kid = "hs"
algorithm = "HS256"
secret = "{HS256_SECRET}"

[[edge.jwt.keys]]
kid = "es"
algorithm = "ES256"
public_key_pem = """
{es}"""

[edge.token]
keys = [{{ kid = 1, secret = "{EDGE_TOKEN_SECRET}" }}]
"#,
            cert = self.cert_path.display(),
            key = self.key_path.display(),
            es = self.es256_public_pem,
        )
    }

    /// [`EdgeKeys::config_toml`] without `tls_cert`/`tls_key`: the edge
    /// generates a certificate and prints its SPKI pin on the ready line
    /// (what a browser is given).
    pub fn config_toml_self_signed(&self) -> String {
        self.config_toml()
            .lines()
            .filter(|line| !line.starts_with("tls_cert") && !line.starts_with("tls_key"))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// A viewer JWT signed with the ES256 key.
    pub fn es256_jwt(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("es".into());
        let key = EncodingKey::from_ec_pem(self.es256_private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    /// An HTTPS client trusting only this certificate; `http2` forces HTTP/2
    /// (by ALPN), otherwise HTTP/1.1 only.
    pub fn client(&self, http2: bool) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap();
        let builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .timeout(Duration::from_secs(20));
        let builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        builder.build().unwrap()
    }
}

/// Now, Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a viewer allowed `streams` for the next ten minutes.
pub fn claims(streams: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "sub": "viewer-1",
        "aud": AUDIENCE,
        "exp": now() + 600,
        "streams": streams,
    })
}

/// A viewer JWT signed with `secret` (HS256, kid `hs`).
pub fn hs256_jwt(claims: &serde_json::Value, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Every URI of a playlist: URI lines and `URI="..."` attributes.
pub fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push(line.to_owned());
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("URI=\"") {
            let value = &rest[at + 5..];
            let end = value.find('"').unwrap();
            out.push(value[..end].to_owned());
            rest = &value[end..];
        }
    }
    out
}

/// The `token` parameter of a URI.
pub fn token_of(uri: &str) -> Option<&str> {
    let query = uri.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

fn h3_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/h3/fetch.py")
}

/// Whether python3 with aioquic is there. When it is not, says so and
/// returns false, unless `REQUIRE_H3_TESTS=1` (set by scripts/test.sh):
/// then panics.
pub fn h3_available() -> bool {
    let ready = Command::new("python3")
        .args(["-c", "import aioquic"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        assert!(
            std::env::var("REQUIRE_H3_TESTS").as_deref() != Ok("1"),
            "HTTP/3 test required but python3 -m aioquic is missing"
        );
        eprintln!("SKIP: python3 aioquic missing (run scripts/test.sh)");
    }
    ready
}

/// GET `urls` in order over HTTP/3 with aioquic, trusting `cafile`;
/// returns its JSON report, one object per URL.
pub fn h3_fetch(cafile: &Path, urls: &[String]) -> Vec<serde_json::Value> {
    h3_fetch_with(cafile, urls, &[])
}

/// [`h3_fetch`] with more `fetch.py` options (`--concurrent`: every URL at
/// once on one connection, with `first_data_event`/`end_event` ordering).
pub fn h3_fetch_with(cafile: &Path, urls: &[String], options: &[&str]) -> Vec<serde_json::Value> {
    let (ok, out, err) = super::run_with_timeout(
        Command::new("python3")
            .arg(h3_script())
            .arg("--cafile")
            .arg(cafile)
            .args(options)
            .args(urls),
        Duration::from_secs(60),
    );
    let report: Vec<serde_json::Value> = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("bad h3 report {e}: {out}\nstderr: {err}"));
    assert!(ok, "h3 client failed: {report:?}\nstderr: {err}");
    report
}

/// A running `ferrocast edge` (the edge alone, in front of a remote
/// origin) on loopback with free ports; killed on drop.
pub struct RemoteEdge {
    child: std::process::Child,
    /// The HTTPS address (TCP; UDP for HTTP/3 on the same port).
    pub https: std::net::SocketAddr,
    /// The operator listener (`/metrics`, `/healthz`).
    pub metrics: std::net::SocketAddr,
    /// The generated certificate's SPKI pin, from the ready line.
    pub spki_sha256: Option<String>,
    pub dir: tempfile::TempDir,
    log: std::sync::Arc<super::ServerLog>,
}

/// A `ferrocast edge` command with only this test's settings (no
/// `FERROCAST_*` from the caller's environment), `config_toml` as its
/// config file (kept in `dir`) and `args` after it.
fn edge_command(dir: &Path, config_toml: &str, args: &[&str]) -> Command {
    let config = dir.join("edge.toml");
    std::fs::write(&config, config_toml).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FERROCAST_") {
            command.env_remove(name);
        }
    }
    command
        .arg("edge")
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("FERROCAST_LOG", "info");
    command
}

impl RemoteEdge {
    /// Starts `ferrocast edge --origin ORIGIN` with `config_toml` (an
    /// `[edge]` section, see [`EdgeKeys::config_toml`]), its metrics on a
    /// free loopback port, and waits for its ready line.
    pub fn start(config_toml: &str, origin: &str) -> RemoteEdge {
        RemoteEdge::start_with(config_toml, &["--origin", origin])
    }

    /// Starts `ferrocast edge --redis-url URL`: no fixed origin, each
    /// stream routed to the packager the cluster's registry names.
    pub fn start_routed(config_toml: &str, redis_url: &str) -> RemoteEdge {
        RemoteEdge::start_with(config_toml, &["--redis-url", redis_url])
    }

    fn start_with(config_toml: &str, args: &[&str]) -> RemoteEdge {
        use std::process::Stdio;
        let dir = tempfile::tempdir().unwrap();
        let mut child = edge_command(
            dir.path(),
            config_toml,
            &[args, &["--http-listen", "127.0.0.1:0"][..]].concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrocast binary starts");
        let (line, log) = super::until_ready(&mut child, "ferrocast edge ready");
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_owned)
        };
        RemoteEdge {
            https: field("https=").unwrap().parse().unwrap(),
            metrics: field("metrics=").unwrap().parse().unwrap(),
            spki_sha256: field("spki_sha256="),
            child,
            dir,
            log,
        }
    }

    /// `https://ADDR`
    pub fn base(&self) -> String {
        format!("https://{}", self.https)
    }

    /// Everything the edge logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Sends SIGTERM (the edge starts draining) without waiting.
    pub fn send_sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
    }

    /// Waits (at most 30 s) for the process to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ferrocast edge did not stop on SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_exit()
    }

    /// The edge's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for RemoteEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ferrocast edge` with `config_toml` and `args`, expecting it to
/// refuse to start; returns what it wrote to stderr.
pub fn edge_refuses(config_toml: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = super::run_with_timeout(
        &mut edge_command(dir.path(), config_toml, args),
        Duration::from_secs(30),
    );
    assert!(!ok, "ferrocast edge started:\n{err}");
    err
}

/// The sum of every sample of `name` whose labels contain all of `labels`
/// (`key="value"` pairs), in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = (rest.is_empty() || rest.starts_with('{'))
                && labels.iter().all(|label| rest.contains(label));
            matches.then(|| value.parse::<f64>().ok().map(|v| v as u64))?
        })
        .sum()
}

/// The multivariant playlist from `base` (`https://ADDR`) with a viewer
/// JWT in the `Authorization` header, once the stream is live (the origin
/// answers 404 until the publisher connects, then holds the request until
/// the stream has media and answers 503 "stream has no media yet" if none
/// came within its maximum hold: no event to await).
/// `log` gives the servers' logs for a failure message.
pub async fn live_multivariant(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    jwt: &str,
    log: impl Fn() -> String,
) -> String {
    let url = format!("{base}/live/{name}/index.m3u8");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(&url).bearer_auth(jwt).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if status == 200 {
            return body;
        }
        let no_media_yet = status == 503 && body.starts_with("stream has no media yet");
        assert!(status == 404 || no_media_yet, "{status} {body}");
        assert!(
            std::time::Instant::now() < deadline,
            "stream never went live; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// [`live_multivariant`] through the edge once the origin's multivariant
/// playlist (`origin`, a URL) lists every one of `rungs`: a multivariant
/// playlist lists the renditions that have media after the origin's wait
/// for all of them, so on a loaded machine a slow encoder's rung joins a
/// later answer, and no event says when. The waiting is done at the
/// origin: each answer the edge gives mints a viewer session, and a
/// viewer polling for 60 s would run into `sessions_per_viewer`.
#[allow(dead_code)]
pub async fn multivariant_listing(
    client: &reqwest::Client,
    base: &str,
    origin: &str,
    name: &str,
    jwt: &str,
    rungs: &[&str],
    log: impl Fn() -> String,
) -> String {
    let lists_all = |text: &str| {
        rungs
            .iter()
            .all(|rung| text.contains(&format!("\n{rung}/stream.m3u8")))
    };
    let direct = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = direct.get(origin).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if status == 200 && lists_all(&text) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rungs:?} never all listed at {origin}: {status} {text}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let text = live_multivariant(client, base, name, jwt, &log).await;
    assert!(
        lists_all(&text),
        "{rungs:?} not all listed by the edge: {text}"
    );
    text
}

/// Every URI of `playlist` carries an edge token.
pub fn assert_signed(playlist: &str) {
    let uris = uris(playlist);
    assert!(!uris.is_empty(), "{playlist}");
    for uri in &uris {
        assert!(token_of(uri).is_some(), "unsigned URI {uri} in\n{playlist}");
    }
}

/// `EXT-X-MEDIA-SEQUENCE` plus the number of segments: the next msn.
pub fn next_msn(playlist: &str) -> u64 {
    let first: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    first
        + playlist
            .lines()
            .filter(|l| l.starts_with("#EXTINF"))
            .count() as u64
}

/// The preload-hinted part of `playlist`: its signed URI and (msn, part).
pub fn preload_hint(playlist: &str) -> (String, u64, u64) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:TYPE=PART"))
        .unwrap_or_else(|| panic!("no part hint in\n{playlist}"));
    let uri = uris(line).pop().unwrap();
    let name = uri.split_once('?').unwrap().0;
    let (msn, part) = name
        .strip_prefix("part")
        .and_then(|n| n.strip_suffix(".m4s"))
        .and_then(|n| n.split_once('.'))
        .unwrap();
    (uri.clone(), msn.parse().unwrap(), part.parse().unwrap())
}

/// Hints tried by [`assert_preload_hinted_part_streams`]: a hint for the
/// part after a segment's last one names a part that is never produced
/// (the next picture was a keyframe, so it opened segment msn+1 instead)
/// and is answered 404, as the origin does for any hinted part that will
/// not exist. One hint in five or six is such a boundary with 1 s GOPs
/// and 200 ms parts; four boundaries in a row cannot happen.
const HINT_TRIES: usize = 4;

/// A part still being written is passed on chunk by chunk: the first
/// bytes of the preload-hinted part reach the viewer before a blocking
/// playlist request for that very part (answered when the origin has
/// completed it) does. Events in order, no timings. `stream_base` is
/// `https://ADDR/live/NAME` on the edge, `media_uri` the signed media
/// playlist URI from the multivariant playlist. `origin_base`
/// (`http://ADDR/live/NAME`), when given, is asked for the blocking
/// playlist directly: the part then has to start reaching the viewer
/// before the origin itself says it is complete, which an edge that waits
/// for whole bodies cannot do. The stream should be sent with
/// `-pes_payload_size 0` (see `ffmpeg_push_with`) so that a part does not
/// start and complete in one ingest burst.
pub async fn assert_preload_hinted_part_streams(
    client: &reqwest::Client,
    stream_base: &str,
    media_uri: &str,
    origin_base: Option<&str>,
) {
    let mut never_produced = Vec::new();
    for _ in 0..HINT_TRIES {
        match try_preload_hinted_part(client, stream_base, media_uri, origin_base).await {
            None => return,
            Some(name) => never_produced.push(name),
        }
    }
    panic!("every hinted part was never produced (404): {never_produced:?}");
}

/// One try of [`assert_preload_hinted_part_streams`]: `None` when the
/// hinted part streamed, `Some(name)` when it turned out to be the part
/// after its segment's last (404, and the segment complete without it).
async fn try_preload_hinted_part(
    client: &reqwest::Client,
    stream_base: &str,
    media_uri: &str,
    origin_base: Option<&str>,
) -> Option<String> {
    let session = token_of(media_uri).unwrap().to_owned();
    let (status, playlist) = super::get_text(client, &format!("{stream_base}/{media_uri}")).await;
    assert_eq!(status, 200, "{playlist}");
    // Wait for the hinted part's predecessor to complete, so the hinted
    // one has only just begun.
    let (_, msn, part) = preload_hint(&playlist);
    let blocking = |msn: u64, part: u64| {
        format!("{stream_base}/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}&token={session}")
    };
    let (status, playlist) = super::get_text(client, &blocking(msn, part)).await;
    assert_eq!(status, 200, "{playlist}");
    let (hint, msn, part) = preload_hint(&playlist);
    let name = format!("part{msn}.{part}.m4s");

    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let part_request = client.get(format!("{stream_base}/{hint}")).send();
    let plain = super::client();
    let complete_request = match origin_base {
        Some(origin) => plain.get(format!(
            "{origin}/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}"
        )),
        None => client.get(blocking(msn, part)),
    }
    .send();
    let watch_part = {
        let order = order.clone();
        async move {
            let mut response = part_request.await.unwrap();
            if response.status() == 404 {
                return None;
            }
            assert_eq!(response.status(), 200);
            let first = response.chunk().await.unwrap().expect("a first chunk");
            order.lock().unwrap().push("first bytes of the part");
            let mut length = first.len();
            while let Some(chunk) = response.chunk().await.unwrap() {
                length += chunk.len();
            }
            Some(length)
        }
    };
    let watch_playlist = {
        let order = order.clone();
        async move {
            let response = complete_request.await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            order
                .lock()
                .unwrap()
                .push("playlist with the part complete");
            (status, text)
        }
    };
    let (length, (status, text)) = tokio::join!(watch_part, watch_playlist);
    assert_eq!(status, 200, "{text}");
    let listed = text
        .lines()
        .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&name));
    let Some(length) = length else {
        // Refused: only right if the segment closed without that part.
        assert!(!listed, "{name} answered 404 but listed in\n{text}");
        assert!(
            next_msn(&text) > msn,
            "{name} answered 404 while its segment is open:\n{text}"
        );
        return Some(name);
    };
    assert!(listed, "{name} not complete in\n{text}");
    assert!(length > 8);
    assert_eq!(
        order.lock().unwrap().clone(),
        ["first bytes of the part", "playlist with the part complete"],
    );
    None
}
