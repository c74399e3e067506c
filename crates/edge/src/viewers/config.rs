//! `[edge.viewers]`: how concurrent viewers are counted and shared.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Default of [`ViewersConfig::window_secs`].
pub const DEFAULT_WINDOW_SECS: u64 = 30;
/// Default of [`ViewersConfig::interval_ms`].
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// Default of [`ViewersConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 250_000;
/// Default of [`ViewersConfig::max_sessions_per_stream`].
pub const DEFAULT_MAX_SESSIONS_PER_STREAM: usize = 100_000;
/// Default of [`ViewersConfig::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 10_000;
/// Default of [`ViewersConfig::redis_timeout_ms`].
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 1_000;
/// Default of [`ViewersConfig::redis_key_prefix`].
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "ferrocast:viewers";
/// Longest [`ViewersConfig::edge_id`] and [`ViewersConfig::redis_key_prefix`].
pub const MAX_ID_LEN: usize = 64;

/// Viewer counting settings (`[edge.viewers]`).
///
/// Every Multivariant Playlist request starts a session (a random id signed
/// into the session token); every later request whose token verifies marks
/// its session seen. A session counts as a concurrent viewer of its stream
/// while it was seen within the last [`window_secs`](Self::window_secs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewersConfig {
    /// Count viewers. Default true. Off: session tokens carry no session
    /// id and no viewer metric is exported.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A session counts while it was seen within this many seconds.
    /// Default 30: several times a player's playlist reload interval, so a
    /// paused or buffering player is not dropped at once.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// Period of the sweep that forgets stale sessions and updates the
    /// gauges, and of the Redis sync. Default 5000 ms.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Most sessions tracked at once over all streams. Past it new sessions
    /// are served but not counted (`ferrocast_edge_viewer_requests_untracked_total`)
    /// until the sweep frees room. Default 250000 (a few tens of bytes each).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Most sessions tracked for one stream. Default 100000.
    #[serde(default = "default_max_sessions_per_stream")]
    pub max_sessions_per_stream: usize,
    /// Most streams tracked at once, and most streams in the cluster gauge
    /// (the ones with the most viewers). Default 10000.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Redis to share counts with the other edges (`redis://[user:password@]host:port[/db]`
    /// or `unix:///path`). Default: none, counts stay local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<Secret>,
    /// Bound on every Redis call (connecting included). Default 1000 ms;
    /// less than `interval_ms`.
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// Prefix of every Redis key. Default `ferrocast:viewers`.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// This edge's id in Redis: 1 to 64 of `A-Z a-z 0-9 . _ - :`. Default:
    /// the host name and a random suffix, new at every start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_id: Option<String>,
}

