//! Sequence parameter set parsing (ITU-T H.265 (v8, 08/2021) 7.3.2.2.1,
//! 7.3.3 profile_tier_level, 7.3.7 st_ref_pic_set, E.2.1 VUI).

use super::{nal_type, nal_unit_type, nuh_layer_id};
use crate::bits::{BitError, BitReader, reduced_ratio, skip_vui_prefix, unescape};

/// Why an H.265 SPS (or the parameter sets around it) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H265Error {
    /// A NAL unit is not the parameter set it was given as.
    #[error("expected NAL unit type {expected}, found type {found:?}")]
    WrongNalType {
        /// The type wanted (32 VPS, 33 SPS, 34 PPS).
        expected: u8,
        /// The NAL unit's type, `None` for a NAL unit shorter than its
        /// two-byte header.
        found: Option<u8>,
    },
    /// `forbidden_zero_bit` is set: the NAL unit is damaged.
    #[error("forbidden_zero_bit is set in the NAL unit header")]
    ForbiddenZeroBit,
    /// The SPS belongs to an enhancement layer (`nuh_layer_id` > 0), whose
    /// syntax (F.7.3.2.2.1) a single-layer decoder does not use.
    #[error("SPS of layer {nuh_layer_id}: only the base layer is supported")]
    NotBaseLayer {
        /// The NAL unit's `nuh_layer_id`.
        nuh_layer_id: u8,
    },
    /// The SPS ended before this syntax element.
    #[error("SPS truncated while reading {field}")]
    Truncated {
        /// The syntax element being read.
        field: &'static str,
    },
    /// A syntax element holds a value the specification does not allow.
    #[error("SPS {field} = {value} is out of range")]
    OutOfRange {
        /// The syntax element.
        field: &'static str,
        /// The value read.
        value: u64,
    },
    /// The conformance window is as large as the coded picture or larger.
    #[error("SPS conformance window removes the whole {coded_width}x{coded_height} picture")]
    BadConformanceWindow {
        /// `pic_width_in_luma_samples`.
        coded_width: u32,
        /// `pic_height_in_luma_samples`.
        coded_height: u32,
    },
}

impl From<BitError> for H265Error {
    fn from(e: BitError) -> Self {
        match e {
            BitError::Truncated { field } => H265Error::Truncated { field },
            BitError::OutOfRange { field, value } => H265Error::OutOfRange { field, value },
        }
    }
}

