#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Cache keys through the whole edge: the request handler over
//! `Coalescing` over an in-process upstream that counts what it is asked.
//! Only the delivery directives a resource understands reach the origin,
//! in one spelling, so 200 spellings of six requests (leading zeros,
//! parameter order, unknown parameters, directives on resources that take
//! none) cost the origin six fetches; directives that do not parse are
//! refused with 400 and never forwarded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrocast_edge::coalesce::{Coalescing, CoalescingConfig};
use ferrocast_edge::server::{EdgeMetrics, Handler, Protocol};
use ferrocast_edge::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};
use ferrocast_edge::{EdgeConfig, EdgeTokens};
use futures::FutureExt;
use futures::future::BoxFuture;

const NOW: u64 = 1_750_000_000;
const HS: &str = "cache-keys-test-hs256-secret-cache-keys";

/// Answers every request with 200 and counts what it was asked, by the
/// exact request (path and query) it received.
#[derive(Clone, Default)]
struct Counting {
    asked: Arc<Mutex<HashMap<UpstreamRequest, usize>>>,
}

impl Counting {
    fn asked(&self) -> HashMap<UpstreamRequest, usize> {
        self.asked.lock().unwrap().clone()
    }

    fn total(&self) -> usize {
        self.asked.lock().unwrap().values().sum()
    }
}

impl Upstream for Counting {
    fn fetch(
        &self,
        req: UpstreamRequest,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        *self.asked.lock().unwrap().entry(req.clone()).or_default() += 1;
        let playlist = req.path.ends_with(".m3u8");
        let (cache_control, body) = if playlist {
            ("no-cache", "#EXTM3U\n#EXTINF:1.0,\nseg7.m4s\n")
        } else {
            ("public, max-age=3600, immutable", "MEDIA")
        };
        let response = UpstreamResponse {
            status: 200,
            headers: vec![("cache-control".into(), cache_control.into())],
            body: Bytes::from_static(body.as_bytes()),
        };
        async move { Ok(response) }.boxed()
    }
}

fn config() -> EdgeConfig {
    let mut config: EdgeConfig = toml::from_str(&format!(
        r#"
        [jwt]
        audience = "a"
        [[jwt.keys]]
        kid = "k"
        algorithm = "HS256"
        secret = "{HS}"
        [token]
        keys = [{{ kid = 1, secret = "edge-secret-edge-secret-edge-secret!" }}]
        "#
    ))
    .unwrap();
    // Hundreds of requests on one token: not what this test is about.
    // Many multivariant requests with one JWT: no rate or session limit.
    config.limits = toml::from_str(
        "per_ip = { enabled = false }\nper_token = { enabled = false }\n\
         sessions_per_viewer = { enabled = false }",
    )
    .unwrap();
    config
}

fn jwt() -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k".into());
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"aud": "a", "exp": NOW + 3600, "streams": ["cam"]}),
        &jsonwebtoken::EncodingKey::from_secret(HS.as_bytes()),
    )
    .unwrap()
}

/// The handler over `Coalescing` over `origin`, with every TTL longer than
/// the test, so that equal keys are answered from memory whatever this
/// machine's speed.
fn edge(origin: &Counting) -> Handler {
    let hour = 3_600_000;
    let coalescing = Coalescing::new(
        origin.clone(),
        CoalescingConfig {
            playlist_ttl_ms: hour,
            blocking_playlist_ttl_ms: hour,
            max_ttl_ms: hour,
            ..CoalescingConfig::default()
        },
    );
    Handler::with_clock(
        &config(),
        Arc::new(coalescing),
        EdgeMetrics::new().unwrap(),
        Arc::new(|| NOW),
    )
    .unwrap()
}

async fn get(handler: &Handler, uri: &str) -> http::Response<Bytes> {
    handler
        .handle(Protocol::Http2, http::Request::get(uri).body(()).unwrap())
        .await
}

/// `n` zeros.
fn zeros(n: usize) -> String {
    "0".repeat(n)
}

/// Spellings of one query: `directives` (each given as its spellings)
/// mixed with the token and unknown parameters, in several orders.
fn spellings(directives: &[Vec<String>], token: &str, extra: &[&str], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while out.len() < n {
        let mut pairs: Vec<String> = directives
            .iter()
            .map(|spellings| spellings[i % spellings.len()].clone())
            .collect();
        pairs.push(format!("token={token}"));
        for (j, e) in extra.iter().enumerate() {
            if (i >> j) & 1 == 1 {
                pairs.push((*e).to_owned());
            }
        }
        // Rotate, and every other time reverse, to vary the order.
        let len = pairs.len();
        pairs.rotate_left(i % len);
        if (i / len) % 2 == 1 {
            pairs.reverse();
        }
        out.push(pairs.join("&"));
        i += 1;
    }
    out
}

