//! Viewer JWT verification, once per session, on the Multivariant Playlist
//! request.
//!
//! A viewer's player presents a JWT (RFC 7519) signed by the operator's
//! auth service with one of the configured keys. [`JwtVerifier::verify`]
//! checks, in this order:
//!
//! 1. shape and size (at most [`MAX_JWT_LEN`] bytes);
//! 2. the key: a token with a `kid` header uses exactly the key of that
//!    `kid`, and its `alg` must be that key's algorithm; a token without
//!    `kid` is tried against every key of its `alg` (several keys of one
//!    algorithm are live at once while keys rotate);
//! 3. the signature (by `jsonwebtoken`, RustCrypto backend);
//! 4. `exp` (required) and `nbf` against the caller's `now`, with a small
//!    leeway for clock skew;
//! 5. `aud` (required, must contain the configured audience) and, when
//!    configured, `iss`;
//! 6. the stream scope claim `streams` against the requested stream.
//!
//! Failures 1–5 are [`JwtError`]s that map to 401, failure 6 to 403
//! ([`JwtError::status`]). No error, `Display` or `reason` ever contains
//! the token or key material.
//!
//! Time is an argument (`now`, Unix seconds): `jsonwebtoken`'s own clock
//! checks are switched off so that tests and callers control time.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Longest JWT accepted, in bytes; longer input is refused before parsing.
pub const MAX_JWT_LEN: usize = 8 * 1024;

/// Largest `leeway_secs` a configuration may set.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Default of [`JwtConfig::leeway_secs`].
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Shortest HS256 secret, in bytes. RFC 7518 §3.2: "A key of the same size
/// as the hash output (for instance, 256 bits for "HS256") or larger MUST
/// be used with this algorithm."
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// The name of the stream scope claim.
pub const STREAMS_CLAIM: &str = "streams";

/// A JWT signature algorithm the edge accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256, a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, an RSA public key.
    RS256,
    /// ECDSA on P-256 with SHA-256, an EC public key.
    ES256,
    /// Ed25519, an Ed25519 public key.
    EdDSA,
}

impl JwtAlgorithm {
    fn to_jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        }
    }

    fn from_jsonwebtoken(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::HS256 => Some(JwtAlgorithm::HS256),
            Algorithm::RS256 => Some(JwtAlgorithm::RS256),
            Algorithm::ES256 => Some(JwtAlgorithm::ES256),
            Algorithm::EdDSA => Some(JwtAlgorithm::EdDSA),
            _ => None,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One verification key (`[[edge.jwt.keys]]`).
///
/// HS256 keys carry `secret` (at least [`MIN_HMAC_SECRET_LEN`] bytes);
/// RS256, ES256 and EdDSA keys carry `public_key_pem` (SPKI
/// `-----BEGIN PUBLIC KEY-----`; PKCS#1 `RSA PUBLIC KEY` also works for
/// RS256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// Key id, matched against the token header's `kid`. Unique.
    pub kid: String,
    /// The algorithm this key verifies; a token must use exactly it.
    pub algorithm: JwtAlgorithm,
    /// The shared secret of an HS256 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// The PEM public key of an RS256, ES256 or EdDSA key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
}

