//! The sans-IO heart of the packager: bus messages in, CMAF chunks, parts,
//! segments and LL-HLS window updates out.
//!
//! One video frame (or, for audio-only streams, one audio frame) becomes one
//! CMAF chunk (`moof` + `mdat`) as soon as it arrives, carrying the audio
//! frames that start within the video frame's media time (audio is placed
//! by decode time, not by arrival: [`crate::audio_queue`]). Chunks are
//! appended to the open part, so a player that asked for that part early
//! (its preload hint) receives them as they are written. A part closes as
//! soon as one more frame would take it past the part target, which is
//! known from the frame just added and the frame interval, without waiting
//! for the next frame; in a stream with audio, once the audio up to the
//! part's end has come too (or the next video frame has), so that a part
//! and a segment carry the audio of their own media time, to within one
//! audio frame. A
//! segment closes when a keyframe arrives after at least `segment_min`, or
//! before it would exceed the target duration; it joins the playlist
//! together with the next segment's first part (see
//! [`LiveWindow::close_segment_held`] for why), or at once when the stream
//! breaks off or ends.
//!
//! With the audio in a rendition of its own (`hls.audio = "separate"`),
//! the video renditions' assemblers leave it out ([`TrackSet::WithoutAudio`])
//! and one more assembler packages only the audio
//! ([`TrackSet::AudioBesideVideo`]): it never starts the timeline or
//! decides a cut, but holds each audio frame until the video it follows
//! (the source rendition, its leader in [`crate::alignment`]) has got past
//! it, then starts a segment with the frame nearest each of the leader's
//! segment starts, numbered as the leader numbered it, and a part with the
//! frame nearest each of its part ends: audio parts are the video's to
//! within one audio frame ([`AUDIO_PART_SLACK`]). Video parts never wait
//! for audio.
//!
//! Timeline: output decode times start at zero at the first keyframe and
//! stay continuous across publisher reconnects (marked with
//! EXT-X-DISCONTINUITY). Video uses a 90 kHz timescale, audio its sample
//! rate; audio decode times advance by exactly each frame's duration in
//! samples (1024 per AAC frame, what the TOC byte says per Opus packet) and
//! are re-anchored only when the source jumps by more than two frames.

use std::sync::Arc;

use bytes::Bytes;
use ferrocast_cmaf::{Sample, TrackFragment};
use ferrocast_hls::{ConfigError, LiveWindow, SegmentStart, WindowConfig};
use ferrocast_media::{AccessUnit, Time90k, TrackInfo, TrackKind};
use tracing::{debug, warn};

use crate::alignment::{self, Alignment, Break, Cut, Member, SharedAlignment};
use crate::audio_queue::AudioQueue;
use crate::media_store::MediaStore;
use crate::recording::{Recorded, RecordedSegment};

/// Timing rules for cutting parts and segments.
#[derive(Debug, Clone)]
pub struct CutConfig {
    /// Part target duration.
    pub part_target: Time90k,
    /// A segment closes at the first keyframe after this long.
    pub segment_min: Time90k,
    /// A segment never exceeds this (the playlist's target duration).
    pub segment_max: Time90k,
}

/// A part may exceed its target by less than half a millisecond, which
/// disappears when durations are written with millisecond precision
/// (29.97 fps: 6 frames are 200.2 ms for a 200 ms target).
const PART_TOLERANCE: Time90k = Time90k(44);

/// A forward step in video decode time larger than this is a timestamp
/// jump, not a frame interval (the longest sensible frame interval, 1 fps).
const MAX_FORWARD_STEP: Time90k = Time90k::from_millis(1000);

/// A backward step in video decode time of at least this much is a jump;
/// smaller ones are bad frames and are dropped.
const MAX_BACKWARD_STEP: Time90k = Time90k::from_millis(500);

/// Frame interval assumed for the first frame when the SPS has no timing.
const DEFAULT_FRAME: Time90k = Time90k(3000);

/// How far behind its video the audio may be for a part whose video is
/// complete to wait for it (only until the next video frame, at most).
/// Audio further behind is not waited for: it joins later chunks.
const AUDIO_PATIENCE: Time90k = Time90k::from_millis(500);

/// Audio beside the video is held at most this long for the video to get
/// past it; after that it is placed by its own rule (the video stopped).
const FOLLOW_PATIENCE: Time90k = Time90k::from_millis(2000);

/// How much longer than the video's part target the parts of the audio
/// beside the video may be, and its playlist's `PART-TARGET` is. An audio
/// part ends at the audio frame boundary nearest the end of the leading
/// video part, so it is up to one audio frame longer: 21.3 ms for AAC at
/// 48 kHz, 23.2 ms at 44.1 kHz, 20 ms for Opus' usual frames. (Holding the
/// audio to the video's target instead makes every part one frame short,
/// and the shortfall piles up into a segment's last part: one or two
/// frames, which players reload rather than play past.)
pub const AUDIO_PART_SLACK: Time90k = Time90k::from_millis(25);

/// Which of a stream's tracks an assembler packages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrackSet {
    /// Every track, the audio muxed beside the video in each chunk.
    #[default]
    Muxed,
    /// The video; the audio only in a stream without video (it has nowhere
    /// else to go).
    WithoutAudio,
    /// The audio of a stream that has video too (nothing otherwise), its
    /// segments starting where the video's do on the shared timeline.
    AudioBesideVideo,
}

impl TrackSet {
    /// The tracks of `tracks` this set packages, in their order.
    fn select(self, tracks: &Arc<[TrackInfo]>) -> Arc<[TrackInfo]> {
        let has_video = tracks.iter().any(|t| t.kind() == TrackKind::Video);
        let keep = |t: &TrackInfo| match self {
            TrackSet::Muxed => true,
            TrackSet::WithoutAudio => !has_video || t.kind() != TrackKind::Audio,
            TrackSet::AudioBesideVideo => has_video && t.kind() == TrackKind::Audio,
        };
        if tracks.iter().all(keep) {
            return tracks.clone();
        }
        tracks.iter().filter(|t| keep(t)).cloned().collect()
    }
}

