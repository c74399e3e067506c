//! Request rate limits (`[edge.limits]`): token buckets keyed by client
//! address and by viewer session, with bounded memory.
//!
//! **What it is for.** The edge server asks a [`RateLimiter`] about every
//! request before doing any work for it; the limiter answers allow, refuse
//! (with how long to wait) or untracked (its table is full). It holds one
//! timestamp per key, so a million idle viewers cost nothing and an active
//! one 16 bytes plus the map's overhead.
//!
//! **What it is not for.** No sockets and no clock: `now` is an argument
//! (a monotonic [`Instant`]), so tests drive time by hand. It does not
//! know what a key means; the server derives keys from the client address
//! ([`ip_key`]) and from tokens (never storing a raw token).
//!
//! # The algorithm
//!
//! GCRA (the generic cell rate algorithm, ITU-T I.371), which is a token
//! bucket stored as one "theoretical arrival time" (TAT) per key: with
//! emission interval `T = 1 s / rate_per_sec` and tolerance
//! `τ = burst × T`, a request at `now` is allowed when
//! `max(TAT, now) + T ≤ now + τ`, and then `TAT` becomes that sum. A fresh
//! key takes `burst` requests at once, then one every `T`. A key whose
//! `TAT ≤ now` has a full bucket, which is the same as having no entry:
//! such keys are what eviction removes.
//!
//! # Bounded memory
//!
//! At most `max_keys` keys, spread over [`SHARDS`] mutex-protected shards
//! (no lock is held across an `.await`: a check is a few map operations).
//! Each shard drops its full buckets every [`SWEEP_INTERVAL`] (amortised:
//! on the insert of a new key), and at once when a new key finds it full
//! (at most every [`FULL_SWEEP_GAP`]). A shard full of keys that are all
//! still active **fails open**: the new key's request is let through
//! untracked ([`Decision::Untracked`], counted by the server). Failing
//! closed would let anyone who can mint keys (random token strings cost
//! nothing) lock every new viewer out; failing open lets a flood of new
//! keys through unlimited, which the other limit and the coalescing in
//! front of the origin absorb. With the defaults a key stays active only
//! `burst / rate_per_sec` after its last request (2 s), so filling
//! 100,000 keys takes a sustained 50,000 new keys a second.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ferrocast_edge::limits::{Decision, RateLimit, RateLimiter};
//!
//! let limit = RateLimit { enabled: true, rate_per_sec: 10, burst: 2 };
//! let limiter = RateLimiter::<u64>::new(&limit, 1_000);
//! let t0 = Instant::now();
//! assert_eq!(limiter.check(7, t0), Decision::Allowed);
//! assert_eq!(limiter.check(7, t0), Decision::Allowed);
//! assert_eq!(
//!     limiter.check(7, t0),
//!     Decision::Refused { retry_after: Duration::from_millis(100) }
//! );
//! assert_eq!(limiter.check(7, t0 + Duration::from_millis(100)), Decision::Allowed);
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Shards of a [`RateLimiter`]'s table (each its own lock).
pub const SHARDS: usize = 16;
/// How often a shard drops its full (idle) buckets.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest gap between two sweeps of a shard that new keys found full,
/// so a table full of active keys does not cost a sweep per request.
pub const FULL_SWEEP_GAP: Duration = Duration::from_millis(50);

/// One limit: a rate and a burst (`per_ip = { rate_per_sec = .., burst = .. }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Whether this limit applies at all. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Sustained requests per second, at least 1 when enabled.
    #[serde(default)]
    pub rate_per_sec: u32,
    /// Requests allowed at once from a full bucket, at least 1 when
    /// enabled.
    #[serde(default)]
    pub burst: u32,
}

impl RateLimit {
    /// Default of [`LimitsConfig::per_ip`]: 1,000 requests a second, bursts
    /// of 2,000.
    pub const DEFAULT_PER_IP: RateLimit = RateLimit {
        enabled: true,
        rate_per_sec: 1_000,
        burst: 2_000,
    };
    /// Default of [`LimitsConfig::per_token`]: 50 requests a second, bursts
    /// of 100.
    pub const DEFAULT_PER_TOKEN: RateLimit = RateLimit {
        enabled: true,
        rate_per_sec: 50,
        burst: 100,
    };

