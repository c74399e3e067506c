//! Keeping a publisher's timeline sane: timestamp jumps, and drift between
//! the audio clock, the video clock and the wall clock. Sans-IO: arrival
//! times come in as arguments.
//!
//! Encoders restart, splice, lose their clock or run it slightly off true.
//! None of that may reach the bus as a broken timeline, so every access unit
//! passes through a [`TimelineGuard`] before the track gate:
//!
//! - **Jumps.** A track whose decode time steps forward by more than
//!   [`TimelineConfig::max_forward_step`] or back by
//!   [`TimelineConfig::max_backward_step`] has jumped. The guard corrects it
//!   (the unit continues one frame interval after the previous one) and
//!   flags a [`Verdict::Discontinuity`]. The other track of the stream
//!   usually jumps by the same amount a moment later (an encoder restart
//!   moves both clocks); when its jump is within `max_backward_step` of the
//!   first one, it gets the *same* correction, so the two tracks keep the
//!   A/V relationship the source gave them.
//! - **Drift against the wall clock.** Each track's *lateness* (arrival
//!   time minus media time, both since the track's first unit) is tracked as
//!   its minimum over [`TimelineConfig::drift_window`]: network and muxer
//!   delays only ever add to lateness, so the minimum is a steady estimate
//!   of the sender's clock against ours, immune to audio batched into large
//!   PES packets. The first complete window is the baseline. A video clock
//!   (or, without video, the audio clock) that drifts more than
//!   [`TimelineConfig::max_wall_drift`] from the wall clock is flagged as a
//!   discontinuity, so that the packager re-anchors program date time, and
//!   the measurement starts afresh.
//! - **Drift between audio and video.** When the audio clock's drift differs
//!   from the video clock's by more than [`TimelineConfig::max_av_drift`],
//!   the audio timeline is shifted back into step with video and a
//!   discontinuity is flagged (the shift leaves a gap or an overlap in the
//!   audio that a player must not try to play through).
//!
//! A unit whose corrected decode time does not advance past its track's
//! previous one (audio of a restarted encoder overlapping the old one by
//! its priming frames, a repeated frame) is dropped ([`Verdict::Drop`]):
//! every track leaves the guard strictly increasing.
//!
//! Drift is acted on only when it holds, with one sign, over
//! [`TimelineConfig::drift_persist_windows`] consecutive windows (10 s by
//! default): a sender that stalls and catches up is not drifting.
//!
//! Drift resynchronisations are at most one per
//! [`TimelineConfig::resync_cooldown`]: a sender that pushes faster than
//! real time (a file sent without pacing) is reported once, not turned into
//! a discontinuity every few seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferrocast_media::{AccessUnit, Time90k, TrackId, TrackKind};
use tracing::warn;

/// The most drift windows a meter remembers (bounds
/// [`TimelineConfig::drift_persist_windows`]).
const MAX_RECENT_WINDOWS: usize = 32;

/// Thresholds of the [`TimelineGuard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineConfig {
    /// A forward step of decode time larger than this is a jump.
    pub max_forward_step: Time90k,
    /// A backward step of decode time of this or more is a jump.
    pub max_backward_step: Time90k,
    /// Span of wall time over which lateness is minimised.
    pub drift_window: Duration,
    /// Drift of the media clock against the wall clock that is flagged.
    pub max_wall_drift: Time90k,
    /// Drift of the audio clock against the video clock that is corrected.
    pub max_av_drift: Time90k,
    /// The least wall time between two drift resynchronisations.
    pub resync_cooldown: Duration,
    /// Drift must be over its threshold, with one sign, in this many
    /// consecutive windows before it is acted on: a sender that stalls
    /// (CPU starvation, a network hiccup) and then catches up is not
    /// drifting.
    pub drift_persist_windows: usize,
    /// How long after a jump on one track the other track's jump is taken
    /// as the same event.
    pub jump_pairing: Duration,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            max_forward_step: Time90k::from_millis(1000),
            max_backward_step: Time90k::from_millis(500),
            drift_window: Duration::from_secs(2),
            max_wall_drift: Time90k::from_millis(2000),
            max_av_drift: Time90k::from_millis(250),
            resync_cooldown: Duration::from_secs(30),
            drift_persist_windows: 5,
            jump_pairing: Duration::from_secs(5),
        }
    }
}