/// Viewer JWT settings (`[edge.jwt]`).
///
/// ```
/// let cfg: ferrocast_edge::JwtConfig = toml::from_str(r#"
///     audience = "ferrocast"
///     [[keys]]
///     kid = "2025-01"
///     algorithm = "HS256"
///     secret = "0123456789abcdef0123456789abcdef"
/// "#).unwrap();
/// assert_eq!(cfg.leeway_secs, 30);
/// assert!(format!("{cfg:?}").contains("[redacted]"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The audience this edge answers to: a token's `aud` (a string or an
    /// array) must contain it. Required.
    pub audience: String,
    /// When set, a token's `iss` must equal it. Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf`, seconds. Default 30, at
    /// most [`MAX_LEEWAY_SECS`].
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The live keys (at least one). Rotation: add the new key, let issuers
    /// switch, remove the old one once its tokens have expired.
    pub keys: Vec<JwtKeyConfig>,
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// A JWT configuration that cannot be used. Names keys by `kid`, never by
/// their material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// `keys` is empty.
    #[error("edge.jwt: no keys configured")]
    NoKeys,
    /// `audience` is empty.
    #[error("edge.jwt: audience is empty")]
    EmptyAudience,
    /// `leeway_secs` above [`MAX_LEEWAY_SECS`].
    #[error("edge.jwt: leeway_secs {0} is above {MAX_LEEWAY_SECS}")]
    LeewayTooLarge(u64),
    /// A key with an empty `kid`.
    #[error("edge.jwt: key #{index} has an empty kid")]
    EmptyKid {
        /// Position in `keys`.
        index: usize,
    },
    /// Two keys with one `kid`.
    #[error("edge.jwt: kid {kid:?} appears twice")]
    DuplicateKid {
        /// The repeated kid.
        kid: String,
    },
    /// An HS256 key without `secret`, or another key without
    /// `public_key_pem`.
    #[error("edge.jwt: key {kid:?} ({algorithm}) needs {needs}")]
    MissingMaterial {
        /// The key.
        kid: String,
        /// Its algorithm.
        algorithm: JwtAlgorithm,
        /// The field it needs.
        needs: &'static str,
    },
    /// A key with the field that belongs to the other kind of algorithm.
    #[error("edge.jwt: key {kid:?} ({algorithm}) must not have {field}")]
    UnexpectedMaterial {
        /// The key.
        kid: String,
        /// Its algorithm.
        algorithm: JwtAlgorithm,
        /// The field it must not have.
        field: &'static str,
    },
    /// An HS256 secret shorter than [`MIN_HMAC_SECRET_LEN`].
    #[error("edge.jwt: key {kid:?}: secret is {len} bytes, at least {MIN_HMAC_SECRET_LEN} needed")]
    SecretTooShort {
        /// The key.
        kid: String,
        /// The secret's length.
        len: usize,
    },
    /// A PEM that does not hold a public key of the key's algorithm.
    #[error("edge.jwt: key {kid:?}: public_key_pem is not a valid {algorithm} public key")]
    BadPem {
        /// The key.
        kid: String,
        /// Its algorithm.
        algorithm: JwtAlgorithm,
    },
}

