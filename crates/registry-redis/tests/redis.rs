#![allow(clippy::unwrap_used)]

//! The Redis registry against a real `redis-server` on a free port: the
//! same lease rules as the in-memory registry, the keys and TTLs the
//! crate documents, and a Redis that stops answering.

use std::time::Duration;

use ferrocast_media::StreamName;
use ferrocast_registry::{NodeId, Registry, RegistryError, Role};
use ferrocast_registry_redis::RedisRegistry;
use ferrocast_testkit::Redis;

#[tokio::test]
async fn leases_follow_the_rules_on_redis() {
    let Some(redis) = Redis::start() else { return };
    let registry = RedisRegistry::open(&redis.url(), "test").unwrap();
    ferrocast_registry::conformance::lease_rules(&registry).await;
}

#[tokio::test]
async fn events_and_work_follow_the_rules_on_redis() {
    let Some(redis) = Redis::start() else { return };
    let registry = RedisRegistry::open(&redis.url(), "test").unwrap();
    ferrocast_registry::conformance::event_and_work_rules(&registry).await;
    ferrocast_registry::conformance::plan_rules(&registry).await;
    // The log is a Redis Stream; the work queue has its consumer group.
    assert_eq!(redis.cli(&["TYPE", "test:events"]), "stream");
    assert!(
        redis
            .cli(&["XINFO", "GROUPS", "test:work:transcode"])
            .contains("transcoders")
    );
}

#[tokio::test]
async fn keys_and_ttls_are_as_documented() {
    let Some(redis) = Redis::start() else { return };
    let registry = RedisRegistry::open(&redis.url(), "fc").unwrap();
    let stream = StreamName::new("cam").unwrap();
    let node = NodeId::new("t1").unwrap();
    let lease = registry
        .acquire(&stream, Role::Transcode, &node, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        redis.cli(&["GET", "fc:lease:transcode:cam"]),
        lease.encode()
    );
    let pttl: i64 = redis
        .cli(&["PTTL", "fc:lease:transcode:cam"])
        .parse()
        .unwrap();
    assert!((1..=60_000).contains(&pttl), "{pttl}");
    assert_eq!(
        redis.cli(&["GET", "fc:epoch:transcode:cam"]),
        lease.epoch.0.to_string()
    );
    assert_eq!(
        redis.cli(&["PTTL", "fc:epoch:transcode:cam"]),
        "-1",
        "epochs never expire"
    );
    // A failed claim spends no epoch.
    let other = NodeId::new("t2").unwrap();
    assert_eq!(
        registry
            .acquire(&stream, Role::Transcode, &other, Duration::from_secs(60))
            .await,
        Ok(None)
    );
    assert_eq!(
        redis.cli(&["GET", "fc:epoch:transcode:cam"]),
        lease.epoch.0.to_string()
    );
}

#[tokio::test]
async fn a_redis_that_stops_answering_is_an_error_in_time_then_recovers() {
    let Some(redis) = Redis::start() else { return };
    let registry = RedisRegistry::open(&redis.url(), "test")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let stream = StreamName::new("cam").unwrap();
    let node = NodeId::new("p1").unwrap();
    let lease = registry
        .acquire(&stream, Role::Package, &node, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    redis.signal("-STOP");
    let stalled = tokio::time::timeout(
        Duration::from_secs(10),
        registry.renew(&lease, Duration::from_secs(60)),
    )
    .await;
    assert!(
        matches!(stalled, Ok(Err(RegistryError::Unavailable(_)))),
        "{stalled:?}"
    );
    redis.signal("-CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match registry.renew(&lease, Duration::from_secs(60)).await {
            Ok(renewed) => {
                assert!(renewed, "the lease outlived the pause");
                break;
            }
            Err(RegistryError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
