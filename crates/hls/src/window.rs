//! The live window of one rendition: which Media Segments and Partial
//! Segments exist, which the Media Playlist lists, and what a blocking
//! request or a request for a resource should get.
//!
//! The packager drives it as media arrives ([`LiveWindow::open_segment`],
//! [`LiveWindow::add_part`], [`LiveWindow::close_segment_held`] at a
//! segment boundary, [`LiveWindow::close_segment`] where the stream breaks
//! off, [`LiveWindow::end`]) and keeps the bytes itself, keyed by the names of
//! [`crate::names`]. HTTP handlers ask it to render
//! ([`LiveWindow::render`](crate::LiveWindow::render)) and to decide
//! ([`LiveWindow::blocking_status`], [`LiveWindow::part_status`],
//! [`LiveWindow::segment_status`]). It holds no clock: media time is the sum
//! of the durations it is given.

use std::collections::VecDeque;
use std::ops::Range;

use ferrocast_media::Time90k;
use ferrocast_media::time::CLOCK_HZ;

use crate::names::PartRef;
use crate::query::BlockTarget;

/// Most Partial Segments one Media Segment may have.
pub const MAX_PARTS_PER_SEGMENT: usize = 10_000;

/// Most Media Segments a playlist lists, whatever the rules below would keep
/// (bounds memory when segments come out far shorter than the target).
pub const MAX_LISTED_SEGMENTS: usize = 1_024;

/// Settings of one window; fixed for its life.
///
/// RFC 8216bis §6.2.1 (recalled): "The server MUST NOT change the
/// EXT-X-TARGETDURATION value in a Media Playlist", and the Part Target
/// Duration likewise stays put, so both live here rather than being derived
/// from the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowConfig {
    /// Part Target Duration (`EXT-X-PART-INF:PART-TARGET`). Every Partial
    /// Segment, rounded to milliseconds, must be no longer.
    pub part_target: Time90k,
    /// Target Duration in whole seconds (`EXT-X-TARGETDURATION`). Every
    /// Media Segment, rounded to the nearest second, should be no longer;
    /// [`ClosedSegment::exceeds_target_duration`] reports those that are.
    pub target_duration_secs: u32,
    /// How many Media Segments the playlist lists (default 6). More are kept
    /// when fewer would last under three Target Durations (RFC 8216 §6.2.2).
    pub window_segments: usize,
    /// Media Sequence Number of the first segment (default 0). A packager
    /// restarted for the same stream can start past the numbers it used
    /// before, so that sequence numbers never go backwards for a client.
    pub first_msn: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` to start from (default 0), and
    /// whether the first segment starts a new timeline (default no): a
    /// packager taking over a stream from another continues both
    /// sequences, after a discontinuity.
    pub resume: Option<SequencePoint>,
    /// `PART-HOLD-BACK` in part targets (default 3, at least 2: RFC 8216bis
    /// §4.4.3.8 "MUST be at least twice the Part Target Duration ...
    /// SHOULD be at least three times").
    pub part_hold_back_parts: u32,
}

/// Where a rendition's sequences stand: the next Media Sequence Number and
/// the Discontinuity Sequence. A packager that takes a stream over starts
/// past it (after a discontinuity), so that a client's numbers never go
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencePoint {
    /// The next Media Sequence Number.
    pub next_msn: u64,
    /// The Discontinuity Sequence of the playlist.
    pub discontinuity_sequence: u64,
}

/// `PART-HOLD-BACK` in part targets unless configured: the HLS
/// specification's recommendation.
pub const DEFAULT_PART_HOLD_BACK_PARTS: u32 = 3;

impl Default for WindowConfig {
    /// 200 ms parts, 2 s target duration, 6 segments, from sequence number 0.
    fn default() -> Self {
        WindowConfig::new(Time90k::from_millis(200), 2)
    }
}

impl WindowConfig {
    /// A configuration with the given Part Target and Target Durations and
    /// the defaults: 6 listed segments, first Media Sequence Number 0.
    pub fn new(part_target: Time90k, target_duration_secs: u32) -> Self {
        WindowConfig {
            part_target,
            target_duration_secs,
            window_segments: 6,
            first_msn: 0,
            resume: None,
            part_hold_back_parts: DEFAULT_PART_HOLD_BACK_PARTS,
        }
    }

    /// The Target Duration in 90 kHz ticks.
    pub fn target_duration(&self) -> Time90k {
        Time90k(i64::from(self.target_duration_secs) * CLOCK_HZ)
    }
}

/// A [`WindowConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `target_duration_secs` is 0.
    #[error("target duration must be at least 1 s")]
    ZeroTargetDuration,
    /// `part_target` rounds to less than 1 ms.
    #[error("part target {ticks} ticks is under 1 ms")]
    PartTargetTooShort {
        /// The configured part target, in 90 kHz ticks.
        ticks: i64,
    },
    /// `part_target` is longer than the Target Duration.
    #[error("part target {ticks} ticks exceeds the target duration of {target_secs} s")]
    PartTargetTooLong {
        /// The configured part target, in 90 kHz ticks.
        ticks: i64,
        /// The configured target duration, in seconds.
        target_secs: u32,
    },
    /// `window_segments` is 0 or above [`MAX_LISTED_SEGMENTS`].
    #[error("window of {0} segments is outside 1..={MAX_LISTED_SEGMENTS}")]
    WindowSegments(usize),
    /// `part_hold_back_parts` is under 2.
    #[error("PART-HOLD-BACK of {0} part targets is under the 2 the HLS specification requires")]
    PartHoldBack(u32),
}

/// A packager call the window refused; the window is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    /// [`LiveWindow::end`] was called; the stream is over.
    #[error("the window has ended")]
    Ended,
    /// `open_segment` while segment `msn` is still open.
    #[error("segment {msn} is still open")]
    SegmentAlreadyOpen {
        /// Media Sequence Number of the open segment.
        msn: u64,
    },
    /// `add_part` or `close_segment` with no segment open.
    #[error("no segment is open")]
    NoOpenSegment,
    /// A part duration of zero or less.
    #[error("part {part} has non-positive duration {ticks} ticks")]
    NonPositiveDuration {
        /// The part that would have been added.
        part: PartRef,
        /// Its duration, in 90 kHz ticks.
        ticks: i64,
    },
    /// A part longer (in rendered milliseconds) than the Part Target
    /// Duration, which RFC 8216bis §4.4.4.9 forbids.
    #[error("part {part} lasts {part_ms} ms, over the part target of {target_ms} ms")]
    PartExceedsTarget {
        /// The part that would have been added.
        part: PartRef,
        /// Its duration, rounded to milliseconds.
        part_ms: i64,
        /// The Part Target Duration, rounded to milliseconds.
        target_ms: i64,
    },
    /// More than [`MAX_PARTS_PER_SEGMENT`] parts in one segment.
    #[error("segment {msn} already has the maximum number of parts")]
    TooManyParts {
        /// Media Sequence Number of the open segment.
        msn: u64,
    },
    /// The Media Sequence Number would pass `u64::MAX`.
    #[error("media sequence numbers are exhausted")]
    MsnExhausted,
    /// [`LiveWindow::skip_to`] a number below the next one: numbers never
    /// go backwards.
    #[error("cannot skip back to sequence number {requested}; the next is {next}")]
    SkipBackwards {
        /// The number asked for.
        requested: u64,
        /// The number the next segment would have had.
        next: u64,
    },
    /// [`LiveWindow::skip_to`] or [`LiveWindow::add_gap_segment`] is only
    /// for a window with no open segment, and `skip_to` only for one that
    /// has listed nothing yet (a playlist's numbers are consecutive).
    #[error("the window already has segments (or one is open)")]
    NotFresh,
}

/// How a new Media Segment starts; given to [`LiveWindow::open_segment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    /// Wall-clock time of the segment's first sample, in milliseconds since
    /// the Unix epoch (`EXT-X-PROGRAM-DATE-TIME`).
    pub program_date_time_ms: i64,
    /// The segment does not continue the previous one (publisher reconnect,
    /// timestamp jump, codec change): it gets an `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Generation of the init section (`init{N}.mp4`) its media needs. A
    /// change writes a new `EXT-X-MAP`.
    pub init_generation: u32,
}