/// Why a viewer JWT was refused. [`status`](Self::status) gives the HTTP
/// status, [`reason`](Self::reason) a short text safe to send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// No token was presented.
    #[error("missing token")]
    Missing,
    /// Not a JWT, too long, bad base64 or JSON, or claims of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// An `alg` the edge does not accept (anything but HS256, RS256, ES256,
    /// EdDSA).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The `kid` names no configured key, or no key of the token's `alg`
    /// is configured.
    #[error("unknown key")]
    UnknownKey,
    /// The `alg` differs from the algorithm of the key its `kid` names.
    #[error("algorithm does not match key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The token has no `exp`.
    #[error("token has no expiry")]
    MissingExpiry,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` is missing or does not contain this edge's audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `iss` is missing or not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// A valid token whose `streams` claim does not cover the stream.
    #[error("stream not in token scope")]
    NotInScope,
}

impl JwtError {
    /// The HTTP status: 403 for [`JwtError::NotInScope`] (the viewer is
    /// known, the stream is not theirs), 401 for everything else.
    pub fn status(&self) -> u16 {
        match self {
            JwtError::NotInScope => 403,
            _ => 401,
        }
    }

    /// A short reason for the response body and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Missing => "missing token",
            JwtError::Malformed => "malformed token",
            JwtError::UnsupportedAlgorithm => "unsupported algorithm",
            JwtError::UnknownKey => "unknown key",
            JwtError::AlgorithmMismatch => "algorithm does not match key",
            JwtError::BadSignature => "bad signature",
            JwtError::MissingExpiry => "token has no expiry",
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::WrongAudience => "wrong audience",
            JwtError::WrongIssuer => "wrong issuer",
            JwtError::NotInScope => "stream not in token scope",
        }
    }
}

/// What a verified JWT says about its viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The `sub` claim, if any.
    pub subject: Option<String>,
    /// The `exp` claim, Unix seconds (fractions dropped).
    pub expires_at: u64,
    /// The `kid` of the key that verified the token.
    pub kid: String,
}

struct VerifyingKey {
    kid: String,
    algorithm: JwtAlgorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Verifies viewer JWTs against the configured keys. Build once from
/// [`JwtConfig`], share across requests (it is `Send + Sync`).
pub struct JwtVerifier {
    keys: Vec<VerifyingKey>,
    audience: String,
    issuer: Option<String>,
    leeway: u64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.kid.as_str(), k.algorithm))
                    .collect::<Vec<_>>(),
            )
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Claims read from a token whose signature verified. Unknown claims are
/// ignored; known ones of the wrong type make the token malformed.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    streams: Option<Vec<String>>,
}

/// RFC 7519 §2: NumericDate, "seconds ... ignoring leap seconds", which may
/// be non-integer. Kept as whole seconds, fractions dropped; negative or
/// non-finite values are malformed.
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        if let Some(v) = n.as_u64() {
            return Ok(NumericDate(v));
        }
        match n.as_f64() {
            // `as` saturates; the range check keeps it exact enough.
            Some(v) if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 => {
                Ok(NumericDate(v.trunc() as u64))
            }
            _ => Err(serde::de::Error::custom("NumericDate out of range")),
        }
    }
}

/// RFC 7519 §4.1.3: "In the general case, the "aud" value is an array of
/// case-sensitive strings ... In the special case when the JWT has one
/// audience, the "aud" value MAY be a single case-sensitive string".
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

impl JwtVerifier {
    /// Builds the verifier, checking every key.
    pub fn new(config: &JwtConfig) -> Result<Self, JwtConfigError> {
        if config.keys.is_empty() {
            return Err(JwtConfigError::NoKeys);
        }
        if config.audience.is_empty() {
            return Err(JwtConfigError::EmptyAudience);
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(JwtConfigError::LeewayTooLarge(config.leeway_secs));
        }
        let mut keys: Vec<VerifyingKey> = Vec::with_capacity(config.keys.len());
        for (index, k) in config.keys.iter().enumerate() {
            if k.kid.is_empty() {
                return Err(JwtConfigError::EmptyKid { index });
            }
            if keys.iter().any(|seen| seen.kid == k.kid) {
                return Err(JwtConfigError::DuplicateKid { kid: k.kid.clone() });
            }
            keys.push(VerifyingKey {
                kid: k.kid.clone(),
                algorithm: k.algorithm,
                key: decoding_key(k)?,
                validation: validation_for(k.algorithm),
            });
        }
        Ok(JwtVerifier {
            keys,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway: config.leeway_secs,
        })
    }

    /// Verifies `token` for a request to `stream` at `now` (Unix seconds).
    ///
    /// An empty `token` is [`JwtError::Missing`]; the caller passes `""`
    /// when the request carried none.
    pub fn verify(&self, token: &str, stream: &str, now: u64) -> Result<Viewer, JwtError> {
        if token.is_empty() {
            return Err(JwtError::Missing);
        }
        if token.len() > MAX_JWT_LEN {
            return Err(JwtError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        let algorithm =
            JwtAlgorithm::from_jsonwebtoken(header.alg).ok_or(JwtError::UnsupportedAlgorithm)?;

        let (key, claims) = match header.kid.as_deref() {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid == kid)
                    .ok_or(JwtError::UnknownKey)?;
                if key.algorithm != algorithm {
                    return Err(JwtError::AlgorithmMismatch);
                }
                (key, decode_with(token, key)?)
            }
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.algorithm == algorithm);
                let mut found = None;
                let mut tried = false;
                for key in &mut candidates {
                    tried = true;
                    match decode_with(token, key) {
                        Ok(claims) => {
                            found = Some((key, claims));
                            break;
                        }
                        Err(JwtError::BadSignature) => continue,
                        Err(other) => return Err(other),
                    }
                }
                match found {
                    Some(found) => found,
                    None if tried => return Err(JwtError::BadSignature),
                    None => return Err(JwtError::UnknownKey),
                }
            }
        };

        let exp = claims.exp.ok_or(JwtError::MissingExpiry)?.0;
        // RFC 7519 §4.1.4: "the current date/time MUST be before the
        // expiration date/time listed in the "exp" claim. Implementers MAY
        // provide for some small leeway".
        if now >= exp.saturating_add(self.leeway) {
            return Err(JwtError::Expired);
        }
        // §4.1.5: "the current date/time MUST be after or equal to the
        // not-before date/time listed in the "nbf" claim."
        if let Some(NumericDate(nbf)) = claims.nbf
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        // §4.1.3: "If the principal processing the claim does not identify
        // itself with a value in the "aud" claim when this claim is
        // present, then the JWT MUST be rejected." We also require it.
        if !claims.aud.is_some_and(|a| a.contains(&self.audience)) {
            return Err(JwtError::WrongAudience);
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(JwtError::WrongIssuer);
        }
        if !claims
            .streams
            .as_deref()
            .is_some_and(|scope| scope_allows(scope, stream))
        {
            return Err(JwtError::NotInScope);
        }
        Ok(Viewer {
            subject: claims.sub,
            expires_at: exp,
            kid: key.kid.clone(),
        })
    }
}

/// Whether a `streams` scope covers `stream`: an entry is an exact name,
/// `*` (every stream), or a prefix followed by one trailing `*`
/// (`sports-*` covers `sports-1` and `sports-`). An entry with a `*`
/// anywhere else covers nothing.
///
/// ```
/// use ferrocast_edge::jwt::scope_allows;
/// let scope = ["news".to_string(), "sports-*".to_string()];
/// assert!(scope_allows(&scope, "news"));
/// assert!(scope_allows(&scope, "sports-42"));
/// assert!(!scope_allows(&scope, "newsroom"));
/// assert!(!scope_allows(&scope, "esports-1"));
/// ```
pub fn scope_allows(scope: &[String], stream: &str) -> bool {
    scope.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => !prefix.contains('*') && stream.starts_with(prefix),
        None => !entry.contains('*') && entry == stream,
    })
}

