//! Property tests for the AV1 parsers: arbitrary bytes never panic, leb128
//! and the MPEG-TS start-code framing round-trip.

use ferrocast_media::av1::{
    Av1Params, frame_start, is_random_access_point, obus, params_from_temporal_unit,
    parse_sequence_header, read_leb128, temporal_unit_from_ts, temporal_unit_to_ts, write_leb128,
};
use proptest::prelude::*;

/// Sized OBUs of any type but 0, with arbitrary payloads (a temporal unit
/// as Ferrocast carries it), optionally with extension headers.
fn sized_obus() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            1u8..16,
            prop::option::of((0u8..8, 0u8..4)),
            prop::collection::vec(any::<u8>(), 0..300),
        ),
        1..8,
    )
    .prop_map(|obus| {
        let mut out = Vec::new();
        for (ty, ext, payload) in obus {
            out.push((ty << 3) | (u8::from(ext.is_some()) << 2) | 0x02);
            if let Some((t, s)) = ext {
                out.push((t << 5) | (s << 3));
            }
            write_leb128(payload.len() as u32, &mut out);
            out.extend_from_slice(&payload);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn leb128_round_trips(value in any::<u32>(), padding in 0usize..3) {
        let mut out = Vec::new();
        write_leb128(value, &mut out);
        prop_assert!(out.len() <= 5);
        prop_assert_eq!(read_leb128(&out), Ok((value, out.len())));
        // A padded encoding (up to 8 bytes) means the same value.
        if out.len() + padding <= 8 {
            let mut padded = out.clone();
            let last = padded.len() - 1;
            padded[last] |= 0x80;
            padded.extend(std::iter::repeat_n(0x80, padding));
            padded.push(0);
            prop_assert_eq!(read_leb128(&padded), Ok((value, padded.len())));
        }
    }

    #[test]
    fn any_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut end = 0;
        for obu in obus(&data) {
            match obu {
                Ok(o) => {
                    prop_assert_eq!(o.offset, end);
                    end = o.offset + o.bytes.len();
                    prop_assert!(end <= data.len());
                }
                Err(_) => break,
            }
        }
        let _ = read_leb128(&data);
        let _ = parse_sequence_header(&data);
        let _ = frame_start(&data, false);
        let _ = is_random_access_point(&data);
        let _ = Av1Params::from_sequence_header_obu(&data);
        if let Some(Ok(p)) = params_from_temporal_unit(&data) {
            let _ = (p.codec_string(), p.configuration_record());
        }
        if let Ok(tu) = temporal_unit_from_ts(&data) {
            // Whatever came in, what comes out is sized OBUs end to end.
            prop_assert!(obus(&tu).all(|o| o.is_ok_and(|o| o.header.has_size_field)));
        }
    }

    #[test]
    fn ts_framing_round_trips(tu in sized_obus()) {
        let framed = temporal_unit_to_ts(&tu).unwrap();
        // No start code emulation inside: exactly one start code per OBU.
        let starts = framed.windows(3).filter(|w| *w == [0, 0, 1]).count();
        prop_assert_eq!(starts, obus(&tu).count());
        prop_assert_eq!(temporal_unit_from_ts(&framed).unwrap(), tu);
    }
}
