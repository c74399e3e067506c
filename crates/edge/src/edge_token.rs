//! The compact edge token written into every manifest URI.
//!
//! After the viewer's JWT has been checked once (on the Multivariant
//! Playlist), every URI the edge hands out carries `token=<edge token>`: an
//! HMAC-SHA256 tag over the stream name, an expiry and an optional session
//! id. Checking it costs one HMAC and no key lookup beyond a one-byte key
//! id, so it runs on every part request.
//!
//! # Wire format
//!
//! base64url without padding (RFC 4648 §5) of
//!
//! ```text
//! version (1 byte, = 1) | kid (1) | expiry (8, Unix seconds, big-endian)
//!   | session length n (1, ≤ 64) | session (n bytes, UTF-8) | tag (16)
//! ```
//!
//! `tag` is HMAC-SHA256 over a domain label, every byte before the tag and
//! the length-prefixed stream name, truncated to its leftmost 128 bits (RFC
//! 2104 §5 allows truncation to no less than half the hash output). The
//! stream name is not carried, only bound: the request path names the
//! stream, so a token for one stream never verifies for another. Without a
//! session the token is 36 characters. The session id is authenticated,
//! not encrypted: use an opaque id, not an e-mail address.
//!
//! # Lifetimes
//!
//! Players reload a Media Playlist from the URI the Multivariant Playlist
//! gave them, so the token on those URIs must last the viewing session
//! ([`EdgeTokens::sign_session`]); parts and segments listed in a Media
//! Playlist get short tokens renewed on every reload
//! ([`EdgeTokens::sign_media`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::jwt::Viewer;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The token format version this code writes and reads.
pub const TOKEN_VERSION: u8 = 1;
/// Longest session id, in bytes.
pub const MAX_SESSION_LEN: usize = 64;
/// Length of the truncated HMAC tag, in bytes.
pub const TAG_LEN: usize = 16;
/// Shortest edge key secret, in bytes (the HMAC-SHA256 output size).
pub const MIN_SECRET_LEN: usize = 32;
/// Fixed bytes before the session: version, kid, expiry, session length.
const HEAD_LEN: usize = 1 + 1 + 8 + 1;
/// Longest decoded token.
const MAX_RAW_LEN: usize = HEAD_LEN + MAX_SESSION_LEN + TAG_LEN;
/// Longest encoded token, in characters; longer input is refused unread.
pub const MAX_TOKEN_LEN: usize = MAX_RAW_LEN.div_ceil(3) * 4;
/// Domain separation: these tags are never valid for another purpose.
const LABEL: &[u8] = b"ferrocast edge token\0";

/// Default of [`EdgeTokenConfig::session_ttl_secs`]: 6 hours.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 6 * 3600;
/// Default of [`EdgeTokenConfig::media_ttl_secs`]: 2 minutes.
pub const DEFAULT_MEDIA_TTL_SECS: u64 = 120;

/// One edge signing key (`[[edge.token.keys]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeKeyConfig {
    /// Key id written into each token. Unique.
    pub kid: u8,
    /// HMAC key, at least [`MIN_SECRET_LEN`] bytes. Every edge instance
    /// needs the same keys.
    pub secret: Secret,
}

/// How long a session token may outlive the viewer's JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimit {
    /// A session ends when the JWT expires, or after `session_ttl_secs`,
    /// whichever comes first. The viewer's player must fetch the
    /// Multivariant Playlist again with a fresh JWT to go on.
    #[default]
    JwtExpiry,
    /// A session lasts `session_ttl_secs` from the Multivariant Playlist
    /// request, even past the JWT's expiry.
    SessionTtl,
}

