#![allow(clippy::unwrap_used)]

//! `ferrocast control` manages the streams of a cluster's ingest
//! processes: real `redis-server` and PostgreSQL, the control process and
//! an ingest process sharing the database, ffmpeg publishing over SRT.
//! A stream made through the control API publishes at the ingest; the
//! API shows it on air (from the registry's ingest lease); disconnecting
//! it through the API drops the publisher at the ingest (a request in the
//! registry's event log); a rotated key is refused there within a second.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::cluster::{Node, Redis};
use ferrocast_testkit::Postgres;

async fn admitted(srt: SocketAddr, stream: &str, key: &str) -> bool {
    common::srt_publish_attempt(srt, stream, key).await.is_ok()
}

/// The JSON answer of `method path` with the bearer `token`.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let response = http
        .request(method, url)
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_process_manages_the_streams_of_the_ingest_processes() {
    let Some(redis) = Redis::start() else { return };
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let database = [("FERROCAST_DATABASE_URL", url.as_str())];
    let control = Node::start_with(
        "control",
        "control-1",
        &redis,
        "",
        &database,
        "ferrocast control ready",
    );
    let ingest = Node::start_with(
        "ingest",
        "ingest-1",
        &redis,
        "",
        &database,
        "ferrocast ingest ready",
    );
    let srt = ingest.addr("srt");
    let token = std::fs::read_to_string(control.dir.path().join("data/admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let api = format!("{}/api/v1", control.http());
    let http = common::client();

    // Made through the control process: the ingest takes its key.
    let (status, made) = call(
        &http,
        reqwest::Method::POST,
        &format!("{api}/streams"),
        &token,
    )
    .await;
    assert_eq!(status, 422, "a stream needs a name: {made}");
    let made: serde_json::Value = serde_json::from_str(
        &http
            .post(format!("{api}/streams"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(r#"{"name": "cam"}"#)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let key1 = made["publish_key"].as_str().unwrap().to_owned();
    // Publishing was open while no stream existed; the new stream closes
    // it at the ingest within a second.
    let start = Instant::now();
    while admitted(srt, "cam", &"0".repeat(64)).await {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a wrong key still publishes after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _push = common::ffmpeg_push(srt, &format!("publish:live/cam?key={key1}"), 60);

    // On air, as the registry says.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = call(
            &http,
            reqwest::Method::GET,
            &format!("{api}/streams/cam"),
            &token,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["live"]["on_air"] == true {
            assert_eq!(body["settings"]["key_prefix"], &key1[..8]);
            break;
        }
        assert!(Instant::now() < deadline, "never on air: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Disconnected through the API: the ingest drops the publisher.
    let (status, body) = call(
        &http,
        reqwest::Method::DELETE,
        &format!("{api}/streams/cam/publisher"),
        &token,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert!(
        ingest.wait_for_log(
            "publisher disconnected by an operator",
            Duration::from_secs(10)
        ),
        "the ingest kept the publisher; its log:\n{}",
        ingest.log()
    );

    // Rotated: the old key is refused at the ingest within a second.
    let (status, rotated) = call(
        &http,
        reqwest::Method::POST,
        &format!("{api}/streams/cam/key"),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let key2 = rotated["publish_key"].as_str().unwrap().to_owned();
    let start = Instant::now();
    while admitted(srt, "cam", &key1).await {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the old key still publishes after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new key publishes, once the ingest has let go of the last
    // session the old key opened (a second publisher is refused while one
    // is live).
    let start = Instant::now();
    while !admitted(srt, "cam", &key2).await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new key is refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The key never reached a log.
    assert!(!control.log().contains(&key2) && !ingest.log().contains(&key2));
    assert!(!control.log().contains(&token));
}
