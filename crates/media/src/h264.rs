//! H.264 Annex-B byte streams: NAL unit splitting, sequence parameter set
//! parsing (ITU-T H.264 7.3.2.1.1) and the [`H264Params`] a muxer needs.
//!
//! Everything here takes untrusted bytes and returns a typed [`H264Error`]
//! rather than panicking.
//!
//! ```
//! use ferrocast_media::h264::{is_keyframe, nal_units};
//!
//! let au = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88];
//! assert_eq!(nal_units(&au).count(), 2);
//! assert!(is_keyframe(&au));
//! ```

mod sps;

use bytes::Bytes;

use crate::codec::H264Params;

pub use sps::{H264Error, SpsInfo, parse_sps, rbsp_from_nal};

/// NAL unit types this crate cares about (ITU-T H.264 Table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// Iterates over the NAL units of an Annex-B byte stream.
///
/// Each item is one NAL unit without its start code (the first byte is the
/// NAL header); trailing zero bytes before the next start code are trimmed.
/// Bytes before the first start code are ignored.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits {
        rest: match find_start_code(data) {
            Some((pos, len)) => &data[pos + len..],
            None => &[],
        },
    }
}

/// Iterator returned by [`nal_units`].
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (nal, next) = match find_start_code(self.rest) {
                Some((pos, len)) => (&self.rest[..pos], &self.rest[pos + len..]),
                None => (self.rest, &[][..]),
            };
            self.rest = next;
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            if end > 0 {
                return Some(&nal[..end]);
            }
        }
    }
}

/// Position and length (3) of the first `00 00 01` start code. A four-byte
/// start code is found as its three-byte tail; the leading zero is trimmed
/// from the previous NAL as a trailing zero.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some((i, 3));
        } else {
            i += 1;
        }
    }
    None
}

/// The `nal_unit_type` of a NAL unit (its header's low five bits).
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// True if the Annex-B access unit holds a coded slice of an IDR picture
/// (`nal_unit_type` 5), i.e. decoding can start here.
pub fn is_keyframe(annexb: &[u8]) -> bool {
    nal_units(annexb).any(|nal| nal_unit_type(nal) == Some(nal_type::IDR))
}

/// Builds [`H264Params`] from the first SPS and first PPS of an Annex-B
/// access unit.
///
/// `None` when the access unit does not carry both parameter sets (most
/// access units do not); `Some(Err(_))` when they are there but the SPS is
/// malformed.
pub fn params_from_access_unit(annexb: &[u8]) -> Option<Result<H264Params, H264Error>> {
    let mut sps = None;
    let mut pps = None;
    for nal in nal_units(annexb) {
        match nal_unit_type(nal) {
            Some(nal_type::SPS) if sps.is_none() => sps = Some(nal),
            Some(nal_type::PPS) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    let (sps, pps) = (sps?, pps?);
    Some(params_from_parameter_sets(
        Bytes::copy_from_slice(sps),
        Bytes::copy_from_slice(pps),
    ))
}

/// Builds [`H264Params`] from one SPS and one PPS NAL unit (each without
/// start code, first byte the NAL header).
///
/// The PPS is only checked to be a PPS; its contents are passed through.
pub fn params_from_parameter_sets(sps: Bytes, pps: Bytes) -> Result<H264Params, H264Error> {
    let info = parse_sps(&sps)?;
    match nal_unit_type(&pps) {
        Some(nal_type::PPS) if pps.len() > 1 => {}
        other => {
            return Err(H264Error::NotPps {
                nal_unit_type: other,
            });
        }
    }
    Ok(H264Params {
        sps,
        pps,
        profile_idc: info.profile_idc,
        constraint_flags: info.constraint_flags,
        level_idc: info.level_idc,
        width: info.width,
        height: info.height,
        frame_rate: info.frame_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 4,
            5, 0,
        ];
        let nals: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            nals,
            vec![&[0x09, 0xf0][..], &[0x67, 1, 2], &[0x68, 3], &[0x65, 4, 5]]
        );
        assert_eq!(nal_unit_type(nals[3]), Some(nal_type::IDR));
    }

    #[test]
    fn no_start_code_yields_nothing() {
        assert_eq!(nal_units(&[1, 2, 3, 0, 0]).count(), 0);
        assert_eq!(nal_units(&[]).count(), 0);
    }
}
