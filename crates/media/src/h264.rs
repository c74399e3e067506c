//! H.264 Annex-B byte streams: NAL unit splitting (and, to come, SPS parsing).

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
