//! Test tooling shared by Ferrocast's integration tests and load tools:
//! real servers (`redis-server`, PostgreSQL, moto's S3) started on free loopback
//! ports and stopped when dropped,
//! and the numbers of a media playlist ([`playlist`]).
//!
//! A test that needs a server the machine lacks is skipped with a
//! `SKIPPED:` line, unless the variable its check names is set (CI sets
//! them), in which case it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod playlist;
mod postgres;
mod s3;

pub use postgres::Postgres;
pub use s3::S3Server;

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
        let (child, port) = start_on_free_port(
            "redis-server",
            Output::Stdout,
            "Ready to accept connections",
            |port| {
                let mut command = Command::new("redis-server");
                command.args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                command
            },
        );
        Some(Redis { child, port })
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
        send_signal(&self.child, signal);
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

/// Where a server says it is ready.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Output {
    Stdout,
    Stderr,
}

/// Starts the server `command` makes for a port, on a free loopback port,
/// and waits for a line of its `output` containing `ready`; tries another
/// port if it exits first (the port can be taken between the probe and the
/// server's bind). The rest of that output is drained in a thread.
pub(crate) fn start_on_free_port(
    name: &str,
    output: Output,
    ready: &str,
    command: impl Fn(u16) -> Command,
) -> (Child, u16) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = command(port);
        command.stdin(Stdio::null());
        let mut child = match output {
            Output::Stdout => command.stdout(Stdio::piped()).stderr(Stdio::null()),
            Output::Stderr => command.stdout(Stdio::null()).stderr(Stdio::piped()),
        }
        .spawn()
        .unwrap();
        let stream: Box<dyn std::io::Read + Send> = match output {
            Output::Stdout => Box::new(child.stdout.take().unwrap()),
            Output::Stderr => Box::new(child.stderr.take().unwrap()),
        };
        let mut lines = BufReader::new(stream).lines();
        let up = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains(ready));
        std::thread::spawn(move || lines.for_each(drop));
        if up {
            return (child, port);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{name} did not start on a free port");
}

/// `kill SIGNAL PID` for `child` (`-STOP`, `-CONT`, `-TERM`, ...).
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
