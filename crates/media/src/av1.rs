//! AV1 bitstreams: OBU headers and `leb128` sizes (AV1 specification
//! §5.3, §4.10.5), the sequence header OBU (§5.5), the start of frame headers
//! (§5.9.2) for random access detection, the [`Av1Params`] a muxer needs with
//! its `av01` codec string and `av1C` record (AV1 Codec ISO Media File Format
//! Binding), and the start-code framing of AV1 in MPEG-TS (AOM "Carriage of
//! AV1 in MPEG-2 TS" §"Start-code based format").
//!
//! Temporal units travel through Ferrocast in the low overhead bitstream
//! format (§5.2) with every OBU carrying its `obu_size` field: that is what
//! [`temporal_unit_from_ts`] produces from a PES payload, and what
//! `ferrocast-cmaf` turns into `av01` samples.
//!
//! Everything here takes untrusted bytes and returns a typed [`Av1Error`]
//! rather than panicking.
//!
//! ```
//! use ferrocast_media::av1::{obu_type, obus};
//!
//! // A temporal delimiter (type 2, obu_has_size_field, size 0) and a
//! // padding OBU (type 15) of two bytes.
//! let tu = [0x12, 0x00, 0x7a, 0x02, 0xaa, 0xbb];
//! let types: Vec<u8> = obus(&tu).map(|o| o.unwrap().header.obu_type).collect();
//! assert_eq!(types, [obu_type::TEMPORAL_DELIMITER, obu_type::PADDING]);
//! ```

use bytes::Bytes;

use crate::bits::{BitError, BitReader, reduced_ratio, unescape};

/// OBU types this crate names (AV1 §6.2.2, Table "obu_type").
pub mod obu_type {
    /// `OBU_SEQUENCE_HEADER`.
    pub const SEQUENCE_HEADER: u8 = 1;
    /// `OBU_TEMPORAL_DELIMITER`.
    pub const TEMPORAL_DELIMITER: u8 = 2;
    /// `OBU_FRAME_HEADER`.
    pub const FRAME_HEADER: u8 = 3;
    /// `OBU_TILE_GROUP`.
    pub const TILE_GROUP: u8 = 4;
    /// `OBU_METADATA`.
    pub const METADATA: u8 = 5;
    /// `OBU_FRAME`: a frame header and a tile group in one OBU.
    pub const FRAME: u8 = 6;
    /// `OBU_REDUNDANT_FRAME_HEADER`.
    pub const REDUNDANT_FRAME_HEADER: u8 = 7;
    /// `OBU_TILE_LIST` (large scale tile decoding only).
    pub const TILE_LIST: u8 = 8;
    /// `OBU_PADDING`.
    pub const PADDING: u8 = 15;
}

/// Why AV1 bytes could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Av1Error {
    /// An OBU header, size field or payload runs past the end of the data.
    #[error("OBU at byte {offset} is truncated: needs {needed} bytes, {available} available")]
    TruncatedObu {
        /// Where the OBU starts.
        offset: usize,
        /// Bytes it needs from `offset`.
        needed: usize,
        /// Bytes there are from `offset`.
        available: usize,
    },
    /// `obu_forbidden_bit` is set (§6.2.1: "must be set to 0").
    #[error("OBU at byte {offset} has obu_forbidden_bit set")]
    ForbiddenBit {
        /// Where the OBU starts.
        offset: usize,
    },
    /// A `leb128()` value longer than 8 bytes or above 2^32 − 1 (§4.10.5).
    #[error("bad leb128 obu_size at byte {offset}")]
    BadLeb128 {
        /// Where the size field starts.
        offset: usize,
    },
    /// Bytes other than zero after an OBU whose `obu_size` says it ended.
    #[error("{bytes} unexpected bytes after the OBU at byte {offset}")]
    TrailingBytes {
        /// Where the OBU starts.
        offset: usize,
        /// How many bytes follow it.
        bytes: usize,
    },
    /// An access unit with no OBUs at all.
    #[error("access unit holds no OBUs")]
    Empty,
    /// An OBU of another type where a particular one was expected.
    #[error("expected OBU type {expected}, found {found}")]
    WrongObuType {
        /// The type needed.
        expected: u8,
        /// The type found.
        found: u8,
    },
    /// A header ended before this syntax element.
    #[error("truncated at {field}")]
    Truncated {
        /// The syntax element.
        field: &'static str,
    },
    /// A syntax element has a value this parser does not accept.
    #[error("{field} = {value} is out of range")]
    OutOfRange {
        /// The syntax element.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

impl From<BitError> for Av1Error {
    fn from(e: BitError) -> Self {
        match e {
            BitError::Truncated { field } => Av1Error::Truncated { field },
            BitError::OutOfRange { field, value } => Av1Error::OutOfRange { field, value },
        }
    }
}

/// Largest value `leb128()` may code: "It is a requirement of bitstream
/// conformance that the value returned from the leb128 parsing process is
/// less than or equal to (1 << 32) - 1" (§4.10.5).
const LEB128_MAX_BYTES: usize = 8;

/// Reads a `leb128()` value (§4.10.5) from the start of `data`: the value
/// and the bytes it took.
///
/// Non-minimal encodings (padded with `0x80` bytes) are accepted, as the
/// specification allows; more than 8 bytes or a value above 2^32 − 1 is
/// [`Av1Error::BadLeb128`], running out of bytes
/// [`Av1Error::TruncatedObu`] (both with offset 0).
pub fn read_leb128(data: &[u8]) -> Result<(u32, usize), Av1Error> {
    let mut value = 0u64;
    for i in 0..LEB128_MAX_BYTES {
        let Some(&byte) = data.get(i) else {
            return Err(Av1Error::TruncatedObu {
                offset: 0,
                needed: i + 1,
                available: data.len(),
            });
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value)
                .map(|v| (v, i + 1))
                .map_err(|_| Av1Error::BadLeb128 { offset: 0 });
        }
    }
    Err(Av1Error::BadLeb128 { offset: 0 })
}

