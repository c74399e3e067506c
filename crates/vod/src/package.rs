//! The synchronous core of an upload's job: its MPEG-TS copy demuxed
//! ([`Demuxer`]), transcoded to the ladder ([`Transcoder`]), and each
//! rendition cut into CMAF segments by the live packager's own
//! [`Assembler`] (the same part and segment rules, the same alignment
//! across renditions), which hands out what it closes as [`Recorded`]
//! items: init segments, segments with their playlist attributes, the
//! end.
//!
//! Nothing here waits on a clock: the file goes through as fast as the
//! encoders allow, and program date times are the job's start plus media
//! time.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ferrocast_hls::RenditionName;
use ferrocast_media::ts::{DemuxEvent, Demuxer};
use ferrocast_media::{AccessUnit, Time90k, TrackId, TrackInfo, TrackKind};
use ferrocast_packager::alignment::{Alignment, SharedAlignment};
use ferrocast_packager::assembler::Assembler;
use ferrocast_packager::{PackagerConfig, Recorded};
use ferrocast_transcode::gpu::StreamEncoders;
use ferrocast_transcode::ladder::Ladder;
use ferrocast_transcode::{Output, Transcoder};
use tracing::debug;

use crate::error::VodError;

/// Bytes read from the MPEG-TS copy at a time.
const READ_CHUNK: usize = 1 << 20;

/// Units held while waiting for the audio track the probe promised (its
/// parameters come with its first frame, which may follow some video).
const MAX_HELD_UNITS: usize = 2000;

/// What the packaging hands its caller.
pub trait PackageSink {
    /// One item of one rendition, in the order made. An error stops the
    /// job.
    fn item(&mut self, rendition: &RenditionName, item: Recorded) -> Result<(), VodError>;

    /// Media time done so far, from the start of the file.
    fn progress(&mut self, done: Time90k);
}

/// How to package one upload.
#[derive(Debug, Clone)]
pub struct PackageSettings {
    /// The ladder (with a keyframe interval the packager can cut at).
    pub ladder: Ladder,
    /// Part and segment timing: the live packager's settings.
    pub packager: PackagerConfig,
    /// Whether the file has audio (from the probe): the ladder waits for
    /// its parameters before it starts.
    pub expect_audio: bool,
    /// Program date time of the first frame, ms since the Unix epoch.
    pub started_ms: i64,
}

/// One rendition being packaged.
struct Rendition {
    name: RenditionName,
    assembler: Assembler,
    /// The track set its assembler has.
    tracks: Option<Arc<[TrackInfo]>>,
}

/// The transcoder and its renditions, once the tracks are known.
struct Running {
    transcoder: Transcoder,
    /// Per plan rung, then the source passthrough last when the ladder
    /// lists it.
    renditions: Vec<Rendition>,
    passthrough: Option<usize>,
    outputs: Vec<Output>,
}

/// Packages the MPEG-TS file at `ts` into `sink`, with `encoders` for the
/// ladder's rungs.
pub fn package(
    ts: &Path,
    settings: &PackageSettings,
    encoders: StreamEncoders,
    sink: &mut dyn PackageSink,
) -> Result<(), VodError> {
    let mut file = std::fs::File::open(ts)?;
    let mut demuxer = Demuxer::new();
    let mut events = Vec::new();
    let mut tracks: BTreeMap<TrackId, TrackInfo> = BTreeMap::new();
    let mut held: Vec<AccessUnit> = Vec::new();
    let mut encoders = Some(encoders);
    let mut running: Option<Running> = None;
    let mut first_dts: Option<Time90k> = None;
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut ended = false;
    while !ended {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            demuxer.finish(&mut events);
            ended = true;
        } else {
            demuxer.push(&buffer[..read], &mut events);
        }
        for event in events.drain(..) {
            match event {
                DemuxEvent::Track(track) => {
                    if let Some(running) = running.as_mut() {
                        if track.kind() == TrackKind::Video
                            && track.id == running.transcoder.plan().source.id
                            && track != running.transcoder.plan().source
                        {
                            return Err(VodError::Media(
                                "the video changes its size or codec mid-file".to_owned(),
                            ));
                        }
                        tracks.insert(track.id, track);
                        let all: Vec<TrackInfo> = tracks.values().cloned().collect();
                        running
                            .transcoder
                            .set_tracks(&all)
                            .map_err(|e| VodError::Media(e.to_string()))?;
                    } else {
                        tracks.insert(track.id, track);
                    }
                }
                DemuxEvent::Unit(unit) => {
                    let start = *first_dts.get_or_insert(unit.dts);
                    let done = Time90k(unit.pts.0.saturating_sub(start.0).max(0));
                    if running.is_none() {
                        held.push(unit);
                        let audio_known = tracks.values().any(|t| t.kind() == TrackKind::Audio);
                        let video_known = tracks.values().any(|t| t.kind() == TrackKind::Video);
                        let ready = video_known
                            && (audio_known
                                || !settings.expect_audio
                                || held.len() > MAX_HELD_UNITS);
                        if !ready {
                            if held.len() > MAX_HELD_UNITS {
                                return Err(VodError::NothingDecoded);
                            }
                            continue;
                        }
                        let Some(encoders) = encoders.take() else {
                            continue;
                        };
                        let mut started = start_ladder(&tracks, settings, encoders)?;
                        for unit in held.drain(..) {
                            started.push(&unit, start, settings, sink)?;
                        }
                        running = Some(started);
                    } else if let Some(running) = running.as_mut() {
                        running.push(&unit, start, settings, sink)?;
                    }
                    sink.progress(done);
                }
                DemuxEvent::Unsupported { codec, pid, .. } => {
                    debug!(pid, codec, "upload: elementary stream ignored");
                }
                DemuxEvent::Warning(warning) => debug!(%warning, "upload: damaged MPEG-TS skipped"),
                _ => {}
            }
        }
    }
    let Some(mut running) = running else {
        return Err(VodError::NothingDecoded);
    };
    let start = first_dts.unwrap_or(Time90k::ZERO);
    running
        .transcoder
        .finish(&mut running.outputs)
        .map_err(|e| VodError::Media(e.to_string()))?;
    running.hand_out(start, settings, sink)?;
    for rendition in &mut running.renditions {
        rendition.assembler.on_end();
        for item in rendition.assembler.take_recorded() {
            sink.item(&rendition.name, item)?;
        }
    }
    Ok(())
}

