//! Edge tokens: arbitrary text never panics the verifier nor verifies;
//! a token signed for arbitrary input verifies for its stream only.
#![no_main]

use ferrocast_edge::Secret;
use ferrocast_edge::edge_token::{
    EdgeKeyConfig, EdgeTokenConfig, EdgeTokens, SessionId, SessionLimit,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tokens) = EdgeTokens::new(&EdgeTokenConfig {
        keys: vec![EdgeKeyConfig {
            kid: 7,
            secret: Secret::new("fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-fuzz"),
        }],
        session_ttl_secs: 3600,
        media_ttl_secs: 60,
        session_limit: SessionLimit::JwtExpiry,
    }) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    // Nothing unsigned verifies (a 2^-128 chance aside).
    assert!(tokens.verify(&text, "stream", 0).is_err());

    // Round trip: stream | session, expiry from the first bytes.
    let (head, rest) = data.split_at(data.len().min(8));
    let mut expiry = [0u8; 8];
    expiry[..head.len()].copy_from_slice(head);
    let expiry = u64::from_le_bytes(expiry).max(1);
    let rest = String::from_utf8_lossy(rest);
    let (stream, session) = rest.split_once('|').unwrap_or((&rest, ""));
    let session = SessionId::new(session).ok();
    let token = tokens.sign(stream, expiry, session.as_ref());
    let claims = tokens
        .verify(&token, stream, expiry - 1)
        .expect("a fresh token verifies");
    assert_eq!(claims.expires_at, expiry);
    assert_eq!(claims.session, session);
    assert!(tokens.verify(&token, &format!("{stream}/"), 0).is_err());
});
