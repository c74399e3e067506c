//! Opus in ISO BMFF: the `Opus` sample entry with its `dOps` box
//! ("Encapsulation of Opus in ISO Base Media File Format", opus-codec.org,
//! §4.3.1 and §4.3.2).

use bytes::{BufMut, BytesMut};
use ferrocast_media::OpusParams;

use crate::boxes;
use crate::error::CmafError;

/// Writes the `Opus` AudioSampleEntry (ISO/IEC 14496-12 §12.2.3) with its
/// `dOps`, for mapping family 0 (mono or stereo in one Opus stream).
///
/// §4.3.1: channelcount is the `dOps` OutputChannelCount; "The samplesize
/// field shall be set to 16"; "The samplerate field shall be set to
/// 48000<<16".
pub(crate) fn write_opus(
    buf: &mut BytesMut,
    params: &OpusParams,
    invalid: impl Fn(&'static str) -> CmafError,
) -> Result<(), CmafError> {
    if params.channel_mapping_family != 0 {
        return Err(invalid("Opus channel mapping family other than 0"));
    }
    // RFC 7845 §5.1.1.1: family 0 allows "1 or 2" channels.
    if !(1..=2).contains(&params.channels) {
        return Err(invalid("Opus mapping family 0 needs 1 or 2 channels"));
    }
    let entry = boxes::open(buf, b"Opus");
    // SampleEntry (§8.5.2.2): reserved[6], data_reference_index.
    buf.put_bytes(0, 6);
    buf.put_u16(1);
    // AudioSampleEntry: reserved[2], channelcount, samplesize, pre_defined,
    // reserved, samplerate (16.16).
    buf.put_bytes(0, 8);
    buf.put_u16(u16::from(params.channels));
    buf.put_u16(16);
    buf.put_u32(0);
    buf.put_u32(48_000 << 16);

    // §4.3.2 OpusSpecificBox, a plain Box (not a FullBox):
    //   unsigned int(8) Version; unsigned int(8) OutputChannelCount;
    //   unsigned int(16) PreSkip; unsigned int(32) InputSampleRate;
    //   signed int(16) OutputGain; unsigned int(8) ChannelMappingFamily;
    // "Version shall be set to 0"; with ChannelMappingFamily 0 no
    // ChannelMappingTable follows.
    boxes::header(buf, 8 + 11, b"dOps");
    buf.put_u8(0);
    buf.put_u8(params.channels);
    buf.put_u16(params.pre_skip);
    buf.put_u32(params.sample_rate);
    buf.put_i16(0); // OutputGain: "in dB ... Q7.8"; no gain
    buf.put_u8(0);
    boxes::close(buf, entry)
}
