//! `write_init` output, read back by `mp4-atom` (strict) and the `mp4` crate.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use ferrocast_cmaf::{CmafError, VIDEO_TIMESCALE, track_timescale, write_init};
use ferrocast_media::{AacParams, CodecParams, H264Params, TrackId, TrackInfo};
use mp4_atom::{Codec, Decode, Ftyp, Moov};

/// SPS and PPS from x264 (High profile, level 1.3, 320x240), including an
/// emulation prevention byte.
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn video() -> TrackInfo {
    TrackInfo {
        id: TrackId(256),
        params: CodecParams::H264(H264Params {
            sps: Bytes::from_static(SPS),
            pps: Bytes::from_static(PPS),
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 13,
            width: 320,
            height: 240,
            frame_rate: Some((25, 1)),
        }),
    }
}

fn audio() -> TrackInfo {
    TrackInfo {
        id: TrackId(257),
        params: CodecParams::Aac(AacParams {
            asc: Bytes::from_static(&[0x11, 0x90]),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
        }),
    }
}

fn decode(init: &[u8]) -> (Ftyp, Moov) {
    // Both boxes must tile the init segment exactly.
    let top = common::children(init, 0, init.len()).unwrap();
    assert_eq!(top.len(), 2);
    let mut buf = init;
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty());
    (ftyp, moov)
}

#[test]
fn video_and_audio_init_decodes_strictly() {
    let init = write_init(&[video(), audio()]).unwrap();
    let (ftyp, moov) = decode(&init);
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert_eq!(ftyp.compatible_brands, vec![b"iso6".into(), b"mp41".into()]);
    assert_eq!(moov.mvhd.next_track_id, 3);
    assert_eq!(moov.trak.len(), 2);

    let v = &moov.trak[0];
    assert_eq!(v.tkhd.track_id, 1);
    assert!(v.tkhd.enabled && v.tkhd.in_movie);
    assert_eq!(
        (v.tkhd.width.integer(), v.tkhd.height.integer()),
        (320, 240)
    );
    assert_eq!(v.mdia.mdhd.timescale, VIDEO_TIMESCALE);
    assert_eq!(v.mdia.hdlr.handler, b"vide".into());
    let stbl = &v.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty() && stbl.stco.as_ref().unwrap().entries.is_empty());
    match &stbl.stsd.codecs[..] {
        [Codec::Avc1(avc1)] => {
            assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
            let avcc = &avc1.avcc;
            assert_eq!(
                (
                    avcc.avc_profile_indication,
                    avcc.profile_compatibility,
                    avcc.avc_level_indication
                ),
                (0x64, 0x00, 0x0d)
            );
            assert_eq!(avcc.length_size, 4);
            assert_eq!(avcc.sequence_parameter_sets, vec![SPS.to_vec()]);
            assert_eq!(avcc.picture_parameter_sets, vec![PPS.to_vec()]);
            // High profile: the record carries chroma format and bit depths
            // (ISO/IEC 14496-15 §5.3.3.1.2), parsed from the SPS.
            let ext = avcc.ext.as_ref().unwrap();
            assert_eq!(
                (ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma),
                (1, 8, 8)
            );
        }
        other => panic!("unexpected sample entries {other:?}"),
    }

    let a = &moov.trak[1];
    assert_eq!(a.tkhd.track_id, 2);
    assert_eq!(a.mdia.mdhd.timescale, 48_000);
    assert_eq!(a.mdia.hdlr.handler, b"soun".into());
    match &a.mdia.minf.stbl.stsd.codecs[..] {
        [Codec::Mp4a(mp4a)] => {
            assert_eq!(mp4a.audio.channel_count, 2);
            assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
            let dcd = &mp4a.esds.es_desc.dec_config;
            assert_eq!(dcd.object_type_indication, 0x40);
            assert_eq!(dcd.stream_type, 5);
            assert_eq!(dcd.dec_specific.as_ref().unwrap().profile, 2);
            assert_eq!(dcd.dec_specific.as_ref().unwrap().chan_conf, 2);
        }
        other => panic!("unexpected sample entries {other:?}"),
    }

    let mvex = moov.mvex.as_ref().unwrap();
    let ids: Vec<u32> = mvex.trex.iter().map(|t| t.track_id).collect();
    assert_eq!(ids, [1, 2]);
    assert!(
        mvex.trex
            .iter()
            .all(|t| t.default_sample_description_index == 1)
    );
}