/// Plans the ladder for the video in `tracks` and opens its encoders.
fn start_ladder(
    tracks: &BTreeMap<TrackId, TrackInfo>,
    settings: &PackageSettings,
    encoders: StreamEncoders,
) -> Result<Running, VodError> {
    let video = tracks
        .values()
        .find(|t| t.kind() == TrackKind::Video)
        .ok_or(VodError::NoVideo)?;
    let plan = ferrocast_transcode::plan(&settings.ladder, video)
        .map_err(|e| VodError::Media(e.to_string()))?;
    let align = Alignment::shared();
    let mut renditions = Vec::new();
    for rung in &plan.rungs {
        let name = RenditionName::new(&rung.name)
            .map_err(|e| VodError::Media(format!("rung {}: {e}", rung.name)))?;
        renditions.push(rendition(name, settings, &align)?);
    }
    let passthrough = plan.source_passthrough.then_some(renditions.len());
    if passthrough.is_some() {
        renditions.push(rendition(RenditionName::source(), settings, &align)?);
    }
    let mut transcoder =
        Transcoder::new(plan, encoders).map_err(|e| VodError::Media(e.to_string()))?;
    let all: Vec<TrackInfo> = tracks.values().cloned().collect();
    transcoder
        .set_tracks(&all)
        .map_err(|e| VodError::Media(e.to_string()))?;
    Ok(Running {
        transcoder,
        renditions,
        passthrough,
        outputs: Vec::new(),
    })
}

fn rendition(
    name: RenditionName,
    settings: &PackageSettings,
    align: &SharedAlignment,
) -> Result<Rendition, VodError> {
    let mut assembler = settings
        .packager
        .rendition_assembler(align.clone())
        .map_err(|e| VodError::Media(e.to_string()))?;
    assembler.set_recording(true);
    Ok(Rendition {
        name,
        assembler,
        tracks: None,
    })
}

impl Running {
    fn push(
        &mut self,
        unit: &AccessUnit,
        start: Time90k,
        settings: &PackageSettings,
        sink: &mut dyn PackageSink,
    ) -> Result<(), VodError> {
        self.transcoder
            .push(unit, &mut self.outputs)
            .map_err(|e| VodError::Media(e.to_string()))?;
        self.hand_out(start, settings, sink)
    }

    /// Gives the transcoder's outputs to the renditions' assemblers (each
    /// rendition's track set first, when it is new), and what they closed
    /// to `sink`.
    fn hand_out(
        &mut self,
        start: Time90k,
        settings: &PackageSettings,
        sink: &mut dyn PackageSink,
    ) -> Result<(), VodError> {
        if self.outputs.is_empty() {
            return Ok(());
        }
        let tracks = self.transcoder.tracks();
        let video_of = |index: usize| -> Option<&TrackInfo> {
            if Some(index) == self.passthrough {
                tracks.passthrough.as_ref()
            } else {
                tracks.rungs.get(index)?.as_ref()
            }
        };
        let sets: Vec<Option<Arc<[TrackInfo]>>> = (0..self.renditions.len())
            .map(|index| {
                video_of(index).map(|video| {
                    std::iter::once(video.clone())
                        .chain(tracks.audio.iter().cloned())
                        .collect()
                })
            })
            .collect();
        for (rendition, set) in self.renditions.iter_mut().zip(sets) {
            if let Some(set) = set
                && rendition.tracks.as_ref() != Some(&set)
            {
                rendition.assembler.on_tracks(set.clone());
                rendition.tracks = Some(set);
            }
        }
        let wall = |unit: &AccessUnit| {
            settings.started_ms + (unit.dts.0.saturating_sub(start.0)).max(0) / 90
        };
        for output in self.outputs.drain(..) {
            match output {
                Output::Video { rung, unit } => {
                    if let Some(rendition) = self.renditions.get_mut(rung) {
                        rendition.assembler.on_unit(&unit, wall(&unit));
                    }
                }
                Output::Passthrough(unit) => {
                    if let Some(rendition) =
                        self.passthrough.and_then(|i| self.renditions.get_mut(i))
                    {
                        rendition.assembler.on_unit(&unit, wall(&unit));
                    }
                }
                Output::Audio(unit) => {
                    for rendition in &mut self.renditions {
                        rendition.assembler.on_unit(&unit, wall(&unit));
                    }
                }
            }
        }
        for rendition in &mut self.renditions {
            for item in rendition.assembler.take_recorded() {
                sink.item(&rendition.name, item)?;
            }
        }
        Ok(())
    }
}
