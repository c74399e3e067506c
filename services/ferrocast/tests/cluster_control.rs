#![allow(clippy::unwrap_used)]

//! `ferrocast control` manages the streams of a cluster's ingest
//! processes: real `redis-server` and PostgreSQL, the control process and
//! an ingest process sharing the database, ffmpeg publishing over SRT.
//! A stream made through the control API publishes at the ingest; the
//! API shows it on air (from the registry's ingest lease) with what the
//! ingest and the transcoder report (publisher, SRT statistics, tracks,
//! renditions), the edges' viewer totals from Redis and a thumbnail from
//! the ingest's bus; disconnecting
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
    // The edges' viewer totals are in Redis; control reads them with the
    // edges' own `[edge.viewers]` setting.
    let keys = common::edge::EdgeKeys::generate();
    let redis_url = redis.url();
    let control = Node::start_with(
        "control",
        "control-1",
        &redis,
        &keys.config_toml_self_signed(),
        &[
            database[0],
            (
                "FERROCAST_CLUSTER__PUBLISH_ADDRESS",
                "ingest.example.com:9443",
            ),
            ("FERROCAST_EDGE__VIEWERS__REDIS_URL", redis_url.as_str()),
        ],
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
    let _transcoder = Node::start("transcode", "transcode-1", &redis, "");
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
    // Push URLs name the cluster's publish address.
    let push = made["push"]["srt_url"].as_str().unwrap();
    assert_eq!(
        push,
        format!("srt://ingest.example.com:9443?streamid=publish:live/cam?key={key1}")
    );
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
    // Two edges' counts as the edges write them (crates/edge's
    // viewers::cluster layout): four viewers of cam in all.
    for (edge, viewers) in [("edge-a", "3"), ("edge-b", "1")] {
        let hash = format!("ferrocast:viewers:edge:{edge}");
        redis.cli(&["HSET", &hash, ":alive", "1", "cam", viewers]);
        redis.cli(&["SADD", "ferrocast:viewers:edges", edge]);
    }

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
        let live = &body["live"];
        // On air, with the ingest's report (publisher, tracks) and the
        // transcoder's (renditions).
        let reported = live["publisher"]["srt"]["rtt_us"].is_u64()
            && live["tracks"].as_array().is_some_and(|t| t.len() == 2)
            && live["renditions"].as_array().is_some_and(|r| !r.is_empty());
        if live["on_air"] == true && reported {
            assert_eq!(body["settings"]["key_prefix"], &key1[..8]);
            assert_eq!(live["publisher"]["protocol"], "srt", "{body}");
            assert_eq!(live["viewers"], 4, "{body}");
            assert!(live["publisher"]["bytes"].as_u64().unwrap() > 0, "{body}");
            let video = &live["tracks"][0];
            assert_eq!(video["kind"], "video", "{body}");
            assert!(video["codec"].as_str().unwrap().starts_with("avc1."));
            assert_eq!(
                (&video["width"], &video["height"]),
                (&320.into(), &240.into())
            );
            assert_eq!(live["tracks"][1]["kind"], "audio", "{body}");
            for rendition in live["renditions"].as_array().unwrap() {
                assert!(rendition["height"].as_u64().unwrap() > 0, "{body}");
                assert!(rendition["bitrate_bps"].as_u64().unwrap() > 0, "{body}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never on air with the processes' reports: {body}\ningest log:\n{}",
            ingest.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A thumbnail from the ingest's bus: a 320x240 JPEG.
    let response = http
        .get(format!("{api}/streams/cam/thumbnail"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let jpeg = response.bytes().await.unwrap();
    let file = control.dir.path().join("thumbnail.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let probed = common::probe_streams(&file);
    assert!(
        probed.contains("codec_name=mjpeg") && probed.contains("width=320"),
        "{probed}"
    );

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