/// What the guard says about a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The timeline goes on.
    Continue,
    /// The timeline broke just before this unit: send a discontinuity
    /// ahead of it.
    Discontinuity,
    /// The unit overlaps what its track already sent: drop it.
    Drop,
}

/// Counters of corrections made; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelineStats {
    /// Timestamp jumps corrected (one per event, however many tracks).
    pub jumps: u64,
    /// Times the media clock drifted too far from the wall clock.
    pub wall_resyncs: u64,
    /// Times audio was shifted back into step with video.
    pub av_corrections: u64,
    /// Units dropped because their decode time did not advance.
    pub dropped: u64,
}

/// The jump/drift guard of one publisher session.
#[derive(Debug)]
pub struct TimelineGuard {
    config: TimelineConfig,
    tracks: Vec<TrackClock>,
    last_jump: Option<Jump>,
    last_resync: Option<Instant>,
    /// A discontinuity flagged on a dropped unit, still to be sent.
    pending_break: bool,
    stats: TimelineStats,
}

#[derive(Debug, Clone)]
struct Jump {
    /// How far the first track's clock moved beyond its expected step.
    excess: Time90k,
    at: Instant,
    tracks: Vec<TrackId>,
}

#[derive(Debug)]
struct TrackClock {
    id: TrackId,
    kind: TrackKind,
    last_raw_dts: Option<Time90k>,
    /// The last decode time passed on.
    last_out_dts: Option<Time90k>,
    /// The last positive step of decode time (the frame interval).
    interval: Time90k,
    /// Added to the source's timestamps.
    offset: Time90k,
    drift: DriftMeter,
}

/// Lateness of one track, minimised over windows of wall time.
#[derive(Debug, Default)]
struct DriftMeter {
    anchor: Option<(Instant, Time90k)>,
    window_start: Option<Instant>,
    window_min: Option<i64>,
    baseline: Option<i64>,
    /// Latest complete window's minimum minus the baseline, in ticks:
    /// positive when media time runs slower than the wall clock.
    drift: Option<i64>,
    /// The drifts of the latest complete windows, oldest first.
    recent: VecDeque<i64>,
}

impl DriftMeter {
    /// The drift every one of the last `windows` windows agrees on: the
    /// smallest in magnitude when they all have one sign, else zero.
    /// `None` until that many windows are measured.
    fn sustained(&self, windows: usize) -> Option<i64> {
        if windows == 0 || self.recent.len() < windows {
            return None;
        }
        let last = self.recent.iter().rev().take(windows);
        let positive = last.clone().all(|&d| d > 0);
        let negative = last.clone().all(|&d| d < 0);
        if !(positive || negative) {
            return Some(0);
        }
        last.copied().min_by_key(|d| d.abs())
    }

    fn sample(&mut self, now: Instant, dts: Time90k, window: Duration) {
        let (arrival0, dts0) = *self.anchor.get_or_insert((now, dts));
        let wall = now.saturating_duration_since(arrival0);
        let wall_ticks =
            i64::try_from(wall.as_micros().saturating_mul(9) / 100).unwrap_or(i64::MAX);
        let lateness = wall_ticks.saturating_sub((dts - dts0).ticks());
        let start = *self.window_start.get_or_insert(now);
        self.window_min = Some(self.window_min.map_or(lateness, |m| m.min(lateness)));
        if now.saturating_duration_since(start) >= window {
            if let Some(min) = self.window_min.take() {
                match self.baseline {
                    None => self.baseline = Some(min),
                    Some(base) => {
                        self.drift = Some(min - base);
                        self.recent.push_back(min - base);
                        if self.recent.len() > MAX_RECENT_WINDOWS {
                            self.recent.pop_front();
                        }
                    }
                }
            }
            self.window_start = Some(now);
        }
    }

    fn reset(&mut self) {
        *self = DriftMeter::default();
    }
}

impl TimelineGuard {
    /// A guard with `config`'s thresholds.
    pub fn new(config: TimelineConfig) -> Self {
        TimelineGuard {
            config,
            tracks: Vec::new(),
            last_jump: None,
            last_resync: None,
            pending_break: false,
            stats: TimelineStats::default(),
        }
    }

    /// Corrections made so far.
    pub fn stats(&self) -> TimelineStats {
        self.stats
    }

