//! A/V sync of elementary RTP streams from RTCP sender reports. Sans-IO.
//!
//! RFC 3550 §6.4.1: a sender report's "NTP timestamp ... indicates the
//! wallclock time ... when this report was sent" and its "RTP timestamp:
//! ... corresponds to the same time as the NTP timestamp (above), but in
//! the same units and with the same random offset as the RTP timestamps in
//! data packets. This correspondence may be used for intra- and inter-media
//! synchronization for sources whose NTP timestamps are synchronized". Each
//! track's depacketiser puts its first unit at zero of its own timeline;
//! [`AvSync`] turns one sender report per track into the offset that puts
//! both on one timeline, the track that started first at zero.
//!
//! Rules (see `docs/configuration.md`):
//! - units are held (not passed on) until both tracks have a unit and a
//!   sender report of the same SSRC, or until [`SYNC_WINDOW`] after the first
//!   unit; then the offsets are fixed for the sender's session. Without
//!   reports in the window, each track's first unit is zero (the fallback);
//! - only the first usable report of each track is used. ffmpeg's RTP muxer
//!   (libavformat/rtpenc.c, 5.1) does not take a report's RTP timestamp
//!   from its packets: it computes it from the wall clock elapsed since the
//!   muxer wrote its header (`first_rtcp_ntp_time`, or the
//!   `start_time_realtime` option when set), plus the stream's random base.
//!   Packet timestamps are the base plus the media PTS. The two agree only
//!   while the sender runs in real time (`-re`); a sender that runs faster
//!   or stalls makes later reports disagree with the first, and following
//!   them would make the timeline jump. Each ffmpeg output (`-f rtp`) is its
//!   own muxer with its own header time, so the offset also carries the
//!   few milliseconds between the two header writes — less than what the
//!   fallback gets wrong (the encoders' different start delays);
//! - an offset beyond [`MAX_SYNC_OFFSET`] is not believed (clocks not
//!   synchronised, a broken sender): the fallback is used, with a warning.
//!
//! RTCP packets are split from the compound datagram here and only sender
//! reports (PT 200) are handed to the `rtcp` crate, each as an exact slice,
//! so other packet types a stranger sends never reach its parsers.

use std::time::{Duration, Instant};

use ferrocast_media::Time90k;
use webrtc_util::Unmarshal;

/// How long units wait for both tracks' sender reports after the first
/// unit (ffmpeg sends a report before each stream's first packet).
pub const SYNC_WINDOW: Duration = Duration::from_millis(1000);

/// The largest offset between the two tracks' starts that sender reports
/// may give; beyond it the reports are not used.
pub const MAX_SYNC_OFFSET: Time90k = Time90k::from_millis(4000);

/// One RTCP sender report, the parts sync uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// NTP timestamp, 32.32 fixed point seconds since 1900.
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_time: u32,
}

/// Why an RTCP datagram was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// A packet header that is not RTCP version 2, or whose length runs
    /// past the datagram.
    #[error("RTCP packet at byte {offset} of a {len}-byte datagram: malformed header")]
    Header {
        /// Offset of the packet within the datagram.
        offset: usize,
        /// Datagram length.
        len: usize,
    },
    /// A sender report the `rtcp` crate refused.
    #[error("RTCP sender report at byte {offset}: {reason}")]
    SenderReport {
        /// Offset of the packet within the datagram.
        offset: usize,
        /// Why.
        reason: String,
    },
}

/// RFC 5761 §4: on a port shared by RTP and RTCP, "the RTCP packet type
/// field occupies the same position in the packet as the combination of
/// the RTP marker (M) bit and the RTP payload type (PT)", and packet types
/// 192 to 223 are RTCP.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram
        .get(1)
        .is_some_and(|pt| (192..=223).contains(pt) && datagram[0] >> 6 == 2)
}