/// The token from an `Authorization` header value: `Bearer <token>`
/// (scheme case-insensitive, RFC 6750 §2.1). `None` for another scheme.
pub fn bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn decode_with(token: &str, key: &VerifyingKey) -> Result<RawClaims, JwtError> {
    use jsonwebtoken::errors::ErrorKind;
    match jsonwebtoken::decode::<RawClaims>(token, &key.key, &key.validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                JwtError::AlgorithmMismatch
            }
            _ => JwtError::Malformed,
        }),
    }
}

/// Signature and algorithm only: every claim is checked by
/// [`JwtVerifier::verify`] against the caller's clock.
fn validation_for(algorithm: JwtAlgorithm) -> Validation {
    let mut v = Validation::new(algorithm.to_jsonwebtoken());
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

fn decoding_key(k: &JwtKeyConfig) -> Result<DecodingKey, JwtConfigError> {
    let missing = |needs| JwtConfigError::MissingMaterial {
        kid: k.kid.clone(),
        algorithm: k.algorithm,
        needs,
    };
    let unexpected = |field| JwtConfigError::UnexpectedMaterial {
        kid: k.kid.clone(),
        algorithm: k.algorithm,
        field,
    };
    if k.algorithm == JwtAlgorithm::HS256 {
        if k.public_key_pem.is_some() {
            return Err(unexpected("public_key_pem"));
        }
        let secret = k.secret.as_ref().ok_or_else(|| missing("secret"))?;
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(JwtConfigError::SecretTooShort {
                kid: k.kid.clone(),
                len: secret.len(),
            });
        }
        return Ok(DecodingKey::from_secret(secret.expose().as_bytes()));
    }
    if k.secret.is_some() {
        return Err(unexpected("secret"));
    }
    let pem = k
        .public_key_pem
        .as_deref()
        .ok_or_else(|| missing("public_key_pem"))?
        .as_bytes();
    let key = match k.algorithm {
        JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
        JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDSA | JwtAlgorithm::HS256 => DecodingKey::from_ed_pem(pem),
    };
    key.map_err(|_| JwtConfigError::BadPem {
        kid: k.kid.clone(),
        algorithm: k.algorithm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_patterns() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(scope_allows(&s(&["*"]), "anything"));
        assert!(scope_allows(&s(&["a", "b"]), "b"));
        assert!(!scope_allows(&s(&["a", "b"]), "c"));
        assert!(scope_allows(&s(&["sports-*"]), "sports-"));
        assert!(!scope_allows(&s(&["sports-*"]), "sport"));
        // A star in the middle or twice is not a pattern we know.
        assert!(!scope_allows(&s(&["sp*rts"]), "sp*rts"));
        assert!(!scope_allows(&s(&["s**"]), "s*x"));
        assert!(!scope_allows(&s(&[]), "a"));
        // Exact match is case-sensitive, as stream names are.
        assert!(!scope_allows(&s(&["News"]), "news"));
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(JwtError::NotInScope.status(), 403);
        for e in [
            JwtError::Missing,
            JwtError::Malformed,
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::WrongAudience,
            JwtError::UnknownKey,
        ] {
            assert_eq!(e.status(), 401);
            assert_eq!(e.to_string(), e.reason());
        }
    }
}