/// Appends `value` as a minimal `leb128()` (1 to 5 bytes).
pub fn write_leb128(value: u32, out: &mut Vec<u8>) {
    let mut v = value;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `obu_extension_header()` fields (§5.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObuExtension {
    /// `temporal_id` (3 bits).
    pub temporal_id: u8,
    /// `spatial_id` (2 bits).
    pub spatial_id: u8,
}

/// `obu_header()` (§5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObuHeader {
    /// `obu_type` (4 bits), see [`obu_type`].
    pub obu_type: u8,
    /// The extension header, when `obu_extension_flag` is 1.
    pub extension: Option<ObuExtension>,
    /// `obu_has_size_field`: an `obu_size` follows the header.
    pub has_size_field: bool,
}

impl ObuHeader {
    /// Parses the one- or two-byte header at the start of `data`.
    ///
    /// # Errors
    ///
    /// [`Av1Error::TruncatedObu`] when `data` is shorter than the header,
    /// [`Av1Error::ForbiddenBit`] when `obu_forbidden_bit` is set (offsets
    /// are 0).
    pub fn parse(data: &[u8]) -> Result<Self, Av1Error> {
        let Some(&b0) = data.first() else {
            return Err(Av1Error::TruncatedObu {
                offset: 0,
                needed: 1,
                available: 0,
            });
        };
        if b0 & 0x80 != 0 {
            return Err(Av1Error::ForbiddenBit { offset: 0 });
        }
        let extension = if b0 & 0x04 != 0 {
            let Some(&b1) = data.get(1) else {
                return Err(Av1Error::TruncatedObu {
                    offset: 0,
                    needed: 2,
                    available: data.len(),
                });
            };
            Some(ObuExtension {
                temporal_id: b1 >> 5,
                spatial_id: (b1 >> 3) & 0x03,
            })
        } else {
            None
        };
        Ok(ObuHeader {
            obu_type: (b0 >> 3) & 0x0f,
            extension,
            has_size_field: b0 & 0x02 != 0,
        })
    }

    /// Bytes of the header: 1, or 2 with the extension.
    pub fn encoded_len(&self) -> usize {
        1 + usize::from(self.extension.is_some())
    }

    /// Appends the header's bytes, with `obu_has_size_field` as given and
    /// the reserved bits zero.
    pub fn write(&self, has_size_field: bool, out: &mut Vec<u8>) {
        out.push(
            (self.obu_type << 3)
                | (u8::from(self.extension.is_some()) << 2)
                | (u8::from(has_size_field) << 1),
        );
        if let Some(ext) = self.extension {
            out.push(((ext.temporal_id & 0x07) << 5) | ((ext.spatial_id & 0x03) << 3));
        }
    }
}

/// One OBU found by [`obus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// Its header.
    pub header: ObuHeader,
    /// Its payload: `obu_size` bytes after the header and size field, or
    /// everything after the header when it has no size field.
    pub payload: &'a [u8],
    /// The whole OBU: header, size field and payload.
    pub bytes: &'a [u8],
    /// Where it starts in the data given to [`obus`].
    pub offset: usize,
}

impl Obu<'_> {
    /// Appends the OBU in the form Ferrocast carries: the same header with
    /// `obu_has_size_field` set, a minimal `obu_size`, the payload.
    pub fn write_sized(&self, out: &mut Vec<u8>) {
        self.header.write(true, out);
        // A payload is a sub-slice of data whose length was checked to fit
        // a leb128 value, or of at most the caller's slice; saturate anyway.
        write_leb128(u32::try_from(self.payload.len()).unwrap_or(u32::MAX), out);
        out.extend_from_slice(self.payload);
    }
}

/// Iterator over the OBUs of a low overhead bitstream format buffer (§5.2),
/// from [`obus`].
#[derive(Debug, Clone)]
pub struct Obus<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

/// The OBUs in `data`, each `open_bitstream_unit( sz )` of §5.3.1: an OBU
/// with `obu_has_size_field` 0 takes the rest of the data.
///
/// The iterator yields one `Err` at the first malformed OBU and then ends.
pub fn obus(data: &[u8]) -> Obus<'_> {
    Obus {
        data,
        pos: 0,
        failed: false,
    }
}

impl<'a> Iterator for Obus<'a> {
    type Item = Result<Obu<'a>, Av1Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let offset = self.pos;
        match parse_obu(&self.data[offset..], offset) {
            Ok(obu) => {
                self.pos += obu.bytes.len();
                Some(Ok(obu))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses the OBU at the start of `data` (which starts at `offset` of the
/// caller's buffer, for error context).
fn parse_obu(data: &[u8], offset: usize) -> Result<Obu<'_>, Av1Error> {
    let at = |e: Av1Error| match e {
        Av1Error::TruncatedObu {
            needed, available, ..
        } => Av1Error::TruncatedObu {
            offset,
            needed,
            available,
        },
        Av1Error::ForbiddenBit { .. } => Av1Error::ForbiddenBit { offset },
        other => other,
    };
    let header = ObuHeader::parse(data).map_err(at)?;
    let header_len = header.encoded_len();
    let (payload_start, payload_len) = if header.has_size_field {
        let (size, leb_len) = read_leb128(&data[header_len..]).map_err(|e| match e {
            Av1Error::BadLeb128 { .. } => Av1Error::BadLeb128 {
                offset: offset + header_len,
            },
            Av1Error::TruncatedObu { needed, .. } => Av1Error::TruncatedObu {
                offset,
                needed: header_len + needed,
                available: data.len(),
            },
            other => other,
        })?;
        (header_len + leb_len, size as usize)
    } else {
        (header_len, data.len() - header_len)
    };
    let end = payload_start.saturating_add(payload_len);
    if end > data.len() {
        return Err(Av1Error::TruncatedObu {
            offset,
            needed: end,
            available: data.len(),
        });
    }
    Ok(Obu {
        header,
        payload: &data[payload_start..end],
        bytes: &data[..end],
        offset,
    })
}

/// `timing_info( )` (§5.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingInfo {
    /// `num_units_in_display_tick`.
    pub num_units_in_display_tick: u32,
    /// `time_scale`.
    pub time_scale: u32,
    /// `num_ticks_per_picture_minus_1 + 1` when `equal_picture_interval`
    /// is 1.
    pub ticks_per_picture: Option<u64>,
}

/// One operating point of a sequence header (§5.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatingPoint {
    /// `operating_point_idc[ i ]`: which temporal and spatial layers it
    /// decodes (0: all of them).
    pub idc: u16,
    /// `seq_level_idx[ i ]`: level `2 + (idx >> 2)`.`idx & 3`; 31 is the
    /// maximum parameters level.
    pub seq_level_idx: u8,
    /// `seq_tier[ i ]`: false Main, true High (only coded above level 3.3).
    pub seq_tier: bool,
}

/// `color_config( )` (§5.5.2), with the values the semantics infer when
/// they are not coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColorConfig {
    /// `BitDepth`: 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub mono_chrome: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position` (0 unknown, 1 vertical, 2 colocated); 0
    /// when not coded.
    pub chroma_sample_position: u8,
    /// `color_description_present_flag`.
    pub color_description_present: bool,
    /// `color_primaries` (2, unspecified, when not coded).
    pub color_primaries: u8,
    /// `transfer_characteristics` (2, unspecified, when not coded).
    pub transfer_characteristics: u8,
    /// `matrix_coefficients` (2, unspecified, when not coded).
    pub matrix_coefficients: u8,
    /// `color_range`: true for full range.
    pub full_range: bool,
}

