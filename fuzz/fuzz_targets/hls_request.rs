//! What the origin and the edge parse from a request URL: the resource name
//! (`partM.I.m4s`, `segM.m4s`, `initN.mp4`), the rendition name and the
//! Delivery Directives of the query. Arbitrary text never panics; whatever
//! is accepted has one spelling (it is written back the same way).
#![no_main]

use ferrocast_hls::{PlaylistRequest, RenditionName, ResourceName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = ResourceName::parse(text) {
        let canonical = match name {
            ResourceName::Part(part) => format!("part{}.{}.m4s", part.msn, part.index),
            ResourceName::Segment { msn } => format!("seg{msn}.m4s"),
            ResourceName::Init { generation } => format!("init{generation}.mp4"),
        };
        assert_eq!(canonical, text, "a resource name has one spelling");
    }
    if let Ok(rendition) = RenditionName::new(text) {
        assert_eq!(rendition.as_str(), text);
        assert!(!text.contains(['/', '\\']) && !text.starts_with('.'));
    }
    if let Ok(request) = PlaylistRequest::from_query(text) {
        // `_HLS_part` is only ever accepted with `_HLS_msn`.
        if request.block.is_none() {
            assert!(!text.split('&').any(|p| p.split('=').next() == Some("_HLS_part")));
        }
    }
});
