//! A PostgreSQL server of its own for a test: Debian's `postgresql`
//! binaries, `initdb` in a temporary directory, listening on 127.0.0.1 and
//! a free port (and a socket in the same directory, nowhere else), no
//! fsync; stopped and deleted on drop.
//!
//! PostgreSQL refuses to run as root: as root, the server runs as the
//! `postgres` user that Debian's package creates (`runuser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running server with one database, `ferrocast`, owned by user
/// `ferrocast` (password `ferrocast`).
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Debian installs the server binaries under `/usr/lib/postgresql/VERSION/bin`.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl Postgres {
    /// Start one; `None` (with a `SKIPPED:` line) if PostgreSQL is not
    /// installed and `REQUIRE_POSTGRES_TESTS` is not set.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = server_bin() else {
            assert!(
                std::env::var_os("REQUIRE_POSTGRES_TESTS").is_none(),
                "REQUIRE_POSTGRES_TESTS is set but PostgreSQL (Debian's postgresql) is not installed"
            );
            eprintln!(
                "SKIPPED: PostgreSQL is not installed; set REQUIRE_POSTGRES_TESTS=1 to fail instead"
            );
            return None;
        };
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Postgres {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&server.dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the PostgreSQL directory failed");
        }
        let pwfile = server.dir.join("pw");
        std::fs::write(&pwfile, "ferrocast\n").unwrap();
        server.chown(&pwfile);
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "ferrocast",
                "--pwfile",
                path(&pwfile),
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // A free port can be taken between our probe and the server's
        // bind: try again on another.
        for _ in 0..5 {
            server.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off",
                server.port,
                server.dir.display()
            );
            let log = server.dir.join("server.log");
            if server.try_run(
                "pg_ctl",
                &[
                    "-D",
                    path(&data),
                    "-l",
                    path(&log),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
            ) {
                server.run(
                    "createdb",
                    &[
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &server.port.to_string(),
                        "-U",
                        "ferrocast",
                        "ferrocast",
                    ],
                );
                return Some(server);
            }
        }
        panic!("PostgreSQL did not start on a free port");
    }

    /// `postgres://ferrocast:ferrocast@127.0.0.1:PORT/ferrocast`
    pub fn url(&self) -> String {
        format!(
            "postgres://ferrocast:ferrocast@127.0.0.1:{}/ferrocast",
            self.port
        )
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown), keeping its data: a test of what
    /// happens while the database is away. [`Postgres::resume`] starts it
    /// again on the same port.
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run("pg_ctl", &["-D", path(&data), "-m", "fast", "-w", "stop"]);
    }

    /// Starts a server stopped with [`Postgres::stop`] again.
    pub fn resume(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        command
            .env("PGPASSWORD", "ferrocast")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        command
    }

    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        self.command(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn chown(&self, file: &Path) {
        if self.as_postgres {
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(file)
                .status();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D", path(&data), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