/// What [`LiveWindow::close_segment`] (or
/// [`LiveWindow::close_segment_held`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedSegment {
    /// Media Sequence Number of the segment just completed (`seg{msn}.m4s`
    /// is now listed, or will be with the next segment's first part).
    pub msn: u64,
    /// Its duration: the sum of its parts' durations.
    pub duration: Time90k,
    /// How it started as listed: its program date time, init generation,
    /// and discontinuity (with one inherited from a withdrawn segment).
    pub start: SegmentStart,
    /// Its duration, rounded to the nearest second, exceeds the Target
    /// Duration: the playlist now breaks RFC 8216bis §4.4.3.1 ("The EXTINF
    /// duration of each Media Segment in a Playlist file, when rounded to
    /// the nearest integer, MUST be less than or equal to the Target
    /// Duration"). Worth a warning: the GOP is longer than the target.
    pub exceeds_target_duration: bool,
}

/// The answer to a blocking Playlist request (RFC 8216bis §6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockingStatus {
    /// The playlist now satisfies the request: render and send it.
    Ready,
    /// Not yet: hold the request and ask again when the window changes.
    /// RFC 8216bis (recalled): the server should give up after about three
    /// Target Durations ([`LiveWindow::block_timeout`]) with HTTP 503.
    Wait,
    /// Too far in the future: answer HTTP 400 at once.
    TooFarAhead,
}

/// Whether a part or segment can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceStatus {
    /// It exists: serve the packager's bytes.
    Available,
    /// It is the part named by the current `EXT-X-PRELOAD-HINT`: hold the
    /// request until it is added (or until the hint moves on, then 404).
    Pending,
    /// Never existed, no longer kept, or not hinted: 404.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) duration: Time90k,
    pub(crate) independent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) msn: u64,
    pub(crate) program_date_time_ms: i64,
    pub(crate) discontinuity: bool,
    pub(crate) init_generation: u32,
    pub(crate) parts: Vec<Part>,
    /// Sum of `parts` durations, kept in step with them; for a gap
    /// segment, the duration it stands for.
    pub(crate) duration: Time90k,
    /// A placeholder for media this rendition does not have
    /// (`EXT-X-GAP`); it has no parts and no bytes.
    pub(crate) gap: bool,
}

impl Segment {
    fn last_part(&self) -> Option<PartRef> {
        let index = u32::try_from(self.parts.len().checked_sub(1)?).ok()?;
        Some(PartRef {
            msn: self.msn,
            index,
        })
    }
}

/// A segment taken off the playlist whose bytes must stay available a while.
#[derive(Debug, Clone)]
struct Retired {
    segment: Segment,
    /// Media time (of [`LiveWindow::clock`]) when it left the playlist.
    removed_at: Time90k,
}

/// The live window of one rendition. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LiveWindow {
    pub(crate) cfg: WindowConfig,
    /// Completed segments listed in the playlist, oldest first.
    pub(crate) listed: VecDeque<Segment>,
    /// The segment being produced (its parts are listed), if any.
    pub(crate) open: Option<Segment>,
    /// A completed segment not listed yet: it is rendered like an open one
    /// (its parts, no `EXTINF`) until the next segment's first part is
    /// added. See [`LiveWindow::close_segment_held`]. While there is one,
    /// the open segment (if any) has no parts.
    pub(crate) held: Option<Segment>,
    /// Media Sequence Number of the open segment, or of the next to open.
    next_msn: u64,
    /// Discontinuity tags that have left the playlist (EXT-X-DISCONTINUITY-SEQUENCE).
    pub(crate) discontinuity_sequence: u64,
    retired: VecDeque<Retired>,
    /// Total duration of every segment closed so far.
    clock: Time90k,
    /// Longest total duration any rendered playlist has had.
    longest_playlist: Time90k,
    /// A discontinuity carried over from a segment withdrawn empty.
    carry_discontinuity: bool,
    /// Media Sequence Numbers released since [`LiveWindow::take_released`]
    /// was last called.
    released: Range<u64>,
    pub(crate) ended: bool,
    /// The packager expects the open segment's newest part to be its last
    /// ([`LiveWindow::expect_segment_end`]).
    segment_ends_next: bool,
}

/// Rounds ticks to whole milliseconds, half away from zero; how every
/// duration is written, so comparisons made here match what clients read.
pub fn ticks_to_ms(t: Time90k) -> i64 {
    let num = i128::from(t.0) * 1_000;
    let den = i128::from(CLOCK_HZ);
    let half = den / 2;
    let q = if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    };
    // |q| <= |i64| / 90, always in range.
    q as i64
}

fn add(a: Time90k, b: Time90k) -> Time90k {
    Time90k(a.0.saturating_add(b.0))
}

impl LiveWindow {
    /// A window with nothing in it yet.
    pub fn new(cfg: WindowConfig) -> Result<Self, ConfigError> {
        if cfg.target_duration_secs == 0 {
            return Err(ConfigError::ZeroTargetDuration);
        }
        if ticks_to_ms(cfg.part_target) < 1 {
            return Err(ConfigError::PartTargetTooShort {
                ticks: cfg.part_target.0,
            });
        }
        if cfg.part_target > cfg.target_duration() {
            return Err(ConfigError::PartTargetTooLong {
                ticks: cfg.part_target.0,
                target_secs: cfg.target_duration_secs,
            });
        }
        if cfg.window_segments == 0 || cfg.window_segments > MAX_LISTED_SEGMENTS {
            return Err(ConfigError::WindowSegments(cfg.window_segments));
        }
        if cfg.part_hold_back_parts < 2 {
            return Err(ConfigError::PartHoldBack(cfg.part_hold_back_parts));
        }
        let (next_msn, discontinuity_sequence, carry_discontinuity) = match cfg.resume {
            None => (cfg.first_msn, 0, false),
            Some(point) => (
                point.next_msn.max(cfg.first_msn),
                point.discontinuity_sequence,
                true,
            ),
        };
        Ok(LiveWindow {
            next_msn,
            cfg,
            listed: VecDeque::new(),
            open: None,
            held: None,
            discontinuity_sequence,
            retired: VecDeque::new(),
            clock: Time90k::ZERO,
            longest_playlist: Time90k::ZERO,
            carry_discontinuity,
            released: 0..0,
            ended: false,
            segment_ends_next: false,
        })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &WindowConfig {
        &self.cfg
    }

    /// Starts the next Media Segment; returns its Media Sequence Number.
    ///
    /// Numbers are consecutive and never reused, except that a segment
    /// closed without parts gives its number to the next one.
    pub fn open_segment(&mut self, start: SegmentStart) -> Result<u64, WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        if let Some(open) = &self.open {
            return Err(WindowError::SegmentAlreadyOpen { msn: open.msn });
        }
        let discontinuity = start.discontinuity || self.carry_discontinuity;
        self.carry_discontinuity = false;
        self.open = Some(Segment {
            msn: self.next_msn,
            program_date_time_ms: start.program_date_time_ms,
            discontinuity,
            init_generation: start.init_generation,
            parts: Vec::new(),
            duration: Time90k::ZERO,
            gap: false,
        });
        Ok(self.next_msn)
    }

