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

/// The report's samples, requests and events (hls.js's own log with
/// `--hls-debug`) as one line each, in time order (ms since the player
/// started), from three seconds before the first stall to two seconds
/// after it (all of them if there was none): what the player had buffered
/// and was waiting for when it stalled.
#[allow(dead_code)]
pub fn timeline(report: &serde_json::Value) -> String {
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let events = list("events");
    let what = |e: &serde_json::Value| e["what"].as_str().unwrap_or("?").to_owned();
    let playing = events
        .iter()
        .position(|e| what(e) == "playing")
        .unwrap_or(events.len());
    let stall = events[playing..]
        .iter()
        .find(|e| what(e).starts_with("waiting at") && !what(e).contains("(seeking)"))
        .and_then(|e| e["t"].as_i64());
    let shown = |t: i64| stall.is_none_or(|s| (s - 3000..=s + 2000).contains(&t));
    let mut lines: Vec<(i64, String)> = Vec::new();
    for s in list("samples") {
        lines.push((
            s["t"].as_i64().unwrap_or(0),
            format!(
                "sample   t={} currentTime={:.3} buffered={:.3} pdtLatency={}",
                s["t"],
                s["currentTime"].as_f64().unwrap_or(f64::NAN),
                s["buffered"].as_f64().unwrap_or(f64::NAN),
                s["pdtLatency"]
            ),
        ));
    }
    for r in list("requests") {
        lines.push((
            r["start"].as_i64().unwrap_or(0),
            format!(
                "request  {}..{} {} {}",
                r["start"],
                r["end"],
                r["status"],
                r["path"].as_str().unwrap_or("?")
            ),
        ));
    }
    for e in &events {
        lines.push((
            e["t"].as_i64().unwrap_or(0),
            format!("event    t={} {}", e["t"], what(e)),
        ));
    }
    lines.retain(|(t, _)| shown(*t));
    lines.sort_by_key(|(t, _)| *t);
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Drives one of Ferrocast's own pages with `tests/browser/ui.mjs`
/// (`scenario`: `dashboard` or `player`), saving its screenshots into
/// `out`; returns its JSON report.
#[allow(dead_code)]
pub fn ui(scenario: &str, url: &str, out: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    std::fs::create_dir_all(out).unwrap();
    let (ok, stdout, err) = super::run_with_timeout(
        Command::new("node")
            .arg(dir().join("ui.mjs"))
            .arg(scenario)
            .arg(url)
            .arg(out)
            .args(extra)
            .current_dir(dir()),
        Duration::from_secs(150),
    );
    assert!(ok, "ui.mjs failed: {err}");
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad report {e}: {stdout}"));
    assert!(report["failed"].is_null(), "{scenario}: {report}");
    report
}

/// Where a test keeps its screenshots: under Cargo's temporary directory
/// for integration tests (`target/tmp/screenshots/NAME`), kept after the
/// run.
#[allow(dead_code)]
pub fn artifacts(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(name)
}

/// The playhead positions the player sampled (`currentTime`, every 250 ms).
#[allow(dead_code)]
pub fn current_times(report: &serde_json::Value) -> Vec<f64> {
    report["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["currentTime"].as_f64().unwrap())
        .collect()
}

/// How far the playhead moved, in seconds: from its first sampled position
/// past zero to its last.
#[allow(dead_code)]
pub fn played_seconds(times: &[f64]) -> f64 {
    times.last().unwrap() - times.iter().copied().find(|&t| t > 0.0).unwrap()
}
