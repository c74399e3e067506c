#![allow(clippy::unwrap_used)]

//! The store against both databases it supports: a SQLite file, and a
//! real PostgreSQL server started for the test (Debian's `postgresql`, in
//! a temporary directory on a free port). Every test runs the same
//! function on each.

use std::time::{Duration, Instant};

use ferrocast_config::{DuplicatePublisher, Secret, StreamConfig};
use ferrocast_control::{
    Actor, Database, DbAuthorizer, DbError, NewStream, Role, StreamChanges, secrets,
};
use ferrocast_ingest::streamid::parse;
use ferrocast_ingest::{AuthError, PublishAuthorizer};
use ferrocast_testkit::Postgres;

fn admin() -> Actor {
    Actor::Token("t1".into())
}

fn new(name: &str) -> NewStream {
    NewStream {
        name: name.into(),
        ..NewStream::default()
    }
}

async fn streams_keys_and_audit(db: Database) {
    assert_eq!(db.revision().await.unwrap(), 0);
    assert!(db.streams(None, 10).await.unwrap().is_empty());

    // A new stream: its key shown once, 256 bits, stored as a hash.
    let made = db
        .create_stream(
            NewStream {
                name: "cam1".into(),
                passphrase: Some(Secret::new("0123456789abcdef")),
                on_duplicate: DuplicatePublisher::TakeOver,
                ladder: Some("small".into()),
                recording: Some(serde_json::json!({ "enabled": true })),
            },
            &admin(),
        )
        .await
        .unwrap();
    let key1 = made.publish_key.expose().to_owned();
    assert_eq!(key1.len(), 64);
    assert_eq!(made.stream.key_prefix, &key1[..8]);
    assert_eq!(made.stream.on_duplicate, DuplicatePublisher::TakeOver);
    assert_eq!(made.stream.ladder.as_deref(), Some("small"));
    assert_eq!(
        made.stream.recording,
        Some(serde_json::json!({ "enabled": true }))
    );
    assert_eq!(
        made.stream.passphrase,
        Some(Secret::new("0123456789abcdef"))
    );
    assert_eq!(db.stream("cam1").await.unwrap(), made.stream);
    let creds = db.credentials().await.unwrap();
    assert_eq!(creds.len(), 1);
    assert!(secrets::matches(&key1, &creds[0].key_hash));
    assert_ne!(creds[0].key_hash, key1);

    // Refused: a taken name, a bad name, a bad passphrase, unknown names.
    assert!(matches!(
        db.create_stream(new("cam1"), &admin()).await,
        Err(DbError::Duplicate { what: "stream", .. })
    ));
    assert!(matches!(
        db.create_stream(new("../etc"), &admin()).await,
        Err(DbError::Invalid(_))
    ));
    assert!(matches!(
        db.create_stream(
            NewStream {
                passphrase: Some(Secret::new("short")),
                ..new("cam9")
            },
            &admin()
        )
        .await,
        Err(DbError::Invalid(_))
    ));
    assert!(matches!(
        db.stream("nope").await,
        Err(DbError::NotFound { .. })
    ));
    assert!(matches!(
        db.rotate_key("nope", &admin()).await,
        Err(DbError::NotFound { .. })
    ));
    assert!(matches!(
        db.delete_stream("nope", &admin()).await,
        Err(DbError::NotFound { .. })
    ));

    // Pages in name order.
    db.create_stream(new("cam2"), &admin()).await.unwrap();
    db.create_stream(new("cam3"), &admin()).await.unwrap();
    let page: Vec<String> = db
        .streams(None, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(page, ["cam1", "cam2"]);
    let next: Vec<String> = db
        .streams(Some("cam2"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(next, ["cam3"]);

    // A rotated key replaces the old one.
    let before = db.revision().await.unwrap();
    let rotated = db.rotate_key("cam1", &admin()).await.unwrap();
    let key2 = rotated.publish_key.expose().to_owned();
    assert_ne!(key1, key2);
    assert!(db.revision().await.unwrap() > before);
    let hash = db
        .credentials()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "cam1")
        .unwrap()
        .key_hash;
    assert!(secrets::matches(&key2, &hash));
    assert!(!secrets::matches(&key1, &hash));

    // Partial updates.
    let updated = db
        .update_stream(
            "cam1",
            StreamChanges {
                passphrase: Some(None),
                ladder: Some(None),
                ..StreamChanges::default()
            },
            &admin(),
        )
        .await
        .unwrap();
    assert_eq!(updated.passphrase, None);
    assert_eq!(updated.ladder, None);
    assert_eq!(updated.on_duplicate, DuplicatePublisher::TakeOver);
    assert!(updated.updated_ms >= updated.created_ms);

    db.delete_stream("cam3", &admin()).await.unwrap();
    assert!(matches!(
        db.stream("cam3").await,
        Err(DbError::NotFound { .. })
    ));

    // The audit log: every change, newest first, no secret anywhere.
    let log = db.audit_log(None, None, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.action.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("stream.delete", "cam3"),
            ("stream.update", "cam1"),
            ("stream.rotate-key", "cam1"),
            ("stream.create", "cam3"),
            ("stream.create", "cam2"),
            ("stream.create", "cam1"),
        ]
    );
    assert!(log.iter().all(|e| e.actor == "api-token:t1"));
    assert_eq!(
        log[1].detail,
        serde_json::json!({ "changed": ["passphrase", "ladder"] })
    );
    let text = format!("{log:?}");
    for secret in [&key1, &key2, "0123456789abcdef"] {
        assert!(!text.contains(secret), "a secret in the audit log: {text}");
    }
    let about_cam1 = db.audit_log(Some("cam1"), None, 100).await.unwrap();
    assert_eq!(about_cam1.len(), 3);
    let older = db
        .audit_log(Some("cam1"), Some(&about_cam1[0].id), 100)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);
}