    /// Makes `msn` the Media Sequence Number of the next segment, for a
    /// rendition that joins a stream whose other renditions already
    /// numbered their segments: its first segment takes the number the
    /// others gave the segment starting at the same time.
    ///
    /// Only before the first segment is opened ([`WindowError::NotFresh`]
    /// otherwise; later holes are filled with
    /// [`LiveWindow::add_gap_segment`]), and never backwards.
    pub fn skip_to(&mut self, msn: u64) -> Result<(), WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        if msn < self.next_msn {
            return Err(WindowError::SkipBackwards {
                requested: msn,
                next: self.next_msn,
            });
        }
        if self.open.is_some()
            || self.held.is_some()
            || !self.listed.is_empty()
            || !self.retired.is_empty()
        {
            return Err(WindowError::NotFresh);
        }
        self.next_msn = msn;
        Ok(())
    }

    /// Lists a segment this rendition has no media for (it lost it, while
    /// the stream's other renditions have it), so that its later segments
    /// keep the same Media Sequence Numbers as theirs. Returns its number.
    ///
    /// RFC 8216bis §4.4.4.7 (recalled): "The EXT-X-GAP tag indicates that
    /// the segment URI to which it applies does not contain media data and
    /// SHOULD NOT be loaded by clients."
    pub fn add_gap_segment(
        &mut self,
        start: SegmentStart,
        duration: Time90k,
    ) -> Result<u64, WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        if self.open.is_some() {
            return Err(WindowError::NotFresh);
        }
        let msn = self.next_msn;
        if duration.0 <= 0 {
            return Err(WindowError::NonPositiveDuration {
                part: PartRef { msn, index: 0 },
                ticks: duration.0,
            });
        }
        let discontinuity = start.discontinuity || self.carry_discontinuity;
        self.carry_discontinuity = false;
        self.open = Some(Segment {
            msn,
            program_date_time_ms: start.program_date_time_ms,
            discontinuity,
            init_generation: start.init_generation,
            parts: Vec::new(),
            duration,
            gap: true,
        });
        self.close_open(false)?;
        Ok(msn)
    }

    /// Records that the next Partial Segment of the open segment is complete
    /// (its bytes are stored under the returned name); returns it.
    ///
    /// `independent`: it starts with an independent frame (RFC 8216bis
    /// §4.4.4.9: "INDEPENDENT=YES ... if the Partial Segment contains an
    /// independent frame").
    pub fn add_part(
        &mut self,
        duration: Time90k,
        independent: bool,
    ) -> Result<PartRef, WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        let target_ms = ticks_to_ms(self.cfg.part_target);
        let open = self.open.as_mut().ok_or(WindowError::NoOpenSegment)?;
        if open.parts.len() >= MAX_PARTS_PER_SEGMENT {
            return Err(WindowError::TooManyParts { msn: open.msn });
        }
        let part = PartRef {
            msn: open.msn,
            // Bounded by MAX_PARTS_PER_SEGMENT, well inside u32.
            index: open.parts.len() as u32,
        };
        if duration.0 <= 0 {
            return Err(WindowError::NonPositiveDuration {
                part,
                ticks: duration.0,
            });
        }
        // RFC 8216bis §4.4.4.9 (recalled): "The duration of a Partial
        // Segment MUST be less than or equal to the Part Target Duration."
        // Compared as written (milliseconds), which is what clients check.
        let part_ms = ticks_to_ms(duration);
        if part_ms > target_ms {
            return Err(WindowError::PartExceedsTarget {
                part,
                part_ms,
                target_ms,
            });
        }
        if open.parts.is_empty() {
            // The segment closed before this one joins the playlist now,
            // together with this part.
            self.list_held();
        }
        let open = self.open.as_mut().ok_or(WindowError::NoOpenSegment)?;
        self.segment_ends_next = false;
        open.parts.push(Part {
            duration,
            independent,
        });
        open.duration = add(open.duration, duration);
        Ok(part)
    }

    /// Completes the open segment: it is listed as `seg{msn}.m4s` with its
    /// duration the sum of its parts, and old segments leave the playlist.
    /// A segment held by [`LiveWindow::close_segment_held`] is listed first.
    ///
    /// A segment with no parts is withdrawn instead (`Ok(None)`): its number
    /// goes to the next segment, which inherits its discontinuity.
    pub fn close_segment(&mut self) -> Result<Option<ClosedSegment>, WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        self.close_open(false)
    }

    /// Completes the open segment because the next one starts now, like
    /// [`LiveWindow::close_segment`], except that it joins the playlist
    /// (`EXTINF` and URI) only when the next segment's first part is added
    /// ([`LiveWindow::add_part`]), or at the next `close_segment`,
    /// [`LiveWindow::add_gap_segment`] or [`LiveWindow::end`]. Meanwhile
    /// its parts are rendered as if it were still open and the preload hint
    /// names the next segment's first part.
    ///
    /// Why: a player holds the parts of the newest segment in a playlist as
    /// one growing, unfinished segment. A reload that adds the segment's
    /// last part and closes it at once, answered while the player is still
    /// appending an earlier part, leaves hls.js (1.7) taking the segment for
    /// fully buffered at its old length: it never loads the last part and
    /// stalls. Held like this, a segment closes only in the same reload as
    /// the next segment's first part, and a player asking for parts in turn
    /// has by then seen (and loaded) every part of it. No RFC rule is
    /// bent: a server may list a completed segment whenever it likes, and
    /// the hinted part is the next one either way.
    pub fn close_segment_held(&mut self) -> Result<Option<ClosedSegment>, WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        self.close_open(true)
    }

    /// Lists the held segment, if any (see
    /// [`LiveWindow::close_segment_held`]); for a packager whose stream
    /// breaks off between segments.
    pub fn list_held(&mut self) {
        if let Some(segment) = self.held.take() {
            self.list(segment);
        }
    }

    /// Media Sequence Numbers whose bytes (segments and all their parts) the
    /// packager may now delete, released by any call since the last
    /// `take_released`; often empty.
    ///
    /// RFC 8216 §6.2.2: "When the server removes a Media Segment URI from
    /// the Playlist, the corresponding Media Segment MUST remain available
    /// to clients for a period of time equal to the duration of the segment
    /// plus the duration of the longest Playlist file distributed by the
    /// server containing that segment." Measured in media time.
    pub fn take_released(&mut self) -> Range<u64> {
        let end = self.released.end;
        std::mem::replace(&mut self.released, end..end)
    }

    fn close_open(&mut self, hold: bool) -> Result<Option<ClosedSegment>, WindowError> {
        self.segment_ends_next = false;
        let Some(open) = self.open.as_ref() else {
            return Err(WindowError::NoOpenSegment);
        };
        if open.parts.is_empty() && !open.gap {
            self.carry_discontinuity |= open.discontinuity;
            self.open = None;
            if !hold {
                self.list_held();
            }
            return Ok(None);
        }
        let next_msn = open.msn.checked_add(1).ok_or(WindowError::MsnExhausted)?;
        let Some(segment) = self.open.take() else {
            return Err(WindowError::NoOpenSegment);
        };
        self.next_msn = next_msn;
        let msn = segment.msn;
        let duration = segment.duration;
        let start = SegmentStart {
            program_date_time_ms: segment.program_date_time_ms,
            discontinuity: segment.discontinuity,
            init_generation: segment.init_generation,
        };
        self.list_held();
        if hold && !segment.gap {
            self.held = Some(segment);
        } else {
            self.list(segment);
        }
        let target = i64::from(self.cfg.target_duration_secs);
        let rounded_secs = (duration.0 / (CLOCK_HZ / 2)).saturating_add(1) / 2;
        Ok(Some(ClosedSegment {
            msn,
            duration,
            start,
            exceeds_target_duration: rounded_secs > target,
        }))
    }

    /// Appends a completed segment to the playlist; old ones leave it.
    fn list(&mut self, segment: Segment) {
        self.clock = add(self.clock, segment.duration);
        self.listed.push_back(segment);
        // Measured before eviction: that bounds what was rendered, the listed
        // segments plus the parts of the segment that was open (or held).
        self.longest_playlist = self.longest_playlist.max(self.listed_duration());
        self.evict();
        let released = self.release();
        if self.released.is_empty() {
            self.released = released;
        } else if !released.is_empty() {
            self.released.end = released.end;
        }
    }

    /// Ends the stream: closes the open segment (if it has parts) and adds
    /// `EXT-X-ENDLIST`; every later packager call gets
    /// [`WindowError::Ended`]. Calling it again does nothing.
    ///
    /// Returns the segment it closed, if any.
    pub fn end(&mut self) -> Option<ClosedSegment> {
        if self.ended {
            return None;
        }
        self.list_held();
        // Only fails when there is no open segment or at u64::MAX sequence
        // numbers; either way nothing more can be listed.
        let closed = self.close_open(false).ok().flatten();
        self.open = None;
        self.ended = true;
        closed
    }

    /// Whether [`LiveWindow::end`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the first listed segment, or the one that
    /// will be first.
    pub fn media_sequence(&self) -> u64 {
        self.listed
            .front()
            .or(self.held.as_ref())
            .map_or(self.next_msn, |s| s.msn)
    }

    /// Media Sequence Number of the open segment, or of the next one to
    /// open.
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// Where this window's sequences stand now, for a packager that may
    /// take the stream over: the next Media Sequence Number, and the
    /// Discontinuity Sequence its playlist must start from so that its
    /// first segment (a discontinuity) numbers after every discontinuity
    /// listed here.
    pub fn sequence_point(&self) -> SequencePoint {
        let tags = self
            .listed
            .iter()
            .chain(self.held.iter())
            .chain(self.open.iter())
            .filter(|s| s.discontinuity)
            .count() as u64;
        SequencePoint {
            next_msn: self.next_msn,
            discontinuity_sequence: self.discontinuity_sequence.saturating_add(tags),
        }
    }

    /// Media Sequence Number of the last completed segment, if any is
    /// listed.
    pub fn last_msn(&self) -> Option<u64> {
        self.listed.back().map(|s| s.msn)
    }

    /// The newest Partial Segment; also what an `EXT-X-RENDITION-REPORT`
    /// for this rendition says (RFC 8216bis §4.4.5.4: LAST-MSN and
    /// LAST-PART name "the last Partial Segment currently in the specified
    /// Rendition").
    pub fn last_part(&self) -> Option<PartRef> {
        self.open
            .as_ref()
            .and_then(Segment::last_part)
            .or_else(|| self.held.as_ref().and_then(Segment::last_part))
            .or_else(|| self.listed.back().and_then(Segment::last_part))
    }

    /// The first Partial Segment at or after `target`, in playlist order:
    /// the part whose addition satisfied a blocking request for `target`
    /// (a Part Index past the end of a segment that closed is satisfied by
    /// the first part of a later one). `None` if there is none yet.
    pub fn first_part_from(&self, target: PartRef) -> Option<PartRef> {
        self.listed
            .iter()
            .chain(self.held.iter())
            .chain(self.open.iter())
            .filter(|s| s.msn >= target.msn && !s.parts.is_empty())
            .find_map(|s| {
                let from = if s.msn == target.msn { target.index } else { 0 };
                let index = u32::try_from(s.parts.len()).ok()?;
                (from < index).then_some(PartRef {
                    msn: s.msn,
                    index: from,
                })
            })
    }

    /// The playlist as it stood when `part` was its newest Partial Segment:
    /// the segments before `part`'s, and `part`'s segment with its parts up
    /// to `part`, open, or closed and not listed yet (like a held segment)
    /// if `part` turned out to be its last. Answering a blocking request
    /// with this, and not with whatever came after, adds exactly one part
    /// per reload, so a client never learns of a segment's last part and
    /// of that segment's close in the same reload (hls.js, appending the
    /// part before, can skip the last part of a segment that closes under
    /// it).
    ///
    /// `None` when `part` is the newest part (the window itself is that
    /// playlist), is not in the window, lies before the newest listed
    /// segment (a client that far behind gets the current playlist and
    /// catches up at once), or the window has ended.
    pub fn as_of(&self, part: PartRef) -> Option<LiveWindow> {
        if self.ended || self.last_part() == Some(part) {
            return None;
        }
        let newest_listed = self.listed.len().checked_sub(1);
        let (before, segment, closed) = match self.listed.iter().position(|s| s.msn == part.msn) {
            Some(k) if Some(k) == newest_listed => (k, &self.listed[k], true),
            Some(_) => return None,
            None => match (&self.held, &self.open) {
                (Some(held), _) if held.msn == part.msn => (self.listed.len(), held, true),
                (_, Some(open)) if open.msn == part.msn => (self.listed.len(), open, false),
                _ => return None,
            },
        };
        let keep = usize::try_from(part.index).ok()?.checked_add(1)?;
        if keep > segment.parts.len() {
            return None;
        }
        let mut truncated = segment.clone();
        truncated.parts.truncate(keep);
        truncated.duration = truncated.parts.iter().fold(Time90k::ZERO, |acc, p| {
            Time90k(acc.0.saturating_add(p.duration.0))
        });
        let complete = closed && keep == segment.parts.len();
        let (held, open, next_msn) = if complete {
            (Some(truncated), None, part.msn.saturating_add(1))
        } else {
            (None, Some(truncated), part.msn)
        };
        Some(LiveWindow {
            cfg: self.cfg.clone(),
            listed: self.listed.iter().take(before).cloned().collect(),
            open,
            held,
            next_msn,
            discontinuity_sequence: self.discontinuity_sequence,
            retired: VecDeque::new(),
            clock: self.clock,
            longest_playlist: self.longest_playlist,
            carry_discontinuity: false,
            released: 0..0,
            ended: false,
            segment_ends_next: false,
        })
    }

    /// The packager expects the open segment to close after the part it
    /// has just added (its next frame is due to be the keyframe that starts
    /// a segment): until the next part is added or the segment closes, the
    /// preload hint names the next segment's first part, the part that
    /// will really come next, rather than one this segment will not have.
    pub fn expect_segment_end(&mut self) {
        self.segment_ends_next = self.open.as_ref().is_some_and(|o| !o.parts.is_empty());
    }

    /// The part an `EXT-X-PRELOAD-HINT` names: the next one of the open
    /// segment, or part 0 of the next segment (when there is no open
    /// segment, or the packager expects it to end: see
    /// [`LiveWindow::expect_segment_end`]). `None` once ended.
    pub fn preload_hint(&self) -> Option<PartRef> {
        if self.ended {
            return None;
        }
        Some(match &self.open {
            Some(open) if self.segment_ends_next => PartRef {
                msn: open.msn.saturating_add(1),
                index: 0,
            },
            // Bounded by MAX_PARTS_PER_SEGMENT.
            Some(open) => PartRef {
                msn: open.msn,
                index: open.parts.len() as u32,
            },
            None => PartRef {
                msn: self.next_msn,
                index: 0,
            },
        })
    }

    /// How long a blocking request may be held before giving up (HTTP 503):
    /// three Target Durations.
    pub fn block_timeout(&self) -> Time90k {
        Time90k(self.cfg.target_duration().0.saturating_mul(3))
    }

    /// Whether a request with Delivery Directives `_HLS_msn` /
    /// `_HLS_part` can be answered now (RFC 8216bis §6.2.5.2, recalled):
    ///
    /// - "_HLS_msn=&lt;M&gt;: ... hold the request until a Playlist contains a
    ///   Media Segment with Media Sequence Number of M or later."
    /// - "_HLS_part=&lt;N&gt;: ... until a Playlist contains Partial Segment N of
    ///   Media Sequence Number of M or later." So a Part Index past the end
    ///   of a segment that has since closed is satisfied by any later part,
    ///   such as part 0 of the next segment.
    /// - "If the _HLS_msn is greater than the Media Sequence Number of the
    ///   last Media Segment in the current Playlist plus two, or if the
    ///   _HLS_part exceeds the last Partial Segment in the current Playlist
    ///   by the Advance Part Limit, then the server SHOULD immediately
    ///   return Bad Request, such as HTTP 400. The Advance Part Limit is
    ///   three divided by the Part Target Duration if the Part Target
    ///   Duration is less than one second, or three otherwise."
    ///
    /// An ended playlist will not change, so it answers every request.
    pub fn blocking_status(&self, target: BlockTarget) -> BlockingStatus {
        if self.ended {
            return BlockingStatus::Ready;
        }
        let last_part = self.last_part();
        let ready = match target.part {
            None => self.last_msn().is_some_and(|last| last >= target.msn),
            Some(index) => last_part.is_some_and(|last| {
                last >= PartRef {
                    msn: target.msn,
                    index,
                }
            }),
        };
        if ready {
            return BlockingStatus::Ready;
        }
        // "last Media Segment ... plus two": the last completed segment is
        // `next_msn - 1` (or none yet), so the limit is `next_msn + 1`.
        if target.msn > self.next_msn.saturating_add(1) {
            return BlockingStatus::TooFarAhead;
        }
        if let Some(index) = target.part {
            // How many parts past the newest one the request is. For a later
            // segment the parts still to come in the current one are
            // unknown, so count at least `index + 1`.
            let ahead = match last_part {
                Some(last) if last.msn == target.msn => u64::from(index - last.index.min(index)),
                _ => u64::from(index) + 1,
            };
            if ahead > self.advance_part_limit() {
                return BlockingStatus::TooFarAhead;
            }
        }
        BlockingStatus::Wait
    }

    /// The Advance Part Limit of RFC 8216bis §6.2.5.2, rounded down (parts
    /// are whole, so `ahead > floor(x)` is `ahead > x`).
    fn advance_part_limit(&self) -> u64 {
        let pt = self.cfg.part_target.0;
        if pt < CLOCK_HZ {
            // pt >= 1 ms by construction.
            u64::try_from(3 * CLOCK_HZ / pt.max(1)).unwrap_or(3)
        } else {
            3
        }
    }

    /// Whether Partial Segment `part` can be served: it exists (listed, or
    /// still kept after leaving the playlist), or it is the part the preload
    /// hint names (hold the request), or neither.
    pub fn part_status(&self, part: PartRef) -> ResourceStatus {
        if let Some(segment) = self.find(part.msn)
            && (part.index as usize) < segment.parts.len()
        {
            return ResourceStatus::Available;
        }
        if self.preload_hint() == Some(part) {
            return ResourceStatus::Pending;
        }
        ResourceStatus::NotFound
    }

    /// Whether init section `init{generation}.mp4` is still needed: some
    /// segment that is open, listed or still kept uses it (or will: the
    /// open segment's). The packager may drop init bytes when it is not.
    pub fn init_in_use(&self, generation: u32) -> bool {
        self.open
            .iter()
            .chain(self.held.iter())
            .chain(self.listed.iter())
            .chain(self.retired.iter().map(|r| &r.segment))
            .any(|s| s.init_generation == generation)
    }

    /// Whether Media Segment `msn` can be served: completed and still kept.
    pub fn segment_status(&self, msn: u64) -> ResourceStatus {
        let open = self.open.as_ref().is_some_and(|s| s.msn == msn);
        if !open && self.find(msn).is_some() {
            ResourceStatus::Available
        } else {
            ResourceStatus::NotFound
        }
    }

    fn find(&self, msn: u64) -> Option<&Segment> {
        if let Some(open) = self.open.as_ref().filter(|s| s.msn == msn) {
            return Some(open);
        }
        if let Some(held) = self.held.as_ref().filter(|s| s.msn == msn) {
            return Some(held);
        }
        let in_deque = |first: Option<u64>, len: usize| -> Option<usize> {
            let offset = usize::try_from(msn.checked_sub(first?)?).ok()?;
            (offset < len).then_some(offset)
        };
        if let Some(i) = in_deque(self.listed.front().map(|s| s.msn), self.listed.len()) {
            return self.listed.get(i);
        }
        let first_retired = self.retired.front().map(|r| r.segment.msn);
        in_deque(first_retired, self.retired.len())
            .and_then(|i| self.retired.get(i))
            .map(|r| &r.segment)
    }

    pub(crate) fn listed_duration(&self) -> Time90k {
        self.listed
            .iter()
            .fold(Time90k::ZERO, |acc, s| add(acc, s.duration))
    }

    /// Takes segments off the front of the playlist.
    ///
    /// RFC 8216 §6.2.2: "The server MUST NOT remove a Media Segment from a
    /// Playlist file if the duration of the Playlist file minus the
    /// duration of the segment is less than three times the Target
    /// Duration." And: "If the server removes a Media Segment from the
    /// Playlist that begins with an EXT-X-DISCONTINUITY tag, it MUST
    /// increment the value of the EXT-X-DISCONTINUITY-SEQUENCE tag" (RFC
    /// 8216bis §6.2.2, as recalled).
    /// RFC 8216bis §6.2.2: "The server MUST NOT remove a Media Segment
    /// from a Playlist file if that would cause the duration of the
    /// Playlist file to be less than three times the Target Duration."
    /// The newest listed segment is not counted: a blocking request
    /// answered as of one of its parts ([`LiveWindow::as_of`]) shows it as
    /// parts without its `EXTINF`, and that playlist must keep the three
    /// Target Durations too.
    fn evict(&mut self) {
        let min_duration = self.block_timeout(); // three Target Durations
        let newest = self.listed.back().map_or(Time90k::ZERO, |s| s.duration);
        let mut total = self.listed_duration() - newest;
        while self.listed.len() > self.cfg.window_segments {
            let Some(front) = self.listed.front() else {
                break;
            };
            let over_cap = self.listed.len() > MAX_LISTED_SEGMENTS;
            if !over_cap && total - front.duration < min_duration {
                break;
            }
            total = total - front.duration;
            let Some(segment) = self.listed.pop_front() else {
                break;
            };
            if segment.discontinuity {
                self.discontinuity_sequence = self.discontinuity_sequence.saturating_add(1);
            }
            self.retired.push_back(Retired {
                segment,
                removed_at: self.clock,
            });
        }
    }

    /// Forgets retired segments whose grace period (RFC 8216 §6.2.2, see
    /// [`ClosedSegment::release`]) is over.
    fn release(&mut self) -> Range<u64> {
        let start = self
            .retired
            .front()
            .map_or(self.media_sequence(), |r| r.segment.msn);
        let mut end = start;
        while let Some(r) = self.retired.front() {
            let grace = add(r.segment.duration, self.longest_playlist);
            if self.clock - r.removed_at < grace {
                break;
            }
            end = r.segment.msn.saturating_add(1);
            self.retired.pop_front();
        }
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn ms(ms: i64) -> Time90k {
        Time90k::from_millis(ms)
    }

    fn start(discontinuity: bool, generation: u32) -> SegmentStart {
        SegmentStart {
            program_date_time_ms: 1_700_000_000_000,
            discontinuity,
            init_generation: generation,
        }
    }

    /// 1 s target, 250 ms parts, 4 parts a segment.
    fn window() -> LiveWindow {
        LiveWindow::new(WindowConfig::new(ms(250), 1)).unwrap()
    }

    fn full_segment(w: &mut LiveWindow) -> ClosedSegment {
        w.open_segment(start(false, 0)).unwrap();
        for i in 0..4 {
            w.add_part(ms(250), i == 0).unwrap();
        }
        w.close_segment().unwrap().unwrap()
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(
            LiveWindow::new(WindowConfig::new(ms(250), 0)).err(),
            Some(ConfigError::ZeroTargetDuration)
        );
        assert!(matches!(
            LiveWindow::new(WindowConfig::new(Time90k(0), 1)),
            Err(ConfigError::PartTargetTooShort { .. })
        ));
        assert!(matches!(
            LiveWindow::new(WindowConfig::new(ms(1001), 1)),
            Err(ConfigError::PartTargetTooLong { .. })
        ));
        let mut cfg = WindowConfig::new(ms(250), 1);
        cfg.window_segments = 0;
        assert_eq!(
            LiveWindow::new(cfg).err(),
            Some(ConfigError::WindowSegments(0))
        );
    }

    #[test]
    fn numbering_and_errors() {
        let mut w = window();
        assert_eq!(w.add_part(ms(250), true), Err(WindowError::NoOpenSegment));
        assert_eq!(w.close_segment(), Err(WindowError::NoOpenSegment));
        assert_eq!(w.open_segment(start(false, 0)), Ok(0));
        assert_eq!(
            w.open_segment(start(false, 0)),
            Err(WindowError::SegmentAlreadyOpen { msn: 0 })
        );
        assert_eq!(w.add_part(ms(250), true), Ok(PartRef { msn: 0, index: 0 }));
        assert!(matches!(
            w.add_part(Time90k(0), false),
            Err(WindowError::NonPositiveDuration { .. })
        ));
        // 250.4 ms renders as 250: allowed; 250.6 ms renders 251: refused.
        assert!(w.add_part(Time90k(22_536), false).is_ok());
        assert_eq!(
            w.add_part(Time90k(22_554), false),
            Err(WindowError::PartExceedsTarget {
                part: PartRef { msn: 0, index: 2 },
                part_ms: 251,
                target_ms: 250
            })
        );
        let closed = w.close_segment().unwrap().unwrap();
        assert_eq!(closed.msn, 0);
        assert_eq!(closed.duration, Time90k(22_500 + 22_536));
        assert!(!closed.exceeds_target_duration);
        assert_eq!(w.open_segment(start(false, 0)), Ok(1));
    }

    #[test]
    fn a_successor_resumes_past_both_sequences_after_a_discontinuity() {
        let mut old = window();
        full_segment(&mut old);
        // A discontinuity listed in the old window counts.
        old.open_segment(start(true, 1)).unwrap();
        old.add_part(ms(250), true).unwrap();
        old.close_segment().unwrap();
        full_segment(&mut old);
        let point = old.sequence_point();
        assert_eq!(
            point,
            SequencePoint {
                next_msn: 3,
                discontinuity_sequence: 1
            }
        );
        let mut cfg = WindowConfig::new(ms(250), 1);
        cfg.resume = Some(point);
        let mut new = LiveWindow::new(cfg).unwrap();
        assert_eq!(new.open_segment(start(false, 0)), Ok(3));
        assert!(new.open.as_ref().unwrap().discontinuity, "a new timeline");
        assert_eq!(new.discontinuity_sequence, 1);
        // A fresh window starts at 0 with no discontinuity.
        let mut fresh = window();
        assert_eq!(fresh.open_segment(start(false, 0)), Ok(0));
        assert!(!fresh.open.as_ref().unwrap().discontinuity);
    }

    #[test]
    fn empty_segment_is_withdrawn_and_keeps_its_discontinuity() {
        let mut w = window();
        full_segment(&mut w);
        assert_eq!(w.open_segment(start(true, 1)), Ok(1));
        assert_eq!(w.close_segment(), Ok(None));
        assert_eq!(w.open_segment(start(false, 1)), Ok(1));
        assert!(w.open.as_ref().unwrap().discontinuity);
    }

    #[test]
    fn flags_segments_over_target_duration() {
        let mut w = window();
        w.open_segment(start(false, 0)).unwrap();
        for _ in 0..6 {
            w.add_part(ms(250), false).unwrap(); // 1.5 s rounds to 2 > 1
        }
        assert!(w.close_segment().unwrap().unwrap().exceeds_target_duration);
        w.open_segment(start(false, 0)).unwrap();
        for _ in 0..5 {
            w.add_part(ms(249), false).unwrap(); // 1.245 s rounds to 1
        }
        assert!(!w.close_segment().unwrap().unwrap().exceeds_target_duration);
    }

    #[test]
    fn evicts_counts_discontinuities_and_releases_later() {
        let mut cfg = WindowConfig::new(ms(250), 1);
        cfg.window_segments = 3;
        let mut w = LiveWindow::new(cfg).unwrap();
        // Segment 0 is a discontinuity.
        w.open_segment(start(true, 0)).unwrap();
        w.add_part(ms(250), true).unwrap();
        w.close_segment().unwrap();
        // Segment 0 lasted 250 ms; four more of 1 s each.
        for _ in 0..3 {
            full_segment(&mut w);
        }
        // 4 listed > 3, but without segment 0 and the newest (which a
        // blocking answer may show as parts only) 2 s would remain: kept.
        assert_eq!(w.media_sequence(), 0);
        full_segment(&mut w);
        // 5 listed; 3 s remain without segment 0 and the newest: evicted.
        assert_eq!(w.media_sequence(), 1);
        assert_eq!(w.discontinuity_sequence, 1);
        assert_eq!(w.segment_status(0), ResourceStatus::Available);
        // Retired segment 0 is released once 0.25 s + the longest playlist
        // (5.25 s, counted before eviction) of media time have passed
        // since its removal: 6 more segments.
        for _ in 0..5 {
            full_segment(&mut w);
            assert!(w.take_released().is_empty());
        }
        assert_eq!(w.segment_status(0), ResourceStatus::Available);
        full_segment(&mut w);
        assert_eq!(w.take_released(), 0..1);
        assert!(w.take_released().is_empty(), "taken once");
        assert_eq!(w.segment_status(0), ResourceStatus::NotFound);
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 0 }),
            ResourceStatus::NotFound
        );
        assert_eq!(w.listed.len(), 4);
    }

    /// A blocking request is answered with the playlist exactly as it was
    /// rendered when the part that satisfied it was added (or, for a
    /// segment's last part, once that segment closed): one part per
    /// reload, never a segment's last part and its close together.
    #[test]
    fn a_blocking_request_gets_the_playlist_as_of_the_part_that_satisfied_it() {
        let mut w = window();
        let options = crate::RenderOptions::default();
        let mut then: Vec<(PartRef, String)> = Vec::new();
        let record = |w: &LiveWindow, then: &mut Vec<(PartRef, String)>| {
            then.push((w.last_part().unwrap(), w.render(&options)));
        };
        for _ in 0..4 {
            w.open_segment(start(false, 0)).unwrap();
            for i in 0..4 {
                w.add_part(ms(250), i == 0).unwrap();
                record(&w, &mut then);
            }
            w.close_segment_held().unwrap().unwrap();
            // The last part's playlist: as it stood once its segment closed.
            then.pop();
            record(&w, &mut then);
        }
        w.open_segment(start(false, 0)).unwrap();
        for i in 0..2 {
            w.add_part(ms(250), i == 0).unwrap();
            record(&w, &mut then);
        }
        assert_eq!(w.last_msn(), Some(3));
        let now = w.render(&options);
        for (part, text) in &then {
            let target = BlockTarget {
                msn: part.msn,
                part: Some(part.index),
            };
            assert_eq!(w.blocking_status(target), BlockingStatus::Ready);
            let answer = w.render_for(target, &options);
            if part.msn >= 3 {
                // The newest listed segment and the open one.
                assert_eq!(&answer, text, "as of {part:?}");
            } else {
                // Further behind: the current playlist, to catch up at once.
                assert_eq!(answer, now, "as of {part:?}");
            }
        }
        let text = |msn, index| {
            let part = PartRef { msn, index };
            &then.iter().find(|(p, _)| *p == part).unwrap().1
        };
        // Segment 3's last part: closed but not listed, the hint on the
        // next segment's first part.
        let closing = w.render_for(
            BlockTarget {
                msn: 3,
                part: Some(3),
            },
            &options,
        );
        assert!(!closing.contains("seg3.m4s"), "{closing}");
        assert!(
            closing.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part4.0.m4s\"\n"),
            "{closing}"
        );
        // A Part Index past the end of a closed segment is satisfied by the
        // next segment's first part.
        let past_end = PartRef { msn: 3, index: 4 };
        assert_eq!(
            w.first_part_from(past_end),
            Some(PartRef { msn: 4, index: 0 })
        );
        let answer = w.render_for(
            BlockTarget {
                msn: 3,
                part: Some(4),
            },
            &options,
        );
        assert_eq!(&answer, text(4, 0));
        assert!(answer.contains("seg3.m4s"), "{answer}");
        assert!(
            !answer
                .lines()
                .any(|l| l.starts_with("#EXT-X-PART:") && l.contains("part4.1.m4s")),
            "{answer}"
        );
        assert!(
            answer.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part4.1.m4s\"\n"),
            "{answer}"
        );
        // Without a Part Index, or for the newest part: the playlist now.
        assert_eq!(
            w.render_for(BlockTarget { msn: 3, part: None }, &options),
            now
        );
        assert_eq!(
            w.render_for(
                BlockTarget {
                    msn: 4,
                    part: Some(1)
                },
                &options
            ),
            now
        );
        assert_eq!(w.first_part_from(PartRef { msn: 4, index: 2 }), None);
        // An ended playlist answers everything as it is.
        w.end();
        let ended = w.render(&options);
        assert_eq!(
            w.render_for(
                BlockTarget {
                    msn: 3,
                    part: Some(3)
                },
                &options
            ),
            ended
        );
    }

    /// Segment 0 (four 250 ms parts) closed with `close_segment_held`, then
    /// segment 1 opened.
    fn held_window() -> LiveWindow {
        let mut w = window();
        w.open_segment(start(false, 0)).unwrap();
        for i in 0..4 {
            w.add_part(ms(250), i == 0).unwrap();
        }
        let closed = w.close_segment_held().unwrap().unwrap();
        assert_eq!((closed.msn, closed.duration), (0, ms(1000)));
        w
    }

    #[test]
    fn held_segment_is_listed_with_the_next_segments_first_part() {
        let t = |msn, part| BlockTarget { msn, part };
        let mut w = held_window();
        for opened in [false, true] {
            if opened {
                assert_eq!(w.open_segment(start(false, 0)), Ok(1));
            }
            // Rendered like the open segment: its parts, no EXTINF.
            let text = w.render(&crate::RenderOptions::default());
            assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{text}");
            assert!(text.contains("URI=\"part0.3.m4s\""), "{text}");
            assert!(!text.contains("#EXTINF"), "{text}");
            assert!(
                text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\"\n"),
                "{text}"
            );
            assert_eq!(w.last_msn(), None);
            assert_eq!(w.last_part(), Some(PartRef { msn: 0, index: 3 }));
            // Its bytes are complete; a part past its end will never be.
            assert_eq!(w.segment_status(0), ResourceStatus::Available);
            assert_eq!(
                w.part_status(PartRef { msn: 0, index: 3 }),
                ResourceStatus::Available
            );
            assert_eq!(
                w.part_status(PartRef { msn: 0, index: 4 }),
                ResourceStatus::NotFound
            );
            assert_eq!(
                w.part_status(PartRef { msn: 1, index: 0 }),
                ResourceStatus::Pending
            );
            // Requests for it, or past its last part, wait for part 1.0.
            assert_eq!(w.blocking_status(t(0, None)), BlockingStatus::Wait);
            assert_eq!(w.blocking_status(t(0, Some(4))), BlockingStatus::Wait);
            assert_eq!(w.blocking_status(t(1, Some(0))), BlockingStatus::Wait);
            assert_eq!(w.blocking_status(t(0, Some(3))), BlockingStatus::Ready);
        }
        w.add_part(ms(250), true).unwrap();
        let text = w.render(&crate::RenderOptions::default());
        assert!(
            text.contains("#EXTINF:1.000,\nseg0.m4s\n#EXT-X-PROGRAM-DATE-TIME:"),
            "{text}"
        );
        assert!(
            text.contains("URI=\"part1.0.m4s\",INDEPENDENT=YES\n"),
            "{text}"
        );
        assert_eq!(w.last_msn(), Some(0));
        for target in [t(0, None), t(0, Some(4)), t(1, Some(0))] {
            assert_eq!(
                w.blocking_status(target),
                BlockingStatus::Ready,
                "{target:?}"
            );
        }
    }

    #[test]
    fn held_segment_is_listed_when_the_stream_breaks_off_or_ends() {
        // The next segment withdrawn empty (the publisher left): listed.
        let mut w = held_window();
        w.open_segment(start(false, 0)).unwrap();
        assert_eq!(w.close_segment(), Ok(None));
        assert_eq!(w.last_msn(), Some(0));
        assert!(w.held.is_none());

        // No next segment at all: listed on request.
        let mut w = held_window();
        w.list_held();
        assert_eq!(w.last_msn(), Some(0));

        // A gap segment comes after it.
        let mut w = held_window();
        assert_eq!(w.add_gap_segment(start(false, 0), ms(1000)), Ok(1));
        assert_eq!(w.listed.iter().map(|s| s.msn).collect::<Vec<_>>(), [0, 1]);

        // The end lists it before EXT-X-ENDLIST.
        let mut w = held_window();
        w.open_segment(start(false, 0)).unwrap();
        assert_eq!(w.end(), None);
        let text = w.render(&crate::RenderOptions::default());
        assert!(text.ends_with("seg0.m4s\n#EXT-X-ENDLIST\n"), "{text}");

        // A held close of an empty segment keeps the held one held.
        let mut w = held_window();
        w.open_segment(start(false, 0)).unwrap();
        assert_eq!(w.close_segment_held(), Ok(None));
        assert_eq!(w.held.as_ref().map(|s| s.msn), Some(0));
        assert_eq!(w.skip_to(5), Err(WindowError::NotFresh));
    }

    #[test]
    fn keeps_three_target_durations_listed() {
        // RFC 8216 §6.2.2: short segments stay until 3 TD remain without them.
        let mut cfg = WindowConfig::new(ms(250), 1);
        cfg.window_segments = 2;
        let mut w = LiveWindow::new(cfg).unwrap();
        for _ in 0..20 {
            w.open_segment(start(false, 0)).unwrap();
            w.add_part(ms(250), true).unwrap();
            w.add_part(ms(250), false).unwrap();
            w.close_segment().unwrap();
        }
        // 0.5 s each: six besides the newest are 3 s, and removing one
        // more would leave less.
        assert_eq!(w.listed.len(), 7);
        let newest = w.listed.back().map(|s| s.duration).unwrap();
        assert_eq!(w.listed_duration() - newest, w.block_timeout());
        assert_eq!(w.media_sequence(), 13);
    }

    #[test]
    fn blocking_transitions() {
        let mut w = window(); // 250 ms parts: advance part limit 12
        let t = |msn, part| BlockTarget { msn, part };
        // Empty window: segment 0 / part 0.0 are coming; 2 is too far.
        assert_eq!(w.blocking_status(t(0, None)), BlockingStatus::Wait);
        assert_eq!(w.blocking_status(t(0, Some(0))), BlockingStatus::Wait);
        assert_eq!(w.blocking_status(t(1, None)), BlockingStatus::Wait);
        assert_eq!(w.blocking_status(t(2, None)), BlockingStatus::TooFarAhead);

        w.open_segment(start(false, 0)).unwrap();
        w.add_part(ms(250), true).unwrap();
        assert_eq!(w.blocking_status(t(0, Some(0))), BlockingStatus::Ready);
        assert_eq!(w.blocking_status(t(0, Some(1))), BlockingStatus::Wait);
        assert_eq!(w.blocking_status(t(0, None)), BlockingStatus::Wait);
        // Advance Part Limit: 3 / 0.25 = 12 parts past the last one.
        assert_eq!(w.blocking_status(t(0, Some(12))), BlockingStatus::Wait);
        assert_eq!(
            w.blocking_status(t(0, Some(13))),
            BlockingStatus::TooFarAhead
        );
        assert_eq!(w.blocking_status(t(1, Some(11))), BlockingStatus::Wait);
        assert_eq!(
            w.blocking_status(t(1, Some(12))),
            BlockingStatus::TooFarAhead
        );

        for _ in 0..3 {
            w.add_part(ms(250), false).unwrap();
        }
        w.close_segment().unwrap();
        assert_eq!(w.blocking_status(t(0, None)), BlockingStatus::Ready);
        // Segment 0 closed with parts 0..=3: part 4 of it waits for any
        // later part, i.e. part 0 of segment 1.
        assert_eq!(w.blocking_status(t(0, Some(4))), BlockingStatus::Wait);
        assert_eq!(w.blocking_status(t(2, None)), BlockingStatus::Wait);
        assert_eq!(w.blocking_status(t(3, None)), BlockingStatus::TooFarAhead);
        w.open_segment(start(false, 0)).unwrap();
        w.add_part(ms(250), true).unwrap();
        assert_eq!(w.blocking_status(t(0, Some(4))), BlockingStatus::Ready);
        assert_eq!(w.blocking_status(t(1, Some(0))), BlockingStatus::Ready);
        assert_eq!(w.blocking_status(t(1, None)), BlockingStatus::Wait);
        // Old requests are answered at once.
        assert_eq!(w.blocking_status(t(0, Some(0))), BlockingStatus::Ready);

        w.end();
        assert_eq!(w.blocking_status(t(9, Some(9))), BlockingStatus::Ready);
    }

    #[test]
    fn advance_part_limit_for_long_parts_is_three() {
        let w = LiveWindow::new(WindowConfig::new(ms(1000), 4)).unwrap();
        assert_eq!(w.advance_part_limit(), 3);
        let w = LiveWindow::new(WindowConfig::new(Time90k(30_000), 4)).unwrap();
        assert_eq!(w.advance_part_limit(), 9); // 3 / 0.3333 = 9.0
    }

    #[test]
    fn an_expected_segment_end_hints_the_next_segments_first_part() {
        let mut w = window();
        w.expect_segment_end();
        assert_eq!(
            w.preload_hint(),
            Some(PartRef { msn: 0, index: 0 }),
            "nothing to end yet"
        );
        w.open_segment(start(false, 0)).unwrap();
        w.add_part(ms(250), true).unwrap();
        w.expect_segment_end();
        let next = PartRef { msn: 1, index: 0 };
        assert_eq!(w.preload_hint(), Some(next));
        assert_eq!(w.part_status(next), ResourceStatus::Pending);
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 1 }),
            ResourceStatus::NotFound
        );
        let text = w.render(&crate::RenderOptions::default());
        assert!(
            text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\"\n"),
            "{text}"
        );
        // The guess was wrong: another part came, and the hint follows it.
        w.add_part(ms(250), false).unwrap();
        assert_eq!(w.preload_hint(), Some(PartRef { msn: 0, index: 2 }));
        // Right this time: the hint stays on part 1.0 through the close.
        w.expect_segment_end();
        w.close_segment_held().unwrap();
        assert_eq!(w.preload_hint(), Some(next));
        w.open_segment(start(false, 1)).unwrap();
        assert_eq!(w.preload_hint(), Some(next));
    }

    #[test]
    fn part_status_and_preload_hint() {
        let mut w = window();
        assert_eq!(w.preload_hint(), Some(PartRef { msn: 0, index: 0 }));
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 0 }),
            ResourceStatus::Pending
        );
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 1 }),
            ResourceStatus::NotFound
        );
        w.open_segment(start(false, 0)).unwrap();
        w.add_part(ms(250), true).unwrap();
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 0 }),
            ResourceStatus::Available
        );
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 1 }),
            ResourceStatus::Pending
        );
        assert_eq!(w.segment_status(0), ResourceStatus::NotFound);
        w.close_segment().unwrap();
        // The hinted part 0.1 will never exist now.
        assert_eq!(
            w.part_status(PartRef { msn: 0, index: 1 }),
            ResourceStatus::NotFound
        );
        assert_eq!(
            w.part_status(PartRef { msn: 1, index: 0 }),
            ResourceStatus::Pending
        );
        assert_eq!(w.segment_status(0), ResourceStatus::Available);
        assert_eq!(w.last_part(), Some(PartRef { msn: 0, index: 0 }));
        w.end();
        assert_eq!(w.preload_hint(), None);
        assert_eq!(
            w.part_status(PartRef { msn: 1, index: 0 }),
            ResourceStatus::NotFound
        );
    }

    #[test]
    fn init_generations_in_use() {
        let mut cfg = WindowConfig::new(ms(250), 1);
        cfg.window_segments = 1;
        let mut w = LiveWindow::new(cfg).unwrap();
        assert!(!w.init_in_use(0));
        full_segment(&mut w);
        assert!(w.init_in_use(0));
        w.open_segment(start(true, 1)).unwrap();
        assert!(w.init_in_use(1));
        for i in 0..4 {
            w.add_part(ms(250), i == 0).unwrap();
        }
        w.close_segment().unwrap();
        // Segment 0 retired but still kept: generation 0 still in use.
        assert!(w.init_in_use(0));
        for _ in 0..12 {
            w.open_segment(start(false, 1)).unwrap();
            for i in 0..4 {
                w.add_part(ms(250), i == 0).unwrap();
            }
            w.close_segment().unwrap();
        }
        assert!(!w.init_in_use(0));
        assert!(w.init_in_use(1));
    }

    #[test]
    fn end_closes_open_segment_and_refuses_more() {
        let mut w = window();
        w.open_segment(start(false, 0)).unwrap();
        w.add_part(ms(250), true).unwrap();
        let closed = w.end().unwrap();
        assert_eq!(closed.msn, 0);
        assert!(w.is_ended());
        assert_eq!(w.end(), None);
        assert_eq!(w.open_segment(start(false, 0)), Err(WindowError::Ended));
        assert_eq!(w.add_part(ms(250), true), Err(WindowError::Ended));
        assert_eq!(w.close_segment(), Err(WindowError::Ended));
        assert_eq!(w.last_msn(), Some(0));
    }

    #[test]
    fn skip_to_only_forward_and_only_when_fresh() {
        let mut w = window();
        assert_eq!(w.skip_to(7), Ok(()));
        assert_eq!(w.media_sequence(), 7);
        assert_eq!(
            w.skip_to(3),
            Err(WindowError::SkipBackwards {
                requested: 3,
                next: 7
            })
        );
        assert_eq!(w.open_segment(start(false, 0)), Ok(7));
        assert_eq!(w.skip_to(9), Err(WindowError::NotFresh));
        w.add_part(ms(250), true).unwrap();
        w.close_segment().unwrap();
        assert_eq!(w.skip_to(9), Err(WindowError::NotFresh));
    }

    #[test]
    fn gap_segments_keep_numbers_and_render_ext_x_gap() {
        let mut w = window();
        full_segment(&mut w);
        assert_eq!(w.add_gap_segment(start(true, 0), ms(1000)), Ok(1));
        assert_eq!(w.add_gap_segment(start(false, 0), ms(1000)), Ok(2));
        assert!(matches!(
            w.add_gap_segment(start(false, 0), Time90k(0)),
            Err(WindowError::NonPositiveDuration { .. })
        ));
        assert_eq!(w.open_segment(start(false, 0)), Ok(3));
        assert_eq!(
            w.add_gap_segment(start(false, 0), ms(1000)),
            Err(WindowError::NotFresh)
        );
        w.add_part(ms(250), true).unwrap();
        let text = w.render(&crate::RenderOptions::default());
        assert!(
            text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:")
                && text.contains("#EXT-X-GAP\n#EXTINF:1.000,\nseg1.m4s\n#EXT-X-PROGRAM-DATE-TIME:")
                && text.contains("#EXT-X-GAP\n#EXTINF:1.000,\nseg2.m4s\n"),
            "{text}"
        );
        assert_eq!(text.matches("#EXT-X-GAP").count(), 2);
        assert_eq!(
            w.part_status(PartRef { msn: 1, index: 0 }),
            ResourceStatus::NotFound
        );
    }

    #[test]
    fn first_msn_is_honoured_and_exhaustion_is_an_error() {
        let mut cfg = WindowConfig::new(ms(250), 1);
        cfg.first_msn = u64::MAX;
        let mut w = LiveWindow::new(cfg).unwrap();
        assert_eq!(w.media_sequence(), u64::MAX);
        assert_eq!(w.open_segment(start(false, 0)), Ok(u64::MAX));
        w.add_part(ms(250), true).unwrap();
        assert_eq!(w.close_segment(), Err(WindowError::MsnExhausted));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Open {
            discontinuity: bool,
            generation: u32,
        },
        Part {
            ms: i64,
            independent: bool,
        },
        Close,
        CloseHeld,
        End,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), 0u32..3).prop_map(|(discontinuity, generation)| Op::Open { discontinuity, generation }),
            12 => (-5i64..300, any::<bool>()).prop_map(|(ms, independent)| Op::Part { ms, independent }),
            2 => Just(Op::Close),
            2 => Just(Op::CloseHeld),
            1 => Just(Op::End),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(op(), 0..400), window_segments in 1usize..8) {
            let mut cfg = WindowConfig::new(ms(250), 1);
            cfg.window_segments = window_segments;
            let mut w = LiveWindow::new(cfg).unwrap();
            let mut last_closed: Option<u64> = None;
            let mut released_up_to = 0u64;
            for op in ops {
                match op {
                    Op::Open { discontinuity, generation } => {
                        let _ = w.open_segment(start(discontinuity, generation));
                    }
                    Op::Part { ms: d, independent } => {
                        let before = w.open.as_ref().map(|s| s.parts.len());
                        if let Ok(part) = w.add_part(ms(d), independent) {
                            prop_assert_eq!(Some(part.index as usize), before);
                        }
                    }
                    Op::Close | Op::CloseHeld | Op::End => {
                        let closed = match op {
                            Op::Close => w.close_segment().ok().flatten(),
                            Op::CloseHeld => w.close_segment_held().ok().flatten(),
                            _ => w.end(),
                        };
                        if let Some(c) = closed {
                            // msn strictly increasing, no gaps.
                            if let Some(prev) = last_closed {
                                prop_assert_eq!(c.msn, prev + 1);
                            }
                            last_closed = Some(c.msn);
                        }
                    }
                }
                // Released ranges are contiguous and in order.
                let released = w.take_released();
                if !released.is_empty() {
                    prop_assert!(released.start >= released_up_to);
                    released_up_to = released.end;
                }
                // A held segment: the newest completed one, the open
                // segment (if any) has no parts yet, nothing after an end.
                if let Some(held) = &w.held {
                    prop_assert_eq!(Some(held.msn), last_closed);
                    prop_assert!(w.open.as_ref().is_none_or(|o| o.parts.is_empty()));
                    prop_assert!(!w.ended);
                }
                // Every segment: duration = sum of its parts, at least one
                // part (except the open one), consecutive msns.
                let mut prev: Option<u64> = None;
                for s in w.listed.iter().chain(w.held.iter()).chain(w.open.iter()) {
                    let sum = s.parts.iter().fold(Time90k::ZERO, |a, p| a + p.duration);
                    prop_assert_eq!(s.duration, sum);
                    prop_assert!(s.parts.iter().all(|p| p.duration.0 > 0));
                    if let Some(p) = prev {
                        prop_assert_eq!(s.msn, p + 1);
                    }
                    prev = Some(s.msn);
                }
                prop_assert!(w.listed.iter().all(|s| !s.parts.is_empty()));
                prop_assert!(w.listed.len() <= MAX_LISTED_SEGMENTS);
                // Eviction only when the rest, the newest not counted,
                // lasts 3 TD or more.
                if w.listed.len() > window_segments {
                    let first = w.listed[0].duration;
                    let newest = w.listed.back().map_or(Time90k::ZERO, |s| s.duration);
                    prop_assert!(w.listed_duration() - first - newest < w.block_timeout());
                }
                let text = w.render(&crate::RenderOptions::default());
                prop_assert!(text.starts_with("#EXTM3U\n"));
            }
        }
    }
}
