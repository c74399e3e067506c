#![allow(clippy::unwrap_used)]

//! Recording to S3 end to end, against moto's S3 server started here on a
//! free loopback port: an ffmpeg SRT push with the test ladder recorded
//! while the S3 server is stopped for 20 s, ended, then played as VOD by
//! ffprobe and ffmpeg from a copy of what the store holds (every rendition
//! decodes end to end, its duration within a segment of what was pushed, its media
//! sequence continuous); and a `ferrocast up` killed mid-recording whose
//! recording the next process closes.
//!
//! Skipped (with a message) without moto's server, unless
//! `REQUIRE_S3_TESTS` is set.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, client, ffmpeg_push, get_text, run_with_timeout};
use ferrocast_recorder::manifest::{ClosedBy, Summary};
use ferrocast_storage::{ObjectStore, S3Options, S3Store};
use ferrocast_testkit::S3Server;

const BUCKET: &str = "media";

/// `[recording]` to moto, with `extra` keys in the section.
fn recording_toml(s3: &S3Server, extra: &str) -> String {
    format!(
        r#"
[recording]
prefix = "rec/"
{extra}
[recording.s3]
bucket = "{BUCKET}"
endpoint = "{}"
path_style = true
access_key_id = "test-key-id"
secret_access_key = "test-secret-key"
create_bucket = true
"#,
        s3.endpoint()
    )
}

async fn store(s3: &S3Server) -> S3Store {
    S3Store::new(S3Options {
        endpoint: Some(s3.endpoint()),
        path_style: true,
        credentials: Some(("test-key-id".into(), "test-secret-key".into())),
        operation_timeout: Duration::from_secs(5),
        ..S3Options::new(BUCKET, "us-east-1")
    })
    .await
    .unwrap()
}

/// Waits (bounded) for a key under `prefix` ending with `suffix`. The
/// store has no notifications: it is listed every 250 ms.
async fn wait_for_key(store: &S3Store, prefix: &str, suffix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(keys) = store.list(prefix).await
            && let Some(key) = keys.into_iter().find(|k| k.ends_with(suffix))
        {
            return key;
        }
        assert!(Instant::now() < deadline, "no {prefix}…{suffix} in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Copies every object under `root` into `dir`, keeping the paths after
/// `root` (the store wants signed requests: players read the copy).
async fn download(store: &S3Store, root: &str, dir: &std::path::Path) {
    for key in store.list(root).await.unwrap() {
        let path = dir.join(key.strip_prefix(root).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, store.get(&key).await.unwrap().unwrap()).unwrap();
    }
}

async fn summary(store: &S3Store, key: &str) -> Summary {
    let body = store.get(key).await.unwrap().unwrap();
    ferrocast_recorder::manifest::read(key, &body).unwrap()
}

/// The Media Sequence Numbers of a VOD playlist's segments, from their
/// names (`sMSN-…`).
fn sequence_numbers(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .map(|l| l[1..11].parse().unwrap())
        .collect()
}

/// ffmpeg decodes `url` end to end without an error; ffprobe's duration
/// of it in seconds.
fn decode_and_probe(url: &str) -> f64 {
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg").args(["-v", "error", "-i", url, "-f", "null", "-"]),
        Duration::from_secs(120),
    );
    assert!(ok && err.trim().is_empty(), "{url}: ffmpeg: {err}");
    let (ok, out, err) = run_with_timeout(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            url,
        ]),
        Duration::from_secs(60),
    );
    assert!(ok, "{url}: ffprobe: {err}");
    out.trim().parse().unwrap()
}