/// The sender reports of a compound RTCP datagram (RFC 3550 §6.1); other
/// packet types are skipped.
pub fn sender_reports(datagram: &[u8]) -> Result<Vec<SenderReport>, RtcpError> {
    const SENDER_REPORT: u8 = 200;
    let len = datagram.len();
    let mut reports = Vec::new();
    let mut offset = 0;
    while offset < len {
        // §6.4.1: "version (V): 2 bits", "length: 16 bits The length of
        // this RTCP packet in 32-bit words minus one, including the header
        // and any padding."
        let bad = RtcpError::Header { offset, len };
        let header = datagram.get(offset..offset + 4).ok_or(bad.clone())?;
        if header[0] >> 6 != 2 {
            return Err(bad);
        }
        let size = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        let packet = datagram.get(offset..offset + size).ok_or(bad)?;
        if header[1] == SENDER_REPORT {
            let mut buf = packet;
            let sr = ::rtcp::sender_report::SenderReport::unmarshal(&mut buf).map_err(|e| {
                RtcpError::SenderReport {
                    offset,
                    reason: e.to_string(),
                }
            })?;
            reports.push(SenderReport {
                ssrc: sr.ssrc,
                ntp: sr.ntp_time,
                rtp_time: sr.rtp_time,
            });
        }
        offset += size;
    }
    Ok(reports)
}

/// Which track of an elementary session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The video track.
    Video,
    /// The audio track.
    Audio,
}

impl Track {
    fn index(self) -> usize {
        match self {
            Track::Video => 0,
            Track::Audio => 1,
        }
    }
}

/// How the tracks were put on one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// By sender reports: the offset of each track (video, audio) from the
    /// session's zero.
    SenderReports {
        /// Added to every video time.
        video: Time90k,
        /// Added to every audio time.
        audio: Time90k,
    },
    /// No usable reports in time: each track's first unit is zero.
    FirstUnits,
}