    /// The latest measured drift of the media clock against the wall
    /// clock (video, or audio without video); positive when media time
    /// runs slower than real time. `None` until measured.
    pub fn wall_drift(&self) -> Option<Time90k> {
        self.reference().and_then(|t| t.drift.drift).map(Time90k)
    }

    /// Check `unit`, arrived at `now`, correcting its timestamps in place.
    pub fn on_unit(&mut self, unit: &mut AccessUnit, now: Instant) -> Verdict {
        let config = self.config;
        let index = self.track_index(unit.track, unit.kind);
        let mut verdict = Verdict::Continue;
        let track = &mut self.tracks[index];
        if let Some(last) = track.last_raw_dts {
            let step = unit.dts - last;
            let jumped =
                step > config.max_forward_step || step.ticks() <= -config.max_backward_step.ticks();
            if jumped {
                let excess = step - track.interval;
                let paired = self.last_jump.as_mut().filter(|j| {
                    now.saturating_duration_since(j.at) <= config.jump_pairing
                        && !j.tracks.contains(&track.id)
                        && (j.excess - excess).ticks().abs() < config.max_backward_step.ticks()
                });
                let correction = match paired {
                    Some(jump) => {
                        jump.tracks.push(track.id);
                        jump.excess
                    }
                    None => {
                        warn!(
                            track = track.id.0,
                            jump_ms = step.as_millis(),
                            "source timestamps jumped: corrected, discontinuity flagged"
                        );
                        self.stats.jumps += 1;
                        verdict = Verdict::Discontinuity;
                        self.last_jump = Some(Jump {
                            excess,
                            at: now,
                            tracks: vec![track.id],
                        });
                        excess
                    }
                };
                track.offset = track.offset - correction;
            } else if step.ticks() > 0 {
                track.interval = step;
            }
        }
        track.last_raw_dts = Some(unit.dts);
        unit.dts = unit.dts + track.offset;
        unit.pts = unit.pts + track.offset;
        if track.last_out_dts.is_some_and(|last| unit.dts <= last) {
            self.stats.dropped += 1;
            // A break flagged on this unit goes ahead of the next one.
            self.pending_break |= verdict == Verdict::Discontinuity;
            return Verdict::Drop;
        }
        if std::mem::take(&mut self.pending_break) {
            verdict = Verdict::Discontinuity;
        }
        track.last_out_dts = Some(unit.dts);
        track.drift.sample(now, unit.dts, config.drift_window);
        if self.check_drift(now) {
            verdict = Verdict::Discontinuity;
        }
        verdict
    }

    fn track_index(&mut self, id: TrackId, kind: TrackKind) -> usize {
        if let Some(i) = self.tracks.iter().position(|t| t.id == id) {
            return i;
        }
        self.tracks.push(TrackClock {
            id,
            kind,
            last_raw_dts: None,
            last_out_dts: None,
            interval: Time90k::ZERO,
            offset: Time90k::ZERO,
            drift: DriftMeter::default(),
        });
        self.tracks.len() - 1
    }

    /// The clock that stands for the stream against the wall clock.
    fn reference(&self) -> Option<&TrackClock> {
        self.tracks
            .iter()
            .find(|t| t.kind == TrackKind::Video)
            .or_else(|| self.tracks.first())
    }

    /// Whether a drift resynchronisation happened.
    fn check_drift(&mut self, now: Instant) -> bool {
        let cooled = self
            .last_resync
            .is_none_or(|at| now.saturating_duration_since(at) >= self.config.resync_cooldown);
        if !cooled {
            return false;
        }
        let windows = self.config.drift_persist_windows.min(MAX_RECENT_WINDOWS);
        let drift_of = |kind| {
            self.tracks
                .iter()
                .find(|t| t.kind == kind)
                .and_then(|t| t.drift.sustained(windows))
        };
        if let (Some(video), Some(audio)) = (drift_of(TrackKind::Video), drift_of(TrackKind::Audio))
        {
            // Audio later than video (its clock slower) by `relative`.
            let relative = audio - video;
            if relative.abs() > self.config.max_av_drift.ticks() {
                warn!(
                    drift_ms = Time90k(relative).as_millis(),
                    "audio clock drifted from the video clock: audio shifted, discontinuity flagged"
                );
                for track in &mut self.tracks {
                    if track.kind == TrackKind::Audio {
                        track.offset = track.offset + Time90k(relative);
                    }
                }
                self.stats.av_corrections += 1;
                self.resync(now);
                return true;
            }
        }
        if let Some(drift) = self
            .reference()
            .and_then(|t| t.drift.sustained(windows))
            .map(Time90k)
            && drift.ticks().abs() > self.config.max_wall_drift.ticks()
        {
            warn!(
                drift_ms = drift.as_millis(),
                "source clock drifted from the wall clock: discontinuity flagged"
            );
            self.stats.wall_resyncs += 1;
            self.resync(now);
            return true;
        }
        false
    }

