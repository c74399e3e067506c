//! Sequence parameter set parsing (ITU-T H.264 (08/2021) 7.3.2.1.1, E.1.1).

use super::{nal_type, nal_unit_type};
use crate::bits::{BitError, BitReader, reduced_ratio, skip_vui_prefix, unescape};

/// Why an SPS (or the parameter sets around it) could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H264Error {
    /// The NAL unit is not a sequence parameter set.
    #[error("expected an SPS NAL unit (type 7), found type {nal_unit_type:?}")]
    NotSps {
        /// The NAL unit's type, `None` for an empty NAL unit.
        nal_unit_type: Option<u8>,
    },
    /// The NAL unit given as the PPS is not a picture parameter set.
    #[error("expected a PPS NAL unit (type 8), found type {nal_unit_type:?}")]
    NotPps {
        /// The NAL unit's type, `None` for an empty NAL unit.
        nal_unit_type: Option<u8>,
    },
    /// `forbidden_zero_bit` is set: the NAL unit is damaged.
    #[error("forbidden_zero_bit is set in the NAL unit header")]
    ForbiddenZeroBit,
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
    /// The cropping window is larger than the coded picture.
    #[error("SPS cropping window removes the whole {coded_width}x{coded_height} picture")]
    BadCropping {
        /// Coded width in luma samples.
        coded_width: u32,
        /// Coded height in luma samples.
        coded_height: u32,
    },
}

impl From<BitError> for H264Error {
    fn from(e: BitError) -> Self {
        match e {
            BitError::Truncated { field } => H264Error::Truncated { field },
            BitError::OutOfRange { field, value } => H264Error::OutOfRange { field, value },
        }
    }
}

/// What Ferrocast reads from a sequence parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpsInfo {
    /// `profile_idc` (66 Baseline, 77 Main, 100 High, ...).
    pub profile_idc: u8,
    /// The byte holding `constraint_set0_flag` .. `constraint_set5_flag` and
    /// the two reserved zero bits.
    pub constraint_flags: u8,
    /// `level_idc` (level × 10, e.g. 31 for 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub seq_parameter_set_id: u32,
    /// `chroma_format_idc` (0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4).
    pub chroma_format_idc: u32,
    /// Luma bit depth (8 + `bit_depth_luma_minus8`).
    pub bit_depth_luma: u32,
    /// Chroma bit depth (8 + `bit_depth_chroma_minus8`).
    pub bit_depth_chroma: u32,
    /// `frame_mbs_only_flag`: false when the stream may hold field pictures.
    pub frame_mbs_only: bool,
    /// `pic_order_cnt_type` (0, 1 or 2).
    pub pic_order_cnt_type: u32,
    /// `max_num_ref_frames`.
    pub max_num_ref_frames: u32,
    /// Width in luma samples after the cropping window is applied.
    pub width: u32,
    /// Height in luma samples after the cropping window is applied.
    pub height: u32,
    /// Frames per second from the VUI timing info as a reduced
    /// (numerator, denominator), if signalled.
    pub frame_rate: Option<(u32, u32)>,
    /// `max_num_reorder_frames` from the VUI `bitstream_restriction`, if
    /// signalled (x264 writes it).
    pub max_num_reorder_frames: Option<u32>,
    /// How many frames may precede a frame in decoding order and follow it
    /// in output order: `max_num_reorder_frames`, or the value E.2.1 infers
    /// when it is absent (see [`reorder_depth`](parse_sps)).
    pub reorder_depth: u32,
}

/// The RBSP of a NAL unit: the payload after the one-byte header with every
/// `emulation_prevention_three_byte` removed (H.264 7.3.1, 7.4.1).
///
/// "emulation_prevention_three_byte is a byte equal to 0x03. When an
/// emulation_prevention_three_byte is present in the NAL unit, it shall be
/// discarded by the decoding process."
pub fn rbsp_from_nal(nal: &[u8]) -> Vec<u8> {
    unescape(nal.get(1..).unwrap_or_default())
}

