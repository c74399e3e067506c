#![allow(clippy::unwrap_used)]

//! Every route of the REST API, on SQLite and on a real PostgreSQL server:
//! the happy path, 401 without or with a bad token, 403 for each role
//! that may not, 404, 409 on a taken name, 415 and 422 with a problem
//! document; and the OpenAPI document checked by an independent
//! validator (`openapi-spec-validator` from PyPI).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ferrocast_control::Database;
use ferrocast_control::api::live::{LiveStatus, Track};
use ferrocast_control::api::viewer_tokens::MintFailure;
use ferrocast_control::api::{self, ApiState, ControlHooks, HookFuture};
use ferrocast_edge::{JwtConfig, JwtError, JwtVerifier, ViewerTokenMinter};
use ferrocast_testkit::Postgres;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {bytes:?}"))
    };
    Answer {
        status,
        content_type,
        body,
    }
}

/// Asserts a problem document with `status`.
fn problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["status"], status.as_u16());
    assert!(
        answer.body["type"]
            .as_str()
            .unwrap()
            .starts_with("/problems/")
    );
    assert!(!answer.body["title"].as_str().unwrap().is_empty());
    assert!(!answer.body["detail"].as_str().unwrap().is_empty());
}

/// Counts changes; `cam1` has a live publisher until disconnected, and
/// `cam25` is live without being in the database; viewer tokens are
/// minted with the edge's minter when it has one.
#[derive(Default)]
struct Hooks {
    changes: AtomicUsize,
    disconnected: std::sync::Mutex<Vec<String>>,
    minter: Option<ViewerTokenMinter>,
}

impl Hooks {
    fn live_now(&self) -> BTreeMap<String, LiveStatus> {
        let cam1_on_air = !self
            .disconnected
            .lock()
            .unwrap()
            .contains(&"cam1".to_owned());
        BTreeMap::from([
            ("cam1".to_owned(), live_status(cam1_on_air)),
            ("cam25".to_owned(), live_status(true)),
        ])
    }
}

fn jwt_config() -> JwtConfig {
    toml::from_str(
        r#"
        audience = "ferrocast"
        [[keys]]
        kid = "api-test"
        algorithm = "HS256"
        secret = "0123456789abcdef0123456789abcdef"
        "#,
    )
    .unwrap()
}

fn live_status(on_air: bool) -> LiveStatus {
    LiveStatus {
        on_air,
        tracks: vec![Track {
            kind: "video".into(),
            codec: "avc1.64001f".into(),
            width: Some(1280),
            height: Some(720),
            sample_rate: None,
            channels: None,
        }],
        bitrate_bps: Some(2_000_000),
        viewers: Some(3),
        ..LiveStatus::default()
    }
}

impl ControlHooks for Hooks {
    fn streams_changed<'a>(&'a self, _stream: &'a str) -> HookFuture<'a, ()> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }

    fn disconnect<'a>(&'a self, stream: &'a str) -> HookFuture<'a, bool> {
        let mut gone = self.disconnected.lock().unwrap();
        let done = if stream == "cam1" && !gone.contains(&stream.to_owned()) {
            gone.push(stream.to_owned());
            true
        } else {
            false
        };
        Box::pin(async move { done })
    }

    fn live(&self) -> HookFuture<'_, BTreeMap<String, LiveStatus>> {
        Box::pin(async { self.live_now() })
    }

    fn thumbnail<'a>(&'a self, stream: &'a str) -> HookFuture<'a, Option<Vec<u8>>> {
        let jpeg = (stream == "cam1").then(|| vec![0xff, 0xd8, 0xff, 0xd9]);
        Box::pin(async move { jpeg })
    }

    fn mint_viewer_token(
        &self,
        stream: &str,
        subject: Option<&str>,
        ttl_secs: u64,
    ) -> Result<(String, u64), MintFailure> {
        let minter = self.minter.as_ref().ok_or(MintFailure::NotConfigured)?;
        let now = 1_900_000_000;
        minter
            .mint(stream, subject, now, ttl_secs)
            .map(|token| (token, now + ttl_secs))
            .map_err(|e| MintFailure::Invalid(e.to_string()))
    }
}

