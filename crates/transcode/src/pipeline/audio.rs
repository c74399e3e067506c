//! Audio: AAC passes through untouched; Opus is decoded and encoded to AAC
//! with FFmpeg's native `aac` encoder.
//!
//! Opus frames (2.5–60 ms) do not line up with AAC's 1024 samples, so
//! decoded samples go through a small FIFO (at most one AAC frame plus one
//! Opus packet). Output timestamps are the encoder's, on the 48 kHz sample
//! clock of the first decoded sample, converted back to 90 kHz: the AAC
//! encoder's priming (1024 samples) makes the first packet start that much
//! earlier, as FFmpeg does when it writes MPEG-TS.

use bytes::Bytes;
use ferrocast_media::aac::parse_audio_specific_config;
use ferrocast_media::{
    AccessUnit, CodecParams, OpusParams, Time90k, TrackId, TrackInfo, TrackKind,
};
use ff::codec::packet::Packet;
use ff::format::Sample;
use ff::format::sample::Type as SampleType;
use ff::util::frame;
use ff::{ChannelLayout, Rational};
use ffmpeg_next as ff;

use crate::error::TranscodeError;
use crate::ffmpeg::set_extradata;

/// Largest jump (in samples) between the expected and the actual timestamp
/// of decoded audio that is smoothed over; beyond it the FIFO restarts at
/// the new time (a discontinuity).
const MAX_DRIFT_SAMPLES: i64 = 4800;

/// One audio track's path.
pub(crate) enum AudioPath {
    /// Already AAC: forwarded as is.
    Passthrough(TrackInfo),
    /// Re-encoded to AAC.
    Reencode(Box<Reencoder>),
}

impl AudioPath {
    pub(crate) fn new(track: &TrackInfo, bitrate: u64) -> Result<Self, TranscodeError> {
        match &track.params {
            CodecParams::Aac(_) => Ok(AudioPath::Passthrough(track.clone())),
            CodecParams::Opus(p) => Ok(AudioPath::Reencode(Box::new(Reencoder::open(
                track.id, p, bitrate,
            )?))),
            other => Err(TranscodeError::Audio {
                track: track.id.0,
                what: format!("{} is not audio", other.codec_string()),
            }),
        }
    }

    /// The output track.
    pub(crate) fn track(&self) -> &TrackInfo {
        match self {
            AudioPath::Passthrough(t) => t,
            AudioPath::Reencode(r) => &r.track,
        }
    }
}

/// Opus → AAC.
pub(crate) struct Reencoder {
    track: TrackInfo,
    decoder: ff::decoder::Audio,
    encoder: ff::encoder::audio::Encoder,
    decoded: frame::Audio,
    layout: ChannelLayout,
    frame_size: usize,
    /// Planar f32 samples per channel waiting for a whole AAC frame.
    fifo: Vec<Vec<f32>>,
    /// 48 kHz time of `fifo[_][0]`.
    fifo_start: Option<i64>,
    rate: u32,
    subject: String,
}