/// The general part of `profile_tier_level( 1, sps_max_sub_layers_minus1 )`
/// (7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileTierLevel {
    /// `general_profile_space`.
    pub general_profile_space: u8,
    /// `general_tier_flag` (true: High tier).
    pub general_tier_flag: bool,
    /// `general_profile_idc`.
    pub general_profile_idc: u8,
    /// `general_profile_compatibility_flag[ j ]` for j = 0..32, flag `j` in
    /// bit `31 − j`.
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` on, in bitstream
    /// order.
    pub general_constraint_indicator_flags: [u8; 6],
    /// `general_level_idc`.
    pub general_level_idc: u8,
}

/// What Ferrocast reads from an H.265 sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpsInfo {
    /// `sps_video_parameter_set_id`.
    pub video_parameter_set_id: u8,
    /// `sps_max_sub_layers_minus1` + 1 (1..=7): temporal sub-layers.
    pub max_sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// General profile, tier and level.
    pub profile: ProfileTierLevel,
    /// `sps_seq_parameter_set_id` (0..=15).
    pub seq_parameter_set_id: u32,
    /// `chroma_format_idc` (0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4).
    pub chroma_format_idc: u32,
    /// `separate_colour_plane_flag` (4:4:4 coded as three monochrome planes).
    pub separate_colour_plane: bool,
    /// `pic_width_in_luma_samples`: the coded width.
    pub coded_width: u32,
    /// `pic_height_in_luma_samples`: the coded height.
    pub coded_height: u32,
    /// Width in luma samples after the conformance window.
    pub width: u32,
    /// Height in luma samples after the conformance window.
    pub height: u32,
    /// Luma bit depth (8 + `bit_depth_luma_minus8`).
    pub bit_depth_luma: u32,
    /// Chroma bit depth (8 + `bit_depth_chroma_minus8`).
    pub bit_depth_chroma: u32,
    /// Frames per second from the VUI timing info as a reduced
    /// (numerator, denominator), if signalled.
    pub frame_rate: Option<(u32, u32)>,
    /// `sps_max_num_reorder_pics[ sps_max_sub_layers_minus1 ]`: how many
    /// pictures may precede a picture in decoding order and follow it in
    /// output order, for the highest sub-layer (the whole stream). `None`
    /// only when the SPS is cut before it.
    pub max_num_reorder_pics: Option<u32>,
}

/// The RBSP of an H.265 NAL unit: the payload after the two-byte header with
/// every `emulation_prevention_three_byte` removed (7.3.1.1, 7.4.2).
pub fn rbsp_from_nal(nal: &[u8]) -> Vec<u8> {
    unescape(nal.get(2..).unwrap_or_default())
}

/// Parses an H.265 SPS NAL unit (without start code; the first two bytes are
/// the NAL unit header).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, H265Error> {
    let header = *nal.first().ok_or(H265Error::WrongNalType {
        expected: nal_type::SPS,
        found: None,
    })?;
    if header & 0x80 != 0 {
        return Err(H265Error::ForbiddenZeroBit);
    }
    let found = nal_unit_type(nal);
    if found != Some(nal_type::SPS) {
        return Err(H265Error::WrongNalType {
            expected: nal_type::SPS,
            found,
        });
    }
    match nuh_layer_id(nal) {
        Some(0) => {}
        Some(nuh_layer_id) => return Err(H265Error::NotBaseLayer { nuh_layer_id }),
        None => {}
    }
    let rbsp = rbsp_from_nal(nal);
    let mut r = BitReader::new(&rbsp);

    let video_parameter_set_id = r.bits(4, "sps_video_parameter_set_id")? as u8;
    // 7.4.3.2.1: "The value of sps_max_sub_layers_minus1 shall be in the
    // range of 0 to 6, inclusive."
    let max_sub_layers_minus1 = r.bits(3, "sps_max_sub_layers_minus1")?;
    if max_sub_layers_minus1 > 6 {
        return Err(H265Error::OutOfRange {
            field: "sps_max_sub_layers_minus1",
            value: u64::from(max_sub_layers_minus1),
        });
    }
    let temporal_id_nesting = r.flag("sps_temporal_id_nesting_flag")?;
    let profile = profile_tier_level(&mut r, max_sub_layers_minus1)?;
    // "The value of sps_seq_parameter_set_id shall be in the range of 0 to
    // 15, inclusive."
    let seq_parameter_set_id = r.ue_max("sps_seq_parameter_set_id", 15)?;
    // "The value of chroma_format_idc shall be in the range of 0 to 3".
    let chroma_format_idc = r.ue_max("chroma_format_idc", 3)?;
    let separate_colour_plane = chroma_format_idc == 3 && r.flag("separate_colour_plane_flag")?;
    // "pic_width_in_luma_samples shall not be equal to 0 and shall be an
    // integer multiple of MinCbSizeY." Only the first half is checked here.
    let coded_width = r.ue("pic_width_in_luma_samples")?;
    let coded_height = r.ue("pic_height_in_luma_samples")?;
    for (field, v) in [
        ("pic_width_in_luma_samples", coded_width),
        ("pic_height_in_luma_samples", coded_height),
    ] {
        if v == 0 {
            return Err(H265Error::OutOfRange { field, value: 0 });
        }
    }
    let window = if r.flag("conformance_window_flag")? {
        [
            r.ue("conf_win_left_offset")?,
            r.ue("conf_win_right_offset")?,
            r.ue("conf_win_top_offset")?,
            r.ue("conf_win_bottom_offset")?,
        ]
    } else {
        [0; 4]
    };
    // 7.4.3.2.1: "The conformance cropping window contains the luma samples
    // with horizontal picture coordinates from SubWidthC * conf_win_left_offset
    // to pic_width_in_luma_samples − ( SubWidthC * conf_win_right_offset + 1 )
    // and vertical picture coordinates from SubHeightC * conf_win_top_offset to
    // pic_height_in_luma_samples − ( SubHeightC * conf_win_bottom_offset + 1 )".
    // Table 6-1: SubWidthC, SubHeightC are 2, 2 for 4:2:0; 2, 1 for 4:2:2;
    // 1, 1 for monochrome, 4:4:4 and separate colour planes.
    let (sub_width, sub_height): (u64, u64) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_width * (u64::from(window[0]) + u64::from(window[1]));
    let crop_y = sub_height * (u64::from(window[2]) + u64::from(window[3]));
    let (width, height) = match (
        u64::from(coded_width).checked_sub(crop_x),
        u64::from(coded_height).checked_sub(crop_y),
    ) {
        // Both fit a u32: they are at most the coded size.
        (Some(w), Some(h)) if w > 0 && h > 0 => (w as u32, h as u32),
        _ => {
            return Err(H265Error::BadConformanceWindow {
                coded_width,
                coded_height,
            });
        }
    };
    // "bit_depth_luma_minus8 shall be in the range of 0 to 8, inclusive."
    let bit_depth_luma = 8 + r.ue_max("bit_depth_luma_minus8", 8)?;
    let bit_depth_chroma = 8 + r.ue_max("bit_depth_chroma_minus8", 8)?;

    // Everything from here on adds only the reorder depth and the VUI's
    // frame rate: as for H.264, a damaged tail costs what follows the
    // damage, not the stream.
    let mut tail = Tail::default();
    let _ = read_tail(&mut r, max_sub_layers_minus1, &mut tail);

    Ok(SpsInfo {
        video_parameter_set_id,
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nesting,
        profile,
        seq_parameter_set_id,
        chroma_format_idc,
        separate_colour_plane,
        coded_width,
        coded_height,
        width,
        height,
        bit_depth_luma,
        bit_depth_chroma,
        frame_rate: tail.frame_rate,
        max_num_reorder_pics: tail.max_num_reorder_pics,
    })
}

/// 7.3.3 profile_tier_level( profilePresentFlag = 1, maxNumSubLayersMinus1 ).
fn profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
) -> Result<ProfileTierLevel, H265Error> {
    let general_profile_space = r.bits(2, "general_profile_space")? as u8;
    let general_tier_flag = r.flag("general_tier_flag")?;
    let general_profile_idc = r.bits(5, "general_profile_idc")? as u8;
    let general_profile_compatibility_flags = r.bits(32, "general_profile_compatibility_flag")?;
    // general_progressive_source_flag, general_interlaced_source_flag,
    // general_non_packed_constraint_flag, general_frame_only_constraint_flag,
    // then 43 bits of profile-specific constraint flags or reserved zeros and
    // general_inbld_flag or general_reserved_zero_bit: 48 bits in all.
    let mut general_constraint_indicator_flags = [0u8; 6];
    for b in &mut general_constraint_indicator_flags {
        *b = r.u8("general_constraint_flags")?;
    }
    let general_level_idc = r.u8("general_level_idc")?;

    // "for( i = 0; i < maxNumSubLayersMinus1; i++ ) {
    //    sub_layer_profile_present_flag[ i ]  u(1)
    //    sub_layer_level_present_flag[ i ]    u(1) }
    //  if( maxNumSubLayersMinus1 > 0 )
    //    for( i = maxNumSubLayersMinus1; i < 8; i++ )
    //      reserved_zero_2bits                u(2)"
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(max_sub_layers_minus1 as usize) {
        *p = (
            r.flag("sub_layer_profile_present_flag")?,
            r.flag("sub_layer_level_present_flag")?,
        );
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(
            2 * (8 - max_sub_layers_minus1 as usize),
            "reserved_zero_2bits",
        )?;
    }
    // Per sub-layer: 88 bits of profile (sub_layer_profile_space u(2) through
    // sub_layer_inbld_flag/reserved u(1)) when its profile is present, 8 bits
    // of sub_layer_level_idc when its level is present.
    for &(profile_present, level_present) in present.iter().take(max_sub_layers_minus1 as usize) {
        if profile_present {
            r.skip(88, "sub_layer_profile")?;
        }
        if level_present {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    Ok(ProfileTierLevel {
        general_profile_space,
        general_tier_flag,
        general_profile_idc,
        general_profile_compatibility_flags,
        general_constraint_indicator_flags,
        general_level_idc,
    })
}

/// What the SPS tail gives; what was read before an error stays.
#[derive(Debug, Default)]
struct Tail {
    max_num_reorder_pics: Option<u32>,
    frame_rate: Option<(u32, u32)>,
}

/// The rest of 7.3.2.2.1 after the bit depths, up to the VUI's timing info.
fn read_tail(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
    out: &mut Tail,
) -> Result<(), H265Error> {
    // "The value of log2_max_pic_order_cnt_lsb_minus4 shall be in the range
    // of 0 to 12, inclusive."
    let log2_max_poc_lsb = r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)? + 4;
    let ordering_info_present = r.flag("sps_sub_layer_ordering_info_present_flag")?;
    let first = if ordering_info_present {
        0
    } else {
        max_sub_layers_minus1
    };
    // "When sps_sub_layer_ordering_info_present_flag is equal to 0 ... the
    // value of sps_max_num_reorder_pics[ sps_max_sub_layers_minus1 ] applies
    // to all sub-layers": either way the last one read is the highest
    // sub-layer's, which bounds the whole stream.
    for _ in first..=max_sub_layers_minus1 {
        // "The value of sps_max_dec_pic_buffering_minus1 shall be in the
        // range of 0 to MaxDpbSize − 1" (MaxDpbSize ≤ 16), and
        // "sps_max_num_reorder_pics ... in the range of 0 to
        // sps_max_dec_pic_buffering_minus1".
        let buffering = r.ue_max("sps_max_dec_pic_buffering_minus1", 15)?;
        out.max_num_reorder_pics = Some(r.ue_max("sps_max_num_reorder_pics", buffering)?);
        r.ue("sps_max_latency_increase_plus1")?;
    }
    r.ue("log2_min_luma_coding_block_size_minus3")?;
    r.ue("log2_diff_max_min_luma_coding_block_size")?;
    r.ue("log2_min_luma_transform_block_size_minus2")?;
    r.ue("log2_diff_max_min_luma_transform_block_size")?;
    r.ue("max_transform_hierarchy_depth_inter")?;
    r.ue("max_transform_hierarchy_depth_intra")?;
    if r.flag("scaling_list_enabled_flag")? && r.flag("sps_scaling_list_data_present_flag")? {
        skip_scaling_list_data(r)?;
    }
    r.flag("amp_enabled_flag")?;
    r.flag("sample_adaptive_offset_enabled_flag")?;
    if r.flag("pcm_enabled_flag")? {
        r.bits(4, "pcm_sample_bit_depth_luma_minus1")?;
        r.bits(4, "pcm_sample_bit_depth_chroma_minus1")?;
        r.ue("log2_min_pcm_luma_coding_block_size_minus3")?;
        r.ue("log2_diff_max_min_pcm_luma_coding_block_size")?;
        r.flag("pcm_loop_filter_disabled_flag")?;
    }
    // "The value of num_short_term_ref_pic_sets shall be in the range of 0
    // to 64, inclusive."
    let num_sets = r.ue_max("num_short_term_ref_pic_sets", 64)?;
    let mut sets: Vec<Vec<i64>> = Vec::with_capacity(num_sets as usize);
    for idx in 0..num_sets as usize {
        let set = st_ref_pic_set(r, idx, &sets)?;
        sets.push(set);
    }
    if r.flag("long_term_ref_pics_present_flag")? {
        // "num_long_term_ref_pics_sps shall be in the range of 0 to 32".
        let n = r.ue_max("num_long_term_ref_pics_sps", 32)?;
        for _ in 0..n {
            // lt_ref_pic_poc_lsb_sps[ i ] u(v): log2_max_pic_order_cnt_lsb bits.
            r.bits(log2_max_poc_lsb, "lt_ref_pic_poc_lsb_sps")?;
            r.flag("used_by_curr_pic_lt_sps_flag")?;
        }
    }
    r.flag("sps_temporal_mvp_enabled_flag")?;
    r.flag("strong_intra_smoothing_enabled_flag")?;
    if r.flag("vui_parameters_present_flag")? {
        out.frame_rate = vui_frame_rate(r)?;
    }
    Ok(())
}

/// 7.3.4 scaling_list_data( ): only the bits are consumed.
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Result<(), H265Error> {
    for size_id in 0..4u32 {
        // "for( matrixId = 0; matrixId < 6; matrixId += ( sizeId = = 3 ) ? 3 : 1 )"
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !r.flag("scaling_list_pred_mode_flag")? {
                r.ue("scaling_list_pred_matrix_id_delta")?;
                continue;
            }
            // "coefNum = Min( 64, ( 1 << ( 4 + ( sizeId << 1 ) ) ) )"
            let coef_num = 64.min(1u32 << (4 + (size_id << 1)));
            if size_id > 1 {
                r.se("scaling_list_dc_coef_minus8")?;
            }
            for _ in 0..coef_num {
                r.se("scaling_list_delta_coef")?;
            }
        }
    }
    Ok(())
}

/// Pictures one short-term reference picture set may list. The DPB holds at
/// most 16 pictures (A.4.2 MaxDpbSize), so each of NumNegativePics and
/// NumPositivePics is at most 16 and NumDeltaPocs at most 32; anything more
/// is refused rather than followed.
const MAX_DELTA_POCS: usize = 32;

/// 7.3.7 st_ref_pic_set( stRpsIdx ) as it appears in the SPS. Returns the
/// set's DeltaPoc values (negative ones first), whose count is NumDeltaPocs,
/// which the next set needs when it is predicted from this one.
fn st_ref_pic_set(
    r: &mut BitReader<'_>,
    idx: usize,
    previous: &[Vec<i64>],
) -> Result<Vec<i64>, H265Error> {
    let predicted = idx != 0 && r.flag("inter_ref_pic_set_prediction_flag")?;
    if predicted {
        // In the SPS stRpsIdx < num_short_term_ref_pic_sets, so
        // delta_idx_minus1 is absent and inferred 0: RefRpsIdx = stRpsIdx − 1.
        let reference = previous.get(idx - 1).map_or(&[][..], Vec::as_slice);
        let negative_sign = r.flag("delta_rps_sign")?;
        // "abs_delta_rps_minus1 shall be in the range of 0 to 2^15 − 1".
        let abs = i64::from(r.ue_max("abs_delta_rps_minus1", (1 << 15) - 1)?) + 1;
        let delta_rps = if negative_sign { -abs } else { abs };
        let mut set = Vec::new();
        // "for( j = 0; j <= NumDeltaPocs[ RefRpsIdx ]; j++ )": one entry per
        // picture of the reference set plus the reference picture itself.
        for j in 0..=reference.len() {
            let used = r.flag("used_by_curr_pic_flag")?;
            // "When use_delta_flag[ j ] is not present, its value is inferred
            // to be equal to 1."
            let use_delta = used || r.flag("use_delta_flag")?;
            if use_delta {
                set.push(reference.get(j).map_or(delta_rps, |d| d + delta_rps));
            }
        }
        return Ok(set);
    }
    let negative = r.ue_max("num_negative_pics", 16)? as usize;
    let positive = r.ue_max("num_positive_pics", 16)? as usize;
    if negative + positive > MAX_DELTA_POCS {
        return Err(H265Error::OutOfRange {
            field: "num_positive_pics",
            value: (negative + positive) as u64,
        });
    }
    let mut set = Vec::with_capacity(negative + positive);
    let mut poc = 0i64;
    for _ in 0..negative {
        poc -= i64::from(r.ue_max("delta_poc_s0_minus1", (1 << 15) - 1)?) + 1;
        r.flag("used_by_curr_pic_s0_flag")?;
        set.push(poc);
    }
    poc = 0;
    for _ in 0..positive {
        poc += i64::from(r.ue_max("delta_poc_s1_minus1", (1 << 15) - 1)?) + 1;
        r.flag("used_by_curr_pic_s1_flag")?;
        set.push(poc);
    }
    Ok(set)
}

/// E.2.1 vui_parameters( ), up to and including the timing info.
fn vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, H265Error> {
    skip_vui_prefix(r)?;
    r.flag("neutral_chroma_indication_flag")?;
    let field_seq = r.flag("field_seq_flag")?;
    r.flag("frame_field_info_present_flag")?;
    if r.flag("default_display_window_flag")? {
        for field in [
            "def_disp_win_left_offset",
            "def_disp_win_right_offset",
            "def_disp_win_top_offset",
            "def_disp_win_bottom_offset",
        ] {
            r.ue(field)?;
        }
    }
    if !r.flag("vui_timing_info_present_flag")? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits(32, "vui_num_units_in_tick")?;
    let time_scale = r.bits(32, "vui_time_scale")?;
    // E.3.1: "vui_num_units_in_tick is the number of time units of a clock
    // operating at the frequency vui_time_scale Hz that corresponds to one
    // increment (called a clock tick) of a clock tick counter", and a picture
    // lasts one tick (unlike H.264's two). With field_seq_flag each picture
    // is a field, so a frame lasts two ticks.
    let ticks_per_frame = if field_seq { 2 } else { 1 };
    Ok(reduced_ratio(
        u64::from(time_scale),
        ticks_per_frame * u64::from(num_units_in_tick),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;

    /// libx265's SPS for `testsrc2=size=320x240:rate=25` (Main, level 2,
    /// VUI timing 25 fps, default B-frames: `sps_max_num_reorder_pics` 2, as
    /// ffmpeg's trace_headers reads it).
    const SPS_X265: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a,
        0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10, 0x00,
    ];

    #[test]
    fn parses_x265_main_sps() {
        let sps = parse_sps(SPS_X265).unwrap();
        assert_eq!(sps.profile.general_profile_idc, 1);
        assert_eq!(sps.profile.general_profile_compatibility_flags, 0x6000_0000);
        assert_eq!(
            sps.profile.general_constraint_indicator_flags,
            [0x90, 0, 0, 0, 0, 0]
        );
        assert_eq!(sps.profile.general_level_idc, 60);
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (8, 8));
        assert_eq!(sps.max_sub_layers, 1);
        assert!(sps.temporal_id_nesting);
        assert_eq!(sps.frame_rate, Some((25, 1)));
        assert_eq!(sps.max_num_reorder_pics, Some(2));
    }

    /// An SPS with `sub_layers` sub-layers whose profile/level presence
    /// alternates, a conformance window, 4:2:2 10-bit, scaling lists, two
    /// RPS (the second predicted), long-term pictures and VUI timing.
    fn rich_sps(sub_layers: u32) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(4, 0).bits(3, u64::from(sub_layers - 1)).bits(1, 0);
        // profile_tier_level: space 0, tier 1, profile 4 (RExt).
        w.bits(2, 0).bits(1, 1).bits(5, 4).bits(32, 0x0800_0000);
        w.bits(32, 0xb000_0000).bits(16, 0x0000).bits(8, 153);
        let n = sub_layers - 1;
        for i in 0..n {
            w.bits(1, u64::from(i % 2 == 0)).bits(1, 1);
        }
        if n > 0 {
            for _ in n..8 {
                w.bits(2, 0);
            }
        }
        for i in 0..n {
            if i % 2 == 0 {
                w.bits(32, 0xffff_ffff)
                    .bits(32, 0xffff_ffff)
                    .bits(24, 0xff_ffff);
            }
            w.bits(8, 0xff);
        }
        w.ue(3).ue(2); // sps id 3, 4:2:2
        w.ue(1928).ue(1088).bits(1, 1).ue(2).ue(2).ue(0).ue(4); // window
        w.ue(2).ue(2).ue(4); // 10-bit, log2_max_poc_lsb 8
        w.bits(1, 1);
        for i in 0..sub_layers {
            // Reorder 1 below the highest sub-layer, 3 at it.
            w.ue(4).ue(if i + 1 == sub_layers { 3 } else { 1 }).ue(0);
        }
        w.ue(0).ue(3).ue(0).ue(3).ue(1).ue(1);
        // Scaling lists: explicit everywhere.
        w.bits(1, 1).bits(1, 1);
        for size_id in 0..4u32 {
            let step = if size_id == 3 { 3 } else { 1 };
            for m in (0..6).step_by(step) {
                if m == 1 {
                    w.bits(1, 0).ue(1);
                    continue;
                }
                w.bits(1, 1);
                if size_id > 1 {
                    w.se(4);
                }
                for k in 0..64.min(1 << (4 + (size_id << 1))) {
                    w.se(if k % 2 == 0 { 3 } else { -3 });
                }
            }
        }
        w.bits(1, 1).bits(1, 1).bits(1, 1); // amp, sao, pcm
        w.bits(4, 7).bits(4, 7).ue(0).ue(1).bits(1, 0);
        w.ue(2);
        // RPS 0: two negative pictures, one positive.
        w.ue(2)
            .ue(1)
            .ue(0)
            .bits(1, 1)
            .ue(1)
            .bits(1, 1)
            .ue(0)
            .bits(1, 0);
        // RPS 1: predicted from RPS 0 (3 pictures + itself = 4 entries).
        w.bits(1, 1).bits(1, 1).ue(0);
        w.bits(1, 1)
            .bits(1, 0)
            .bits(1, 1)
            .bits(1, 0)
            .bits(1, 0)
            .bits(1, 1);
        w.bits(1, 1)
            .ue(2)
            .bits(8, 5)
            .bits(1, 1)
            .bits(8, 9)
            .bits(1, 0);
        w.bits(1, 1).bits(1, 1); // temporal mvp, strong intra smoothing
        // VUI: SAR 255, video signal with colour, chroma loc, default display
        // window, timing 60000/1001 per picture.
        w.bits(1, 1).bits(1, 1).bits(8, 255).bits(16, 1).bits(16, 1);
        w.bits(1, 0)
            .bits(1, 1)
            .bits(3, 5)
            .bits(1, 0)
            .bits(1, 1)
            .bits(24, 0x01_0101);
        w.bits(1, 1).ue(0).ue(0);
        w.bits(1, 0).bits(1, 0).bits(1, 0);
        w.bits(1, 1).ue(0).ue(0).ue(0).ue(0);
        w.bits(1, 1).bits(32, 1001).bits(32, 60000).bits(1, 0);
        w.bits(1, 0);
        w.nal(&[0x42, 0x01])
    }

    #[test]
    fn sub_layers_window_scaling_lists_and_rps() {
        for sub_layers in 1..=7 {
            let sps = parse_sps(&rich_sps(sub_layers)).unwrap();
            assert_eq!(sps.max_sub_layers as u32, sub_layers);
            assert_eq!(sps.profile.general_profile_idc, 4);
            assert!(sps.profile.general_tier_flag);
            assert_eq!(sps.profile.general_level_idc, 153, "{sub_layers}");
            assert_eq!(
                sps.profile.general_constraint_indicator_flags,
                [0xb0, 0, 0, 0, 0, 0]
            );
            assert_eq!(sps.seq_parameter_set_id, 3);
            assert_eq!(sps.chroma_format_idc, 2);
            // 4:2:2: SubWidthC 2, SubHeightC 1.
            assert_eq!((sps.width, sps.height), (1928 - 2 * 4, 1088 - 4));
            assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (10, 10));
            assert_eq!(sps.frame_rate, Some((60000, 1001)), "{sub_layers}");
            assert_eq!(sps.max_num_reorder_pics, Some(3), "{sub_layers}");
        }
    }

    #[test]
    fn errors_instead_of_panicking() {
        assert!(matches!(
            parse_sps(&[]),
            Err(H265Error::WrongNalType { found: None, .. })
        ));
        assert!(matches!(
            parse_sps(&[0x44, 0x01, 1, 2]),
            Err(H265Error::WrongNalType {
                found: Some(34),
                ..
            })
        ));
        assert_eq!(parse_sps(&[0xc2, 0x01]), Err(H265Error::ForbiddenZeroBit));
        assert_eq!(
            parse_sps(&[0x42, 0x09, 0x01]),
            Err(H265Error::NotBaseLayer { nuh_layer_id: 1 })
        );
        for len in 0..SPS_X265.len() {
            match parse_sps(&SPS_X265[..len]) {
                // A cut after the bit depths costs only the frame rate.
                Ok(sps) => assert!(len >= 20 && (sps.width, sps.height) == (320, 240)),
                Err(e) => assert!(
                    matches!(
                        e,
                        H265Error::Truncated { .. } | H265Error::WrongNalType { .. }
                    ),
                    "{len}: {e}"
                ),
            }
        }
    }

    #[test]
    fn rejects_a_window_as_large_as_the_picture() {
        let mut w = BitWriter::default();
        w.bits(8, 0x01)
            .bits(8, 0x01)
            .bits(32, 0x6000_0000)
            .bits(32, 0x9000_0000);
        w.bits(16, 0).bits(8, 60).ue(0).ue(1).ue(64).ue(64);
        w.bits(1, 1).ue(16).ue(16).ue(0).ue(0).ue(0).ue(0);
        assert_eq!(
            parse_sps(&w.nal(&[0x42, 0x01])),
            Err(H265Error::BadConformanceWindow {
                coded_width: 64,
                coded_height: 64
            })
        );
    }
}
