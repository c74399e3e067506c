//! The rate limits of [`crate::limits`] applied to requests: which keys a
//! request counts against, and the 429 it gets when over a limit.
//!
//! Keys are derived without the expensive checks: the client address from
//! the socket ([`ClientAddr`], put in the request's extensions by each
//! listener), and for tokens
//!
//! - an edge token (Media Playlists, parts, segments) is verified first
//!   (one HMAC, the cost of the check `respond` repeats): a valid one
//!   counts against its session id, or against itself when it carries
//!   none; one that does not verify counts against itself;
//! - a viewer JWT (Multivariant Playlist) counts against itself: its
//!   signature is not checked here, so its claims (`sub`) cannot be
//!   trusted to name a viewer.
//!
//! So whatever a client can choose freely (a forged token, a made-up
//! `sub`) only ever draws from its own bucket, never from another
//! viewer's. Tokens are kept only as a keyed 64-bit hash (SipHash with a
//! random key per process), never as text.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tracing::debug;

use super::metrics::EdgeMetrics;
use super::routes::{Target, bearer_of};
use crate::EdgeTokens;
use crate::edge_token::query_param;
use crate::limits::{Decision, LimitsConfig, LimitsConfigError, RateLimiter, ip_key};

/// The address a request came from, as the listener saw it (the TCP or
/// QUIC peer). The edge's listeners put it in every request's
/// [`http::Extensions`]; a request without it is not limited per IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Both limits and what they count into.
pub(crate) struct Limits {
    per_ip: Option<RateLimiter<u128>>,
    per_token: Option<RateLimiter<u64>>,
    /// Sessions minted per viewer (verified JWT `sub`, else the JWT).
    sessions: Option<RateLimiter<u64>>,
    ipv6_prefix_len: u8,
    hasher: RandomState,
    metrics: EdgeMetrics,
}

/// Which of the two limits.
#[derive(Debug, Clone, Copy)]
enum By {
    Ip,
    Token,
    Viewer,
}

impl By {
    fn label(self) -> &'static str {
        match self {
            By::Ip => "ip",
            By::Token => "token",
            By::Viewer => "viewer_sessions",
        }
    }
}

/// Domain separation of the token keys.
const SESSION_KEY: u8 = 0;
const TOKEN_KEY: u8 = 1;
const SUBJECT_KEY: u8 = 2;

impl Limits {
    /// The limits of `config`, counting into `metrics`.
    pub(crate) fn new(
        config: &LimitsConfig,
        metrics: EdgeMetrics,
    ) -> Result<Self, LimitsConfigError> {
        config.validate()?;
        Ok(Limits {
            per_ip: config
                .per_ip
                .enabled
                .then(|| RateLimiter::new(&config.per_ip, config.max_keys)),
            per_token: config
                .per_token
                .enabled
                .then(|| RateLimiter::new(&config.per_token, config.max_keys)),
            sessions: config.sessions_per_viewer.enabled.then(|| {
                let limit = &config.sessions_per_viewer;
                RateLimiter::with_interval(limit.interval(), limit.burst, config.max_keys)
            }),
            ipv6_prefix_len: config.ipv6_prefix_len,
            hasher: RandomState::new(),
            metrics,
        })
    }

    /// A 429 when `request` is over a limit at `now`; `None` to go on.
    /// The per-IP limit is counted first; a request it refuses does not
    /// use up its token's bucket. `unix_now` is for checking edge tokens.
    pub(crate) fn check(
        &self,
        request: &Request<()>,
        target: Option<Target<'_>>,
        tokens: &EdgeTokens,
        token_param: &str,
        unix_now: u64,
        now: Instant,
    ) -> Option<Response<Bytes>> {
        if let (Some(limiter), Some(ClientAddr(addr))) =
            (&self.per_ip, request.extensions().get::<ClientAddr>())
        {
            let key = ip_key(addr.ip(), self.ipv6_prefix_len);
            if let Some(refusal) = self.decide(By::Ip, limiter.check(key, now)) {
                return Some(refusal);
            }
        }
        let limiter = self.per_token.as_ref()?;
        let target = target?;
        let presented = request
            .uri()
            .query()
            .and_then(|q| query_param(q, token_param));
        let key = match target {
            _ if target.is_entry() => self
                .hasher
                .hash_one((TOKEN_KEY, bearer_of(request).or(presented)?)),
            Target::Multivariant { stream }
            | Target::MediaPlaylist { stream }
            | Target::Media { stream, .. }
            | Target::Vod { stream, .. } => {
                let token = presented.filter(|t| !t.is_empty())?;
                match tokens.verify(token, stream, unix_now) {
                    Ok(claims) => match claims.session {
                        Some(session) => self.hasher.hash_one((SESSION_KEY, session.as_str())),
                        None => self.hasher.hash_one((TOKEN_KEY, token)),
                    },
                    Err(_) => self.hasher.hash_one((TOKEN_KEY, token)),
                }
            }
        };
        self.decide(By::Token, limiter.check(key, now))
    }

    /// A 429 when the viewer of a verified JWT (its `sub`, else the JWT
    /// itself: a `jti` names one JWT, as the JWT does) has started more
    /// sessions than `sessions_per_viewer` allows; `None` to mint one.
    /// Checked after the signature, so the `sub` is the issuer's word.
    pub(crate) fn mint_session(
        &self,
        subject: Option<&str>,
        jwt: &str,
        now: Instant,
    ) -> Option<Response<Bytes>> {
        let limiter = self.sessions.as_ref()?;
        let key = match subject {
            Some(subject) => self.hasher.hash_one((SUBJECT_KEY, subject)),
            None => self.hasher.hash_one((TOKEN_KEY, jwt)),
        };
        self.decide(By::Viewer, limiter.check(key, now))
    }

    fn decide(&self, by: By, decision: Decision) -> Option<Response<Bytes>> {
        match decision {
            Decision::Allowed => None,
            Decision::Untracked => {
                self.metrics
                    .rate_limit_untracked
                    .with_label_values(&[by.label()])
                    .inc();
                None
            }
            Decision::Refused { retry_after } => {
                self.metrics
                    .rate_limited
                    .with_label_values(&[by.label()])
                    .inc();
                debug!(by = by.label(), ?retry_after, "rate limited");
                Some(too_many(by, retry_after))
            }
        }
    }
}

/// 429 with `Retry-After` in whole seconds, at least 1 (RFC 9110 §10.2.3:
/// `Retry-After = HTTP-date / delay-seconds`; RFC 6585 §4 for 429).
fn too_many(by: By, retry_after: Duration) -> Response<Bytes> {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let reason = match by {
        By::Ip => "too many requests from this address\n",
        By::Token => "too many requests for this session\n",
        By::Viewer => "too many sessions for this viewer\n",
    };
    let mut response = Response::new(Bytes::from_static(reason.as_bytes()));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        for (wait, secs) in [
            (Duration::from_millis(1), "1"),
            (Duration::from_millis(1000), "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::ZERO, "1"),
        ] {
            let response = too_many(By::Token, wait);
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()[header::RETRY_AFTER], secs, "{wait:?}");
        }
    }
}