/// Most audio frames beside the video kept before the video starts (about
/// 10 s of 48 kHz AAC).
const MAX_EARLY_FRAMES: usize = 512;

/// Where audio beside the video stands against the video's segments.
#[derive(Debug, Default)]
struct Following {
    /// Audio that came before the video (re)started the timeline, in
    /// source time: placed once it has, if it plays after the video's
    /// first keyframe.
    early: std::collections::VecDeque<AccessUnit>,
    /// Count of timeline starts seen at the last break: the audio waits
    /// for a video rendition to start again after it.
    since: u64,
    /// Time of the video boundary the open segment started at.
    boundary: Option<Time90k>,
    /// The middle of the open part's first frame: a leading video part
    /// that ends after it ends this part too.
    part_from: Time90k,
    /// Duration of the last audio frame placed.
    frame: Time90k,
}

/// When a segment closed by the packager joins the playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// At once: the stream breaks off or ends here.
    Now,
    /// With the next segment's first part, which starts now
    /// ([`LiveWindow::close_segment_held`] says why).
    WithNextPart,
}

/// What changed after a call, so the caller knows whom to wake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// A chunk was appended to a part.
    pub chunk: bool,
    /// A part, segment or playlist state changed.
    pub playlist: bool,
}

impl Changes {
    fn merge(&mut self, other: Changes) {
        self.chunk |= other.chunk;
        self.playlist |= other.playlist;
    }
}

/// Per-track output layout for the current init segment.
#[derive(Debug, Clone)]
struct Layout {
    tracks: Arc<[TrackInfo]>,
    video: Option<TrackSlot>,
    audio: Option<TrackSlot>,
}

#[derive(Debug, Clone)]
struct TrackSlot {
    /// Index into `tracks`.
    index: usize,
    /// mp4 track id.
    mp4_id: u32,
    /// CMAF timescale.
    timescale: u32,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    start: Time90k,
    /// End of the last sample written (start + duration so far).
    end: Time90k,
    part: Option<OpenPart>,
}

#[derive(Debug)]
struct OpenPart {
    start: Time90k,
    independent: bool,
    /// All its video is written; it stays open only until the audio of the
    /// same media time has come.
    video_complete: bool,
}

/// When the video's keyframes come, once they come at a steady interval
/// (a transcoder's rungs, most encoders' fixed GOP).
#[derive(Debug, Clone, Copy, Default)]
struct KeyframeCadence {
    last: Option<Time90k>,
    interval: Option<Time90k>,
    steady: bool,
}

impl KeyframeCadence {
    /// A keyframe at `dts`; two equal intervals in a row (to within
    /// `slack`) make the cadence steady.
    fn keyframe(&mut self, dts: Time90k, slack: Time90k) {
        if let Some(last) = self.last {
            let interval = dts - last;
            self.steady = self
                .interval
                .is_some_and(|i| (i - interval).ticks().abs() <= slack.ticks());
            self.interval = Some(interval);
        }
        self.last = Some(dts);
    }

    /// Whether a frame starting at `dts` is due to be a keyframe.
    fn due_at(&self, dts: Time90k, slack: Time90k) -> bool {
        match (self.steady, self.last, self.interval) {
            (true, Some(last), Some(interval)) => {
                (last + interval - dts).ticks().abs() <= slack.ticks()
            }
            _ => false,
        }
    }
}

/// What drives a chunk: a video frame, or (in a stream without video) an
/// audio frame at its decode time in the audio timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Video,
    Audio { tfdt: i64 },
}

/// Bitrate measurements for the multivariant playlist.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bitrate {
    /// Peak segment bitrate in bits per second.
    pub peak: u64,
    /// Average over all complete segments, bits per second.
    pub average: u64,
    bytes: u64,
    duration: Time90k,
}

impl Bitrate {
    fn add(&mut self, bytes: usize, duration: Time90k) {
        if duration.ticks() <= 0 {
            return;
        }
        let bps = bits_per_second(bytes as u64, duration);
        self.peak = self.peak.max(bps);
        self.bytes += bytes as u64;
        self.duration = self.duration + duration;
        self.average = bits_per_second(self.bytes, self.duration);
    }
}

fn bits_per_second(bytes: u64, duration: Time90k) -> u64 {
    let ticks = duration.ticks().max(1) as u128;
    (u128::from(bytes) * 8 * 90_000 / ticks) as u64
}

fn half(t: Time90k) -> Time90k {
    Time90k(t.ticks() / 2)
}

/// Packages one stream.
#[derive(Debug)]
pub struct Assembler {
    cut: CutConfig,
    /// The LL-HLS window (playlist state).
    pub window: LiveWindow,
    /// The bytes.
    pub store: MediaStore,
    layout: Option<Layout>,
    generation: u32,
    started: bool,
    /// Output time = source time + offset.
    offset: Option<i64>,
    /// End of the output timeline so far.
    timeline_end: Time90k,
    pending_discontinuity: bool,
    last_video_dts: Option<Time90k>,
    frame_interval: Time90k,
    keyframes: KeyframeCadence,
    audio: AudioQueue,
    sequence: u32,
    segment: Option<OpenSegment>,
    /// Program date time anchor: (output time, unix ms).
    pdt_anchor: Option<(Time90k, i64)>,
    bitrate: Bitrate,
    partial_bytes: u64,
    partial_duration: Time90k,
    ended: bool,
    discontinuities: u64,
    /// The timeline shared with the stream's other renditions.
    align: SharedAlignment,
    member: Member,
    /// Why the timeline last broke (`None` before the first start).
    last_break: Option<Break>,
    /// Collect [`Recorded`] items for a recorder.
    recording: bool,
    /// Collected since [`Assembler::take_recorded`] was last called.
    recorded: Vec<Recorded>,
    /// Which tracks it packages.
    track_set: TrackSet,
    /// With [`TrackSet::AudioBesideVideo`]: the video it follows.
    following: Following,
}

