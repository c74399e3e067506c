//! The decode time of a CMAF chunk, read from the bytes the packager wrote.
//!
//! The benchmark assigns frames to parts by counting the chunks that carry
//! a video frame (one each); this independent reading of the first `tfdt` of each part
//! checks that assignment against the frames' own decode times.

/// `baseMediaDecodeTime` of the first `traf` of the first `moof` in `chunk`
/// (ISO/IEC 14496-12 §8.8.12: version 1 holds 64 bits, version 0 holds 32).
/// `None` if there is none or the boxes are malformed.
pub fn first_tfdt(chunk: &[u8]) -> Option<u64> {
    let moof = find_box(chunk, b"moof")?;
    let traf = find_box(moof, b"traf")?;
    let tfdt = find_box(traf, b"tfdt")?;
    let (&version, rest) = tfdt.split_first()?;
    let time = rest.get(3..)?;
    match version {
        0 => Some(u64::from(u32::from_be_bytes(
            time.get(..4)?.try_into().ok()?,
        ))),
        1 => Some(u64::from_be_bytes(time.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// `track_ID` of the first `traf` of the first `moof` in `chunk` (its
/// `tfhd`, ISO/IEC 14496-12 §8.8.7). A part's chunks each start with the
/// video frame they carry, except the audio-only chunk that may close it.
pub fn first_track_id(chunk: &[u8]) -> Option<u32> {
    let moof = find_box(chunk, b"moof")?;
    let traf = find_box(moof, b"traf")?;
    let tfhd = find_box(traf, b"tfhd")?;
    Some(u32::from_be_bytes(tfhd.get(4..8)?.try_into().ok()?))
}

/// The payload of the first box of type `kind` among the boxes in `data`.
fn find_box<'a>(mut data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().ok()?) as usize;
        let (header, size) = match size {
            // 64-bit largesize follows the type.
            1 => (
                16,
                usize::try_from(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)).ok()?,
            ),
            0 => (8, data.len()),
            n => (8, n),
        };
        if size < header || size > data.len() {
            return None;
        }
        if &data[4..8] == kind {
            return Some(&data[header..size]);
        }
        data = &data[size..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_both_versions() {
        let mut v1 = vec![1, 0, 0, 0];
        v1.extend_from_slice(&123_456_789_000u64.to_be_bytes());
        let mut traf = boxed(b"tfhd", &[0; 8]);
        traf.extend(boxed(b"tfdt", &v1));
        let mut moof = boxed(b"mfhd", &[0; 8]);
        moof.extend(boxed(b"traf", &traf));
        let mut chunk = boxed(b"moof", &moof);
        chunk.extend(boxed(b"mdat", &[1, 2, 3]));
        assert_eq!(first_tfdt(&chunk), Some(123_456_789_000));

        let mut v0 = vec![0, 0, 0, 0];
        v0.extend_from_slice(&3000u32.to_be_bytes());
        let chunk = boxed(b"moof", &boxed(b"traf", &boxed(b"tfdt", &v0)));
        assert_eq!(first_tfdt(&chunk), Some(3000));
        assert_eq!(first_tfdt(&chunk[..20]), None);
    }
}
