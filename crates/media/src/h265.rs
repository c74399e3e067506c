//! H.265 (HEVC) Annex-B byte streams: NAL unit headers, IRAP detection,
//! sequence parameter set parsing (ITU-T H.265 7.3.2.2) and the
//! [`H265Params`] a muxer needs.
//!
//! The byte stream format (H.265 Annex B) is the same as H.264's, so NAL
//! units are split by [`nal_units`] (re-exported from [`crate::h264`]); what
//! differs is the two-byte NAL unit header (7.3.1.2) and the parameter sets.
//! Everything here takes untrusted bytes and returns a typed [`H265Error`]
//! rather than panicking.
//!
//! ```
//! use ferrocast_media::h265::{is_keyframe, nal_unit_type, nal_units, nal_type};
//!
//! // AUD, then a CRA slice (type 21): an IRAP picture.
//! let au = [0, 0, 0, 1, 0x46, 0x01, 0x50, 0, 0, 1, 0x2a, 0x01, 0xaf];
//! let types: Vec<_> = nal_units(&au).filter_map(nal_unit_type).collect();
//! assert_eq!(types, [nal_type::AUD, nal_type::CRA_NUT]);
//! assert!(is_keyframe(&au));
//! ```

mod sps;

use bytes::Bytes;

use crate::codec::H265Params;

pub use crate::h264::{NalUnits, nal_units};
pub use sps::{H265Error, ProfileTierLevel, SpsInfo, parse_sps, rbsp_from_nal};

/// NAL unit types this crate cares about (ITU-T H.265 Table 7-1).
pub mod nal_type {
    /// Broken link access picture with leading pictures; the first IRAP type.
    pub const BLA_W_LP: u8 = 16;
    /// Instantaneous decoding refresh picture that may have RADL pictures.
    pub const IDR_W_RADL: u8 = 19;
    /// Instantaneous decoding refresh picture without leading pictures.
    pub const IDR_N_LP: u8 = 20;
    /// Clean random access picture.
    pub const CRA_NUT: u8 = 21;
    /// The last IRAP type (reserved, `RSV_IRAP_VCL23`).
    pub const RSV_IRAP_VCL23: u8 = 23;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// Filler data.
    pub const FD: u8 = 38;
    /// Prefix supplemental enhancement information.
    pub const PREFIX_SEI: u8 = 39;
    /// Suffix supplemental enhancement information.
    pub const SUFFIX_SEI: u8 = 40;
}

/// The `nal_unit_type` of a NAL unit: bits 1..=6 of its two-byte header
/// (7.3.1.2: `forbidden_zero_bit` f(1), `nal_unit_type` u(6),
/// `nuh_layer_id` u(6), `nuh_temporal_id_plus1` u(3)).
///
/// `None` for a NAL unit shorter than its two-byte header.
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    match nal {
        [b0, _, ..] => Some((b0 >> 1) & 0x3f),
        _ => None,
    }
}

/// The `nuh_layer_id` of a NAL unit (0 for the base layer), `None` for a NAL
/// unit shorter than its header.
pub fn nuh_layer_id(nal: &[u8]) -> Option<u8> {
    match nal {
        [b0, b1, ..] => Some(((b0 & 1) << 5) | (b1 >> 3)),
        _ => None,
    }
}

/// True for the NAL unit types of intra random access point pictures.
///
/// 3.73 and Table 7-1: "IRAP ... each VCL NAL unit has nal_unit_type in the
/// range of BLA_W_LP to RSV_IRAP_VCL23, inclusive."
pub const fn is_irap(nal_unit_type: u8) -> bool {
    nal_unit_type >= nal_type::BLA_W_LP && nal_unit_type <= nal_type::RSV_IRAP_VCL23
}

/// True if the Annex-B access unit holds a coded slice of an IRAP picture
/// (IDR, CRA or BLA), i.e. decoding can start here.
pub fn is_keyframe(annexb: &[u8]) -> bool {
    nal_units(annexb).any(|nal| nal_unit_type(nal).is_some_and(is_irap))
}