/// The fields of a sequence header OBU (§5.5.1) Ferrocast uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub seq_profile: u8,
    /// `still_picture`.
    pub still_picture: bool,
    /// `reduced_still_picture_header`: frame headers are then reduced too.
    pub reduced_still_picture_header: bool,
    /// `timing_info( )` when `timing_info_present_flag` is 1.
    pub timing_info: Option<TimingInfo>,
    /// The operating points, at least one.
    pub operating_points: Vec<OperatingPoint>,
    /// `max_frame_width_minus_1 + 1`.
    pub max_frame_width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub max_frame_height: u32,
    /// `color_config( )`.
    pub color: ColorConfig,
    /// `film_grain_params_present`.
    pub film_grain_params_present: bool,
}

impl SequenceHeader {
    /// Frames per second from `timing_info( )`, reduced, when the sequence
    /// signals an equal picture interval: `time_scale` ÷
    /// (`num_units_in_display_tick` × (`num_ticks_per_picture_minus_1` + 1))
    /// (§6.4.3).
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        let t = self.timing_info?;
        let ticks = t.ticks_per_picture?;
        reduced_ratio(
            u64::from(t.time_scale),
            u64::from(t.num_units_in_display_tick).checked_mul(ticks)?,
        )
    }
}

/// `uvlc()` (§4.10.3).
fn uvlc(r: &mut BitReader<'_>, field: &'static str) -> Result<u64, Av1Error> {
    let mut leading_zeros = 0u32;
    while !r.flag(field)? {
        leading_zeros += 1;
        if leading_zeros >= 32 {
            // "if ( leadingZeros >= 32 ) { return ( 1 << 32 ) - 1 }" —
            // after reading the remaining zero run, which a conforming
            // stream never has.
            return Err(Av1Error::OutOfRange {
                field,
                value: u64::from(u32::MAX),
            });
        }
    }
    let value = u64::from(r.bits(leading_zeros, field)?);
    Ok(value + (1u64 << leading_zeros) - 1)
}

/// Parses a sequence header OBU's payload (`sequence_header_obu( )`,
/// §5.5.1), the bytes after its OBU header and size.
///
/// # Errors
///
/// [`Av1Error::Truncated`] when it ends early, [`Av1Error::OutOfRange`] for
/// a reserved `seq_profile` (above 2).
pub fn parse_sequence_header(payload: &[u8]) -> Result<SequenceHeader, Av1Error> {
    let mut r = BitReader::new(payload);
    let seq_profile = r.bits(3, "seq_profile")? as u8;
    if seq_profile > 2 {
        // §6.4.1: "seq_profile ... greater than 2 ... reserved"; BitDepth
        // is not even defined for them.
        return Err(Av1Error::OutOfRange {
            field: "seq_profile",
            value: u64::from(seq_profile),
        });
    }
    let still_picture = r.flag("still_picture")?;
    let reduced_still_picture_header = r.flag("reduced_still_picture_header")?;
    let mut timing_info = None;
    let mut operating_points = Vec::new();
    if reduced_still_picture_header {
        operating_points.push(OperatingPoint {
            idc: 0,
            seq_level_idx: r.bits(5, "seq_level_idx[0]")? as u8,
            seq_tier: false,
        });
    } else {
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if r.flag("timing_info_present_flag")? {
            let num_units_in_display_tick = r.bits(32, "num_units_in_display_tick")?;
            let time_scale = r.bits(32, "time_scale")?;
            let ticks_per_picture = if r.flag("equal_picture_interval")? {
                Some(uvlc(&mut r, "num_ticks_per_picture_minus_1")? + 1)
            } else {
                None
            };
            timing_info = Some(TimingInfo {
                num_units_in_display_tick,
                time_scale,
                ticks_per_picture,
            });
            decoder_model_info_present = r.flag("decoder_model_info_present_flag")?;
            if decoder_model_info_present {
                // decoder_model_info( ) (§5.5.4).
                buffer_delay_length = r.bits(5, "buffer_delay_length_minus_1")? + 1;
                r.bits(32, "num_units_in_decoding_tick")?;
                r.bits(5, "buffer_removal_time_length_minus_1")?;
                r.bits(5, "frame_presentation_time_length_minus_1")?;
            }
        }
        let initial_display_delay_present = r.flag("initial_display_delay_present_flag")?;
        let count = r.bits(5, "operating_points_cnt_minus_1")? + 1;
        for _ in 0..count {
            let idc = r.bits(12, "operating_point_idc")? as u16;
            let seq_level_idx = r.bits(5, "seq_level_idx")? as u8;
            let seq_tier = seq_level_idx > 7 && r.flag("seq_tier")?;
            if decoder_model_info_present && r.flag("decoder_model_present_for_this_op")? {
                // operating_parameters_info( op ) (§5.5.5).
                r.bits(buffer_delay_length, "decoder_buffer_delay")?;
                r.bits(buffer_delay_length, "encoder_buffer_delay")?;
                r.flag("low_delay_mode_flag")?;
            }
            if initial_display_delay_present
                && r.flag("initial_display_delay_present_for_this_op")?
            {
                r.bits(4, "initial_display_delay_minus_1")?;
            }
            operating_points.push(OperatingPoint {
                idc,
                seq_level_idx,
                seq_tier,
            });
        }
    }
    let width_bits = r.bits(4, "frame_width_bits_minus_1")? + 1;
    let height_bits = r.bits(4, "frame_height_bits_minus_1")? + 1;
    let max_frame_width = r.bits(width_bits, "max_frame_width_minus_1")? + 1;
    let max_frame_height = r.bits(height_bits, "max_frame_height_minus_1")? + 1;
    let frame_id_numbers_present =
        !reduced_still_picture_header && r.flag("frame_id_numbers_present_flag")?;
    if frame_id_numbers_present {
        r.bits(4, "delta_frame_id_length_minus_2")?;
        r.bits(3, "additional_frame_id_length_minus_1")?;
    }
    r.flag("use_128x128_superblock")?;
    r.flag("enable_filter_intra")?;
    r.flag("enable_intra_edge_filter")?;
    if !reduced_still_picture_header {
        r.flag("enable_interintra_compound")?;
        r.flag("enable_masked_compound")?;
        r.flag("enable_warped_motion")?;
        r.flag("enable_dual_filter")?;
        let enable_order_hint = r.flag("enable_order_hint")?;
        if enable_order_hint {
            r.flag("enable_jnt_comp")?;
            r.flag("enable_ref_frame_mvs")?;
        }
        // seq_force_screen_content_tools is SELECT_SCREEN_CONTENT_TOOLS (2)
        // when seq_choose_screen_content_tools is 1, else coded.
        let force_screen_content_tools = r.flag("seq_choose_screen_content_tools")?
            || r.flag("seq_force_screen_content_tools")?;
        if force_screen_content_tools && !r.flag("seq_choose_integer_mv")? {
            r.flag("seq_force_integer_mv")?;
        }
        if enable_order_hint {
            r.bits(3, "order_hint_bits_minus_1")?;
        }
    }
    r.flag("enable_superres")?;
    r.flag("enable_cdef")?;
    r.flag("enable_restoration")?;
    let color = parse_color_config(&mut r, seq_profile)?;
    let film_grain_params_present = r.flag("film_grain_params_present")?;
    Ok(SequenceHeader {
        seq_profile,
        still_picture,
        reduced_still_picture_header,
        timing_info,
        operating_points,
        max_frame_width,
        max_frame_height,
        color,
        film_grain_params_present,
    })
}

