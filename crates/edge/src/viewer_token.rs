//! Viewer JWTs made by Ferrocast itself, for operators without an auth
//! service of their own: the control plane's API mints them with one of
//! the edge's HS256 keys, and the edge verifies them like any other
//! ([`crate::JwtVerifier`]).
//!
//! The key is the **last** HS256 key of `[edge.jwt] keys`: to rotate, add
//! a new key at the end (new tokens use it at once), and remove the old
//! one once the tokens it signed have expired. RS256, ES256 and EdDSA keys
//! are verification keys only (the edge never holds their private half),
//! so a configuration with no HS256 key mints nothing.
//!
//! ```
//! use ferrocast_edge::{JwtConfig, JwtVerifier, ViewerTokenMinter};
//! let config: JwtConfig = toml::from_str(r#"
//!     audience = "ferrocast"
//!     [[keys]]
//!     kid = "2026-12"
//!     algorithm = "HS256"
//!     secret = "0123456789abcdef0123456789abcdef"
//! "#).unwrap();
//! let minter = ViewerTokenMinter::from_config(&config).unwrap();
//! let now = 1_800_000_000;
//! let jwt = minter.mint("sports-1", Some("ticket-42"), now, 3600).unwrap();
//! let viewer = JwtVerifier::new(&config).unwrap().verify(&jwt, "sports-1", now).unwrap();
//! assert_eq!(viewer.subject.as_deref(), Some("ticket-42"));
//! assert_eq!(viewer.expires_at, now + 3600);
//! ```

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::jwt::{JwtAlgorithm, JwtConfig};

/// Longest lifetime of a minted token, seconds (one day).
pub const MAX_VIEWER_TOKEN_TTL_SECS: u64 = 24 * 3600;

/// Makes viewer JWTs for one stream each with the edge's newest HS256 key.
pub struct ViewerTokenMinter {
    kid: String,
    key: EncodingKey,
    audience: String,
    issuer: Option<String>,
}

impl fmt::Debug for ViewerTokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewerTokenMinter")
            .field("kid", &self.kid)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Why no token was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The lifetime is 0 or above [`MAX_VIEWER_TOKEN_TTL_SECS`].
    #[error("ttl_secs must be 1 to {MAX_VIEWER_TOKEN_TTL_SECS} (got {0})")]
    BadTtl(u64),
    /// The signature could not be made (never expected with a validated
    /// key).
    #[error("signing failed")]
    Signing,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    iat: u64,
    nbf: u64,
    exp: u64,
    streams: [&'a str; 1],
}

impl ViewerTokenMinter {
    /// The minter of `config`: its last HS256 key, its audience and
    /// issuer; `None` without an HS256 key.
    pub fn from_config(config: &JwtConfig) -> Option<Self> {
        let key = config
            .keys
            .iter()
            .rev()
            .find(|k| k.algorithm == JwtAlgorithm::HS256)?;
        let secret = key.secret.as_ref()?;
        Some(ViewerTokenMinter {
            kid: key.kid.clone(),
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
        })
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `stream` only (the `streams` claim is exactly it, no
    /// pattern), valid from `now` (Unix seconds) for `ttl_secs`, with
    /// `subject` as `sub` when given.
    pub fn mint(
        &self,
        stream: &str,
        subject: Option<&str>,
        now: u64,
        ttl_secs: u64,
    ) -> Result<String, MintError> {
        if ttl_secs == 0 || ttl_secs > MAX_VIEWER_TOKEN_TTL_SECS {
            return Err(MintError::BadTtl(ttl_secs));
        }
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            aud: &self.audience,
            iss: self.issuer.as_deref(),
            sub: subject,
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            streams: [stream],
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| MintError::Signing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{JwtError, JwtKeyConfig, JwtVerifier};
    use crate::secret::Secret;

    fn hs256(kid: &str, secret: &str) -> JwtKeyConfig {
        JwtKeyConfig {
            kid: kid.into(),
            algorithm: JwtAlgorithm::HS256,
            secret: Some(Secret::new(secret)),
            public_key_pem: None,
        }
    }

    fn config(keys: Vec<JwtKeyConfig>) -> JwtConfig {
        JwtConfig {
            audience: "ferrocast".into(),
            issuer: Some("https://ferrocast.example".into()),
            leeway_secs: 0,
            keys,
        }
    }

    #[test]
    fn minted_tokens_verify_for_their_stream_only_and_expire() {
        let config = config(vec![
            hs256("old", "0123456789abcdef0123456789abcdef"),
            hs256("new", "fedcba9876543210fedcba9876543210"),
        ]);
        let minter = ViewerTokenMinter::from_config(&config).unwrap();
        assert_eq!(minter.kid(), "new", "the newest HS256 key signs");
        let verifier = JwtVerifier::new(&config).unwrap();
        let now = 1_800_000_000;
        let jwt = minter.mint("news", None, now, 60).unwrap();
        let viewer = verifier.verify(&jwt, "news", now).unwrap();
        assert_eq!(viewer.kid, "new");
        assert_eq!(viewer.subject, None);
        assert_eq!(
            verifier.verify(&jwt, "news-2", now),
            Err(JwtError::NotInScope)
        );
        assert_eq!(
            verifier.verify(&jwt, "news", now + 61),
            Err(JwtError::Expired)
        );
        // Not usable before it was made (clock skew the other way).
        assert!(verifier.verify(&jwt, "news", now - 10).is_err());
        assert!(!format!("{minter:?}").contains("fedcba"));
    }

    #[test]
    fn lifetimes_are_bounded_and_public_keys_mint_nothing() {
        let config = config(vec![hs256("k", "0123456789abcdef0123456789abcdef")]);
        let minter = ViewerTokenMinter::from_config(&config).unwrap();
        assert_eq!(minter.mint("a", None, 0, 0), Err(MintError::BadTtl(0)));
        let too_long = MAX_VIEWER_TOKEN_TTL_SECS + 1;
        assert_eq!(
            minter.mint("a", None, 0, too_long),
            Err(MintError::BadTtl(too_long))
        );
        let public_only = JwtConfig {
            keys: vec![JwtKeyConfig {
                kid: "rsa".into(),
                algorithm: JwtAlgorithm::RS256,
                secret: None,
                public_key_pem: Some("-----BEGIN PUBLIC KEY-----".into()),
            }],
            ..config
        };
        assert!(ViewerTokenMinter::from_config(&public_only).is_none());
    }
}