impl Assembler {
    /// A packager for a new stream with a single rendition.
    pub fn new(cut: CutConfig, window: WindowConfig) -> Result<Self, ConfigError> {
        Assembler::with_alignment(cut, window, Alignment::shared())
    }

    /// A packager for one rendition of a stream, sharing `align` with the
    /// stream's other renditions (see [`crate::alignment`]).
    pub fn with_alignment(
        cut: CutConfig,
        window: WindowConfig,
        align: SharedAlignment,
    ) -> Result<Self, ConfigError> {
        Assembler::with_tracks(cut, window, align, TrackSet::Muxed)
    }

    /// [`with_alignment`](Self::with_alignment), packaging only `track_set`.
    /// Audio beside the video is not a member of the alignment: it starts
    /// no epoch and decides no cut, and its part target is longer by
    /// [`AUDIO_PART_SLACK`].
    pub fn with_tracks(
        mut cut: CutConfig,
        mut window: WindowConfig,
        align: SharedAlignment,
        track_set: TrackSet,
    ) -> Result<Self, ConfigError> {
        if track_set == TrackSet::AudioBesideVideo {
            cut.part_target = cut.part_target + AUDIO_PART_SLACK;
            window.part_target = window.part_target + AUDIO_PART_SLACK;
        }
        let window = LiveWindow::new(window)?;
        let member = if track_set == TrackSet::AudioBesideVideo {
            Member::default()
        } else {
            alignment::lock(&align).join()
        };
        Ok(Assembler {
            cut,
            window,
            store: MediaStore::default(),
            layout: None,
            generation: 0,
            started: false,
            offset: None,
            timeline_end: Time90k::ZERO,
            pending_discontinuity: false,
            last_video_dts: None,
            frame_interval: DEFAULT_FRAME,
            keyframes: KeyframeCadence::default(),
            audio: AudioQueue::default(),
            sequence: 1,
            segment: None,
            pdt_anchor: None,
            bitrate: Bitrate::default(),
            partial_bytes: 0,
            partial_duration: Time90k::ZERO,
            ended: false,
            discontinuities: 0,
            align,
            member,
            last_break: None,
            recording: false,
            recorded: Vec::new(),
            track_set,
            following: Following::default(),
        })
    }

    /// Which tracks it packages.
    pub fn track_set(&self) -> TrackSet {
        self.track_set
    }

