//! Big-endian ISO BMFF box writing: plain functions over a [`BytesMut`].
//!
//! Two ways to size a box (ISO/IEC 14496-12 §4.2, `size` counts the whole box
//! including its header): the init segment, written once per stream, opens a
//! box, writes its body and patches the size ([`open`] / [`close`]); the
//! fragment writer, on the hot path, knows every size before it writes and
//! puts the header directly ([`header`] / [`full_header`]).

use bytes::{BufMut, BytesMut};

use crate::error::CmafError;

/// Size of a plain box header: 32-bit size and four-character type.
pub(crate) const HEADER_LEN: u32 = 8;
/// Size of a full box header: plain header plus version and 24-bit flags.
pub(crate) const FULL_HEADER_LEN: u32 = 12;

/// A box whose size is patched by [`close`].
#[must_use = "an opened box must be closed to get its size"]
pub(crate) struct Open {
    start: usize,
    kind: &'static [u8; 4],
}

/// Starts a box of unknown size.
pub(crate) fn open(buf: &mut BytesMut, kind: &'static [u8; 4]) -> Open {
    let start = buf.len();
    buf.put_u32(0);
    buf.put_slice(kind);
    Open { start, kind }
}

/// Starts a full box (§4.2 `FullBox`) of unknown size.
pub(crate) fn open_full(
    buf: &mut BytesMut,
    kind: &'static [u8; 4],
    version: u8,
    flags: u32,
) -> Open {
    let b = open(buf, kind);
    put_version_flags(buf, version, flags);
    b
}

/// Ends a box started by [`open`] or [`open_full`], writing its size.
pub(crate) fn close(buf: &mut BytesMut, open: Open) -> Result<(), CmafError> {
    let size = buf.len().saturating_sub(open.start);
    let too_large = || CmafError::BoxTooLarge {
        kind: std::str::from_utf8(open.kind).unwrap_or("????"),
        size,
    };
    let size32 = u32::try_from(size).map_err(|_| too_large())?;
    let slot = buf
        .get_mut(open.start..open.start + 4)
        .ok_or_else(too_large)?;
    slot.copy_from_slice(&size32.to_be_bytes());
    Ok(())
}

/// Writes a plain box header for a box of known total `size`.
pub(crate) fn header(buf: &mut BytesMut, size: u32, kind: &[u8; 4]) {
    buf.put_u32(size);
    buf.put_slice(kind);
}

/// Writes a full box header for a box of known total `size`.
pub(crate) fn full_header(buf: &mut BytesMut, size: u32, kind: &[u8; 4], version: u8, flags: u32) {
    header(buf, size, kind);
    put_version_flags(buf, version, flags);
}

fn put_version_flags(buf: &mut BytesMut, version: u8, flags: u32) {
    buf.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
}

/// The unity transformation matrix of `mvhd` and `tkhd` (§8.2.2.3, §8.3.2.3).
pub(crate) fn put_unity_matrix(buf: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        buf.put_u32(v);
    }
}

/// The fields of a `VisualSampleEntry` (ISO/IEC 14496-12 §12.1.3) before its
/// child boxes, SampleEntry's (§8.5.2.2) included.
pub(crate) fn put_visual_sample_entry(buf: &mut BytesMut, width: u16, height: u16) {
    // SampleEntry: reserved[6], data_reference_index.
    buf.put_bytes(0, 6);
    buf.put_u16(1);
    // VisualSampleEntry: pre_defined, reserved, pre_defined[3].
    buf.put_bytes(0, 2 + 2 + 12);
    buf.put_u16(width);
    buf.put_u16(height);
    buf.put_u32(0x0048_0000); // horizresolution, 72 dpi
    buf.put_u32(0x0048_0000); // vertresolution, 72 dpi
    buf.put_u32(0); // reserved
    buf.put_u16(1); // frame_count
    buf.put_bytes(0, 32); // compressorname: empty Pascal string
    buf.put_u16(0x0018); // depth
    buf.put_i16(-1); // pre_defined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_close_patches_size() {
        let mut buf = BytesMut::new();
        let outer = open(&mut buf, b"moov");
        let inner = open_full(&mut buf, b"mvhd", 1, 0x0102_0304);
        buf.put_u8(7);
        close(&mut buf, inner).unwrap();
        close(&mut buf, outer).unwrap();
        assert_eq!(
            &buf[..],
            &[
                0, 0, 0, 21, b'm', b'o', b'o', b'v', 0, 0, 0, 13, b'm', b'v', b'h', b'd', 1, 2, 3,
                4, 7
            ]
        );
    }
}
