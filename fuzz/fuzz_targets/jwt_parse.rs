//! Viewer JWT verification on arbitrary text: an error, never a panic.
#![no_main]

use ferrocast_edge::Secret;
use ferrocast_edge::jwt::{JwtAlgorithm, JwtConfig, JwtKeyConfig, JwtVerifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(verifier) = JwtVerifier::new(&JwtConfig {
        audience: "ferrocast".into(),
        issuer: None,
        leeway_secs: 30,
        keys: vec![JwtKeyConfig {
            kid: "k".into(),
            algorithm: JwtAlgorithm::HS256,
            secret: Some(Secret::new("fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-fuzz")),
            public_key_pem: None,
        }],
    }) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    assert!(verifier.verify(&text, "stream", 1_750_000_000).is_err());
});
