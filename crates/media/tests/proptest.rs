//! Property tests: arbitrary input never panics, memory stays bounded, and
//! chunking never changes the result.

mod common;

use common::*;
use ferrocast_media::aac::parse_adts;
use ferrocast_media::h264::{is_keyframe, nal_units, params_from_access_unit, parse_sps};
use ferrocast_media::h265;
use ferrocast_media::ts::{Demuxer, MAX_PES_SIZE, MAX_STREAMS};
use proptest::prelude::*;

/// libx265's SPS for 320x240 Main at 25 fps.
const H265_SPS: [u8; 43] = [
    0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
    0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00,
    0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10, 0x00,
];

/// What the demuxer may hold: a full PES per stream plus small change.
const BOUND: usize = MAX_STREAMS * MAX_PES_SIZE + 64 * 1024;

/// Packets on the PIDs a small valid stream uses, with random header bits
/// and payloads, after a valid PAT/PMT: reaches PES and PSI code that random
/// bytes never find.
fn packet_soup() -> impl Strategy<Value = Vec<u8>> {
    let packet = (
        prop::sample::select(vec![0u16, PMT_PID, VIDEO_PID, AUDIO_PID, 0x1fff]),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..=184),
        any::<bool>(),
    );
    prop::collection::vec(packet, 0..60).prop_map(|packets| {
        let mut w = TsWriter::new();
        w.pat(PMT_PID);
        w.pmt(
            PMT_PID,
            0,
            &[(0x1b, VIDEO_PID, &[]), (0x0f, AUDIO_PID, &[])],
        );
        for (pid, bits, mut payload, pes_start) in packets {
            if pes_start && pid >= VIDEO_PID && payload.len() >= 9 {
                payload[..4].copy_from_slice(&[0, 0, 1, 0xe0]);
            }
            w.raw_packet(pid, bits & 0x40 != 0, bits & 0x0f, &payload);
        }
        w.out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn demuxer_survives_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..400) {
        let mut demux = Demuxer::new();
        let mut out = Vec::new();
        for piece in data.chunks(chunk) {
            demux.push(piece, &mut out);
            prop_assert!(demux.buffered_bytes() <= BOUND);
        }
        demux.finish(&mut out);
        prop_assert_eq!(demux.buffered_bytes(), 0);
    }

    #[test]
    fn demuxer_survives_packet_soup(data in packet_soup(), at in any::<prop::sample::Index>()) {
        let whole = demux(&data);
        let split = demux_split(&data, at.index(data.len() + 1));
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(demux_chunks(&data, &[1, 200, 13]), whole);
    }

    #[test]
    fn valid_stream_with_noise_keeps_chunking_invariance(
        noise in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..40)), 0..4),
        at in any::<prop::sample::Index>(),
    ) {
        let mut data = av_stream(8, 5000);
        for (pos, bytes) in noise {
            let p = pos.index(data.len());
            data.splice(p..p, bytes);
        }
        let whole = demux(&data);
        prop_assert_eq!(demux_split(&data, at.index(data.len() + 1)), whole);
    }

    #[test]
    fn sps_parser_never_panics(mut nal in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_sps(&nal);
        if let Some(h) = nal.first_mut() {
            *h = 0x67;
        }
        let _ = parse_sps(&nal);
        // Also from a real SPS with a corrupted tail.
        let mut sps = SPS.to_vec();
        let cut = nal.len().min(sps.len() - 4);
        sps.truncate(sps.len() - cut);
        sps.extend_from_slice(&nal);
        let _ = parse_sps(&sps);
    }

    #[test]
    fn h265_sps_parser_never_panics(mut nal in prop::collection::vec(any::<u8>(), 0..96)) {
        let _ = h265::parse_sps(&nal);
        if nal.len() >= 2 {
            // An SPS header on layer 0, so the parser goes past the header.
            nal[0] = 0x42;
            nal[1] = 0x01;
        }
        if let Ok(sps) = h265::parse_sps(&nal) {
            prop_assert!(sps.width > 0 && sps.width <= sps.coded_width);
            prop_assert!(sps.height > 0 && sps.height <= sps.coded_height);
        }
        // Also from a real libx265 SPS with a corrupted tail.
        let mut sps = H265_SPS.to_vec();
        let cut = nal.len().min(sps.len() - 4);
        sps.truncate(sps.len() - cut);
        sps.extend_from_slice(&nal);
        let _ = h265::parse_sps(&sps);
    }

    #[test]
    fn h265_annexb_helpers_never_panic(data in prop::collection::vec(prop::sample::select(vec![0u8, 1, 3, 0x26, 0x40, 0x42, 0x44, 0x2a, 0xff]), 0..200)) {
        let _ = h265::is_keyframe(&data);
        if let Some(Ok(p)) = h265::params_from_access_unit(&data) {
            let _ = p.codec_string();
        }
    }

    #[test]
    fn annexb_helpers_never_panic(data in prop::collection::vec(prop::sample::select(vec![0u8, 1, 3, 0x65, 0x67, 0x68, 0xff]), 0..200)) {
        let _ = nal_units(&data).count();
        let _ = is_keyframe(&data);
        let _ = params_from_access_unit(&data);
    }

    #[test]
    fn adts_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..16)) {
        if let Ok(h) = parse_adts(&data) {
            prop_assert!(h.frame_length >= h.header_len);
            prop_assert!(h.header_len <= data.len());
            let _ = h.params();
        }
        let mut adts = data.clone();
        if adts.len() >= 2 {
            adts[0] = 0xff;
            adts[1] |= 0xf0;
            let _ = parse_adts(&adts);
        }
    }
}

#[test]
fn oversized_pes_is_dropped_and_memory_bounded() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x1b, VIDEO_PID, &[])]);
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    demux.push(&w.out, &mut out);
    w.out.clear();
    w.pes(VIDEO_PID, 0xe0, 0, None, &h264_au(true, 10), false);
    let chunk = [0x11u8; 184];
    let mut max = 0;
    for _ in 0..(MAX_PES_SIZE / 184 + 100) {
        w.packet(VIDEO_PID, false, &chunk);
        demux.push(&w.out, &mut out);
        w.out.clear();
        max = max.max(demux.buffered_bytes());
    }
    assert!(max <= MAX_PES_SIZE + 2 * PACKET);
    assert!(
        warnings(&out)
            .iter()
            .any(|w| matches!(w, ferrocast_media::ts::DemuxWarning::PesTooLarge { .. }))
    );
    assert!(units(&out).is_empty());
}
