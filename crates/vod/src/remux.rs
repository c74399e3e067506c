//! The upload's video and audio streams copied into MPEG-TS, unchanged
//! (FFmpeg adds Annex B start codes and ADTS headers as the format needs):
//! the form the live ingest reads, so uploads go through the same demuxer
//! ([`ferrocast_media::ts::Demuxer`]) and transcoder as live streams.

use std::path::Path;

use ff::Packet;
use ffmpeg_next as ff;

use crate::error::VodError;
use crate::probe::Probe;

/// Damaged packets skipped before the file counts as unreadable.
const MAX_BAD_PACKETS: u32 = 1000;

/// Copies the streams `probe` chose from `input` into an MPEG-TS file at
/// `output`.
pub fn to_mpegts(input: &Path, output: &Path, probe: &Probe) -> Result<(), VodError> {
    ferrocast_transcode::init_ffmpeg();
    let media = |e: ff::Error| VodError::Media(e.to_string());
    let mut ictx = ff::format::input(input).map_err(|e| VodError::NotMedia(e.to_string()))?;
    let mut octx = ff::format::output_as(output, "mpegts").map_err(media)?;
    let mut mapping: Vec<Option<usize>> = vec![None; ictx.nb_streams() as usize];
    let wanted = std::iter::once(probe.video_stream).chain(probe.audio_stream);
    for (out_index, in_index) in wanted.enumerate() {
        let stream = ictx
            .stream(in_index)
            .ok_or_else(|| VodError::Media(format!("stream {in_index} is gone")))?;
        let mut copy = octx
            .add_stream(ff::encoder::find(ff::codec::Id::None))
            .map_err(media)?;
        copy.set_parameters(stream.parameters());
        if let Some(slot) = mapping.get_mut(in_index) {
            *slot = Some(out_index);
        }
    }
    octx.write_header().map_err(media)?;
    let mut bad_packets = 0u32;
    loop {
        let mut packet = Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            // A damaged packet: the demuxer resyncs past it.
            Err(ff::Error::InvalidData) => {
                bad_packets += 1;
                if bad_packets > MAX_BAD_PACKETS {
                    return Err(VodError::Media(format!(
                        "more than {MAX_BAD_PACKETS} damaged packets"
                    )));
                }
                continue;
            }
            Err(e) => return Err(VodError::Media(format!("reading the file: {e}"))),
        }
        let Some(Some(out_index)) = mapping.get(packet.stream()).copied() else {
            continue;
        };
        let (Some(from), Some(to)) = (
            ictx.stream(packet.stream()).map(|s| s.time_base()),
            octx.stream(out_index).map(|s| s.time_base()),
        ) else {
            continue;
        };
        packet.rescale_ts(from, to);
        packet.set_position(-1);
        packet.set_stream(out_index);
        match packet.write_interleaved(&mut octx) {
            Ok(()) => {}
            // An empty or mistimed packet is dropped, as ffmpeg's CLI
            // does, rather than failing the whole file.
            Err(ff::Error::InvalidData) => bad_packets += 1,
            Err(e) => return Err(VodError::Media(format!("writing MPEG-TS: {e}"))),
        }
    }
    octx.write_trailer().map_err(media)?;
    Ok(())
}
