//! The per-request flow an HTTP edge runs, with no server: verify the
//! viewer's JWT on the Multivariant Playlist, sign an edge token into it,
//! then check that token (and renew it) on the requests that follow.
//!
//! ```text
//! cargo run -p ferrocast-edge --example edge_flow
//! ```

use ferrocast_edge::{EdgeConfig, EdgeTokens, JwtVerifier, Rewriter, edge_token, jwt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const CONFIG: &str = r#"
[jwt]
audience = "ferrocast"
leeway_secs = 30
[[jwt.keys]]
kid = "auth-2025"
algorithm = "HS256"
secret = "the-auth-service-and-the-edge-share-this"

[token]
keys = [{ kid = 2, secret = "edge-token-key-2-edge-token-key-2" },
        { kid = 1, secret = "edge-token-key-1-edge-token-key-1" }]
session_ttl_secs = 21600
media_ttl_secs = 120
session_limit = "jwt_expiry"

[rewrite]
own_origins = ["https://live.example.com"]
key_uris = "sign"
"#;

/// What the origin (the packager) returns for the Multivariant Playlist.
const MULTIVARIANT: &str = "#EXTM3U
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2500000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720
video_720p.m3u8
";

/// What the origin returns for a Media Playlist.
const MEDIA: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=1.500
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI=\"init0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2025-06-15T12:00:00.000Z
#EXT-X-PART:DURATION=0.500,URI=\"part7.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"part7.1.m4s\"
#EXTINF:1.000,
seg7.m4s
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part8.0.m4s\"
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Once, at start.
    let config: EdgeConfig = toml::from_str(CONFIG)?;
    let jwts = JwtVerifier::new(&config.jwt)?;
    let tokens = EdgeTokens::new(&config.token)?;
    let rewriter = Rewriter::new(&config.rewrite)?;
    println!("{jwts:?}\n{tokens:?}\n");

    let now = 1_750_000_000;
    let stream = "sports-1";

    // The viewer got this JWT from the operator's auth service.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("auth-2025".into());
    let jwt = jsonwebtoken::encode(
        &header,
        &serde_json::json!({
            "sub": "viewer-42",
            "aud": "ferrocast",
            "exp": now + 3600,
            "streams": ["sports-*"],
        }),
        &EncodingKey::from_secret(b"the-auth-service-and-the-edge-share-this"),
    )?;

    // 1. GET /live/sports-1/index.m3u8, Authorization: Bearer <jwt>
    let authorization = format!("Bearer {jwt}");
    let presented = jwt::bearer(&authorization).unwrap_or("");
    let viewer = match jwts.verify(presented, stream, now) {
        Ok(viewer) => viewer,
        Err(e) => {
            // The server answers e.status() with e.reason().
            println!("{} {}", e.status(), e.reason());
            return Ok(());
        }
    };
    let session = edge_token::SessionId::new("s-8d1f0c")?;
    let session_token = tokens.sign_session(stream, &viewer, Some(&session), now);
    let body = rewriter.rewrite(MULTIVARIANT, &session_token)?;
    println!("--- index.m3u8 for {:?}\n{body}", viewer.subject);

    // A viewer whose JWT does not cover the stream gets a 403.
    if let Err(e) = jwts.verify(presented, "news", now) {
        println!("--- news/index.m3u8: {} {}\n", e.status(), e.reason());
    }

    // 2. GET /live/sports-1/video_720p.m3u8?_HLS_msn=7&_HLS_part=1&token=<session token>
    let query = format!("_HLS_msn=7&_HLS_part=1&token={session_token}");
    let presented = edge_token::query_param(&query, "token").unwrap_or("");
    let claims = tokens.verify(presented, stream, now + 2)?;
    let media_token = tokens.sign_media(stream, &claims, now + 2);
    let body = rewriter.rewrite(MEDIA, &media_token)?;
    println!("--- video_720p.m3u8 (session {:?})\n{body}", claims.session);

    // 3. GET /live/sports-1/part8.0.m4s?token=<media token>
    let claims = tokens.verify(&media_token, stream, now + 3)?;
    println!(
        "--- part8.0.m4s: ok, token valid for {} s more",
        claims.expires_at - (now + 3)
    );
    // The same token for another stream, or after it expired: 401.
    for (other, at) in [("news", now + 3), (stream, now + 200)] {
        if let Err(e) = tokens.verify(&media_token, other, at) {
            let after = at - now;
            println!("--- {other} at +{after}s: {} {}", e.status(), e.reason());
        }
    }
    Ok(())
}
