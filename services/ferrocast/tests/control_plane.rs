#![allow(clippy::unwrap_used)]

//! Publish keys from the control plane's database, through `ferrocast
//! up`'s SRT listener: the default SQLite file under `data_dir`, and a
//! real PostgreSQL server (started by the test on a free port). A key
//! rotated in the database stops working for new publishers within a
//! second, and keeps being refused while the database is down.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Server;
use ferrocast_control::{Actor, Database, NewStream};
use ferrocast_testkit::Postgres;

/// Whether an SRT caller publishing `stream` with `key` gets in (the
/// handshake completes) or is refused (its streams take a second
/// publisher over, so an earlier call's session never refuses a later one).
async fn admitted(srt: SocketAddr, stream: &str, key: &str) -> bool {
    match common::srt_publish_attempt(srt, stream, key).await {
        Ok(()) => true,
        Err(reason) => {
            // Refused for its key or name, never for a live publisher.
            assert!(
                reason.contains("Unauthorized") || reason.contains("Notfound"),
                "{reason}"
            );
            false
        }
    }
}

/// Polls until `admitted(...) == want`, up to `within`; how long it took.
async fn until_admission(
    srt: SocketAddr,
    stream: &str,
    key: &str,
    want: bool,
    within: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() <= within {
        if admitted(srt, stream, key).await == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn actor() -> Actor {
    Actor::Token("test".into())
}

fn cam() -> NewStream {
    NewStream {
        name: "cam".into(),
        on_duplicate: ferrocast_config::DuplicatePublisher::TakeOver,
        ..NewStream::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_in_postgres_is_refused_within_a_second_also_once_the_database_is_down() {
    let Some(pg) = Postgres::start() else { return };
    let db = Database::open(&pg.url()).await.unwrap();
    let key1 = db
        .create_stream(cam(), &actor())
        .await
        .unwrap()
        .publish_key
        .expose()
        .to_owned();
    let server = Server::start(&format!("database_url = \"{}\"\n", pg.url()));
    let srt = server.srt;
    assert!(admitted(srt, "cam", &key1).await, "{}", server.log());
    assert!(!admitted(srt, "cam", "0123456789abcdef").await);
    // Streams exist: publishing is no longer open to any name.
    assert!(!admitted(srt, "other", &key1).await);

    let key2 = db
        .rotate_key("cam", &actor())
        .await
        .unwrap()
        .publish_key
        .expose()
        .to_owned();
    let refused = until_admission(srt, "cam", &key1, false, Duration::from_secs(1)).await;
    eprintln!("old key refused after {refused:?}");
    assert!(refused.is_some(), "old key still admitted after 1 s");
    assert!(admitted(srt, "cam", &key2).await);

    // The database goes away: the process answers from what it loaded.
    db.close().await;
    pg.stop();
    assert!(admitted(srt, "cam", &key2).await, "{}", server.log());
    assert!(!admitted(srt, "cam", &key1).await);
    // The outage is logged once, without the URL (it holds a password).
    assert!(
        server.wait_for_log(
            "control-plane database unreachable",
            Duration::from_secs(20)
        ),
        "{}",
        server.log()
    );
    assert!(
        !server.log().contains("ferrocast:ferrocast@"),
        "{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferrocast_up_keeps_its_streams_in_a_sqlite_file_under_data_dir() {
    let server = Server::start("");
    let srt = server.srt;
    // No stream anywhere: open, as without a database (each probe with a
    // name of its own: open streams refuse a second publisher).
    assert!(admitted(srt, "anything", "whatever").await);
    let file = server.data_dir.path().join("data").join("control.db");
    assert!(file.exists(), "no {}", file.display());

    // Another process (this test) adds a stream to the same file.
    let db = Database::open_sqlite(&file).await.unwrap();
    let key = db
        .create_stream(cam(), &actor())
        .await
        .unwrap()
        .publish_key
        .expose()
        .to_owned();
    let start = Instant::now();
    let mut probe = 0;
    while admitted(srt, &format!("probe{probe}"), "whatever").await {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still open after 1 s"
        );
        probe += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted(srt, "cam", &key).await);
    assert!(!admitted(srt, "cam", "not-the-key-123").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_makes_streams_whose_keys_publish_and_rotates_them_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start("");
    // First start: the admin token is in a file only its owner may read,
    // never in the log.
    let file = server.data_dir.path().join("data").join("admin-token");
    let admin = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!server.log().contains(&admin));
    assert!(
        server.log().contains("admin API token was written"),
        "{}",
        server.log()
    );

    let http = common::client();
    let api = format!("http://{}/api/v1", server.http);
    let made: serde_json::Value = serde_json::from_str(
        &http
            .post(format!("{api}/streams"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(r#"{ "name": "cam", "on_duplicate": "take_over" }"#)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let key1 = made["publish_key"].as_str().unwrap().to_owned();
    // The change reaches the authoriser at once (no poll to wait for).
    assert!(admitted(server.srt, "cam", &key1).await, "{made}");
    let rotated: serde_json::Value = serde_json::from_str(
        &http
            .post(format!("{api}/streams/cam/key"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let key2 = rotated["publish_key"].as_str().unwrap();
    let refused = until_admission(server.srt, "cam", &key1, false, Duration::from_secs(1)).await;
    assert!(refused.is_some());
    assert!(admitted(server.srt, "cam", key2).await);
    // The list needs a token, and shows the stream with its settings.
    let status = http.get(format!("{api}/streams")).send().await.unwrap();
    assert_eq!(status.status(), 401);
    let listed = http
        .get(format!("{api}/streams"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: serde_json::Value = serde_json::from_str(&listed.text().await.unwrap()).unwrap();
    assert_eq!(listed["items"][0]["name"], "cam");
    assert_eq!(listed["items"][0]["settings"]["key_prefix"], &key2[..8]);
    // No token, no change.
    let refused = http
        .post(format!("{api}/streams"))
        .header("content-type", "application/json")
        .body(r#"{ "name": "cam2" }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(!server.log().contains(key2));

    // A live publisher, disconnected with a key rotation: it cannot come
    // back with the key it has.
    let mut push = common::ffmpeg_push(server.srt, &format!("publish:live/cam?key={key2}"), 60);
    // Live once the status shows its media arriving.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status: serde_json::Value = serde_json::from_str(
            &http
                .get(format!("{api}/streams/cam"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let bytes = status["live"]["publisher"]["bytes"].as_u64().unwrap_or(0);
        if bytes > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "ffmpeg never live: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rotated = http
        .post(format!("{api}/streams/cam/key?disconnect=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    assert!(server.wait_for_log(
        "publisher disconnected by an operator",
        Duration::from_secs(5)
    ));
    // ffmpeg sees its connection end and gives up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while push.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ffmpeg still connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!admitted(server.srt, "cam", key2).await);
    let gone = http
        .delete(format!("{api}/streams/cam/publisher"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}