#[test]
fn single_track_init_claims_cmaf_brand() {
    let init = write_init(&[audio()]).unwrap();
    let (ftyp, moov) = decode(&init);
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    assert_eq!(moov.trak.len(), 1);
    let init = write_init(&[video()]).unwrap();
    assert!(decode(&init).0.compatible_brands.contains(&b"cmfc".into()));
}

#[test]
fn mp4_crate_reads_the_init_segment() {
    let init = write_init(&[video(), audio()]).unwrap();
    let size = init.len() as u64;
    let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(init.to_vec()), size).unwrap();
    let mvex = reader.moov.mvex.as_ref().unwrap();
    assert_eq!(mvex.trex.track_id, 2, "mp4 0.14 keeps only the last trex");
    let v = reader.tracks().get(&1).unwrap();
    assert_eq!(v.track_type().unwrap(), mp4::TrackType::Video);
    assert_eq!(v.media_type().unwrap(), mp4::MediaType::H264);
    assert_eq!((v.width(), v.height()), (320, 240));
    assert_eq!(v.timescale(), 90_000);
    assert_eq!(v.sequence_parameter_set().unwrap(), SPS);
    assert_eq!(v.picture_parameter_set().unwrap(), PPS);
    let a = reader.tracks().get(&2).unwrap();
    assert_eq!(a.media_type().unwrap(), mp4::MediaType::AAC);
    assert_eq!(a.timescale(), 48_000);
    assert_eq!(a.sample_freq_index().unwrap().freq(), 48_000);
    assert_eq!(a.channel_config().unwrap(), mp4::ChannelConfig::Stereo);
}

#[test]
fn timescales() {
    assert_eq!(track_timescale(&video()), Ok(90_000));
    assert_eq!(track_timescale(&audio()), Ok(48_000));
}

#[test]
fn invalid_parameters_are_reported_with_their_track() {
    assert_eq!(write_init(&[]), Err(CmafError::NoTracks));

    let mut bad = video();
    if let CodecParams::H264(p) = &mut bad.params {
        p.sps = Bytes::from_static(&[0x67, 0x64]);
    }
    assert!(matches!(
        write_init(&[audio(), bad]),
        Err(CmafError::InvalidSps {
            track: TrackId(256),
            ..
        })
    ));

    let mut swapped = video();
    if let CodecParams::H264(p) = &mut swapped.params {
        std::mem::swap(&mut p.sps, &mut p.pps);
    }
    assert!(matches!(
        write_init(&[swapped]),
        Err(CmafError::InvalidTrack { .. })
    ));

    let mut huge = video();
    if let CodecParams::H264(p) = &mut huge.params {
        p.width = 70_000;
    }
    assert!(matches!(
        write_init(&[huge]),
        Err(CmafError::InvalidTrack { .. })
    ));

    let mut silent = audio();
    if let CodecParams::Aac(p) = &mut silent.params {
        p.sample_rate = 0;
    }
    assert!(matches!(
        write_init(&[silent.clone()]),
        Err(CmafError::InvalidTrack {
            track: TrackId(257),
            ..
        })
    ));
    assert!(track_timescale(&silent).is_err());

    let mut no_asc = audio();
    if let CodecParams::Aac(p) = &mut no_asc.params {
        p.asc = Bytes::new();
    }
    assert!(matches!(
        write_init(&[no_asc]),
        Err(CmafError::InvalidTrack { .. })
    ));
}
