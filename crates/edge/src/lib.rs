//! The edge's sans-IO core: viewer JWTs, signed edge tokens and the
//! LL-HLS playlist rewriter.
//!
//! **What it is for.** An HTTP server (axum over HTTP/1.1 and 2, h3 over
//! QUIC) calls it once per request:
//!
//! 1. **Multivariant Playlist request** (`/live/{stream}/index.m3u8`):
//!    [`JwtVerifier::verify`] checks the viewer's JWT (from
//!    `Authorization: Bearer`, see [`jwt::bearer`], or a query parameter
//!    for players that cannot set headers): signature, `kid`, `exp`/`nbf`,
//!    `aud` and the `streams` scope. Then [`EdgeTokens::sign_session`]
//!    signs a session token and [`Rewriter::rewrite`] puts it on every URI
//!    of the playlist.
//! 2. **Every later request** (Media Playlists, parts, segments, maps):
//!    [`edge_token::query_param`] takes `token` from the query and
//!    [`EdgeTokens::verify`] checks it against the stream in the path. A
//!    Media Playlist is rewritten with a fresh short-lived token from
//!    [`EdgeTokens::sign_media`], so parts and segments carry a token
//!    renewed on every reload.
//!
//! Errors carry their HTTP status (`status()`: 401, or 403 for a JWT
//! whose scope lacks the stream) and a short `reason()` that never
//! contains a token.
//!
//! **What it is not for.** No sockets, no clock (`now` is an argument, Unix
//! seconds), no tokio, no caching or request coalescing; it knows HLS
//! syntax well enough to find URIs and nothing about codecs.
//!
//! ```
//! use ferrocast_edge::{EdgeConfig, EdgeTokens, JwtVerifier, Rewriter, edge_token};
//! use jsonwebtoken::{EncodingKey, Header, encode};
//!
//! let config: EdgeConfig = toml::from_str(r#"
//!     [jwt]
//!     audience = "ferrocast"
//!     [[jwt.keys]]
//!     kid = "auth-1"
//!     algorithm = "HS256"
//!     secret = "auth-service-secret-auth-service-secret"
//!     [token]
//!     keys = [{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }]
//!     [rewrite]
//!     own_origins = ["https://live.example.com"]
//! "#)?;
//! let jwts = JwtVerifier::new(&config.jwt)?;
//! let tokens = EdgeTokens::new(&config.token)?;
//! let rewriter = Rewriter::new(&config.rewrite)?;
//! let now = 1_750_000_000;
//!
//! // What the operator's auth service hands the viewer.
//! let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
//! header.kid = Some("auth-1".into());
//! let jwt = encode(
//!     &header,
//!     &serde_json::json!({
//!         "sub": "viewer-42", "aud": "ferrocast", "exp": now + 600,
//!         "streams": ["sports-*"],
//!     }),
//!     &EncodingKey::from_secret(b"auth-service-secret-auth-service-secret"),
//! )?;
//!
//! // GET /live/sports-1/index.m3u8 with Authorization: Bearer <jwt>
//! let viewer = jwts.verify(&jwt, "sports-1", now)?;
//! let session = tokens.sign_session("sports-1", &viewer, None, now);
//! let multivariant = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2500000\nvideo.m3u8\n";
//! let body = rewriter.rewrite(multivariant, &session)?;
//! assert_eq!(body.lines().nth(2), Some(format!("video.m3u8?token={session}").as_str()));
//! // The same JWT is refused for a stream outside its scope, with a 403.
//! assert_eq!(jwts.verify(&jwt, "news", now).unwrap_err().status(), 403);
//!
//! // GET /live/sports-1/video.m3u8?_HLS_msn=7&token=<session>, 5 s later.
//! let query = format!("_HLS_msn=7&token={session}");
//! let token = edge_token::query_param(&query, "token").unwrap_or("");
//! let claims = tokens.verify(token, "sports-1", now + 5)?;
//! let media = tokens.sign_media("sports-1", &claims, now + 5);
//! let body = rewriter.rewrite("#EXTM3U\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part7.0.m4s\"\n", &media)?;
//! assert!(body.ends_with(&format!("URI=\"part7.0.m4s?token={media}\"\n")));
//!
//! // GET /live/sports-1/part7.0.m4s?token=<media>
//! assert!(tokens.verify(&media, "sports-1", now + 6).is_ok());
//! assert_eq!(tokens.verify(&media, "news", now + 6).unwrap_err().status(), 401);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/edge_flow.rs` walks the same flow with printed output.
#![forbid(unsafe_code)]