impl Reencoder {
    fn open(id: TrackId, opus: &OpusParams, bitrate: u64) -> Result<Self, TranscodeError> {
        let subject = format!("audio track {}", id.0);
        let bad = |what: String| TranscodeError::Audio { track: id.0, what };
        let rate = opus.sample_rate;
        let channels = u16::from(opus.channels);
        if !(1..=2).contains(&channels) || opus.channel_mapping_family != 0 {
            return Err(bad(format!(
                "Opus with {} channels, mapping family {}: only mono and stereo",
                opus.channels, opus.channel_mapping_family
            )));
        }
        let codec =
            ff::decoder::find_by_name("opus").ok_or_else(|| TranscodeError::CodecMissing {
                kind: "decoder",
                name: "opus".into(),
            })?;
        let mut ctx = ff::codec::Context::new_with_codec(codec);
        set_extradata(&mut ctx, &opus_head(opus));
        let mut decoder = ctx.decoder();
        decoder.set_packet_time_base(Rational(1, 90_000));
        let decoder = decoder
            .open_as(codec)
            .and_then(|d| d.audio())
            .map_err(TranscodeError::ffmpeg("open decoder", subject.clone()))?;

        let layout = ChannelLayout::default(i32::from(channels));
        let aac = ff::encoder::find_by_name("aac").ok_or_else(|| TranscodeError::CodecMissing {
            kind: "encoder",
            name: "aac".into(),
        })?;
        let mut enc = ff::codec::Context::new_with_codec(aac)
            .encoder()
            .audio()
            .map_err(TranscodeError::ffmpeg("create encoder", subject.clone()))?;
        enc.set_rate(rate as i32);
        enc.set_channel_layout(layout);
        enc.set_format(Sample::F32(SampleType::Planar));
        enc.set_bit_rate(bitrate as usize);
        enc.set_time_base(Rational(1, rate as i32));
        let encoder = enc.open_as(aac).map_err(TranscodeError::ffmpeg(
            "open encoder",
            format!("{subject} (aac)"),
        ))?;
        let frame_size = (encoder.frame_size() as usize).max(1);

        let asc = audio_specific_config(rate, opus.channels)
            .ok_or_else(|| bad(format!("no AAC sampling index for {rate} Hz")))?;
        let params = parse_audio_specific_config(&asc).map_err(|e| bad(e.to_string()))?;
        Ok(Reencoder {
            track: TrackInfo {
                id,
                params: CodecParams::Aac(params),
            },
            decoder,
            encoder,
            decoded: frame::Audio::empty(),
            layout,
            frame_size,
            fifo: vec![Vec::new(); usize::from(channels)],
            fifo_start: None,
            rate,
            subject,
        })
    }

    /// Decodes one Opus unit and encodes what fills AAC frames.
    pub(crate) fn push(
        &mut self,
        unit: &AccessUnit,
        out: &mut Vec<AccessUnit>,
    ) -> Result<bool, TranscodeError> {
        let mut packet = Packet::copy(&unit.data);
        packet.set_pts(Some(unit.pts.0));
        packet.set_dts(Some(unit.dts.0));
        if let Err(e) = self.decoder.send_packet(&packet) {
            tracing::debug!(subject = %self.subject, pts = unit.pts.0, error = %e, "Opus decoder refused a unit");
            return Ok(false);
        }
        self.drain_decoder(out)?;
        Ok(true)
    }

    /// Flushes decoder, FIFO (the last partial frame) and encoder.
    pub(crate) fn finish(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), TranscodeError> {
        let _ = self.decoder.send_eof();
        self.drain_decoder(out)?;
        if self.fifo.first().is_some_and(|c| !c.is_empty()) {
            let n = self.fifo[0].len();
            self.encode_samples(n, out)?;
        }
        self.encoder.send_eof().map_err(TranscodeError::ffmpeg(
            "flush encoder",
            self.subject.clone(),
        ))?;
        self.drain_encoder(out)
    }