/// Edge token settings (`[edge.token]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeTokenConfig {
    /// The keys; the first signs, all verify. Rotation: put the new key
    /// first, keep the old one until `session_ttl_secs` has passed.
    pub keys: Vec<EdgeKeyConfig>,
    /// Lifetime of the tokens on the URIs of a Multivariant Playlist
    /// (players reload Media Playlists from them). Default 6 h.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u64,
    /// Lifetime of the tokens on the URIs of a Media Playlist (parts,
    /// segments, maps, hints, reports), renewed on every reload. Default
    /// 120 s.
    #[serde(default = "default_media_ttl")]
    pub media_ttl_secs: u64,
    /// Whether a session may outlive the JWT. Default `jwt_expiry`.
    #[serde(default)]
    pub session_limit: SessionLimit,
}

fn default_session_ttl() -> u64 {
    DEFAULT_SESSION_TTL_SECS
}

fn default_media_ttl() -> u64 {
    DEFAULT_MEDIA_TTL_SECS
}

/// An edge token configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeTokenConfigError {
    /// `keys` is empty.
    #[error("edge.token: no keys configured")]
    NoKeys,
    /// Two keys with one `kid`.
    #[error("edge.token: kid {0} appears twice")]
    DuplicateKid(u8),
    /// A secret shorter than [`MIN_SECRET_LEN`].
    #[error("edge.token: key {kid}: secret is {len} bytes, at least {MIN_SECRET_LEN} needed")]
    SecretTooShort {
        /// The key.
        kid: u8,
        /// The secret's length.
        len: usize,
    },
    /// A zero TTL.
    #[error("edge.token: {0} must be positive")]
    ZeroTtl(&'static str),
}

/// Why an edge token was refused. All map to 401; [`reason`](Self::reason)
/// is safe to send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeTokenError {
    /// The request carried no token.
    #[error("missing token")]
    Missing,
    /// Not base64url, too short or too long, or inconsistent lengths.
    #[error("malformed token")]
    Malformed,
    /// A format version this edge does not read.
    #[error("unsupported token version")]
    UnsupportedVersion,
    /// A key id no configured key has (retired, or forged).
    #[error("unknown key")]
    UnknownKey,
    /// The tag does not verify: forged, altered, or for another stream.
    #[error("bad signature")]
    BadSignature,
    /// The expiry has passed.
    #[error("token expired")]
    Expired,
}

impl EdgeTokenError {
    /// The HTTP status: always 401 (the viewer must authenticate again).
    pub fn status(&self) -> u16 {
        401
    }

    /// A short reason for the response body and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            EdgeTokenError::Missing => "missing token",
            EdgeTokenError::Malformed => "malformed token",
            EdgeTokenError::UnsupportedVersion => "unsupported token version",
            EdgeTokenError::UnknownKey => "unknown key",
            EdgeTokenError::BadSignature => "bad signature",
            EdgeTokenError::Expired => "token expired",
        }
    }
}

/// A session or viewer id carried in edge tokens: UTF-8, 1 to
/// [`MAX_SESSION_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

/// A session id that is empty or too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session id must be 1 to {MAX_SESSION_LEN} bytes")]
pub struct InvalidSessionId;

impl SessionId {
    /// Checks and wraps a session id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidSessionId> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_SESSION_LEN {
            return Err(InvalidSessionId);
        }
        Ok(SessionId(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a verified edge token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeClaims {
    /// The key that signed it.
    pub kid: u8,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The session id, if one was signed in.
    pub session: Option<SessionId>,
}

/// Signs and verifies edge tokens. Build once from [`EdgeTokenConfig`],
/// share across requests.
#[derive(Clone)]
pub struct EdgeTokens {
    /// Keyed MACs by kid; the first signs. Cloning a keyed MAC skips
    /// hashing the key again per token.
    keys: Vec<(u8, HmacSha256)>,
    session_ttl: u64,
    media_ttl: u64,
    session_limit: SessionLimit,
}

impl fmt::Debug for EdgeTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeTokens")
            .field(
                "kids",
                &self.keys.iter().map(|(kid, _)| *kid).collect::<Vec<_>>(),
            )
            .field("session_ttl", &self.session_ttl)
            .field("media_ttl", &self.media_ttl)
            .field("session_limit", &self.session_limit)
            .finish()
    }
}