/// `color_config( )` (§5.5.2).
fn parse_color_config(r: &mut BitReader<'_>, seq_profile: u8) -> Result<ColorConfig, Av1Error> {
    /// `CP_BT_709`, `TC_SRGB`, `MC_IDENTITY` (§6.4.2).
    const CP_BT_709: u8 = 1;
    const TC_SRGB: u8 = 13;
    const MC_IDENTITY: u8 = 0;
    /// `CP_UNSPECIFIED`, `TC_UNSPECIFIED`, `MC_UNSPECIFIED`.
    const UNSPECIFIED: u8 = 2;

    let high_bitdepth = r.flag("high_bitdepth")?;
    let bit_depth = if seq_profile == 2 && high_bitdepth {
        if r.flag("twelve_bit")? { 12 } else { 10 }
    } else if high_bitdepth {
        10
    } else {
        8
    };
    let mono_chrome = seq_profile != 1 && r.flag("mono_chrome")?;
    let color_description_present = r.flag("color_description_present_flag")?;
    let (color_primaries, transfer_characteristics, matrix_coefficients) =
        if color_description_present {
            (
                r.u8("color_primaries")?,
                r.u8("transfer_characteristics")?,
                r.u8("matrix_coefficients")?,
            )
        } else {
            (UNSPECIFIED, UNSPECIFIED, UNSPECIFIED)
        };
    let mut color = ColorConfig {
        bit_depth,
        mono_chrome,
        subsampling_x: true,
        subsampling_y: true,
        chroma_sample_position: 0,
        color_description_present,
        color_primaries,
        transfer_characteristics,
        matrix_coefficients,
        full_range: false,
    };
    if mono_chrome {
        color.full_range = r.flag("color_range")?;
        return Ok(color);
    }
    if color_primaries == CP_BT_709
        && transfer_characteristics == TC_SRGB
        && matrix_coefficients == MC_IDENTITY
    {
        color.full_range = true;
        color.subsampling_x = false;
        color.subsampling_y = false;
    } else {
        color.full_range = r.flag("color_range")?;
        (color.subsampling_x, color.subsampling_y) = match seq_profile {
            0 => (true, true),
            1 => (false, false),
            _ if bit_depth == 12 => {
                let x = r.flag("subsampling_x")?;
                (x, x && r.flag("subsampling_y")?)
            }
            _ => (true, false),
        };
        if color.subsampling_x && color.subsampling_y {
            color.chroma_sample_position = r.bits(2, "chroma_sample_position")? as u8;
        }
    }
    r.flag("separate_uv_delta_q")?;
    Ok(color)
}

/// `frame_type` (§6.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// `KEY_FRAME`.
    Key,
    /// `INTER_FRAME`.
    Inter,
    /// `INTRA_ONLY_FRAME`.
    IntraOnly,
    /// `SWITCH_FRAME`.
    Switch,
}

/// The first fields of an `uncompressed_header( )` (§5.9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStart {
    /// `show_existing_frame` = 1: a frame decoded earlier is shown.
    ShowExisting,
    /// A new frame.
    New {
        /// `frame_type`.
        frame_type: FrameType,
        /// `show_frame`.
        show_frame: bool,
    },
}

/// Reads the start of a frame header OBU's (or frame OBU's) payload.
/// `reduced_still_picture_header` comes from the sequence header in force:
/// with it, every frame is a shown key frame and nothing is coded.
///
/// # Errors
///
/// [`Av1Error::Truncated`] for an empty payload.
pub fn frame_start(
    payload: &[u8],
    reduced_still_picture_header: bool,
) -> Result<FrameStart, Av1Error> {
    if reduced_still_picture_header {
        return Ok(FrameStart::New {
            frame_type: FrameType::Key,
            show_frame: true,
        });
    }
    let mut r = BitReader::new(payload);
    if r.flag("show_existing_frame")? {
        return Ok(FrameStart::ShowExisting);
    }
    let frame_type = match r.bits(2, "frame_type")? {
        0 => FrameType::Key,
        1 => FrameType::Inter,
        2 => FrameType::IntraOnly,
        _ => FrameType::Switch,
    };
    Ok(FrameStart::New {
        frame_type,
        show_frame: r.flag("show_frame")?,
    })
}

