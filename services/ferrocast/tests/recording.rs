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

/// `ferrocast up` with the test ladder, an edge, and `[recording]` to
/// moto with `extra` keys.
fn ladder_server(s3: &S3Server, extra: &str) -> Server {
    let config = format!(
        "{}{}{}",
        common::TEST_LADDER,
        EdgeKeys::generate().config_toml_self_signed(),
        recording_toml(s3, extra)
    );
    Server::start_with_args(&config, &["--ladder", "test"])
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
/// of it in seconds. A failure shows the warnings and errors `server`
/// logged (damaged input, for one: lost SRT packets, a continuity gap).
fn decode_and_probe(url: &str, server: &Server) -> f64 {
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg").args(["-v", "error", "-i", url, "-f", "null", "-"]),
        Duration::from_secs(120),
    );
    assert!(
        ok && err.trim().is_empty(),
        "{url}: ffmpeg: {err}\nthe server's warnings:\n{}",
        server
            .log()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect::<Vec<_>>()
            .join("\n")
    );
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
    let server = ladder_server(&s3, "");
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
    // The audio in a rendition of its own (the default layout).
    assert_eq!(names, ["144p", "180p", "240p", "audio", "source"]);
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
        let seconds = decode_and_probe(&format!("{base}{}/index.m3u8", rendition.name), &server);
        assert!(
            (seconds - 30.0).abs() <= 2.0,
            "{}: {seconds} s",
            rendition.name
        );
    }
    // The multivariant playlist lists them all and plays.
    let seconds = decode_and_probe(&format!("{base}index.m3u8"), &server);
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
    // Every segment stored, of every rendition (video and audio).
    assert_eq!(
        summary.renditions.iter().map(|r| r.segments).sum::<u64>(),
        segments_stored as u64,
        "{summary:?}"
    );
    assert!(
        store.list("rec/.open/cut/").await.unwrap().is_empty(),
        "marker gone"
    );
    let root = summary_key.trim_end_matches("recording.json");
    let copy = tempfile::tempdir().unwrap();
    download(&store, root, copy.path()).await;
    let seconds = decode_and_probe(
        &format!("{}/source/index.m3u8", copy.path().display()),
        &second,
    );
    assert!(seconds >= 2.0, "{seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_told_to_stop_closes_its_recordings_first() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let mut server = Server::start(&recording_toml(&s3, ""));
    let _push = ffmpeg_push(server.srt, "publish:live/stop", 60);
    let store = store(&s3).await;
    let http = client();
    common::playlist_with_segment(&http, &server, "stop", 2).await;
    wait_for_key(&store, "rec/stop/", ".m4s", Duration::from_secs(30)).await;
    // SIGTERM mid-stream: the recording is closed by its writer, not left
    // for the next process.
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(
        server.log().contains("recordings closed"),
        "{}",
        server.log()
    );
    let keys = store.list("rec/stop/").await.unwrap();
    let summary_key = keys
        .iter()
        .find(|k| k.ends_with("/recording.json"))
        .unwrap_or_else(|| panic!("not closed: {keys:?}"));
    let summary = summary(&store, summary_key).await;
    assert_eq!(summary.closed_by, ClosedBy::Writer);
    let source = summary.renditions.iter().find(|r| r.name == "source");
    assert!(source.is_some_and(|r| r.segments >= 2), "{summary:?}");
    assert!(
        store.list("rec/.open/stop/").await.unwrap().is_empty(),
        "marker left"
    );
    let root = summary_key.trim_end_matches("recording.json");
    let playlist = store
        .get(&format!("{root}source/index.m3u8"))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&playlist).ends_with("#EXT-X-ENDLIST\n"));
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

/// The status code of the answer to `request`, sent as it is.
async fn raw_status(addr: std::net::SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 12];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head);
    head.strip_prefix("HTTP/1.1 ").unwrap().parse().unwrap()
}

/// The job at `location` once it has left the queue and the transcoder
/// (the API has no notification: it is read every 250 ms, bounded).
async fn finished_job(
    http: &reqwest::Client,
    base: &str,
    location: &str,
    admin: &str,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let job: serde_json::Value = http
            .get(format!("{base}{location}"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap();
        if job["state"] == "ready" || job["state"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "still {job}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_file_plays_as_vod_and_a_bad_one_is_refused() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let server = ladder_server(&s3, "upload_max_bytes = 5000000");
    let data = server.data_dir.path().join("data");
    let admin = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("talk.mp4");
    let (ok, _, err) = run_with_timeout(
        Command::new("ffmpeg").args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "300k",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            file.to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let http = client();
    let base = format!("http://{}", server.http);
    let upload = |query: &str, body: Vec<u8>, token: &str| {
        http.post(format!("{base}/api/v1/vod{query}"))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };

    // Refused, each with a problem document saying why.
    let noise: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let refused = upload("?stream=lectures", noise, &admin).await.unwrap();
    assert_eq!(refused.status(), 415);
    let problem: serde_json::Value =
        serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("not a media file FFmpeg can read"),
        "{problem}"
    );
    // Too large by its declared length: refused before a byte of the body
    // is read (a raw request, so that nothing is sent after the headers).
    let too_big = raw_status(
        server.http,
        &format!(
            "POST /api/v1/vod?stream=lectures HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
             Content-Length: 5000001\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(too_big, 413);
    let no_stream = upload("", vec![1; 10], &admin).await.unwrap();
    assert_eq!(no_stream.status(), 422);
    let anonymous = upload("?stream=lectures", vec![1; 10], "nope")
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let accepted = upload("?stream=lectures", std::fs::read(&file).unwrap(), &admin)
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"].to_str().unwrap().to_owned();
    let job: serde_json::Value = serde_json::from_slice(&accepted.bytes().await.unwrap()).unwrap();
    assert_eq!(job["source"]["video_codec"], "h264");
    assert_eq!(job["source"]["audio_codec"], "aac");
    let done = finished_job(&http, &base, &location, &admin).await;
    assert_eq!(done["state"], "ready", "{done}\n{}", server.log());
    assert_eq!(done["progress"], 1.0);
    let id = done["id"].as_str().unwrap();
    assert_eq!(
        done["playlist_path"],
        format!("/vod/lectures/{id}/index.m3u8")
    );

    // Nothing of the refused files stayed: one VOD in the store, no file
    // in the upload directory.
    let store = store(&s3).await;
    let dirs = store.list_dirs("rec/lectures/").await.unwrap();
    assert_eq!(dirs, [format!("rec/lectures/{id}/")]);
    let leftovers: Vec<_> = std::fs::read_dir(data.join("uploads")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let summary = summary(&store, &format!("rec/lectures/{id}/recording.json")).await;
    assert_eq!(summary.closed_by, ClosedBy::Upload);
    let mut names: Vec<&str> = summary.renditions.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["144p", "180p", "240p"]);
    let copy = tempfile::tempdir().unwrap();
    download(&store, &format!("rec/lectures/{id}/"), copy.path()).await;
    for rendition in &names {
        let seconds = decode_and_probe(
            &format!("{}/{rendition}/index.m3u8", copy.path().display()),
            &server,
        );
        assert!((seconds - 10.0).abs() <= 2.0, "{rendition}: {seconds} s");
    }
    play_through_the_edge(&server, &summary).await;
}
