//! Decode times for video that RTP carries with presentation times only.
//! Sans-IO.
//!
//! RFC 6184 §5.1 and RFC 7798 §4.1: the RTP timestamp is the sampling
//! (presentation) time, and pictures are sent in decoding order. With B
//! pictures the two orders differ, and a muxer needs both. The bitstream
//! bounds the difference: H.264 `max_num_reorder_frames` (E.2.1: "the
//! maximum number of frames ... that precede any frame ... in decoding
//! order and follow it in output order") and HEVC `sps_max_num_reorder_pics`
//! (7.4.3.2.1, same words for pictures). Call that bound `d`.
//!
//! Then the picture of presentation rank `r` (its place among all PTS in
//! increasing order) has decode index `k ≥ r − d`... and conversely a
//! picture's presentation rank is at least its decode index minus `d`. So
//! when picture `k` (0-based, decode order) has arrived, the `k − d`
//! smallest PTS seen so far are final: no later picture can present before
//! them. [`DecodeTimes`] gives picture `k` the `(k − d)`-th smallest PTS
//! seen so far as its DTS — the classic "DTS = PTS delayed by the reorder
//! depth" — which is
//! - causal: it needs nothing after picture `k`, so no latency is added;
//! - at most the picture's own PTS (it is among the values seen);
//! - strictly increasing (each is the smallest not yet used, and every PTS
//!   kept is above the last DTS given).
//!
//! For the first `d` pictures there is no `(k − d)`-th value yet: their DTS
//! are extrapolated backwards from the smallest PTS seen, one frame
//! interval apart (the SPS frame rate, else the smallest PTS step seen,
//! else [`DEFAULT_FRAME_INTERVAL`]). A picture that cannot be given a DTS
//! that is strictly increasing and not after its PTS (a PTS at or before
//! the last DTS, a repeated PTS, or a stream reordering deeper than it
//! signals) is refused, and the caller drops and counts it.

use ferrocast_media::Time90k;

/// The frame interval assumed before the stream gives one (30 fps).
pub const DEFAULT_FRAME_INTERVAL: Time90k = Time90k(3000);

/// The reorder depth assumed when the bitstream does not give one: the
/// largest either standard allows (H.264 MaxDpbFrames ≤ 16, HEVC
/// MaxDpbSize ≤ 16). Too large only delays decode times; too small breaks
/// them.
pub const DEFAULT_REORDER_DEPTH: u32 = 16;

/// Why a picture was refused a decode time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeTimeError {
    /// Its PTS is not after the last DTS given, or repeats a PTS still held.
    #[error("picture PTS {pts} is not after the last decode time {last} or repeats one")]
    NotAfter {
        /// The picture's PTS (90 kHz ticks).
        pts: i64,
        /// The last DTS given (90 kHz ticks).
        last: i64,
    },
    /// No decode time fits between the last one and the held PTS values
    /// (the stream reorders deeper than its reorder depth says, or its
    /// start has a picture presented long before the first ones).
    #[error("no decode time fits between {last} and {next}")]
    NoRoom {
        /// The last DTS given.
        last: i64,
        /// The smallest PTS held.
        next: i64,
    },
}

/// Derives decode times from presentation times in decoding order.
#[derive(Debug, Clone)]
pub struct DecodeTimes {
    depth: u32,
    /// The frame interval from the bitstream, if it gives one.
    signalled_interval: Option<Time90k>,
    /// The smallest positive PTS step seen.
    measured_interval: Option<Time90k>,
    /// PTS values not yet used as a DTS, sorted, distinct, all above `last`.
    held: Vec<i64>,
    /// The last PTS taken, for the step measurement.
    last_pts: Option<i64>,
    last: Option<i64>,
}

impl DecodeTimes {
    /// A derivation for a stream reordering at most `depth` pictures
    /// (clamped to 16), with frames `interval` apart if known.
    pub fn new(depth: u32, interval: Option<Time90k>) -> Self {
        DecodeTimes {
            depth: depth.min(DEFAULT_REORDER_DEPTH),
            signalled_interval: interval.filter(|i| i.ticks() > 0),
            measured_interval: None,
            held: Vec::new(),
            last_pts: None,
            last: None,
        }
    }

