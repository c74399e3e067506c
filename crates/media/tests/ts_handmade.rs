//! The demuxer on hand-made transport streams: chunking invariance, damaged
//! input, PSI changes and the 33-bit timestamp wrap.

mod common;

use common::*;
use ferrocast_media::ts::{DemuxEvent, DemuxWarning, Demuxer};
use ferrocast_media::{CodecParams, Time90k, TrackId, TrackKind};

#[test]
fn demuxes_video_and_audio() {
    let events = demux(&av_stream(20, 900_000));
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    // Track events come first for each track, before its units.
    let first_video = events
        .iter()
        .position(|e| matches!(e, DemuxEvent::Unit(u) if u.kind == TrackKind::Video))
        .unwrap();
    assert!(matches!(&events[first_video - 1], DemuxEvent::Track(t)
        if t.id == TrackId(VIDEO_PID)
        && matches!(&t.params, CodecParams::H264(p)
            if p.codec_string() == "avc1.640020" && (p.width, p.height) == (1280, 720)
            && p.frame_rate == Some((50, 1)) && p.pps[..] == PPS)));
    let tracks = events
        .iter()
        .filter(|e| matches!(e, DemuxEvent::Track(_)))
        .count();
    assert_eq!(tracks, 2, "each track announced once");

    let all = units(&events);
    let video: Vec<_> = all.iter().filter(|u| u.kind == TrackKind::Video).collect();
    assert_eq!(video.len(), 20);
    for (i, u) in video.iter().enumerate() {
        assert_eq!(u.pts, Time90k(900_000 + i as i64 * 3600));
        assert_eq!(u.keyframe, i % 10 == 0);
        assert_eq!(&u.data[..], &h264_au(i % 10 == 0, 300 + (i * 37) % 500)[..]);
    }

    let audio: Vec<_> = all.iter().filter(|u| u.kind == TrackKind::Audio).collect();
    assert_eq!(audio.len(), 30);
    for (i, u) in audio.iter().enumerate() {
        let (pes, k) = (i / 3, i % 3);
        // 1024 samples at 48 kHz are 1920 ticks exactly.
        assert_eq!(
            u.pts,
            Time90k(900_000 + pes as i64 * 7200 + k as i64 * 1920)
        );
        assert_eq!(u.dts, u.pts);
        assert!(u.keyframe);
        assert_eq!(&u.data[..], &adts_frame(20 + k)[7..], "header stripped");
    }
}

#[test]
fn chunking_invariance_every_split_and_byte_by_byte() {
    let data = av_stream(6, 1000);
    let whole = demux(&data);
    assert!(units(&whole).len() > 10);
    for at in 0..=data.len() {
        assert_eq!(demux_split(&data, at), whole, "split at {at}");
    }
    assert_eq!(demux_chunks(&data, &[1]), whole);
    assert_eq!(demux_chunks(&data, &[187, 189, 1, 376, 5]), whole);
}

#[test]
fn chunking_invariance_with_garbage() {
    let clean = av_stream(4, 1000);
    let mut data = vec![0x47, 0x00, 0x47, 0x12, 0x47];
    data.extend_from_slice(&clean[..188 * 5 + 17]);
    data.extend_from_slice(&[0x47; 3]);
    data.extend_from_slice(&clean[188 * 6..]);
    data.extend_from_slice(&[0x47, 1, 2]);
    let whole = demux(&data);
    for at in 0..=data.len() {
        assert_eq!(demux_split(&data, at), whole, "split at {at}");
    }
    assert_eq!(demux_chunks(&data, &[1]), whole);
}

#[test]
fn bounded_pes_goes_out_with_its_last_packet() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x0f, AUDIO_PID, &[])]);
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    demux.push(&w.out, &mut out);
    w.out.clear();
    // The first packet seen is only trusted once a second one follows.
    w.pes(AUDIO_PID, 0xc0, 9000, None, &adts_frame(400), true);
    let packets = w.out.len() / PACKET;
    assert_eq!(packets, 3);
    demux.push(&w.out[..2 * PACKET], &mut out);
    assert!(units(&out).is_empty());
    demux.push(&w.out[2 * PACKET..], &mut out);
    assert_eq!(units(&out).len(), 1, "no waiting for the next packet");
}