    /// Whether to collect init segments, closed segments and the end for a
    /// recorder ([`Assembler::take_recorded`]); off by default. Set it
    /// before the first tracks arrive.
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
        if !on {
            self.recorded.clear();
        }
    }

    /// What was collected for the recorder since the last call, in order.
    pub fn take_recorded(&mut self) -> Vec<Recorded> {
        std::mem::take(&mut self.recorded)
    }

    /// Makes this rendition the one whose segments and parts the audio
    /// beside the video follows: the rendition packaged with it.
    pub fn lead_audio(&self) {
        alignment::lock(&self.align).lead(&self.member);
    }

    /// The timeline this rendition shares with the stream's others.
    pub fn alignment(&self) -> &SharedAlignment {
        &self.align
    }

    /// The current track set, once known.
    pub fn tracks(&self) -> Option<&Arc<[TrackInfo]>> {
        self.layout.as_ref().map(|l| &l.tracks)
    }

    /// The current init segment generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Measured bitrate; before the first segment completes, an estimate
    /// from the parts written so far.
    pub fn bitrate(&self) -> Bitrate {
        if self.bitrate.peak > 0 {
            self.bitrate
        } else {
            let bps = bits_per_second(self.partial_bytes, self.partial_duration);
            Bitrate {
                peak: bps,
                average: bps,
                ..Bitrate::default()
            }
        }
    }

    /// Timestamp jumps turned into discontinuities so far.
    pub fn timestamp_jumps(&self) -> u64 {
        self.discontinuities
    }

    /// Media Sequence Number of the segment being written, if one is open.
    pub fn open_msn(&self) -> Option<u64> {
        self.segment.as_ref().map(|s| s.msn)
    }

    /// True once EXT-X-ENDLIST has been written.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// A new track set from the publisher.
    pub fn on_tracks(&mut self, tracks: Arc<[TrackInfo]>) -> Changes {
        if self.ended {
            return Changes::default();
        }
        let tracks = self.track_set.select(&tracks);
        if tracks.is_empty() || self.layout.as_ref().is_some_and(|l| l.tracks == tracks) {
            return Changes::default();
        }
        let mut changes = Changes::default();
        if self.layout.is_some() {
            // New codec parameters: new init segment, new timeline piece.
            changes.merge(self.break_timeline(Break::Publisher));
            self.generation += 1;
        }
        let slot = |kind: TrackKind| {
            let index = tracks.iter().position(|t| t.kind() == kind)?;
            Some(TrackSlot {
                index,
                mp4_id: index as u32 + 1,
                timescale: ferrocast_cmaf::track_timescale(&tracks[index]).ok()?,
            })
        };
        let layout = Layout {
            video: slot(TrackKind::Video),
            audio: slot(TrackKind::Audio),
            tracks: tracks.clone(),
        };
        if let Some(video) = &layout.video
            && let Some((num, den)) = tracks[video.index].params.frame_rate()
            && num > 0
            && den > 0
        {
            self.frame_interval = Time90k((90_000 * i64::from(den) / i64::from(num)).max(1));
        }
        match ferrocast_cmaf::write_init(&tracks) {
            Ok(init) => {
                if self.recording {
                    self.recorded.push(Recorded::Init {
                        generation: self.generation,
                        tracks: tracks.clone(),
                        bytes: init.clone(),
                    });
                }
                self.store.put_init(self.generation, init);
            }
            Err(e) => warn!(error = %e, "cannot write init segment; stream not packaged"),
        }
        self.layout = Some(layout);
        changes.playlist = true;
        changes
    }

    /// The publisher reconnected, or this subscriber lost media: close what
    /// is open and continue after a discontinuity.
    pub fn on_discontinuity(&mut self) -> Changes {
        if self.ended {
            return Changes::default();
        }
        self.break_timeline(Break::Publisher)
    }

    /// This subscriber lost media (the bus dropped whole GOPs for it), but
    /// the source clock goes on: close what is open and continue after a
    /// discontinuity. With sibling renditions, the shared offset is kept so
    /// the lost time stays a hole and later segments stay aligned.
    pub fn on_gap(&mut self) -> Changes {
        if self.ended {
            return Changes::default();
        }
        self.break_timeline(Break::Gap)
    }

    /// The publisher left: finish the open part and segment so that every
    /// frame received is servable.
    pub fn on_publisher_gone(&mut self) -> Changes {
        if self.ended {
            return Changes::default();
        }
        self.break_timeline(Break::Publisher)
    }

    /// The stream is over: EXT-X-ENDLIST.
    pub fn on_end(&mut self) -> Changes {
        if self.ended {
            return Changes::default();
        }
        let mut changes = self.close_segment(Listing::Now);
        self.window.end();
        self.ended = true;
        if self.recording {
            self.recorded.push(Recorded::End);
        }
        if self.track_set != TrackSet::AudioBesideVideo {
            alignment::lock(&self.align).leave(&self.member);
        }
        self.release_unused_inits();
        changes.playlist = true;
        changes
    }

    /// One access unit. `now_unix_ms` is the wall clock, for program date time.
    pub fn on_unit(&mut self, unit: &AccessUnit, now_unix_ms: i64) -> Changes {
        if self.ended {
            return Changes::default();
        }
        let Some(layout) = &self.layout else {
            return Changes::default();
        };
        let has_video = layout.video.is_some();
        match unit.kind {
            TrackKind::Video if has_video => self.on_video(unit, now_unix_ms),
            TrackKind::Audio if layout.audio.is_some() => {
                if has_video {
                    self.queue_audio(unit);
                    self.close_part_once_audio_came()
                } else if self.track_set == TrackSet::AudioBesideVideo {
                    self.on_audio_beside_video(unit, now_unix_ms)
                } else {
                    self.on_audio_driver(unit, now_unix_ms)
                }
            }
            // The video this audio follows may have got past what it holds.
            _ if self.track_set == TrackSet::AudioBesideVideo => self.release_audio(now_unix_ms),
            _ => Changes::default(),
        }
    }

    fn break_timeline(&mut self, why: Break) -> Changes {
        let changes = self.close_segment(Listing::Now);
        if self.started {
            self.last_break = Some(why);
        }
        self.started = false;
        self.offset = None;
        self.last_video_dts = None;
        self.keyframes = KeyframeCadence::default();
        self.audio = AudioQueue::default();
        self.following.since = alignment::lock(&self.align).starts();
        self.following.early.clear();
        if self.segment.is_none() && self.window_has_content() {
            self.pending_discontinuity = true;
        }
        changes
    }

    fn window_has_content(&self) -> bool {
        self.timeline_end > Time90k::ZERO
    }

    /// Map a source time onto the output timeline, starting it (on the
    /// timeline shared with the other renditions) if needed.
    fn start(&mut self, source_dts: Time90k, now_unix_ms: i64) -> i64 {
        if self.started
            && let Some(offset) = self.offset
        {
            return offset;
        }
        let start = alignment::lock(&self.align).start(
            &mut self.member,
            source_dts,
            self.timeline_end,
            self.last_break,
            now_unix_ms,
        );
        self.started = true;
        self.offset = Some(start.offset);
        self.pdt_anchor = Some(start.pdt_anchor);
        start.offset
    }

    fn on_video(&mut self, unit: &AccessUnit, now_unix_ms: i64) -> Changes {
        let mut changes = Changes::default();
        // A source clock that jumps (encoder restart, splice, broken
        // timestamps) is not carried into the output timeline: the stream
        // continues after EXT-X-DISCONTINUITY from the next keyframe, with
        // decode times continuing where they stopped.
        if let (Some(offset), Some(prev)) = (self.offset, self.last_video_dts) {
            let delta = Time90k(unit.dts.ticks() + offset) - prev;
            if delta.ticks() <= -MAX_BACKWARD_STEP.ticks() || delta > MAX_FORWARD_STEP {
                warn!(
                    jump_ms = delta.as_millis(),
                    "video timestamps jumped; continuing after a discontinuity"
                );
                self.discontinuities += 1;
                changes.merge(self.break_timeline(Break::Publisher));
            }
        }
        if !self.started && !unit.keyframe {
            return changes;
        }
        let offset = self.start(unit.dts, now_unix_ms);
        let dts = Time90k(unit.dts.ticks() + offset);
        if let Some(prev) = self.last_video_dts {
            let delta = dts - prev;
            if delta.ticks() > 0 {
                self.frame_interval = delta;
            } else {
                debug!(dts = dts.ticks(), "non-increasing video DTS; frame dropped");
                return changes;
            }
        }
        self.last_video_dts = Some(dts);
        if unit.keyframe {
            self.keyframes.keyframe(dts, half(self.frame_interval));
        }
        let duration = self.frame_interval;
        let Some(params) = self
            .layout
            .as_ref()
            .and_then(|l| l.video.as_ref().map(|v| &l.tracks[v.index].params))
        else {
            return Changes::default();
        };
        let data = match ferrocast_cmaf::video_sample_from_annexb(params, &unit.data) {
            Ok(data) => data,
            Err(e) => {
                warn!(error = %e, "video access unit not packageable; dropped");
                return Changes::default();
            }
        };
        let sample = Sample {
            duration: duration.ticks() as u32,
            composition_offset: (unit.pts.ticks() - unit.dts.ticks()) as i32,
            keyframe: unit.keyframe,
            data,
        };
        changes.merge(self.add_driver_sample(
            dts,
            duration,
            unit.keyframe,
            sample,
            Driver::Video,
            now_unix_ms,
        ));
        changes
    }

    fn on_audio_driver(&mut self, unit: &AccessUnit, now_unix_ms: i64) -> Changes {
        let offset = self.start(unit.dts, now_unix_ms);
        let Some(slot) = self.layout.as_ref().and_then(|l| l.audio.clone()) else {
            return Changes::default();
        };
        let Some(samples) = self.audio_samples(&slot, unit) else {
            return Changes::default();
        };
        let Some(tfdt) = self.audio_time(unit, offset, slot.timescale, samples) else {
            return Changes::default();
        };
        let dts = Time90k::from_timescale(tfdt, slot.timescale);
        let duration = Time90k::from_timescale(i64::from(samples), slot.timescale);
        let sample = Sample {
            duration: samples,
            composition_offset: 0,
            keyframe: true,
            data: unit.data.clone(),
        };
        self.add_driver_sample(
            dts,
            duration,
            true,
            sample,
            Driver::Audio { tfdt },
            now_unix_ms,
        )
    }

    /// An audio frame beside the video: placed on the timeline the video
    /// started, then held until the video has got past it.
    fn on_audio_beside_video(&mut self, unit: &AccessUnit, now_unix_ms: i64) -> Changes {
        if !self.started {
            let Some(start) = alignment::lock(&self.align).follow(self.following.since) else {
                // Before the video (re)starts: kept until it does.
                if self.following.early.len() >= MAX_EARLY_FRAMES {
                    self.following.early.pop_front();
                }
                self.following.early.push_back(unit.clone());
                return Changes::default();
            };
            self.started = true;
            self.offset = Some(start.offset);
            self.pdt_anchor = Some(start.pdt_anchor);
            let early = std::mem::take(&mut self.following.early);
            for unit in &early {
                self.queue_audio(unit);
            }
        }
        self.queue_audio(unit);
        self.release_audio(now_unix_ms)
    }

    /// Writes the held audio frames the leading video has got past (or that
    /// waited longer than [`FOLLOW_PATIENCE`]): a frame whose middle is
    /// past one of the leader's segment starts starts that segment, with
    /// its number, and one whose middle is past the end of one of its parts
    /// starts a part.
    fn release_audio(&mut self, now_unix_ms: i64) -> Changes {
        let mut changes = Changes::default();
        let Some(timescale) = self
            .layout
            .as_ref()
            .and_then(|l| l.audio.as_ref())
            .map(|a| a.timescale)
        else {
            return changes;
        };
        let patience = FOLLOW_PATIENCE.to_timescale(timescale);
        while let Some((tfdt, samples)) = self.audio.first() {
            let dts = Time90k::from_timescale(tfdt, timescale);
            let duration = Time90k::from_timescale(i64::from(samples), timescale);
            let middle = dts + half(duration);
            let (leader_end, boundary, part_ends) = {
                let align = alignment::lock(&self.align);
                (
                    align.leader_video_end(),
                    align.leader_segment_in(self.following.boundary, middle),
                    align.leader_part_end_in(self.following.part_from, middle),
                )
            };
            // A mark at the leader's very end may still come (the keyframe
            // there is yet to arrive): the frame waits until it is past.
            if leader_end <= middle && self.audio.pending_span() <= patience {
                break;
            }
            let Some((_, mut frames)) = self.audio.take_before(tfdt + 1) else {
                break;
            };
            let Some(sample) = frames.pop() else { break };
            self.following.frame = duration;
            let msn = match boundary {
                Some((at, msn)) => {
                    self.following.boundary = Some(at);
                    Some(msn)
                }
                // Before the first boundary the video listed: nothing to
                // go with.
                None if self.segment.is_none() => continue,
                None => None,
            };
            let too_long = self
                .segment
                .as_ref()
                .is_some_and(|s| dts - s.start + duration > self.cut.segment_max);
            if msn.is_some() || too_long {
                changes.merge(self.close_segment(Listing::WithNextPart));
            } else if part_ends {
                changes.merge(self.close_part());
            }
            if self.segment.is_none() {
                self.open_segment(dts, msn, now_unix_ms);
                changes.playlist = true;
            }
            let opens_part = self.segment.as_ref().is_some_and(|s| s.part.is_none());
            changes.merge(self.append_sample(dts, duration, true, sample, Driver::Audio { tfdt }));
            if opens_part {
                self.following.part_from = middle;
            }
            // The next frame would start a part: the part is complete now.
            let next_middle = dts + duration + half(duration);
            if alignment::lock(&self.align)
                .leader_part_end_in(self.following.part_from, next_middle)
            {
                changes.merge(self.close_part());
            }
        }
        changes
    }

    /// How long an audio unit lasts, in the audio track's timescale: its
    /// samples (1024 per AAC frame, the TOC's count per Opus packet), since
    /// [`ferrocast_cmaf::track_timescale`] is the sample rate for audio.
    /// `None`, and the unit dropped, when the codec cannot say (a malformed
    /// Opus TOC).
    fn audio_samples(&self, slot: &TrackSlot, unit: &AccessUnit) -> Option<u32> {
        let params = &self.layout.as_ref()?.tracks.get(slot.index)?.params;
        let samples = params.unit_samples(&unit.data).filter(|&n| n > 0);
        if samples.is_none() {
            debug!(
                codec = %params.codec_string(),
                "audio unit of unknown duration; dropped"
            );
        }
        samples
    }

    /// The audio decode time of `unit` (lasting `samples`) in `timescale`,
    /// continuing the audio clock unless the source jumped by more than two
    /// of its frames.
    fn audio_time(
        &mut self,
        unit: &AccessUnit,
        offset: i64,
        timescale: u32,
        samples: u32,
    ) -> Option<i64> {
        let source = Time90k(unit.dts.ticks() + offset).to_timescale(timescale);
        self.audio.place(source, samples)
    }

    /// Places an audio frame on the timeline and keeps it waiting: for the
    /// video chunk it goes beside (muxed), or for the video to get past it
    /// (beside the video). One that would play before the timeline's start
    /// is dropped.
    fn queue_audio(&mut self, unit: &AccessUnit) {
        if !self.started {
            return;
        }
        let Some(offset) = self.offset else { return };
        let Some(slot) = self.layout.as_ref().and_then(|l| l.audio.clone()) else {
            return;
        };
        let Some(samples) = self.audio_samples(&slot, unit) else {
            return;
        };
        let Some(tfdt) = self.audio_time(unit, offset, slot.timescale, samples) else {
            return;
        };
        self.audio.push(
            tfdt,
            Sample {
                duration: samples,
                composition_offset: 0,
                keyframe: true,
                data: unit.data.clone(),
            },
        );
    }

    /// Whether a part whose video ends at `end` should stay open for audio
    /// still to come (see [`crate::audio_queue`]).
    fn audio_lags(&self, end: Time90k) -> bool {
        let Some(audio) = self.layout.as_ref().and_then(|l| {
            l.video.as_ref()?;
            l.audio.as_ref()
        }) else {
            return false;
        };
        self.audio.lags(
            end.to_timescale(audio.timescale),
            AUDIO_PATIENCE.to_timescale(audio.timescale),
        )
    }

    /// After an audio frame: close the open part if it only waited for the
    /// audio of its media time, and that has now come.
    fn close_part_once_audio_came(&mut self) -> Changes {
        let Some(segment) = &self.segment else {
            return Changes::default();
        };
        let waiting = segment.part.as_ref().is_some_and(|p| p.video_complete);
        if waiting && !self.audio_lags(segment.end) {
            self.close_part()
        } else {
            Changes::default()
        }
    }

    fn add_driver_sample(
        &mut self,
        dts: Time90k,
        duration: Time90k,
        keyframe: bool,
        sample: Sample,
        driver: Driver,
        now_unix_ms: i64,
    ) -> Changes {
        let is_video = driver == Driver::Video;
        let mut changes = Changes::default();
        let (cut_at_keyframe, too_long) = match &self.segment {
            Some(segment) => {
                let elapsed = dts - segment.start;
                (
                    keyframe && elapsed >= self.cut.segment_min,
                    elapsed + duration > self.cut.segment_max,
                )
            }
            None => (true, false),
        };
        let (cut, msn) = if is_video && keyframe {
            match self.aligned_cut(dts, cut_at_keyframe || too_long) {
                Cut::Boundary { msn } => (true, Some(msn)),
                Cut::Inside if self.segment.is_none() => {
                    // A rendition joining (or coming back) in the middle of
                    // the others' segment waits for their next one, so that
                    // its segments start where theirs do.
                    self.audio.clear_pending();
                    return changes;
                }
                Cut::Inside => (too_long, None),
            }
        } else if is_video && self.segment.is_none() {
            // Waiting for a keyframe that starts a segment.
            self.audio.clear_pending();
            return changes;
        } else {
            (cut_at_keyframe || too_long, None)
        };
        if cut && self.segment.is_some() {
            changes.merge(self.close_segment(Listing::WithNextPart));
        }
        if self.segment.is_none() {
            self.open_segment(dts, msn, now_unix_ms);
            changes.playlist = true;
        }
        changes.merge(self.append_sample(dts, duration, keyframe, sample, driver));
        changes
    }

    /// Writes `sample` at `dts` into the open segment's part (opening one),
    /// and closes the part if one more frame would take it past its
    /// target (with video, once the audio of its media time is in too).
    fn append_sample(
        &mut self,
        dts: Time90k,
        duration: Time90k,
        keyframe: bool,
        sample: Sample,
        driver: Driver,
    ) -> Changes {
        let is_video = driver == Driver::Video;
        let mut changes = Changes::default();
        let Some(segment) = self.segment.as_mut() else {
            return changes;
        };
        // A frame that would take the open part past its target (the frame
        // interval grew) starts a new part instead.
        if let Some(part) = &segment.part
            && dts + duration - part.start > self.cut.part_target + PART_TOLERANCE
        {
            changes.merge(self.close_part());
        }
        let Some(segment) = self.segment.as_mut() else {
            return changes;
        };
        let msn = segment.msn;
        if segment.part.is_none() {
            segment.part = Some(OpenPart {
                start: dts,
                independent: keyframe,
                video_complete: false,
            });
            self.store.open_part(msn);
        }
        segment.end = dts + duration;
        let part_start = segment.part.as_ref().map_or(dts, |p| p.start);
        let part_duration = segment.end - part_start;
        self.timeline_end = segment.end;
        if is_video {
            alignment::lock(&self.align).extend_video(&self.member, self.timeline_end);
        } else {
            alignment::lock(&self.align).extend(self.timeline_end);
        }

        let chunk = match driver {
            Driver::Video => self.video_chunk(dts, sample),
            Driver::Audio { tfdt } => self.audio_chunk(tfdt, vec![sample]),
        };
        if let Some(chunk) = chunk {
            self.partial_bytes += chunk.len() as u64;
            self.store.append_chunk(msn, chunk);
            changes.chunk = true;
        }
        self.partial_duration = self.partial_duration + duration;

        // Close the part now if one more frame would take it past its
        // target; with video, once the audio of its media time is in too.
        if part_duration + duration > self.cut.part_target + PART_TOLERANCE {
            let end = dts + duration;
            if is_video && self.audio_lags(end) {
                if let Some(part) = self.segment.as_mut().and_then(|s| s.part.as_mut()) {
                    part.video_complete = true;
                }
            } else {
                changes.merge(self.close_part());
            }
        }
        changes
    }

    /// A chunk of video frame `sample` at `dts`, with the waiting audio
    /// that starts within the frame's media time.
    fn video_chunk(&mut self, dts: Time90k, sample: Sample) -> Option<Bytes> {
        let layout = self.layout.as_ref()?;
        let video = layout.video.as_ref()?;
        let end = dts + Time90k(i64::from(sample.duration));
        let mut fragments = vec![TrackFragment {
            track_id: video.mp4_id,
            base_media_decode_time: dts.ticks().max(0) as u64,
            samples: vec![sample],
        }];
        if let Some(audio) = &layout.audio
            && let Some((tfdt, samples)) = self.audio.take_before(end.to_timescale(audio.timescale))
        {
            fragments.push(TrackFragment {
                track_id: audio.mp4_id,
                base_media_decode_time: tfdt.max(0) as u64,
                samples,
            });
        }
        self.write_fragments(&fragments)
    }

    /// A chunk of audio frames only, the first at `tfdt`.
    fn audio_chunk(&mut self, tfdt: i64, samples: Vec<Sample>) -> Option<Bytes> {
        let audio = self.layout.as_ref()?.audio.as_ref()?;
        let fragment = TrackFragment {
            track_id: audio.mp4_id,
            base_media_decode_time: tfdt.max(0) as u64,
            samples,
        };
        self.write_fragments(std::slice::from_ref(&fragment))
    }

    fn write_fragments(&mut self, fragments: &[TrackFragment]) -> Option<Bytes> {
        let sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        match ferrocast_cmaf::write_fragment(sequence, fragments) {
            Ok(chunk) => Some(chunk),
            Err(e) => {
                warn!(error = %e, "cannot write CMAF chunk; frame dropped");
                None
            }
        }
    }

    /// Before the open part of a stream with video closes: the waiting
    /// audio that starts before `until` goes into it, as a last chunk.
    fn flush_audio_into_part(&mut self, msn: u64, until: Time90k) {
        let Some(audio) = self.layout.as_ref().and_then(|l| {
            l.video.as_ref()?;
            l.audio.as_ref()
        }) else {
            return;
        };
        let end = if until == Time90k(i64::MAX) {
            i64::MAX
        } else {
            until.to_timescale(audio.timescale)
        };
        let Some((tfdt, samples)) = self.audio.take_before(end) else {
            return;
        };
        if let Some(chunk) = self.audio_chunk(tfdt, samples) {
            self.partial_bytes += chunk.len() as u64;
            self.store.append_chunk(msn, chunk);
        }
    }

    /// The segment decision at a video keyframe at output time `dts`: the
    /// one recorded by the first rendition to get there, or this one's
    /// (`local`: its own rule says cut), recorded for the others.
    ///
    /// A rendition in the middle of a segment follows a record only where
    /// it agrees with it: a boundary numbered as its own next segment, or
    /// inside a segment where its own rule does not cut either. Otherwise
    /// the record was made by a rendition whose keyframes are elsewhere
    /// (a source GOP of 2 s beside rungs cut every second, meeting every
    /// other second), which numbers its segments at another rate; following
    /// it would skip numbers, listed as gaps.
    fn aligned_cut(&mut self, dts: Time90k, local: bool) -> Cut {
        let own_next = match &self.segment {
            Some(segment) => segment.msn + 1,
            None => self.window.next_msn(),
        };
        let mut align = alignment::lock(&self.align);
        if let Some(cut) = align.cut_at(dts) {
            let agrees = match (cut, &self.segment) {
                (_, None) => true,
                (Cut::Boundary { msn }, Some(_)) => msn == own_next,
                (Cut::Inside, Some(_)) => !local,
            };
            if agrees {
                return cut;
            }
            return if local {
                Cut::Boundary { msn: own_next }
            } else {
                Cut::Inside
            };
        }
        let cut = if local {
            let msn = match &self.segment {
                Some(_) => own_next,
                // A fresh start numbers on from the others' segments.
                None => align.msn_after(dts).map_or(own_next, |m| m.max(own_next)),
            };
            Cut::Boundary { msn }
        } else {
            Cut::Inside
        };
        align.record(dts, cut);
        cut
    }

    /// Before opening a segment numbered `msn` (the number the stream's
    /// other renditions gave the segment starting at the same time): take
    /// that number, listing the segments this rendition lost as gaps.
    fn catch_up_numbering(&mut self, start: Time90k, msn: u64) {
        let next = self.window.next_msn();
        if msn < next {
            warn!(
                msn,
                next, "segment numbers ahead of the other renditions'; not aligned"
            );
            return;
        }
        if msn == next || self.window.skip_to(msn).is_ok() {
            return;
        }
        // Segments `next..msn` exist in the other renditions only.
        let times: Vec<Option<Time90k>> = {
            let align = alignment::lock(&self.align);
            (next..=msn)
                .map(|m| {
                    if m == msn {
                        Some(start)
                    } else {
                        align.boundary_time(m)
                    }
                })
                .collect()
        };
        let missing = msn - next;
        let even = Time90k((start - self.timeline_end).ticks() / missing.max(1) as i64);
        for (i, m) in (next..msn).enumerate() {
            let duration = match (times[i], times[i + 1]) {
                (Some(a), Some(b)) if b > a => b - a,
                _ => even,
            };
            let begin = times[i].unwrap_or(self.timeline_end);
            let pdt = self.pdt_at(begin, 0);
            let discontinuity = std::mem::take(&mut self.pending_discontinuity);
            match self.window.add_gap_segment(
                SegmentStart {
                    program_date_time_ms: pdt,
                    discontinuity,
                    init_generation: self.generation,
                },
                duration,
            ) {
                Ok(_) => debug!(msn = m, "segment lost in this rendition listed as a gap"),
                Err(e) => {
                    warn!(error = %e, "cannot list a lost segment; numbers not aligned");
                    return;
                }
            }
        }
    }

    fn pdt_at(&self, at: Time90k, now_unix_ms: i64) -> i64 {
        match self.pdt_anchor {
            Some((anchor_time, anchor_ms)) => anchor_ms + (at - anchor_time).as_millis(),
            None => now_unix_ms,
        }
    }

    fn open_segment(&mut self, start: Time90k, msn: Option<u64>, now_unix_ms: i64) {
        if let Some(msn) = msn {
            self.catch_up_numbering(start, msn);
        }
        let pdt = self.pdt_at(start, now_unix_ms);
        let discontinuity = std::mem::take(&mut self.pending_discontinuity);
        let msn = match self.window.open_segment(SegmentStart {
            program_date_time_ms: pdt,
            discontinuity,
            init_generation: self.generation,
        }) {
            Ok(msn) => msn,
            Err(e) => {
                warn!(error = %e, "cannot open segment");
                return;
            }
        };
        self.store.open_segment(msn);
        self.segment = Some(OpenSegment {
            msn,
            start,
            end: start,
            part: None,
        });
        if self.packages_video() {
            alignment::lock(&self.align).segment_started(&self.member, start, msn);
        }
    }

    /// Whether it packages a video track (whose segments and parts the
    /// audio beside the video may follow).
    fn packages_video(&self) -> bool {
        self.layout.as_ref().is_some_and(|l| l.video.is_some())
    }

    /// Close the open part, with the audio that starts before its end.
    fn close_part(&mut self) -> Changes {
        let end = self.segment.as_ref().map(|s| s.end);
        self.close_part_with_audio_until(end)
    }

    /// Close the open part, with the waiting audio that starts before
    /// `until` (`Time90k(i64::MAX)`: all of it).
    fn close_part_with_audio_until(&mut self, until: Option<Time90k>) -> Changes {
        let (Some(until), Some(msn)) = (
            until,
            self.segment
                .as_ref()
                .filter(|s| s.part.is_some())
                .map(|s| s.msn),
        ) else {
            return Changes::default();
        };
        self.flush_audio_into_part(msn, until);
        let Some(segment) = self.segment.as_mut() else {
            return Changes::default();
        };
        let Some(part) = segment.part.take() else {
            return Changes::default();
        };
        let duration = segment.end - part.start;
        let (msn, end) = (segment.msn, segment.end);
        if let Err(e) = self.window.add_part(duration, part.independent) {
            warn!(error = %e, "part not listed");
        }
        self.store.complete_part(msn);
        if self.packages_video() {
            alignment::lock(&self.align).part_ended(&self.member, end);
        }
        // The first part of a segment lists the one held before it.
        self.store.evict(self.window.take_released());
        if self.segment_ends_next() {
            self.window.expect_segment_end();
        }
        Changes {
            chunk: true,
            playlist: true,
        }
    }

    /// Whether the open segment is due to close before its next frame, by
    /// the cutting rules: the next frame is past `segment_max`, or starts
    /// it after `segment_min` and is a keyframe (every audio frame is; a
    /// video keyframe is due when keyframes come at a steady interval).
    fn segment_ends_next(&self) -> bool {
        let Some(segment) = &self.segment else {
            return false;
        };
        let Some(layout) = &self.layout else {
            return false;
        };
        let next = segment.end;
        let elapsed = next - segment.start;
        if self.track_set == TrackSet::AudioBesideVideo {
            // Known once the video has got past the next frame's middle.
            let middle = next + half(self.following.frame);
            return elapsed + self.following.frame > self.cut.segment_max
                || alignment::lock(&self.align)
                    .leader_segment_in(self.following.boundary, middle)
                    .is_some();
        }
        if layout.video.is_none() {
            // Audio frames have no interval here; the next is as long as
            // the last part's frames were, at most.
            return elapsed >= self.cut.segment_min;
        }
        let interval = self.frame_interval;
        elapsed + interval > self.cut.segment_max
            || (elapsed >= self.cut.segment_min && self.keyframes.due_at(next, half(interval)))
    }

    fn close_segment(&mut self, listing: Listing) -> Changes {
        // Where the stream breaks off or ends, all the audio that waits
        // goes with the open part, if there is one. (After a part closed
        // on its last frame, what waits lies past the video's end, where
        // the stream's media ends; it is dropped.)
        let mut changes = match listing {
            Listing::Now => self.close_part_with_audio_until(Some(Time90k(i64::MAX))),
            Listing::WithNextPart => self.close_part(),
        };
        let Some(segment) = self.segment.take() else {
            if listing == Listing::Now {
                self.window.list_held();
                self.store.evict(self.window.take_released());
            }
            return changes;
        };
        self.store.complete_segment(segment.msn);
        let closed = match listing {
            Listing::Now => self.window.close_segment(),
            Listing::WithNextPart => self.window.close_segment_held(),
        };
        match closed {
            Ok(Some(closed)) => {
                if self.recording
                    && let Some(buf) = self.store.segment(segment.msn)
                {
                    self.recorded.push(Recorded::Segment(RecordedSegment {
                        msn: closed.msn,
                        duration: closed.duration,
                        discontinuity: closed.start.discontinuity,
                        init_generation: closed.start.init_generation,
                        program_date_time_ms: closed.start.program_date_time_ms,
                        chunks: buf.chunks().cloned().collect(),
                    }));
                }
                if closed.exceeds_target_duration {
                    warn!(
                        msn = closed.msn,
                        "segment longer than the target duration: is the GOP longer than it?"
                    );
                }
                self.store.evict(self.window.take_released());
                self.release_unused_inits();
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot close segment"),
        }
        if let Some(buf) = self.store.segment(segment.msn) {
            self.bitrate.add(buf.len(), segment.end - segment.start);
        }
        changes.playlist = true;
        changes
    }

    fn release_unused_inits(&mut self) {
        let current = self.generation;
        let window = &self.window;
        self.store
            .retain_inits(|generation| generation == current || window.init_in_use(generation));
    }
}
