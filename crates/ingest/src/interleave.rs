//! Putting a publisher's tracks in decode-time order. Sans-IO.
//!
//! A sender interleaves audio and video as its muxer pleases: ffmpeg's
//! MPEG-TS muxer, for one, gathers audio into PES packets of a third of a
//! second or more, so audio arrives in bursts well after the video of the
//! same instant. Downstream (the packager's parts, the transcoder, the GOP
//! cache a new viewer starts from) wants one timeline, so units leave ingest
//! merged by decode time: a unit is let go once every other live track has
//! a unit queued at or after it, or has vouched past it (nothing earlier
//! can still come, since each track's decode times only increase, by at
//! least the smallest step seen on that track: a video frame at `t` vouches
//! for nothing before `t` + one frame interval, so the audio that plays
//! during that frame goes with it rather than after the next frame), or
//! once it is more than
//! [`InterleaveConfig::max_skew`] of media older than the newest queued
//! unit, or when a track has sent nothing for
//! [`InterleaveConfig::idle_after`] of wall time (it stopped; the others do
//! not wait for it). The hold is therefore bounded in media time and in
//! memory.
//!
//! Where the packager puts the audio in a rendition of its own
//! (`hls.audio = "separate"`), nothing downstream needs video merged with
//! audio, and holding it costs latency: with
//! [`InterleaveConfig::video_waits_for_audio`] off, a video unit leaves as
//! soon as it arrives, and audio still leaves once the video has got past
//! it (at once, for audio a sender batched).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferrocast_media::{AccessUnit, Time90k, TrackId};

/// Bounds of the [`Interleaver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterleaveConfig {
    /// The most media time a unit waits for the other tracks.
    pub max_skew: Time90k,
    /// A track silent for this long is not waited for.
    pub idle_after: Duration,
    /// Whether video waits for the audio of its decode time (the audio
    /// muxed beside it downstream). Off, video never waits.
    pub video_waits_for_audio: bool,
}

impl Default for InterleaveConfig {
    fn default() -> Self {
        InterleaveConfig {
            max_skew: Time90k::from_millis(1000),
            idle_after: Duration::from_millis(500),
            video_waits_for_audio: true,
        }
    }
}

impl InterleaveConfig {
    /// The bounds for a stream whose audio the packager puts beside its
    /// video (`separate_audio` false) or in a rendition of its own.
    pub fn for_audio_layout(separate_audio: bool) -> Self {
        InterleaveConfig {
            video_waits_for_audio: !separate_audio,
            ..InterleaveConfig::default()
        }
    }
}

#[derive(Debug)]
struct Lane {
    track: TrackId,
    queue: VecDeque<AccessUnit>,
    last_arrival: Option<Instant>,
    /// Decode time of the last unit pushed.
    last_dts: Option<Time90k>,
    /// Smallest forward step between this track's decode times so far.
    min_step: Option<Time90k>,
}

impl Lane {
    fn new(track: TrackId) -> Self {
        Lane {
            track,
            queue: VecDeque::new(),
            last_arrival: None,
            last_dts: None,
            min_step: None,
        }
    }

    fn note(&mut self, dts: Time90k, now: Instant) {
        self.last_arrival = Some(now);
        if let Some(last) = self.last_dts {
            let step = dts - last;
            if step > Time90k::ZERO {
                self.min_step = Some(self.min_step.map_or(step, |m| m.min(step)));
            }
        }
        self.last_dts = Some(dts);
    }

    /// Nothing at or before `dts` can still come on this track: its next
    /// unit is at least one smallest step after its last.
    fn vouches_past(&self, dts: Time90k) -> bool {
        match (self.last_dts, self.min_step) {
            (Some(last), Some(step)) => last + step > dts,
            _ => false,
        }
    }
}

/// Merges the units of a stream's tracks by decode time.
#[derive(Debug, Default)]
pub struct Interleaver {
    config: InterleaveConfig,
    lanes: Vec<Lane>,
}

impl Interleaver {
    /// An interleaver with `config`'s bounds.
    pub fn new(config: InterleaveConfig) -> Self {
        Interleaver {
            config,
            lanes: Vec::new(),
        }
    }

    /// The stream's tracks are now `tracks`: whatever is held is released
    /// first (in order), then units are merged across these tracks.
    pub fn set_tracks(
        &mut self,
        tracks: impl IntoIterator<Item = TrackId>,
        out: &mut Vec<AccessUnit>,
    ) {
        self.flush(out);
        self.lanes = tracks.into_iter().map(Lane::new).collect();
    }

    /// Units held now.
    pub fn held(&self) -> usize {
        self.lanes.iter().map(|l| l.queue.len()).sum()
    }

    /// One unit, arrived at `now`; units that may go are appended to `out`
    /// in decode order. A unit of a track not in the set passes straight
    /// through.
    pub fn push(&mut self, unit: AccessUnit, now: Instant, out: &mut Vec<AccessUnit>) {
        let Some(lane) = self.lanes.iter_mut().find(|l| l.track == unit.track) else {
            out.push(unit);
            return;
        };
        lane.note(unit.dts, now);
        lane.queue.push_back(unit);
        self.release(now, out);
    }

