//! What the edge makes of a recording request: its path (`/vod/NAME/ID/…`
//! and `/live/…`, read by `route_of`) and its `Range` header against an
//! object of some length. Arbitrary input never panics; an accepted path
//! names a valid stream and nothing outside the grammar (no `..`, no
//! percent-encoding, only playlists and media files); a range served is
//! inside the object.
#![no_main]

use ferrocast_edge::server::range::{RangeAnswer, answer};
use ferrocast_edge::server::route_of;
use ferrocast_media::StreamName;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    path: &'a str,
    range: Option<&'a str>,
    len: u64,
}

fuzz_target!(|request: Request<'_>| {
    if let Some((route, stream)) = route_of(request.path) {
        assert!(StreamName::new(stream).is_ok(), "{stream:?}");
        assert!(!request.path.contains("..") && !request.path.contains('%'));
        if let Some(rest) = request.path.strip_prefix("/vod/") {
            assert!(route.starts_with("vod_"), "{route}");
            let last = rest.rsplit('/').next().unwrap_or_default();
            assert!(
                last == "index.m3u8" || last.ends_with(".m4s") || last.ends_with(".mp4"),
                "{rest}"
            );
            assert!(rest.split('/').count() <= 4, "{rest}");
        } else {
            assert!(request.path.starts_with("/live/"), "{}", request.path);
        }
    }
    match answer(request.range, request.len) {
        RangeAnswer::Part { start, end } => {
            assert!(start <= end && end < request.len, "{start}-{end}/{}", request.len);
        }
        RangeAnswer::Unsatisfiable => assert!(request.range.is_some()),
        RangeAnswer::Whole => {}
    }
});
