#![allow(clippy::unwrap_used)]

//! Ferrocast as separate processes: `ferrocast ingest`, `transcode`,
//! `package` and `edge`, each its own process, coordinated through a real
//! `redis-server` and carrying media over the gRPC bus: a stream published
//! over SRT to the ingest process plays through the edge with every rung;
//! a transcoder killed with `kill -9` is replaced by a standby one and the
//! rung playlists go on with one discontinuity, media sequence numbers
//! never going back.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Node, Redis};
use common::edge::{EdgeKeys, HS256_SECRET, RemoteEdge, assert_signed, claims, hs256_jwt};
use common::{ffmpeg_push, run_with_timeout};
use ferrocast_testkit::playlist::{self, discontinuities, segment_numbers};

/// One cluster at a time: each test runs five or more processes and
/// ffmpeg on a 2-core CI machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The registry value of `stream`'s `role` lease: `holder epoch token`.
fn lease(redis: &Redis, role: &str, stream: &str) -> Option<(String, u64)> {
    let value = redis.cli(&["GET", &format!("ferrocast:lease:{role}:{stream}")]);
    let mut parts = value.split(' ');
    let holder = parts.next().filter(|h| !h.is_empty())?.to_owned();
    let epoch = parts.next()?.parse().ok()?;
    Some((holder, epoch))
}