#[cfg(feature = "server")]
pub mod coalesce;
pub mod coalesce_config;
pub mod edge_token;
pub mod http_upstream;
#[cfg(feature = "server")]
mod in_process;
pub mod jwt;
pub mod limits;
pub mod rewrite;
#[cfg(feature = "server")]
pub mod routed;
mod secret;
#[cfg(feature = "server")]
pub mod server;
pub mod upstream;
pub mod viewer_token;
pub mod viewers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[cfg(feature = "server")]
pub use coalesce::{Coalescing, CoalescingStats};
pub use coalesce_config::{CoalescingConfig, CoalescingConfigError};
pub use edge_token::{
    EdgeClaims, EdgeKeyConfig, EdgeTokenConfig, EdgeTokenConfigError, EdgeTokenError, EdgeTokens,
    SessionId, SessionLimit,
};
#[cfg(feature = "server")]
pub use http_upstream::HttpUpstream;
pub use http_upstream::{BreakerConfig, BreakerState, HttpUpstreamConfig, HttpUpstreamConfigError};
#[cfg(feature = "server")]
pub use in_process::InProcessUpstream;
pub use jwt::{
    JwtAlgorithm, JwtConfig, JwtConfigError, JwtError, JwtKeyConfig, JwtVerifier, Viewer,
};
pub use limits::{LimitsConfig, LimitsConfigError, RateLimit};
pub use rewrite::{KeyUris, RewriteConfig, RewriteConfigError, RewriteError, Rewriter};
#[cfg(feature = "server")]
pub use routed::{OriginResolver, RoutedUpstream};
pub use secret::Secret;
pub use upstream::{
    BodyStream, StreamingResponse, Upstream, UpstreamError, UpstreamRequest, UpstreamResponse,
};
pub use viewer_token::{MAX_VIEWER_TOKEN_TTL_SECS, MintError, ViewerTokenMinter};
pub use viewers::{ViewersConfig, ViewersConfigError};

/// Default of [`EdgeConfig::https_listen`].
pub const DEFAULT_HTTPS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443);

/// The edge's configuration (`[edge]`): its listeners and certificate,
/// viewer JWTs, edge tokens, the rewriter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address of the HTTPS listener: TCP for HTTP/1.1 and HTTP/2 and, with
    /// [`http3`](Self::http3), UDP on the same port number for HTTP/3.
    /// Default `0.0.0.0:8443`. Port 0 picks a free port (the same one for
    /// TCP and UDP).
    #[serde(default = "default_https_listen")]
    pub https_listen: SocketAddr,
    /// PEM certificate chain (leaf first). With neither this nor
    /// `tls_key`, a self-signed certificate is generated at start and its
    /// SPKI SHA-256 logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTP/3 on UDP `https_listen`. Default true.
    #[serde(default = "default_true")]
    pub http3: bool,
    /// A plain-HTTP (no TLS) listener for development, with the same
    /// routes and token checks. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_http_listen: Option<SocketAddr>,
    /// On SIGTERM or Ctrl-C, how long requests already in flight (blocking
    /// playlist requests, parts still being written) may take to finish
    /// before their connections are closed. New connections are refused
    /// at once. Default 10 000 ms (longer than the packager's default
    /// longest hold, 6 s).
    #[serde(default = "default_shutdown_drain_ms")]
    pub shutdown_drain_ms: u64,
    /// Viewer JWT verification.
    pub jwt: JwtConfig,
    /// Edge token signing.
    pub token: EdgeTokenConfig,
    /// Playlist rewriting. Default: relative URIs only, key URIs signed.
    #[serde(default)]
    pub rewrite: RewriteConfig,
    /// Per-IP and per-token request rate limits (`[edge.limits]`).
    /// Default: on, generous enough for LL-HLS players behind NAT.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Connection limits of the HTTPS, HTTP/3 and plain-HTTP listeners
    /// (`[edge.connections]`; each listener counts on its own): caps
    /// overall and per client, header-read and idle timeouts, concurrent
    /// HTTP/2 and HTTP/3 streams per connection.
    #[serde(default)]
    pub connections: ferrocast_connections::ConnectionLimits,
    /// Concurrent-viewer counting, optionally shared across edges in
    /// Redis (`[edge.viewers]`). Default: counted locally, no Redis.
    #[serde(default)]
    pub viewers: ViewersConfig,
    /// The coalescing cache in front of the origin (`[edge.coalesce]`):
    /// memory bound, object size, how long playlists answer equal
    /// requests. Default: see [`CoalescingConfig`].
    #[serde(default)]
    pub coalesce: CoalescingConfig,
    /// The remote packager origin (`[edge.origin]`) that `ferrocast edge`
    /// fetches from over HTTP. Default: none (`ferrocast up` serves its
    /// edge from the origin in its own process and ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<HttpUpstreamConfig>,
    /// Where the player page (`/play/NAME`) loads hls.js from: an
    /// `https://` URL or a path. Default: jsDelivr's hls.js 1.7.4, pinned
    /// by its Subresource Integrity hash; set it to serve your own copy
    /// (loaded without an integrity check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player_script_url: Option<String>,
}