/// Parses an SPS NAL unit (without start code; the first byte is the NAL
/// header).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, H264Error> {
    let header = *nal.first().ok_or(H264Error::NotSps {
        nal_unit_type: None,
    })?;
    if header & 0x80 != 0 {
        return Err(H264Error::ForbiddenZeroBit);
    }
    if nal_unit_type(nal) != Some(nal_type::SPS) {
        return Err(H264Error::NotSps {
            nal_unit_type: nal_unit_type(nal),
        });
    }
    let rbsp = rbsp_from_nal(nal);
    let mut r = BitReader::new(&rbsp);

    let profile_idc = r.u8("profile_idc")?;
    let constraint_flags = r.u8("constraint_set_flags")?;
    let level_idc = r.u8("level_idc")?;
    let seq_parameter_set_id = r.ue_max("seq_parameter_set_id", 31)?;

    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    let mut bit_depth_chroma = 8;
    // 7.3.2.1.1: "if( profile_idc = = 100 | | profile_idc = = 110 | |
    // profile_idc = = 122 | | profile_idc = = 244 | | profile_idc = = 44 | |
    // profile_idc = = 83 | | profile_idc = = 86 | | profile_idc = = 118 | |
    // profile_idc = = 128 | | profile_idc = = 138 | | profile_idc = = 139 | |
    // profile_idc = = 134 | | profile_idc = = 135 ) {"
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue_max("chroma_format_idc", 3)?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag("separate_colour_plane_flag")?;
        }
        // 7.4.2.1.1: "bit_depth_luma_minus8 ... shall be in the range of 0 to 6".
        bit_depth_luma = 8 + r.ue_max("bit_depth_luma_minus8", 6)?;
        bit_depth_chroma = 8 + r.ue_max("bit_depth_chroma_minus8", 6)?;
        r.flag("qpprime_y_zero_transform_bypass_flag")?;
        if r.flag("seq_scaling_matrix_present_flag")? {
            // "for( i = 0; i < ( ( chroma_format_idc != 3 ) ? 8 : 12 ); i++ )"
            let lists = if chroma_format_idc != 3 { 8 } else { 12 };
            for i in 0..lists {
                if r.flag("seq_scaling_list_present_flag")? {
                    // "if( i < 6 ) scaling_list( ScalingList4x4[ i ], 16, ...)
                    //  else scaling_list( ScalingList8x8[ i − 6 ], 64, ...)"
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }

    // 7.4.2.1.1: "The value of log2_max_frame_num_minus4 shall be in the range
    // of 0 to 12, inclusive."
    r.ue_max("log2_max_frame_num_minus4", 12)?;
    let pic_order_cnt_type = r.ue_max("pic_order_cnt_type", 2)?;
    match pic_order_cnt_type {
        0 => {
            r.ue_max("log2_max_pic_order_cnt_lsb_minus4", 12)?;
        }
        1 => {
            r.flag("delta_pic_order_always_zero_flag")?;
            r.se("offset_for_non_ref_pic")?;
            r.se("offset_for_top_to_bottom_field")?;
            // "num_ref_frames_in_pic_order_cnt_cycle shall be in the range of
            // 0 to 255, inclusive."
            let cycle = r.ue_max("num_ref_frames_in_pic_order_cnt_cycle", 255)?;
            for _ in 0..cycle {
                r.se("offset_for_ref_frame")?;
            }
        }
        _ => {}
    }
    let max_num_ref_frames = r.ue("max_num_ref_frames")?;
    r.flag("gaps_in_frame_num_value_allowed_flag")?;
    let width_mbs = u64::from(r.ue("pic_width_in_mbs_minus1")?) + 1;
    let height_map_units = u64::from(r.ue("pic_height_in_map_units_minus1")?) + 1;
    let frame_mbs_only = r.flag("frame_mbs_only_flag")?;
    if !frame_mbs_only {
        r.flag("mb_adaptive_frame_field_flag")?;
    }
    r.flag("direct_8x8_inference_flag")?;
    let crop = if r.flag("frame_cropping_flag")? {
        [
            r.ue("frame_crop_left_offset")?,
            r.ue("frame_crop_right_offset")?,
            r.ue("frame_crop_top_offset")?,
            r.ue("frame_crop_bottom_offset")?,
        ]
    } else {
        [0; 4]
    };

    // 7.4.2.1.1, equations (7-13)..(7-20).
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let coded_width = width_mbs * 16;
    let coded_height = field_factor * height_map_units * 16;
    // "If ChromaArrayType is equal to 0, CropUnitX = 1, CropUnitY = 2 −
    // frame_mbs_only_flag. Otherwise CropUnitX = SubWidthC, CropUnitY =
    // SubHeightC * ( 2 − frame_mbs_only_flag )" (Table 6-1 for SubWidthC/C).
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let crop_x = crop_unit_x * (u64::from(crop[0]) + u64::from(crop[1]));
    let crop_y = crop_unit_y * (u64::from(crop[2]) + u64::from(crop[3]));
    let (width, height) = match (
        coded_width.checked_sub(crop_x),
        coded_height.checked_sub(crop_y),
    ) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(H264Error::BadCropping {
                coded_width: clamp_u32(coded_width),
                coded_height: clamp_u32(coded_height),
            });
        }
    };
    let width = u32::try_from(width).map_err(|_| H264Error::OutOfRange {
        field: "pic_width_in_mbs_minus1",
        value: width_mbs - 1,
    })?;
    let height = u32::try_from(height).map_err(|_| H264Error::OutOfRange {
        field: "pic_height_in_map_units_minus1",
        value: height_map_units - 1,
    })?;

    let mut vui = Vui::default();
    if r.flag("vui_parameters_present_flag")? {
        // The VUI only adds the frame rate and the reorder depth, both
        // optional where they are used; encoders in the wild truncate or
        // botch the VUI, so a damaged VUI costs what follows the damage,
        // not the stream.
        let _ = read_vui(&mut r, &mut vui);
    }
    let reorder_depth = vui.max_num_reorder_frames.unwrap_or_else(|| {
        inferred_reorder_depth(
            profile_idc,
            constraint_flags,
            level_idc,
            width_mbs
                .saturating_mul(height_map_units)
                .saturating_mul(field_factor),
        )
    });

    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        frame_mbs_only,
        pic_order_cnt_type,
        max_num_ref_frames,
        width,
        height,
        frame_rate: vui.frame_rate,
        max_num_reorder_frames: vui.max_num_reorder_frames,
        reorder_depth,
    })
}

