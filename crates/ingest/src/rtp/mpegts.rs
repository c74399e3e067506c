//! MPEG-TS over RTP (RFC 2250 §2, as `ffmpeg -f rtp_mpegts` and SMPTE
//! 2022-1/2 senders send it): datagrams in, bus messages out. Sans-IO.

use std::time::Instant;

use bytes::Bytes;
use ferrocast_bus::BusMessage;
use tracing::trace;

use super::RtpStats;
use super::packet::{self, PacketError};
use super::reorder::{Reorder, ReorderConfig};
use crate::interleave::InterleaveConfig;
use crate::session::SessionPipeline;

/// RFC 3551 §6, table 5: "PT 33, encoding name MP2T, media type AV, clock
/// rate 90,000".
pub const PAYLOAD_TYPE_MP2T: u8 = 33;

/// Size of one MPEG transport stream packet.
const TS_PACKET: usize = 188;

/// Why a datagram was not taken as MPEG-TS over RTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsRtpError {
    /// Not an RTP packet.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// An RTP packet of another payload type.
    #[error("RTP packet {sequence}: payload type {payload_type}, expected 33 (MP2T)")]
    PayloadType {
        /// Sequence number of the packet.
        sequence: u16,
        /// Its payload type.
        payload_type: u8,
    },
    /// The payload is not whole transport stream packets.
    #[error(
        "RTP packet {sequence}: {len}-byte payload is not a whole number of 188-byte TS packets starting with 0x47"
    )]
    Payload {
        /// Sequence number of the packet.
        sequence: u16,
        /// Payload length.
        len: usize,
    },
}

/// One RTP/MPEG-TS input: reorders packets and feeds their payloads to a
/// [`SessionPipeline`] (TS demuxer and track gate).
#[derive(Debug)]
pub struct TsOverRtp {
    reorder: Reorder<Bytes>,
    pipeline: SessionPipeline,
    ssrc: Option<u32>,
    stats: RtpStats,
    /// When input last came (the time `finish` releases at).
    last_input: Option<Instant>,
    /// How the pipeline merges the tracks (kept for the next sender's).
    interleave: InterleaveConfig,
}

impl TsOverRtp {
    /// A receiver reordering within `config`'s window.
    pub fn new(config: ReorderConfig) -> Self {
        TsOverRtp {
            reorder: Reorder::new(config),
            pipeline: SessionPipeline::new(),
            ssrc: None,
            stats: RtpStats::default(),
            last_input: None,
            interleave: InterleaveConfig::default(),
        }
    }

    /// Merge the tracks by `config` ([`InterleaveConfig::for_audio_layout`]:
    /// video does not wait for audio where the packager puts audio in a
    /// rendition of its own).
    pub fn with_interleave(mut self, config: InterleaveConfig) -> Self {
        self.interleave = config;
        self.pipeline = SessionPipeline::new().with_interleave(config);
        self
    }

    /// Take one datagram received at `now`; bus messages it completes are
    /// appended to `out`. An error means the datagram was ignored.
    pub fn push_datagram(
        &mut self,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), TsRtpError> {
        let result = self.accept(datagram, now, out);
        if result.is_err() {
            self.stats.invalid += 1;
        }
        self.drain(now, out);
        result
    }

    fn accept(
        &mut self,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<BusMessage>,
    ) -> Result<(), TsRtpError> {
        let packet = packet::parse(datagram)?;
        let sequence = packet.sequence;
        if packet.payload_type != PAYLOAD_TYPE_MP2T {
            return Err(TsRtpError::PayloadType {
                sequence,
                payload_type: packet.payload_type,
            });
        }
        // RFC 2250 §2: "The RTP payload will contain an integral number of
        // MPEG transport packets."
        let len = packet.payload.len();
        if len == 0 || len % TS_PACKET != 0 || packet.payload.first() != Some(&0x47) {
            return Err(TsRtpError::Payload { sequence, len });
        }
        // RFC 3550 §8.2: a new SSRC is a new source; its numbering has
        // nothing to do with the old one's.
        if self.ssrc.is_some_and(|ssrc| ssrc != packet.ssrc) {
            self.stats.ssrc_changes += 1;
            self.flush_reorder(now, out);
            self.reorder.reset();
        }
        self.ssrc = Some(packet.ssrc);
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        trace!(
            sequence,
            timestamp = packet.timestamp,
            len,
            "RTP/MP2T packet"
        );
        self.reorder.push(sequence, now, packet.payload);
        Ok(())
    }

