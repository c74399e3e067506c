//! The CMAF header (init segment): `ftyp` + `moov` with one `trak` per track
//! and `mvex`/`trex`, no samples.

use bytes::{BufMut, Bytes, BytesMut};
use ferrocast_media::{CodecParams, TrackInfo};

use crate::boxes;
use crate::error::CmafError;
use crate::{aac, av1, avc, hvc, opus};

/// Timescale of every video track: the MPEG-TS 90 kHz clock, so ingest
/// timestamps go into `tfdt` and `trun` without rounding.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Timescale of the movie header; no durations are written in it.
const MOVIE_TIMESCALE: u32 = 1000;

/// `und` (undetermined), packed ISO 639-2/T as in `mdhd` (§8.4.2.3).
const LANGUAGE_UND: u16 = 0x55c4;

/// `tkhd` flags `track_enabled | track_in_movie` (§8.3.2.3).
const TKHD_ENABLED_IN_MOVIE: u32 = 0x0000_0003;

/// The `mdhd` timescale a track is written with, and therefore the unit of
/// its [`Sample::duration`](crate::Sample::duration),
/// [`Sample::composition_offset`](crate::Sample::composition_offset) and
/// [`TrackFragment::base_media_decode_time`](crate::TrackFragment::base_media_decode_time).
///
/// Video uses [`VIDEO_TIMESCALE`] (90 kHz); AAC uses its sample rate, so that
/// every frame lasts exactly 1024 ticks; Opus uses 48000, the rate it always
/// decodes at (RFC 7845 §4), so a packet lasts the samples its TOC byte
/// gives.
///
/// # Errors
///
/// [`CmafError::UnsupportedCodec`] for a codec with no sample entry here;
/// [`CmafError::InvalidTrack`] for an audio sample rate of zero.
pub fn track_timescale(info: &TrackInfo) -> Result<u32, CmafError> {
    match &info.params {
        CodecParams::H264(_) | CodecParams::H265(_) | CodecParams::Av1(_) => Ok(VIDEO_TIMESCALE),
        CodecParams::Aac(aac) if aac.sample_rate == 0 => Err(CmafError::InvalidTrack {
            track: info.id,
            reason: "AAC sample rate is zero",
        }),
        CodecParams::Aac(aac) => Ok(aac.sample_rate),
        CodecParams::Opus(_) => Ok(ferrocast_media::opus::OPUS_SAMPLE_RATE),
        other => Err(CmafError::UnsupportedCodec {
            track: info.id,
            codec: other.codec_string(),
        }),
    }
}

