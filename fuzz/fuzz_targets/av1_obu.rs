//! AV1 OBU framing, sequence headers, random access detection, parameters
//! and the MPEG-TS start-code framing on arbitrary bytes: errors, never
//! panics; what unframes re-frames to the same OBUs.
#![no_main]

use ferrocast_media::av1::{
    Av1Params, frame_start, is_random_access_point, obus, params_from_temporal_unit,
    parse_sequence_header, read_leb128, temporal_unit_from_ts, temporal_unit_to_ts,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for obu in obus(data) {
        let Ok(obu) = obu else { break };
        assert!(obu.offset + obu.bytes.len() <= data.len());
        let _ = parse_sequence_header(obu.payload);
        let _ = frame_start(obu.payload, false);
    }
    let _ = read_leb128(data);
    let _ = is_random_access_point(data);
    if let Ok(p) = Av1Params::from_sequence_header_obu(data) {
        let _ = (p.codec_string(), p.configuration_record());
    }
    if let Some(Ok(p)) = params_from_temporal_unit(data) {
        assert!(p.width > 0 && p.height > 0);
    }
    if let Ok(tu) = temporal_unit_from_ts(data) {
        let framed = temporal_unit_to_ts(&tu).expect("sized OBUs re-frame");
        assert_eq!(temporal_unit_from_ts(&framed).expect("round trip"), tu);
    }
});
