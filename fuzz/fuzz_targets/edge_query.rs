//! What the edge makes of a request's path and query before anything goes
//! upstream: the token parameter it checks and the normalised Delivery
//! Directives that form the coalescing cache key. Arbitrary input never
//! panics; a normalised query normalises to itself (one spelling, one
//! cache entry) and carries nothing but `_HLS_msn`, `_HLS_part` and
//! `_HLS_skip`.
#![no_main]

use ferrocast_edge::coalesce::normalize_query;
use ferrocast_edge::edge_token::query_param;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    /// Which kind of path, or an arbitrary one.
    kind: u8,
    path: &'a str,
    query: Option<&'a str>,
}

fuzz_target!(|request: Request<'_>| {
    let path = match request.kind % 6 {
        0 => "/live/cam/stream.m3u8",
        1 => "/live/cam/index.m3u8",
        2 => "/live/cam/part3.1.m4s",
        3 => "/live/cam/seg3.m4s",
        4 => "/live/cam/720p/stream.m3u8",
        _ => request.path,
    };
    if let Some(query) = request.query {
        let _ = query_param(query, "token");
    }
    if let Ok(Some(normalised)) = normalize_query(path, request.query) {
        assert_eq!(
            normalize_query(path, Some(&normalised)),
            Ok(Some(normalised.clone())),
            "one spelling"
        );
        for pair in normalised.split('&') {
            let key = pair.split('=').next().unwrap_or("");
            assert!(matches!(key, "_HLS_msn" | "_HLS_part" | "_HLS_skip"), "{normalised}");
        }
    }
});