#[tokio::test]
async fn two_hundred_spellings_of_six_requests_cost_the_origin_six_fetches() {
    let origin = Counting::default();
    let handler = edge(&origin);
    let tokens = EdgeTokens::new(&config().token).unwrap();
    let token = tokens.sign("cam", NOW + 600, None);
    let jwt = jwt();

    let msn: Vec<String> = (0..6).map(|z| format!("_HLS_msn={}7", zeros(z))).collect();
    let part: Vec<String> = (0..4).map(|z| format!("_HLS_part={}2", zeros(z))).collect();
    let unknown = [
        "player=hls.js",
        "x=",
        "",
        "_HLS_other=1",
        "_hls_msn=9",
        "cb=12345",
    ];
    // Directives on resources that take none: dropped, valid or not.
    let stray = vec![
        "_HLS_msn=7".to_owned(),
        "_HLS_part=2".to_owned(),
        "_HLS_skip=YES".to_owned(),
        "_HLS_msn=007&_HLS_part=1".to_owned(),
        "_HLS_skip=v2&_HLS_msn=x".to_owned(),
        "_HLS_part=9".to_owned(),
    ];
    // (path, expected upstream query, spellings of the query)
    let requests: Vec<(&str, Option<&str>, Vec<String>)> = vec![
        (
            "/live/cam/stream.m3u8",
            Some("_HLS_msn=7&_HLS_part=2"),
            spellings(&[msn, part], &token, &unknown, 50),
        ),
        (
            "/live/cam/720p/stream.m3u8",
            Some("_HLS_skip=YES"),
            spellings(&[vec!["_HLS_skip=YES".into()]], &token, &unknown, 30),
        ),
        (
            "/live/cam/seg7.m4s",
            None,
            spellings(std::slice::from_ref(&stray), &token, &unknown, 30),
        ),
        (
            "/live/cam/part7.2.m4s",
            None,
            spellings(std::slice::from_ref(&stray), &token, &unknown, 30),
        ),
        (
            "/live/cam/720p/init0.mp4",
            None,
            spellings(std::slice::from_ref(&stray), &token, &unknown, 30),
        ),
        (
            "/live/cam/index.m3u8",
            None,
            spellings(&[stray], &jwt, &unknown, 30),
        ),
    ];

    let mut distinct = HashSet::new();
    for (path, expected, queries) in &requests {
        // Resources that take no directive: the bare request is one more
        // spelling of the same key.
        let token = if path.ends_with("index.m3u8") {
            &jwt
        } else {
            &token
        };
        let bare = expected.is_none().then(|| format!("{path}?token={token}"));
        for uri in queries.iter().map(|q| format!("{path}?{q}")).chain(bare) {
            let response = tokio::time::timeout(Duration::from_secs(10), get(&handler, &uri))
                .await
                .expect("answered in time");
            assert_eq!(response.status(), 200, "{uri}");
            distinct.insert(uri);
        }
    }
    assert!(distinct.len() >= 200, "{} spellings", distinct.len());

    let asked = origin.asked();
    for (path, query, _) in &requests {
        let key = UpstreamRequest {
            path: (*path).to_owned(),
            query: query.map(str::to_owned),
        };
        assert_eq!(asked.get(&key), Some(&1), "{key:?} in {asked:?}");
    }
    assert_eq!(origin.total(), requests.len(), "{asked:?}");
}

#[tokio::test]
async fn directives_that_do_not_parse_are_refused_and_never_forwarded() {
    let origin = Counting::default();
    let handler = edge(&origin);
    let token = EdgeTokens::new(&config().token)
        .unwrap()
        .sign("cam", NOW + 600, None);
    for (query, reason) in [
        ("_HLS_msn=x", "_HLS_msn is not a valid decimal-integer"),
        ("_HLS_msn=%37", "_HLS_msn is not a valid decimal-integer"),
        ("_HLS_msn=-1", "_HLS_msn is not a valid decimal-integer"),
        ("_HLS_msn=", "_HLS_msn is not a valid decimal-integer"),
        (
            "_HLS_msn=18446744073709551616",
            "_HLS_msn is not a valid decimal-integer",
        ),
        (
            "_HLS_msn=1&_HLS_part=4294967296",
            "_HLS_part is not a valid decimal-integer",
        ),
        ("_HLS_part=1", "_HLS_part given without _HLS_msn"),
        ("_HLS_skip=yes", "_HLS_skip must be YES or v2"),
        ("_HLS_msn=1&_HLS_msn=1", "_HLS_msn given more than once"),
        ("_HLS_msn=1&_HLS_msn=01", "_HLS_msn given more than once"),
        (
            "_HLS_skip=YES&_HLS_skip=v2",
            "_HLS_skip given more than once",
        ),
    ] {
        let uri = format!("/live/cam/stream.m3u8?{query}&token={token}");
        let response = get(&handler, &uri).await;
        assert_eq!(response.status(), 400, "{uri}");
        let body = std::str::from_utf8(response.body()).unwrap();
        assert!(body.starts_with(reason), "{uri}: {body}");
        assert!(!body.contains(&token), "{body}");
        // Without a valid token: 401 first, the directives unread.
        let response = get(&handler, &format!("/live/cam/stream.m3u8?{query}")).await;
        assert_eq!(response.status(), 401, "{query}");
    }
    let long = format!(
        "/live/cam/stream.m3u8?_HLS_msn=1&token={token}&pad={}",
        "a".repeat(1024)
    );
    assert_eq!(get(&handler, &long).await.status(), 400);
    assert_eq!(origin.total(), 0, "{:?}", origin.asked());

    // The same layer without the handler in front refuses them alike.
    let coalescing = Coalescing::new(origin.clone(), CoalescingConfig::default());
    let response = coalescing
        .fetch(UpstreamRequest {
            path: "/live/cam/stream.m3u8".into(),
            query: Some("_HLS_part=1".into()),
        })
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(origin.total(), 0, "{:?}", origin.asked());
}
