//! `write_fragment` output, read back by a small strict box walker
//! (tests/common) and by `mp4-atom` in strict mode.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{ParsedSample, parse_chunk};
use ferrocast_cmaf::{CmafError, Sample, TrackFragment, write_fragment};
use mp4_atom::{Decode, Moof};
use proptest::prelude::*;

fn sample(duration: u32, cto: i32, keyframe: bool, data: &[u8]) -> Sample {
    Sample {
        duration,
        composition_offset: cto,
        keyframe,
        data: Bytes::copy_from_slice(data),
    }
}

/// ISO/IEC 14496-12 §8.8.3.1 sample flags as CMAF players read them.
const SYNC: u32 = 0x0200_0000;
const NON_SYNC: u32 = 0x0101_0000;

fn video_and_audio() -> Vec<TrackFragment> {
    vec![
        TrackFragment {
            track_id: 1,
            base_media_decode_time: 900_000,
            samples: vec![
                sample(3600, 7200, true, b"IDR-frame"),
                sample(3600, -3600, false, b"B"),
            ],
        },
        // Empty: no traf for it.
        TrackFragment {
            track_id: 3,
            base_media_decode_time: 5,
            samples: vec![],
        },
        TrackFragment {
            track_id: 2,
            base_media_decode_time: 480_000,
            samples: vec![
                sample(1024, 0, true, b"aac0"),
                sample(1024, 0, true, b"aac-1"),
                sample(1024, 0, true, b""),
            ],
        },
    ]
}

#[test]
fn sizes_add_up_and_data_offsets_point_at_each_trafs_first_sample() {
    let out = write_fragment(42, &video_and_audio()).unwrap();
    // parse_chunk checks every box size, the trun sizes, that data_offset
    // points exactly at where the traf's samples start in mdat, and that the
    // samples tile mdat.
    let chunk = parse_chunk(&out).unwrap();
    assert_eq!(chunk.sequence_number, 42);
    assert_eq!(chunk.trafs.len(), 2, "empty track fragment must be skipped");

    let v = &chunk.trafs[0];
    assert_eq!((v.track_id, v.tfdt), (1, 900_000));
    assert_eq!(v.tfhd_flags, 0x02_0000, "default-base-is-moof only");
    assert_eq!(v.trun_version, 1);
    assert_eq!(v.trun_flags, 0x000f01);
    assert_eq!(
        v.samples,
        vec![
            ParsedSample {
                duration: 3600,
                flags: SYNC,
                composition_offset: 7200,
                data: b"IDR-frame".to_vec()
            },
            ParsedSample {
                duration: 3600,
                flags: NON_SYNC,
                composition_offset: -3600,
                data: b"B".to_vec()
            },
        ]
    );
    let a = &chunk.trafs[1];
    assert_eq!((a.track_id, a.tfdt), (2, 480_000));
    // All composition offsets zero: the field is left out.
    assert_eq!(a.trun_flags, 0x000701);
    assert_eq!(
        a.samples.iter().map(|s| s.data.len()).collect::<Vec<_>>(),
        [4, 5, 0]
    );
    assert!(
        a.samples
            .iter()
            .all(|s| s.flags == SYNC && s.duration == 1024)
    );
    // The second traf's samples follow the first's in the same mdat.
    assert_eq!(a.data_offset, v.data_offset + 10);
}

#[test]
fn mp4_atom_strict_decodes_the_moof() {
    let out = write_fragment(7, &video_and_audio()).unwrap();
    let moof = Moof::decode(&mut &out[..]).unwrap();
    assert_eq!(moof.mfhd.sequence_number, 7);
    assert_eq!(moof.traf.len(), 2);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfhd.track_id, 1);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 900_000);
    let entries: Vec<_> = traf.trun[0].samples.iter().collect();
    assert_eq!(entries[0].cts, Some(7200));
    assert_eq!(entries[1].cts, Some(-3600));
    assert_eq!(entries[1].size, Some(1));
    // The mdat starts right after the moof.
    let moof_len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
    assert_eq!(&out[moof_len + 4..moof_len + 8], b"mdat");
    assert_eq!(
        traf.trun[0].data_offset,
        Some(i32::try_from(moof_len + 8).unwrap())
    );
}