fn default_shutdown_drain_ms() -> u64 {
    10_000
}

fn default_https_listen() -> SocketAddr {
    DEFAULT_HTTPS_LISTEN
}

fn default_true() -> bool {
    true
}

/// Why the edge's settings cannot be used (checked at start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeConfigError {
    /// `[edge.jwt]`.
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
    /// `[edge.token]`.
    #[error(transparent)]
    Token(#[from] EdgeTokenConfigError),
    /// `[edge.rewrite]`.
    #[error(transparent)]
    Rewrite(#[from] RewriteConfigError),
    /// `[edge.limits]`.
    #[error(transparent)]
    Limits(#[from] LimitsConfigError),
    /// `[edge.viewers]`.
    #[error(transparent)]
    Viewers(#[from] ViewersConfigError),
    /// `[edge.connections]`.
    #[error("edge.connections: {0}")]
    Connections(#[from] ferrocast_connections::ConnectionLimitsError),
    /// `[edge.coalesce]`.
    #[error(transparent)]
    Coalesce(#[from] CoalescingConfigError),
    /// Only one of `tls_cert` and `tls_key` is set.
    #[error(
        "edge: tls_cert and tls_key go together (set both, or neither for a self-signed certificate)"
    )]
    CertWithoutKey,
    /// `player_script_url` is neither an `https://` URL nor a path, or
    /// holds characters that do not belong in one.
    #[error(
        "edge: player_script_url must be an https:// URL or a /path without quotes, spaces or angle brackets"
    )]
    PlayerScriptUrl,
    /// The plain-HTTP listener is the HTTPS address.
    #[error("edge: plain_http_listen must differ from https_listen")]
    SameListener,
}

impl EdgeConfig {
    /// Checks every part of the configuration without opening anything:
    /// the keys parse, the rewriter settings are valid, the listeners make
    /// sense.
    pub fn validate(&self) -> Result<(), EdgeConfigError> {
        JwtVerifier::new(&self.jwt)?;
        EdgeTokens::new(&self.token)?;
        Rewriter::new(&self.rewrite)?;
        self.limits.validate()?;
        self.connections.validate()?;
        self.viewers.validate()?;
        self.coalesce.validate()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(EdgeConfigError::CertWithoutKey);
        }
        if self.plain_http_listen == Some(self.https_listen) && self.https_listen.port() != 0 {
            return Err(EdgeConfigError::SameListener);
        }
        if let Some(url) = &self.player_script_url
            && !valid_player_script_url(url)
        {
            return Err(EdgeConfigError::PlayerScriptUrl);
        }
        Ok(())
    }
}

/// Whether `url` may be the player page's script source: `https://…` or
/// a path on the edge, with nothing that could leave the HTML attribute
/// it is written into.
pub(crate) fn valid_player_script_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with('/'))
        && !url.starts_with("//")
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\'))
}
