//! `[cluster]`: running the roles as separate processes that find each
//! other through a Redis registry.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Settings of a process that runs one role of a cluster (`ferrocast
/// ingest`, `transcode`, `package`, or `edge` without a fixed origin).
/// Not used by `ferrocast up`, which needs no registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Redis registry, `redis://[:PASSWORD@]HOST:PORT[/DB]`. Required
    /// by the role processes; a secret (it may hold a password).
    pub redis_url: Option<Secret>,
    /// Prefix of every registry key. Default `ferrocast`.
    pub prefix: String,
    /// This process's id in the registry: 1 to 64 of `[A-Za-z0-9._-]`,
    /// unique in the cluster. Default: the `HOSTNAME` environment variable
    /// (a pod's name), else `ROLE-` and a random suffix.
    pub node_id: Option<String>,
    /// TCP address of this process's media bus (gRPC), which other
    /// processes dial for the streams it publishes (ingest, transcode).
    /// Default `0.0.0.0:7000`.
    pub bus_listen: SocketAddr,
    /// The URL others reach this process at: the bus (`http://HOST:PORT`)
    /// for ingest and transcode, the HTTP origin for package. Default:
    /// `http://` and the bound address; a process bound to an unspecified
    /// IP (`0.0.0.0`) without `advertise` refuses to start (set it to the
    /// pod's IP, for instance).
    pub advertise: Option<String>,
    /// How long a lease lasts unless renewed, in milliseconds: a dead
    /// process's streams move on about this long after it died. Default
    /// 3000; 300 to 60000.
    pub lease_ttl_ms: u64,
    /// How long a node record lasts unless renewed. Default 10000; at
    /// least `lease_ttl_ms`.
    pub node_ttl_ms: u64,
    /// How often the registry is polled (events, work, plans), in
    /// milliseconds. Default 200; 20 to 5000.
    pub poll_ms: u64,
    /// Streams one transcode process takes at most. Default 8.
    pub max_transcodes: usize,
    /// `HOST:PORT` broadcasters push SRT to: the ingest processes' public
    /// address (the load balancer or Service in front of them).
    /// `ferrocast control` shows it in the push URLs it gives with a key.
    /// Default: the host the API was reached at and `srt_listen`'s port.
    pub publish_address: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            prefix: "ferrocast".to_owned(),
            node_id: None,
            bus_listen: SocketAddr::from(([0, 0, 0, 0], 7000)),
            advertise: None,
            lease_ttl_ms: 3000,
            node_ttl_ms: 10_000,
            poll_ms: 200,
            max_transcodes: 8,
            publish_address: None,
        }
    }
}

impl ClusterConfig {
    /// Ranges checked when the configuration is built.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(300..=60_000).contains(&self.lease_ttl_ms) {
            return Err(format!(
                "cluster.lease_ttl_ms = {} is outside 300..=60000",
                self.lease_ttl_ms
            ));
        }
        if self.node_ttl_ms < self.lease_ttl_ms {
            return Err("cluster.node_ttl_ms must be at least cluster.lease_ttl_ms".to_owned());
        }
        if !(20..=5000).contains(&self.poll_ms) {
            return Err(format!(
                "cluster.poll_ms = {} is outside 20..=5000",
                self.poll_ms
            ));
        }
        if self.max_transcodes == 0 {
            return Err("cluster.max_transcodes must be at least 1".to_owned());
        }
        let prefix_ok = !self.prefix.is_empty()
            && self.prefix.len() <= 64
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !prefix_ok {
            return Err(format!(
                "cluster.prefix = {:?}: 1 to 64 of A-Z, a-z, 0-9, '.', '_' or '-'",
                self.prefix
            ));
        }
        if let Some(address) = &self.publish_address
            && publish_address(address).is_none()
        {
            return Err(format!(
                "cluster.publish_address = {address:?}: HOST:PORT (a host name or \
                 address and a port), for example \"ingest.example.com:9000\""
            ));
        }
        if let Some(url) = &self.redis_url
            && !url.expose().starts_with("redis://")
            && !url.expose().starts_with("rediss://")
        {
            // The URL itself is not shown: it may carry a password.
            return Err("cluster.redis_url must start with redis:// or rediss://".to_owned());
        }
        Ok(())
    }
}

/// The host and port of a `cluster.publish_address` (`HOST:PORT`, an IPv6
/// address in brackets), if it is one.
pub fn publish_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()?
            .to_string(),
        None => host.to_owned(),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    name_ok.then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_addresses_are_host_and_port() {
        assert_eq!(
            publish_address("ingest.example.com:9000"),
            Some(("ingest.example.com".to_owned(), 9000))
        );
        assert_eq!(
            publish_address("[2001:db8::1]:9000"),
            Some(("2001:db8::1".to_owned(), 9000))
        );
        for bad in [
            "ingest.example.com",
            "ingest.example.com:0",
            "ingest.example.com:99999",
            ":9000",
            "[nonsense]:9000",
            "in gest:9000",
            "ingest/x:9000",
        ] {
            assert_eq!(publish_address(bad), None, "{bad}");
        }
        let config = ClusterConfig {
            publish_address: Some("no port".to_owned()),
            ..ClusterConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains("cluster.publish_address"), "{error}");
    }
}