    fn drain_decoder(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), TranscodeError> {
        loop {
            match self.decoder.receive_frame(&mut self.decoded) {
                Ok(()) => {}
                Err(ff::Error::Eof) => return Ok(()),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(subject = %self.subject, error = %e, "Opus decoding failed");
                    return Ok(());
                }
            }
            if self.decoded.format() != Sample::F32(SampleType::Planar)
                || self.decoded.rate() != self.rate
            {
                return Err(TranscodeError::Audio {
                    track: self.track.id.0,
                    what: format!(
                        "decoder gave {:?} at {} Hz, expected planar f32 at {} Hz",
                        self.decoded.format(),
                        self.decoded.rate(),
                        self.rate
                    ),
                });
            }
            let samples = self.decoded.samples();
            if let Some(pts) = self.decoded.timestamp().or_else(|| self.decoded.pts()) {
                let at = Time90k(pts).to_timescale(self.rate);
                let expected = self.fifo_start.map(|s| s + self.fifo[0].len() as i64);
                match expected {
                    Some(e) if (at - e).abs() <= MAX_DRIFT_SAMPLES => {}
                    _ => {
                        for c in &mut self.fifo {
                            c.clear();
                        }
                        self.fifo_start = Some(at);
                    }
                }
            } else if self.fifo_start.is_none() {
                continue;
            }
            for (ch, buf) in self.fifo.iter_mut().enumerate() {
                let plane: &[f32] = self.decoded.plane(ch.min(self.decoded.planes() - 1));
                buf.extend_from_slice(&plane[..samples.min(plane.len())]);
            }
            while self.fifo[0].len() >= self.frame_size {
                self.encode_samples(self.frame_size, out)?;
            }
        }
    }

    fn encode_samples(
        &mut self,
        n: usize,
        out: &mut Vec<AccessUnit>,
    ) -> Result<(), TranscodeError> {
        let mut frame = frame::Audio::new(Sample::F32(SampleType::Planar), n, self.layout);
        frame.set_rate(self.rate);
        let start = self.fifo_start.unwrap_or_default();
        frame.set_pts(Some(start));
        for (ch, buf) in self.fifo.iter_mut().enumerate() {
            frame.plane_mut::<f32>(ch)[..n].copy_from_slice(&buf[..n]);
            buf.drain(..n);
        }
        self.fifo_start = Some(start + n as i64);
        self.encoder
            .send_frame(&frame)
            .map_err(TranscodeError::ffmpeg("encode", self.subject.clone()))?;
        self.drain_encoder(out)
    }

    fn drain_encoder(&mut self, out: &mut Vec<AccessUnit>) -> Result<(), TranscodeError> {
        loop {
            let mut packet = Packet::empty();
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ff::Error::Eof) => return Ok(()),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(e) => return Err(TranscodeError::ffmpeg("encode", self.subject.clone())(e)),
            }
            let Some(data) = packet.data() else { continue };
            let pts = Time90k::from_timescale(packet.pts().unwrap_or_default(), self.rate);
            out.push(AccessUnit {
                track: self.track.id,
                kind: TrackKind::Audio,
                pts,
                dts: pts,
                keyframe: true,
                data: Bytes::copy_from_slice(data),
                captured_unix_ms: None,
                trace: None,
            });
        }
    }
}

/// RFC 7845 §5.1 identification header, which FFmpeg's Opus decoder takes
/// as extradata (for the channel count and pre-skip).
fn opus_head(p: &OpusParams) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(p.channels);
    head.extend_from_slice(&p.pre_skip.to_le_bytes());
    head.extend_from_slice(&p.sample_rate.to_le_bytes()); // input sample rate (informational)
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(p.channel_mapping_family);
    head
}

/// AAC-LC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) for the native
/// encoder's output: object type 2, sampling frequency index, channel
/// configuration.
fn audio_specific_config(rate: u32, channels: u8) -> Option<[u8; 2]> {
    const RATES: [u32; 13] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025,
        8_000, 7_350,
    ];
    let index = RATES.iter().position(|&r| r == rate)? as u16;
    let v: u16 = (2 << 11) | (index << 7) | (u16::from(channels) << 3);
    Some(v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asc_for_48k_stereo() {
        // The well-known 0x11 0x90: AAC-LC, 48 kHz, 2 channels.
        assert_eq!(audio_specific_config(48_000, 2), Some([0x11, 0x90]));
        assert_eq!(audio_specific_config(44_100, 1), Some([0x12, 0x08]));
        assert_eq!(audio_specific_config(47_999, 2), None);
    }

    #[test]
    fn opus_head_layout() {
        let head = opus_head(&OpusParams {
            channels: 2,
            sample_rate: 48_000,
            pre_skip: 312,
            channel_mapping_family: 0,
        });
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(head[9], 2);
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
    }
}
