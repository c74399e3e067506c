//! A JPEG of one keyframe: what the operator dashboard shows per stream.
//! Decoded in software (the keyframe alone: no reference frames needed),
//! scaled down and encoded with FFmpeg's `mjpeg` encoder, all in process.

use ferrocast_media::{AccessUnit, CodecParams, TrackInfo};
use ff::codec::packet::Packet;
use ff::format::Pixel;
use ff::software::scaling;
use ff::util::frame;
use ffmpeg_next as ff;

use crate::error::TranscodeError;
use crate::ffmpeg::set_extradata;
use crate::pipeline::video::decoder_extradata;

/// A JPEG of `unit` (a keyframe of `track`), at most `max_width` pixels
/// wide (never scaled up), its aspect ratio kept.
pub fn keyframe_jpeg(
    track: &TrackInfo,
    unit: &AccessUnit,
    max_width: u32,
) -> Result<Vec<u8>, TranscodeError> {
    crate::ffmpeg::init();
    let subject = format!("thumbnail of track {}", track.id.0);
    let name = match &track.params {
        CodecParams::H264(_) => "h264",
        CodecParams::H265(_) => "hevc",
        CodecParams::Av1(_) => "libdav1d",
        _ => {
            return Err(TranscodeError::Ffmpeg {
                op: "thumbnail",
                subject,
                message: "not a video track".into(),
            });
        }
    };
    let picture = decode_one(name, &track.params, unit, &subject)?;
    let (width, height) = thumbnail_size(picture.width(), picture.height(), max_width);
    let mut scaler = scaling::Context::get(
        picture.format(),
        picture.width(),
        picture.height(),
        Pixel::YUVJ420P,
        width,
        height,
        scaling::Flags::BILINEAR,
    )
    .map_err(TranscodeError::ffmpeg("create scaler", subject.clone()))?;
    let mut scaled = frame::Video::empty();
    scaler
        .run(&picture, &mut scaled)
        .map_err(TranscodeError::ffmpeg("scale", subject.clone()))?;
    scaled.set_pts(Some(0));
    encode_jpeg(&scaled, &subject)
}

/// The size to scale `width`×`height` to: at most `max_width` wide, even
/// dimensions (4:2:0), at least 2×2.
fn thumbnail_size(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    let target = width.min(max_width.max(2));
    let scaled_height = (u64::from(height) * u64::from(target) / u64::from(width.max(1))) as u32;
    ((target & !1).max(2), (scaled_height & !1).max(2))
}

fn decode_one(
    name: &str,
    params: &CodecParams,
    unit: &AccessUnit,
    subject: &str,
) -> Result<frame::Video, TranscodeError> {
    let codec = ff::decoder::find_by_name(name).ok_or_else(|| TranscodeError::CodecMissing {
        kind: "decoder",
        name: name.to_owned(),
    })?;
    let mut ctx = ff::codec::Context::new_with_codec(codec);
    set_extradata(&mut ctx, &decoder_extradata(params));
    let mut decoder = ctx
        .decoder()
        .open_as(codec)
        .and_then(|d| d.video())
        .map_err(TranscodeError::ffmpeg("open decoder", subject.to_owned()))?;
    let mut packet = Packet::copy(&unit.data);
    packet.set_pts(Some(unit.pts.0));
    packet.set_dts(Some(unit.dts.0));
    packet.set_flags(ff::codec::packet::Flags::KEY);
    decoder
        .send_packet(&packet)
        .map_err(TranscodeError::ffmpeg("decode", subject.to_owned()))?;
    // Only fails if already draining.
    let _ = decoder.send_eof();
    let mut picture = frame::Video::empty();
    decoder
        .receive_frame(&mut picture)
        .map_err(TranscodeError::ffmpeg("decode", subject.to_owned()))?;
    Ok(picture)
}

fn encode_jpeg(picture: &frame::Video, subject: &str) -> Result<Vec<u8>, TranscodeError> {
    let codec =
        ff::encoder::find(ff::codec::Id::MJPEG).ok_or_else(|| TranscodeError::CodecMissing {
            kind: "encoder",
            name: "mjpeg".to_owned(),
        })?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(TranscodeError::ffmpeg("create encoder", subject.to_owned()))?;
    enc.set_width(picture.width());
    enc.set_height(picture.height());
    enc.set_format(Pixel::YUVJ420P);
    enc.set_time_base(ff::Rational(1, 25));
    let mut encoder = enc
        .open_as(codec)
        .map_err(TranscodeError::ffmpeg("open encoder", subject.to_owned()))?;
    encoder
        .send_frame(picture)
        .map_err(TranscodeError::ffmpeg("encode", subject.to_owned()))?;
    let _ = encoder.send_eof();
    let mut packet = Packet::empty();
    encoder
        .receive_packet(&mut packet)
        .map_err(TranscodeError::ffmpeg("encode", subject.to_owned()))?;
    Ok(packet.data().map(<[u8]>::to_vec).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_shrink_keep_their_aspect_and_never_grow() {
        assert_eq!(thumbnail_size(1920, 1080, 320), (320, 180));
        assert_eq!(thumbnail_size(640, 360, 320), (320, 180));
        assert_eq!(thumbnail_size(160, 90, 320), (160, 90));
        assert_eq!(thumbnail_size(1080, 1920, 320), (320, 568));
        assert_eq!(thumbnail_size(0, 0, 320), (2, 2));
    }
}