/// Writes the init segment (CMAF header, ISO/IEC 23000-19 §7.3.2.1) for
/// `tracks`. Track `i` of the slice becomes mp4 `track_ID` `i + 1`, the id
/// to use in [`TrackFragment::track_id`](crate::TrackFragment::track_id).
///
/// The `ftyp` has major brand `iso6` (ISO/IEC 14496-12 brand covering `tfdt`,
/// `default-base-is-moof` and signed `trun` composition offsets) and
/// compatible brands `iso6`, `mp41` (14496-14 file format, for `mp4a`/`esds`),
/// `av01` when a track is AV1 (the ISOBMFF binding: a file "SHALL have the
/// av01 brand among the compatible brands array of the FileTypeBox")
/// and, for a single track only, the CMAF structural brand `cmfc`
/// (23000-19 §7.1). A CMAF header describes exactly one track
/// (§7.3.2.1 and Table 3), so a multiplexed audio+video init segment (valid for
/// HLS fMP4, RFC 8216 §3.3) does not claim `cmfc`.
///
/// # Errors
///
/// [`CmafError::NoTracks`], [`CmafError::UnsupportedCodec`], or
/// [`CmafError::InvalidTrack`] when a track's parameters cannot be written
/// (SPS/PPS not what they claim, dimensions over 65535, empty ASC, ...).
pub fn write_init(tracks: &[TrackInfo]) -> Result<Bytes, CmafError> {
    if tracks.is_empty() {
        return Err(CmafError::NoTracks);
    }
    let next_track_id = u32::try_from(tracks.len())
        .ok()
        .and_then(|n| n.checked_add(1))
        .ok_or(CmafError::BoxTooLarge {
            kind: "moov",
            size: tracks.len(),
        })?;
    let mut buf = BytesMut::with_capacity(512 + 256 * tracks.len());

    // ftyp (§4.3).
    let ftyp = boxes::open(&mut buf, b"ftyp");
    buf.put_slice(b"iso6");
    buf.put_u32(0); // minor_version
    buf.put_slice(b"iso6");
    buf.put_slice(b"mp41");
    if tracks
        .iter()
        .any(|t| matches!(t.params, CodecParams::Av1(_)))
    {
        buf.put_slice(b"av01");
    }
    if tracks.len() == 1 {
        buf.put_slice(b"cmfc");
    }
    boxes::close(&mut buf, ftyp)?;

    let moov = boxes::open(&mut buf, b"moov");
    write_mvhd(&mut buf, next_track_id);
    for (track_id, info) in (1u32..).zip(tracks) {
        write_trak(&mut buf, track_id, info)?;
    }
    // mvex (§8.8.1): announces movie fragments; one trex (§8.8.3) per track.
    // The defaults are never relied on: every trun carries per-sample
    // duration, size and flags.
    let mvex = boxes::open(&mut buf, b"mvex");
    for track_id in 1..next_track_id {
        boxes::full_header(&mut buf, 32, b"trex", 0, 0);
        buf.put_u32(track_id);
        buf.put_u32(1); // default_sample_description_index
        buf.put_u32(0); // default_sample_duration
        buf.put_u32(0); // default_sample_size
        buf.put_u32(0); // default_sample_flags
    }
    boxes::close(&mut buf, mvex)?;
    boxes::close(&mut buf, moov)?;
    Ok(buf.freeze())
}

/// `mvhd` (§8.2.2), version 0, duration 0: a live presentation of unknown
/// length whose media is all in movie fragments.
fn write_mvhd(buf: &mut BytesMut, next_track_id: u32) {
    boxes::full_header(buf, 108, b"mvhd", 0, 0);
    buf.put_u32(0); // creation_time
    buf.put_u32(0); // modification_time
    buf.put_u32(MOVIE_TIMESCALE);
    buf.put_u32(0); // duration
    buf.put_u32(0x0001_0000); // rate 1.0
    buf.put_u16(0x0100); // volume 1.0
    buf.put_bytes(0, 2 + 8); // reserved
    boxes::put_unity_matrix(buf);
    buf.put_bytes(0, 24); // pre_defined
    buf.put_u32(next_track_id);
}

