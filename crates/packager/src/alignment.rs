//! One timeline for all the renditions of a stream (sans-IO).
//!
//! The renditions of a stream (the source and each transcoded rung) are
//! separate bus streams packaged by separate assemblers, but a player
//! switching between them needs segment `N` of every rendition to start at
//! the same output decode time and cover the same media. The assemblers of
//! one stream therefore share an [`Alignment`]:
//!
//! - **One offset.** Output decode time = source decode time + offset, with
//!   one offset per *epoch* (a publisher session). The first rendition to
//!   start (or to restart after a publisher break) picks it so that the
//!   output continues where the furthest rendition stopped; the others
//!   adopt it, so the same source instant gets the same `tfdt` everywhere.
//! - **One cut per keyframe time.** The first rendition to reach a video
//!   keyframe at output time `T` decides, by its own cutting rule, whether a
//!   segment starts there and with which Media Sequence Number; every other
//!   rendition that has a keyframe at `T` follows that record. Renditions
//!   whose keyframes are at identical source times (the transcoder's rungs)
//!   therefore cut identically and number identically, whatever order they
//!   run in or join in. A keyframe time nobody recorded (a rendition whose
//!   keyframes are elsewhere) is decided by that rendition's own rule.
//!
//! - **Audio beside the video.** With the audio in a rendition of its own
//!   (`hls.audio = "separate"`), its assembler never starts the timeline
//!   or decides a cut: it [follows](Alignment::follow) the epoch a video
//!   rendition started. Its segments and parts follow one video rendition,
//!   the *leader* (the source, which the audio is packaged beside): they
//!   start where the leader's segments start
//!   ([`Alignment::leader_segment_in`]) and end where its parts end
//!   ([`Alignment::leader_part_end_in`]), once the leader has got that far
//!   ([`Alignment::leader_video_end`]). Following one rendition, not every
//!   rendition's boundaries, keeps the audio's segments as long as the
//!   leader's and its numbers in the leader's order where renditions cut
//!   at different times (a source GOP off the ladder's keyframe grid).
//!
//! What is guaranteed, and what is not, is written down in
//! `docs/design/time.md`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ferrocast_media::Time90k;

/// A rendition (re)starting more than this far from where the stream's
/// furthest rendition is does not adopt the shared offset: its source clock
/// is not the one the offset was made for.
pub const ALIGN_WINDOW: Time90k = Time90k::from_millis(30_000);

/// Keyframe decisions older than this (behind the newest one) are
/// forgotten; a rendition that far behind the others cuts by its own rule.
pub const RECORD_SPAN: Time90k = Time90k::from_millis(120_000);

/// Most keyframe decisions kept, whatever their span (bounds memory for
/// streams with very frequent keyframes).
pub const MAX_RECORDED_CUTS: usize = 8_192;

/// What was decided at a video keyframe time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A segment starts here, numbered `msn`.
    Boundary {
        /// Its Media Sequence Number.
        msn: u64,
    },
    /// The keyframe is inside a segment.
    Inside,
}

/// Why a rendition's timeline broke before it (re)starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// The publisher reconnected, the source clock jumped or the codec
    /// changed: the source clock may be a new one.
    Publisher,
    /// Only this rendition lost media (a slow bus subscriber): the source
    /// clock is the same one.
    Gap,
}

/// Where a rendition starts on the shared timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// Output decode time = source decode time + `offset` (90 kHz ticks).
    pub offset: i64,
    /// Program date time anchor: this output time was at this wall-clock
    /// time (Unix milliseconds).
    pub pdt_anchor: (Time90k, i64),
}

/// One rendition's membership: who it is and the epoch it last started
/// in. The default is no member (the audio beside the video, which never
/// joins).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Member {
    /// Given by [`Alignment::join`], from 1; 0 for no member.
    id: u64,
    epoch: Option<u64>,
}

/// Where the leader's media is split, as the audio follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Its segment `msn` starts here (a part boundary too).
    SegmentStart { msn: u64 },
    /// One of its parts ends here.
    PartEnd,
}

/// A leader's part end this close before one of its segment starts is the
/// same boundary: the part's last frame had an estimated duration, and the
/// keyframe came a little later. (Kept apart, an audio frame between the
/// two would make a part of its own.)
const SAME_BOUNDARY: Time90k = Time90k::from_millis(20);