#[test]
fn garbage_before_and_inside_resyncs() {
    let clean = av_stream(10, 0);
    let mut data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 256) as u8).collect();
    let garbage_a = data.len();
    data.extend_from_slice(&clean[..188 * 20]);
    data.extend((0..333u32).map(|i| (i * 17 % 256) as u8 & 0x3f));
    data.extend_from_slice(&clean[188 * 20..]);
    let events = demux(&data);
    let resyncs: Vec<usize> = warnings(&events)
        .iter()
        .filter_map(|w| match w {
            DemuxWarning::Resync { bytes } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert_eq!(resyncs, vec![garbage_a, 333]);
    let clean_units = units(&demux(&clean)).len();
    // Leading garbage costs nothing. Garbage after a packet makes that
    // packet suspect (the demuxer cannot tell insertion after it from damage
    // inside it), so the one PES it belonged to is dropped.
    assert_eq!(units(&events).len(), clean_units - 1);
}

#[test]
fn garbage_inside_a_packet_costs_that_pes_only() {
    let clean = av_stream(10, 0);
    let mut data = clean[..188 * 20 + 50].to_vec();
    data.extend_from_slice(&[0xde; 10]);
    data.extend_from_slice(&clean[188 * 20 + 50..]);
    let events = demux(&data);
    let w = warnings(&events);
    assert!(
        w.iter().any(|w| matches!(w, DemuxWarning::Resync { .. })),
        "{w:?}"
    );
    let all = units(&events).len();
    let clean_units = units(&demux(&clean)).len();
    assert!(
        all < clean_units && all >= clean_units - 2,
        "{all} of {clean_units}"
    );
}

#[test]
fn truncated_stream() {
    let clean = av_stream(5, 0);
    let events = demux(&clean[..clean.len() - 100]);
    assert!(
        warnings(&events).contains(&&DemuxWarning::TruncatedPacket { bytes: 88 }),
        "{:?}",
        warnings(&events)
    );
    // Everything before the cut still comes out (the last video PES ends
    // at finish(), the last audio PES is cut short and reported).
    assert!(units(&events).len() >= 5);
    // Cut everywhere: never a panic, never an unannounced track.
    for len in (0..clean.len()).step_by(97) {
        let events = demux(&clean[..len]);
        let mut announced = std::collections::HashSet::new();
        for e in &events {
            match e {
                DemuxEvent::Track(t) => {
                    announced.insert(t.id);
                }
                DemuxEvent::Unit(u) => assert!(announced.contains(&u.track)),
                _ => {}
            }
        }
    }
}

#[test]
fn continuity_gap_drops_the_pes_and_warns() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x1b, VIDEO_PID, &[])]);
    w.pes(VIDEO_PID, 0xe0, 0, None, &h264_au(true, 100), false);
    w.pes(VIDEO_PID, 0xe0, 3600, None, &h264_au(false, 400), false);
    let before_gap = w.out.len();
    w.pes(VIDEO_PID, 0xe0, 7200, None, &h264_au(false, 100), false);
    w.pes(VIDEO_PID, 0xe0, 10800, None, &h264_au(false, 100), false);
    // Remove the second packet of the 3600 PES: its continuation is lost.
    let mut data = w.out.clone();
    let lost = before_gap - PACKET;
    data.drain(lost..lost + PACKET);
    let events = demux(&data);
    let pts: Vec<i64> = units(&events).iter().map(|u| u.pts.0).collect();
    assert_eq!(pts, vec![0, 7200, 10800]);
    assert!(
        warnings(&events)
            .iter()
            .any(|w| matches!(w, DemuxWarning::Continuity { pid: VIDEO_PID, .. }))
    );
}