/// Waits until someone holds `stream`'s `role` lease (the registry has no
/// event a test could await across processes: polled every 100 ms).
fn until_held(redis: &Redis, role: &str, stream: &str, not_by: Option<&str>) -> (String, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((holder, epoch)) = lease(redis, role, stream)
            && Some(holder.as_str()) != not_by
        {
            return (holder, epoch);
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the {role} lease of {stream}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lines of `log` that mention stream `stream`.
fn grep(log: &str, stream: &str) -> String {
    log.lines()
        .filter(|l| l.contains(stream))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn text(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The rung playlist once it lists `segments` segments.
async fn playlist_with_segments(url: &str, segments: usize, log: impl Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = text(url).await;
        if status == 200 && body.lines().filter(|l| l.starts_with("seg")).count() >= segments {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: {status} {body}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn media_sequence(playlist: &str) -> u64 {
    playlist::media_sequence(playlist).unwrap_or_else(|| panic!("no media sequence: {playlist}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_carry_a_stream_from_srt_to_the_edge() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let ingest = Node::start("ingest", "ingest-a", &redis, "");
    let transcoder = Node::start("transcode", "transcode-a", &redis, "");
    let packager = Node::start("package", "package-a", &redis, "");
    let keys = EdgeKeys::generate();
    // No fixed origin: the edge asks the registry which packager holds
    // each stream.
    let edge = RemoteEdge::start_routed(&keys.config_toml(), &redis.url());
    let log = || {
        format!(
            "ingest:\n{}\ntranscode:\n{}\npackage:\n{}\nedge:\n{}",
            ingest.log(),
            transcoder.log(),
            packager.log(),
            edge.log()
        )
    };
    for node in [&ingest, &transcoder, &packager] {
        assert_eq!(
            text(&format!("{}/readyz", node.http())).await,
            (200, "ready\n".into())
        );
    }
    let _push = ffmpeg_push(ingest.addr("srt"), "publish:live/chain", 60);

    // Each role taken by the one process that runs it.
    assert_eq!(until_held(&redis, "ingest", "chain", None).0, "ingest-a");
    assert_eq!(
        until_held(&redis, "transcode", "chain", None).0,
        "transcode-a"
    );
    assert_eq!(until_held(&redis, "package", "chain", None).0, "package-a");

    // Through the edge: every rung listed, every URI signed.
    let client = keys.client(false);
    let jwt = hs256_jwt(&claims(&["chain"]), HS256_SECRET);
    let multivariant = common::edge::multivariant_listing(
        &client,
        &edge.base(),
        &format!("{}/live/chain/index.m3u8", packager.http()),
        "chain",
        &jwt,
        &["240p", "180p", "144p"],
        log,
    )
    .await;
    assert_signed(&multivariant);
    for rung in ["240p", "180p", "144p"] {
        assert!(
            multivariant.contains(&format!("{rung}/stream.m3u8")),
            "{multivariant}\n{}",
            log()
        );
    }
    assert_eq!(
        redis.cli(&["GET", "ferrocast:plan:chain"]),
        "unlisted 240p,180p,144p"
    );

    // A real player decodes the rungs from the packager's origin.
    let origin = format!("{}/live/chain/180p/stream.m3u8", packager.http());
    playlist_with_segments(&origin, 2, log).await;
    let (ok, _, err) = run_with_timeout(
        std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(format!("{}/live/chain/index.m3u8", packager.http()))
            .args(["-t", "3", "-f", "null", "-"]),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffmpeg: {err}\n{}", log());
    // The edge's metrics name the packager it was routed to.
    let metrics = edge.metrics_text().await;
    let origin = packager.addr("http").to_string();
    assert!(
        metrics.contains(&format!(
            "ferrocast_edge_origin_requests_total{{origin=\"{origin}\"}}"
        )),
        "{metrics}"
    );
}

/// How a transcoder is taken out of service in a failover test.
#[derive(Clone, Copy, PartialEq)]
enum Outage {
    /// `kill -9`.
    Kill,
    /// `kill -STOP`, and `kill -CONT` once its successor serves: it comes
    /// back as a stale writer.
    Pause,
}

/// Two transcoders, one holding the stream; `outage` hits it; the other
/// takes over and the rung playlist goes on after exactly one
/// discontinuity, its media sequence never going back.
async fn transcoder_failover(stream: &str, outage: Outage) {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let ingest = Node::start("ingest", "ingest-a", &redis, "");
    let mut transcoders = vec![
        Node::start("transcode", "transcode-a", &redis, ""),
        Node::start("transcode", "transcode-b", &redis, ""),
    ];
    let packager = Node::start("package", "package-a", &redis, "");
    let log = |t: &[Node]| {
        format!(
            "ingest:\n{}\ntranscode-a:\n{}\ntranscode-b:\n{}\npackage:\n{}",
            ingest.log(),
            t[0].log(),
            t[1].log(),
            packager.log()
        )
    };
    let _push = ffmpeg_push(ingest.addr("srt"), &format!("publish:live/{stream}"), 90);
    let url = format!("{}/live/{stream}/180p/stream.m3u8", packager.http());
    let before = playlist_with_segments(&url, 3, || log(&transcoders)).await;
    assert!(!before.contains("#EXT-X-DISCONTINUITY\n"), "{before}");
    let (holder, epoch) = until_held(&redis, "transcode", stream, None);
    let index = usize::from(holder == "transcode-b");

    match outage {
        Outage::Kill => transcoders[index].kill(),
        Outage::Pause => transcoders[index].signal("-STOP"),
    }
    let hit = Instant::now();
    // Sample the rung playlist until a segment follows the discontinuity.
    let mut last_sequence = media_sequence(&before);
    let deadline = hit + Duration::from_secs(45);
    let (after, failover) = loop {
        let (status, playlist) = text(&url).await;
        assert_eq!(status, 200, "{playlist}");
        let sequence = media_sequence(&playlist);
        assert!(
            sequence >= last_sequence,
            "media sequence went back: {last_sequence} -> {sequence}\n{playlist}"
        );
        last_sequence = sequence;
        let resumed = playlist
            .split("#EXT-X-DISCONTINUITY\n")
            .nth(1)
            .is_some_and(|tail| tail.lines().any(|l| l.starts_with("seg")));
        if resumed {
            break (playlist, hit.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "no segment after the outage\n{playlist}\n{}",
            log(&transcoders)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "transcoder failover ({}): to the first new rung segment in {failover:?}",
        if outage == Outage::Kill {
            "kill -9"
        } else {
            "SIGSTOP"
        }
    );
    assert_eq!(
        after.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{after}"
    );
    let (new_holder, new_epoch) = until_held(&redis, "transcode", stream, Some(&holder));
    assert_ne!(new_holder, holder);
    assert!(new_epoch > epoch, "the new lease has a newer epoch");
    // The packager's rung subscriptions each go on from the new holder
    // (each at its next dial: polled).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = text(&format!("{}/metrics", packager.http())).await;
        let changes =
            common::edge::metric_sum(&metrics, "ferrocast_cluster_publisher_changes_total", &[]);
        if changes >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{changes} publisher changes\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(transcoders[1 - index].alive());
    if outage == Outage::Pause {
        // The paused one wakes up past its lease: it notices, and nothing
        // it sends reaches the playlist (no second discontinuity, the
        // sequence still only grows).
        transcoders[index].signal("-CONT");
        assert!(
            transcoders[index].wait_for_log("transcode lease lost", Duration::from_secs(20)),
            "{}",
            log(&transcoders)
        );
        let later = playlist_with_segments(&url, 1, || log(&transcoders)).await;
        let segments_after = |p: &str| {
            p.split("#EXT-X-DISCONTINUITY\n")
                .nth(1)
                .map_or(0, |t| t.lines().filter(|l| l.starts_with("seg")).count())
        };
        let wait_until = Instant::now() + Duration::from_secs(30);
        let mut latest = later;
        while segments_after(&latest) < segments_after(&after) + 3 {
            assert!(
                Instant::now() < wait_until,
                "the stream stalled after the stale transcoder woke\n{latest}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            latest = text(&url).await.1;
            assert!(media_sequence(&latest) >= last_sequence, "{latest}");
            last_sequence = media_sequence(&latest);
        }
        assert!(
            latest.matches("#EXT-X-DISCONTINUITY\n").count() <= 1,
            "{latest}"
        );
        assert_eq!(
            until_held(&redis, "transcode", stream, Some(&holder)).0,
            new_holder,
            "the stale transcoder did not take the stream back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_transcoder_is_replaced_and_its_rungs_go_on_after_one_discontinuity() {
    transcoder_failover("kill", Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_transcoder_is_replaced_and_refused_when_it_wakes() {
    transcoder_failover("pause", Outage::Pause).await;
}

/// Presentation times (seconds) of every decoded frame of `stream`
/// (`v:0`, `a:0`) of `file`, with ffprobe; panics on any decoding error.
fn decoded_times(file: &std::path::Path, stream: &str) -> Vec<f64> {
    let (ok, out, err) = run_with_timeout(
        std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_entries",
                "frame=pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(file),
        Duration::from_secs(60),
    );
    assert!(ok && err.trim().is_empty(), "ffprobe: {err}");
    out.lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// The largest step between consecutive `times`, and the typical one
/// (the median); every step must be positive.
fn steps(times: &[f64]) -> (f64, f64) {
    let mut steps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps.iter().all(|s| *s > 0.0), "times go back: {times:?}");
    steps.sort_by(f64::total_cmp);
    (steps[steps.len() - 1], steps[steps.len() / 2])
}

/// A transcoder drained with SIGTERM hands its stream over at a source
/// keyframe to the other one: the rung playlist goes on with no
/// discontinuity and media sequence numbers only grow, and its segments
/// from before the drain to after the handover decode as one piece with
/// ffprobe (no errors; video and audio timestamps step evenly, no gap and
/// no overlap at the handover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_transcoder_hands_its_stream_over_at_a_keyframe_without_a_discontinuity() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let stream = "drain";
    // The rung carries the transcoder's audio beside its video (with the
    // default separate layout the audio comes from the source and no
    // transcoder touches it), so that its handover is checked too.
    let muxed = "[hls]\naudio = \"muxed\"\n";
    let ingest = Node::start("ingest", "ingest-a", &redis, muxed);
    let transcoders = [
        Node::start("transcode", "transcode-a", &redis, muxed),
        Node::start("transcode", "transcode-b", &redis, muxed),
    ];
    let packager = Node::start("package", "package-a", &redis, muxed);
    let log = || {
        format!(
            "ingest:\n{}\ntranscode-a:\n{}\ntranscode-b:\n{}\npackage:\n{}",
            ingest.log(),
            transcoders[0].log(),
            transcoders[1].log(),
            packager.log()
        )
    };
    let _push = ffmpeg_push(ingest.addr("srt"), &format!("publish:live/{stream}"), 90);
    let base = format!("{}/live/{stream}/180p", packager.http());
    let url = format!("{base}/stream.m3u8");
    let before = playlist_with_segments(&url, 3, log).await;
    assert!(!before.contains("#EXT-X-DISCONTINUITY\n"), "{before}");
    let (holder, epoch) = until_held(&redis, "transcode", stream, None);
    let index = usize::from(holder == "transcode-b");
    let last_before_drain = *segment_numbers(&before).last().unwrap();

    transcoders[index].signal("-TERM");
    let (new_holder, new_epoch) = until_held(&redis, "transcode", stream, Some(&holder));
    assert_eq!(new_holder, ["transcode-a", "transcode-b"][1 - index]);
    assert!(new_epoch > epoch);
    assert!(
        transcoders[index].wait_for_log(
            "handed over without a discontinuity",
            Duration::from_secs(30)
        ),
        "{}",
        log()
    );
    // Every segment from the one before the drain to two after the new
    // holder took the lease, fetched as they appear.
    let (_, at_takeover) = text(&url).await;
    let wanted = *segment_numbers(&at_takeover).last().unwrap() + 2;
    let mut segments = std::collections::BTreeMap::new();
    let mut last_sequence = media_sequence(&before);
    let deadline = Instant::now() + Duration::from_secs(45);
    while !segments.contains_key(&wanted) {
        let (status, playlist) = text(&url).await;
        assert_eq!(status, 200, "{playlist}");
        assert!(
            !playlist.contains("#EXT-X-DISCONTINUITY\n")
                && playlist.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"),
            "a discontinuity at the handover\n{playlist}\n{}",
            log()
        );
        let sequence = media_sequence(&playlist);
        assert!(
            sequence >= last_sequence,
            "media sequence went back\n{playlist}"
        );
        last_sequence = sequence;
        for n in segment_numbers(&playlist) {
            if n >= last_before_drain && !segments.contains_key(&n) {
                let body = reqwest::get(format!("{base}/seg{n}.m4s")).await.unwrap();
                assert_eq!(body.status(), 200);
                segments.insert(n, body.bytes().await.unwrap());
            }
        }
        assert!(
            Instant::now() < deadline,
            "the rung stalled\n{playlist}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        segments.contains_key(&last_before_drain),
        "segment {last_before_drain} left the window before it was fetched"
    );
    // The packager counted each rung's handover as joined, none broken.
    let (_, metrics) = text(&format!("{}/metrics", packager.http())).await;
    let handovers = |outcome: &str| {
        common::edge::metric_sum(
            &metrics,
            "ferrocast_cluster_handovers_total",
            &[&format!(r#"outcome="{outcome}""#)],
        )
    };
    assert_eq!(
        (handovers("joined"), handovers("discontinuity")),
        (3, 0),
        "three rungs handed over, none with a discontinuity\n{metrics}"
    );
    let numbers: Vec<u64> = segments.keys().copied().collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("across-the-handover.mp4");
    let mut joined = reqwest::get(format!("{base}/init0.mp4"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    for body in segments.values() {
        joined.extend_from_slice(body);
    }
    std::fs::write(&file, joined).unwrap();
    let video = decoded_times(&file, "v:0");
    let (largest, typical) = steps(&video);
    assert!(
        largest < typical * 1.5,
        "a video gap of {largest} s (frames every {typical} s) across the handover"
    );
    let audio = decoded_times(&file, "a:0");
    let (largest, typical) = steps(&audio);
    assert!(
        largest < typical * 1.5,
        "an audio gap of {largest} s (frames every {typical} s) across the handover"
    );
    eprintln!(
        "drain: {} video and {} audio frames over segments {numbers:?} decode as one piece",
        video.len(),
        audio.len()
    );
}

/// Parts and segments the edge served with status 200.
async fn edge_media_served(edge: &RemoteEdge) -> u64 {
    let (_, metrics) = text(&format!("http://{}/metrics", edge.metrics)).await;
    ["part", "segment"]
        .iter()
        .map(|kind| {
            common::edge::metric_sum(
                &metrics,
                "ferrocast_edge_requests_total",
                &[&format!(r#"kind="{kind}""#), r#"status="200""#],
            )
        })
        .sum()
}

/// hls.js in headless Chromium plays a rung through the registry-routed
/// edge while the transcoder holding it is killed (`kill -9`) and then the
/// one that took it over is drained (SIGTERM): no fatal error, playback
/// goes on to the end, and the rung has exactly one discontinuity in all
/// (the kill's; the drain hands over without one), its media sequence only
/// growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_plays_a_rung_across_a_transcoder_kill_and_a_drain() {
    if !common::browser::available() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let _browser = common::browser::exclusive().await;
    let Some(redis) = Redis::start() else { return };
    let stream = "play";
    let ingest = Node::start("ingest", "ingest-a", &redis, "");
    let mut transcoders = vec![
        Node::start("transcode", "transcode-a", &redis, ""),
        Node::start("transcode", "transcode-b", &redis, ""),
        Node::start("transcode", "transcode-c", &redis, ""),
    ];
    let names = ["transcode-a", "transcode-b", "transcode-c"];
    let packager = Node::start("package", "package-a", &redis, "");
    let keys = EdgeKeys::generate();
    let edge = RemoteEdge::start_routed(&keys.config_toml_self_signed(), &redis.url());
    let log = |t: &[Node]| {
        let mut all = format!("ingest:\n{}\n", ingest.log());
        for (name, node) in names.iter().zip(t) {
            all += &format!("{name}:\n{}\n", node.log());
        }
        all + &format!("package:\n{}\nedge:\n{}", packager.log(), edge.log())
    };
    let _push = ffmpeg_push(ingest.addr("srt"), &format!("publish:live/{stream}"), 120);
    // The edge's certificate is generated: the test trusts it as the
    // browser does, by its pin (loopback only).
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let jwt = hs256_jwt(&claims(&[stream]), HS256_SECRET);
    let multivariant = common::edge::multivariant_listing(
        &client,
        &edge.base(),
        &format!("{}/live/{stream}/index.m3u8", packager.http()),
        stream,
        &jwt,
        &["180p"],
        || log(&transcoders),
    )
    .await;
    let rung = common::edge::uris(&multivariant)
        .into_iter()
        .find(|u| u.starts_with("180p/"))
        .unwrap_or_else(|| panic!("{multivariant}"));
    let player_url = format!("{}/live/{stream}/{rung}", edge.base());
    let rung_at_origin = format!("{}/live/{stream}/180p/stream.m3u8", packager.http());
    playlist_with_segments(&rung_at_origin, 2, || log(&transcoders)).await;
    let pin = format!(
        "--ignore-certificate-errors-spki-list={}",
        edge.spki_sha256.as_deref().unwrap()
    );
    const PLAY_SECONDS: u32 = 40;
    let player = tokio::task::spawn_blocking(move || {
        common::browser::play(&player_url, PLAY_SECONDS, &["--chromium-arg", &pin])
    });

    // Samples the rung at the origin: media sequence only grows; returns
    // the discontinuities so far.
    let mut last_sequence = 0;
    let mut sample = async || {
        let (status, playlist) = text(&rung_at_origin).await;
        assert_eq!(status, 200, "{playlist}");
        let sequence = media_sequence(&playlist);
        assert!(
            sequence >= last_sequence,
            "media sequence went back\n{playlist}"
        );
        last_sequence = sequence;
        discontinuities(&playlist)
    };
    // Until the edge has served the player this many more parts or segments.
    let served_before = edge_media_served(&edge).await;
    let until_served = async |more: u64, since: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while edge_media_served(&edge).await < since + more {
            assert!(
                Instant::now() < deadline,
                "the player fetched nothing {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    until_served(10, served_before, "at start").await;
    assert_eq!(sample().await, 0);

    let (first, _) = until_held(&redis, "transcode", stream, None);
    let first = names.iter().position(|n| *n == first).unwrap();
    transcoders[first].kill();
    let (second, _) = until_held(&redis, "transcode", stream, Some(names[first]));
    let second = names.iter().position(|n| *n == second).unwrap();
    // Playing again after the kill: the edge serves parts of the rung.
    let served = edge_media_served(&edge).await;
    until_served(15, served, "after the kill").await;
    assert_eq!(sample().await, 1, "one discontinuity after the kill");

    transcoders[second].signal("-TERM");
    let (third, _) = until_held(&redis, "transcode", stream, Some(names[second]));
    assert!(third != names[first] && third != names[second]);
    assert!(
        transcoders[second].wait_for_log(
            "handed over without a discontinuity",
            Duration::from_secs(30)
        ),
        "{}",
        log(&transcoders)
    );
    let served = edge_media_served(&edge).await;
    until_served(10, served, "after the drain").await;
    assert!(
        !player.is_finished(),
        "the player stopped before the drain was played through: make PLAY_SECONDS longer"
    );
    assert_eq!(sample().await, 1, "the drain added a discontinuity");

    let report = player.await.unwrap();
    assert_eq!(sample().await, 1);
    assert_eq!(report["supported"], true, "{report}");
    assert_eq!(report["fatal"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["playing"], true, "{report}");
    let samples = report["samples"].as_array().unwrap();
    let times: Vec<(i64, f64)> = samples
        .iter()
        .map(|s| (s["t"].as_i64().unwrap(), s["currentTime"].as_f64().unwrap()))
        .collect();
    assert!(
        times.windows(2).all(|w| w[1].1 >= w[0].1),
        "currentTime went backwards: {report}"
    );
    // Still playing at the end, after both: the last 5 s of samples
    // advanced by most of 5 s.
    let (end_t, end_time) = *times.last().unwrap();
    let (_, five_before) = *times.iter().find(|(t, _)| *t >= end_t - 5000).unwrap();
    assert!(
        end_time - five_before > 4.0,
        "not playing at the end ({five_before:.1} -> {end_time:.1} s in the last 5 s)\n{}",
        common::browser::timeline(&report)
    );
    eprintln!(
        "hls.js across a transcoder kill and a drain: {} stall(s), played {:.1} s of {PLAY_SECONDS} s",
        report["stalls"],
        end_time - times.iter().map(|t| t.1).find(|t| *t > 0.0).unwrap_or(0.0)
    );
    let third = names.iter().position(|n| *n == third).unwrap();
    assert!(transcoders[third].alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_packager_is_replaced_the_edge_follows_and_numbers_continue() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let ingest = Node::start("ingest", "ingest-a", &redis, "");
    let transcoder = Node::start("transcode", "transcode-a", &redis, "");
    let mut packagers = vec![
        Node::start("package", "package-a", &redis, ""),
        Node::start("package", "package-b", &redis, ""),
    ];
    let keys = EdgeKeys::generate();
    let edge = RemoteEdge::start_routed(&keys.config_toml(), &redis.url());
    let log = |p: &[Node]| {
        format!(
            "ingest:\n{}\ntranscode:\n{}\npackage 1:\n{}\npackage 2:\n{}\nedge:\n{}",
            ingest.log(),
            transcoder.log(),
            p[0].log(),
            p[1].log(),
            edge.log()
        )
    };
    let _push = ffmpeg_push(ingest.addr("srt"), "publish:live/pk", 90);
    let client = keys.client(false);
    let jwt = hs256_jwt(&claims(&["pk"]), HS256_SECRET);
    // The 180p rung listed (a slow transcoder's rung joins a later
    // answer), waited for at the packager holding the stream.
    let (holder, _) = until_held(&redis, "package", "pk", None);
    let origin = &packagers[usize::from(holder == "package-b")];
    let multivariant = common::edge::multivariant_listing(
        &client,
        &edge.base(),
        &format!("{}/live/pk/index.m3u8", origin.http()),
        "pk",
        &jwt,
        &["180p"],
        || log(&packagers),
    )
    .await;
    let rung = common::edge::uris(&multivariant)
        .into_iter()
        .find(|u| u.starts_with("180p/"))
        .unwrap_or_else(|| panic!("{multivariant}"));
    let url = format!("{}/live/pk/{rung}", edge.base());
    let fetch = async |url: &str| {
        let response = client.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let (status, body) = fetch(&url).await;
        if status == 200 && body.lines().filter(|l| l.starts_with("seg")).count() >= 3 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{status} {body}\n{}",
            log(&packagers)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (holder, _) = until_held(&redis, "package", "pk", None);
    let index = usize::from(holder == "package-b");
    packagers[index].kill();
    let killed = Instant::now();

    // Through the edge, until the standby's playlist has a segment after
    // its discontinuity: numbers never go back.
    let mut last_sequence = media_sequence(&before);
    let deadline = killed + Duration::from_secs(45);
    let (after, failover) = loop {
        let (status, body) = fetch(&url).await;
        if status == 200 {
            let sequence = media_sequence(&body);
            assert!(
                sequence >= last_sequence,
                "media sequence went back: {last_sequence} -> {sequence}\n{body}"
            );
            last_sequence = sequence;
            let resumed = body
                .split("#EXT-X-DISCONTINUITY\n")
                .nth(1)
                .is_some_and(|tail| tail.lines().any(|l| l.starts_with("seg")));
            if resumed {
                break (body, killed.elapsed());
            }
        }
        assert!(
            Instant::now() < deadline,
            "the edge never served the standby packager: {status} {body}\n{}",
            log(&packagers)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("packager failover: kill to the first segment through the edge in {failover:?}");
    assert_eq!(
        after.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{after}"
    );
    // `segN.m4s?token=...` through the edge.
    let msn = playlist::segment_number;
    let last_before = before.lines().filter_map(msn).max().unwrap();
    let first_after = after
        .split("#EXT-X-DISCONTINUITY\n")
        .nth(1)
        .unwrap()
        .lines()
        .find_map(msn)
        .unwrap();
    assert!(
        first_after > last_before,
        "{first_after} after {last_before}"
    );
    let (new_holder, _) = until_held(&redis, "package", "pk", Some(&holder));
    assert_ne!(new_holder, holder);

    // A planned stop of the standby (SIGTERM) lets its lease go before it
    // exits: a third packager takes the stream without waiting for the
    // lease to lapse, and the edge follows it, numbers still growing.
    packagers[index] = Node::start("package", "package-c", &redis, "");
    let standby = 1 - index;
    let (_, before_drain) = fetch(&url).await;
    let listed_before_drain = before_drain.lines().filter_map(msn).max().unwrap_or(0);
    packagers[standby].signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while packagers[standby].alive() {
        assert!(Instant::now() < deadline, "{}", log(&packagers));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        lease(&redis, "package", "pk").map(|(holder, _)| holder),
        Some(new_holder.clone()),
        "the drained packager still held its lease when it exited"
    );
    assert!(
        packagers[standby].wait_for_log("package lease let go", Duration::from_secs(1)),
        "{}",
        log(&packagers)
    );
    assert_eq!(
        until_held(&redis, "package", "pk", Some(&new_holder)).0,
        "package-c"
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let (status, body) = fetch(&url).await;
        if status == 200 {
            let sequence = media_sequence(&body);
            assert!(
                sequence >= last_sequence,
                "media sequence went back\n{body}"
            );
            last_sequence = sequence;
            // The drained packager is gone: this is the third one's.
            if body.lines().filter_map(msn).max() > Some(listed_before_drain) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the edge never served the third packager: {status} {body}\n{}",
            log(&packagers)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stream's ingest dies and its publisher never comes back: the
/// transcoder lets the stream's lease (and its slot) go once the reconnect
/// grace and two lease TTLs have passed, and stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_lets_go_of_a_stream_whose_ingest_is_gone_for_good() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    // The test configuration's reconnect grace is 1 s.
    let mut ingest = Node::start("ingest", "ingest-a", &redis, "");
    let mut transcoder = Node::start("transcode", "transcode-a", &redis, "");
    let push = ffmpeg_push(ingest.addr("srt"), "publish:live/orphan", 60);
    until_held(&redis, "transcode", "orphan", None);
    ingest.kill();
    drop(push);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease(&redis, "transcode", "orphan").is_some() {
        assert!(Instant::now() < deadline, "{}", transcoder.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(transcoder.alive());
    assert!(
        transcoder.wait_for_log(
            "no ingest holds the stream any more",
            Duration::from_secs(1)
        ),
        "{}",
        transcoder.log()
    );
}

/// A planned stop of an ingest process (SIGTERM) lets its ingest lease go
/// before the process exits: the ingest a publisher reconnects to takes
/// the stream at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_ingest_lets_its_lease_go_before_it_exits() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let mut ingest = Node::start("ingest", "ingest-a", &redis, "");
    let _push = ffmpeg_push(ingest.addr("srt"), "publish:live/leave", 60);
    until_held(&redis, "ingest", "leave", None);
    ingest.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ingest.alive() {
        assert!(Instant::now() < deadline, "{}", ingest.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lease(&redis, "ingest", "leave"), None, "{}", ingest.log());
    assert!(ingest.wait_for_log("ingest lease let go", Duration::from_secs(1)));
}

/// Redis stopped (SIGSTOP) for 30 s under load: the stream already flowing
/// keeps flowing into its playlists with no discontinuity, every process
/// says it is not ready and none exits; a stream published meanwhile waits
/// for its claims and is packaged once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_flowing_while_redis_is_away_and_claims_catch_up() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let mut nodes = vec![
        Node::start("ingest", "ingest-a", &redis, ""),
        Node::start("transcode", "transcode-a", &redis, ""),
        Node::start("package", "package-a", &redis, ""),
    ];
    let log = |n: &[Node]| {
        format!(
            "ingest:\n{}\ntranscode:\n{}\npackage:\n{}",
            n[0].log(),
            n[1].log(),
            n[2].log()
        )
    };
    let srt = nodes[0].addr("srt");
    let _push = ffmpeg_push(srt, "publish:live/steady", 90);
    let origin = nodes[2].http();
    let url = format!("{origin}/live/steady/180p/stream.m3u8");
    let before = playlist_with_segments(&url, 2, || log(&nodes)).await;
    let segments = |p: &str| p.lines().filter(|l| l.starts_with("seg")).count();

    redis.signal("-STOP");
    let stopped = Instant::now();
    // A stream published while Redis is away.
    let _late = ffmpeg_push(srt, "publish:live/late", 90);
    let mut last_sequence = media_sequence(&before);
    let mut last_msn = 0;
    let mut not_ready_seen = false;
    while stopped.elapsed() < Duration::from_secs(30) {
        let (status, playlist) = text(&url).await;
        assert_eq!(status, 200, "{playlist}\n{}", log(&nodes));
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
        let sequence = media_sequence(&playlist);
        assert!(sequence >= last_sequence, "{playlist}");
        last_sequence = sequence;
        last_msn = last_msn.max(sequence + segments(&playlist) as u64);
        if !not_ready_seen {
            not_ready_seen = text(&format!("{origin}/readyz")).await.0 == 503;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(not_ready_seen, "the packager never said it was not ready");
    // 30 s of 1 s segments went on flowing.
    let flowed = last_msn - (media_sequence(&before) + segments(&before) as u64);
    assert!(
        flowed >= 20,
        "only {flowed} segments while Redis was away\n{}",
        log(&nodes)
    );
    for node in &mut nodes {
        assert!(node.alive(), "a process exited\n{}", node.log());
    }
    assert_eq!(
        text(&format!("{origin}/live/late/index.m3u8")).await.0,
        404,
        "claimed without a registry"
    );

    redis.signal("-CONT");
    // Claims catch up: the late stream is packaged, every process ready.
    let late = format!("{origin}/live/late/180p/stream.m3u8");
    playlist_with_segments(&late, 2, || log(&nodes)).await;
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        while text(&format!("{}/readyz", node.http())).await.0 != 200 {
            assert!(Instant::now() < deadline, "{}", node.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (status, playlist) = text(&url).await;
    assert_eq!(status, 200);
    assert!(media_sequence(&playlist) >= last_sequence, "{playlist}");
}

/// An ingest process killed with `kill -9`: the publisher's reconnect
/// lands on another ingest process, which takes the stream once the dead
/// one's lease lapses; the source and rung playlists go on after one
/// discontinuity, numbers only growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_reconnecting_to_another_ingest_process_continues_the_stream() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let mut ingests = vec![
        Node::start("ingest", "ingest-a", &redis, ""),
        Node::start("ingest", "ingest-b", &redis, ""),
    ];
    let transcoder = Node::start("transcode", "transcode-a", &redis, "");
    let packager = Node::start("package", "package-a", &redis, "");
    let log = |i: &[Node]| {
        format!(
            "ingest-a:\n{}\ningest-b:\n{}\ntranscode:\n{}\npackage:\n{}",
            i[0].log(),
            i[1].log(),
            transcoder.log(),
            packager.log()
        )
    };
    let first = ffmpeg_push(ingests[0].addr("srt"), "publish:live/move", 90);
    let urls = [
        format!("{}/live/move/stream.m3u8", packager.http()),
        format!("{}/live/move/180p/stream.m3u8", packager.http()),
    ];
    let mut last = Vec::new();
    for url in &urls {
        last.push(media_sequence(
            &playlist_with_segments(url, 2, || log(&ingests)).await,
        ));
    }
    assert_eq!(until_held(&redis, "ingest", "move", None).0, "ingest-a");

    ingests[0].kill();
    first.stop();
    // The publisher comes back, to the other ingest process.
    let _second = ffmpeg_push(ingests[1].addr("srt"), "publish:live/move", 90);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resumed = [false, false];
    while resumed != [true, true] {
        for (i, url) in urls.iter().enumerate() {
            let (status, playlist) = text(url).await;
            assert_eq!(status, 200, "{url}: {playlist}\n{}", log(&ingests));
            let sequence = media_sequence(&playlist);
            assert!(
                sequence >= last[i],
                "{url} went back: {}\n{playlist}",
                last[i]
            );
            last[i] = sequence;
            assert!(
                playlist.matches("#EXT-X-DISCONTINUITY\n").count() <= 1,
                "{url}: more than one discontinuity\n{playlist}\n{}",
                log(&ingests)
            );
            resumed[i] = playlist
                .split("#EXT-X-DISCONTINUITY\n")
                .nth(1)
                .is_some_and(|tail| tail.lines().filter(|l| l.starts_with("seg")).count() >= 2);
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not go on\n{}",
            log(&ingests)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (holder, epoch) = until_held(&redis, "ingest", "move", Some("ingest-a"));
    assert_eq!((holder.as_str(), epoch >= 2), ("ingest-b", true));
}

/// Three transcoders share six streams by claims (work goes to the least
/// loaded), two each; one is killed and its two streams move to the other
/// two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_streams_spread_over_three_transcoders_and_move_when_one_dies() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    // One small rung: six streams on two cores.
    const ONE_RUNG: &str = r#"
[transcode]
ladder = "one"
[[transcode.ladders]]
name = "one"
[[transcode.ladders.rungs]]
name = "144p"
height = 144
video_bitrate_kbps = 150
x264_preset = "ultrafast"
"#;
    let ingest = Node::start("ingest", "ingest-a", &redis, ONE_RUNG);
    let mut transcoders: Vec<Node> = (0..3)
        .map(|i| Node::start("transcode", &format!("transcode-{i}"), &redis, ONE_RUNG))
        .collect();
    let packager = Node::start("package", "package-a", &redis, ONE_RUNG);
    let streams: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    let _pushes: Vec<_> = streams
        .iter()
        .map(|s| ffmpeg_push(ingest.addr("srt"), &format!("publish:live/{s}"), 90))
        .collect();
    let holders = |redis: &Redis| -> Vec<Option<String>> {
        streams
            .iter()
            .map(|s| lease(redis, "transcode", s).map(|(holder, _)| holder))
            .collect()
    };
    let count = |held: &[Option<String>], node: &str| {
        held.iter().filter(|h| h.as_deref() == Some(node)).count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let held = holders(&redis);
        if held.iter().all(Option::is_some) {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "not every stream taken: {held:?}\n{}",
            ingest.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for i in 0..3 {
        assert_eq!(count(&held, &format!("transcode-{i}")), 2, "{held:?}");
    }
    // Every rung is packaged before the kill, so that each stream that
    // moves has a timeline to go on from.
    for stream in &streams {
        let url = format!("{}/live/{stream}/144p/stream.m3u8", packager.http());
        playlist_with_segments(&url, 1, || packager.log()).await;
    }

    transcoders[0].kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    let moved = loop {
        let held = holders(&redis);
        if held
            .iter()
            .all(|h| h.as_deref().is_some_and(|h| h != "transcode-0"))
        {
            break held;
        }
        assert!(Instant::now() < deadline, "streams did not move: {held:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(count(&moved, "transcode-1"), 3, "{moved:?}");
    assert_eq!(count(&moved, "transcode-2"), 3, "{moved:?}");
    // The streams that moved are transcoded again: their rung goes on
    // after a discontinuity.
    for (stream, before) in streams.iter().zip(&held) {
        if before.as_deref() != Some("transcode-0") {
            continue;
        }
        let url = format!("{}/live/{stream}/144p/stream.m3u8", packager.http());
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let (status, playlist) = text(&url).await;
            let resumed = status == 200
                && playlist
                    .split("#EXT-X-DISCONTINUITY\n")
                    .nth(1)
                    .is_some_and(|tail| tail.lines().any(|l| l.starts_with("seg")));
            if resumed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{stream} did not resume: {status} {playlist}\npackager: {}\ntranscoders: {}",
                grep(&packager.log(), stream),
                transcoders
                    .iter()
                    .map(|t| grep(&t.log(), stream))
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(transcoders[1].alive() && transcoders[2].alive());
}

/// A transcoder that must encode on NVENC (`transcode.nvenc = "require"`,
/// a GPU node's setting) on a machine where NVENC does not open (here:
/// no GPU at all; in production, a GPU without an encoder engine such as
/// the H100): the process is alive, not ready with the reason, never
/// registers as a transcoder with room, and takes no work: a CPU
/// transcoder takes the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcoder_requiring_nvenc_without_one_is_alive_not_ready_and_takes_no_work() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start() else { return };
    let gpu = Node::start_with(
        "transcode",
        "transcode-gpu",
        &redis,
        "",
        &[("FERROCAST_TRANSCODE__NVENC", "require")],
        "ferrocast transcode not-ready",
    );
    let (status, body) = text(&format!("{}/readyz", gpu.http())).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready: no encoder: NVENC required (transcode.nvenc = \"require\")"),
        "{body}"
    );
    assert_eq!(
        text(&format!("{}/healthz", gpu.http())).await,
        (200, "ok\n".into())
    );
    assert!(
        gpu.log().contains("encoder self-test failed"),
        "{}",
        gpu.log()
    );
    // `ferrocast probe`, the containers' health check, says the same.
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocast"))
        .args(["probe", &format!("{}/readyz", gpu.http())])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&probe.stderr).contains("503 not ready: no encoder"),
        "{probe:?}"
    );

    let ingest = Node::start("ingest", "ingest-a", &redis, "");
    let cpu = Node::start("transcode", "transcode-cpu", &redis, "");
    let _push = ffmpeg_push(ingest.addr("srt"), "publish:live/gpuless", 30);
    assert_eq!(
        until_held(&redis, "transcode", "gpuless", None).0,
        "transcode-cpu"
    );
    // The node records: the CPU transcoder is one, the GPU one never was.
    let nodes = redis.cli(&["KEYS", "ferrocast:node:*"]);
    assert!(nodes.contains("transcode-cpu"), "{nodes}");
    assert!(!nodes.contains("transcode-gpu"), "{nodes}");
    assert_eq!(text(&format!("{}/readyz", gpu.http())).await.0, 503);
    drop(cpu);
}