/// A gauge's value in a Prometheus text page.
fn gauge(page: &str, name: &str) -> i64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_recorded_through_an_s3_outage_plays_whole_as_vod() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let config = format!("{}{}", common::TEST_LADDER, recording_toml(&s3, ""));
    let server = Server::start_with_args(&config, &["--ladder", "test"]);
    let push = ffmpeg_push(server.srt, "publish:live/rec", 30);
    let http = client();
    common::playlist_with_segment(&http, &server, "rec/240p", 1).await;

    // The store stops answering for 20 s while the stream goes on: the
    // spool holds what is recorded meanwhile.
    s3.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (_, metrics) = get_text(&http, &format!("http://{}/metrics", server.http)).await;
    let spooled = gauge(&metrics, "ferrocast_recording_spool_objects");
    tokio::time::sleep(Duration::from_secs(10)).await;
    s3.signal("-CONT");
    assert!(spooled > 0, "nothing waited in the spool while S3 was away");

    push.wait(Duration::from_secs(60));
    assert!(
        server.wait_for_log("recording closed", Duration::from_secs(30)),
        "{}",
        server.log()
    );
    let store = store(&s3).await;
    let summary_key = wait_for_key(
        &store,
        "rec/rec/",
        "/recording.json",
        Duration::from_secs(90),
    )
    .await;
    let summary = summary(&store, &summary_key).await;
    assert_eq!(summary.closed_by, ClosedBy::Writer);
    let mut names: Vec<&str> = summary.renditions.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["144p", "180p", "240p", "source"]);
    let metrics = get_text(&http, &format!("http://{}/metrics", server.http))
        .await
        .1;
    assert!(
        !metrics.contains("\nferrocast_recording_dropped_total{"),
        "segments dropped:\n{metrics}"
    );

    let root = summary_key.trim_end_matches("recording.json");
    let copy = tempfile::tempdir().unwrap();
    download(&store, root, copy.path()).await;
    let base = format!("{}/", copy.path().display());
    for rendition in &summary.renditions {
        let playlist_key = format!("{root}{}/index.m3u8", rendition.name);
        let body = store.get(&playlist_key).await.unwrap().unwrap();
        let playlist = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"),
            "{playlist}"
        );
        assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
        assert!(!playlist.contains("DISCONTINUITY"), "{playlist}");
        // No segment missing: the numbers run on without a hole.
        let numbers = sequence_numbers(&playlist);
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{playlist}");
        // Every rendition decodes whole; 30 s pushed, 2 s segments.
        let seconds = decode_and_probe(&format!("{base}{}/index.m3u8", rendition.name));
        assert!(
            (seconds - 30.0).abs() <= 2.0,
            "{}: {seconds} s",
            rendition.name
        );
    }
    // The multivariant playlist lists them all and plays.
    let seconds = decode_and_probe(&format!("{base}index.m3u8"));
    assert!((seconds - 30.0).abs() <= 2.0, "multivariant: {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_by_a_kill_is_closed_by_the_next_process() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let config = recording_toml(&s3, "heartbeat_secs = 1\nstale_after_secs = 3");
    let mut first = Server::start(&config);
    let push = ffmpeg_push(first.srt, "publish:live/cut", 30);
    let store = store(&s3).await;
    // Segments recorded and stored, then the process is killed outright.
    let http = client();
    common::playlist_with_segment(&http, &first, "cut", 3).await;
    wait_for_key(&store, "rec/cut/", ".m4s", Duration::from_secs(30)).await;
    first.kill();
    push.stop();
    // What the store holds now is all there is: the killed process's spool
    // stays in its own data directory.
    let segments_stored = store
        .list("rec/cut/")
        .await
        .unwrap()
        .iter()
        .filter(|k| k.ends_with(".m4s"))
        .count();
    assert!(segments_stored >= 1);
    assert!(
        store.list("rec/.open/cut/").await.unwrap().len() == 1,
        "left open"
    );

    let second = Server::start(&config);
    assert!(
        second.wait_for_log(
            "closed a recording its writer left open",
            Duration::from_secs(30)
        ),
        "{}",
        second.log()
    );
    let summary_key = wait_for_key(
        &store,
        "rec/cut/",
        "/recording.json",
        Duration::from_secs(10),
    )
    .await;
    let summary = summary(&store, &summary_key).await;
    assert_eq!(summary.closed_by, ClosedBy::Recovery);
    assert_eq!(summary.renditions[0].segments, segments_stored as u64);
    assert!(
        store.list("rec/.open/cut/").await.unwrap().is_empty(),
        "marker gone"
    );
    let root = summary_key.trim_end_matches("recording.json");
    let copy = tempfile::tempdir().unwrap();
    download(&store, root, copy.path()).await;
    let seconds = decode_and_probe(&format!("{}/source/index.m3u8", copy.path().display()));
    assert!(seconds >= 2.0, "{seconds} s");
}
