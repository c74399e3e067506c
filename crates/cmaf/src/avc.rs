//! H.264 in ISO BMFF (ISO/IEC 14496-15 clause 5): the `avc1` sample entry with
//! its `avcC` record, and Annex-B access units turned into mp4 samples.

use bytes::{BufMut, Bytes, BytesMut};
use ferrocast_media::H264Params;
use ferrocast_media::h264::{H264Error, nal_type, nal_unit_type, nal_units, parse_sps};

use crate::boxes;
use crate::error::CmafError;

/// `nal_unit_type` of filler data (ITU-T H.264 Table 7-1).
const NAL_FILLER: u8 = 12;

/// Bytes of the NAL unit length prefix in every sample; `avcC` signals it as
/// `lengthSizeMinusOne = 3`.
const LENGTH_SIZE: usize = 4;

/// Whether a NAL unit stays in the mp4 sample.
///
/// ISO/IEC 14496-15 §5.3.2 (AVC sample format, `avc1` entry): parameter sets
/// live in the sample entry, and access unit delimiters and filler data are not
/// carried in samples.
fn keep_in_sample(nal: &[u8]) -> bool {
    !matches!(
        nal_unit_type(nal),
        Some(nal_type::AUD | nal_type::SPS | nal_type::PPS | NAL_FILLER) | None
    )
}

/// Converts one Annex-B access unit into `avc1` sample data: each NAL unit
/// prefixed by its 4-byte big-endian length (ISO/IEC 14496-15 §5.3.2), with
/// AUD, SPS, PPS and filler NAL units dropped (the parameter sets are in
/// `avcC`, see [`write_init`](crate::write_init)).
///
/// SEI and slice NAL units are kept in order. The output is allocated once,
/// at its exact size.
///
/// # Errors
///
/// [`CmafError::EmptyAccessUnit`] if nothing is left (no start code, or only
/// dropped NAL types); [`CmafError::NalTooLarge`] for a NAL unit of 4 GiB or
/// more.
pub fn avc_sample_from_annexb(annexb: &[u8]) -> Result<Bytes, CmafError> {
    length_prefixed(annexb, keep_in_sample)
}

/// The NAL units of `annexb` that `keep` accepts, each prefixed by its 4-byte
/// big-endian length: the sample format of both `avc1` (ISO/IEC 14496-15
/// §5.3.2) and `hvc1` (§8.3.2).
pub(crate) fn length_prefixed(
    annexb: &[u8],
    keep: impl Fn(&[u8]) -> bool,
) -> Result<Bytes, CmafError> {
    let mut size = 0usize;
    for nal in nal_units(annexb).filter(|n| keep(n)) {
        if u32::try_from(nal.len()).is_err() {
            return Err(CmafError::NalTooLarge { len: nal.len() });
        }
        size = size.saturating_add(LENGTH_SIZE + nal.len());
    }
    if size == 0 {
        return Err(CmafError::EmptyAccessUnit);
    }
    let mut out = BytesMut::with_capacity(size);
    for nal in nal_units(annexb).filter(|n| keep(n)) {
        // Checked above.
        let len =
            u32::try_from(nal.len()).map_err(|_| CmafError::NalTooLarge { len: nal.len() })?;
        out.put_u32(len);
        out.put_slice(nal);
    }
    Ok(out.freeze())
}

/// Writes the `avc1` VisualSampleEntry (ISO/IEC 14496-12 §12.1.3,
/// ISO/IEC 14496-15 §5.4.2.1) with its `avcC` box.
pub(crate) fn write_avc1(
    buf: &mut BytesMut,
    params: &H264Params,
    invalid: impl Fn(&'static str) -> CmafError,
    bad_sps: impl Fn(H264Error) -> CmafError,
) -> Result<(), CmafError> {
    let width =
        u16::try_from(params.width).map_err(|_| invalid("width does not fit a sample entry"))?;
    let height =
        u16::try_from(params.height).map_err(|_| invalid("height does not fit a sample entry"))?;
    let record = AvcConfig::from_params(params, &invalid, bad_sps)?;

    let avc1 = boxes::open(buf, b"avc1");
    boxes::put_visual_sample_entry(buf, width, height);

    let avcc = boxes::open(buf, b"avcC");
    record.write(buf, params);
    boxes::close(buf, avcc)?;
    boxes::close(buf, avc1)
}

/// The parts of the SPS that `AVCDecoderConfigurationRecord` repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AvcConfig {
    profile_idc: u8,
    constraint_flags: u8,
    level_idc: u8,
    /// `(chroma_format_idc, bit_depth_luma_minus8, bit_depth_chroma_minus8)`,
    /// present for the profiles whose record carries them.
    high: Option<(u8, u8, u8)>,
}

