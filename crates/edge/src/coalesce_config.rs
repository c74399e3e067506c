//! The settings of the edge's coalescing cache (`[edge.coalesce]`), apart
//! from the cache itself so that the configuration builds without the
//! `server` feature.

use serde::{Deserialize, Serialize};

/// Limits of the edge's coalescing cache (`[edge.coalesce]`; the
/// `Coalescing` layer of the `server` feature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalescingConfig {
    /// Bytes of cached media (bodies, headers and keys). Default 256 MiB.
    pub cache_bytes: usize,
    /// Largest object that is cached. Default 16 MiB.
    pub max_object_bytes: usize,
    /// Longest time an object stays cached, whatever its `max-age`. The
    /// live window is short; a stream restarting under the same name reuses
    /// part and segment names. Default 60 000 ms.
    pub max_ttl_ms: u64,
    /// Most distinct requests in flight at once. Default 65 536.
    pub max_in_flight: usize,
    /// How long a playlist fetched for a request without `_HLS_msn` (a
    /// player's first load, a delta update without blocking, a multivariant
    /// playlist) answers equal requests, counted from when its fetch
    /// started: a request is never answered with a playlist the origin
    /// made before `now - playlist_ttl_ms`. 0 turns it off. Default 25 ms,
    /// an eighth of the default part target (200 ms) and half the smallest
    /// allowed (50 ms): the playlist is at most one part behind, and the
    /// player's next (blocking) request waits for the next part anyway.
    pub playlist_ttl_ms: u64,
    /// How long a playlist fetched for a blocking request (`_HLS_msn`,
    /// optionally `_HLS_part`/`_HLS_skip`) answers requests with the same
    /// directives, counted from when it arrived. Any such answer holds the
    /// part asked for, which is all the request asks (RFC 8216bis
    /// §6.2.5.2). 0 turns it off. Default 1 000 ms.
    pub blocking_playlist_ttl_ms: u64,
}

/// Default of [`CoalescingConfig::playlist_ttl_ms`].
pub const DEFAULT_PLAYLIST_TTL_MS: u64 = 25;
/// Default of [`CoalescingConfig::blocking_playlist_ttl_ms`].
pub const DEFAULT_BLOCKING_PLAYLIST_TTL_MS: u64 = 1_000;

impl Default for CoalescingConfig {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
            max_object_bytes: 16 << 20,
            max_ttl_ms: 60_000,
            max_in_flight: 65_536,
            playlist_ttl_ms: DEFAULT_PLAYLIST_TTL_MS,
            blocking_playlist_ttl_ms: DEFAULT_BLOCKING_PLAYLIST_TTL_MS,
        }
    }
}

/// Why `[edge.coalesce]` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoalescingConfigError {
    /// A zero bound would cache or coalesce nothing.
    #[error("edge.coalesce.{0} must be greater than 0")]
    Zero(&'static str),
    /// An object larger than the whole cache could never be kept.
    #[error("edge.coalesce.max_object_bytes ({object}) must not exceed cache_bytes ({cache})")]
    ObjectLargerThanCache {
        /// `max_object_bytes`.
        object: usize,
        /// `cache_bytes`.
        cache: usize,
    },
}

impl CoalescingConfig {
    /// Checks the bounds (the TTLs may be 0: off).
    pub fn validate(&self) -> Result<(), CoalescingConfigError> {
        for (name, value) in [
            ("cache_bytes", self.cache_bytes),
            ("max_object_bytes", self.max_object_bytes),
            ("max_in_flight", self.max_in_flight),
        ] {
            if value == 0 {
                return Err(CoalescingConfigError::Zero(name));
            }
        }
        if self.max_object_bytes > self.cache_bytes {
            return Err(CoalescingConfigError::ObjectLargerThanCache {
                object: self.max_object_bytes,
                cache: self.cache_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn partial_sections_keep_the_other_defaults_and_bad_bounds_are_named() {
        let config: CoalescingConfig = toml::from_str("playlist_ttl_ms = 0").unwrap();
        assert_eq!(config.playlist_ttl_ms, 0);
        assert_eq!(config.cache_bytes, CoalescingConfig::default().cache_bytes);
        assert!(config.validate().is_ok());
        let zero: CoalescingConfig = toml::from_str("max_in_flight = 0").unwrap();
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "edge.coalesce.max_in_flight must be greater than 0"
        );
        let big: CoalescingConfig =
            toml::from_str("cache_bytes = 1000\nmax_object_bytes = 2000").unwrap();
        assert!(matches!(
            big.validate(),
            Err(CoalescingConfigError::ObjectLargerThanCache { .. })
        ));
        assert!(toml::from_str::<CoalescingConfig>("cache = 1").is_err());
    }
}