impl EdgeTokens {
    /// Builds the signer, checking every key.
    pub fn new(config: &EdgeTokenConfig) -> Result<Self, EdgeTokenConfigError> {
        if config.keys.is_empty() {
            return Err(EdgeTokenConfigError::NoKeys);
        }
        if config.session_ttl_secs == 0 {
            return Err(EdgeTokenConfigError::ZeroTtl("session_ttl_secs"));
        }
        if config.media_ttl_secs == 0 {
            return Err(EdgeTokenConfigError::ZeroTtl("media_ttl_secs"));
        }
        let mut keys = Vec::with_capacity(config.keys.len());
        for k in &config.keys {
            if keys.iter().any(|(kid, _)| *kid == k.kid) {
                return Err(EdgeTokenConfigError::DuplicateKid(k.kid));
            }
            if k.secret.len() < MIN_SECRET_LEN {
                return Err(EdgeTokenConfigError::SecretTooShort {
                    kid: k.kid,
                    len: k.secret.len(),
                });
            }
            // HMAC accepts keys of any length; this cannot fail.
            let mac = HmacSha256::new_from_slice(k.secret.expose().as_bytes())
                .map_err(|_| EdgeTokenConfigError::NoKeys)?;
            keys.push((k.kid, mac));
        }
        Ok(EdgeTokens {
            keys,
            session_ttl: config.session_ttl_secs,
            media_ttl: config.media_ttl_secs,
            session_limit: config.session_limit,
        })
    }

    /// Signs a token for `stream`, valid until `expiry` (Unix seconds,
    /// exclusive), with the first configured key.
    pub fn sign(&self, stream: &str, expiry: u64, session: Option<&SessionId>) -> String {
        let session = session.map_or(&[][..], |s| s.0.as_bytes());
        let mut raw = [0u8; MAX_RAW_LEN];
        let body_len = HEAD_LEN + session.len();
        let (kid, key) = &self.keys[0];
        raw[0] = TOKEN_VERSION;
        raw[1] = *kid;
        raw[2..10].copy_from_slice(&expiry.to_be_bytes());
        // SessionId guarantees at most MAX_SESSION_LEN (64) bytes.
        raw[10] = session.len() as u8;
        raw[HEAD_LEN..body_len].copy_from_slice(session);
        let tag = mac(key, &raw[..body_len], stream).finalize().into_bytes();
        raw[body_len..body_len + TAG_LEN].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(&raw[..body_len + TAG_LEN])
    }

    /// Verifies `token` for a request to `stream` at `now` (Unix seconds).
    ///
    /// The tag is compared in constant time (`hmac`'s
    /// `verify_truncated_left`, built on `subtle`), and the expiry is
    /// looked at only once the tag has verified, so a forger learns
    /// nothing from the error. An empty `token` is
    /// [`EdgeTokenError::Missing`].
    pub fn verify(
        &self,
        token: &str,
        stream: &str,
        now: u64,
    ) -> Result<EdgeClaims, EdgeTokenError> {
        if token.is_empty() {
            return Err(EdgeTokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(EdgeTokenError::Malformed);
        }
        // A base64 decode needs room for its rounding; MAX_TOKEN_LEN / 4 * 3
        // is at least MAX_RAW_LEN.
        let mut raw = [0u8; MAX_TOKEN_LEN / 4 * 3];
        // The engine refuses padding and non-zero trailing bits, so each
        // token has exactly one spelling.
        let len = URL_SAFE_NO_PAD
            .decode_slice(token, &mut raw)
            .map_err(|_| EdgeTokenError::Malformed)?;
        let raw = &raw[..len];
        if len < HEAD_LEN + TAG_LEN {
            return Err(EdgeTokenError::Malformed);
        }
        if raw[0] != TOKEN_VERSION {
            return Err(EdgeTokenError::UnsupportedVersion);
        }
        let session_len = usize::from(raw[10]);
        if session_len > MAX_SESSION_LEN || len != HEAD_LEN + session_len + TAG_LEN {
            return Err(EdgeTokenError::Malformed);
        }
        let kid = raw[1];
        let key = self
            .keys
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(EdgeTokenError::UnknownKey)?;
        let body_len = HEAD_LEN + session_len;
        mac(key, &raw[..body_len], stream)
            .verify_truncated_left(&raw[body_len..])
            .map_err(|_| EdgeTokenError::BadSignature)?;

        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&raw[2..10]);
        let expires_at = u64::from_be_bytes(expiry);
        if now >= expires_at {
            return Err(EdgeTokenError::Expired);
        }
        let session = if session_len == 0 {
            None
        } else {
            // Signed by us, so well-formed unless a key leaked; refuse
            // rather than trust.
            let s = std::str::from_utf8(&raw[HEAD_LEN..body_len])
                .map_err(|_| EdgeTokenError::Malformed)?;
            Some(SessionId(s.to_owned()))
        };
        Ok(EdgeClaims {
            kid,
            expires_at,
            session,
        })
    }