/// True when the temporal unit (low overhead format) is a random access
/// point, the only kind of sync sample the ISOBMFF binding allows (§"AV1
/// Sample Format"): "Its first frame is a Key Frame that has show_frame flag
/// set to 1" and "It contains a Sequence Header OBU before the first Frame
/// Header OBU".
///
/// Malformed input is not a random access point.
pub fn is_random_access_point(tu: &[u8]) -> bool {
    let mut reduced = None;
    for obu in obus(tu) {
        let Ok(obu) = obu else {
            return false;
        };
        match obu.header.obu_type {
            obu_type::SEQUENCE_HEADER if reduced.is_none() => {
                match parse_sequence_header(obu.payload) {
                    Ok(seq) => reduced = Some(seq.reduced_still_picture_header),
                    Err(_) => return false,
                }
            }
            obu_type::FRAME_HEADER | obu_type::FRAME => {
                let Some(reduced) = reduced else {
                    return false;
                };
                return frame_start(obu.payload, reduced)
                    == Ok(FrameStart::New {
                        frame_type: FrameType::Key,
                        show_frame: true,
                    });
            }
            _ => {}
        }
    }
    false
}

/// The first sequence header OBU of a temporal unit, whole (header, size,
/// payload), if there is one before any malformed OBU.
pub fn sequence_header_obu(tu: &[u8]) -> Option<Obu<'_>> {
    obus(tu)
        .map_while(Result::ok)
        .find(|o| o.header.obu_type == obu_type::SEQUENCE_HEADER)
}

/// AV1 parameters from the sequence header OBU, what the `av01` sample
/// entry, the `av1C` record and the codec string are made of.
///
/// The profile, level and tier are the first operating point's, as `av1C`
/// and the codec string carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Av1Params {
    /// The sequence header OBU, with `obu_has_size_field` 1 (as `av1C`'s
    /// `configOBUs` require).
    pub sequence_header: Bytes,
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub seq_profile: u8,
    /// `seq_level_idx[ 0 ]`.
    pub seq_level_idx_0: u8,
    /// `seq_tier[ 0 ]`: false Main, true High.
    pub seq_tier_0: bool,
    /// Colour and sampling from `color_config( )`.
    pub color: ColorConfig,
    /// `max_frame_width_minus_1 + 1`, the sample entry's width.
    pub width: u32,
    /// `max_frame_height_minus_1 + 1`, the sample entry's height.
    pub height: u32,
    /// From `timing_info( )` with an equal picture interval, if signalled.
    pub frame_rate: Option<(u32, u32)>,
}

impl Av1Params {
    /// Builds the parameters from one whole sequence header OBU (header,
    /// optional size, payload), as found in a temporal unit.
    ///
    /// # Errors
    ///
    /// As [`parse_sequence_header`]; [`Av1Error::WrongObuType`] for another
    /// OBU; OBU framing errors as [`obus`].
    pub fn from_sequence_header_obu(obu: &[u8]) -> Result<Self, Av1Error> {
        let parsed = parse_obu(obu, 0)?;
        if parsed.header.obu_type != obu_type::SEQUENCE_HEADER {
            return Err(Av1Error::WrongObuType {
                expected: obu_type::SEQUENCE_HEADER,
                found: parsed.header.obu_type,
            });
        }
        let seq = parse_sequence_header(parsed.payload)?;
        let mut sized = Vec::with_capacity(parsed.payload.len() + 4);
        parsed.write_sized(&mut sized);
        // Non-empty: `parse_sequence_header` always yields one point.
        let op = seq
            .operating_points
            .first()
            .copied()
            .unwrap_or(OperatingPoint {
                idc: 0,
                seq_level_idx: 0,
                seq_tier: false,
            });
        Ok(Av1Params {
            sequence_header: Bytes::from(sized),
            seq_profile: seq.seq_profile,
            seq_level_idx_0: op.seq_level_idx,
            seq_tier_0: op.seq_tier,
            color: seq.color,
            width: seq.max_frame_width,
            height: seq.max_frame_height,
            frame_rate: seq.frame_rate(),
        })
    }

    /// The `CODECS` string of the ISOBMFF binding's §"Codecs Parameter
    /// String": `av01.P.LLT.DD[.M.CCC.cp.tc.mc.F]`.
    ///
    /// "The profile parameter value, represented by a single digit decimal,
    /// SHALL equal the value of seq_profile"; level is `seq_level_idx[ 0 ]`
    /// in two digits; "The tier parameter value SHALL be equal to M when
    /// the first seq_tier value ... is equal to 0, and H when it is equal to
    /// 1"; then BitDepth in two digits. The optional part is mono_chrome,
    /// subsampling_x, subsampling_y and (for 4:2:0 only)
    /// chroma_sample_position, the colour description (the defaults 1/1/1
    /// when the sequence header has none: "SHOULD be set to the default
    /// values") and the range; "If the codecs parameter string ends with
    /// \".0.110.01.01.01.0\" ... that trailing part of the string SHOULD be
    /// omitted".
    pub fn codec_string(&self) -> String {
        let c = &self.color;
        let mut s = format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx_0,
            if self.seq_tier_0 { 'H' } else { 'M' },
            c.bit_depth
        );
        let (cp, tc, mc) = self.codec_string_colour();
        let position = if c.subsampling_x && c.subsampling_y {
            c.chroma_sample_position
        } else {
            0
        };
        let optional = format!(
            ".{}.{}{}{}.{cp:02}.{tc:02}.{mc:02}.{}",
            u8::from(c.mono_chrome),
            u8::from(c.subsampling_x),
            u8::from(c.subsampling_y),
            position,
            u8::from(c.full_range),
        );
        if optional != ".0.110.01.01.01.0" {
            s.push_str(&optional);
        }
        s
    }

    /// Colour primaries, transfer characteristics and matrix coefficients
    /// as the codec string and a `colr` box give them.
    fn codec_string_colour(&self) -> (u8, u8, u8) {
        let c = &self.color;
        if c.color_description_present {
            (
                c.color_primaries,
                c.transfer_characteristics,
                c.matrix_coefficients,
            )
        } else {
            (1, 1, 1)
        }
    }

    /// The `AV1CodecConfigurationRecord` (the body of `av1C`): marker and
    /// version, the first operating point's profile, level and tier, the
    /// colour config flags, no initial presentation delay, and the sequence
    /// header OBU as `configOBUs` ("at most one Sequence Header OBU and if
    /// present, it SHALL be the first OBU"; "obu_has_size_field SHALL be set
    /// to 1").
    pub fn configuration_record(&self) -> Vec<u8> {
        let c = &self.color;
        let mut out = Vec::with_capacity(4 + self.sequence_header.len());
        // marker (1) = 1, version (7) = 1.
        out.push(0x81);
        out.push((self.seq_profile << 5) | (self.seq_level_idx_0 & 0x1f));
        out.push(
            (u8::from(self.seq_tier_0) << 7)
                | (u8::from(c.bit_depth > 8) << 6)
                | (u8::from(c.bit_depth == 12) << 5)
                | (u8::from(c.mono_chrome) << 4)
                | (u8::from(c.subsampling_x) << 3)
                | (u8::from(c.subsampling_y) << 2)
                | (c.chroma_sample_position & 0x03),
        );
        // reserved (3) = 0, initial_presentation_delay_present (1) = 0,
        // reserved (4) = 0.
        out.push(0);
        out.extend_from_slice(&self.sequence_header);
        out
    }
}