#[test]
fn tfdt_continues_across_chunks() {
    // A video track with a B-frame pattern and an audio track, chunked one
    // video frame at a time as the packager does.
    let video_durations = [3600u32, 3600, 3603, 3597, 3600, 3600, 3600, 3601];
    let mut video_dts = 1_000_000u64;
    let mut audio_dts = 555u64;
    let mut expected = Vec::new();
    let mut chunks = Vec::new();
    for (seq, d) in (1u32..).zip(video_durations) {
        let audio: Vec<Sample> = (0..(seq % 3))
            .map(|_| sample(1024, 0, true, b"a"))
            .collect();
        let frags = vec![
            TrackFragment {
                track_id: 1,
                base_media_decode_time: video_dts,
                samples: vec![sample(d, 3600, seq == 1, b"v")],
            },
            TrackFragment {
                track_id: 2,
                base_media_decode_time: audio_dts,
                samples: audio.clone(),
            },
        ];
        expected.push((video_dts, (!audio.is_empty()).then_some(audio_dts)));
        video_dts += u64::from(d);
        audio_dts += 1024 * audio.len() as u64;
        chunks.push(write_fragment(seq, &frags).unwrap());
    }

    // Read back independently: each traf's tfdt equals the previous tfdt of
    // that track plus the sum of its sample durations.
    let mut next: [Option<u64>; 3] = [None; 3];
    for (i, chunk) in chunks.iter().enumerate() {
        let moof = Moof::decode(&mut &chunk[..]).unwrap();
        assert_eq!(moof.mfhd.sequence_number, i as u32 + 1);
        for traf in &moof.traf {
            let id = traf.tfhd.track_id as usize;
            let tfdt = traf.tfdt.as_ref().unwrap().base_media_decode_time;
            if let Some(want) = next[id] {
                assert_eq!(tfdt, want, "chunk {i} track {id}");
            }
            let sum: u64 = traf.trun[0]
                .samples
                .iter()
                .map(|e| u64::from(e.duration.unwrap()))
                .sum();
            next[id] = Some(tfdt + sum);
        }
        let parsed = parse_chunk(chunk).unwrap();
        assert_eq!(parsed.trafs[0].tfdt, expected[i].0);
        assert_eq!(parsed.trafs.get(1).map(|t| t.tfdt), expected[i].1);
    }
    assert_eq!(next[1], Some(video_dts));
    assert_eq!(next[2], Some(audio_dts));
}

#[test]
fn empty_and_invalid_inputs_are_errors() {
    assert_eq!(write_fragment(1, &[]), Err(CmafError::NoSamples));
    let empty = TrackFragment {
        track_id: 1,
        ..TrackFragment::default()
    };
    assert_eq!(write_fragment(1, &[empty]), Err(CmafError::NoSamples));
    let zero = TrackFragment {
        track_id: 0,
        base_media_decode_time: 0,
        samples: vec![sample(1, 0, true, b"x")],
    };
    assert_eq!(
        write_fragment(1, &[zero]),
        Err(CmafError::ZeroTrackId { index: 0 })
    );
}

#[derive(Debug, Clone)]
struct ArbSample {
    duration: u32,
    cto: i32,
    keyframe: bool,
    len: usize,
    fill: u8,
}

fn arb_sample() -> impl Strategy<Value = ArbSample> {
    (
        any::<u32>(),
        any::<i32>(),
        any::<bool>(),
        0usize..300,
        any::<u8>(),
    )
        .prop_map(|(duration, cto, keyframe, len, fill)| ArbSample {
            duration,
            cto,
            keyframe,
            len,
            fill,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary sample lists: write_fragment never panics, and both readers
    /// give back exactly the sizes, durations, flags and offsets written.
    #[test]
    fn arbitrary_samples_round_trip(
        seq in any::<u32>(),
        tracks in prop::collection::vec(
            (0u32..5, any::<u64>(), prop::collection::vec(arb_sample(), 0..20)),
            0..4,
        ),
    ) {
        let frags: Vec<TrackFragment> = tracks
            .iter()
            .map(|(id, bmdt, samples)| TrackFragment {
                track_id: *id,
                base_media_decode_time: *bmdt,
                samples: samples
                    .iter()
                    .map(|s| Sample {
                        duration: s.duration,
                        composition_offset: s.cto,
                        keyframe: s.keyframe,
                        data: Bytes::from(vec![s.fill; s.len]),
                    })
                    .collect(),
            })
            .collect();
        let nonempty: Vec<&TrackFragment> = frags.iter().filter(|f| !f.samples.is_empty()).collect();
        let result = write_fragment(seq, &frags);
        if nonempty.is_empty() {
            prop_assert_eq!(result, Err(CmafError::NoSamples));
            return Ok(());
        }
        if let Some(index) = frags.iter().position(|f| !f.samples.is_empty() && f.track_id == 0) {
            prop_assert_eq!(result, Err(CmafError::ZeroTrackId { index }));
            return Ok(());
        }
        let out = result.unwrap();
        let parsed = parse_chunk(&out).map_err(TestCaseError::fail)?;
        let moof = Moof::decode(&mut &out[..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.sequence_number, seq);
        prop_assert_eq!(moof.mfhd.sequence_number, seq);
        prop_assert_eq!(parsed.trafs.len(), nonempty.len());
        prop_assert_eq!(moof.traf.len(), nonempty.len());
        for ((want, got), atom) in nonempty.iter().zip(&parsed.trafs).zip(&moof.traf) {
            prop_assert_eq!(got.track_id, want.track_id);
            prop_assert_eq!(got.tfdt, want.base_media_decode_time);
            prop_assert_eq!(atom.tfdt.as_ref().map(|t| t.base_media_decode_time), Some(want.base_media_decode_time));
            prop_assert_eq!(got.samples.len(), want.samples.len());
            let entries: Vec<_> = atom.trun[0].samples.iter().collect();
            for ((w, g), e) in want.samples.iter().zip(&got.samples).zip(&entries) {
                prop_assert_eq!(g.duration, w.duration);
                prop_assert_eq!(g.composition_offset, w.composition_offset);
                prop_assert_eq!(g.flags, if w.keyframe { SYNC } else { NON_SYNC });
                prop_assert_eq!(&g.data[..], &w.data[..]);
                prop_assert_eq!(e.duration, Some(w.duration));
                prop_assert_eq!(e.size, Some(w.data.len() as u32));
                prop_assert_eq!(e.cts.unwrap_or(0), i64::from(w.composition_offset));
                prop_assert_eq!(e.flags, Some(g.flags));
            }
        }
    }
}
