#![allow(clippy::unwrap_used)]

//! The operator dashboard and the player page in headless Chromium,
//! against `ferrocast up` with an edge:
//!
//! - the dashboard, signed in with the first admin token, lists a stream
//!   pushed by ffmpeg as live, with its size and a thumbnail whose pixels
//!   are not blank; a stream created through the page shows a key and an
//!   SRT URL that then publishes; the stream's page draws its chart;
//! - the player page, opened with a link whose viewer token the API
//!   minted, plays through the edge and shows its latency and rendition;
//!   without a token it says so.
//!
//! Screenshots go to `target/tmp/screenshots/` (kept as artifacts) and
//! are checked to exist. Needs Node.js, Chromium and `tests/browser`'s
//! node_modules; skipped with a line without them unless
//! `REQUIRE_BROWSER_TESTS=1`.

mod common;

use std::time::{Duration, Instant};

use common::edge::EdgeKeys;
use common::{Server, browser, client, ffmpeg_push, playlist_with_segment};

fn admin_token(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// `GET` an API path with a bearer token; the status and the JSON body.
async fn api_get(server: &Server, token: &str, path: &str) -> (u16, serde_json::Value) {
    let response = client()
        .get(format!("http://{}{path}", server.http))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_default())
}

fn assert_screenshot(dir: &std::path::Path, name: &str) {
    let size = std::fs::metadata(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .len();
    assert!(size > 10_000, "{name} is only {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_a_live_stream_and_makes_one_that_publishes() {
    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml_self_signed());
    let _studio = ffmpeg_push(server.srt, "publish:live/studio", 120);
    playlist_with_segment(&client(), &server, "studio", 2).await;
    let token = admin_token(&server);
    let out = browser::artifacts("dashboard");

    let report = browser::ui(
        "dashboard",
        &format!("http://{}/dashboard", server.http),
        &out,
        &["--token", &token, "--live", "studio", "--create", "newcam"],
    );
    assert_eq!(report["pageErrors"], serde_json::json!([]), "{report}");
    let studio = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "studio")
        .unwrap_or_else(|| panic!("no studio row: {report}"));
    let cells: Vec<&str> = studio["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cells[1], "studio");
    assert_eq!(cells[2], "live");
    assert!(cells[3].ends_with(" 320x240"), "{cells:?}");
    assert!(
        cells[4].ends_with(" kb/s") && cells[4] != "0 kb/s",
        "{cells:?}"
    );
    assert!(cells[5].contains(" lost / "), "{cells:?}");
    // The thumbnail: the test picture at 320x240, not one flat colour.
    let thumb = &report["thumb"];
    assert_eq!(
        (thumb["width"].as_u64(), thumb["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(
        thumb["stddev"].as_f64().unwrap() > 20.0,
        "blank thumbnail: {thumb}"
    );

    // The stream made through the page, with its key and push URL.
    let created = &report["created"];
    assert_eq!(created["stream"], "newcam");
    let key = created["key"].as_str().unwrap();
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
    let srt_url = created["srtUrl"].as_str().unwrap();
    assert_eq!(
        srt_url,
        format!(
            "srt://127.0.0.1:{}?streamid=publish:live/newcam?key={key}",
            server.srt.port()
        )
    );
    assert!(created["ffmpeg"].as_str().unwrap().contains(srt_url));
    assert!(
        report["detail"].as_str().unwrap().starts_with("live"),
        "{report}"
    );
    for shot in ["dashboard.png", "dashboard-key.png", "dashboard-stream.png"] {
        assert_screenshot(&out, shot);
    }

    // That key publishes: ffmpeg to the streamid of the URL shown.
    let streamid = srt_url.split_once("streamid=").unwrap().1;
    let _newcam = ffmpeg_push(server.srt, streamid, 60);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api_get(&server, &token, "/api/v1/streams/newcam").await;
        assert_eq!(status, 200, "{body}");
        if body["live"]["on_air"] == true {
            assert_eq!(body["settings"]["key_prefix"], &key[..8]);
            break;
        }
        assert!(Instant::now() < deadline, "newcam never went live: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_page_plays_through_the_edge_with_a_minted_token() {
    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let keys = EdgeKeys::generate();
    let server = Server::start(&keys.config_toml_self_signed());
    let _show = ffmpeg_push(server.srt, "publish:live/show", 120);
    playlist_with_segment(&client(), &server, "show", 2).await;
    let token = admin_token(&server);
    let minted = client()
        .post(format!(
            "http://{}/api/v1/streams/show/viewer-token",
            server.http
        ))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body(r#"{"ttl_secs": 600}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status().as_u16(), 200);
    let minted: serde_json::Value = serde_json::from_str(&minted.text().await.unwrap()).unwrap();
    let url = format!(
        "https://{}{}",
        server.https.unwrap(),
        minted["player_path"].as_str().unwrap()
    );
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        server.spki_sha256.as_deref().unwrap()
    );
    let out = browser::artifacts("player");

    let report = browser::ui("player", &url, &out, &["--chromium-arg", &pin]);
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(320), Some(240))
    );
    let latency = report["latency"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 10.0, "{report}");
    assert!(
        report["latencyText"].as_str().unwrap().ends_with(" s"),
        "{report}"
    );
    assert!(
        report["renditionText"].as_str().unwrap().contains("p · "),
        "{report}"
    );
    assert!(
        report["currentTime"].as_f64().unwrap() > report["startTime"].as_f64().unwrap() + 3.0,
        "stopped playing: {report}"
    );
    assert_eq!(report["share"], url.as_str());
    assert_screenshot(&out, "player.png");

    // Without a token the page says what is missing.
    let bare = url.split_once('#').unwrap().0;
    let out = browser::artifacts("player-no-token");
    let report = browser::ui("player", bare, &out, &["--chromium-arg", &pin]);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("no viewer token"),
        "{report}"
    );
}