fn write_trak(buf: &mut BytesMut, track_id: u32, info: &TrackInfo) -> Result<(), CmafError> {
    let timescale = track_timescale(info)?;
    let invalid = |reason| CmafError::InvalidTrack {
        track: info.id,
        reason,
    };
    let (handler, name, is_audio, width, height): (&[u8; 4], &[u8], bool, u32, u32) =
        match &info.params {
            CodecParams::H264(p) => (b"vide", b"VideoHandler\0", false, p.width, p.height),
            CodecParams::H265(p) => (b"vide", b"VideoHandler\0", false, p.width, p.height),
            CodecParams::Av1(p) => (b"vide", b"VideoHandler\0", false, p.width, p.height),
            _ => (b"soun", b"SoundHandler\0", true, 0, 0),
        };
    if width > 0xffff || height > 0xffff {
        return Err(invalid("dimensions over 65535"));
    }

    let trak = boxes::open(buf, b"trak");

    // tkhd (§8.3.2), version 0.
    boxes::full_header(buf, 92, b"tkhd", 0, TKHD_ENABLED_IN_MOVIE);
    buf.put_u32(0); // creation_time
    buf.put_u32(0); // modification_time
    buf.put_u32(track_id);
    buf.put_u32(0); // reserved
    buf.put_u32(0); // duration
    buf.put_bytes(0, 8); // reserved
    buf.put_u16(0); // layer
    buf.put_u16(0); // alternate_group
    buf.put_u16(if is_audio { 0x0100 } else { 0 }); // volume
    buf.put_u16(0); // reserved
    boxes::put_unity_matrix(buf);
    buf.put_u32(width << 16); // 16.16 fixed point
    buf.put_u32(height << 16);

    let mdia = boxes::open(buf, b"mdia");
    // mdhd (§8.4.2), version 0.
    boxes::full_header(buf, 32, b"mdhd", 0, 0);
    buf.put_u32(0); // creation_time
    buf.put_u32(0); // modification_time
    buf.put_u32(timescale);
    buf.put_u32(0); // duration
    buf.put_u16(LANGUAGE_UND);
    buf.put_u16(0); // pre_defined

    // hdlr (§8.4.3).
    let hdlr = boxes::open_full(buf, b"hdlr", 0, 0);
    buf.put_u32(0); // pre_defined
    buf.put_slice(handler);
    buf.put_bytes(0, 12); // reserved
    buf.put_slice(name);
    boxes::close(buf, hdlr)?;

    let minf = boxes::open(buf, b"minf");
    if is_audio {
        // smhd (§12.2.2): balance 0.
        boxes::full_header(buf, 16, b"smhd", 0, 0);
        buf.put_u32(0);
    } else {
        // vmhd (§12.1.2): flags 1, graphicsmode copy, opcolor 0.
        boxes::full_header(buf, 20, b"vmhd", 0, 1);
        buf.put_bytes(0, 8);
    }
    // dinf/dref (§8.7.1, §8.7.2): one self-contained 'url ' entry (flags 1).
    boxes::header(buf, 36, b"dinf");
    boxes::full_header(buf, 28, b"dref", 0, 0);
    buf.put_u32(1);
    boxes::full_header(buf, 12, b"url ", 0, 1);

    let stbl = boxes::open(buf, b"stbl");
    // stsd (§8.5.2) with the one sample entry.
    let stsd = boxes::open_full(buf, b"stsd", 0, 0);
    buf.put_u32(1); // entry_count
    match &info.params {
        CodecParams::H264(p) => avc::write_avc1(buf, p, invalid, |source| CmafError::InvalidSps {
            track: info.id,
            source,
        })?,
        CodecParams::H265(p) => {
            hvc::write_hvc1(buf, p, invalid, |source| CmafError::InvalidH265Sps {
                track: info.id,
                source,
            })?
        }
        CodecParams::Av1(p) => av1::write_av01(buf, p, invalid, |source| {
            CmafError::InvalidAv1SequenceHeader {
                track: info.id,
                source,
            }
        })?,
        CodecParams::Aac(p) => aac::write_mp4a(buf, p, invalid)?,
        CodecParams::Opus(p) => opus::write_opus(buf, p, invalid)?,
        other => {
            return Err(CmafError::UnsupportedCodec {
                track: info.id,
                codec: other.codec_string(),
            });
        }
    }
    boxes::close(buf, stsd)?;
    // Empty sample tables: in a CMAF header every sample is in a fragment
    // (23000-19 §7.3.2.1, Table 3: stts, stsc, stsz, stco with no entries).
    for kind in [b"stts", b"stsc", b"stco"] {
        boxes::full_header(buf, 16, kind, 0, 0);
        buf.put_u32(0); // entry_count
    }
    boxes::full_header(buf, 20, b"stsz", 0, 0);
    buf.put_u32(0); // sample_size
    buf.put_u32(0); // sample_count
    boxes::close(buf, stbl)?;
    boxes::close(buf, minf)?;
    boxes::close(buf, mdia)?;
    boxes::close(buf, trak)
}