/// Profiles whose `AVCDecoderConfigurationRecord` has the chroma format and
/// bit depth extension (ISO/IEC 14496-15 §5.3.3.1.2).
const fn record_has_extension(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 144)
}

impl AvcConfig {
    fn from_params(
        params: &H264Params,
        invalid: impl Fn(&'static str) -> CmafError,
        bad_sps: impl Fn(H264Error) -> CmafError,
    ) -> Result<Self, CmafError> {
        if nal_unit_type(&params.pps) != Some(nal_type::PPS) {
            return Err(invalid("pps is not a PPS NAL unit"));
        }
        if u16::try_from(params.sps.len()).is_err() || u16::try_from(params.pps.len()).is_err() {
            return Err(invalid("parameter set longer than avcC's 16-bit length"));
        }
        // The one SPS parser of the project; also rejects non-SPS NAL units.
        let sps = parse_sps(&params.sps).map_err(bad_sps)?;
        let high = if record_has_extension(sps.profile_idc) {
            let depth = |d: u32| {
                d.checked_sub(8)
                    .and_then(|m| u8::try_from(m).ok())
                    .filter(|m| *m <= 7)
            };
            match (
                u8::try_from(sps.chroma_format_idc).ok().filter(|c| *c <= 3),
                depth(sps.bit_depth_luma),
                depth(sps.bit_depth_chroma),
            ) {
                (Some(c), Some(l), Some(d)) => Some((c, l, d)),
                _ => return Err(invalid("SPS chroma format or bit depth out of range")),
            }
        } else {
            None
        };
        Ok(AvcConfig {
            profile_idc: sps.profile_idc,
            constraint_flags: sps.constraint_flags,
            level_idc: sps.level_idc,
            high,
        })
    }

    /// `AVCDecoderConfigurationRecord`, ISO/IEC 14496-15 §5.3.3.1.2. The
    /// profile, compatibility and level bytes come from the SPS itself
    /// (`sps[1..4]`) so they cannot disagree with what the decoder sees.
    fn write(&self, buf: &mut BytesMut, params: &H264Params) {
        buf.put_u8(1); // configurationVersion
        buf.put_u8(self.profile_idc);
        buf.put_u8(self.constraint_flags);
        buf.put_u8(self.level_idc);
        buf.put_u8(0xfc | (LENGTH_SIZE as u8 - 1)); // reserved '111111', lengthSizeMinusOne
        buf.put_u8(0xe0 | 1); // reserved '111', numOfSequenceParameterSets
        put_parameter_set(buf, &params.sps);
        buf.put_u8(1); // numOfPictureParameterSets
        put_parameter_set(buf, &params.pps);
        if let Some((chroma_format, luma_minus8, chroma_minus8)) = self.high {
            buf.put_u8(0xfc | chroma_format);
            buf.put_u8(0xf8 | luma_minus8);
            buf.put_u8(0xf8 | chroma_minus8);
            buf.put_u8(0); // numOfSequenceParameterSetExt
        }
    }
}

/// A 16-bit length and the NAL unit (lengths checked in `from_params`).
fn put_parameter_set(buf: &mut BytesMut, nal: &[u8]) {
    buf.put_u16(u16::try_from(nal.len()).unwrap_or(u16::MAX));
    buf.put_slice(nal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_aud_sps_pps_filler_and_prefixes_lengths() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 1, 0x67, 0x64, 0, 0x1f, // SPS
            0, 0, 1, 0x68, 0xee, // PPS
            0, 0, 1, 0x06, 5, 1, 0x80, // SEI
            0, 0, 1, 0x0c, 0xff, 0xff, 0x80, // filler
            0, 0, 0, 1, 0x65, 0x88, 0x84, // IDR slice
        ];
        let sample = avc_sample_from_annexb(&au).unwrap();
        assert_eq!(
            &sample[..],
            &[0, 0, 0, 4, 0x06, 5, 1, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
    }

    #[test]
    fn empty_access_units_are_errors() {
        assert_eq!(avc_sample_from_annexb(&[]), Err(CmafError::EmptyAccessUnit));
        assert_eq!(
            avc_sample_from_annexb(&[0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x68, 1]),
            Err(CmafError::EmptyAccessUnit)
        );
        assert_eq!(
            avc_sample_from_annexb(&[0x65, 1, 2]),
            Err(CmafError::EmptyAccessUnit)
        );
    }
}