    /// Release what the jitter window lets go at `now` (call at
    /// [`deadline`](TsOverRtp::deadline)).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        self.drain(now, out);
    }

    /// When [`poll`](TsOverRtp::poll) should be called next, if no
    /// datagram comes first.
    pub fn deadline(&mut self) -> Option<Instant> {
        self.reorder.deadline()
    }

    /// The sender has gone: release everything held, end the demuxer, and
    /// start afresh for the next sender. Counters carry on.
    pub fn finish(&mut self, out: &mut Vec<BusMessage>) {
        let now = self.last_input.unwrap_or_else(Instant::now);
        self.flush_reorder(now, out);
        self.pipeline.finish(now, &mut |m| out.push(m));
        self.discard();
    }

    /// Drop all state of the current sender without output (its messages
    /// have nowhere to go). Counters carry on.
    pub fn discard(&mut self) {
        self.reorder.reset();
        self.stats.units += self.pipeline.units;
        self.pipeline = SessionPipeline::new().with_interleave(self.interleave);
        self.ssrc = None;
        self.last_input = None;
    }

    /// Counters so far.
    pub fn stats(&self) -> RtpStats {
        let mut stats = self.stats;
        stats.apply(self.reorder.stats());
        stats.units = self.stats.units + self.pipeline.units;
        stats
    }

    fn flush_reorder(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        let Self {
            reorder, pipeline, ..
        } = self;
        for payload in reorder.flush() {
            pipeline.push(&payload, now, &mut |m| out.push(m));
        }
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<BusMessage>) {
        self.last_input = Some(now);
        while let Some(payload) = self.reorder.poll(now) {
            self.pipeline.push(&payload, now, &mut |m| out.push(m));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    /// Two seconds of H.264 + AAC in MPEG-TS from Debian's ffmpeg, or
    /// `None` where ffmpeg is missing.
    fn transport_stream() -> Option<Vec<u8>> {
        let output = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-bf",
                "2",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-f",
                "mpegts",
                "-",
            ])
            .output()
            .ok()?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some(output.stdout)
    }

    /// RTP datagrams of `per` TS packets each, numbered from `first`.
    fn datagrams(ts: &[u8], per: usize, first: u16) -> Vec<Vec<u8>> {
        ts.chunks(188 * per)
            .enumerate()
            .map(|(i, chunk)| {
                let seq = first.wrapping_add(i as u16);
                let mut d = vec![0x80, 33];
                d.extend_from_slice(&seq.to_be_bytes());
                d.extend_from_slice(&(i as u32 * 3600).to_be_bytes());
                d.extend_from_slice(&0x1234_5678u32.to_be_bytes());
                d.extend_from_slice(chunk);
                d
            })
            .collect()
    }

    fn receive(datagrams: &[Vec<u8>]) -> (Vec<BusMessage>, RtpStats) {
        receive_with(datagrams, InterleaveConfig::default())
    }

    fn receive_with(
        datagrams: &[Vec<u8>],
        interleave: InterleaveConfig,
    ) -> (Vec<BusMessage>, RtpStats) {
        let t0 = Instant::now();
        let mut rx = TsOverRtp::new(ReorderConfig::with_window(Duration::from_millis(50)))
            .with_interleave(interleave);
        let mut out = Vec::new();
        for d in datagrams {
            rx.push_datagram(d, t0, &mut out).unwrap();
        }
        rx.poll(t0 + Duration::from_secs(1), &mut out);
        rx.finish(&mut out);
        // Every unit is stamped with the wall clock it was released at;
        // the media is what is compared.
        for message in &mut out {
            if let BusMessage::Unit(unit) = message {
                assert!(unit.captured_unix_ms.is_some(), "an unstamped unit");
                let mut unit = unit.as_ref().clone();
                unit.captured_unix_ms = None;
                *message = BusMessage::Unit(std::sync::Arc::new(unit));
            }
        }
        (out, rx.stats())
    }

    /// Swap neighbours in a pattern and repeat a few: what a jittery path
    /// does, well within the window. The first packet stays first: it fixes
    /// where the sequence starts (see `reorder`).
    fn shuffled(datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut v = datagrams.to_vec();
        for i in (2..v.len()).step_by(3) {
            v.swap(i - 1, i);
        }
        for i in (5..v.len()).step_by(11) {
            let again = v[i - 4].clone();
            v.insert(i, again);
        }
        v
    }

    #[test]
    fn same_media_for_any_order_and_packetisation() {
        let Some(ts) = transport_stream() else {
            return;
        };
        let (reference, stats) = receive(&datagrams(&ts, 7, 65_000));
        let units = reference
            .iter()
            .filter(|m| matches!(m, BusMessage::Unit(_)))
            .count();
        assert!(matches!(reference.first(), Some(BusMessage::Tracks(t)) if t.len() == 2));
        assert!(units > 50 + 90, "{units} units");
        assert_eq!((stats.lost, stats.reordered, stats.invalid), (0, 0, 0));

        let (out, stats) = receive(&shuffled(&datagrams(&ts, 7, 65_000)));
        assert!(out == reference, "reordered input changed the output");
        assert!(
            stats.reordered > 0 && stats.duplicates + stats.late > 0,
            "{stats:?}"
        );
        assert_eq!(stats.lost, 0);
        for per in [1, 3, 5] {
            let (out, _) = receive(&datagrams(&ts, per, 12_345));
            assert!(
                out == reference,
                "{per} TS packets per datagram changed the output"
            );
        }
    }

    #[test]
    fn loss_is_counted_and_survived() {
        let Some(ts) = transport_stream() else {
            return;
        };
        let mut d = datagrams(&ts, 7, 1);
        d.remove(20);
        d.remove(50);
        let (out, stats) = receive(&d);
        assert_eq!(stats.lost, 2);
        assert!(
            out.iter()
                .filter(|m| matches!(m, BusMessage::Unit(_)))
                .count()
                > 100
        );
    }

    #[test]
    fn foreign_datagrams_are_refused() {
        let t0 = Instant::now();
        let mut rx = TsOverRtp::new(ReorderConfig::with_window(Duration::from_millis(50)));
        let mut out = Vec::new();
        let mut d = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        d.extend_from_slice(&[0x47; 188]);
        assert!(matches!(
            rx.push_datagram(&d, t0, &mut out),
            Err(TsRtpError::PayloadType {
                sequence: 1,
                payload_type: 96
            })
        ));
        d[1] = 33;
        d.truncate(12 + 100);
        assert!(matches!(
            rx.push_datagram(&d, t0, &mut out),
            Err(TsRtpError::Payload { len: 100, .. })
        ));
        assert!(matches!(
            rx.push_datagram(b"hello", t0, &mut out),
            Err(TsRtpError::Packet(_))
        ));
        assert_eq!(rx.stats().invalid, 3);
        assert_eq!(rx.stats().packets, 0);
        assert!(out.is_empty());
    }

    /// The units of `out` in the order they left, as (kind, decode time).
    fn units(out: &[BusMessage]) -> Vec<(ferrocast_media::TrackKind, i64)> {
        out.iter()
            .filter_map(|m| match m {
                BusMessage::Unit(u) => Some((u.kind, u.dts.ticks())),
                _ => None,
            })
            .collect()
    }

    /// How many video units left before the first audio unit although
    /// they decode more than 200 ms after it.
    fn video_ahead_of_first_audio(units: &[(ferrocast_media::TrackKind, i64)]) -> usize {
        use ferrocast_media::TrackKind::{Audio, Video};
        let first_audio = units.iter().position(|(k, _)| *k == Audio).unwrap();
        let audio_dts = units[first_audio].1;
        units[..first_audio]
            .iter()
            .filter(|(k, dts)| *k == Video && *dts > audio_dts + 200 * 90)
            .count()
    }

    #[test]
    fn video_waits_for_batched_audio_only_when_muxed_with_it() {
        // ffmpeg's default muxing: about 0.37 s of AAC per PES, sent after
        // the video of the same time.
        let Some(ts) = transport_stream() else {
            return;
        };
        let d = datagrams(&ts, 7, 1);
        let (merged, _) = receive_with(&d, InterleaveConfig::for_audio_layout(false));
        let (apart, _) = receive_with(&d, InterleaveConfig::for_audio_layout(true));
        let (merged, apart) = (units(&merged), units(&apart));
        // Muxed beside the video downstream: video waits for its audio.
        assert_eq!(video_ahead_of_first_audio(&merged), 0, "{merged:?}");
        // Audio apart: video leaves as it arrives, before the batch.
        assert!(video_ahead_of_first_audio(&apart) > 0, "{apart:?}");
        // The same units either way, each track in its own order.
        for kind in [
            ferrocast_media::TrackKind::Video,
            ferrocast_media::TrackKind::Audio,
        ] {
            let of = |u: &[(ferrocast_media::TrackKind, i64)]| {
                u.iter()
                    .filter(|(k, _)| *k == kind)
                    .copied()
                    .collect::<Vec<_>>()
            };
            assert_eq!(of(&merged), of(&apart), "{kind:?}");
        }
        // The discarded sender's successor is merged the same way.
        let t0 = Instant::now();
        let mut rx = TsOverRtp::new(ReorderConfig::with_window(Duration::from_millis(50)))
            .with_interleave(InterleaveConfig::for_audio_layout(true));
        let mut out = Vec::new();
        rx.push_datagram(&d[0], t0, &mut out).unwrap();
        rx.discard();
        for datagram in &d {
            rx.push_datagram(datagram, t0, &mut out).unwrap();
        }
        rx.poll(t0 + Duration::from_secs(1), &mut out);
        assert!(video_ahead_of_first_audio(&units(&out)) > 0);
    }
}
