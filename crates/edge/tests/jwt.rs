//! Viewer JWTs signed with real keys generated at test time, for all four
//! algorithms: valid, expired, not yet valid, wrong audience, forged,
//! other stream, rotation and key selection by `kid`.

// Helpers outside `#[test]` fns are not covered by clippy.toml's
// allow-unwrap-in-tests; a panic is the failure report here.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use ferrocast_edge::jwt::{JwtAlgorithm, JwtConfig, JwtConfigError, JwtError, JwtKeyConfig};
use ferrocast_edge::{JwtVerifier, Secret};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use rand::rngs::OsRng;
use serde_json::{Value, json};

const NOW: u64 = 1_750_000_000;
const AUD: &str = "ferrocast-edge";

/// A key pair: what the issuer signs with, what the edge is configured with.
struct Pair {
    algorithm: JwtAlgorithm,
    signing: EncodingKey,
    /// `secret` (HS256) or public PEM.
    material: String,
}

impl Pair {
    fn config(&self, kid: &str) -> JwtKeyConfig {
        let hs = self.algorithm == JwtAlgorithm::HS256;
        JwtKeyConfig {
            kid: kid.into(),
            algorithm: self.algorithm,
            secret: hs.then(|| Secret::new(self.material.clone())),
            public_key_pem: (!hs).then(|| self.material.clone()),
        }
    }
}

fn hs256() -> Pair {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    // Printable, so it fits a TOML string; 64 bytes.
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Pair {
        algorithm: JwtAlgorithm::HS256,
        signing: EncodingKey::from_secret(secret.as_bytes()),
        material: secret,
    }
}