    /// The emission interval `T`: how much one request uses up.
    fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.rate_per_sec.max(1)
    }
}

/// Rate limits (`[edge.limits]`). Every field has a default, so an empty
/// or missing section means the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Per client address (an IPv6 client by its
    /// [`ipv6_prefix_len`](Self::ipv6_prefix_len) prefix). Default
    /// [`RateLimit::DEFAULT_PER_IP`].
    #[serde(default = "default_per_ip")]
    pub per_ip: RateLimit,
    /// Per viewer session: the edge token's session id, or the token
    /// itself when it has none; the viewer JWT on a Multivariant Playlist
    /// request. Default [`RateLimit::DEFAULT_PER_TOKEN`].
    #[serde(default = "default_per_token")]
    pub per_token: RateLimit,
    /// Prefix length by which IPv6 clients share a bucket (a household
    /// or a host usually has a whole /64). 1 to 128, default 64.
    #[serde(default = "default_ipv6_prefix_len")]
    pub ipv6_prefix_len: u8,
    /// Most keys each limit tracks at once (per-IP and per-token
    /// separately); beyond it new keys go untracked. Default 100,000
    /// (a few MiB).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Viewer sessions one viewer may start (Multivariant Playlist requests
    /// with a valid JWT, each of which mints a session counted as a
    /// viewer): counted per JWT `sub`, or per JWT when it has none, after
    /// the signature is verified. Default [`SessionLimit::DEFAULT`]: 10 a
    /// minute, 20 at once, so one JWT can neither mint sessions without end
    /// nor inflate the viewer count.
    #[serde(default)]
    pub sessions_per_viewer: SessionLimit,
}

/// How many viewer sessions one viewer may start
/// (`sessions_per_viewer = { per_minute = .., burst = .. }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionLimit {
    /// Whether this limit applies at all. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Sessions a minute, sustained; at least 1 when enabled.
    #[serde(default = "default_sessions_per_minute")]
    pub per_minute: u32,
    /// Sessions at once from a full bucket; at least 1 when enabled.
    #[serde(default = "default_sessions_burst")]
    pub burst: u32,
}

impl SessionLimit {
    /// 10 sessions a minute, bursts of 20.
    pub const DEFAULT: SessionLimit = SessionLimit {
        enabled: true,
        per_minute: 10,
        burst: 20,
    };

    /// The emission interval: how long one session uses up.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

impl Default for SessionLimit {
    fn default() -> Self {
        SessionLimit::DEFAULT
    }
}

fn default_sessions_per_minute() -> u32 {
    SessionLimit::DEFAULT.per_minute
}
fn default_sessions_burst() -> u32 {
    SessionLimit::DEFAULT.burst
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_ip: RateLimit::DEFAULT_PER_IP,
            per_token: RateLimit::DEFAULT_PER_TOKEN,
            ipv6_prefix_len: default_ipv6_prefix_len(),
            max_keys: default_max_keys(),
            sessions_per_viewer: SessionLimit::DEFAULT,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_per_ip() -> RateLimit {
    RateLimit::DEFAULT_PER_IP
}
fn default_per_token() -> RateLimit {
    RateLimit::DEFAULT_PER_TOKEN
}
fn default_ipv6_prefix_len() -> u8 {
    64
}
fn default_max_keys() -> usize {
    100_000
}

/// A rate-limit setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsConfigError {
    /// `rate_per_sec` or `burst` of an enabled limit is 0.
    #[error("edge.limits.{limit}: its rate and burst must be at least 1 (or set enabled = false)")]
    Zero {
        /// `per_ip`, `per_token` or `sessions_per_viewer`.
        limit: &'static str,
    },
    /// `ipv6_prefix_len` is outside 1..=128.
    #[error("edge.limits.ipv6_prefix_len must be 1 to 128, not {0}")]
    Ipv6Prefix(u8),
    /// `max_keys` is 0.
    #[error("edge.limits.max_keys must be at least 1")]
    NoKeys,
}

impl LimitsConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), LimitsConfigError> {
        for (limit, rate) in [("per_ip", &self.per_ip), ("per_token", &self.per_token)] {
            if rate.enabled && (rate.rate_per_sec == 0 || rate.burst == 0) {
                return Err(LimitsConfigError::Zero { limit });
            }
        }
        let sessions = &self.sessions_per_viewer;
        if sessions.enabled && (sessions.per_minute == 0 || sessions.burst == 0) {
            return Err(LimitsConfigError::Zero {
                limit: "sessions_per_viewer",
            });
        }
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return Err(LimitsConfigError::Ipv6Prefix(self.ipv6_prefix_len));
        }
        if self.max_keys == 0 {
            return Err(LimitsConfigError::NoKeys);
        }
        Ok(())
    }
}