    fn resync(&mut self, now: Instant) {
        self.last_resync = Some(now);
        for track in &mut self.tracks {
            track.drift.reset();
        }
    }
}

impl Default for TimelineGuard {
    fn default() -> Self {
        TimelineGuard::new(TimelineConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const VIDEO: TrackId = TrackId(256);
    const AUDIO: TrackId = TrackId(257);

    fn unit(track: TrackId, kind: TrackKind, dts_ms: i64) -> AccessUnit {
        AccessUnit {
            track,
            kind,
            pts: Time90k::from_millis(dts_ms + 40),
            dts: Time90k::from_millis(dts_ms),
            keyframe: true,
            data: Bytes::new(),
            captured_unix_ms: None,
            trace: None,
        }
    }

    /// Feed video every 40 ms and audio every 20 ms of media time, arriving
    /// at `wall(media_ms)`; returns (output units, discontinuity positions).
    fn run(
        guard: &mut TimelineGuard,
        start: Instant,
        media: std::ops::Range<i64>,
        source: impl Fn(TrackKind, i64) -> i64,
        wall: impl Fn(i64) -> u64,
    ) -> (Vec<AccessUnit>, Vec<usize>) {
        let mut out = Vec::new();
        let mut breaks = Vec::new();
        for ms in media.step_by(20) {
            let now = start + Duration::from_millis(wall(ms));
            let mut kinds = vec![(AUDIO, TrackKind::Audio)];
            if ms % 40 == 0 {
                kinds.insert(0, (VIDEO, TrackKind::Video));
            }
            for (id, kind) in kinds {
                let mut u = unit(id, kind, source(kind, ms));
                if guard.on_unit(&mut u, now) == Verdict::Discontinuity {
                    breaks.push(out.len());
                }
                out.push(u);
            }
        }
        (out, breaks)
    }

    fn steps(out: &[AccessUnit], kind: TrackKind) -> Vec<i64> {
        let times: Vec<i64> = out
            .iter()
            .filter(|u| u.kind == kind)
            .map(|u| u.dts.as_millis())
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[test]
    fn steady_live_source_passes_untouched() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        let (out, breaks) = run(
            &mut guard,
            start,
            0..60_000,
            |_, ms| ms + 10_000,
            |ms| ms as u64,
        );
        assert!(breaks.is_empty());
        assert!(
            out.iter()
                .all(|u| u.pts - u.dts == Time90k::from_millis(40))
        );
        assert_eq!(out[0].dts, Time90k::from_millis(10_000));
        assert_eq!(guard.stats(), TimelineStats::default());
        assert_eq!(guard.wall_drift(), Some(Time90k::ZERO));
    }

    #[test]
    fn encoder_restart_is_corrected_once_and_keeps_av_sync() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        // At 5 s of media both clocks restart near zero (the encoder came
        // back); audio's jump shows up a frame later than video's.
        let (out, breaks) = run(
            &mut guard,
            start,
            0..10_000,
            |_, ms| {
                if ms < 5_000 {
                    ms + 80_000
                } else {
                    ms - 5_000 + 123
                }
            },
            |ms| ms as u64,
        );
        assert_eq!(breaks.len(), 1, "one event, one discontinuity");
        assert_eq!(guard.stats().jumps, 1);
        assert!(steps(&out, TrackKind::Video).iter().all(|&s| s == 40));
        assert!(steps(&out, TrackKind::Audio).iter().all(|&s| s == 20));
        // A/V stays as the source had it: the unit pairs at one media
        // instant still share one decode time.
        let video_at = |i: usize| out.iter().filter(|u| u.kind == TrackKind::Video).nth(i);
        let audio_at = |i: usize| out.iter().filter(|u| u.kind == TrackKind::Audio).nth(i);
        for i in [0, 124, 125, 200] {
            assert_eq!(video_at(i).map(|u| u.dts), audio_at(2 * i).map(|u| u.dts));
        }
    }

    #[test]
    fn units_that_do_not_advance_are_dropped() {
        let mut guard = TimelineGuard::default();
        let now = Instant::now();
        let mut verdicts = Vec::new();
        for ms in [0, 20, 40, 40, 30, 60] {
            let mut u = unit(AUDIO, TrackKind::Audio, ms);
            verdicts.push(guard.on_unit(&mut u, now));
        }
        use Verdict::{Continue as C, Drop as D};
        assert_eq!(verdicts, vec![C, C, C, D, D, C]);
        assert_eq!(guard.stats().dropped, 2);
    }

    #[test]
    fn backward_jump_is_corrected() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        let (out, breaks) = run(
            &mut guard,
            start,
            0..4_000,
            |_, ms| if ms < 2_000 { ms } else { ms - 1_500 },
            |ms| ms as u64,
        );
        assert_eq!(breaks.len(), 1);
        assert!(steps(&out, TrackKind::Video).iter().all(|&s| s == 40));
    }

