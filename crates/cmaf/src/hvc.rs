//! H.265 in ISO BMFF (ISO/IEC 14496-15 clause 8): the `hvc1` sample entry
//! with its `hvcC` record, and Annex-B access units turned into mp4 samples.

use bytes::{BufMut, Bytes, BytesMut};
use ferrocast_media::H265Params;
use ferrocast_media::h265::{H265Error, nal_type, nal_unit_type, parse_sps};

use crate::avc::length_prefixed;
use crate::boxes;
use crate::error::CmafError;

/// Bytes of the NAL unit length prefix in every sample; `hvcC` signals it as
/// `lengthSizeMinusOne = 3`.
const LENGTH_SIZE: u8 = 4;

/// Whether a NAL unit stays in an `hvc1` sample.
///
/// ISO/IEC 14496-15 §8.4.1 (`hvc1`): "the array_completeness ... shall be
/// equal to 1 for arrays of ... VPS, SPS and PPS", i.e. all parameter sets are
/// in the sample entry; access unit delimiters and filler data are not
/// carried in samples either (as for AVC, §5.3.2).
fn keep_in_sample(nal: &[u8]) -> bool {
    !matches!(
        nal_unit_type(nal),
        Some(nal_type::AUD | nal_type::VPS | nal_type::SPS | nal_type::PPS | nal_type::FD) | None
    )
}

/// Converts one Annex-B HEVC access unit into `hvc1` sample data: each NAL
/// unit prefixed by its 4-byte big-endian length (ISO/IEC 14496-15 §8.3.2),
/// with AUD, VPS, SPS, PPS and filler data dropped (the parameter sets are in
/// `hvcC`, see [`write_init`](crate::write_init)).
///
/// SEI and slice NAL units are kept in order. The output is allocated once,
/// at its exact size.
///
/// # Errors
///
/// [`CmafError::EmptyAccessUnit`] if nothing is left (no start code, or only
/// dropped NAL types); [`CmafError::NalTooLarge`] for a NAL unit of 4 GiB or
/// more.
pub fn hevc_sample_from_annexb(annexb: &[u8]) -> Result<Bytes, CmafError> {
    length_prefixed(annexb, keep_in_sample)
}

/// Writes the `hvc1` VisualSampleEntry (ISO/IEC 14496-12 §12.1.3,
/// ISO/IEC 14496-15 §8.4.1.1) with its `hvcC` box.
pub(crate) fn write_hvc1(
    buf: &mut BytesMut,
    params: &H265Params,
    invalid: impl Fn(&'static str) -> CmafError,
    bad_sps: impl Fn(H265Error) -> CmafError,
) -> Result<(), CmafError> {
    let width =
        u16::try_from(params.width).map_err(|_| invalid("width does not fit a sample entry"))?;
    let height =
        u16::try_from(params.height).map_err(|_| invalid("height does not fit a sample entry"))?;
    let record = HevcConfig::from_params(params, &invalid, bad_sps)?;

    let hvc1 = boxes::open(buf, b"hvc1");
    boxes::put_visual_sample_entry(buf, width, height);
    let hvcc = boxes::open(buf, b"hvcC");
    record.write(buf, params);
    boxes::close(buf, hvcc)?;
    boxes::close(buf, hvc1)
}

/// What `HEVCDecoderConfigurationRecord` takes from the SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HevcConfig {
    /// general_profile_space (2), general_tier_flag (1), general_profile_idc (5).
    profile_byte: u8,
    compatibility: u32,
    constraints: [u8; 6],
    level_idc: u8,
    chroma_format_idc: u8,
    bit_depth_luma_minus8: u8,
    bit_depth_chroma_minus8: u8,
    num_temporal_layers: u8,
    temporal_id_nested: bool,
}

