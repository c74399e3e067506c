//! The audio clock of one rendition, and the audio frames waiting to be
//! muxed beside its video, placed by decode time (sans-IO).
//!
//! In a stream with video, audio frames do not go out as they arrive: each
//! waits here until the video chunk whose media time covers its decode time
//! is written, so that a part (and a segment) carries the audio of the same
//! media time as its video, to within one audio frame. Audio that arrives
//! ahead of its video (a transcoder's rung, whose encoder delays the video)
//! waits for it; audio that arrives behind it (a sender batching AAC into
//! large PES packets) holds the close of the part it belongs to, never the
//! video itself (see [`crate::assembler`]).
//!
//! Times here are in the audio track's timescale (its sample rate).

use std::collections::VecDeque;

use ferrocast_cmaf::Sample;
use tracing::debug;

/// Most frames kept waiting for video (about 10 s of 48 kHz AAC). Past it
/// the oldest go: the video they were waiting for is not coming.
pub const MAX_PENDING_FRAMES: usize = 512;

/// The audio timeline of a rendition and the frames waiting for video.
#[derive(Debug, Default)]
pub struct AudioQueue {
    /// Decode time the next frame continues from.
    next: Option<i64>,
    /// Frames waiting for their video, in decode order.
    pending: VecDeque<Sample>,
    /// Decode time of the first pending frame.
    pending_base: i64,
    /// Where the pending frames end.
    pending_end: i64,
    /// Frames dropped because video did not come for them.
    dropped: u64,
}

impl AudioQueue {
    /// The decode time of a frame lasting `samples` whose source time maps
    /// to `source`: the audio clock continues (each frame starts where the
    /// last ended) unless the source jumped by more than two frames, and
    /// re-anchors there if it did. `None` for a time before zero.
    pub fn place(&mut self, source: i64, samples: u32) -> Option<i64> {
        let samples = i64::from(samples);
        let time = match self.next {
            Some(next) if (source - next).abs() <= 2 * samples => next,
            Some(next) => {
                debug!(expected = next, got = source, "audio clock re-anchored");
                source
            }
            None => source,
        };
        if time < 0 {
            return None;
        }
        self.next = Some(time + samples);
        Some(time)
    }

    /// The decode time the next frame will have, once a frame was placed.
    pub fn next(&self) -> Option<i64> {
        self.next
    }

    /// Keep `sample`, placed at `time`, until its video is written.
    pub fn push(&mut self, time: i64, sample: Sample) {
        if self.pending.len() >= MAX_PENDING_FRAMES
            && let Some(old) = self.pending.pop_front()
        {
            self.pending_base += i64::from(old.duration);
            self.dropped += 1;
            debug!(
                dropped = self.dropped,
                "audio frame dropped: no video came for it"
            );
        }
        if self.pending.is_empty() {
            self.pending_base = time;
            self.pending_end = time;
        } else if time != self.pending_end {
            // Re-anchored while frames wait: one fragment has one decode
            // time, so the new frame follows the waiting ones and the jump
            // takes effect with the next frame after them.
            debug!(
                waiting = self.pending.len(),
                "audio re-anchored while frames wait for video"
            );
        }
        self.pending_end += i64::from(sample.duration);
        self.pending.push_back(sample);
    }

    /// The waiting frames that start before `end`, with the decode time of
    /// the first; `None` if there is none.
    pub fn take_before(&mut self, end: i64) -> Option<(i64, Vec<Sample>)> {
        let base = self.pending_base;
        let mut at = base;
        let mut count = 0;
        for sample in &self.pending {
            if at >= end {
                break;
            }
            at += i64::from(sample.duration);
            count += 1;
        }
        if count == 0 {
            return None;
        }
        let taken: Vec<Sample> = self.pending.drain(..count).collect();
        self.pending_base = at;
        Some((base, taken))
    }

    /// The decode time and duration of the first waiting frame.
    pub fn first(&self) -> Option<(i64, u32)> {
        self.pending
            .front()
            .map(|s| (self.pending_base, s.duration))
    }

    /// How long the waiting frames last together.
    pub fn pending_span(&self) -> i64 {
        self.pending_end - self.pending_base
    }

    /// Every waiting frame, with the decode time of the first.
    pub fn take_all(&mut self) -> Option<(i64, Vec<Sample>)> {
        self.take_before(i64::MAX)
    }

    /// Forget the waiting frames (video they would go with was dropped).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending_end = self.pending_base;
    }

    /// Frames waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a part ending at `end` should wait for audio still to come:
    /// audio has been seen, has not yet reached `end`, and is less than
    /// `patience` behind it (further behind, it is not waited for).
    pub fn lags(&self, end: i64, patience: i64) -> bool {
        self.next
            .is_some_and(|next| next < end && end - next < patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame() -> Sample {
        Sample {
            duration: 1024,
            composition_offset: 0,
            keyframe: true,
            data: Bytes::from_static(&[1]),
        }
    }

    fn queue_of(times: impl IntoIterator<Item = i64>) -> AudioQueue {
        let mut q = AudioQueue::default();
        for t in times {
            let time = q.place(t, 1024).unwrap();
            q.push(time, frame());
        }
        q
    }

    #[test]
    fn frames_are_taken_by_the_time_they_start() {
        let mut q = queue_of((0..10).map(|i| i * 1024));
        let (base, taken) = q.take_before(3000).unwrap();
        assert_eq!((base, taken.len()), (0, 3));
        assert!(q.take_before(3072).is_none(), "the next starts at 3072");
        let (base, taken) = q.take_before(3073).unwrap();
        assert_eq!((base, taken.len()), (3072, 1));
        let (base, taken) = q.take_all().unwrap();
        assert_eq!((base, taken.len()), (4096, 6));
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn the_clock_continues_through_jitter_and_re_anchors_on_a_jump() {
        let mut q = AudioQueue::default();
        assert_eq!(q.place(100, 1024), Some(100));
        assert_eq!(q.place(1100, 1024), Some(1124), "jitter is absorbed");
        assert_eq!(q.place(50_000, 1024), Some(50_000), "a jump re-anchors");
        assert_eq!(q.next(), Some(51_024));
        assert_eq!(AudioQueue::default().place(-5, 1024), None);
    }

    #[test]
    fn lagging_is_bounded_by_patience() {
        let q = queue_of([0]);
        assert!(q.lags(2048, 48_000), "audio is 1024 behind");
        assert!(!q.lags(1024, 48_000), "audio reached the end");
        assert!(!q.lags(100_000, 48_000), "too far behind to wait for");
        assert!(!AudioQueue::default().lags(2048, 48_000), "no audio yet");
    }

    #[test]
    fn the_wait_is_bounded_in_frames() {
        let mut q = queue_of((0..(MAX_PENDING_FRAMES as i64 + 10)).map(|i| i * 1024));
        assert_eq!(q.pending(), MAX_PENDING_FRAMES);
        let (base, _) = q.take_all().unwrap();
        assert_eq!(base, 10 * 1024, "the oldest went");
    }
}
