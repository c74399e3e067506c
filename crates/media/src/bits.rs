//! Reading RBSPs: emulation-prevention removal and an MSB-first bit reader
//! with exp-Golomb codes, shared by the H.264 and H.265 parameter-set parsers
//! (the two specifications define both identically: H.264 7.4.1 / 9.1,
//! H.265 7.4.2 / 9.2).

/// Why a read from an RBSP failed. Each codec's error type converts from it,
/// keeping the syntax element's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitError {
    /// The RBSP ended before this syntax element.
    Truncated { field: &'static str },
    /// An exp-Golomb code longer than 32 bits, or a value above a maximum.
    OutOfRange { field: &'static str, value: u64 },
}

/// Removes every `emulation_prevention_three_byte` from a NAL unit payload
/// (the bytes after the NAL unit header).
///
/// H.264 7.4.1 and H.265 7.4.2 in the same words: "emulation_prevention_three_byte
/// is a byte equal to 0x03. When an emulation_prevention_three_byte is present
/// in the NAL unit, it shall be discarded by the decoding process."
pub(crate) fn unescape(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0usize;
    for &b in payload {
        if zeros >= 2 && b == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader over an RBSP with exp-Golomb codes.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn bit(&mut self, field: &'static str) -> Result<u32, BitError> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or(BitError::Truncated { field })?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    pub(crate) fn flag(&mut self, field: &'static str) -> Result<bool, BitError> {
        Ok(self.bit(field)? == 1)
    }

    /// Reads `n` ≤ 32 bits.
    pub(crate) fn bits(&mut self, n: u32, field: &'static str) -> Result<u32, BitError> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n.min(32) {
            v = (v << 1) | u64::from(self.bit(field)?);
        }
        Ok(v as u32)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, BitError> {
        Ok(self.bits(8, field)? as u8)
    }

    /// Skips `n` bits (a run of fixed-length syntax elements not needed).
    pub(crate) fn skip(&mut self, n: usize, field: &'static str) -> Result<(), BitError> {
        let end = self.pos.saturating_add(n);
        if end > self.data.len().saturating_mul(8) {
            return Err(BitError::Truncated { field });
        }
        self.pos = end;
        Ok(())
    }

    /// ue(v), H.264 9.1 / H.265 9.2: "leadingZeroBits ... codeNum =
    /// 2^leadingZeroBits − 1 + read_bits( leadingZeroBits )". Values above
    /// 2^32 − 2 do not occur in a conforming parameter set and are rejected.
    pub(crate) fn ue(&mut self, field: &'static str) -> Result<u32, BitError> {
        let mut zeros = 0u32;
        while self.bit(field)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(BitError::OutOfRange {
                    field,
                    value: u64::from(u32::MAX),
                });
            }
        }
        let suffix = u64::from(self.bits(zeros, field)?);
        let value = (1u64 << zeros) - 1 + suffix;
        u32::try_from(value).map_err(|_| BitError::OutOfRange { field, value })
    }

    /// ue(v) that must not exceed `max`.
    pub(crate) fn ue_max(&mut self, field: &'static str, max: u32) -> Result<u32, BitError> {
        let v = self.ue(field)?;
        if v > max {
            return Err(BitError::OutOfRange {
                field,
                value: u64::from(v),
            });
        }
        Ok(v)
    }

    /// se(v), H.264 9.1.1 / H.265 9.2.2: codeNum k maps to
    /// (−1)^(k+1) × Ceil(k ÷ 2).
    pub(crate) fn se(&mut self, field: &'static str) -> Result<i64, BitError> {
        let k = i64::from(self.ue(field)?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// `num / den` reduced to lowest terms, if both fit a `u32` and neither is
/// zero (a frame rate from VUI timing info).
/// The part of `vui_parameters( )` that H.264 (E.1.1) and H.265 (E.2.1)
/// share, from `aspect_ratio_info_present_flag` through the chroma sample
/// location: read past, since only the timing info that follows is used.
pub(crate) fn skip_vui_prefix(r: &mut BitReader<'_>) -> Result<(), BitError> {
    if r.flag("aspect_ratio_info_present_flag")? {
        // "Extended_SAR" / "EXTENDED_SAR" is 255 in both tables.
        if r.u8("aspect_ratio_idc")? == 255 {
            r.bits(16, "sar_width")?;
            r.bits(16, "sar_height")?;
        }
    }
    if r.flag("overscan_info_present_flag")? {
        r.flag("overscan_appropriate_flag")?;
    }
    if r.flag("video_signal_type_present_flag")? {
        r.bits(3, "video_format")?;
        r.flag("video_full_range_flag")?;
        if r.flag("colour_description_present_flag")? {
            r.bits(24, "colour_description")?;
        }
    }
    if r.flag("chroma_loc_info_present_flag")? {
        r.ue("chroma_sample_loc_type_top_field")?;
        r.ue("chroma_sample_loc_type_bottom_field")?;
    }
    Ok(())
}

pub(crate) fn reduced_ratio(num: u64, den: u64) -> Option<(u32, u32)> {
    if num == 0 || den == 0 {
        return None;
    }
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    match (u32::try_from(num / a), u32::try_from(den / a)) {
        (Ok(n), Ok(d)) => Some((n, d)),
        _ => None,
    }
}

/// Writes bits MSB-first, for building parameter-set test vectors.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    nbits: usize,
}

#[cfg(test)]
impl BitWriter {
    pub(crate) fn bits(&mut self, n: u32, v: u64) -> &mut Self {
        for i in (0..n).rev() {
            if self.nbits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((v >> i) & 1) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bit << (7 - self.nbits % 8);
            self.nbits += 1;
        }
        self
    }

    pub(crate) fn ue(&mut self, v: u64) -> &mut Self {
        let x = v + 1;
        let len = 64 - x.leading_zeros();
        self.bits(len - 1, 0).bits(len, x)
    }

    pub(crate) fn se(&mut self, v: i64) -> &mut Self {
        let k = if v > 0 { 2 * v - 1 } else { -2 * v };
        self.ue(k as u64)
    }

    /// rbsp_trailing_bits, then emulation prevention, after `header`.
    pub(crate) fn nal(&mut self, header: &[u8]) -> Vec<u8> {
        self.bits(1, 1);
        while !self.nbits.is_multiple_of(8) {
            self.bits(1, 0);
        }
        let mut out = header.to_vec();
        let mut zeros = 0;
        for &b in &self.bytes {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }
}