impl Placement {
    /// The offset added to `track`'s times.
    pub fn offset(self, track: Track) -> Time90k {
        match (self, track) {
            (Placement::SenderReports { video, .. }, Track::Video) => video,
            (Placement::SenderReports { audio, .. }, Track::Audio) => audio,
            (Placement::FirstUnits, _) => Time90k::ZERO,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct TrackState {
    present: bool,
    rate: u32,
    /// SSRC, RTP timestamp and track time of a unit (the first).
    unit: Option<(u32, u32, Time90k)>,
    /// The first sender report of each SSRC seen most recently.
    report: Option<SenderReport>,
}

/// Decides how the tracks of one sender session share a timeline.
#[derive(Debug, Clone)]
pub struct AvSync {
    tracks: [TrackState; 2],
    first_unit_at: Option<Instant>,
    placement: Option<Placement>,
}

impl AvSync {
    /// For a session with a video track of RTP clock `video` Hz and an
    /// audio track of `audio` Hz, either of which may be absent.
    pub fn new(video: Option<u32>, audio: Option<u32>) -> Self {
        let state = |rate: Option<u32>| TrackState {
            present: rate.is_some(),
            rate: rate.filter(|r| *r > 0).unwrap_or(90_000),
            unit: None,
            report: None,
        };
        let mut sync = AvSync {
            tracks: [state(video), state(audio)],
            first_unit_at: None,
            placement: None,
        };
        if !(sync.tracks[0].present && sync.tracks[1].present) {
            // One track: nothing to line up.
            sync.placement = Some(Placement::FirstUnits);
        }
        sync
    }

    /// Forget the sender (it left): the next one is placed anew.
    pub fn reset(&mut self) {
        let both = self.tracks.iter().all(|t| t.present);
        for t in &mut self.tracks {
            t.unit = None;
            t.report = None;
        }
        self.first_unit_at = None;
        self.placement = (!both).then_some(Placement::FirstUnits);
    }

    /// A sender report arrived for `track`'s port.
    pub fn on_sender_report(&mut self, track: Track, report: SenderReport) {
        let t = &mut self.tracks[track.index()];
        if t.report.is_none_or(|r| r.ssrc != report.ssrc) {
            t.report = Some(report);
        }
    }

    /// A unit of `track` from SSRC `ssrc` with RTP timestamp `rtp_time` is
    /// at `time` on the track's timeline; `now` is when it came.
    pub fn on_unit(&mut self, track: Track, ssrc: u32, rtp_time: u32, time: Time90k, now: Instant) {
        self.first_unit_at.get_or_insert(now);
        let t = &mut self.tracks[track.index()];
        if t.unit.is_none() {
            t.unit = Some((ssrc, rtp_time, time));
        }
    }

    /// The placement, once decided: at once when both tracks can be placed
    /// by reports, else [`SYNC_WINDOW`] after the first unit (or at once
    /// when `give_up`, at the end of input).
    pub fn placement(&mut self, now: Instant, give_up: bool) -> Option<Placement> {
        if self.placement.is_some() {
            return self.placement;
        }
        if let (Some(video), Some(audio)) = (self.zero_ntp(0), self.zero_ntp(1)) {
            let start = video.min(audio);
            let (video, audio) = (Time90k(video - start), Time90k(audio - start));
            if video.max(audio) > MAX_SYNC_OFFSET {
                tracing::warn!(
                    video_ms = video.as_millis(),
                    audio_ms = audio.as_millis(),
                    "RTCP sender reports put the tracks too far apart: not used; each track starts at its first packet"
                );
                self.placement = Some(Placement::FirstUnits);
            } else {
                tracing::info!(
                    video_ms = video.as_millis(),
                    audio_ms = audio.as_millis(),
                    "tracks placed by RTCP sender reports"
                );
                self.placement = Some(Placement::SenderReports { video, audio });
            }
            return self.placement;
        }
        let expired = self
            .first_unit_at
            .is_some_and(|at| now.saturating_duration_since(at) >= SYNC_WINDOW);
        if give_up || expired {
            tracing::info!(
                "no RTCP sender reports for both tracks: each track starts at its first packet"
            );
            self.placement = Some(Placement::FirstUnits);
        }
        self.placement
    }

    /// When [`placement`](Self::placement) decides by the window, if it is
    /// still open.
    pub fn deadline(&self) -> Option<Instant> {
        match self.placement {
            Some(_) => None,
            None => self.first_unit_at.map(|at| at + SYNC_WINDOW),
        }
    }

    /// The wall-clock time (90 kHz ticks since the NTP era) of the track's
    /// zero, if its unit and a report of the same SSRC are known.
    fn zero_ntp(&self, index: usize) -> Option<i64> {
        let t = &self.tracks[index];
        let (ssrc, rtp_time, time) = t.unit?;
        let report = t.report.filter(|r| r.ssrc == ssrc)?;
        // NTP 32.32 fixed point to 90 kHz ticks.
        let ntp = i64::try_from((u128::from(report.ntp) * 90_000) >> 32).ok()?;
        // RTP timestamps wrap; the report is near the unit (seconds), so
        // the signed 32-bit difference is the distance.
        let since_report = i64::from(rtp_time.wrapping_sub(report.rtp_time) as i32);
        let unit_ntp = ntp + Time90k::from_timescale(since_report, t.rate).ticks();
        Some(unit_ntp - time.ticks())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// An RTCP SR (no report blocks) followed by an SDES, as ffmpeg sends.
    pub(crate) fn sr_datagram(ssrc: u32, ntp: u64, rtp_time: u32) -> Vec<u8> {
        let mut d = vec![0x80, 200, 0, 6];
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(&ntp.to_be_bytes());
        d.extend_from_slice(&rtp_time.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 9, 0, 0, 1, 0]);
        // SDES with one CNAME chunk: 4 + 4 + 2 + 4 + pad to 16.
        d.extend_from_slice(&[0x81, 202, 0, 3]);
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.extend_from_slice(&[1, 4, b'h', b'o', b's', b't', 0, 0]);
        d
    }

    #[test]
    fn parses_sender_reports_and_refuses_garbage() {
        let d = sr_datagram(7, 0x1234_5678_9abc_def0, 99);
        assert!(is_rtcp(&d));
        assert_eq!(
            sender_reports(&d).unwrap(),
            [SenderReport {
                ssrc: 7,
                ntp: 0x1234_5678_9abc_def0,
                rtp_time: 99
            }]
        );
        assert!(!is_rtcp(&[0x80, 96, 0, 1]));
        assert!(!is_rtcp(&[0x80]));
        assert!(matches!(
            sender_reports(&d[..20]),
            Err(RtcpError::Header { offset: 0, .. })
        ));
        assert!(matches!(
            sender_reports(&[0x40, 200, 0, 0]),
            Err(RtcpError::Header { .. })
        ));
        // An SR whose length is too short for its sender info.
        assert!(matches!(
            sender_reports(&[0x80, 200, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::SenderReport { .. })
        ));
        // A report count the length does not hold.
        let mut d = sr_datagram(7, 1, 2);
        d[0] = 0x81;
        assert!(sender_reports(&d[..28]).is_err());
        assert_eq!(sender_reports(&[]).unwrap(), []);
    }

    /// NTP 32.32 of `ms` milliseconds after an arbitrary wall-clock instant.
    fn ntp(ms: u64) -> u64 {
        let base: u64 = 3_900_000_000 << 32;
        base + (ms << 32) / 1000
    }

    #[test]
    fn audio_starting_500_ms_after_video_is_placed_there() {
        let t0 = Instant::now();
        let mut sync = AvSync::new(Some(90_000), Some(48_000));
        // Unrelated random RTP bases; the video one about to wrap.
        let (vbase, abase) = (u32::MAX - 1000, 1_234_567_u32);
        // Reports sent 2 s into each stream (wall clock 2000 ms): video
        // 2 s after its first packet, audio 1.5 s after its own.
        sync.on_sender_report(
            Track::Video,
            SenderReport {
                ssrc: 1,
                ntp: ntp(2000),
                rtp_time: vbase.wrapping_add(180_000),
            },
        );
        sync.on_unit(Track::Video, 1, vbase, Time90k::ZERO, t0);
        assert_eq!(sync.placement(t0, false), None, "waits for audio");
        assert_eq!(sync.deadline(), Some(t0 + SYNC_WINDOW));
        sync.on_unit(Track::Audio, 2, abase, Time90k::ZERO, t0);
        assert_eq!(sync.placement(t0, false), None, "waits for its report");
        sync.on_sender_report(
            Track::Audio,
            SenderReport {
                ssrc: 2,
                ntp: ntp(2000),
                rtp_time: abase.wrapping_add(72_000),
            },
        );
        let p = sync.placement(t0, false).unwrap();
        assert_eq!(
            p,
            Placement::SenderReports {
                video: Time90k::ZERO,
                audio: Time90k(45_000)
            }
        );
        assert_eq!(sync.deadline(), None);
    }

    #[test]
    fn falls_back_without_reports_or_with_absurd_ones() {
        let t0 = Instant::now();
        let mut sync = AvSync::new(Some(90_000), Some(48_000));
        sync.on_unit(Track::Video, 1, 5, Time90k::ZERO, t0);
        // A report of another SSRC does not count.
        sync.on_sender_report(
            Track::Video,
            SenderReport {
                ssrc: 9,
                ntp: ntp(0),
                rtp_time: 5,
            },
        );
        assert_eq!(sync.placement(t0 + SYNC_WINDOW / 2, false), None);
        assert_eq!(
            sync.placement(t0 + SYNC_WINDOW, false),
            Some(Placement::FirstUnits)
        );
        sync.reset();
        assert_eq!(sync.placement(t0, false), None);
        sync.on_unit(Track::Video, 1, 0, Time90k::ZERO, t0);
        sync.on_unit(Track::Audio, 2, 0, Time90k::ZERO, t0);
        for (track, ssrc, ms) in [(Track::Video, 1, 0), (Track::Audio, 2, 60_000)] {
            sync.on_sender_report(
                track,
                SenderReport {
                    ssrc,
                    ntp: ntp(ms),
                    rtp_time: 0,
                },
            );
        }
        assert_eq!(sync.placement(t0, false), Some(Placement::FirstUnits));
        // One track only: decided from the start.
        let mut one = AvSync::new(None, Some(48_000));
        assert_eq!(one.placement(t0, false), Some(Placement::FirstUnits));
    }
}
