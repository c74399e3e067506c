//! Bus messages to protobuf frames and back. Codec configurations travel as
//! their raw parameter sets and are parsed again on arrival, so both sides
//! derive the same parameters with the same code.

use std::sync::Arc;

use bytes::Bytes;
use ferrocast_bus::BusMessage;
use ferrocast_media::TraceContext;
use ferrocast_media::{
    AccessUnit, CodecParams, OpusParams, Time90k, TrackId, TrackInfo, TrackKind,
};

use crate::pb::{self, frame::Kind, track::Codec};

/// A frame that does not describe a valid bus message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// An empty frame.
    #[error("bus frame without content")]
    Empty,
    /// A track without a codec, or with an id above 16 bits.
    #[error("bad track {0}")]
    BadTrack(u32),
    /// Parameter sets that do not parse.
    #[error("track {track}: {reason}")]
    BadCodec {
        /// The track.
        track: u32,
        /// Why.
        reason: String,
    },
    /// A unit for a track id above 16 bits.
    #[error("unit for bad track {0}")]
    BadUnit(u32),
    /// A frame that is a notice, not a message ([`Delivery::PublisherGone`]).
    #[error("bus frame is a notice, not a message")]
    NotAMessage,
}

/// What one frame delivers: a bus message, or the notice that the
/// stream's publisher left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message of the stream.
    Message(BusMessage),
    /// The publisher left; it may come back (a discontinuity follows) or
    /// the stream may end.
    PublisherGone,
}

/// The frame of the publisher-gone notice.
pub fn publisher_gone_frame() -> pb::Frame {
    pb::Frame {
        kind: Some(Kind::PublisherGone(pb::Empty {})),
    }
}

/// What `frame` delivers.
pub fn delivery_of(frame: pb::Frame) -> Result<Delivery, ConvertError> {
    match frame.kind {
        Some(Kind::PublisherGone(_)) => Ok(Delivery::PublisherGone),
        _ => message_of(frame).map(Delivery::Message),
    }
}

fn frame_rate(rate: Option<(u32, u32)>) -> (u32, u32) {
    rate.unwrap_or((0, 0))
}

fn track_of(info: &TrackInfo) -> pb::Track {
    let (codec, rate) = match &info.params {
        CodecParams::H264(p) => (
            Some(Codec::H264(pb::H264 {
                sps: p.sps.to_vec(),
                pps: p.pps.to_vec(),
            })),
            p.frame_rate,
        ),
        CodecParams::H265(p) => (
            Some(Codec::H265(pb::H265 {
                vps: p.vps.to_vec(),
                sps: p.sps.to_vec(),
                pps: p.pps.to_vec(),
            })),
            p.frame_rate,
        ),
        CodecParams::Aac(p) => (
            Some(Codec::Aac(pb::Aac {
                asc: p.asc.to_vec(),
            })),
            None,
        ),
        CodecParams::Opus(p) => (
            Some(Codec::Opus(pb::Opus {
                channels: u32::from(p.channels),
                sample_rate: p.sample_rate,
                pre_skip: u32::from(p.pre_skip),
                channel_mapping_family: u32::from(p.channel_mapping_family),
            })),
            None,
        ),
        CodecParams::Av1(p) => (
            Some(Codec::Av1(pb::Av1 {
                sequence_header: p.sequence_header.to_vec(),
            })),
            p.frame_rate,
        ),
        // A codec this schema does not know yet: the receiver refuses the
        // track (a codec-less track), which ends its subscription, logged.
        _ => (None, None),
    };
    let (num, den) = frame_rate(rate);
    pb::Track {
        id: u32::from(info.id.0),
        frame_rate_num: num,
        frame_rate_den: den,
        codec,
    }
}

fn info_of(track: pb::Track) -> Result<TrackInfo, ConvertError> {
    let id = u16::try_from(track.id).map_err(|_| ConvertError::BadTrack(track.id))?;
    let rate = (track.frame_rate_den != 0).then_some((track.frame_rate_num, track.frame_rate_den));
    let bad = |reason: String| ConvertError::BadCodec {
        track: track.id,
        reason,
    };
    let params = match track.codec.ok_or(ConvertError::BadTrack(track.id))? {
        Codec::H264(h) => {
            let mut p = ferrocast_media::h264::params_from_parameter_sets(
                Bytes::from(h.sps),
                Bytes::from(h.pps),
            )
            .map_err(|e| bad(e.to_string()))?;
            p.frame_rate = rate.or(p.frame_rate);
            CodecParams::H264(p)
        }
        Codec::H265(h) => {
            let mut p = ferrocast_media::h265::params_from_parameter_sets(
                Bytes::from(h.vps),
                Bytes::from(h.sps),
                Bytes::from(h.pps),
            )
            .map_err(|e| bad(e.to_string()))?;
            p.frame_rate = rate.or(p.frame_rate);
            CodecParams::H265(p)
        }
        Codec::Aac(a) => CodecParams::Aac(
            ferrocast_media::aac::parse_audio_specific_config(&a.asc)
                .map_err(|e| bad(e.to_string()))?,
        ),
        Codec::Opus(o) => CodecParams::Opus(OpusParams {
            channels: u8::try_from(o.channels).map_err(|e| bad(e.to_string()))?,
            sample_rate: o.sample_rate,
            pre_skip: u16::try_from(o.pre_skip).map_err(|e| bad(e.to_string()))?,
            channel_mapping_family: u8::try_from(o.channel_mapping_family)
                .map_err(|e| bad(e.to_string()))?,
        }),
        Codec::Av1(a) => {
            let mut p = ferrocast_media::Av1Params::from_sequence_header_obu(&a.sequence_header)
                .map_err(|e| bad(e.to_string()))?;
            p.frame_rate = rate.or(p.frame_rate);
            CodecParams::Av1(p)
        }
    };
    Ok(TrackInfo {
        id: TrackId(id),
        params,
    })
}

