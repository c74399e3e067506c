#![allow(clippy::unwrap_used)]

//! The curl examples of `docs/api.md`, run in order against a fresh
//! `ferrocast up` with an edge: every ```sh block must exit 0 (each checks
//! its own answer with grep or the status code).

mod common;

use std::process::Command;
use std::time::Duration;

use common::edge::EdgeKeys;
use common::{Server, run_with_timeout};

/// The ```sh blocks of a Markdown text, in order.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_documented_curl_examples_work() {
    if !common::have("curl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is needed for the API documentation's examples"
        );
        eprintln!("SKIP: no curl");
        return;
    }
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md")).unwrap();
    let blocks = shell_blocks(&docs);
    assert!(blocks.len() >= 10, "only {} examples found", blocks.len());
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml_self_signed());
    let token = std::fs::read_to_string(server.data_dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let scratch = tempfile::tempdir().unwrap();
    for block in &blocks {
        let (ok, out, err) = run_with_timeout(
            Command::new("bash")
                .args(["-euo", "pipefail", "-c", block])
                .env("FERROCAST", format!("http://{}", server.http))
                .env("TOKEN", &token)
                .current_dir(scratch.path()),
            Duration::from_secs(30),
        );
        assert!(ok, "example failed:\n{block}\nstdout: {out}\nstderr: {err}");
    }
    // No example leaves the admin token in the server's log.
    assert!(!server.log().contains(&token));
}
