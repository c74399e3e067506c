//! Movie fragments: one `moof` + `mdat` pair per CMAF chunk.
//!
//! This is the hot path (one call per video frame), so every box size is
//! computed first, the output is allocated once at its exact size, and boxes
//! are written front to back with no patching and no other allocation.

use bytes::{BufMut, Bytes, BytesMut};

use crate::boxes::{self, FULL_HEADER_LEN, HEADER_LEN};
use crate::error::CmafError;

/// One sample (coded picture or audio frame) of a track fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode duration in the track's timescale
    /// ([`track_timescale`](crate::track_timescale)): the next sample's decode
    /// time minus this one's.
    pub duration: u32,
    /// Presentation time minus decode time, in the track's timescale. May be
    /// negative (`trun` version 1, ISO/IEC 14496-12 §8.8.8).
    pub composition_offset: i32,
    /// A sync sample (H.264 IDR or H.265 IRAP picture, or any audio frame).
    pub keyframe: bool,
    /// The sample bytes: for H.264 and H.265, length-prefixed NAL units as
    /// made by [`video_sample_from_annexb`](crate::video_sample_from_annexb);
    /// for AAC, one raw frame without ADTS header.
    pub data: Bytes,
}

/// The samples of one track in one fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackFragment {
    /// The mp4 `track_ID`: the track's index in the slice given to
    /// [`write_init`](crate::write_init), plus one.
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale: the previous
    /// fragment's `base_media_decode_time` plus the sum of its durations.
    pub base_media_decode_time: u64,
    /// The samples, in decode order.
    pub samples: Vec<Sample>,
}

/// `tfhd` flag `default-base-is-moof` (§8.8.7.1): data offsets count from the
/// start of the `moof`, so a chunk is self-contained wherever it is stored.
/// CMAF requires it in every `traf` (ISO/IEC 23000-19 clause 7, CMAF
/// fragment box constraints).
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// `trun` flags (§8.8.8.1).
const TRUN_DATA_OFFSET: u32 = 0x00_0001;
const TRUN_SAMPLE_DURATION: u32 = 0x00_0100;
const TRUN_SAMPLE_SIZE: u32 = 0x00_0200;
const TRUN_SAMPLE_FLAGS: u32 = 0x00_0400;
const TRUN_SAMPLE_COMPOSITION_TIME_OFFSET: u32 = 0x00_0800;

/// Sample flags (§8.8.3.1): `sample_depends_on = 2` (does not depend on
/// others, an I picture), `sample_is_non_sync_sample = 0`.
const SAMPLE_FLAGS_SYNC: u32 = 2 << 24;
/// `sample_depends_on = 1` (depends on others), `sample_is_non_sync_sample = 1`.
const SAMPLE_FLAGS_NON_SYNC: u32 = (1 << 24) | (1 << 16);

const MFHD_LEN: u32 = FULL_HEADER_LEN + 4;
const TFHD_LEN: u32 = FULL_HEADER_LEN + 4;
const TFDT_LEN: u32 = FULL_HEADER_LEN + 8;

/// The sizes of one `traf`, worked out before anything is written.
#[derive(Clone, Copy)]
struct TrafPlan {
    sample_count: u32,
    with_cto: bool,
    traf_len: u32,
    trun_len: u32,
    data_len: u64,
}