    /// Expiry of a session that starts now for `viewer` (the tokens on a
    /// Multivariant Playlist's URIs): `now + session_ttl_secs`, capped at
    /// the JWT's expiry under [`SessionLimit::JwtExpiry`].
    pub fn session_expiry(&self, viewer: &Viewer, now: u64) -> u64 {
        let ttl_end = now.saturating_add(self.session_ttl);
        match self.session_limit {
            SessionLimit::JwtExpiry => ttl_end.min(viewer.expires_at),
            SessionLimit::SessionTtl => ttl_end,
        }
    }

    /// Signs the token for a Multivariant Playlist's URIs: a whole session.
    pub fn sign_session(
        &self,
        stream: &str,
        viewer: &Viewer,
        session: Option<&SessionId>,
        now: u64,
    ) -> String {
        self.sign(stream, self.session_expiry(viewer, now), session)
    }

    /// Signs the token for a Media Playlist's URIs, given the verified
    /// token of the playlist request: `now + media_ttl_secs`, never past
    /// the session's own expiry, same session id.
    pub fn sign_media(&self, stream: &str, session: &EdgeClaims, now: u64) -> String {
        let expiry = now.saturating_add(self.media_ttl).min(session.expires_at);
        self.sign(stream, expiry, session.session.as_ref())
    }
}

fn mac(key: &HmacSha256, body: &[u8], stream: &str) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(LABEL);
    mac.update(body);
    mac.update(&(stream.len() as u64).to_be_bytes());
    mac.update(stream.as_bytes());
    mac
}

