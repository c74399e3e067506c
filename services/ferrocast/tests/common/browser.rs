//! hls.js in headless Chromium, driven through `tests/browser/play.mjs`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Whether Node.js, Debian's Chromium and `tests/browser/node_modules` are
/// there. When they are not, says so and returns false, unless
/// `REQUIRE_BROWSER_TESTS=1` (set by the test script and CI): then panics.
pub fn available() -> bool {
    let ready = dir().join("node_modules/hls.js").exists()
        && dir().join("node_modules/playwright-core").exists()
        && std::path::Path::new("/usr/bin/chromium").exists()
        && super::have("node");
    if !ready {
        assert!(
            std::env::var("REQUIRE_BROWSER_TESTS").as_deref() != Ok("1"),
            "browser test required but Chromium, Node.js or tests/browser/node_modules is missing"
        );
        eprintln!(
            "SKIP: Chromium, Node.js or tests/browser/node_modules missing (run scripts/test.sh)"
        );
    }
    ready
}

/// Held by a test for as long as it runs a browser: Chromium, a server and
/// a sender per test are too much for two cores at once, and a starved
/// player stalls for reasons that have nothing to do with the server.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    BROWSER.lock().await
}

/// Play `url` for `seconds` with hls.js (`extra`: more `play.mjs` options,
/// e.g. `--switch-level 0`); returns its JSON report.
pub fn play(url: &str, seconds: u32, extra: &[&str]) -> serde_json::Value {
    let (ok, out, err) = super::run_with_timeout(
        Command::new("node")
            .arg(dir().join("play.mjs"))
            .arg(url)
            .arg(seconds.to_string())
            .args(extra)
            .current_dir(dir()),
        Duration::from_secs(u64::from(seconds) + 60),
    );
    assert!(ok, "player failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad report {e}: {out}"))
}