/// Writes one CMAF chunk (ISO/IEC 23000-19 clause 7): a `moof`
/// (§8.8.4) with an `mfhd` and one `traf` per non-empty [`TrackFragment`],
/// followed by one `mdat` (§8.1.1) holding every sample, track after track.
///
/// Each `traf` has a `tfhd` with `default-base-is-moof`, a version 1 `tfdt`
/// and a version 1 `trun` with a `data_offset` and per-sample duration, size
/// and flags, plus composition offsets when any is non-zero. Concatenated
/// chunks form CMAF fragments, LL-HLS parts and segments; `sequence_number`
/// must increase from chunk to chunk (§8.8.5.3).
///
/// # Errors
///
/// [`CmafError::NoSamples`] if every fragment is empty,
/// [`CmafError::ZeroTrackId`], [`CmafError::SampleTooLarge`], or
/// [`CmafError::FragmentTooLarge`] when sizes or offsets exceed 32 bits.
pub fn write_fragment(
    sequence_number: u32,
    fragments: &[TrackFragment],
) -> Result<Bytes, CmafError> {
    // First pass: sizes. Nothing is allocated here.
    let mut moof_len = u64::from(HEADER_LEN + MFHD_LEN);
    let mut data_len = 0u64;
    let mut tracks = 0usize;
    for (index, fragment) in fragments.iter().enumerate() {
        if fragment.samples.is_empty() {
            continue;
        }
        if fragment.track_id == 0 {
            return Err(CmafError::ZeroTrackId { index });
        }
        let plan = plan_traf(fragment)?;
        moof_len += u64::from(plan.traf_len);
        data_len += plan.data_len;
        tracks += 1;
    }
    if tracks == 0 {
        return Err(CmafError::NoSamples);
    }
    let total = moof_len + u64::from(HEADER_LEN) + data_len;
    let too_large = CmafError::FragmentTooLarge { size: total };
    let moof_len32 = u32::try_from(moof_len).map_err(|_| too_large.clone())?;
    let mdat_len32 =
        u32::try_from(u64::from(HEADER_LEN) + data_len).map_err(|_| too_large.clone())?;
    // data_offset is a signed 32-bit offset from the moof start (§8.8.8.3); the
    // last traf's offset is the largest, and is below `total`.
    if i32::try_from(total).is_err() {
        return Err(too_large);
    }
    let capacity = usize::try_from(total).map_err(|_| too_large.clone())?;

    // Second pass: write.
    let mut buf = BytesMut::with_capacity(capacity);
    boxes::header(&mut buf, moof_len32, b"moof");
    boxes::full_header(&mut buf, MFHD_LEN, b"mfhd", 0, 0);
    buf.put_u32(sequence_number);

    let mut data_offset = moof_len + u64::from(HEADER_LEN);
    for fragment in fragments.iter().filter(|f| !f.samples.is_empty()) {
        // Re-planning is cheap arithmetic and avoids storing the plans.
        let plan = plan_traf(fragment)?;
        let offset = i32::try_from(data_offset).map_err(|_| too_large.clone())?;
        write_traf(&mut buf, fragment, &plan, offset);
        data_offset += plan.data_len;
    }

    boxes::header(&mut buf, mdat_len32, b"mdat");
    for fragment in fragments {
        for sample in &fragment.samples {
            buf.put_slice(&sample.data);
        }
    }
    Ok(buf.freeze())
}

fn plan_traf(fragment: &TrackFragment) -> Result<TrafPlan, CmafError> {
    let mut data_len = 0u64;
    let mut with_cto = false;
    for (index, sample) in fragment.samples.iter().enumerate() {
        let len = sample.data.len();
        if u32::try_from(len).is_err() {
            return Err(CmafError::SampleTooLarge {
                track_id: fragment.track_id,
                index,
                len,
            });
        }
        data_len += len as u64;
        with_cto |= sample.composition_offset != 0;
    }
    let per_sample: u64 = if with_cto { 16 } else { 12 };
    let count = fragment.samples.len() as u64;
    let trun_len = u64::from(FULL_HEADER_LEN) + 4 + 4 + per_sample * count;
    let traf_len = u64::from(HEADER_LEN + TFHD_LEN + TFDT_LEN) + trun_len;
    let too_large = || CmafError::FragmentTooLarge {
        size: traf_len.saturating_add(data_len),
    };
    Ok(TrafPlan {
        sample_count: u32::try_from(count).map_err(|_| too_large())?,
        with_cto,
        traf_len: u32::try_from(traf_len).map_err(|_| too_large())?,
        trun_len: u32::try_from(trun_len).map_err(|_| too_large())?,
        data_len,
    })
}

fn write_traf(buf: &mut BytesMut, fragment: &TrackFragment, plan: &TrafPlan, data_offset: i32) {
    boxes::header(buf, plan.traf_len, b"traf");

    // tfhd (§8.8.7): samples of this traf start at the moof (plus data_offset).
    boxes::full_header(buf, TFHD_LEN, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
    buf.put_u32(fragment.track_id);

    // tfdt (§8.8.12), version 1 so decode times never wrap. CMAF requires a
    // tfdt in every traf (23000-19 clause 7, CMAF fragment box constraints).
    boxes::full_header(buf, TFDT_LEN, b"tfdt", 1, 0);
    buf.put_u64(fragment.base_media_decode_time);

    // trun (§8.8.8), version 1: composition offsets are signed.
    let mut flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS;
    if plan.with_cto {
        flags |= TRUN_SAMPLE_COMPOSITION_TIME_OFFSET;
    }
    boxes::full_header(buf, plan.trun_len, b"trun", 1, flags);
    buf.put_u32(plan.sample_count);
    buf.put_i32(data_offset);
    for sample in &fragment.samples {
        buf.put_u32(sample.duration);
        // Fits: checked in plan_traf.
        buf.put_u32(sample.data.len() as u32);
        buf.put_u32(if sample.keyframe {
            SAMPLE_FLAGS_SYNC
        } else {
            SAMPLE_FLAGS_NON_SYNC
        });
        if plan.with_cto {
            buf.put_i32(sample.composition_offset);
        }
    }
}
