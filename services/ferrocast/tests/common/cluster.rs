//! The role processes of a cluster (`ferrocast ingest`, `transcode`,
//! `package`) on loopback with free ports, around a real `redis-server`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub use ferrocast_testkit::Redis;

use super::ServerLog;

/// Cluster timings for tests: short leases so that failover is quick,
/// a short grace.
pub const CLUSTER_TOML: &str = r#"
[cluster]
lease_ttl_ms = 1500
node_ttl_ms = 5000
poll_ms = 100
"#;

/// One role process, killed on drop.
pub struct Node {
    child: Child,
    /// Its ready line.
    pub ready: String,
    pub dir: tempfile::TempDir,
    log: Arc<ServerLog>,
}

impl Node {
    /// Start `ferrocast ROLE` as node `id` with `config_toml` (after
    /// [`CLUSTER_TOML`] and the test ladder), every listener on a free
    /// loopback port, and wait for its ready line.
    pub fn start(role: &str, id: &str, redis: &Redis, config_toml: &str) -> Node {
        let ready = format!("ferrocast {role} ready");
        Node::start_with(role, id, redis, config_toml, &[], &ready)
    }

    /// [`Node::start`] with environment variables `env` on top, waiting
    /// for a line of stdout starting with `ready_prefix`.
    pub fn start_with(
        role: &str,
        id: &str,
        redis: &Redis,
        config_toml: &str,
        env: &[(&str, &str)],
        ready_prefix: &str,
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ferrocast.toml");
        std::fs::write(
            &config,
            format!("{}\n{CLUSTER_TOML}\n{config_toml}", super::TEST_LADDER),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
        for (name, _) in std::env::vars() {
            if name.starts_with("FERROCAST_") {
                command.env_remove(name);
            }
        }
        command
            .args([role, "--node-id", id, "--redis-url", &redis.url()])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--config")
            .arg(&config)
            .env("FERROCAST_TRANSCODE__LADDER", "test")
            .env("FERROCAST_DATA_DIR", dir.path().join("data"))
            .env(
                "FERROCAST_LOG",
                "info,srt_protocol=warn,srt_protocol::listener=error,ferrocast_cluster=debug",
            );
        command.envs(env.iter().copied());
        if role != "package" && role != "control" {
            command.args(["--bus-listen", "127.0.0.1:0"]);
        }
        if role == "ingest" {
            command.args(["--srt-listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferrocast binary starts");
        let (ready, log) = super::until_ready(&mut child, ready_prefix);
        Node {
            child,
            ready,
            dir,
            log,
        }
    }

    /// A `key=` field of the ready line, as an address.
    pub fn addr(&self, key: &str) -> SocketAddr {
        self.ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.ready))
            .parse()
            .unwrap()
    }

    /// `http://ADDR` of its operator (and, for package, origin) listener.
    pub fn http(&self) -> String {
        format!("http://{}", self.addr("http"))
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.log.wait_for(needle, timeout)
    }

    /// `kill -9`: no drain, no lease given back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send `signal` (`-TERM`, `-STOP`, `-CONT`).
    pub fn signal(&self, signal: &str) {
        ferrocast_testkit::send_signal(&self.child, signal);
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