    /// Let go what no longer needs to wait at `now` (a track may have gone
    /// idle since the last push).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<AccessUnit>) {
        self.release(now, out);
    }

    /// Release everything held, in decode order.
    pub fn flush(&mut self, out: &mut Vec<AccessUnit>) {
        while let Some(i) = self.earliest() {
            if let Some(unit) = self.lanes[i].queue.pop_front() {
                out.push(unit);
            }
        }
    }

    fn release(&mut self, now: Instant, out: &mut Vec<AccessUnit>) {
        let idle_after = self.config.idle_after;
        while let Some(i) = self.earliest() {
            let head = self.lanes[i].queue.front().map(|u| u.dts);
            let newest = self
                .lanes
                .iter()
                .filter_map(|l| l.queue.back().map(|u| u.dts))
                .max();
            let (Some(head), Some(newest)) = (head, newest) else {
                break;
            };
            let others_ready = self.lanes.iter().all(|l| {
                !l.queue.is_empty()
                    || l.vouches_past(head)
                    || l.last_arrival
                        .is_some_and(|at| now.saturating_duration_since(at) >= idle_after)
            });
            let too_old = newest - head > self.config.max_skew;
            let video_goes = !self.config.video_waits_for_audio
                && self.lanes[i]
                    .queue
                    .front()
                    .is_some_and(|u| u.kind == ferrocast_media::TrackKind::Video);
            if !(others_ready || too_old || video_goes) {
                break;
            }
            if let Some(unit) = self.lanes[i].queue.pop_front() {
                out.push(unit);
            }
        }
    }

    /// The lane whose head has the smallest decode time (the first lane on
    /// a tie, so video set first goes first).
    fn earliest(&self) -> Option<usize> {
        self.lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.queue.front().map(|u| (u.dts, i)))
            .min()
            .map(|(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrocast_media::TrackKind;
    use proptest::prelude::*;

    const V: TrackId = TrackId(1);
    const A: TrackId = TrackId(2);

    fn unit(track: TrackId, ms: i64) -> AccessUnit {
        AccessUnit {
            track,
            kind: if track == V {
                TrackKind::Video
            } else {
                TrackKind::Audio
            },
            pts: Time90k::from_millis(ms),
            dts: Time90k::from_millis(ms),
            keyframe: true,
            data: Bytes::new(),
            captured_unix_ms: None,
            trace: None,
        }
    }

    fn times(out: &[AccessUnit]) -> Vec<(u16, i64)> {
        out.iter().map(|u| (u.track.0, u.dts.as_millis())).collect()
    }

    #[test]
    fn batched_audio_is_merged_by_decode_time() {
        let now = Instant::now();
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        il.set_tracks([V, A], &mut out);
        for ms in [0, 40, 80] {
            il.push(unit(V, ms), now, &mut out);
        }
        assert!(out.is_empty(), "video waits for audio");
        for ms in [0, 21, 42, 64, 85] {
            il.push(unit(A, ms), now, &mut out);
        }
        // Audio 85 goes too: video steps by 40 ms, so nothing of it can
        // come before 120.
        assert_eq!(
            times(&out),
            vec![
                (1, 0),
                (2, 0),
                (2, 21),
                (1, 40),
                (2, 42),
                (2, 64),
                (1, 80),
                (2, 85)
            ]
        );
        assert_eq!(il.held(), 0);
    }

    #[test]
    fn with_audio_apart_video_never_waits_and_audio_follows_the_video() {
        let now = Instant::now();
        let mut il = Interleaver::new(InterleaveConfig::for_audio_layout(true));
        let mut out = Vec::new();
        il.set_tracks([V, A], &mut out);
        // Batched audio: each video frame leaves as it comes.
        for ms in [0, 40, 80] {
            il.push(unit(V, ms), now, &mut out);
        }
        assert_eq!(times(&out), vec![(1, 0), (1, 40), (1, 80)]);
        // The batch the video has got past leaves at once; audio 120 waits
        // for video 120, which may still come before it.
        for ms in [0, 21, 42, 64, 85, 106, 128] {
            il.push(unit(A, ms), now, &mut out);
        }
        assert_eq!(out.len(), 3 + 6, "{:?}", times(&out));
        assert_eq!(il.held(), 1);
        il.push(unit(V, 120), now, &mut out);
        assert_eq!(times(&out)[9..], [(1, 120), (2, 128)]);
    }

    #[test]
    fn audio_within_a_video_frame_goes_with_it_not_after_the_next() {
        // A steady sender: each unit as it is made, audio every 21 ms.
        let now = Instant::now();
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        il.set_tracks([V, A], &mut out);
        il.push(unit(A, 0), now, &mut out);
        il.push(unit(A, 21), now, &mut out);
        il.push(unit(V, 0), now, &mut out);
        il.push(unit(A, 42), now, &mut out);
        il.push(unit(V, 40), now, &mut out);
        il.push(unit(A, 64), now, &mut out);
        // Video 40 lasts until 80 and audio 64 starts within it: it goes
        // now, not once video 80 has come.
        assert_eq!(
            times(&out),
            vec![(1, 0), (2, 0), (2, 21), (1, 40), (2, 42), (2, 64)]
        );
        il.push(unit(A, 85), now, &mut out);
        assert_eq!(il.held(), 1, "audio 85 waits: video 80 may still come");
    }

    #[test]
    fn skew_bound_and_idle_track_stop_the_wait() {
        let start = Instant::now();
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        il.set_tracks([V, A], &mut out);
        // Audio never comes: video goes once it is 1 s of media behind.
        for ms in (0..=1040).step_by(40) {
            il.push(unit(V, ms), start, &mut out);
        }
        assert_eq!(times(&out), vec![(1, 0)]);
        // Audio spoke once, then stopped: after idle_after, nothing waits.
        il.push(unit(A, 1050), start, &mut out);
        out.clear();
        il.push(unit(V, 1080), start, &mut out);
        il.push(unit(V, 1120), start + Duration::from_millis(600), &mut out);
        assert_eq!(times(&out).last(), Some(&(1, 1120)));
        assert_eq!(il.held(), 0);
    }

    #[test]
    fn track_change_flushes_and_unknown_tracks_pass() {
        let now = Instant::now();
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        il.set_tracks([V, A], &mut out);
        il.push(unit(V, 0), now, &mut out);
        il.push(unit(TrackId(9), 5), now, &mut out);
        assert_eq!(times(&out), vec![(9, 5)]);
        il.set_tracks([V], &mut out);
        assert_eq!(times(&out), vec![(9, 5), (1, 0)]);
        il.push(unit(V, 40), now, &mut out);
        assert_eq!(out.len(), 3, "a single track never waits");
    }

    /// Video units at `vt` and audio units at `at` (ms), pushed in the
    /// order `arrival` picks (true: the next video unit), then flushed.
    fn merge(vt: &[i64], at: &[i64], arrival: Vec<bool>, now: Instant) -> Vec<AccessUnit> {
        let mut il = Interleaver::default();
        let mut out = Vec::new();
        il.set_tracks([V, A], &mut out);
        let (mut vi, mut ai) = (0, 0);
        let mut choices = arrival.into_iter();
        while vi < vt.len() || ai < at.len() {
            let pick_video = ai >= at.len() || (vi < vt.len() && choices.next().unwrap_or(true));
            if pick_video {
                il.push(unit(V, vt[vi]), now, &mut out);
                vi += 1;
            } else {
                il.push(unit(A, at[ai]), now, &mut out);
                ai += 1;
            }
        }
        il.flush(&mut out);
        out
    }

    proptest! {
        /// Whatever the steps (a frame interval that shrinks can put a unit
        /// behind one its track vouched for) and the arrival interleaving,
        /// output is every unit once, each track in its own order.
        #[test]
        fn every_unit_leaves_once_in_its_tracks_order(
            video_steps in proptest::collection::vec(1i64..80, 1..60),
            audio_steps in proptest::collection::vec(1i64..80, 1..60),
            arrival in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let now = Instant::now();
            let scan = |steps: &[i64]| {
                steps.iter().scan(0i64, |t, s| { *t += s; Some(*t) }).collect::<Vec<_>>()
            };
            let (vt, at) = (scan(&video_steps), scan(&audio_steps));
            let out = merge(&vt, &at, arrival, now);
            prop_assert_eq!(out.len(), vt.len() + at.len());
            let of = |t: TrackId| out.iter().filter(|u| u.track == t).map(|u| u.dts.as_millis()).collect::<Vec<_>>();
            prop_assert_eq!(of(V), vt.clone());
            prop_assert_eq!(of(A), at.clone());
        }

        /// Tracks with steady steps (every sender's video frame rate and
        /// audio frame length), arriving in any interleaving: fully merged
        /// in decode order while spans stay within the skew bound.
        #[test]
        fn steady_tracks_are_merged_in_decode_order(
            video_step in 1i64..80,
            audio_step in 1i64..80,
            video_count in 1usize..40,
            audio_count in 1usize..40,
            arrival in proptest::collection::vec(any::<bool>(), 0..100),
        ) {
            let now = Instant::now();
            let vt: Vec<i64> = (0..video_count as i64).map(|i| i * video_step).collect();
            let at: Vec<i64> = (0..audio_count as i64).map(|i| i * audio_step).collect();
            prop_assume!(vt.last().copied().unwrap_or(0) < 1000 && at.last().copied().unwrap_or(0) < 1000);
            let out = merge(&vt, &at, arrival, now);
            prop_assert_eq!(out.len(), vt.len() + at.len());
            prop_assert!(out.windows(2).all(|w| w[0].dts <= w[1].dts), "{:?}", times(&out));
        }
    }
}
