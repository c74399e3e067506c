//! The rules every [`Registry`] implementation follows, as one check both
//! the in-memory and the Redis implementation run in their tests.

use std::time::{Duration, Instant};

use ferrocast_media::StreamName;

use crate::{Event, EventKind, NodeId, NodeRecord, Registry, RegistryError, Role};

const LONG: Duration = Duration::from_secs(30);
/// Short enough to watch expire; the store's clock decides when.
const SHORT: Duration = Duration::from_millis(300);

async fn until_none(registry: &dyn Registry, stream: &StreamName, role: Role) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = registry.holder(stream, role).await;
        assert!(held.is_ok(), "{held:?}");
        if held.is_ok_and(|h| h.is_none()) {
            return;
        }
        assert!(Instant::now() < deadline, "lease did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Leases: one holder at a time, epochs that only grow, renew and release
/// only by the holder of that very lease, expiry handing the role on;
/// nodes listed while their heartbeat lasts. Panics on a broken rule.
pub async fn lease_rules(registry: &dyn Registry) {
    let stream = StreamName::new(&format!("conformance{:x}", rand::random::<u32>()))
        .unwrap_or_else(|e| panic!("{e}"));
    let other = StreamName::new(&format!("{}x", stream.as_str())).unwrap_or_else(|e| panic!("{e}"));
    let node = |id: &str| NodeId::new(id).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (node("node-a"), node("node-b"));
    let role = Role::Transcode;

    let first = registry.acquire(&stream, role, &a, LONG).await;
    let first = first
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("a first claim succeeds"));
    assert_eq!(first.holder, a);
    assert_eq!(
        registry.acquire(&stream, role, &b, LONG).await,
        Ok(None),
        "one holder"
    );
    // Roles and streams are independent.
    assert!(matches!(
        registry.acquire(&stream, Role::Package, &b, LONG).await,
        Ok(Some(_))
    ));
    assert!(matches!(
        registry.acquire(&other, role, &b, LONG).await,
        Ok(Some(_))
    ));
    assert_eq!(
        registry.holder(&stream, role).await,
        Ok(Some(first.clone()))
    );

    assert_eq!(registry.renew(&first, LONG).await, Ok(true));
    let mut forged = first.clone();
    forged.token = "0".repeat(32);
    assert_eq!(
        registry.renew(&forged, LONG).await,
        Ok(false),
        "only this lease renews"
    );
    assert_eq!(
        registry.release(&forged,).await,
        Ok(false),
        "only this lease releases"
    );
    assert_eq!(registry.release(&first).await, Ok(true));
    assert_eq!(registry.release(&first).await, Ok(false));

    let second = registry.acquire(&stream, role, &b, SHORT).await;
    let second = second
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("free after release"));
    assert!(second.epoch > first.epoch, "epochs grow");

    // b's lease lapses (b paused, say); a takes over with a newer epoch,
    // and b's late renew or release cannot touch a's lease.
    until_none(registry, &stream, role).await;
    let third = registry.acquire(&stream, role, &a, LONG).await;
    let third = third
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("free after expiry"));
    assert!(third.epoch > second.epoch);
    assert_eq!(registry.renew(&second, LONG).await, Ok(false));
    assert_eq!(registry.release(&second).await, Ok(false));
    assert_eq!(registry.holder(&stream, role).await, Ok(Some(third)));

    // Nodes are listed while their heartbeat lasts.
    let record = |id: &NodeId| NodeRecord {
        id: id.clone(),
        roles: vec![Role::Transcode],
        endpoint: format!("http://{id}:7000"),
        load: 0,
    };
    let (short_node, long_node) = (node("node-short"), node("node-long"));
    assert_eq!(
        registry.heartbeat(&record(&short_node), SHORT).await,
        Ok(())
    );
    assert_eq!(registry.heartbeat(&record(&long_node), LONG).await, Ok(()));
    let listed = registry.nodes().await.unwrap_or_default();
    assert!(listed.contains(&record(&short_node)) && listed.contains(&record(&long_node)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = registry.nodes().await.unwrap_or_default();
        if !listed.iter().any(|n| n.id == short_node) {
            assert!(listed.contains(&record(&long_node)));
            break;
        }
        assert!(Instant::now() < deadline, "node record did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Events: kept in order, read after a given id, nothing skipped. Work:
/// each item delivered to one worker, pending until acknowledged, handed
/// to another worker once idle long enough, never again once
/// acknowledged. Panics on a broken rule.
pub async fn event_and_work_rules(registry: &dyn Registry) {
    let stream = |name: &str| StreamName::new(name).unwrap_or_else(|e| panic!("{e}"));
    let node = |id: &str| NodeId::new(id).unwrap_or_else(|e| panic!("{e}"));
    let event = |n: i64| Event {
        kind: if n % 2 == 0 {
            EventKind::Started
        } else {
            EventKind::LeaseTaken
        },
        stream: stream(&format!("s{n}")),
        lease: (n % 2 == 1).then(|| (Role::Package, node("p1"), crate::Epoch(n as u64))),
        at_unix_ms: n,
    };
    let start = registry.events(None, 100_000).await.unwrap_or_default();
    let mut last = start.last().map(|(id, _)| id.clone());
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = registry.publish_event(&event(n)).await;
        ids.push(id.unwrap_or_else(|e| panic!("{e}")));
    }
    let mut seen = Vec::new();
    // Read two at a time from where the reader left off.
    loop {
        let batch = registry
            .events(last.as_ref(), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 2);
        last = batch.last().map(|(id, _)| id.clone());
        seen.extend(batch);
    }
    let expected: Vec<_> = ids.into_iter().zip((0..5).map(event)).collect();
    assert_eq!(seen, expected);

    let (w1, w2) = (node("worker-1"), node("worker-2"));
    for name in ["work-a", "work-b"] {
        assert_eq!(registry.offer_work(&stream(name)).await, Ok(()));
    }
    let a = registry
        .take_work(&w1)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("work a"));
    let b = registry
        .take_work(&w2)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("work b"));
    assert_eq!((a.stream.as_str(), b.stream.as_str()), ("work-a", "work-b"));
    assert_eq!(
        registry.take_work(&w2).await,
        Ok(None),
        "each item delivered once"
    );
    // w2 takes its stream's lease and acknowledges; w1 dies holding a.
    assert_eq!(registry.ack_work(&b).await, Ok(()));
    assert_eq!(
        registry.reclaim_work(&w2, Duration::from_secs(60)).await,
        Ok(vec![]),
        "not idle yet"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let reclaimed = loop {
        let reclaimed = registry
            .reclaim_work(&w2, SHORT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if !reclaimed.is_empty() {
            break reclaimed;
        }
        assert!(Instant::now() < deadline, "idle work was not reclaimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reclaimed, vec![a.clone()], "only the unacknowledged item");
    assert_eq!(registry.ack_work(&a).await, Ok(()));
    tokio::time::sleep(SHORT).await;
    assert_eq!(
        registry.reclaim_work(&w1, Duration::ZERO).await,
        Ok(vec![]),
        "acknowledged work stays done"
    );
}

/// Rendition plans, stream progress, live reports and handovers: none until
/// written, the newest write wins, streams are independent, a live report
/// over the limit is refused. Panics on a broken rule.
pub async fn plan_rules(registry: &dyn Registry) {
    use ferrocast_hls::{RenditionName, RenditionPlan};
    let stream = StreamName::new(&format!("plan{:x}", rand::random::<u32>()))
        .unwrap_or_else(|e| panic!("{e}"));
    let other = StreamName::new(&format!("{}x", stream.as_str())).unwrap_or_else(|e| panic!("{e}"));
    let rung = |name: &str| RenditionName::new(name).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registry.plan(&stream).await, Ok(None));
    let first = RenditionPlan {
        source_listed: true,
        rungs: vec![rung("720p"), rung("360p")],
    };
    assert_eq!(registry.put_plan(&stream, &first).await, Ok(()));
    assert_eq!(registry.plan(&stream).await, Ok(Some(first)));
    let second = RenditionPlan {
        source_listed: false,
        rungs: vec![rung("480p")],
    };
    assert_eq!(registry.put_plan(&stream, &second).await, Ok(()));
    assert_eq!(registry.plan(&stream).await, Ok(Some(second)));
    assert_eq!(registry.plan(&other).await, Ok(None));

    use ferrocast_hls::{SequencePoint, StreamProgress};
    assert_eq!(registry.progress(&stream).await, Ok(None));
    let point = |next_msn, discontinuity_sequence| SequencePoint {
        next_msn,
        discontinuity_sequence,
    };
    let progress = StreamProgress {
        renditions: vec![
            (RenditionName::source(), point(41, 2)),
            (rung("480p"), point(40, 2)),
        ],
    };
    assert_eq!(registry.put_progress(&stream, &progress).await, Ok(()));
    assert_eq!(registry.progress(&stream).await, Ok(Some(progress)));
    assert_eq!(registry.progress(&other).await, Ok(None));

    let ingest = Role::Ingest;
    assert_eq!(registry.live_report(&stream, ingest).await, Ok(None));
    let report = r#"{"on_air":true,"tracks":[]}"#;
    assert_eq!(
        registry.put_live_report(&stream, ingest, report).await,
        Ok(())
    );
    assert_eq!(
        registry.live_report(&stream, ingest).await,
        Ok(Some(report.to_owned()))
    );
    assert_eq!(
        registry.live_report(&stream, Role::Transcode).await,
        Ok(None)
    );
    assert_eq!(
        registry.put_live_report(&stream, ingest, "{}").await,
        Ok(())
    );
    assert_eq!(
        registry.live_report(&stream, ingest).await,
        Ok(Some("{}".to_owned()))
    );
    assert_eq!(registry.live_report(&other, ingest).await, Ok(None));
    let too_long = "x".repeat(crate::MAX_LIVE_REPORT + 1);
    assert!(matches!(
        registry.put_live_report(&other, ingest, &too_long).await,
        Err(RegistryError::Malformed(_))
    ));
    assert_eq!(registry.live_report(&other, ingest).await, Ok(None));

    use crate::Handover;
    let node = |id: &str| NodeId::new(id).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registry.handover(&stream).await, Ok(None));
    for step in [
        Handover::Offered { from: node("t1") },
        Handover::Ready {
            from: node("t1"),
            to: node("t2"),
        },
        Handover::Cut {
            from: node("t1"),
            to: node("t2"),
            at: 8_589_934_592,
        },
    ] {
        assert_eq!(registry.put_handover(&stream, &step).await, Ok(()));
        assert_eq!(registry.handover(&stream).await, Ok(Some(step)));
    }
    assert_eq!(registry.handover(&other).await, Ok(None));
}