/// The video rendition the audio beside the video follows.
#[derive(Debug, Default)]
struct Leader {
    /// Its member id.
    id: Option<u64>,
    /// Furthest output time it has written video to: every mark before it
    /// is known.
    video_end: Time90k,
    /// Its segment starts and part ends, pruned as the cuts are.
    marks: BTreeMap<Time90k, Mark>,
}

/// The timeline state the renditions of one stream share. See the
/// [module docs](self).
#[derive(Debug, Default)]
pub struct Alignment {
    epoch: u64,
    offset: Option<i64>,
    pdt_anchor: Option<(Time90k, i64)>,
    /// Furthest output time any rendition has written.
    end: Time90k,
    /// Times a rendition has (re)started.
    starts: u64,
    cuts: BTreeMap<Time90k, Cut>,
    members: usize,
    /// The last member id given.
    last_id: u64,
    leader: Leader,
}

/// An [`Alignment`] shared by the assemblers of one stream.
pub type SharedAlignment = Arc<Mutex<Alignment>>;

/// Locks a shared alignment (never held across an `.await`).
pub fn lock(shared: &SharedAlignment) -> MutexGuard<'_, Alignment> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Alignment {
    /// A new, shareable alignment with no member.
    pub fn shared() -> SharedAlignment {
        Arc::new(Mutex::new(Alignment::default()))
    }

    /// A rendition joins: its membership.
    pub fn join(&mut self) -> Member {
        self.members += 1;
        self.last_id += 1;
        Member {
            id: self.last_id,
            epoch: None,
        }
    }

    /// A rendition has ended. If it led the audio, the next video
    /// rendition to start a segment leads.
    pub fn leave(&mut self, member: &Member) {
        self.members = self.members.saturating_sub(1);
        if self.leads(member) {
            self.leader = Leader {
                video_end: self.leader.video_end,
                ..Leader::default()
            };
        }
    }

    /// Renditions joined and not ended.
    pub fn members(&self) -> usize {
        self.members
    }

    /// Furthest output time any rendition has written.
    pub fn end(&self) -> Time90k {
        self.end
    }

    /// A rendition wrote media up to `end`.
    pub fn extend(&mut self, end: Time90k) {
        self.end = self.end.max(end);
    }

    /// Rendition `member` wrote video up to `end`.
    pub fn extend_video(&mut self, member: &Member, end: Time90k) {
        self.extend(end);
        if self.leads(member) {
            self.leader.video_end = self.leader.video_end.max(end);
        }
    }

    /// Makes `member` the video rendition the audio beside the video
    /// follows (the one it is packaged with), from its next segment on.
    /// Without a call, the first video rendition to start a segment leads.
    pub fn lead(&mut self, member: &Member) {
        if member.id != 0 && !self.leads(member) {
            self.leader = Leader {
                id: Some(member.id),
                video_end: self.leader.video_end,
                marks: BTreeMap::new(),
            };
        }
    }

    fn leads(&self, member: &Member) -> bool {
        member.id != 0 && self.leader.id == Some(member.id)
    }

    /// Video rendition `member` started its segment `msn` at `at`.
    pub fn segment_started(&mut self, member: &Member, at: Time90k, msn: u64) {
        if self.leader.id.is_none() {
            self.lead(member);
        }
        if !self.leads(member) {
            return;
        }
        let marks = &mut self.leader.marks;
        let merged: Vec<Time90k> = marks
            .range(at - SAME_BOUNDARY..at)
            .filter(|(_, mark)| **mark == Mark::PartEnd)
            .map(|(t, _)| *t)
            .collect();
        for t in merged {
            marks.remove(&t);
        }
        marks.insert(at, Mark::SegmentStart { msn });
        Self::prune_marks(marks);
    }

    /// Video rendition `member` ended a part at `at`.
    pub fn part_ended(&mut self, member: &Member, at: Time90k) {
        if !self.leads(member) {
            return;
        }
        let marks = &mut self.leader.marks;
        let Some((&last, _)) = marks.last_key_value() else {
            return;
        };
        if at > last {
            marks.insert(at, Mark::PartEnd);
            Self::prune_marks(marks);
        }
    }

    fn prune_marks(marks: &mut BTreeMap<Time90k, Mark>) {
        let newest = marks.keys().next_back().copied().unwrap_or_default();
        let horizon = newest - RECORD_SPAN;
        while let Some((&oldest, _)) = marks.first_key_value() {
            if oldest < horizon || marks.len() > MAX_RECORDED_CUTS {
                marks.remove(&oldest);
            } else {
                break;
            }
        }
    }

    /// Furthest output time the leader has written video to: its segment
    /// starts and part ends before it are known.
    pub fn leader_video_end(&self) -> Time90k {
        self.leader.video_end
    }

    /// The last segment start of the leader after `after` (any, if `None`)
    /// and at or before `until`: its time and number.
    pub fn leader_segment_in(
        &self,
        after: Option<Time90k>,
        until: Time90k,
    ) -> Option<(Time90k, u64)> {
        use std::ops::Bound;
        if after.is_some_and(|a| a >= until) {
            return None;
        }
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.leader
            .marks
            .range((from, Bound::Included(until)))
            .rev()
            .find_map(|(at, mark)| match mark {
                Mark::SegmentStart { msn } => Some((*at, *msn)),
                Mark::PartEnd => None,
            })
    }

    /// Whether one of the leader's parts ends (or a segment starts) after
    /// `after` and at or before `until`.
    pub fn leader_part_end_in(&self, after: Time90k, until: Time90k) -> bool {
        use std::ops::Bound;
        after < until
            && self
                .leader
                .marks
                .range((Bound::Excluded(after), Bound::Included(until)))
                .next()
                .is_some()
    }

    /// How many times a rendition has (re)started on the timeline.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Where a rendition that never starts the timeline itself (the audio
    /// beside the video) goes, once a video rendition has (re)started since
    /// [`starts`](Self::starts) said `since`: the offset it started with.
    /// `None` until then: media that comes before has no place on the
    /// timeline yet.
    pub fn follow(&self, since: u64) -> Option<Start> {
        if self.starts <= since {
            return None;
        }
        Some(Start {
            offset: self.offset?,
            pdt_anchor: self.pdt_anchor?,
        })
    }

    /// Where a rendition that (re)starts at `source` decode time goes.
    ///
    /// `own_end` is where its own output stopped (it never goes back);
    /// `why` is why it stopped (`None` for a rendition's first start).
    ///
    /// It adopts the current offset if it is new to the stream, if another
    /// rendition has already restarted after the break it saw, or (with
    /// siblings) if it only lost media; and only if that puts it within
    /// [`ALIGN_WINDOW`] of the furthest rendition and not behind its own
    /// output. Otherwise it starts a new epoch, continuing from the
    /// furthest output time of any rendition.
    pub fn start(
        &mut self,
        member: &mut Member,
        source: Time90k,
        own_end: Time90k,
        why: Option<Break>,
        now_unix_ms: i64,
    ) -> Start {
        if let Some(offset) = self.offset {
            let at = Time90k(source.ticks().saturating_add(offset));
            let follow = match (member.epoch, why) {
                (None, _) => true,
                (Some(seen), _) if seen != self.epoch => true,
                (Some(_), Some(Break::Gap)) => self.members > 1,
                (Some(_), _) => false,
            };
            let near = (at - self.end).ticks().abs() <= ALIGN_WINDOW.ticks();
            if follow && near && at >= own_end && at >= Time90k::ZERO {
                self.starts += 1;
                member.epoch = Some(self.epoch);
                let pdt_anchor = *self.pdt_anchor.get_or_insert((at, now_unix_ms));
                return Start { offset, pdt_anchor };
            }
        }
        let base = self.end.max(own_end);
        let offset = base.ticks() - source.ticks();
        if self.offset.is_some() {
            self.epoch += 1;
        }
        self.offset = Some(offset);
        self.pdt_anchor = Some((base, now_unix_ms));
        self.starts += 1;
        member.epoch = Some(self.epoch);
        Start {
            offset,
            pdt_anchor: (base, now_unix_ms),
        }
    }

    /// What was decided at keyframe time `at`, if anyone decided.
    pub fn cut_at(&self, at: Time90k) -> Option<Cut> {
        self.cuts.get(&at).copied()
    }

    /// Records the decision at keyframe time `at` (the first one stands).
    pub fn record(&mut self, at: Time90k, cut: Cut) {
        self.cuts.entry(at).or_insert(cut);
        let newest = self.cuts.keys().next_back().copied().unwrap_or(at);
        let horizon = newest - RECORD_SPAN;
        while let Some((&oldest, _)) = self.cuts.first_key_value() {
            if oldest < horizon || self.cuts.len() > MAX_RECORDED_CUTS {
                self.cuts.remove(&oldest);
            } else {
                break;
            }
        }
    }

    /// The number a segment starting at `at` would get to follow the
    /// recorded ones: one past the last boundary before `at`.
    pub fn msn_after(&self, at: Time90k) -> Option<u64> {
        self.cuts.range(..at).rev().find_map(|(_, cut)| match cut {
            Cut::Boundary { msn } => msn.checked_add(1),
            Cut::Inside => None,
        })
    }

    /// The recorded start time of segment `msn`, if still recorded.
    pub fn boundary_time(&self, msn: u64) -> Option<Time90k> {
        self.cuts
            .iter()
            .find(|(_, cut)| **cut == Cut::Boundary { msn })
            .map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 90_000;

    #[test]
    fn first_start_maps_to_zero_and_others_adopt() {
        let mut a = Alignment::default();
        let (mut one, mut two) = (Member::default(), Member::default());
        a.join();
        a.join();
        let first = a.start(&mut one, Time90k(10 * S), Time90k::ZERO, None, 1_000);
        assert_eq!(first.offset, -10 * S);
        assert_eq!(first.pdt_anchor, (Time90k::ZERO, 1_000));
        a.extend(Time90k(5 * S));
        // A late rendition starting at source 13 s lands at 3 s.
        let late = a.start(&mut two, Time90k(13 * S), Time90k::ZERO, None, 9_000);
        assert_eq!(late.offset, first.offset);
        assert_eq!(late.pdt_anchor, first.pdt_anchor);
    }

    #[test]
    fn publisher_break_starts_one_new_epoch_that_siblings_adopt() {
        let mut a = Alignment::default();
        let (mut one, mut two) = (Member::default(), Member::default());
        a.join();
        a.join();
        a.start(&mut one, Time90k(10 * S), Time90k::ZERO, None, 0);
        a.start(&mut two, Time90k(10 * S), Time90k::ZERO, None, 0);
        a.extend(Time90k(20 * S));
        // The publisher came back with a clock starting at 1 s.
        let restart = a.start(
            &mut one,
            Time90k(S),
            Time90k(20 * S),
            Some(Break::Publisher),
            50,
        );
        assert_eq!(restart.offset, 19 * S);
        let follow = a.start(
            &mut two,
            Time90k(S),
            Time90k(19 * S),
            Some(Break::Publisher),
            60,
        );
        assert_eq!(follow, restart);
    }

    #[test]
    fn a_lone_rendition_restarts_continuously_and_a_gap_keeps_siblings_aligned() {
        let mut a = Alignment::default();
        let mut one = Member::default();
        a.join();
        a.start(&mut one, Time90k::ZERO, Time90k::ZERO, None, 0);
        a.extend(Time90k(4 * S));
        // Alone: a gap continues the output timeline, as it always did.
        let alone = a.start(
            &mut one,
            Time90k(9 * S),
            Time90k(4 * S),
            Some(Break::Gap),
            0,
        );
        assert_eq!(alone.offset, -5 * S);
        // With a sibling the offset is kept: the lost time stays lost.
        let mut two = Member::default();
        a.join();
        a.start(&mut two, Time90k(9 * S), Time90k::ZERO, None, 0);
        a.extend(Time90k(8 * S));
        let kept = a.start(
            &mut one,
            Time90k(15 * S),
            Time90k(6 * S),
            Some(Break::Gap),
            0,
        );
        assert_eq!(kept.offset, -5 * S);
        // But never backwards for the rendition itself.
        let back = a.start(
            &mut one,
            Time90k(10 * S),
            Time90k(12 * S),
            Some(Break::Gap),
            0,
        );
        assert_eq!(back.offset, 12 * S - 10 * S);
    }

    #[test]
    fn far_away_joiner_starts_its_own_epoch() {
        let mut a = Alignment::default();
        let (mut one, mut two) = (Member::default(), Member::default());
        a.start(&mut one, Time90k(1_000 * S), Time90k::ZERO, None, 0);
        a.extend(Time90k(10 * S));
        let other = a.start(&mut two, Time90k(5 * S), Time90k::ZERO, None, 0);
        assert_eq!(other.offset, 10 * S - 5 * S);
    }

    #[test]
    fn a_follower_takes_each_start_after_the_one_it_saw_and_never_starts_one() {
        let mut a = Alignment::default();
        let mut video = a.join();
        assert_eq!(a.follow(0), None, "no video yet");
        let first = a.start(&mut video, Time90k(10 * S), Time90k::ZERO, None, 7);
        assert_eq!(a.follow(0), Some(first));
        a.segment_started(&video, Time90k::ZERO, 0);
        a.extend_video(&video, Time90k(5 * S));
        assert_eq!(
            (a.leader_video_end(), a.end()),
            (Time90k(5 * S), Time90k(5 * S))
        );
        // The publisher broke off: until the video restarts, nothing.
        let seen = a.starts();
        assert_eq!(a.follow(seen), None);
        let second = a.start(
            &mut video,
            Time90k(S),
            Time90k(5 * S),
            Some(Break::Publisher),
            9,
        );
        assert_ne!(second, first);
        assert_eq!(a.follow(seen), Some(second));
        // Audio alone does not move the video's end.
        a.extend(Time90k(6 * S));
        assert_eq!(
            (a.leader_video_end(), a.end()),
            (Time90k(5 * S), Time90k(6 * S))
        );
    }

    #[test]
    fn the_audio_follows_one_video_renditions_segments_and_parts() {
        let mut a = Alignment::default();
        let (source, rung) = (a.join(), a.join());
        a.lead(&source);
        // The rung cuts every second at .3, the source every two seconds
        // at .7: only the source's starts and part ends are followed.
        for k in 0..4 {
            a.segment_started(&rung, Time90k(k * S + S * 3 / 10), 10 + k as u64);
            a.extend_video(&rung, Time90k((k + 1) * S));
        }
        assert_eq!(
            a.leader_video_end(),
            Time90k::ZERO,
            "the rung does not lead"
        );
        assert!(!a.leader_part_end_in(Time90k::ZERO, Time90k(4 * S)));
        a.segment_started(&source, Time90k(S * 7 / 10), 3);
        a.part_ended(&source, Time90k(S * 9 / 10));
        a.segment_started(&source, Time90k(S * 27 / 10), 4);
        a.extend_video(&source, Time90k(3 * S));
        assert_eq!(a.leader_video_end(), Time90k(3 * S));
        assert_eq!(
            a.leader_segment_in(None, Time90k(2 * S)),
            Some((Time90k(S * 7 / 10), 3))
        );
        assert_eq!(
            a.leader_segment_in(Some(Time90k(S * 7 / 10)), Time90k(3 * S)),
            Some((Time90k(S * 27 / 10), 4))
        );
        assert_eq!(
            a.leader_segment_in(Some(Time90k(S * 7 / 10)), Time90k(2 * S)),
            None
        );
        assert!(a.leader_part_end_in(Time90k(S * 7 / 10), Time90k(S * 9 / 10)));
        assert!(!a.leader_part_end_in(Time90k(S * 9 / 10), Time90k(2 * S)));
        assert!(!a.leader_part_end_in(Time90k(S), Time90k(S)));
        // A part end just before a segment start is that start.
        a.part_ended(&source, Time90k(S * 47 / 10 - 900));
        a.segment_started(&source, Time90k(S * 47 / 10), 5);
        assert!(!a.leader_part_end_in(Time90k(S * 27 / 10), Time90k(S * 47 / 10 - 1)));
        // The leader ends: the next rendition to start a segment leads.
        a.leave(&source);
        a.segment_started(&rung, Time90k(5 * S + S * 3 / 10), 15);
        assert_eq!(
            a.leader_segment_in(None, Time90k(6 * S)),
            Some((Time90k(5 * S + S * 3 / 10), 15))
        );
        // The audio beside the video never leads.
        let mut b = Alignment::default();
        b.segment_started(&Member::default(), Time90k::ZERO, 0);
        assert_eq!(b.leader_segment_in(None, Time90k(S)), None);
    }

    #[test]
    fn cuts_are_recorded_once_and_pruned() {
        let mut a = Alignment::default();
        a.record(Time90k(0), Cut::Boundary { msn: 4 });
        a.record(Time90k(S), Cut::Inside);
        a.record(Time90k(S), Cut::Boundary { msn: 9 });
        a.record(Time90k(2 * S), Cut::Boundary { msn: 5 });
        assert_eq!(a.cut_at(Time90k(S)), Some(Cut::Inside));
        assert_eq!(a.msn_after(Time90k(S)), Some(5));
        assert_eq!(a.msn_after(Time90k(3 * S)), Some(6));
        assert_eq!(a.msn_after(Time90k(0)), None);
        assert_eq!(a.boundary_time(5), Some(Time90k(2 * S)));
        a.record(Time90k(200 * S), Cut::Inside);
        assert_eq!(a.cut_at(Time90k(0)), None);
        assert_eq!(a.cut_at(Time90k(200 * S)), Some(Cut::Inside));
    }
}
