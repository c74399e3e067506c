//! AV1 in ISO BMFF ("AV1 Codec ISO Media File Format Binding", AOM): the
//! `av01` sample entry with its `av1C` record and a `colr` box, and
//! temporal units turned into `av01` samples.

use bytes::{BufMut, Bytes, BytesMut};
use ferrocast_media::Av1Params;
use ferrocast_media::av1::{Av1Error, obu_type, obus};

use crate::boxes;
use crate::error::CmafError;

/// Whether an OBU stays in an `av01` sample.
///
/// §"AV1 Sample Format": "OBUs of type OBU_TEMPORAL_DELIMITER, OBU_PADDING,
/// or OBU_REDUNDANT_FRAME_HEADER SHOULD NOT be used" and "OBUs of type
/// OBU_TILE_LIST SHALL NOT be used". Sequence headers stay: a sync sample
/// "contains a Sequence Header OBU before the first Frame Header OBU".
fn keep_in_sample(obu_type: u8) -> bool {
    !matches!(
        obu_type,
        obu_type::TEMPORAL_DELIMITER
            | obu_type::PADDING
            | obu_type::REDUNDANT_FRAME_HEADER
            | obu_type::TILE_LIST
    )
}

/// Converts one AV1 temporal unit in the low overhead bitstream format (as
/// `ferrocast_media` access units carry it) into `av01` sample data.
///
/// §"AV1 Sample Format": "the sample data SHALL be a sequence of OBUs
/// forming a Temporal Unit"; "Each OBU SHALL have the obu_has_size_field
/// set to 1 except for the last OBU in the sample": every OBU is written
/// with its size. Temporal delimiters, padding, redundant frame headers and
/// tile lists are dropped (see above).
///
/// # Errors
///
/// [`CmafError::InvalidTemporalUnit`] when the OBUs do not parse;
/// [`CmafError::EmptyAccessUnit`] when nothing is left.
pub fn av1_sample_from_temporal_unit(tu: &[u8]) -> Result<Bytes, CmafError> {
    let mut out = Vec::with_capacity(tu.len());
    for obu in obus(tu) {
        let obu = obu.map_err(|source| CmafError::InvalidTemporalUnit { source })?;
        if keep_in_sample(obu.header.obu_type) {
            obu.write_sized(&mut out);
        }
    }
    if out.is_empty() {
        return Err(CmafError::EmptyAccessUnit);
    }
    Ok(Bytes::from(out))
}

/// Writes the `av01` VisualSampleEntry (ISO/IEC 14496-12 §12.1.3, binding
/// §"AV1 Sample Entry") with its `av1C` box and, when the sequence header
/// describes its colours, a `colr` box of type `nclx`.
///
/// "The width and height fields of the VisualSampleEntry SHALL equal the
/// values of max_frame_width_minus_1 + 1 and max_frame_height_minus_1 + 1
/// of the Sequence Header OBU". The record is rebuilt from the stored
/// sequence header itself, so it cannot disagree with what the decoder
/// sees.
pub(crate) fn write_av01(
    buf: &mut BytesMut,
    params: &Av1Params,
    invalid: impl Fn(&'static str) -> CmafError,
    bad_sequence_header: impl Fn(Av1Error) -> CmafError,
) -> Result<(), CmafError> {
    let parsed = Av1Params::from_sequence_header_obu(&params.sequence_header)
        .map_err(bad_sequence_header)?;
    let width =
        u16::try_from(parsed.width).map_err(|_| invalid("width does not fit a sample entry"))?;
    let height =
        u16::try_from(parsed.height).map_err(|_| invalid("height does not fit a sample entry"))?;

    let av01 = boxes::open(buf, b"av01");
    boxes::put_visual_sample_entry(buf, width, height);
    let av1c = boxes::open(buf, b"av1C");
    buf.put_slice(&parsed.configuration_record());
    boxes::close(buf, av1c)?;
    let c = &parsed.color;
    if c.color_description_present {
        // ColourInformationBox (ISO/IEC 14496-12 §12.1.5): "If any of
        // colour_primaries, transfer_characteristics, and
        // matrix_coefficients is specified with a value other than 2 in the
        // Sequence Header OBU ... the value of that field in the 'colr' box
        // SHALL match"; "The value of full_range_flag in the 'colr' box SHALL
        // match the color_range flag". Without a colour description no box
        // is written, rather than asserting values the stream leaves open.
        let colr = boxes::open(buf, b"colr");
        buf.put_slice(b"nclx");
        buf.put_u16(u16::from(c.color_primaries));
        buf.put_u16(u16::from(c.transfer_characteristics));
        buf.put_u16(u16::from(c.matrix_coefficients));
        buf.put_u8(u8::from(c.full_range) << 7);
        boxes::close(buf, colr)?;
    }
    boxes::close(buf, av01)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_delimiters_padding_and_redundant_headers() {
        let tu = [
            0x12, 0x00, // temporal delimiter
            0x0a, 0x01, 0xaa, // "sequence header" (payload not parsed here)
            0x2a, 0x01, 0xbb, // metadata
            0x7a, 0x02, 0, 0, // padding
            0x3a, 0x01, 0xcc, // redundant frame header
            0x32, 0x02, 0x10, 0xdd, // frame
        ];
        let sample = av1_sample_from_temporal_unit(&tu).unwrap();
        assert_eq!(
            &sample[..],
            &[0x0a, 0x01, 0xaa, 0x2a, 0x01, 0xbb, 0x32, 0x02, 0x10, 0xdd]
        );
        // A last OBU without a size field gets one.
        let sample = av1_sample_from_temporal_unit(&[0x12, 0x00, 0x30, 0x10, 0xdd]).unwrap();
        assert_eq!(&sample[..], &[0x32, 0x02, 0x10, 0xdd]);
        assert_eq!(
            av1_sample_from_temporal_unit(&[0x12, 0x00]),
            Err(CmafError::EmptyAccessUnit)
        );
        assert!(matches!(
            av1_sample_from_temporal_unit(&[0x32, 0x09, 0x10]),
            Err(CmafError::InvalidTemporalUnit { .. })
        ));
    }
}