async fn every_route(db: Database) {
    let admin = db.bootstrap_admin().await.unwrap().unwrap();
    let admin = admin.secret.expose().to_owned();
    let hooks = Arc::new(Hooks {
        minter: ViewerTokenMinter::from_config(&jwt_config()),
        ..Hooks::default()
    });
    let history = api::history::History::default();
    let app = api::router(ApiState {
        db: db.clone(),
        hooks: hooks.clone(),
        history: history.clone(),
    });
    let admin = Some(admin.as_str());

    // The document needs no token.
    let doc = call(&app, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["paths"]["/api/v1/streams/{name}/key"]["post"].is_object());

    // 401: no token, not a token, an unknown token.
    let new_cam = json!({ "name": "cam1" });
    problem(
        &call(&app, "POST", "/api/v1/streams", None, Some(new_cam.clone())).await,
        StatusCode::UNAUTHORIZED,
    );
    problem(
        &call(
            &app,
            "POST",
            "/api/v1/streams",
            Some("x"),
            Some(new_cam.clone()),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    let unknown = "ab".repeat(32);
    problem(
        &call(&app, "GET", "/api/v1/tokens", Some(&unknown), None).await,
        StatusCode::UNAUTHORIZED,
    );

    // The admin makes an operator and a viewer-issuer token.
    let made = call(
        &app,
        "POST",
        "/api/v1/tokens",
        admin,
        Some(json!({ "role": "operator", "description": "ops" })),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["token"]["role"], "operator");
    let operator_id = made.body["token"]["id"].as_str().unwrap().to_owned();
    let operator_secret = made.body["secret"].as_str().unwrap().to_owned();
    let operator = Some(operator_secret.as_str());
    let issuer = call(
        &app,
        "POST",
        "/api/v1/tokens",
        admin,
        Some(json!({ "role": "viewer-issuer" })),
    )
    .await;
    let issuer = issuer.body["secret"].as_str().unwrap().to_owned();
    let issuer = Some(issuer.as_str());
    problem(
        &call(
            &app,
            "POST",
            "/api/v1/tokens",
            admin,
            Some(json!({ "role": "root" })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // Streams: made by an operator, the key shown once.
    let created = call(
        &app,
        "POST",
        "/api/v1/streams",
        operator,
        Some(new_cam.clone()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key1 = created.body["publish_key"].as_str().unwrap().to_owned();
    assert_eq!(key1.len(), 64);
    assert_eq!(created.body["stream"]["key_prefix"], &key1[..8]);
    assert_eq!(created.body["stream"]["on_duplicate"], "reject");
    // Push URLs for the host asked (the test's requests name none).
    assert_eq!(
        created.body["push"]["srt_url"],
        format!("srt://HOST:9000?streamid=publish:live/cam1?key={key1}")
    );
    assert_eq!(hooks.changes.load(Ordering::SeqCst), 1);
    problem(
        &call(
            &app,
            "POST",
            "/api/v1/streams",
            operator,
            Some(new_cam.clone()),
        )
        .await,
        StatusCode::CONFLICT,
    );
    for bad in [
        json!({ "name": "../x" }),
        json!({ "name": "cam2", "passphrase": "short" }),
        json!({ "name": "cam2", "colour": "red" }),
        json!({ "name": "cam2", "recording": 5 }),
        json!({ "name": "cam2", "recording": { "enabled": "yes" } }),
        json!({ "name": "cam2", "recording": { "retention_secs": -1 } }),
        json!({ "name": "cam2", "recording": { "keep": "forever" } }),
        json!({ "nom": "cam2" }),
    ] {
        problem(
            &call(&app, "POST", "/api/v1/streams", operator, Some(bad)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let no_type = app
        .clone()
        .oneshot(
            Request::post("/api/v1/streams")
                .header(header::AUTHORIZATION, format!("Bearer {operator_secret}"))
                .body(Body::from(new_cam.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(no_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let shown = call(&app, "GET", "/api/v1/streams/cam1", operator, None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["name"], "cam1");
    assert_eq!(shown.body["settings"], created.body["stream"]);
    assert_eq!(shown.body["live"]["on_air"], true);
    assert_eq!(shown.body["live"]["tracks"][0]["width"], 1280);
    assert_eq!(shown.body["live"]["viewers"], 3);
    assert!(!shown.body.to_string().contains(&key1));
    // Live but not stored: its live state, no settings.
    let open = call(&app, "GET", "/api/v1/streams/cam25", operator, None).await;
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(open.body["settings"], Value::Null);
    assert_eq!(open.body["live"]["bitrate_bps"], 2_000_000);
    problem(
        &call(&app, "GET", "/api/v1/streams/nope", operator, None).await,
        StatusCode::NOT_FOUND,
    );

    // Changes: set, then remove, a passphrase.
    let patched = call(
        &app,
        "PATCH",
        "/api/v1/streams/cam1",
        operator,
        Some(json!({ "passphrase": "0123456789abcdef", "on_duplicate": "take_over" })),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["passphrase_set"], true);
    assert_eq!(patched.body["on_duplicate"], "take_over");
    assert!(!patched.body.to_string().contains("0123456789abcdef"));
    let patched = call(
        &app,
        "PATCH",
        "/api/v1/streams/cam1",
        operator,
        Some(json!({ "passphrase": null })),
    )
    .await;
    assert_eq!(patched.body["passphrase_set"], false);
    assert_eq!(patched.body["on_duplicate"], "take_over");
    problem(
        &call(
            &app,
            "PATCH",
            "/api/v1/streams/nope",
            operator,
            Some(json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    problem(
        &call(
            &app,
            "PATCH",
            "/api/v1/streams/cam1",
            operator,
            Some(json!({ "on_duplicate": "maybe" })),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );

    // A new key.
    let rotated = call(&app, "POST", "/api/v1/streams/cam1/key", operator, None).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let key2 = rotated.body["publish_key"].as_str().unwrap();
    assert_ne!(key2, key1);
    assert_eq!(rotated.body["stream"]["key_prefix"], &key2[..8]);
    problem(
        &call(&app, "POST", "/api/v1/streams/nope/key", operator, None).await,
        StatusCode::NOT_FOUND,
    );
    assert!(hooks.disconnected.lock().unwrap().is_empty());
    // Rotated again, and the live publisher disconnected.
    let rotated = call(
        &app,
        "POST",
        "/api/v1/streams/cam1/key?disconnect=true",
        operator,
        None,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert_eq!(*hooks.disconnected.lock().unwrap(), ["cam1"]);
    problem(
        &call(
            &app,
            "POST",
            "/api/v1/streams/cam1/key?disconnect=maybe",
            operator,
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    // No live publisher left to disconnect.
    problem(
        &call(
            &app,
            "DELETE",
            "/api/v1/streams/cam1/publisher",
            operator,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );

    // Pages.
    for name in ["cam2", "cam3"] {
        let made = call(
            &app,
            "POST",
            "/api/v1/streams",
            admin,
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(made.status, StatusCode::CREATED);
    }
    let page = call(&app, "GET", "/api/v1/streams?limit=2", operator, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let names: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cam1", "cam2"]);
    assert_eq!(page.body["next"], "cam2");
    let last = call(
        &app,
        "GET",
        "/api/v1/streams?limit=2&after=cam2",
        operator,
        None,
    )
    .await;
    // The live stream that is not stored sorts among the stored ones.
    let names: Vec<&str> = last.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cam25", "cam3"]);
    assert_eq!(last.body["items"][0]["settings"], Value::Null);
    assert_eq!(last.body["items"][1]["live"], Value::Null);
    assert!(last.body.get("next").is_none());
    for query in ["limit=0", "limit=1001", "limit=x", "page=2"] {
        problem(
            &call(
                &app,
                "GET",
                &format!("/api/v1/streams?{query}"),
                operator,
                None,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }

    // 403: what each role may not do.
    for (method, path, body) in [
        ("POST", "/api/v1/streams", Some(json!({ "name": "cam9" }))),
        ("GET", "/api/v1/streams", None),
        ("GET", "/api/v1/streams/cam1", None),
        ("PATCH", "/api/v1/streams/cam1", Some(json!({}))),
        ("DELETE", "/api/v1/streams/cam1", None),
        ("POST", "/api/v1/streams/cam1/key", None),
        ("DELETE", "/api/v1/streams/cam1/publisher", None),
        ("GET", "/api/v1/streams/cam1/thumbnail", None),
        ("GET", "/api/v1/streams/cam1/history", None),
        ("GET", "/api/v1/tokens", None),
        ("POST", "/api/v1/tokens", Some(json!({ "role": "admin" }))),
        ("DELETE", "/api/v1/tokens/x", None),
        ("GET", "/api/v1/audit", None),
    ] {
        problem(
            &call(&app, method, path, issuer, body.clone()).await,
            StatusCode::FORBIDDEN,
        );
        if path.starts_with("/api/v1/tokens") || path == "/api/v1/audit" {
            problem(
                &call(&app, method, path, operator, body).await,
                StatusCode::FORBIDDEN,
            );
        }
    }

    // The dashboard's thumbnail and history.
    let picture = app
        .clone()
        .oneshot(
            Request::get("/api/v1/streams/cam1/thumbnail")
                .header(header::AUTHORIZATION, format!("Bearer {operator_secret}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(picture.status(), StatusCode::OK);
    assert_eq!(picture.headers()[header::CONTENT_TYPE], "image/jpeg");
    let bytes = axum::body::to_bytes(picture.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(&bytes[..], &[0xff, 0xd8, 0xff, 0xd9]);
    problem(
        &call(
            &app,
            "GET",
            "/api/v1/streams/cam2/thumbnail",
            operator,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );
    let empty = call(&app, "GET", "/api/v1/streams/cam1/history", operator, None).await;
    assert_eq!(empty.body, json!([]));
    history.record(1_000, &hooks.live_now());
    history.record(3_000, &hooks.live_now());
    let samples = call(&app, "GET", "/api/v1/streams/cam1/history", operator, None).await;
    assert_eq!(samples.status, StatusCode::OK);
    assert_eq!(samples.body[1]["at_ms"], 3_000);
    assert_eq!(samples.body[1]["viewers"], 3);

    // Viewer tokens: a viewer-issuer's may do this, for one stream only.
    let minted = call(
        &app,
        "POST",
        "/api/v1/streams/cam1/viewer-token",
        issuer,
        Some(json!({ "ttl_secs": 600, "subject": "ticket-7" })),
    )
    .await;
    assert_eq!(minted.status, StatusCode::OK, "{}", minted.body);
    let jwt = minted.body["token"].as_str().unwrap();
    assert_eq!(minted.body["stream"], "cam1");
    assert_eq!(minted.body["expires_unix"], 1_900_000_600u64);
    assert_eq!(
        minted.body["player_path"],
        format!("/play/cam1#token={jwt}")
    );
    let verifier = JwtVerifier::new(&jwt_config()).unwrap();
    let viewer = verifier.verify(jwt, "cam1", 1_900_000_001).unwrap();
    assert_eq!(viewer.subject.as_deref(), Some("ticket-7"));
    assert_eq!(
        verifier.verify(jwt, "cam2", 1_900_000_001),
        Err(JwtError::NotInScope)
    );
    let default_ttl = call(
        &app,
        "POST",
        "/api/v1/streams/anything/viewer-token",
        operator,
        Some(json!({})),
    )
    .await;
    assert_eq!(default_ttl.body["expires_unix"], 1_900_003_600u64);
    for (path, body) in [
        (
            "/api/v1/streams/cam1/viewer-token",
            json!({ "ttl_secs": 0 }),
        ),
        (
            "/api/v1/streams/cam1/viewer-token",
            json!({ "ttl_secs": 86401 }),
        ),
        (
            "/api/v1/streams/cam1/viewer-token",
            json!({ "subject": "" }),
        ),
        (
            "/api/v1/streams/cam1/viewer-token",
            json!({ "subject": "x".repeat(257) }),
        ),
        (
            "/api/v1/streams/cam1/viewer-token",
            json!({ "streams": ["*"] }),
        ),
        ("/api/v1/streams/..%2Fx/viewer-token", json!({})),
    ] {
        problem(
            &call(&app, "POST", path, issuer, Some(body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    problem(
        &call(
            &app,
            "POST",
            "/api/v1/streams/cam1/viewer-token",
            None,
            Some(json!({})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    );
    let unsigned = api::router(ApiState {
        db: db.clone(),
        hooks: Arc::new(Hooks::default()),
        history: Default::default(),
    });
    problem(
        &call(
            &unsigned,
            "POST",
            "/api/v1/streams/cam1/viewer-token",
            issuer,
            Some(json!({})),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
    );

    // Tokens and the audit log, for the admin.
    let tokens = call(&app, "GET", "/api/v1/tokens", admin, None).await;
    assert_eq!(tokens.body["items"].as_array().unwrap().len(), 3);
    assert!(!tokens.body.to_string().contains(&operator_secret));
    let audit = call(&app, "GET", "/api/v1/audit?subject=cam1", admin, None).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "stream.disconnect",
            "stream.rotate-key",
            "stream.rotate-key",
            "stream.update",
            "stream.update",
            "stream.create"
        ]
    );
    assert_eq!(
        audit.body["items"][5]["actor"],
        format!("api-token:{operator_id}")
    );
    let one = call(&app, "GET", "/api/v1/audit?limit=1", admin, None).await;
    let older = call(
        &app,
        "GET",
        &format!(
            "/api/v1/audit?limit=1&before={}",
            one.body["next"].as_str().unwrap()
        ),
        admin,
        None,
    )
    .await;
    assert_ne!(one.body["items"][0]["id"], older.body["items"][0]["id"]);

    // Revoked: the operator's token stops working at once.
    let revoked = call(
        &app,
        "DELETE",
        &format!("/api/v1/tokens/{operator_id}"),
        admin,
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(revoked.body["revoked_ms"].is_i64());
    problem(
        &call(&app, "GET", "/api/v1/streams/cam1", operator, None).await,
        StatusCode::UNAUTHORIZED,
    );
    problem(
        &call(
            &app,
            "DELETE",
            &format!("/api/v1/tokens/{operator_id}"),
            admin,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
    );

    // Deleted.
    let deleted = call(&app, "DELETE", "/api/v1/streams/cam1", admin, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    problem(
        &call(&app, "DELETE", "/api/v1/streams/cam1", admin, None).await,
        StatusCode::NOT_FOUND,
    );
}

/// The guard in front of an origin: every route but the probes needs a
/// live API token of any role.
#[tokio::test]
async fn the_origin_guard_lets_only_probes_through_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_sqlite(&dir.path().join("g.db"))
        .await
        .unwrap();
    let admin = db.bootstrap_admin().await.unwrap().unwrap();
    let origin = Router::new()
        .route(
            "/live/cam/index.m3u8",
            axum::routing::get(|| async { "{}" }),
        )
        .route("/metrics", axum::routing::get(|| async { "{}" }))
        .route("/healthz", axum::routing::get(|| async { "{}" }))
        .route("/readyz", axum::routing::get(|| async { "{}" }));
    let app = api::auth::guard(origin, db.clone());
    for path in ["/live/cam/index.m3u8", "/metrics"] {
        problem(
            &call(&app, "GET", path, None, None).await,
            StatusCode::UNAUTHORIZED,
        );
        problem(
            &call(&app, "GET", path, Some(&"ab".repeat(32)), None).await,
            StatusCode::UNAUTHORIZED,
        );
        let with = call(&app, "GET", path, Some(admin.secret.expose()), None).await;
        assert_eq!(with.status, StatusCode::OK, "{path}");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            call(&app, "GET", path, None, None).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn every_route_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    every_route(
        Database::open_sqlite(&dir.path().join("c.db"))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn every_route_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    every_route(Database::open(&pg.url()).await.unwrap()).await;
}

/// `openapi-spec-validator` from PyPI checks the served document; skipped
/// with a line when it is not installed, unless
/// `REQUIRE_OPENAPI_TESTS=1` (set by scripts/test.sh, which installs it).
#[test]
fn the_openapi_document_is_valid_openapi() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("REQUIRE_OPENAPI_TESTS").is_none(),
            "REQUIRE_OPENAPI_TESTS is set but openapi-spec-validator is not installed"
        );
        eprintln!(
            "SKIPPED: openapi-spec-validator is not installed (pip install openapi-spec-validator)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, api::openapi_json()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&api::openapi_json()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