/// Builds [`H265Params`] from the first base-layer VPS, SPS and PPS of an
/// Annex-B access unit.
///
/// `None` when the access unit does not carry all three parameter sets (most
/// access units do not); `Some(Err(_))` when they are there but the SPS is
/// malformed.
pub fn params_from_access_unit(annexb: &[u8]) -> Option<Result<H265Params, H265Error>> {
    let (mut vps, mut sps, mut pps) = (None, None, None);
    for nal in nal_units(annexb).filter(|n| nuh_layer_id(n) == Some(0)) {
        match nal_unit_type(nal) {
            Some(nal_type::VPS) if vps.is_none() => vps = Some(nal),
            Some(nal_type::SPS) if sps.is_none() => sps = Some(nal),
            Some(nal_type::PPS) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    let (vps, sps, pps) = (vps?, sps?, pps?);
    Some(params_from_parameter_sets(
        Bytes::copy_from_slice(vps),
        Bytes::copy_from_slice(sps),
        Bytes::copy_from_slice(pps),
    ))
}

/// Builds [`H265Params`] from one VPS, one SPS and one PPS NAL unit (each
/// without start code, first two bytes the NAL header).
///
/// The VPS and PPS are only checked to be what they claim; their contents
/// are passed through.
pub fn params_from_parameter_sets(
    vps: Bytes,
    sps: Bytes,
    pps: Bytes,
) -> Result<H265Params, H265Error> {
    let info = parse_sps(&sps)?;
    for (nal, expected) in [(&vps, nal_type::VPS), (&pps, nal_type::PPS)] {
        let found = nal_unit_type(nal);
        if found != Some(expected) || nal.len() <= 2 {
            return Err(H265Error::WrongNalType { expected, found });
        }
    }
    let narrow = |field: &'static str, v: u32| {
        u8::try_from(v).map_err(|_| H265Error::OutOfRange {
            field,
            value: u64::from(v),
        })
    };
    Ok(H265Params {
        vps,
        sps,
        pps,
        general_profile_space: info.profile.general_profile_space,
        general_tier_flag: info.profile.general_tier_flag,
        general_profile_idc: info.profile.general_profile_idc,
        general_profile_compatibility_flags: info.profile.general_profile_compatibility_flags,
        general_constraint_indicator_flags: info.profile.general_constraint_indicator_flags,
        general_level_idc: info.profile.general_level_idc,
        width: info.width,
        height: info.height,
        chroma_format_idc: narrow("chroma_format_idc", info.chroma_format_idc)?,
        bit_depth_luma: narrow("bit_depth_luma_minus8", info.bit_depth_luma)?,
        bit_depth_chroma: narrow("bit_depth_chroma_minus8", info.bit_depth_chroma)?,
        frame_rate: info.frame_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        // VPS, layer 0, temporal id 0 (nuh_temporal_id_plus1 = 1).
        assert_eq!(nal_unit_type(&[0x40, 0x01]), Some(nal_type::VPS));
        assert_eq!(nuh_layer_id(&[0x40, 0x01]), Some(0));
        // nuh_layer_id straddles the bytes: its top bit is the first byte's
        // last bit, the other five the second byte's top bits.
        assert_eq!(nuh_layer_id(&[0x42, 0x09]), Some(1));
        assert_eq!(nuh_layer_id(&[0x43, 0x01]), Some(32));
        assert_eq!(nal_unit_type(&[0x26, 0x01]), Some(nal_type::IDR_W_RADL));
        assert_eq!(nal_unit_type(&[0x26]), None);
    }

    #[test]
    fn irap_range() {
        let irap: Vec<u8> = (0..64).filter(|&t| is_irap(t)).collect();
        assert_eq!(irap, (16..=23).collect::<Vec<u8>>());
        // TRAIL_R slice: not a keyframe; IDR_N_LP: a keyframe.
        assert!(!is_keyframe(&[0, 0, 1, 0x02, 0x01, 0xd0]));
        assert!(is_keyframe(&[0, 0, 1, 0x28, 0x01, 0xaf]));
    }
}
