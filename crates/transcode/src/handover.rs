//! Where a transcoder hands a stream over to another process (a planned
//! drain), decided on its rungs' output. Sans-IO.
//!
//! Every rung makes its keyframes on the same frames (the keyframe
//! decision is made once per decoded frame), and another transcoder of the
//! same source with the same ladder makes them on the same frames too: on
//! the cadence grid, or on the source's keyframes. So the cut is the first
//! rung keyframe that no rung had put out when the handover was asked:
//! each rung passes on what comes before it (in decode order, which with
//! closed GOPs is everything timed before it) and stops there; audio is
//! held until the cut is known, then what is timed before it passes. The
//! next transcoder's rungs start with their keyframe at the cut.

use ferrocast_media::{AccessUnit, Time90k};

/// Most audio units held while the cut is not known yet (about 20 s of
/// AAC); past it the handover is given up.
pub(crate) const MAX_HELD_AUDIO: usize = 1000;

/// A handover under way.
#[derive(Debug)]
pub(crate) struct HandOverCut {
    /// The newest keyframe any rung has put out.
    newest_keyframe: Option<Time90k>,
    /// The cut, once known.
    at: Option<Time90k>,
    /// Per rung: reached the cut (or takes no part: shed).
    done: Vec<bool>,
    /// Audio waiting for the cut to be known.
    held_audio: Vec<AccessUnit>,
    /// Audio at or after the cut came: no more audio is this transcoder's.
    audio_done: bool,
    /// Whether the stream has audio to wait for.
    has_audio: bool,
}

/// What becomes of one video unit of a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoStep {
    /// Publish it.
    Publish,
    /// It is the next publisher's.
    Drop,
}

/// The handover was given up: too much audio held before a keyframe came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GaveUp;

impl HandOverCut {
    /// A cut after every keyframe in `last_keyframes` (each rung's newest
    /// so far; `None` for a rung that put none out), over the rungs whose
    /// `taking_part` is true.
    pub(crate) fn new(
        last_keyframes: impl IntoIterator<Item = Option<Time90k>>,
        taking_part: impl IntoIterator<Item = bool>,
        has_audio: bool,
    ) -> HandOverCut {
        HandOverCut {
            newest_keyframe: last_keyframes.into_iter().flatten().max(),
            at: None,
            done: taking_part.into_iter().map(|p| !p).collect(),
            held_audio: Vec::new(),
            audio_done: !has_audio,
            has_audio,
        }
    }

    /// The cut, once known.
    pub(crate) fn at(&self) -> Option<Time90k> {
        self.at
    }

    /// A video unit rung `rung` put out. When it makes the cut known, the
    /// audio held so far that comes before it is in `released`.
    pub(crate) fn video(
        &mut self,
        rung: usize,
        unit: &AccessUnit,
        released: &mut Vec<AccessUnit>,
    ) -> VideoStep {
        if self.done.get(rung).copied().unwrap_or(true) {
            return VideoStep::Drop;
        }
        match self.at {
            None if unit.keyframe && self.newest_keyframe.is_none_or(|n| unit.pts > n) => {
                self.at = Some(unit.pts);
                self.done[rung] = true;
                self.release(released);
                VideoStep::Drop
            }
            None => {
                if unit.keyframe {
                    self.newest_keyframe = Some(unit.pts);
                }
                VideoStep::Publish
            }
            Some(at) if unit.keyframe && unit.pts >= at => {
                self.done[rung] = true;
                VideoStep::Drop
            }
            Some(_) => VideoStep::Publish,
        }
    }

    /// An audio unit (for every rung): whether to publish it now. Held
    /// while the cut is not known.
    pub(crate) fn audio(&mut self, unit: AccessUnit) -> Result<Option<AccessUnit>, GaveUp> {
        match self.at {
            None => {
                if self.held_audio.len() >= MAX_HELD_AUDIO {
                    return Err(GaveUp);
                }
                self.held_audio.push(unit);
                Ok(None)
            }
            Some(at) if unit.pts < at && !self.audio_done => Ok(Some(unit)),
            Some(_) => {
                self.audio_done = true;
                Ok(None)
            }
        }
    }

    /// The audio held, given back when the handover is given up.
    pub(crate) fn take_held_audio(&mut self) -> Vec<AccessUnit> {
        std::mem::take(&mut self.held_audio)
    }