/// The frame that carries `message`.
pub fn frame_of(message: &BusMessage) -> pb::Frame {
    let kind = match message {
        BusMessage::Tracks(tracks) => Kind::Tracks(pb::Tracks {
            tracks: tracks.iter().map(track_of).collect(),
        }),
        BusMessage::Unit(unit) => Kind::Unit(pb::Unit {
            track: u32::from(unit.track.0),
            video: unit.kind == TrackKind::Video,
            pts: unit.pts.0,
            dts: unit.dts.0,
            keyframe: unit.keyframe,
            data: unit.data.to_vec(),
            captured_unix_ms: unit.captured_unix_ms,
            trace: unit.trace.map(|t| t.to_bytes().to_vec()),
        }),
        BusMessage::Discontinuity => Kind::Discontinuity(pb::Empty {}),
        BusMessage::Gap => Kind::Gap(pb::Empty {}),
        BusMessage::HandedOver(at) => Kind::HandedOver(pb::HandedOver { at: at.0 }),
        BusMessage::End => Kind::End(pb::Empty {}),
    };
    pb::Frame { kind: Some(kind) }
}

/// The bus message `frame` carries.
pub fn message_of(frame: pb::Frame) -> Result<BusMessage, ConvertError> {
    Ok(match frame.kind.ok_or(ConvertError::Empty)? {
        Kind::Tracks(tracks) => BusMessage::Tracks(Arc::from(
            tracks
                .tracks
                .into_iter()
                .map(info_of)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Kind::Unit(unit) => BusMessage::Unit(Arc::new(AccessUnit {
            track: TrackId(
                u16::try_from(unit.track).map_err(|_| ConvertError::BadUnit(unit.track))?,
            ),
            kind: if unit.video {
                TrackKind::Video
            } else {
                TrackKind::Audio
            },
            pts: Time90k(unit.pts),
            dts: Time90k(unit.dts),
            keyframe: unit.keyframe,
            data: Bytes::from(unit.data),
            captured_unix_ms: unit.captured_unix_ms,
            // A malformed context is dropped: it never costs the media.
            trace: unit.trace.as_deref().and_then(TraceContext::from_bytes),
        })),
        Kind::Discontinuity(_) => BusMessage::Discontinuity,
        Kind::Gap(_) => BusMessage::Gap,
        Kind::HandedOver(handover) => BusMessage::HandedOver(Time90k(handover.at)),
        Kind::End(_) => BusMessage::End,
        Kind::PublisherGone(_) => return Err(ConvertError::NotAMessage),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn opus_and_markers_round_trip_and_bad_frames_are_errors() {
        let opus = BusMessage::Tracks(Arc::from(vec![TrackInfo {
            id: TrackId(300),
            params: CodecParams::Opus(OpusParams {
                channels: 2,
                sample_rate: 48_000,
                pre_skip: 312,
                channel_mapping_family: 0,
            }),
        }]));
        for message in [
            opus,
            BusMessage::Gap,
            BusMessage::Discontinuity,
            BusMessage::HandedOver(Time90k(123_456)),
            BusMessage::End,
        ] {
            assert_eq!(message_of(frame_of(&message)), Ok(message));
        }
        assert_eq!(
            message_of(pb::Frame { kind: None }),
            Err(ConvertError::Empty)
        );
        let codec_less = pb::Frame {
            kind: Some(Kind::Tracks(pb::Tracks {
                tracks: vec![pb::Track {
                    id: 1,
                    frame_rate_num: 0,
                    frame_rate_den: 0,
                    codec: None,
                }],
            })),
        };
        assert_eq!(message_of(codec_less), Err(ConvertError::BadTrack(1)));
        let wide = pb::Frame {
            kind: Some(Kind::Unit(pb::Unit {
                track: 70_000,
                ..Default::default()
            })),
        };
        assert_eq!(message_of(wide), Err(ConvertError::BadUnit(70_000)));
        let garbage_sps = pb::Frame {
            kind: Some(Kind::Tracks(pb::Tracks {
                tracks: vec![pb::Track {
                    id: 1,
                    frame_rate_num: 0,
                    frame_rate_den: 0,
                    codec: Some(Codec::H264(pb::H264 {
                        sps: vec![0x67, 0xff],
                        pps: vec![0x68],
                    })),
                }],
            })),
        };
        assert!(matches!(
            message_of(garbage_sps),
            Err(ConvertError::BadCodec { track: 1, .. })
        ));
    }
}
