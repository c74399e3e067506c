#![allow(clippy::unwrap_used)]

//! Recording to S3 end to end, against moto's S3 server started here on a
//! free loopback port: an ffmpeg SRT push with the test ladder recorded
//! while the S3 server is stopped for 20 s, ended, then played as VOD by
//! ffprobe and ffmpeg from a copy of what the store holds (every rendition
//! decodes end to end, its duration within a segment of what was pushed, its media
//! sequence continuous), and through the edge (`/vod/…`: the viewer JWT
//! on the multivariant playlist, edge tokens on every URI, byte ranges of
//! segments, hls.js in headless Chromium playing it without a stall); and
//! a `ferrocast up` killed mid-recording whose recording the next process
//! closes.
//!
//! Skipped (with a message) without moto's server, unless
//! `REQUIRE_S3_TESTS` is set.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::edge::{EdgeKeys, HS256_SECRET, assert_signed, claims, hs256_jwt, uris};
use common::{Server, browser, client, ffmpeg_push, get_text, run_with_timeout};
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
    let keys = EdgeKeys::generate();
    let config = format!(
        "{}{}{}",
        common::TEST_LADDER,
        keys.config_toml_self_signed(),
        recording_toml(&s3, "")
    );
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

    play_through_the_edge(&server, &summary).await;
}

/// The recording through the edge: refused without a viewer JWT, signed
/// like live with one, segments in byte ranges, played by hls.js.
async fn play_through_the_edge(server: &Server, summary: &Summary) {
    let edge = format!("https://{}", server.https.unwrap());
    let vod = format!("{edge}/vod/{}/{}", summary.stream, summary.recording);
    // The edge's own certificate is pinned by the browser; reqwest is told
    // not to check it (a loopback test of the edge's answers).
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let (status, _) = get_text(&https, &format!("{vod}/index.m3u8")).await;
    assert_eq!(status, 401, "no viewer JWT");
    let jwt = hs256_jwt(&claims(&[&summary.stream]), HS256_SECRET);
    let other = hs256_jwt(&claims(&["another"]), HS256_SECRET);
    let (status, _) = get_text(&https, &format!("{vod}/index.m3u8?token={other}")).await;
    assert_eq!(status, 403, "a JWT for another stream");

    let (status, multivariant) = get_text(&https, &format!("{vod}/index.m3u8?token={jwt}")).await;
    assert_eq!(status, 200, "{multivariant}");
    assert_signed(&multivariant);
    let media_uri = uris(&multivariant).into_iter().next().unwrap();
    let (status, media) = get_text(&https, &format!("{vod}/{media_uri}")).await;
    assert_eq!(status, 200, "{media}");
    assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{media}");
    assert_signed(&media);
    let rendition = media_uri.split('/').next().unwrap();
    let segment_uri = uris(&media)
        .into_iter()
        .find(|u| u.contains(".m4s"))
        .unwrap();
    let segment_url = format!("{vod}/{rendition}/{segment_uri}");
    let whole = https.get(&segment_url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let whole = whole.bytes().await.unwrap();
    let part = https
        .get(&segment_url)
        .header("range", "bytes=8-99")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 8-99/{}", whole.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), whole.slice(8..100));
    let (status, _) = get_text(
        &https,
        &format!(
            "{vod}/{rendition}/{}",
            segment_uri.split('?').next().unwrap()
        ),
    )
    .await;
    assert_eq!(status, 401, "a segment without its token");

    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        server.spki_sha256.as_deref().unwrap()
    );
    let report = browser::play(
        &format!("{vod}/index.m3u8?token={jwt}"),
        8,
        &["--chromium-arg", &pin],
    );
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    assert_eq!(
        report["stalls"],
        0,
        "stalled:\n{}",
        browser::timeline(&report)
    );
    let played = browser::played_seconds(&browser::current_times(&report));
    assert!(played > 4.0, "played only {played:.1} s: {report}");
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

/// The number of segments a media playlist lists.
fn listed(playlist: &str) -> usize {
    playlist.matches("#EXTINF:").count()
}

/// The total duration of a media playlist's segments, seconds.
fn listed_seconds(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|rest| rest.trim_end_matches(',').parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dvr_lets_hls_js_go_back_a_minute_in_a_live_stream() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let keys = EdgeKeys::generate();
    let config = format!(
        "{}{}",
        keys.config_toml_self_signed(),
        recording_toml(&s3, "dvr_window_secs = 120")
    );
    let server = Server::start(&config);
    let _push = ffmpeg_push(server.srt, "publish:live/dvr", 120);
    let http = client();

    // 70 s recorded: the DVR playlist grows by one segment per segment;
    // there is no event for it, so it is read every second.
    let dvr_url = server.url("dvr", "dvr.m3u8");
    let deadline = Instant::now() + Duration::from_secs(150);
    let playlist = loop {
        let (status, text) = get_text(&http, &dvr_url).await;
        if status == 200 && listed_seconds(&text) >= 70.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "{status} {text}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let uris: Vec<&str> = playlist.lines().filter(|l| !l.starts_with('#')).collect();
    // Old segments from the recording, the newest from the live window.
    assert!(uris[0].starts_with("/vod/dvr/"), "{playlist}");
    assert!(uris.last().unwrap().starts_with("seg"), "{playlist}");
    let (status, delta) = get_text(&http, &format!("{dvr_url}?_HLS_skip=YES")).await;
    assert_eq!(status, 200);
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
    assert!(listed(&delta) < listed(&playlist) / 2, "{delta}");
    // Without a DVR window a stream has none.
    let (status, _) = get_text(&http, &server.url("nosuch", "dvr.m3u8")).await;
    assert_eq!(status, 404);

    if !browser::available() {
        return;
    }
    let _one_at_a_time = browser::exclusive().await;
    let jwt = hs256_jwt(&claims(&["dvr"]), HS256_SECRET);
    let url = format!(
        "https://{}/live/dvr/index-dvr.m3u8?token={jwt}",
        server.https.unwrap()
    );
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        server.spki_sha256.as_deref().unwrap()
    );
    let report = browser::play(&url, 24, &["--chromium-arg", &pin, "--seek-back", "60"]);
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    assert_eq!(
        report["stalls"],
        0,
        "stalled:\n{}",
        browser::timeline(&report)
    );
    let seek = &report["seek"];
    let (from, to) = (seek["from"].as_f64().unwrap(), seek["to"].as_f64().unwrap());
    assert!((from - to - 60.0).abs() < 0.5, "{seek}");
    // After the seek it plays on from there, a minute behind live.
    let after: Vec<f64> = report["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["t"].as_f64().unwrap() > seek["t"].as_f64().unwrap() + 1000.0)
        .map(|s| s["currentTime"].as_f64().unwrap())
        .collect();
    let (first, last) = (after[0], *after.last().unwrap());
    assert!(
        first < from - 50.0,
        "did not stay back: {first} after seeking from {from}"
    );
    assert!(
        last - first > 5.0,
        "did not play on after the seek: {first} → {last}"
    );
    // The old media came from the recording through the edge.
    let archived = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/vod/dvr/") && r["status"] == 200)
        .count();
    assert!(archived > 0, "no recorded segment loaded: {report}");
}