    /// Every rung reached the cut and the audio passed it: nothing more is
    /// this transcoder's.
    pub(crate) fn complete(&self) -> bool {
        self.at.is_some() && self.done.iter().all(|d| *d) && (self.audio_done || !self.has_audio)
    }

    fn release(&mut self, released: &mut Vec<AccessUnit>) {
        let Some(at) = self.at else { return };
        for unit in self.held_audio.drain(..) {
            if self.audio_done || unit.pts >= at {
                self.audio_done = true;
            } else {
                released.push(unit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ferrocast_media::{TrackId, TrackKind};

    use super::*;

    fn unit(kind: TrackKind, pts: i64, keyframe: bool) -> AccessUnit {
        AccessUnit {
            track: TrackId(1),
            kind,
            pts: Time90k(pts),
            dts: Time90k(pts),
            keyframe,
            data: Bytes::new(),
            captured_unix_ms: None,
            trace: None,
        }
    }

    fn video(pts: i64, keyframe: bool) -> AccessUnit {
        unit(TrackKind::Video, pts, keyframe)
    }

    fn audio(pts: i64) -> AccessUnit {
        unit(TrackKind::Audio, pts, true)
    }

    #[test]
    fn the_cut_is_the_first_keyframe_no_rung_has_put_out() {
        // Rung 0 is ahead (it put out the keyframe at 9000), rung 1 behind.
        let mut cut = HandOverCut::new([Some(Time90k(9000)), Some(Time90k(0))], [true, true], true);
        let mut released = Vec::new();
        // Audio runs ahead of video: held until the cut is known.
        assert_eq!(cut.audio(audio(17_000)), Ok(None));
        assert_eq!(cut.audio(audio(18_100)), Ok(None));
        // The lagging rung's keyframe at 9000 is not the cut.
        assert_eq!(
            cut.video(1, &video(9000, true), &mut released),
            VideoStep::Publish
        );
        assert_eq!(
            cut.video(1, &video(12_000, false), &mut released),
            VideoStep::Publish
        );
        assert_eq!(
            cut.video(0, &video(15_000, false), &mut released),
            VideoStep::Publish
        );
        assert_eq!(cut.at(), None);
        assert_eq!(
            cut.video(0, &video(18_000, true), &mut released),
            VideoStep::Drop
        );
        assert_eq!(cut.at(), Some(Time90k(18_000)));
        assert_eq!(
            released,
            vec![audio(17_000)],
            "audio before the cut is released"
        );
        assert!(!cut.complete(), "rung 1 has not reached the cut");
        assert_eq!(
            cut.video(0, &video(21_000, false), &mut released),
            VideoStep::Drop
        );
        assert_eq!(
            cut.video(1, &video(15_000, false), &mut released),
            VideoStep::Publish
        );
        assert_eq!(
            cut.video(1, &video(18_000, true), &mut released),
            VideoStep::Drop
        );
        assert!(cut.complete());
        assert_eq!(
            cut.audio(audio(16_000)),
            Ok(None),
            "nothing after the audio passed the cut"
        );
    }

    #[test]
    fn late_audio_before_the_cut_passes_until_audio_at_the_cut_comes() {
        let mut cut = HandOverCut::new([None], [true], true);
        let mut released = Vec::new();
        assert_eq!(
            cut.video(0, &video(3000, true), &mut released),
            VideoStep::Drop
        );
        assert!(!cut.complete(), "the audio has not reached the cut");
        assert_eq!(cut.audio(audio(2900)), Ok(Some(audio(2900))));
        assert_eq!(cut.audio(audio(3000)), Ok(None));
        assert!(cut.complete());
    }

    #[test]
    fn shed_rungs_take_no_part_and_held_audio_is_bounded() {
        let mut cut = HandOverCut::new([None, None], [true, false], false);
        assert_eq!(
            cut.video(1, &video(0, true), &mut Vec::new()),
            VideoStep::Drop
        );
        assert_eq!(
            cut.video(0, &video(0, true), &mut Vec::new()),
            VideoStep::Drop
        );
        assert!(cut.complete(), "no audio to wait for");

        let mut cut = HandOverCut::new([None], [true], true);
        for i in 0..MAX_HELD_AUDIO as i64 {
            assert_eq!(cut.audio(audio(i)), Ok(None));
        }
        assert_eq!(cut.audio(audio(-1)), Err(GaveUp));
        assert_eq!(cut.take_held_audio().len(), MAX_HELD_AUDIO);
    }
}
