//! What `ferrocast up` serves where, and to whom: said once at start, so
//! an operator sees at a glance whether media leaves the machine without
//! tokens.

use std::net::SocketAddr;

use ferrocast_config::Config;
use ferrocast_edge::server::EdgeServer;
use tracing::{info, warn};

/// Logs one line per listener with what is open on it; warns when the
/// origin serves media without tokens beyond this machine.
pub fn log(config: &Config, http: SocketAddr, edge: Option<&EdgeServer>, guarded: bool) {
    let origin_access = origin_access(http, edge.is_some(), guarded);
    info!(
        listen = %http,
        origin = origin_access,
        "http: /live/ (origin), /metrics, /status: {origin_access}; /healthz, /readyz: open; \
         /api/v1/: API token; /dashboard: page open, data by API token"
    );
    if origin_access == ORIGIN_OPEN_TO_NETWORK {
        warn!(
            listen = %http,
            "the origin serves every stream without tokens to anyone who can reach {http}; \
             set http_listen to a loopback address, or configure an [edge] (then the origin \
             needs an API token off loopback)"
        );
    }
    if let Some(edge) = edge {
        info!(
            https = %edge.https_addr(),
            http3 = ?edge.h3_addr(),
            "edge: /live/ with a viewer JWT then edge tokens; /play/NAME player page"
        );
        if let Some(plain) = edge.plain_http_addr() {
            info!(listen = %plain, "edge plain HTTP (development): same routes and token checks");
        }
    }
    info!(srt = %config.srt_listen, "srt: publishers, checked against publish keys before media flows");
}

const ORIGIN_OPEN_TO_NETWORK: &str = "open to the network, no token";

/// Who may read the origin on `http`.
fn origin_access(http: SocketAddr, edge: bool, guarded: bool) -> &'static str {
    match (http.ip().is_loopback(), edge, guarded) {
        (true, _, _) => "this machine only, no token",
        (false, true, true) => "API token required",
        (false, _, _) => ORIGIN_OPEN_TO_NETWORK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_open_beyond_loopback_only_without_an_edge() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            origin_access(local, false, false),
            "this machine only, no token"
        );
        assert_eq!(origin_access(public, true, true), "API token required");
        assert_eq!(origin_access(public, false, false), ORIGIN_OPEN_TO_NETWORK);
    }
}