/// The value of the first `name` parameter in a URL query string (without
/// the leading `?`), as written: edge tokens are base64url and need no
/// percent-decoding. `None` if absent.
///
/// ```
/// use ferrocast_edge::edge_token::query_param;
/// assert_eq!(query_param("_HLS_msn=4&token=abc", "token"), Some("abc"));
/// assert_eq!(query_param("tokens=1", "token"), None);
/// ```
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(keys: &[(u8, &str)]) -> EdgeTokenConfig {
        EdgeTokenConfig {
            keys: keys
                .iter()
                .map(|(kid, s)| EdgeKeyConfig {
                    kid: *kid,
                    secret: Secret::new(*s),
                })
                .collect(),
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            media_ttl_secs: DEFAULT_MEDIA_TTL_SECS,
            session_limit: SessionLimit::JwtExpiry,
        }
    }

    const K1: &str = "k1-k1-k1-k1-k1-k1-k1-k1-k1-k1-k1-k1";
    const K2: &str = "k2-k2-k2-k2-k2-k2-k2-k2-k2-k2-k2-k2";

    fn tokens() -> EdgeTokens {
        EdgeTokens::new(&config(&[(1, K1)])).unwrap()
    }

    #[test]
    fn round_trip_and_size() {
        let t = tokens();
        let token = t.sign("live-sports-1", 2_000_000_000, None);
        assert_eq!(token.len(), 36, "{token}");
        assert!(token.len() <= 64);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        let claims = t.verify(&token, "live-sports-1", 1_999_999_999).unwrap();
        assert_eq!(
            claims,
            EdgeClaims {
                kid: 1,
                expires_at: 2_000_000_000,
                session: None
            }
        );
        let sid = SessionId::new("v-7f3a").unwrap();
        let token = t.sign("s", 10, Some(&sid));
        assert_eq!(t.verify(&token, "s", 9).unwrap().session, Some(sid));
    }

    #[test]
    fn refusals() {
        let t = tokens();
        let token = t.sign("a", 100, None);
        assert_eq!(t.verify(&token, "a", 100), Err(EdgeTokenError::Expired));
        assert_eq!(t.verify(&token, "b", 1), Err(EdgeTokenError::BadSignature));
        assert_eq!(t.verify(&token, "a ", 1), Err(EdgeTokenError::BadSignature));
        assert_eq!(t.verify("", "a", 1), Err(EdgeTokenError::Missing));
        assert_eq!(t.verify("!!", "a", 1), Err(EdgeTokenError::Malformed));
        assert_eq!(t.verify("AAAA", "a", 1), Err(EdgeTokenError::Malformed));
        let long = "A".repeat(MAX_TOKEN_LEN + 4);
        assert_eq!(t.verify(&long, "a", 1), Err(EdgeTokenError::Malformed));
        // Padded spelling of a valid token.
        assert_eq!(
            t.verify(&format!("{token}="), "a", 1),
            Err(EdgeTokenError::Malformed)
        );
        // Signed with a key this edge does not have.
        let other = EdgeTokens::new(&config(&[(9, K2)])).unwrap();
        let foreign = other.sign("a", 100, None);
        assert_eq!(t.verify(&foreign, "a", 1), Err(EdgeTokenError::UnknownKey));
        // Same kid, different secret.
        let other = EdgeTokens::new(&config(&[(1, K2)])).unwrap();
        let forged = other.sign("a", 100, None);
        assert_eq!(t.verify(&forged, "a", 1), Err(EdgeTokenError::BadSignature));
        // Version byte changed.
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[0] = 2;
        assert_eq!(
            t.verify(&URL_SAFE_NO_PAD.encode(&raw), "a", 1),
            Err(EdgeTokenError::UnsupportedVersion)
        );
        // Extended expiry with the old tag.
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[9] = raw[9].wrapping_add(1);
        assert_eq!(
            t.verify(&URL_SAFE_NO_PAD.encode(&raw), "a", 1),
            Err(EdgeTokenError::BadSignature)
        );
    }

    #[test]
    fn one_token_has_one_spelling() {
        // 22 session characters make 49 bytes: the last base64 character
        // carries 4 unused bits. Setting them must not give a second
        // spelling of the same token.
        let t = tokens();
        let session = SessionId::new("abcdefghijklmnopqrstuv").unwrap();
        let token = t.sign("s", 50, Some(&session));
        assert_eq!(token.len() * 6 % 8, 4, "{token}");
        let last = token.as_bytes()[token.len() - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|&c| c == last).unwrap();
        for low in 1..16 {
            let other = alphabet[(index & !15) | low] as char;
            let respelled = format!("{}{other}", &token[..token.len() - 1]);
            assert!(t.verify(&respelled, "s", 0).is_err(), "{respelled}");
        }
        assert!(t.verify(&token, "s", 0).is_ok());
    }

    #[test]
    fn rotation() {
        let old = EdgeTokens::new(&config(&[(1, K1)])).unwrap();
        let rotated = EdgeTokens::new(&config(&[(2, K2), (1, K1)])).unwrap();
        let before = old.sign("s", 50, None);
        let after = rotated.sign("s", 50, None);
        assert_eq!(rotated.verify(&before, "s", 0).unwrap().kid, 1);
        assert_eq!(rotated.verify(&after, "s", 0).unwrap().kid, 2);
        assert_eq!(old.verify(&after, "s", 0), Err(EdgeTokenError::UnknownKey));
    }

    #[test]
    fn config_checks() {
        assert_eq!(
            EdgeTokens::new(&config(&[])).unwrap_err(),
            EdgeTokenConfigError::NoKeys
        );
        assert_eq!(
            EdgeTokens::new(&config(&[(1, K1), (1, K2)])).unwrap_err(),
            EdgeTokenConfigError::DuplicateKid(1)
        );
        assert_eq!(
            EdgeTokens::new(&config(&[(1, "short")])).unwrap_err(),
            EdgeTokenConfigError::SecretTooShort { kid: 1, len: 5 }
        );
        let mut c = config(&[(1, K1)]);
        c.media_ttl_secs = 0;
        assert!(matches!(
            EdgeTokens::new(&c),
            Err(EdgeTokenConfigError::ZeroTtl(_))
        ));
        let debug = format!("{:?} {:?}", c, tokens());
        assert!(!debug.contains(K1), "{debug}");
    }

    #[test]
    fn lifetimes() {
        let t = tokens();
        let viewer = Viewer {
            subject: None,
            expires_at: 1_000,
            kid: "k".into(),
        };
        // Bound to the JWT by default.
        assert_eq!(t.session_expiry(&viewer, 500), 1_000);
        let mut c = config(&[(1, K1)]);
        c.session_limit = SessionLimit::SessionTtl;
        let free = EdgeTokens::new(&c).unwrap();
        assert_eq!(
            free.session_expiry(&viewer, 500),
            500 + DEFAULT_SESSION_TTL_SECS
        );
        // Media tokens: short, and never past the session.
        let session = t
            .verify(&t.sign_session("s", &viewer, None, 500), "s", 500)
            .unwrap();
        let media = t.sign_media("s", &session, 600);
        assert_eq!(t.verify(&media, "s", 600).unwrap().expires_at, 720);
        let media = t.sign_media("s", &session, 950);
        assert_eq!(t.verify(&media, "s", 950).unwrap().expires_at, 1_000);
    }

    #[test]
    fn session_ids() {
        assert!(SessionId::new("").is_err());
        assert!(SessionId::new("x".repeat(MAX_SESSION_LEN + 1)).is_err());
        assert!(SessionId::new("x".repeat(MAX_SESSION_LEN)).is_ok());
        let t = tokens();
        let sid = SessionId::new("é".repeat(MAX_SESSION_LEN / 2)).unwrap();
        let token = t.sign("s", 10, Some(&sid));
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(t.verify(&token, "s", 0).unwrap().session, Some(sid));
    }

    proptest! {
        #[test]
        fn sign_verify_round_trip(
            stream in "\\PC{1,40}",
            expiry in 1u64..,
            session in proptest::option::of("\\PC{1,16}"),
        ) {
            let t = tokens();
            let sid = session.map(|s| SessionId::new(s).unwrap());
            let token = t.sign(&stream, expiry, sid.as_ref());
            let claims = t.verify(&token, &stream, expiry - 1).unwrap();
            prop_assert_eq!(claims.expires_at, expiry);
            prop_assert_eq!(claims.session, sid);
            prop_assert_eq!(t.verify(&token, &format!("{stream}x"), 0), Err(EdgeTokenError::BadSignature));
        }

        #[test]
        fn any_string_never_panics(s in "\\PC{0,200}", stream in "[a-z]{0,8}", now in any::<u64>()) {
            let _ = tokens().verify(&s, &stream, now);
        }

        #[test]
        fn any_base64_never_verifies(raw in proptest::collection::vec(any::<u8>(), 0..100)) {
            let s = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(tokens().verify(&s, "s", 0).is_err());
        }

        #[test]
        fn any_single_byte_change_fails(
            expiry in 1u64..,
            session in proptest::option::of("[a-z0-9]{1,20}"),
            pos in any::<proptest::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let t = tokens();
            let sid = session.map(|s| SessionId::new(s).unwrap());
            let token = t.sign("stream", expiry, sid.as_ref());
            let mut bytes = token.clone().into_bytes();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            if let Ok(changed) = String::from_utf8(bytes) {
                prop_assert!(t.verify(&changed, "stream", 0).is_err(), "{} -> {}", token, changed);
            }
        }
    }
}