async fn tokens(db: Database) {
    // First start: one admin token, once, also when several processes
    // start at the same moment (here: eight connections at once).
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { db.bootstrap_admin().await.unwrap() })
        })
        .collect();
    let mut made = Vec::new();
    for start in starts {
        made.extend(start.await.unwrap());
    }
    assert_eq!(made.len(), 1, "{} admin tokens made", made.len());
    let boot = made.pop().unwrap();
    assert_eq!(boot.token.role, Role::Admin);
    assert!(db.bootstrap_admin().await.unwrap().is_none());
    let found = db
        .verify_token(boot.secret.expose())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, boot.token);

    let actor = Actor::Token(boot.token.id.clone());
    let issuer = db
        .create_token(Role::ViewerIssuer, "player page", &actor)
        .await
        .unwrap();
    assert_eq!(
        db.verify_token(issuer.secret.expose())
            .await
            .unwrap()
            .map(|t| t.role),
        Some(Role::ViewerIssuer)
    );
    assert_eq!(db.verify_token("not a token").await.unwrap(), None);
    assert_eq!(db.tokens(None, 10).await.unwrap().len(), 2);

    let revoked = db.revoke_token(&issuer.token.id, &actor).await.unwrap();
    assert!(revoked.revoked_ms.is_some());
    assert_eq!(db.verify_token(issuer.secret.expose()).await.unwrap(), None);
    assert!(matches!(
        db.revoke_token(&issuer.token.id, &actor).await,
        Err(DbError::NotFound { .. })
    ));
    let log = db.audit_log(None, None, 10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["token.revoke", "token.create", "token.create"]);
    assert_eq!(log[2].actor, "bootstrap");
    assert!(!format!("{log:?}").contains(issuer.secret.expose()));
}