    #[test]
    fn audio_clock_drift_is_corrected_back_into_step() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        // Audio media time runs 1 % slow: 250 ms behind after 25 s.
        let (out, breaks) = run(
            &mut guard,
            start,
            0..40_000,
            |kind, ms| match kind {
                TrackKind::Audio => ms * 99 / 100,
                TrackKind::Video => ms,
            },
            |ms| ms as u64,
        );
        assert_eq!(guard.stats().av_corrections, 1, "{:?}", guard.stats());
        assert_eq!(breaks.len(), 1);
        // After the correction audio is back within the threshold of video.
        let last_video = out.iter().rev().find(|u| u.kind == TrackKind::Video);
        let last_audio = out.iter().rev().find(|u| u.kind == TrackKind::Audio);
        let (Some(v), Some(a)) = (last_video, last_audio) else {
            panic!("no output");
        };
        assert!((v.dts - a.dts).ticks().abs() < Time90k::from_millis(250).ticks());
    }

    #[test]
    fn wall_clock_drift_is_flagged_once_per_cooldown() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        // The sender's clock runs 10 % fast: media gets ahead of the wall
        // clock by 2 s after 20 s of wall time.
        let (_, breaks) = run(
            &mut guard,
            start,
            0..44_000,
            |_, ms| ms,
            |ms| (ms * 10 / 11) as u64,
        );
        assert_eq!(guard.stats().wall_resyncs, 1, "{:?}", guard.stats());
        assert_eq!(breaks.len(), 1);
        assert_eq!(guard.stats().av_corrections, 0);
    }

    #[test]
    fn a_sender_that_falls_behind_and_catches_up_is_not_drifting() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        // 2.5 s behind for 6 s (CPU starvation), then caught up.
        let (_, breaks) = run(
            &mut guard,
            start,
            0..60_000,
            |_, ms| ms,
            |ms| {
                if (20_000..26_000).contains(&ms) {
                    ms as u64 + 2_500
                } else {
                    ms as u64
                }
            },
        );
        assert!(breaks.is_empty(), "{:?}", guard.stats());
        assert_eq!(guard.stats(), TimelineStats::default());
    }

    #[test]
    fn batched_audio_arrival_is_not_drift() {
        let mut guard = TimelineGuard::default();
        let start = Instant::now();
        // Audio arrives in batches every 360 ms (large PES packets).
        let (_, breaks) = run(&mut guard, start, 0..60_000, |_, ms| ms, |ms| ms as u64);
        assert!(breaks.is_empty());
        let mut guard = TimelineGuard::default();
        let mut breaks = 0;
        for ms in (0..60_000i64).step_by(20) {
            let arrival = |kind| match kind {
                TrackKind::Audio => (ms / 360 + 1) * 360,
                TrackKind::Video => ms,
            };
            for (id, kind) in [(VIDEO, TrackKind::Video), (AUDIO, TrackKind::Audio)] {
                if kind == TrackKind::Video && ms % 40 != 0 {
                    continue;
                }
                let mut u = unit(id, kind, ms);
                let now = start + Duration::from_millis(arrival(kind) as u64);
                breaks += usize::from(guard.on_unit(&mut u, now) == Verdict::Discontinuity);
            }
        }
        assert_eq!(breaks, 0, "{:?}", guard.stats());
    }
}
