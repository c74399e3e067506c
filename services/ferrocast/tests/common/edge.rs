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