fn rs256() -> Pair {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    Pair {
        algorithm: JwtAlgorithm::RS256,
        signing: EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
        material: key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

fn es256() -> Pair {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = p256::SecretKey::random(&mut OsRng);
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    Pair {
        algorithm: JwtAlgorithm::ES256,
        signing: EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        material: key.public_key().to_public_key_pem(LineEnding::LF).unwrap(),
    }
}

fn eddsa() -> Pair {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    Pair {
        algorithm: JwtAlgorithm::EdDSA,
        signing: EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
        material: key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

/// One key pair per algorithm, generated once per test binary (RSA key
/// generation is slow in a debug build).
fn pairs() -> &'static [Pair; 4] {
    static PAIRS: OnceLock<[Pair; 4]> = OnceLock::new();
    PAIRS.get_or_init(|| [hs256(), rs256(), es256(), eddsa()])
}

/// A second, unrelated pair per algorithm, for forgeries and rotation.
fn other_pairs() -> &'static [Pair; 4] {
    static PAIRS: OnceLock<[Pair; 4]> = OnceLock::new();
    PAIRS.get_or_init(|| [hs256(), rs256(), es256(), eddsa()])
}

fn jwt_alg(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn sign(pair: &Pair, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(jwt_alg(pair.algorithm));
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &pair.signing).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "viewer-1",
        "aud": AUD,
        "exp": NOW + 600,
        "nbf": NOW - 60,
        "iat": NOW - 60,
        "streams": ["news", "sports-*"],
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

fn config(keys: Vec<JwtKeyConfig>) -> JwtConfig {
    JwtConfig {
        audience: AUD.into(),
        issuer: None,
        leeway_secs: 30,
        keys,
    }
}

/// A verifier holding every algorithm's key, kids "hs", "rs", "es", "ed".
fn verifier() -> JwtVerifier {
    let p = pairs();
    JwtVerifier::new(&config(vec![
        p[0].config("hs"),
        p[1].config("rs"),
        p[2].config("es"),
        p[3].config("ed"),
    ]))
    .unwrap()
}

const KIDS: [&str; 4] = ["hs", "rs", "es", "ed"];

#[test]
fn valid_tokens_of_every_algorithm() {
    let v = verifier();
    for (pair, kid) in pairs().iter().zip(KIDS) {
        for header_kid in [Some(kid), None] {
            let token = sign(pair, header_kid, &claims());
            let viewer = v
                .verify(&token, "sports-7", NOW)
                .unwrap_or_else(|e| panic!("{:?} kid {header_kid:?}: {e}", pair.algorithm));
            assert_eq!(viewer.subject.as_deref(), Some("viewer-1"));
            assert_eq!(viewer.expires_at, NOW + 600);
            assert_eq!(viewer.kid, kid);
            assert!(v.verify(&token, "news", NOW).is_ok());
        }
    }
}

#[test]
fn time_claims_with_leeway() {
    let v = verifier();
    for pair in pairs() {
        let alg = pair.algorithm;
        let at = |c: Value| v.verify(&sign(pair, None, &c), "news", NOW);
        assert_eq!(
            at(with(claims(), "exp", json!(NOW - 31))),
            Err(JwtError::Expired),
            "{alg}"
        );
        assert_eq!(
            at(with(claims(), "exp", json!(NOW - 30))),
            Err(JwtError::Expired),
            "{alg}"
        );
        // Within the 30 s leeway.
        assert!(at(with(claims(), "exp", json!(NOW - 29))).is_ok(), "{alg}");
        assert_eq!(
            at(with(claims(), "nbf", json!(NOW + 31))),
            Err(JwtError::NotYetValid),
            "{alg}"
        );
        assert!(at(with(claims(), "nbf", json!(NOW + 30))).is_ok(), "{alg}");
        assert!(at(without(claims(), "nbf")).is_ok(), "{alg}");
        assert_eq!(at(without(claims(), "exp")), Err(JwtError::MissingExpiry));
        // RFC 7519 NumericDate may be fractional.
        assert!(at(with(claims(), "exp", json!(NOW as f64 + 0.5))).is_ok());
        assert_eq!(
            at(with(claims(), "exp", json!("tomorrow"))),
            Err(JwtError::Malformed)
        );
        assert_eq!(
            at(with(claims(), "exp", json!(-5))),
            Err(JwtError::Malformed)
        );
    }
}

#[test]
fn audience_is_required_and_checked() {
    let v = verifier();
    for pair in pairs() {
        let at = |c: Value| v.verify(&sign(pair, None, &c), "news", NOW);
        assert_eq!(
            at(with(claims(), "aud", json!("someone-else"))),
            Err(JwtError::WrongAudience)
        );
        assert_eq!(at(without(claims(), "aud")), Err(JwtError::WrongAudience));
        assert_eq!(
            at(with(claims(), "aud", json!([]))),
            Err(JwtError::WrongAudience)
        );
        assert!(at(with(claims(), "aud", json!(["x", AUD]))).is_ok());
        assert_eq!(
            at(with(claims(), "aud", json!(7))),
            Err(JwtError::Malformed)
        );
    }
}

#[test]
fn issuer_when_configured() {
    let p = pairs();
    let mut c = config(vec![p[0].config("hs")]);
    c.issuer = Some("https://auth.example.com".into());
    let v = JwtVerifier::new(&c).unwrap();
    let ok = with(claims(), "iss", json!("https://auth.example.com"));
    assert!(v.verify(&sign(&p[0], None, &ok), "news", NOW).is_ok());
    let bad = with(claims(), "iss", json!("https://evil.example.com"));
    assert_eq!(
        v.verify(&sign(&p[0], None, &bad), "news", NOW),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(
        v.verify(&sign(&p[0], None, &claims()), "news", NOW),
        Err(JwtError::WrongIssuer)
    );
}

#[test]
fn forged_and_tampered_tokens() {
    let v = verifier();
    for ((pair, other), kid) in pairs().iter().zip(other_pairs()).zip(KIDS) {
        let alg = pair.algorithm;
        // Same kid, same algorithm, another key.
        for header_kid in [Some(kid), None] {
            let forged = sign(other, header_kid, &claims());
            assert_eq!(
                v.verify(&forged, "news", NOW),
                Err(JwtError::BadSignature),
                "{alg}"
            );
        }
        // A genuine token with its payload swapped for a wider one.
        let genuine = sign(pair, Some(kid), &claims());
        let wider = sign(other, Some(kid), &with(claims(), "streams", json!(["*"])));
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let wider_payload = wider.split('.').nth(1).unwrap();
        parts[1] = wider_payload;
        assert_eq!(
            v.verify(&parts.join("."), "anything", NOW),
            Err(JwtError::BadSignature),
            "{alg}"
        );
        // Signature stripped.
        let stripped = format!("{}.{}.", parts[0], wider_payload);
        assert!(v.verify(&stripped, "anything", NOW).is_err());
    }
}

#[test]
fn stream_scope() {
    let v = verifier();
    for pair in pairs() {
        let at = |c: &Value, stream| v.verify(&sign(pair, None, c), stream, NOW);
        let err = at(&claims(), "weather").unwrap_err();
        assert_eq!(err, JwtError::NotInScope);
        assert_eq!(err.status(), 403);
        assert_eq!(at(&claims(), "esports-1"), Err(JwtError::NotInScope));
        assert!(at(&with(claims(), "streams", json!(["*"])), "weather").is_ok());
        assert_eq!(
            at(&without(claims(), "streams"), "news"),
            Err(JwtError::NotInScope)
        );
        assert_eq!(
            at(&with(claims(), "streams", json!("news")), "news"),
            Err(JwtError::Malformed)
        );
    }
}

#[test]
fn key_selection_by_kid() {
    let v = verifier();
    let p = pairs();
    // A kid nobody configured.
    let token = sign(&p[0], Some("retired"), &claims());
    assert_eq!(v.verify(&token, "news", NOW), Err(JwtError::UnknownKey));
    // A kid naming a key of another algorithm.
    let token = sign(&p[0], Some("rs"), &claims());
    assert_eq!(
        v.verify(&token, "news", NOW),
        Err(JwtError::AlgorithmMismatch)
    );
    // Algorithm confusion: HS256 keyed with the RSA public key's PEM,
    // naming the RSA key's kid.
    let confused = Pair {
        algorithm: JwtAlgorithm::HS256,
        signing: EncodingKey::from_secret(p[1].material.as_bytes()),
        material: String::new(),
    };
    for kid in [Some("rs"), None] {
        assert!(
            v.verify(&sign(&confused, kid, &claims()), "news", NOW)
                .is_err()
        );
    }
    // No key of the token's algorithm at all.
    let only_hs = JwtVerifier::new(&config(vec![p[0].config("hs")])).unwrap();
    let token = sign(&p[2], None, &claims());
    assert_eq!(
        only_hs.verify(&token, "news", NOW),
        Err(JwtError::UnknownKey)
    );
}

#[test]
fn rotation_keeps_several_keys_live() {
    let (old, new) = (&pairs()[2], &other_pairs()[2]);
    let v = JwtVerifier::new(&config(vec![old.config("2024"), new.config("2025")])).unwrap();
    for (pair, kid) in [(old, "2024"), (new, "2025")] {
        // With kid: exactly that key.
        let token = sign(pair, Some(kid), &claims());
        assert_eq!(v.verify(&token, "news", NOW).unwrap().kid, kid);
        // Without kid: every key of the algorithm is tried.
        let token = sign(pair, None, &claims());
        assert_eq!(v.verify(&token, "news", NOW).unwrap().kid, kid);
    }
    // With the wrong kid, the other key is not tried.
    let token = sign(new, Some("2024"), &claims());
    assert_eq!(v.verify(&token, "news", NOW), Err(JwtError::BadSignature));
}

#[test]
fn malformed_input() {
    let v = verifier();
    assert_eq!(v.verify("", "news", NOW), Err(JwtError::Missing));
    for junk in [
        "x",
        "a.b",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.",
    ] {
        assert_eq!(
            v.verify(junk, "news", NOW),
            Err(JwtError::Malformed),
            "{junk}"
        );
    }
    // HS512 is a real algorithm the edge does not accept.
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(),
        &EncodingKey::from_secret(pairs()[0].material.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        v.verify(&hs512, "news", NOW),
        Err(JwtError::UnsupportedAlgorithm)
    );
    let huge = format!("{}.{}.x", "e".repeat(10_000), "e");
    assert_eq!(v.verify(&huge, "news", NOW), Err(JwtError::Malformed));
}

#[test]
fn reasons_never_contain_the_token() {
    let v = verifier();
    let token = sign(&pairs()[0], None, &with(claims(), "exp", json!(1)));
    let err = v.verify(&token, "news", NOW).unwrap_err();
    assert_eq!(err.status(), 401);
    for text in [err.to_string(), err.reason().to_owned(), format!("{err:?}")] {
        assert!(!text.contains(&token) && !text.contains("eyJ"), "{text}");
    }
}

#[test]
fn config_from_toml_and_checks() {
    let p = pairs();
    let text = format!(
        r#"
        audience = "{AUD}"
        leeway_secs = 5
        [[keys]]
        kid = "hs"
        algorithm = "HS256"
        secret = "{}"
        [[keys]]
        kid = "ed"
        algorithm = "EdDSA"
        public_key_pem = """
{}"""
        "#,
        p[0].material, p[3].material
    );
    let cfg: JwtConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.keys.len(), 2);
    let debug = format!("{cfg:?}");
    assert!(!debug.contains(&p[0].material), "secret leaked: {debug}");
    let v = JwtVerifier::new(&cfg).unwrap();
    assert!(!format!("{v:?}").contains(&p[0].material));
    assert!(
        v.verify(&sign(&p[3], Some("ed"), &claims()), "news", NOW)
            .is_ok()
    );

    // A typo is an error, not a silent default.
    let typo = text.replace("leeway_secs", "leway_secs");
    assert!(toml::from_str::<JwtConfig>(&typo).is_err());
    let typo = text.replace("public_key_pem", "public_pem");
    assert!(toml::from_str::<JwtConfig>(&typo).is_err());

    let check = |keys: Vec<JwtKeyConfig>| JwtVerifier::new(&config(keys)).unwrap_err();
    assert_eq!(check(vec![]), JwtConfigError::NoKeys);
    assert!(matches!(
        check(vec![p[0].config("a"), p[1].config("a")]),
        JwtConfigError::DuplicateKid { .. }
    ));
    let mut short = p[0].config("a");
    short.secret = Some(Secret::new("too short"));
    assert!(matches!(
        check(vec![short]),
        JwtConfigError::SecretTooShort { len: 9, .. }
    ));
    // An EC public key configured as an RSA key.
    let mut wrong = p[2].config("a");
    wrong.algorithm = JwtAlgorithm::RS256;
    assert!(matches!(check(vec![wrong]), JwtConfigError::BadPem { .. }));
    let mut garbage = p[3].config("a");
    garbage.public_key_pem =
        Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into());
    assert!(matches!(
        check(vec![garbage]),
        JwtConfigError::BadPem { .. }
    ));
    let mut both = p[0].config("a");
    both.public_key_pem = Some(p[1].material.clone());
    assert!(matches!(
        check(vec![both]),
        JwtConfigError::UnexpectedMaterial { .. }
    ));
    let mut none = p[1].config("a");
    none.public_key_pem = None;
    assert!(matches!(
        check(vec![none]),
        JwtConfigError::MissingMaterial { .. }
    ));
    let mut c = config(vec![p[0].config("a")]);
    c.leeway_secs = 3600;
    assert_eq!(
        JwtVerifier::new(&c).unwrap_err(),
        JwtConfigError::LeewayTooLarge(3600)
    );
}
