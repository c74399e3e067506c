//! AAC in ISO BMFF: the `mp4a` sample entry with its `esds` box
//! (ISO/IEC 14496-14 §5.6, descriptors from ISO/IEC 14496-1 §7.2.6).

use bytes::{BufMut, BytesMut};
use ferrocast_media::AacParams;

use crate::boxes;
use crate::error::CmafError;

/// ISO/IEC 14496-1 descriptor tags (§7.2.2.1, Table 1).
const ES_DESCR_TAG: u8 = 0x03;
const DECODER_CONFIG_DESCR_TAG: u8 = 0x04;
const DEC_SPECIFIC_INFO_TAG: u8 = 0x05;
const SL_CONFIG_DESCR_TAG: u8 = 0x06;

/// `objectTypeIndication` for Audio ISO/IEC 14496-3 (14496-1 Table 5).
const OBJECT_TYPE_AUDIO_14496_3: u8 = 0x40;
/// `streamType` AudioStream (14496-1 Table 6).
const STREAM_TYPE_AUDIO: u8 = 0x05;

/// Largest descriptor body the four-byte expandable size field can express.
const MAX_DESCRIPTOR_LEN: usize = (1 << 28) - 1;

/// Writes the `mp4a` AudioSampleEntry (ISO/IEC 14496-12 §12.2.3,
/// ISO/IEC 14496-14 §5.6.1) with its `esds`.
pub(crate) fn write_mp4a(
    buf: &mut BytesMut,
    params: &AacParams,
    invalid: impl Fn(&'static str) -> CmafError,
) -> Result<(), CmafError> {
    if params.asc.len() < 2 {
        return Err(invalid("AudioSpecificConfig shorter than two bytes"));
    }
    // DecoderSpecificInfo, DecoderConfigDescriptor, ES_Descriptor body sizes.
    let dsi = params.asc.len();
    let dcd = 13 + descriptor_len(dsi);
    let es = 3 + descriptor_len(dcd) + descriptor_len(1);
    if es > MAX_DESCRIPTOR_LEN {
        return Err(invalid("AudioSpecificConfig too large for an esds"));
    }

    let mp4a = boxes::open(buf, b"mp4a");
    // SampleEntry (§8.5.2.2): reserved[6], data_reference_index.
    buf.put_bytes(0, 6);
    buf.put_u16(1);
    // AudioSampleEntry: reserved[2], channelcount, samplesize, pre_defined, reserved.
    buf.put_bytes(0, 8);
    // Channel configuration 0 means "in a PCE inside the ASC": the decoder
    // takes the layout from the ASC, so the entry states stereo, like ffmpeg.
    buf.put_u16(if params.channels == 0 {
        2
    } else {
        u16::from(params.channels)
    });
    buf.put_u16(16);
    buf.put_u32(0);
    // samplerate is 16.16 fixed point; rates above 65535 Hz do not fit and are
    // written as 0 (the ASC and mdhd timescale carry the real rate).
    let rate = u16::try_from(params.sample_rate).unwrap_or(0);
    buf.put_u32(u32::from(rate) << 16);

    let esds = boxes::open_full(buf, b"esds", 0, 0);
    // ES_Descriptor (14496-1 §7.2.6.5): ES_ID 0 (ignored in mp4), no flags.
    put_descriptor_header(buf, ES_DESCR_TAG, es);
    buf.put_u16(0);
    buf.put_u8(0);
    // DecoderConfigDescriptor (§7.2.6.6).
    put_descriptor_header(buf, DECODER_CONFIG_DESCR_TAG, dcd);
    buf.put_u8(OBJECT_TYPE_AUDIO_14496_3);
    buf.put_u8((STREAM_TYPE_AUDIO << 2) | 0x01); // upStream 0, reserved 1
    buf.put_uint(0, 3); // bufferSizeDB: unknown
    buf.put_u32(0); // maxBitrate: unknown
    buf.put_u32(0); // avgBitrate: unknown (variable)
    // DecoderSpecificInfo (§7.2.6.7): the AudioSpecificConfig.
    put_descriptor_header(buf, DEC_SPECIFIC_INFO_TAG, dsi);
    buf.put_slice(&params.asc);
    // SLConfigDescriptor (§7.2.6.8): predefined = 2, required in mp4 files
    // (ISO/IEC 14496-14 §3.1.2).
    put_descriptor_header(buf, SL_CONFIG_DESCR_TAG, 1);
    buf.put_u8(0x02);
    boxes::close(buf, esds)?;
    boxes::close(buf, mp4a)
}

/// Bytes taken by a descriptor with a body of `len` bytes: tag, size, body.
const fn descriptor_len(len: usize) -> usize {
    1 + size_field_len(len) + len
}

/// Bytes of the expandable size field (14496-1 §8.3.3): 7 bits per byte.
const fn size_field_len(len: usize) -> usize {
    if len < 1 << 7 {
        1
    } else if len < 1 << 14 {
        2
    } else if len < 1 << 21 {
        3
    } else {
        4
    }
}

fn put_descriptor_header(buf: &mut BytesMut, tag: u8, len: usize) {
    buf.put_u8(tag);
    let n = size_field_len(len);
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        buf.put_u8(more | ((len >> (7 * i)) & 0x7f) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expandable_sizes() {
        for (len, want) in [
            (0usize, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x81, 0x00]),
            (300, &[0x82, 0x2c]),
            (1 << 21, &[0x81, 0x80, 0x80, 0x00]),
        ] {
            let mut buf = BytesMut::new();
            put_descriptor_header(&mut buf, 5, len);
            assert_eq!(&buf[1..], want, "len {len}");
            assert_eq!(buf.len(), 1 + size_field_len(len));
        }
    }
}