/// The reorder depth when the VUI does not signal `max_num_reorder_frames`.
///
/// Baseline (`profile_idc` 66) has no B slices: nothing is reordered. E.2.1
/// for the rest: "When the max_num_reorder_frames syntax element is not
/// present, the value of max_num_reorder_frames value shall be inferred as
/// follows: – If profile_idc is equal to 44, 86, 100, 110, 122, or 244 and
/// constraint_set3_flag is equal to 1, the value of max_num_reorder_frames
/// shall be inferred to be equal to 0. – Otherwise (...), the value of
/// max_num_reorder_frames shall be inferred to be equal to
/// MaxDpbFrames" (A.3.1 item h: "MaxDpbFrames is equal to Min( MaxDpbMbs
/// / ( PicWidthInMbs * FrameHeightInMbs ), 16 )", MaxDpbMbs from Table A-1).
/// An unknown level gives the largest depth, 16: a depth larger than the
/// stream's only delays decode times, a smaller one breaks them.
fn inferred_reorder_depth(profile_idc: u8, constraint_flags: u8, level_idc: u8, mbs: u64) -> u32 {
    let constraint_set3 = constraint_flags & 0x10 != 0;
    if profile_idc == 66
        || (matches!(profile_idc, 44 | 86 | 100 | 110 | 122 | 244) && constraint_set3)
    {
        return 0;
    }
    // Table A-1, MaxDpbMbs by level_idc (9 is level 1b).
    let max_dpb_mbs: u64 = match level_idc {
        9 | 10 => 396,
        11 => 900,
        12 | 13 | 20 => 2376,
        21 => 4752,
        22 | 30 => 8100,
        31 => 18_000,
        32 => 20_480,
        40 | 41 => 32_768,
        42 => 34_816,
        50 => 110_400,
        51 | 52 => 184_320,
        60..=62 => 696_320,
        _ => return 16,
    };
    u32::try_from((max_dpb_mbs / mbs.max(1)).min(16)).unwrap_or(16)
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// 7.3.2.1.1.1 scaling_list( scalingList, sizeOfScalingList, ... ): only the
/// bits are consumed; the matrices do not matter to a muxer.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), H264Error> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            // "The value of delta_scale shall be in the range of −128 to +127"
            let delta = r.se("delta_scale")?;
            if !(-128..=127).contains(&delta) {
                return Err(H264Error::OutOfRange {
                    field: "delta_scale",
                    value: delta.unsigned_abs(),
                });
            }
            next_scale = (last_scale + delta + 256).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// What Ferrocast reads from the VUI.
#[derive(Debug, Default)]
struct Vui {
    frame_rate: Option<(u32, u32)>,
    max_num_reorder_frames: Option<u32>,
}

/// E.1.1 vui_parameters( ), up to and including `max_num_reorder_frames`.
/// What was read before an error stays in `out`.
fn read_vui(r: &mut BitReader<'_>, out: &mut Vui) -> Result<(), H264Error> {
    skip_vui_prefix(r)?;
    if r.flag("timing_info_present_flag")? {
        let num_units_in_tick = r.bits(32, "num_units_in_tick")?;
        let time_scale = r.bits(32, "time_scale")?;
        // E.2.1: "num_units_in_tick shall be greater than 0", "time_scale
        // shall be greater than 0". One frame lasts two ticks for
        // progressive video (field-based clock), so fps = time_scale / (2 *
        // num_units_in_tick).
        if num_units_in_tick != 0 && time_scale != 0 {
            out.frame_rate = reduced_ratio(u64::from(time_scale), 2 * u64::from(num_units_in_tick));
        }
        r.flag("fixed_frame_rate_flag")?;
    }
    let nal_hrd = r.flag("nal_hrd_parameters_present_flag")?;
    if nal_hrd {
        skip_hrd_parameters(r)?;
    }
    let vcl_hrd = r.flag("vcl_hrd_parameters_present_flag")?;
    if vcl_hrd {
        skip_hrd_parameters(r)?;
    }
    if nal_hrd || vcl_hrd {
        r.flag("low_delay_hrd_flag")?;
    }
    r.flag("pic_struct_present_flag")?;
    if r.flag("bitstream_restriction_flag")? {
        r.flag("motion_vectors_over_pic_boundaries_flag")?;
        r.ue("max_bytes_per_pic_denom")?;
        r.ue("max_bits_per_mb_denom")?;
        r.ue("log2_max_mv_length_horizontal")?;
        r.ue("log2_max_mv_length_vertical")?;
        // E.2.1: "The value of max_num_reorder_frames shall be in the range
        // of 0 to max_dec_frame_buffering, inclusive", which is at most
        // MaxDpbFrames ≤ 16.
        out.max_num_reorder_frames = Some(r.ue_max("max_num_reorder_frames", 16)?);
    }
    Ok(())
}

/// E.1.2 hrd_parameters( ): only the bits are consumed.
fn skip_hrd_parameters(r: &mut BitReader<'_>) -> Result<(), H264Error> {
    // E.2.2: "The value of cpb_cnt_minus1 shall be in the range of 0 to 31".
    let cpb_cnt = r.ue_max("cpb_cnt_minus1", 31)? + 1;
    r.bits(4, "bit_rate_scale")?;
    r.bits(4, "cpb_size_scale")?;
    for _ in 0..cpb_cnt {
        r.ue("bit_rate_value_minus1")?;
        r.ue("cpb_size_value_minus1")?;
        r.flag("cbr_flag")?;
    }
    // initial_cpb_removal_delay_length_minus1, cpb_removal_delay_length_minus1,
    // dpb_output_delay_length_minus1, time_offset_length: u(5) each.
    r.skip(20, "time_offset_length")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bits::BitWriter;

    /// x264's 1280x720 High@3.2 SPS with VUI timing for 50 fps (from
    /// `ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=50 -c:v libx264`).
    const SPS_720P: [u8; 25] = [
        0x67, 0x64, 0x00, 0x20, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x06, 0x40, 0xf1, 0x83, 0x19, 0x60,
    ];

    #[test]
    fn parses_x264_high_profile_sps() {
        let sps = parse_sps(&SPS_720P).unwrap();
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.level_idc, 32);
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert!(sps.frame_mbs_only);
        assert_eq!(sps.frame_rate, Some((50, 1)));
    }

    /// x264 with `-bf 3` (b-pyramid): the VUI's bitstream_restriction says
    /// `max_num_reorder_frames` 2 (ffmpeg's trace_headers agrees). From
    /// `ffmpeg -f lavfi -i testsrc2=size=320x240:rate=25 -c:v libx264
    /// -preset veryfast -bf 3 -f h264`.
    const SPS_X264_BF3: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];

    /// The same with `-profile:v baseline`: reorder 0, signalled.
    const SPS_X264_BASELINE: [u8; 22] = [
        0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8,
    ];

    #[test]
    fn reads_the_reorder_depth_x264_signals() {
        let sps = parse_sps(&SPS_X264_BF3).unwrap();
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.frame_rate, Some((25, 1)));
        assert_eq!(sps.max_num_reorder_frames, Some(2));
        assert_eq!(sps.reorder_depth, 2);
        let sps = parse_sps(&SPS_X264_BASELINE).unwrap();
        assert_eq!(sps.profile_idc, 66);
        assert_eq!(sps.max_num_reorder_frames, Some(0));
        assert_eq!(sps.reorder_depth, 0);
        assert_eq!(sps.frame_rate, Some((25, 1)));
    }

    #[test]
    fn infers_the_reorder_depth_when_the_vui_is_silent() {
        // Baseline without VUI: no B slices.
        let mut w = BitWriter::default();
        baseline_sps(&mut w, None, true);
        let sps = parse_sps(&w.nal(&[0x67])).unwrap();
        assert_eq!((sps.max_num_reorder_frames, sps.reorder_depth), (None, 0));
        // Main, level 3 (MaxDpbMbs 8100), 20x15 macroblocks: 27 frames,
        // capped at 16. Level 1 (396): 396 / 300 = 1.
        assert_eq!(inferred_reorder_depth(77, 0, 30, 300), 16);
        assert_eq!(inferred_reorder_depth(77, 0, 10, 300), 1);
        // High 4:4:4 Intra (constraint_set3): 0. Unknown level: 16.
        assert_eq!(inferred_reorder_depth(244, 0x10, 40, 8160), 0);
        assert_eq!(inferred_reorder_depth(100, 0, 99, 8160), 16);
        // Level 4: 32768 / 8160 (1080p) = 4.
        assert_eq!(inferred_reorder_depth(100, 0, 40, 8160), 4);
    }

    #[test]
    fn removes_emulation_prevention_bytes() {
        assert_eq!(
            rbsp_from_nal(&[0x67, 0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }

    fn baseline_sps(w: &mut BitWriter, crop: Option<[u64; 4]>, frame_mbs_only: bool) {
        w.bits(8, 66).bits(8, 0xc0).bits(8, 30).ue(0);
        w.ue(0).ue(1); // log2_max_frame_num_minus4, poc type 1
        w.bits(1, 0).se(-3).se(5).ue(2).se(7).se(-9);
        w.ue(1).bits(1, 0).ue(19).ue(14); // 320 x (15 map units)
        w.bits(1, u64::from(frame_mbs_only));
        if !frame_mbs_only {
            w.bits(1, 0);
        }
        w.bits(1, 1);
        match crop {
            Some(c) => {
                w.bits(1, 1).ue(c[0]).ue(c[1]).ue(c[2]).ue(c[3]);
            }
            None => {
                w.bits(1, 0);
            }
        }
        w.bits(1, 0); // no VUI
    }

    #[test]
    fn cropping_and_fields() {
        let mut w = BitWriter::default();
        baseline_sps(&mut w, Some([1, 2, 3, 4]), true);
        let sps = parse_sps(&w.nal(&[0x67])).unwrap();
        assert_eq!(sps.pic_order_cnt_type, 1);
        assert_eq!((sps.width, sps.height), (320 - 2 * 3, 240 - 2 * 7));

        let mut w = BitWriter::default();
        baseline_sps(&mut w, Some([0, 0, 1, 1]), false);
        let sps = parse_sps(&w.nal(&[0x67])).unwrap();
        // Field coding: 15 map units are 30 macroblock rows; CropUnitY = 4.
        assert_eq!((sps.width, sps.height), (320, 480 - 8));
        assert_eq!(sps.frame_rate, None);
    }

    #[test]
    fn rejects_bad_cropping() {
        let mut w = BitWriter::default();
        baseline_sps(&mut w, Some([100, 100, 0, 0]), true);
        assert!(matches!(
            parse_sps(&w.nal(&[0x67])),
            Err(H264Error::BadCropping { .. })
        ));
    }

    #[test]
    fn skips_scaling_lists_for_high_444() {
        let mut w = BitWriter::default();
        w.bits(8, 244).bits(8, 0).bits(8, 40).ue(3);
        w.ue(3).bits(1, 0).ue(2).ue(2).bits(1, 0); // 4:4:4, 10 bit
        w.bits(1, 1); // seq_scaling_matrix_present_flag
        for i in 0..12 {
            if i % 3 == 0 {
                w.bits(1, 0);
                continue;
            }
            w.bits(1, 1);
            let size = if i < 6 { 16 } else { 64 };
            if i == 4 {
                w.se(-8); // first delta makes nextScale 0: use default list
                continue;
            }
            for j in 0..size {
                w.se(if j % 2 == 0 { 5 } else { -4 });
            }
        }
        w.ue(0)
            .ue(2)
            .ue(4)
            .bits(1, 0)
            .ue(119)
            .ue(67)
            .bits(1, 1)
            .bits(1, 1);
        w.bits(1, 1).ue(0).ue(0).ue(0).ue(8);
        // VUI with aspect ratio 255, colour description and timing for 30000/1001.
        w.bits(1, 1);
        w.bits(1, 1).bits(8, 255).bits(16, 4).bits(16, 3);
        w.bits(1, 0)
            .bits(1, 1)
            .bits(3, 5)
            .bits(1, 0)
            .bits(1, 1)
            .bits(24, 0x010101);
        w.bits(1, 0)
            .bits(1, 1)
            .bits(32, 1001)
            .bits(32, 60000)
            .bits(1, 1);
        // NAL HRD with two CPB specs, no VCL HRD, low delay, pic_struct,
        // then bitstream_restriction with max_num_reorder_frames 3.
        w.bits(1, 1).ue(1).bits(4, 2).bits(4, 3);
        w.ue(1000).ue(2000).bits(1, 0).ue(3000).ue(4000).bits(1, 1);
        w.bits(20, 0xabcde);
        w.bits(1, 0).bits(1, 0).bits(1, 1);
        w.bits(1, 1)
            .bits(1, 1)
            .ue(2)
            .ue(1)
            .ue(16)
            .ue(16)
            .ue(3)
            .ue(4);
        let sps = parse_sps(&w.nal(&[0x67])).unwrap();
        assert_eq!(sps.max_num_reorder_frames, Some(3));
        assert_eq!(sps.reorder_depth, 3);
        assert_eq!(sps.chroma_format_idc, 3);
        assert_eq!(sps.bit_depth_luma, 10);
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.frame_rate, Some((30000, 1001)));
    }

    #[test]
    fn errors_instead_of_panicking() {
        assert!(matches!(
            parse_sps(&[]),
            Err(H264Error::NotSps {
                nal_unit_type: None
            })
        ));
        assert!(matches!(
            parse_sps(&[0x68, 1, 2]),
            Err(H264Error::NotSps { .. })
        ));
        assert_eq!(parse_sps(&[0xe7, 1]), Err(H264Error::ForbiddenZeroBit));
        for len in 1..SPS_720P.len() {
            match parse_sps(&SPS_720P[..len]) {
                // A cut inside the VUI costs only the frame rate.
                Ok(sps) => assert!(len >= 10 && (sps.width, sps.height) == (1280, 720)),
                Err(e) => assert!(matches!(e, H264Error::Truncated { .. }), "{len}: {e}"),
            }
        }
        // 40 zero bits: an exp-Golomb code longer than 32 bits.
        assert!(matches!(
            parse_sps(&[0x67, 66, 0, 30, 0, 0, 0, 0, 0, 1]),
            Err(H264Error::OutOfRange { .. })
        ));
    }
}
