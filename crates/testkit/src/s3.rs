//! An S3-compatible server for tests: moto's server (PyPI `moto[server]`)
//! on a free loopback port, killed on drop.

use std::process::{Child, Command, Stdio};

use crate::Output;

/// moto's S3 server on a free loopback port, objects in memory.
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Start one; `None` (with a `SKIPPED:` line) if moto's server is not
    /// installed and `REQUIRE_S3_TESTS` is not set.
    pub fn start() -> Option<S3Server> {
        let installed = Command::new("python3")
            .args(["-c", "import moto.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("REQUIRE_S3_TESTS").is_none(),
                "REQUIRE_S3_TESTS is set but moto's server (pip install 'moto[server]') is missing"
            );
            eprintln!(
                "SKIPPED: moto's S3 server is not installed; set REQUIRE_S3_TESTS=1 to fail instead"
            );
            return None;
        }
        // Werkzeug says where it runs once it listens.
        let (child, port) =
            crate::start_on_free_port("moto's server", Output::Stderr, "Running on", |port| {
                let mut command = Command::new("python3");
                command.args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ]);
                command
            });
        Some(S3Server { child, port })
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Send `signal` (`-STOP`, `-CONT`, ...) to the server: a stopped one
    /// accepts connections and answers nothing, as a store that hangs.
    pub fn signal(&self, signal: &str) {
        crate::send_signal(&self.child, signal);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
