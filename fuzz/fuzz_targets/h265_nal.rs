//! H.265 NAL headers, IRAP detection, SPS parsing and parameter-set
//! extraction on arbitrary bytes: errors, never panics.
#![no_main]

use ferrocast_media::h265::{
    is_keyframe, nal_unit_type, nal_units, nuh_layer_id, params_from_access_unit, parse_sps,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for nal in nal_units(data) {
        let _ = (nal_unit_type(nal), nuh_layer_id(nal));
        if let Ok(sps) = parse_sps(nal) {
            assert!(sps.width > 0 && sps.width <= sps.coded_width);
            assert!(sps.height > 0 && sps.height <= sps.coded_height);
        }
    }
    let _ = parse_sps(data);
    let _ = is_keyframe(data);
    if let Some(Ok(params)) = params_from_access_unit(data) {
        let _ = params.codec_string();
    }
});