impl HevcConfig {
    fn from_params(
        params: &H265Params,
        invalid: impl Fn(&'static str) -> CmafError,
        bad_sps: impl Fn(H265Error) -> CmafError,
    ) -> Result<Self, CmafError> {
        if nal_unit_type(&params.vps) != Some(nal_type::VPS) {
            return Err(invalid("vps is not a VPS NAL unit"));
        }
        if nal_unit_type(&params.pps) != Some(nal_type::PPS) {
            return Err(invalid("pps is not a PPS NAL unit"));
        }
        if [&params.vps, &params.sps, &params.pps]
            .iter()
            .any(|n| u16::try_from(n.len()).is_err())
        {
            return Err(invalid("parameter set longer than hvcC's 16-bit length"));
        }
        // The one SPS parser of the project; also rejects non-SPS NAL units.
        // The record's fields come from the SPS itself so they cannot
        // disagree with what the decoder sees.
        let sps = parse_sps(&params.sps).map_err(bad_sps)?;
        let depth = |d: u32| {
            d.checked_sub(8)
                .and_then(|m| u8::try_from(m).ok())
                .filter(|m| *m <= 7)
        };
        let (Some(chroma_format_idc), Some(luma), Some(chroma)) = (
            u8::try_from(sps.chroma_format_idc).ok().filter(|c| *c <= 3),
            depth(sps.bit_depth_luma),
            depth(sps.bit_depth_chroma),
        ) else {
            return Err(invalid("SPS chroma format or bit depth out of range"));
        };
        let p = sps.profile;
        Ok(HevcConfig {
            profile_byte: (p.general_profile_space << 6)
                | (u8::from(p.general_tier_flag) << 5)
                | (p.general_profile_idc & 0x1f),
            compatibility: p.general_profile_compatibility_flags,
            constraints: p.general_constraint_indicator_flags,
            level_idc: p.general_level_idc,
            chroma_format_idc,
            bit_depth_luma_minus8: luma,
            bit_depth_chroma_minus8: chroma,
            num_temporal_layers: sps.max_sub_layers,
            temporal_id_nested: sps.temporal_id_nesting,
        })
    }

    /// `HEVCDecoderConfigurationRecord`, ISO/IEC 14496-15 §8.3.3.1.2.
    fn write(&self, buf: &mut BytesMut, params: &H265Params) {
        buf.put_u8(1); // configurationVersion
        buf.put_u8(self.profile_byte);
        buf.put_u32(self.compatibility);
        buf.put_slice(&self.constraints);
        buf.put_u8(self.level_idc);
        // reserved '1111', min_spatial_segmentation_idc = 0: "a value of 0
        // indicates that no such restriction is signalled" (it lives in the
        // VUI's bitstream_restriction, which is not read).
        buf.put_u16(0xf000);
        // reserved '111111', parallelismType = 0: "mixed, or unknown".
        buf.put_u8(0xfc);
        // reserved '111111', chromaFormat (= chroma_format_idc).
        buf.put_u8(0xfc | self.chroma_format_idc);
        // reserved '11111', bitDepthLumaMinus8 / bitDepthChromaMinus8.
        buf.put_u8(0xf8 | self.bit_depth_luma_minus8);
        buf.put_u8(0xf8 | self.bit_depth_chroma_minus8);
        // avgFrameRate = 0: "unspecified average frame rate".
        buf.put_u16(0);
        // constantFrameRate (2) = 0 "may or may not be of constant frame
        // rate", numTemporalLayers (3) = sps_max_sub_layers_minus1 + 1,
        // temporalIdNested (1) = sps_temporal_id_nesting_flag,
        // lengthSizeMinusOne (2).
        buf.put_u8(
            ((self.num_temporal_layers & 0x07) << 3)
                | (u8::from(self.temporal_id_nested) << 2)
                | (LENGTH_SIZE - 1),
        );
        buf.put_u8(3); // numOfArrays: VPS, SPS, PPS
        for (kind, nal) in [
            (nal_type::VPS, &params.vps),
            (nal_type::SPS, &params.sps),
            (nal_type::PPS, &params.pps),
        ] {
            // array_completeness = 1 (mandatory for hvc1), reserved = 0,
            // NAL_unit_type (6).
            buf.put_u8(0x80 | kind);
            buf.put_u16(1); // numNalus
            // Lengths checked in from_params.
            buf.put_u16(u16::try_from(nal.len()).unwrap_or(u16::MAX));
            buf.put_slice(nal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_parameter_sets_aud_and_filler() {
        let au = [
            0, 0, 0, 1, 0x46, 0x01, 0x50, // AUD
            0, 0, 1, 0x40, 0x01, 0x0c, // VPS
            0, 0, 1, 0x42, 0x01, 0x01, // SPS
            0, 0, 1, 0x44, 0x01, 0xc1, // PPS
            0, 0, 1, 0x4e, 0x01, 0x05, 0x80, // prefix SEI
            0, 0, 1, 0x4c, 0x01, 0xff, 0x80, // filler data
            0, 0, 0, 1, 0x26, 0x01, 0xaf, 0x09, // IDR_W_RADL slice
        ];
        let sample = hevc_sample_from_annexb(&au).unwrap();
        assert_eq!(
            &sample[..],
            &[
                0, 0, 0, 4, 0x4e, 0x01, 0x05, 0x80, 0, 0, 0, 4, 0x26, 0x01, 0xaf, 0x09
            ]
        );
        assert_eq!(
            hevc_sample_from_annexb(&[0, 0, 1, 0x46, 0x01, 0x50]),
            Err(CmafError::EmptyAccessUnit)
        );
    }
}