impl Default for ViewersConfig {
    fn default() -> Self {
        ViewersConfig {
            enabled: true,
            window_secs: DEFAULT_WINDOW_SECS,
            interval_ms: DEFAULT_INTERVAL_MS,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_stream: DEFAULT_MAX_SESSIONS_PER_STREAM,
            max_streams: DEFAULT_MAX_STREAMS,
            redis_url: None,
            redis_timeout_ms: DEFAULT_REDIS_TIMEOUT_MS,
            redis_key_prefix: DEFAULT_REDIS_KEY_PREFIX.to_owned(),
            edge_id: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_window_secs() -> u64 {
    DEFAULT_WINDOW_SECS
}
fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}
fn default_max_sessions() -> usize {
    DEFAULT_MAX_SESSIONS
}
fn default_max_sessions_per_stream() -> usize {
    DEFAULT_MAX_SESSIONS_PER_STREAM
}
fn default_max_streams() -> usize {
    DEFAULT_MAX_STREAMS
}
fn default_redis_timeout_ms() -> u64 {
    DEFAULT_REDIS_TIMEOUT_MS
}
fn default_redis_key_prefix() -> String {
    DEFAULT_REDIS_KEY_PREFIX.to_owned()
}

/// A viewer counting configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ViewersConfigError {
    /// A setting that must be positive is zero.
    #[error("edge.viewers: {0} must be positive")]
    Zero(&'static str),
    /// `redis_timeout_ms` is not below `interval_ms`.
    #[error(
        "edge.viewers: redis_timeout_ms ({timeout_ms}) must be less than interval_ms ({interval_ms})"
    )]
    TimeoutNotBelowInterval {
        /// `redis_timeout_ms`.
        timeout_ms: u64,
        /// `interval_ms`.
        interval_ms: u64,
    },
    /// `redis_url` is not a Redis URL (the URL itself is not repeated: it
    /// may hold a password).
    #[error("edge.viewers: redis_url is not a usable Redis URL: {0}")]
    RedisUrl(&'static str),
    /// `edge_id` or `redis_key_prefix` is empty, too long or has other
    /// characters than `A-Z a-z 0-9 . _ - :`.
    #[error("edge.viewers: {0} must be 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ - :")]
    BadId(&'static str),
}

impl ViewersConfig {
    /// Checks the settings without connecting anywhere.
    pub fn validate(&self) -> Result<(), ViewersConfigError> {
        for (name, value) in [
            ("window_secs", self.window_secs),
            ("interval_ms", self.interval_ms),
            ("redis_timeout_ms", self.redis_timeout_ms),
        ] {
            if value == 0 {
                return Err(ViewersConfigError::Zero(name));
            }
        }
        for (name, value) in [
            ("max_sessions", self.max_sessions),
            ("max_sessions_per_stream", self.max_sessions_per_stream),
            ("max_streams", self.max_streams),
        ] {
            if value == 0 {
                return Err(ViewersConfigError::Zero(name));
            }
        }
        if let Some(url) = &self.redis_url {
            check_redis_url(url.expose())?;
            if self.redis_timeout_ms >= self.interval_ms {
                return Err(ViewersConfigError::TimeoutNotBelowInterval {
                    timeout_ms: self.redis_timeout_ms,
                    interval_ms: self.interval_ms,
                });
            }
        }
        if !is_id(&self.redis_key_prefix) {
            return Err(ViewersConfigError::BadId("redis_key_prefix"));
        }
        if let Some(id) = &self.edge_id
            && !is_id(id)
        {
            return Err(ViewersConfigError::BadId("edge_id"));
        }
        Ok(())
    }
}

/// The schemes the edge's Redis client speaks (no TLS: `rediss` is refused
/// here rather than at the first sync).
fn check_redis_url(url: &str) -> Result<(), ViewersConfigError> {
    let rest = ["redis://", "unix://", "redis+unix://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or(ViewersConfigError::RedisUrl(
            "the scheme must be redis://, unix:// or redis+unix://",
        ))?;
    if rest.is_empty() {
        return Err(ViewersConfigError::RedisUrl("no host or path"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ViewersConfigError::RedisUrl("white space in the URL"));
    }
    Ok(())
}

pub(crate) fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// `url` with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparsable redis url]".to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            // A lone userinfo may be a password: hide it all.
            None => format!("{scheme}://***@{host}{tail}"),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_from_an_empty_table_and_typos_refused() {
        let config: ViewersConfig = toml::from_str("").unwrap();
        assert_eq!(config, ViewersConfig::default());
        assert!(config.enabled);
        assert_eq!(config.window_secs, 30);
        config.validate().unwrap();
        assert!(toml::from_str::<ViewersConfig>("window_sec = 3").is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |toml: &str| {
            toml::from_str::<ViewersConfig>(toml)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert_eq!(
            bad("window_secs = 0"),
            ViewersConfigError::Zero("window_secs")
        );
        assert_eq!(
            bad("max_sessions = 0"),
            ViewersConfigError::Zero("max_sessions")
        );
        assert_eq!(
            bad("redis_url = \"redis://h:6379\"\nredis_timeout_ms = 5000"),
            ViewersConfigError::TimeoutNotBelowInterval {
                timeout_ms: 5000,
                interval_ms: 5000
            }
        );
        let e = bad("redis_url = \"http://user:hunter2@h\"");
        assert!(matches!(e, ViewersConfigError::RedisUrl(_)));
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            bad("redis_url = \"rediss://h\""),
            ViewersConfigError::RedisUrl(_)
        ));
        assert_eq!(
            bad("edge_id = \"a b\""),
            ViewersConfigError::BadId("edge_id")
        );
        assert_eq!(
            bad("redis_key_prefix = \"\""),
            ViewersConfigError::BadId("redis_key_prefix")
        );
    }

    #[test]
    fn the_password_never_shows() {
        let config: ViewersConfig =
            toml::from_str("redis_url = \"redis://:hunter2@cache:6379/0\"").unwrap();
        config.validate().unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("redis://edge:p@ss@cache:6379"),
            "redis://edge:***@cache:6379"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
    }
}
