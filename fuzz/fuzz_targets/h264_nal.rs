//! H.264 Annex-B splitting, SPS parsing and ADTS header parsing on
//! arbitrary bytes: errors, never panics.
#![no_main]

use ferrocast_media::aac::parse_adts;
use ferrocast_media::h264::{is_keyframe, nal_units, params_from_access_unit, parse_sps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for nal in nal_units(data) {
        let _ = parse_sps(nal);
    }
    let _ = parse_sps(data);
    let _ = is_keyframe(data);
    let _ = params_from_access_unit(data);
    if let Ok(header) = parse_adts(data) {
        assert!(header.frame_length >= header.header_len);
        let _ = header.params();
    }
});