/// [`Av1Params`] from the first sequence header OBU of a temporal unit (low
/// overhead format).
///
/// `None` when it has none (most temporal units); `Some(Err(_))` when it has
/// one that does not parse.
pub fn params_from_temporal_unit(tu: &[u8]) -> Option<Result<Av1Params, Av1Error>> {
    sequence_header_obu(tu).map(|obu| Av1Params::from_sequence_header_obu(obu.bytes))
}

/// Turns the payload of one AV1 PES packet into a temporal unit in the low
/// overhead format with every OBU sized, the form [`AccessUnit`]s of AV1
/// carry.
///
/// "Carriage of AV1 in MPEG-2 TS" §"Start-code based format": "Prior to
/// carriage into PES, the AV1 open_bitstream_unit() is encapsulated into
/// ts_open_bitstream_unit()": a `0x000001` start code before each OBU and an
/// `emulation_prevention_three_byte` after every `0x0000` that the OBU's
/// bytes would otherwise continue with `0x00`..`0x03`. Each start code
/// begins one OBU, with or without `obu_size`. A payload that does not
/// start with a start code is read as plain low overhead format, which
/// some muxers send.
///
/// [`AccessUnit`]: crate::AccessUnit
///
/// # Errors
///
/// [`Av1Error::Empty`] when there is no OBU; OBU framing errors otherwise.
pub fn temporal_unit_from_ts(payload: &[u8]) -> Result<Vec<u8>, Av1Error> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    if payload.starts_with(&[0, 0, 1]) || payload.starts_with(&[0, 0, 0, 1]) {
        for (offset, escaped) in start_code_units(payload) {
            let obu_bytes = unescape(escaped);
            let obu = parse_obu(&obu_bytes, 0).map_err(|e| with_offset(e, offset))?;
            let rest = &obu_bytes[obu.bytes.len()..];
            // With obu_size, a zero byte of a four-byte start code that
            // follows may have been counted in; anything else is damage.
            if rest.iter().any(|&b| b != 0) {
                return Err(Av1Error::TrailingBytes {
                    offset,
                    bytes: rest.len(),
                });
            }
            obu.write_sized(&mut out);
        }
    } else {
        for obu in obus(payload) {
            obu?.write_sized(&mut out);
        }
    }
    if out.is_empty() {
        return Err(Av1Error::Empty);
    }
    Ok(out)
}

/// Moves an OBU-relative error to `offset` in the PES payload.
fn with_offset(e: Av1Error, offset: usize) -> Av1Error {
    match e {
        Av1Error::TruncatedObu {
            needed, available, ..
        } => Av1Error::TruncatedObu {
            offset,
            needed,
            available,
        },
        Av1Error::ForbiddenBit { .. } => Av1Error::ForbiddenBit { offset },
        Av1Error::BadLeb128 { offset: o } => Av1Error::BadLeb128 { offset: offset + o },
        other => other,
    }
}