#[test]
fn duplicate_packet_is_ignored() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x1b, VIDEO_PID, &[])]);
    w.pes(VIDEO_PID, 0xe0, 0, None, &h264_au(true, 400), false);
    let dup_at = w.out.len() - PACKET;
    w.pes(VIDEO_PID, 0xe0, 3600, None, &h264_au(false, 10), false);
    let mut data = w.out.clone();
    let dup = data[dup_at..dup_at + PACKET].to_vec();
    data.splice(dup_at..dup_at, dup);
    let events = demux(&data);
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    let u = units(&events);
    assert_eq!(u.len(), 2);
    assert_eq!(&u[0].data[..], &h264_au(true, 400)[..]);
}

#[test]
fn unsupported_codecs_are_reported_once() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    let ac3_desc: &[u8] = &[0x05, 0x04, b'A', b'C', b'-', b'3'];
    let streams: [(u8, u16, &[u8]); 5] = [
        (0x33, 0x100, &[]),
        (0x02, 0x101, &[]),
        (0x06, 0x102, ac3_desc),
        (0x06, 0x103, &[]),
        (0x32, 0x104, &[]),
    ];
    for _ in 0..3 {
        w.pmt(PMT_PID, 0, &streams);
        w.packet(0x100, true, &[0; 184]);
    }
    let events = demux(&w.out);
    assert_eq!(
        events,
        vec![
            DemuxEvent::Unsupported {
                pid: 0x100,
                stream_type: 0x33,
                codec: "VVC"
            },
            DemuxEvent::Unsupported {
                pid: 0x101,
                stream_type: 0x02,
                codec: "MPEG-2 video"
            },
            DemuxEvent::Unsupported {
                pid: 0x102,
                stream_type: 0x06,
                codec: "AC-3"
            },
            DemuxEvent::Unsupported {
                pid: 0x104,
                stream_type: 0x32,
                codec: "JPEG XS"
            },
        ]
    );
}

#[test]
fn pmt_spanning_packets_and_version_change() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    // 60 bytes of descriptors per stream push the section past one packet.
    let desc: Vec<u8> = [0x0a, 58].into_iter().chain([b'e'; 58]).collect();
    let streams: [(u8, u16, &[u8]); 4] = [
        (0x1b, VIDEO_PID, &desc),
        (0x03, 0x200, &desc),
        (0x04, 0x201, &desc),
        (0x81, 0x202, &desc),
    ];
    assert!(pmt_section(0, &streams).len() > 184);
    w.pmt(PMT_PID, 0, &streams);
    w.pes(VIDEO_PID, 0xe0, 0, None, &h264_au(true, 10), false);
    w.pes(AUDIO_PID, 0xc0, 0, None, &adts_frame(10), true); // not yet in the PMT
    // Version 1 adds the audio stream.
    let streams_v1: [(u8, u16, &[u8]); 2] = [(0x1b, VIDEO_PID, &desc), (0x0f, AUDIO_PID, &[])];
    w.pmt(PMT_PID, 1, &streams_v1);
    w.pes(AUDIO_PID, 0xc0, 1800, None, &adts_frame(10), true);
    w.pes(VIDEO_PID, 0xe0, 3600, None, &h264_au(false, 10), false);
    let events = demux(&w.out);
    let unsupported = events
        .iter()
        .filter(|e| matches!(e, DemuxEvent::Unsupported { .. }))
        .count();
    assert_eq!(unsupported, 3);
    let kinds: Vec<(TrackKind, i64)> = units(&events).iter().map(|u| (u.kind, u.pts.0)).collect();
    assert_eq!(
        kinds,
        // A video PES (PES_packet_length 0) ends at the next one, so the
        // bounded audio PES overtakes it.
        vec![
            (TrackKind::Audio, 1800),
            (TrackKind::Video, 0),
            (TrackKind::Video, 3600)
        ]
    );
}

#[test]
fn bad_crc_section_is_ignored_with_warning() {
    let mut w = TsWriter::new();
    let mut pat = section(0x00, 1, 0, &[0x00, 0x01, 0xf0, 0x00]);
    pat[9] ^= 0x01;
    w.psi(0, &pat);
    w.pmt(PMT_PID, 0, &[(0x1b, VIDEO_PID, &[])]);
    w.pes(VIDEO_PID, 0xe0, 0, None, &h264_au(true, 10), false);
    let events = demux(&w.out);
    assert!(units(&events).is_empty());
    assert!(matches!(
        warnings(&events)[..],
        [DemuxWarning::BadSection { pid: 0, .. }]
    ));
}

