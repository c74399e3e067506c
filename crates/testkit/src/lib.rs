//! Test tooling shared by Ferrocast's integration tests and load tools:
//! real servers (`redis-server`, PostgreSQL) started on free loopback
//! ports and stopped when dropped,
//! and the numbers of a media playlist ([`playlist`]).
//!
//! A test that needs a server the machine lacks is skipped with a
//! `SKIPPED:` line, unless the variable its check names is set (CI sets
//! them), in which case it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod playlist;
mod postgres;

pub use postgres::Postgres;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `redis-server` on a free loopback port, without persistence; killed
/// on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Start one; `None` (with a `SKIPPED:` line) if `redis-server` is not
    /// installed and `REQUIRE_REDIS_TESTS` is not set.
    pub fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(
                std::env::var_os("REQUIRE_REDIS_TESTS").is_none(),
                "REQUIRE_REDIS_TESTS is set but redis-server cannot be run"
            );
            eprintln!(
                "SKIPPED: redis-server is not installed; set REQUIRE_REDIS_TESTS=1 to fail instead"
            );
            return None;
        }
        // A free port can be taken between our probe and the server's bind:
        // try again on another.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let ready = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("Ready to accept connections"));
            std::thread::spawn(move || lines.for_each(drop));
            if ready {
                return Some(Redis { child, port });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on a free port");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Send `signal` (`-STOP`, `-CONT`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `redis-cli` against the server; its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