    /// The reorder depth in use.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// New stream parameters (a new SPS). A larger depth is taken at once
    /// (the next decode times slow down to make room); a smaller one drops
    /// the surplus of held PTS values as they come up.
    pub fn set_depth(&mut self, depth: u32, interval: Option<Time90k>) {
        self.depth = depth.min(DEFAULT_REORDER_DEPTH);
        if let Some(interval) = interval.filter(|i| i.ticks() > 0) {
            self.signalled_interval = Some(interval);
        }
    }

    /// Start afresh (a new sender): nothing held, no last decode time.
    pub fn reset(&mut self) {
        self.held.clear();
        self.last = None;
        self.last_pts = None;
    }

    fn interval(&self) -> i64 {
        self.signalled_interval
            .or(self.measured_interval)
            .unwrap_or(DEFAULT_FRAME_INTERVAL)
            .ticks()
    }

    /// The decode time of the next picture in decoding order, presented at
    /// `pts`; an error means the picture is to be dropped (nothing of it is
    /// kept).
    pub fn next(&mut self, pts: Time90k) -> Result<Time90k, DecodeTimeError> {
        let pts = pts.ticks();
        let last = self.last.unwrap_or(i64::MIN);
        let at = match self.held.binary_search(&pts) {
            Ok(_) => return Err(DecodeTimeError::NotAfter { pts, last }),
            Err(_) if pts <= last => return Err(DecodeTimeError::NotAfter { pts, last }),
            Err(at) => at,
        };
        self.held.insert(at, pts);
        let depth = self.depth as usize;
        let dts = if self.held.len() > depth {
            // A smaller depth than before: the surplus smallest values are
            // skipped (decode times jump ahead, still ≤ every PTS held).
            let surplus = self.held.len() - depth - 1;
            self.held.drain(..surplus);
            self.held.remove(0)
        } else {
            // Fewer than `depth + 1` held: the decode time lies before the
            // smallest one, `missing` intervals back, or evenly between the
            // last decode time and it when that is too far back.
            let next = self.held[0];
            let missing = (depth + 1 - self.held.len()) as i64;
            let mut dts = next.saturating_sub(missing.saturating_mul(self.interval()));
            if let Some(last) = self.last
                && dts <= last
            {
                dts = last + (next - last) / (missing + 1);
            }
            if self.last.is_some_and(|last| dts <= last) || dts >= next {
                self.held.remove(at);
                return Err(DecodeTimeError::NoRoom { last, next });
            }
            dts
        };
        if let Some(prev) = self.last_pts {
            let step = (pts - prev).abs();
            if step > 0 && self.measured_interval.is_none_or(|m| step < m.ticks()) {
                self.measured_interval = Some(Time90k(step));
            }
        }
        self.last_pts = Some(pts);
        self.last = Some(dts);
        Ok(Time90k(dts))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const F: i64 = 3600;

    fn run(depth: u32, order: &[i64]) -> Vec<Result<i64, DecodeTimeError>> {
        let mut d = DecodeTimes::new(depth, Some(Time90k(F)));
        order
            .iter()
            .map(|&p| d.next(Time90k(p * F)).map(|t| t.ticks()))
            .collect()
    }

    #[test]
    fn i_p_b_b() {
        // Presentation order I0 B1 B2 P3 B4 B5 P6, sent I0 P3 B1 B2 P6 B4 B5;
        // one picture of reordering.
        let got = run(1, &[0, 3, 1, 2, 6, 4, 5]);
        let dts: Vec<i64> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(dts, [-F, 0, F, 2 * F, 3 * F, 4 * F, 5 * F]);
    }

    #[test]
    fn pyramid_of_depth_two() {
        // x264 b-pyramid with 3 B-frames: I0 P4 B2 b1 b3 P8 B6 b5 b7;
        // max_num_reorder_frames 2.
        let order = [0, 4, 2, 1, 3, 8, 6, 5, 7];
        let got = run(2, &order);
        let dts: Vec<i64> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(dts, [-2 * F, -F, 0, F, 2 * F, 3 * F, 4 * F, 5 * F, 6 * F]);
        for (d, p) in dts.iter().zip(order) {
            assert!(*d <= p * F);
        }
    }

    #[test]
    fn no_reordering_is_dts_equal_pts() {
        let got = run(0, &[0, 1, 2, 3]);
        let dts: Vec<i64> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(dts, [0, F, 2 * F, 3 * F]);
    }

    #[test]
    fn pictures_that_cannot_be_placed_are_refused() {
        // Depth 0 signalled but a B-frame comes: it presents before the
        // last decode time.
        let got = run(0, &[0, 2, 1, 3]);
        assert!(got[0].is_ok() && got[1].is_ok() && got[3].is_ok());
        assert_eq!(
            got[2],
            Err(DecodeTimeError::NotAfter {
                pts: F,
                last: 2 * F
            })
        );
        // A repeated timestamp.
        let got = run(2, &[0, 3, 3]);
        assert!(matches!(got[2], Err(DecodeTimeError::NotAfter { .. })));
    }

    #[test]
    fn depth_changes_keep_times_increasing() {
        let mut d = DecodeTimes::new(0, Some(Time90k(F)));
        let mut last = i64::MIN;
        let mut check = |d: &mut DecodeTimes, p: i64| {
            let t = d.next(Time90k(p * F)).unwrap().ticks();
            assert!(t > last && t <= p * F, "{t} after {last}, pts {}", p * F);
            last = t;
        };
        for p in 0..4 {
            check(&mut d, p);
        }
        // Now a new IDR (presented first, as an IDR is) starts GOPs with
        // B-frames and depth 2: room is made between the last decode time
        // and the next PTS.
        d.set_depth(2, None);
        for p in [4, 8, 6, 5, 7, 12, 10, 9, 11] {
            check(&mut d, p);
        }
        d.set_depth(0, None);
        for p in [13, 14, 15] {
            check(&mut d, p);
        }
    }

    /// A random stream with reordering of at most `depth`: presentation
    /// order shuffled within windows such that no picture is preceded in
    /// decoding order by more than `depth` pictures that present after it.
    fn stream(depth: usize, swaps: &[usize], len: usize) -> Vec<i64> {
        let mut order: Vec<i64> = (0..len as i64).collect();
        // Rotating a block of `depth + 1` pictures precedes each of them by
        // at most `depth` later-presented ones. The first block is left
        // alone: a stream starts with its IDR, presented first.
        let block = depth + 1;
        for (b, chunk) in order.chunks_mut(block).enumerate().skip(1) {
            let s = swaps.get(b).copied().unwrap_or(0) % chunk.len();
            chunk.rotate_right(s);
        }
        order
    }

    proptest! {
        /// Whatever the stream, accepted decode times increase strictly and
        /// are never after their PTS; a stream within its signalled depth
        /// loses nothing.
        #[test]
        fn monotonic_and_not_after_pts(
            depth in 0usize..5,
            swaps in proptest::collection::vec(any::<usize>(), 0..40),
            len in 1usize..120,
            noise in proptest::collection::vec(-5i64..60, 0..30),
        ) {
            let order = stream(depth, &swaps, len);
            let mut d = DecodeTimes::new(depth as u32, None);
            let mut last = i64::MIN;
            for &p in &order {
                let t = d.next(Time90k(p * F)).unwrap().ticks();
                prop_assert!(t > last && t <= p * F);
                last = t;
            }
            // Arbitrary timestamps: refusals allowed, the invariants not
            // broken.
            let mut d = DecodeTimes::new(depth as u32, Some(Time90k(F)));
            let mut last = i64::MIN;
            for &p in &noise {
                if let Ok(t) = d.next(Time90k(p * 1000)) {
                    prop_assert!(t.ticks() > last && t.ticks() <= p * 1000);
                    last = t.ticks();
                }
            }
        }
    }
}