#[test]
fn video_waits_for_parameters_and_keyframe() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x1b, VIDEO_PID, &[])]);
    // Joining mid-GOP: two P frames, then the IDR with SPS/PPS.
    w.pes(VIDEO_PID, 0xe0, 0, None, &h264_au(false, 10), false);
    w.pes(VIDEO_PID, 0xe0, 3600, None, &h264_au(false, 10), false);
    w.pes(VIDEO_PID, 0xe0, 7200, None, &h264_au(true, 10), false);
    w.pes(VIDEO_PID, 0xe0, 10800, None, &h264_au(false, 10), false);
    w.pes(VIDEO_PID, 0xe0, 14400, None, &h264_au(true, 10), false);
    let events = demux(&w.out);
    assert!(matches!(events[0], DemuxEvent::Track(_)));
    let pts: Vec<i64> = units(&events).iter().map(|u| u.pts.0).collect();
    assert_eq!(pts, vec![7200, 10800, 14400]);
    // The repeated, identical SPS/PPS is not announced again.
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, DemuxEvent::Track(_)))
            .count(),
        1
    );
}

#[test]
fn timestamps_extend_across_the_33_bit_wrap() {
    let wrap = 1i64 << 33;
    let start = (wrap - 20 * 3600) as u64;
    let events = demux(&av_stream(40, start));
    let video: Vec<i64> = units(&events)
        .iter()
        .filter(|u| u.kind == TrackKind::Video)
        .map(|u| u.pts.0)
        .collect();
    assert_eq!(video.len(), 40);
    for (i, pts) in video.iter().enumerate() {
        assert_eq!(*pts, start as i64 + i as i64 * 3600);
    }
    assert!(video.last().copied().unwrap() > wrap);
    let audio: Vec<i64> = units(&events)
        .iter()
        .filter(|u| u.kind == TrackKind::Audio)
        .map(|u| u.pts.0)
        .collect();
    assert!(
        audio.windows(2).all(|w| w[0] < w[1]),
        "monotonic across the wrap"
    );
    assert!(audio.last().copied().unwrap() > wrap);
}

#[test]
fn audio_and_video_straddling_the_wrap_share_one_timeline() {
    // Audio starts just before the wrap, video just after: one clock per
    // program keeps them 0.2 s apart, not 26.5 hours.
    let wrap = 1u64 << 33;
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(
        PMT_PID,
        0,
        &[(0x1b, VIDEO_PID, &[]), (0x0f, AUDIO_PID, &[])],
    );
    w.pes(AUDIO_PID, 0xc0, wrap - 9000, None, &adts_frame(10), true);
    w.pes(VIDEO_PID, 0xe0, 9000, None, &h264_au(true, 10), false);
    let events = demux(&w.out);
    let pts: Vec<i64> = units(&events).iter().map(|u| u.pts.0).collect();
    assert_eq!(pts, vec![wrap as i64 - 9000, wrap as i64 + 9000]);
}

#[test]
fn adts_problems_are_warnings() {
    let mut w = TsWriter::new();
    w.pat(PMT_PID);
    w.pmt(PMT_PID, 0, &[(0x0f, AUDIO_PID, &[])]);
    let mut payload = adts_frame(30);
    payload.extend_from_slice(&adts_frame(30)[..20]); // partial trailing frame
    w.pes(AUDIO_PID, 0xc0, 0, None, &payload, true);
    let mut bad = adts_frame(30);
    bad[2] |= 0x3c; // sampling_frequency_index 15
    w.pes(AUDIO_PID, 0xc0, 1920, None, &bad, true);
    let events = demux(&w.out);
    assert_eq!(units(&events).len(), 1);
    let w = warnings(&events);
    assert!(matches!(
        w[..],
        [
            DemuxWarning::TruncatedAdts {
                pid: AUDIO_PID,
                bytes: 20
            },
            DemuxWarning::BadAdts { .. }
        ]
    ));
}