pub use ferrocast_connections::ip_key;

/// What [`RateLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit.
    Allowed,
    /// Over the limit; a request after `retry_after` would be allowed.
    Refused {
        /// How long until the next request would be allowed.
        retry_after: Duration,
    },
    /// Let through without a bucket: the table is full of active keys.
    Untracked,
}

/// A GCRA rate limiter over keys `K`, with at most `max_keys` entries.
/// Cheap to share (`&self` everywhere); see the [module docs](self).
pub struct RateLimiter<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: RandomState,
    interval: Duration,
    tolerance: Duration,
    shard_capacity: usize,
}

struct Shard<K> {
    /// Theoretical arrival time per key.
    tats: HashMap<K, Instant>,
    /// When the next periodic sweep is due (none yet: at the first insert).
    next_sweep: Option<Instant>,
    /// When the shard was last swept.
    last_sweep: Option<Instant>,
}

impl<K> std::fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval", &self.interval)
            .field("tolerance", &self.tolerance)
            .field("shard_capacity", &self.shard_capacity)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    /// A limiter for `limit` holding at most `max_keys` keys (rounded up
    /// to a multiple of [`SHARDS`]). `limit.enabled` is not looked at.
    pub fn new(limit: &RateLimit, max_keys: usize) -> Self {
        RateLimiter::with_interval(limit.interval(), limit.burst, max_keys)
    }

    /// A limiter allowing one request per `interval`, `burst` at once.
    pub fn with_interval(interval: Duration, burst: u32, max_keys: usize) -> Self {
        let shard_capacity = max_keys.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    tats: HashMap::new(),
                    next_sweep: None,
                    last_sweep: None,
                })
            })
            .collect();
        RateLimiter {
            shards,
            hasher: RandomState::new(),
            interval,
            tolerance: interval * burst.max(1),
            shard_capacity,
        }
    }

    /// Counts a request for `key` at `now`.
    pub fn check(&self, key: K, now: Instant) -> Decision {
        // The low bits of a SipHash are as good as any.
        let shard = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic elsewhere cannot leave a map of timestamps inconsistent.
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let allowed_until = now + self.tolerance;
        if let Some(tat) = shard.tats.get_mut(&key) {
            let next = (*tat).max(now) + self.interval;
            if next > allowed_until {
                return Decision::Refused {
                    retry_after: next - allowed_until,
                };
            }
            *tat = next;
            return Decision::Allowed;
        }
        // A new key (a full bucket): room for it first.
        let periodic = shard.next_sweep.is_none_or(|due| now >= due);
        let full = shard.tats.len() >= self.shard_capacity;
        let may_sweep_full = shard
            .last_sweep
            .is_none_or(|last| now >= last + FULL_SWEEP_GAP);
        if periodic || (full && may_sweep_full) {
            shard.tats.retain(|_, tat| *tat > now);
            shard.last_sweep = Some(now);
            shard.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        if shard.tats.len() >= self.shard_capacity {
            return Decision::Untracked;
        }
        // Burst is at least 1, so the first request always fits.
        shard.tats.insert(key, now + self.interval);
        Decision::Allowed
    }

    /// Keys held now (active or not yet swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).tats.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter holds.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limit(rate_per_sec: u32, burst: u32) -> RateLimit {
        RateLimit {
            enabled: true,
            rate_per_sec,
            burst,
        }
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::<u64>::new(&limit(4, 3), 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(1, t0), Decision::Allowed);
        }
        assert_eq!(
            limiter.check(1, t0),
            Decision::Refused {
                retry_after: Duration::from_millis(250)
            }
        );
        // Another key has its own bucket.
        assert_eq!(limiter.check(2, t0), Decision::Allowed);
        // One request per 250 ms after the burst.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(limiter.check(1, t1), Decision::Allowed);
        assert!(matches!(limiter.check(1, t1), Decision::Refused { .. }));
        // Refusals use nothing up: the wait does not grow.
        assert_eq!(
            limiter.check(1, t1 + Duration::from_millis(100)),
            Decision::Refused {
                retry_after: Duration::from_millis(150)
            }
        );
        // After a long pause the whole burst is back, no more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.check(1, t2), Decision::Allowed);
        }
        assert!(matches!(limiter.check(1, t2), Decision::Refused { .. }));
    }

    #[test]
    fn sustained_rate_is_exact() {
        // 10/s for 10 s with a burst of 1: exactly one request per 100 ms.
        let limiter = RateLimiter::<u64>::new(&limit(10, 1), 100);
        let t0 = Instant::now();
        let mut allowed = 0;
        for ms in 0..10_000u64 {
            if limiter.check(9, t0 + Duration::from_millis(ms)) == Decision::Allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 100);
    }

    #[test]
    fn idle_keys_are_swept_and_a_full_table_fails_open() {
        let limiter = RateLimiter::<u64>::new(&limit(1, 1), SHARDS * 2);
        assert_eq!(limiter.capacity(), SHARDS * 2);
        let t0 = Instant::now();
        // Fill the table with active keys (each used its one-request burst;
        // keys whose shard is already full go untracked).
        let mut key = 0u64;
        while limiter.len() < limiter.capacity() {
            let decision = limiter.check(key, t0);
            assert!(
                !matches!(decision, Decision::Refused { .. }),
                "a new key is never refused"
            );
            key += 1;
        }
        // New keys now find their shard full: let through, untracked, and
        // the table never grows past its capacity.
        for k in key..key + 200 {
            assert_eq!(limiter.check(k, t0), Decision::Untracked);
        }
        assert_eq!(limiter.len(), SHARDS * 2);
        // The keys already held are still limited.
        assert!(matches!(limiter.check(0, t0), Decision::Refused { .. }));
        // Once the buckets have refilled (1 s), a sweep makes room.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check(u64::MAX, t1), Decision::Allowed);
        assert!(limiter.len() < SHARDS * 2);
    }

    #[test]
    fn idle_keys_go_on_the_periodic_sweep() {
        let limiter = RateLimiter::<u64>::new(&limit(100, 5), 10_000);
        let t0 = Instant::now();
        for k in 0..1_000 {
            limiter.check(k, t0);
        }
        assert_eq!(limiter.len(), 1_000);
        // After SWEEP_INTERVAL, each shard's next new key sweeps it.
        let later = t0 + SWEEP_INTERVAL;
        for k in 10_000..10_000 + 16 * 40 {
            limiter.check(k, later);
        }
        assert!(limiter.len() <= 16 * 40, "{}", limiter.len());
    }

    #[test]
    fn ip_keys() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(ip_key(v4, 64), ip_key(mapped, 64));
        assert_ne!(
            ip_key(v4, 64),
            ip_key(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8)), 64)
        );
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a, 64), ip_key(b, 64));
        assert_ne!(ip_key(a, 64), ip_key(c, 64));
        assert_eq!(ip_key(a, 48), ip_key(c, 48));
        assert_ne!(ip_key(a, 128), ip_key(b, 128));
        assert_eq!(
            ip_key(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
            Ipv6Addr::LOCALHOST.to_bits()
        );
    }

    #[test]
    fn config_defaults_and_validation() {
        let config: LimitsConfig = toml::from_str("").unwrap();
        assert_eq!(config, LimitsConfig::default());
        config.validate().unwrap();
        let config: LimitsConfig = toml::from_str("per_token = { enabled = false }").unwrap();
        config.validate().unwrap();
        let config: LimitsConfig =
            toml::from_str("per_ip = { rate_per_sec = 0, burst = 10 }").unwrap();
        assert_eq!(
            config.validate(),
            Err(LimitsConfigError::Zero { limit: "per_ip" })
        );
        let config: LimitsConfig = toml::from_str("ipv6_prefix_len = 0").unwrap();
        assert_eq!(config.validate(), Err(LimitsConfigError::Ipv6Prefix(0)));
        assert!(toml::from_str::<LimitsConfig>("per_ip = { rate = 5, burst = 1 }").is_err());
        assert!(toml::from_str::<LimitsConfig>("max_key = 5").is_err());
    }
}
