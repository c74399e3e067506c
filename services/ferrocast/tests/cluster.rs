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
use common::edge::{
    EdgeKeys, HS256_SECRET, RemoteEdge, assert_signed, claims, hs256_jwt, live_multivariant,
};
use common::{ffmpeg_push, run_with_timeout};

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
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_carry_a_stream_from_srt_to_the_edge() {
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
    let multivariant = live_multivariant(&client, &edge.base(), "chain", &jwt, log).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_packager_is_replaced_the_edge_follows_and_numbers_continue() {
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
            "ingest:\n{}\ntranscode:\n{}\npackage-a:\n{}\npackage-b:\n{}\nedge:\n{}",
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
    let multivariant =
        live_multivariant(&client, &edge.base(), "pk", &jwt, || log(&packagers)).await;
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
    let msn =
        |line: &str| -> Option<u64> { line.strip_prefix("seg")?.split('.').next()?.parse().ok() };
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
}

/// Redis stopped (SIGSTOP) for 30 s under load: the stream already flowing
/// keeps flowing into its playlists with no discontinuity, every process
/// says it is not ready and none exits; a stream published meanwhile waits
/// for its claims and is packaged once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_flowing_while_redis_is_away_and_claims_catch_up() {
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
