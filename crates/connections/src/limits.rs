//! The settings.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Connection limits of one HTTP listener (a config section; every key is
/// optional). Excess connections are refused, not queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Connections open at once on this listener (TCP and QUIC counted
    /// separately). Default 10,000.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client by
    /// its `ipv6_prefix_len` prefix). Default 256: viewers behind one NAT
    /// share an address.
    pub max_connections_per_client: usize,
    /// Prefix length by which IPv6 clients count as one. 1 to 128, default 64.
    pub ipv6_prefix_len: u8,
    /// Time a client has to send a request's headers, counted from when the
    /// connection starts waiting for them (also between keep-alive
    /// requests on HTTP/1.1). Default 10,000 ms.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2, HTTP/3, and a connection that never sends a request).
    /// Default 60,000 ms; it must exceed the longest blocking playlist
    /// reload a client may be waiting on only if clients open connections
    /// without requests, which they do not.
    pub idle_timeout_ms: u64,
    /// Concurrent streams (requests) per HTTP/2 or HTTP/3 connection.
    /// Default 100 (RFC 9113 §6.5.2 recommends no fewer than 100).
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            max_connections_per_client: 256,
            ipv6_prefix_len: 64,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_streams_per_connection: 100,
        }
    }
}

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionLimitsError {
    /// A count or time that must be positive is zero.
    #[error("connection limit `{0}` must be greater than zero")]
    Zero(&'static str),
    /// `ipv6_prefix_len` outside 1..=128.
    #[error("ipv6_prefix_len must be 1 to 128, not {0}")]
    Ipv6Prefix(u8),
    /// More per client than overall.
    #[error("max_connections_per_client ({per_client}) exceeds max_connections ({total})")]
    PerClientAboveTotal {
        /// `max_connections_per_client`.
        per_client: usize,
        /// `max_connections`.
        total: usize,
    },
}

impl ConnectionLimits {
    /// Check every setting.
    pub fn validate(&self) -> Result<(), ConnectionLimitsError> {
        use ConnectionLimitsError::*;
        for (name, value) in [
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_client",
                self.max_connections_per_client as u64,
            ),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
            ),
        ] {
            if value == 0 {
                return Err(Zero(name));
            }
        }
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return Err(Ipv6Prefix(self.ipv6_prefix_len));
        }
        if self.max_connections_per_client > self.max_connections {
            return Err(PerClientAboveTotal {
                per_client: self.max_connections_per_client,
                total: self.max_connections,
            });
        }
        Ok(())
    }

    /// [`header_read_timeout_ms`](Self::header_read_timeout_ms).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// [`idle_timeout_ms`](Self::idle_timeout_ms).
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// The key of a client address: an IPv4 address whole (an IPv4-mapped
/// IPv6 address as its IPv4 address), an IPv6 address cut to its first
/// `ipv6_prefix_len` bits (a household or host usually has a whole /64).
pub fn ip_key(ip: IpAddr, ipv6_prefix_len: u8) -> u128 {
    let v6 = match ip {
        IpAddr::V4(v4) => return v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return v4.to_ipv6_mapped().to_bits(),
            None => v6.to_bits(),
        },
    };
    let prefix = u32::from(ipv6_prefix_len.clamp(1, 128));
    v6 & (u128::MAX << (128 - prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keys_are_checked() {
        assert_eq!(ConnectionLimits::default().validate(), Ok(()));
        let parsed: ConnectionLimits =
            toml::from_str("max_connections = 5\nmax_connections_per_client = 2")
                .unwrap_or_default();
        assert_eq!(parsed.max_connections, 5);
        assert!(toml::from_str::<ConnectionLimits>("max_conections = 5").is_err());
        let zero = ConnectionLimits {
            idle_timeout_ms: 0,
            ..Default::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConnectionLimitsError::Zero("idle_timeout_ms"))
        );
        let inverted = ConnectionLimits {
            max_connections: 1,
            max_connections_per_client: 2,
            ..Default::default()
        };
        assert!(matches!(
            inverted.validate(),
            Err(ConnectionLimitsError::PerClientAboveTotal { .. })
        ));
        let prefix = ConnectionLimits {
            ipv6_prefix_len: 0,
            ..Default::default()
        };
        assert_eq!(prefix.validate(), Err(ConnectionLimitsError::Ipv6Prefix(0)));
    }
}