/// Polls `check` every 20 ms until true or `within` passes.
async fn within(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

fn authorize(auth: &DbAuthorizer, streamid: &str) -> Result<(), AuthError> {
    auth.authorize(&parse(streamid).unwrap()).map(|_| ())
}

/// The authoriser follows the database within a poll interval and keeps
/// answering from memory when the database is gone; `stop` takes the
/// database away.
async fn authorizer(db: Database, stop: impl std::future::Future<Output = ()>) {
    let fixed = [StreamConfig {
        name: "fixed".into(),
        publish_key: Secret::new("fixed-key-1"),
        passphrase: None,
        on_duplicate: DuplicatePublisher::Reject,
    }];
    let auth = DbAuthorizer::start(db.clone(), &fixed, Duration::from_millis(100));
    assert!(auth.wait_loaded(Duration::from_secs(5)).await);
    assert!(auth.loaded());
    // The config file's stream is not open to anyone.
    assert!(!auth.is_open());
    assert_eq!(
        authorize(&auth, "publish:live/fixed?key=fixed-key-1"),
        Ok(())
    );
    assert_eq!(
        authorize(&auth, "publish:live/fixed?key=fixed-key-2"),
        Err(AuthError::WrongKey)
    );
    assert_eq!(
        authorize(&auth, "publish:live/cam1?key=x"),
        Err(AuthError::UnknownStream)
    );

    let made = db.create_stream(new("cam1"), &admin()).await.unwrap();
    let key1 = made.publish_key.expose().to_owned();
    let with = |key: &str| format!("publish:live/cam1?key={key}");
    // A new stream works within a poll interval (well under a second).
    let started = Instant::now();
    assert!(
        within(Duration::from_secs(1), || authorize(&auth, &with(&key1))
            .is_ok())
        .await
    );
    eprintln!("new stream usable after {:?}", started.elapsed());
    assert_eq!(
        authorize(&auth, "publish:live/cam1"),
        Err(AuthError::MissingKey)
    );

    // A rotated key: the old one refused within a second.
    let key2 = db
        .rotate_key("cam1", &admin())
        .await
        .unwrap()
        .publish_key
        .expose()
        .to_owned();
    let started = Instant::now();
    assert!(
        within(Duration::from_secs(1), || {
            authorize(&auth, &with(&key1)) == Err(AuthError::WrongKey)
        })
        .await
    );
    eprintln!("old key refused after {:?}", started.elapsed());
    assert_eq!(authorize(&auth, &with(&key2)), Ok(()));

    // The database goes away: answers go on from memory.
    stop.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(authorize(&auth, &with(&key2)), Ok(()));
    assert_eq!(authorize(&auth, &with(&key1)), Err(AuthError::WrongKey));
    assert_eq!(
        authorize(&auth, "publish:live/fixed?key=fixed-key-1"),
        Ok(())
    );
}

#[tokio::test]
async fn sqlite_streams_keys_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.db");
    streams_keys_and_audit(Database::open_sqlite(&path).await.unwrap()).await;
    // Reopened: the migrations are not applied twice, the data is there.
    let again = Database::open_sqlite(&path).await.unwrap();
    assert_eq!(again.streams(None, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tokens() {
    let dir = tempfile::tempdir().unwrap();
    tokens(
        Database::open_sqlite(&dir.path().join("c.db"))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_authorizer() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_sqlite(&dir.path().join("c.db"))
        .await
        .unwrap();
    // Taken away: the pool the authoriser shares is closed.
    let closing = db.clone();
    authorizer(db, async move { closing.close().await }).await;
}

#[tokio::test]
async fn postgres_streams_keys_and_audit() {
    let Some(pg) = Postgres::start() else { return };
    streams_keys_and_audit(Database::open(&pg.url()).await.unwrap()).await;
    let again = Database::open(&pg.url()).await.unwrap();
    assert_eq!(again.streams(None, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tokens() {
    let Some(pg) = Postgres::start() else { return };
    tokens(Database::open(&pg.url()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_authorizer() {
    let Some(pg) = Postgres::start() else { return };
    let db = Database::open(&pg.url()).await.unwrap();
    authorizer(db, async { pg.stop() }).await;
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let err = Database::open("mysql://x").await.unwrap_err();
    assert!(err.to_string().contains("sqlite: or postgres://"), "{err}");
    let err = Database::open("postgres://nobody:x@127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot open the database"),
        "{err}"
    );
}