/// The `ts_open_bitstream_unit()`s of a payload: for each `0x000001` start
/// code, its offset and the escaped bytes up to the next start code.
fn start_code_units(payload: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= payload.len() {
        if payload[i] == 0 && payload[i + 1] == 0 && payload[i + 2] == 1 {
            starts.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain([payload.len()])
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |(start, end)| (start, &payload[start + 3..end]))
}

/// Writes a temporal unit in the start-code format of "Carriage of AV1 in
/// MPEG-2 TS": `0x000001` before each OBU, emulation prevention inside.
///
/// The inverse of [`temporal_unit_from_ts`], for tests and tools that build
/// MPEG-TS.
///
/// # Errors
///
/// OBU framing errors of `tu`.
pub fn temporal_unit_to_ts(tu: &[u8]) -> Result<Vec<u8>, Av1Error> {
    let mut out = Vec::with_capacity(tu.len() + tu.len() / 64 + 16);
    for obu in obus(tu) {
        let obu = obu?;
        out.extend_from_slice(&[0, 0, 1]);
        let mut zeros = 0;
        for &b in obu.bytes {
            // "the following three-byte sequences shall not occur at any
            // byte-aligned position: 0x000000, 0x000001, 0x000002", nor
            // 0x000003 other than as emulation prevention.
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        // A payload ending in 0x00 would run into the next start code;
        // 0x00 0x00 0x03 at the very end escapes the last zeros.
        if zeros >= 2 {
            out.push(3);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSB-first bit writer with AV1's `trailing_bits( )`.
    #[derive(Default)]
    struct Bits {
        bytes: Vec<u8>,
        n: usize,
    }

    impl Bits {
        fn put(&mut self, n: u32, v: u64) -> &mut Self {
            for i in (0..n).rev() {
                if self.n.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let last = self.bytes.len() - 1;
                self.bytes[last] |= (((v >> i) & 1) as u8) << (7 - self.n % 8);
                self.n += 1;
            }
            self
        }

        fn finish(&mut self) -> Vec<u8> {
            self.put(1, 1);
            while !self.n.is_multiple_of(8) {
                self.put(1, 0);
            }
            std::mem::take(&mut self.bytes)
        }
    }

    /// A sequence header OBU: profile, level, tier, size, optional timing
    /// (25 fps), optional colour description and bit depth switches.
    struct Seq {
        profile: u64,
        level: u64,
        tier: bool,
        width: u64,
        height: u64,
        timing: bool,
        colour: Option<(u64, u64, u64)>,
        high_bitdepth: bool,
        twelve_bit: bool,
        mono: bool,
        full_range: bool,
    }

    impl Default for Seq {
        fn default() -> Self {
            Seq {
                profile: 0,
                level: 8,
                tier: false,
                width: 1920,
                height: 1080,
                timing: false,
                colour: None,
                high_bitdepth: false,
                twelve_bit: false,
                mono: false,
                full_range: false,
            }
        }
    }

    impl Seq {
        fn payload(&self) -> Vec<u8> {
            let mut b = Bits::default();
            b.put(3, self.profile).put(1, 0).put(1, 0);
            b.put(1, u64::from(self.timing));
            if self.timing {
                // 1/25 s per tick, one tick per picture, no decoder model.
                b.put(32, 1).put(32, 25).put(1, 1).put(1, 1).put(1, 0);
            }
            b.put(1, 0); // initial_display_delay_present_flag
            b.put(5, 0); // operating_points_cnt_minus_1
            b.put(12, 0).put(5, self.level);
            if self.level > 7 {
                b.put(1, u64::from(self.tier));
            }
            b.put(4, 15).put(4, 15);
            b.put(16, self.width - 1).put(16, self.height - 1);
            b.put(1, 0); // frame_id_numbers_present_flag
            b.put(3, 0b111); // 128x128, filter intra, intra edge
            b.put(4, 0); // interintra, masked, warped, dual filter
            b.put(1, 1).put(1, 1).put(1, 1); // order hint, jnt_comp, ref mvs
            b.put(1, 1); // seq_choose_screen_content_tools
            b.put(1, 1); // seq_choose_integer_mv
            b.put(3, 6); // order_hint_bits_minus_1
            b.put(3, 0b011); // superres, cdef, restoration
            // color_config
            b.put(1, u64::from(self.high_bitdepth));
            if self.profile == 2 && self.high_bitdepth {
                b.put(1, u64::from(self.twelve_bit));
            }
            if self.profile != 1 {
                b.put(1, u64::from(self.mono));
            }
            b.put(1, u64::from(self.colour.is_some()));
            if let Some((cp, tc, mc)) = self.colour {
                b.put(8, cp).put(8, tc).put(8, mc);
            }
            b.put(1, u64::from(self.full_range));
            if !self.mono {
                match self.profile {
                    0 => {
                        b.put(2, 0); // chroma_sample_position
                    }
                    2 if self.twelve_bit => {
                        // subsampling_x, subsampling_y, then the position.
                        b.put(1, 1).put(1, 1).put(2, 1);
                    }
                    _ => {}
                }
                b.put(1, 0); // separate_uv_delta_q
            }
            b.put(1, 0); // film_grain_params_present
            b.finish()
        }

        fn obu(&self) -> Vec<u8> {
            let payload = self.payload();
            let mut obu = vec![0x0a];
            write_leb128(payload.len() as u32, &mut obu);
            obu.extend_from_slice(&payload);
            obu
        }
    }

    #[test]
    fn leb128_examples() {
        assert_eq!(read_leb128(&[0x00]), Ok((0, 1)));
        assert_eq!(read_leb128(&[0xe5, 0x8e, 0x26]), Ok((624_485, 3)));
        // Padded (non-minimal) encodings are valid.
        assert_eq!(read_leb128(&[0x85, 0x80, 0x80, 0x00]), Ok((5, 4)));
        assert_eq!(
            read_leb128(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Ok((u32::MAX, 5))
        );
        assert_eq!(
            read_leb128(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            Err(Av1Error::BadLeb128 { offset: 0 })
        );
        assert_eq!(
            read_leb128(&[0x80; 9]),
            Err(Av1Error::BadLeb128 { offset: 0 })
        );
        assert!(matches!(
            read_leb128(&[0x80]),
            Err(Av1Error::TruncatedObu { needed: 2, .. })
        ));
        let mut out = Vec::new();
        write_leb128(624_485, &mut out);
        assert_eq!(out, [0xe5, 0x8e, 0x26]);
    }

    #[test]
    fn obu_headers_with_and_without_size_and_extension() {
        // Temporal delimiter with size; a frame OBU with extension
        // (temporal 2, spatial 1) and size 2; then a padding OBU without
        // size that takes the rest.
        let data = [
            0x12, 0x00, 0x36, 0x48, 0x02, 0xaa, 0xbb, 0x78, 0x01, 0x02, 0x03,
        ];
        let found: Vec<Obu<'_>> = obus(&data).map(|o| o.unwrap()).collect();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].header.obu_type, obu_type::TEMPORAL_DELIMITER);
        assert!(found[0].payload.is_empty());
        assert_eq!(found[1].header.obu_type, obu_type::FRAME);
        assert_eq!(
            found[1].header.extension,
            Some(ObuExtension {
                temporal_id: 2,
                spatial_id: 1
            })
        );
        assert_eq!(found[1].payload, [0xaa, 0xbb]);
        assert_eq!(found[1].offset, 2);
        assert_eq!(found[2].header.obu_type, obu_type::PADDING);
        assert!(!found[2].header.has_size_field);
        assert_eq!(found[2].payload, [0x01, 0x02, 0x03]);

        let mut sized = Vec::new();
        found[2].write_sized(&mut sized);
        assert_eq!(sized, [0x7a, 0x03, 0x01, 0x02, 0x03]);
        found[1].write_sized(&mut sized);
        assert_eq!(&sized[5..], &data[2..7]);

        // Errors carry the OBU's offset, then the iterator stops.
        let bad = [0x12, 0x00, 0x92, 0x00, 0x12, 0x00];
        let r: Vec<_> = obus(&bad).collect();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], Err(Av1Error::ForbiddenBit { offset: 2 }));
        assert_eq!(
            obus(&[0x12, 0x05, 0x00]).next(),
            Some(Err(Av1Error::TruncatedObu {
                offset: 0,
                needed: 7,
                available: 3
            }))
        );
        assert_eq!(
            obus(&[0x12, 0x00, 0x16]).nth(1),
            Some(Err(Av1Error::TruncatedObu {
                offset: 2,
                needed: 2,
                available: 1
            }))
        );
    }

    #[test]
    fn sequence_header_fields_and_codec_strings() {
        let seq = Seq {
            timing: true,
            ..Seq::default()
        };
        let p = Av1Params::from_sequence_header_obu(&seq.obu()).unwrap();
        assert_eq!((p.width, p.height), (1920, 1080));
        assert_eq!(p.frame_rate, Some((25, 1)));
        assert_eq!(p.seq_level_idx_0, 8);
        assert_eq!(p.color.bit_depth, 8);
        assert!(p.color.subsampling_x && p.color.subsampling_y);
        // The ISOBMFF binding's own example: Main, level 4.0 (8), 8-bit,
        // defaults omitted.
        assert_eq!(p.codec_string(), "av01.0.08M.08");
        let record = p.configuration_record();
        assert_eq!(&record[..4], &[0x81, 0x08, 0x0c, 0x00]);
        assert_eq!(&record[4..], &seq.obu()[..]);

        // The binding's example "av01.0.04M.10.0.112.09.16.09.0": 10-bit
        // BT.2100 PQ, chroma_sample_position 2 (colocated) would be 112;
        // here position 0 gives 110.
        let hdr = Seq {
            level: 4,
            high_bitdepth: true,
            colour: Some((9, 16, 9)),
            ..Seq::default()
        };
        let p = Av1Params::from_sequence_header_obu(&hdr.obu()).unwrap();
        assert_eq!(p.codec_string(), "av01.0.04M.10.0.110.09.16.09.0");
        assert_eq!(p.frame_rate, None);

        // High tier, 12-bit Professional 4:2:0 → its subsampling bits are
        // coded; full range.
        let pro = Seq {
            profile: 2,
            level: 13,
            tier: true,
            high_bitdepth: true,
            twelve_bit: true,
            full_range: true,
            ..Seq::default()
        };
        let p = Av1Params::from_sequence_header_obu(&pro.obu()).unwrap();
        assert_eq!(p.color.bit_depth, 12);
        assert_eq!(p.color.chroma_sample_position, 1);
        assert_eq!(p.codec_string(), "av01.2.13H.12.0.111.01.01.01.1");
        assert_eq!(p.configuration_record()[..3], [0x81, 0x4d, 0xed]);

        // Monochrome: 4:0:0 reported as subsampling 11, position 0.
        let mono = Seq {
            mono: true,
            ..Seq::default()
        };
        let p = Av1Params::from_sequence_header_obu(&mono.obu()).unwrap();
        assert!(p.color.mono_chrome);
        assert_eq!(p.codec_string(), "av01.0.08M.08.1.110.01.01.01.0");
        assert_eq!(p.configuration_record()[2], 0x1c);

        // Reserved profile and wrong OBU type.
        let mut bad = Seq::default().obu();
        bad[2] |= 0xe0;
        assert_eq!(
            Av1Params::from_sequence_header_obu(&bad),
            Err(Av1Error::OutOfRange {
                field: "seq_profile",
                value: 7
            })
        );
        assert_eq!(
            Av1Params::from_sequence_header_obu(&[0x12, 0x00]),
            Err(Av1Error::WrongObuType {
                expected: 1,
                found: 2
            })
        );
        // Every truncation is an error, never a panic.
        let payload = Seq::default().payload();
        for len in 0..payload.len() - 1 {
            assert!(parse_sequence_header(&payload[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn random_access_points() {
        let seq = Seq::default().obu();
        let td = [0x12, 0x00];
        // Frame OBUs: show_existing_frame 0, frame_type, show_frame 1.
        let key_frame = [0x32, 0x02, 0x10, 0xff];
        let inter_frame = [0x32, 0x02, 0x30, 0xff];
        let hidden_key = [0x32, 0x02, 0x00, 0xff];
        let show_existing = [0x1a, 0x01, 0x80];
        let tu = |parts: &[&[u8]]| parts.concat();

        assert!(is_random_access_point(&tu(&[&td, &seq, &key_frame])));
        // A sequence header after the frame, or none at all: not a RAP.
        assert!(!is_random_access_point(&tu(&[&td, &key_frame, &seq])));
        assert!(!is_random_access_point(&tu(&[&td, &key_frame])));
        assert!(!is_random_access_point(&tu(&[&td, &seq, &inter_frame])));
        // A delayed random access point (key frame not shown) is not a sync
        // sample; neither is a shown existing frame.
        assert!(!is_random_access_point(&tu(&[&td, &seq, &hidden_key])));
        assert!(!is_random_access_point(&tu(&[&td, &seq, &show_existing])));
        assert!(!is_random_access_point(&[0x80]));

        let params = params_from_temporal_unit(&tu(&[&td, &seq, &key_frame]));
        assert_eq!(params.unwrap().unwrap().width, 1920);
        assert!(params_from_temporal_unit(&tu(&[&td, &inter_frame])).is_none());
    }

    #[test]
    fn ts_start_code_framing_round_trips() {
        // A payload with runs of zeros that need emulation prevention,
        // ending in zeros.
        let frame = [0x32, 0x08, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00];
        let tu = [&[0x12, 0x00][..], &Seq::default().obu(), &frame].concat();
        let ts = temporal_unit_to_ts(&tu).unwrap();
        assert!(ts.starts_with(&[0, 0, 1, 0x12, 0x00, 0, 0, 1, 0x0a]));
        // The frame payload 10 00 00 01 00 00 00 00 is escaped.
        assert!(ts.ends_with(&[0x10, 0, 0, 3, 1, 0, 0, 3, 0, 0, 3]));
        assert_eq!(temporal_unit_from_ts(&ts).unwrap(), tu);

        // OBUs without size fields in start-code framing get sized.
        let unsized_ts = [0, 0, 1, 0x10, 0, 0, 1, 0x78, 0xaa, 0xbb];
        assert_eq!(
            temporal_unit_from_ts(&unsized_ts).unwrap(),
            [0x12, 0x00, 0x7a, 0x02, 0xaa, 0xbb]
        );
        // Four-byte start codes: the extra zero after a sized OBU is
        // dropped.
        let four = [0, 0, 0, 1, 0x12, 0x00, 0, 0, 0, 1, 0x7a, 0x01, 0xaa];
        assert_eq!(
            temporal_unit_from_ts(&four).unwrap(),
            [0x12, 0x00, 0x7a, 0x01, 0xaa]
        );
        // Plain low overhead format passes through, sized.
        assert_eq!(
            temporal_unit_from_ts(&[0x12, 0x00, 0x78, 0x01]).unwrap(),
            [0x12, 0x00, 0x7a, 0x01, 0x01]
        );
        assert_eq!(temporal_unit_from_ts(&[]), Err(Av1Error::Empty));
        assert_eq!(
            temporal_unit_from_ts(&[0, 0, 1, 0x7a, 0x01, 0xaa, 0xbb]),
            Err(Av1Error::TrailingBytes {
                offset: 0,
                bytes: 1
            })
        );
        assert!(matches!(
            temporal_unit_from_ts(&[0, 0, 1, 0x12, 0x00, 0, 0, 1, 0x7a, 0x05]),
            Err(Av1Error::TruncatedObu { .. })
        ));
    }
}
