//! What an uploaded file is, found by FFmpeg reading it (its container
//! and streams), never by its name or the type the client claimed.

use std::path::Path;

use ff::codec::Id;
use ff::media::Type;
use ffmpeg_next as ff;
use serde::Serialize;

use crate::error::VodError;

/// What a probe found in an acceptable file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The container FFmpeg recognised (`mov,mp4,m4a,3gp,3g2,mj2`,
    /// `mpegts`, `matroska,webm`, …).
    pub format: String,
    /// Its duration, ms, when the container says.
    pub duration_ms: Option<u64>,
    /// The video codec (`h264`, `hevc`).
    pub video_codec: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The audio codec (`aac`, `opus`), if the file has audio.
    pub audio_codec: Option<String>,
    /// Index of the video stream in the file.
    #[serde(skip)]
    pub video_stream: usize,
    /// Index of the audio stream in the file.
    #[serde(skip)]
    pub audio_stream: Option<usize>,
}

/// Video codecs uploads take: those the transcoder decodes from an
/// MPEG-TS remux (AV1 has no MPEG-TS mapping in FFmpeg 5.1's muxer).
fn video_accepted(id: Id) -> bool {
    matches!(id, Id::H264 | Id::HEVC)
}

/// Audio codecs uploads take: AAC passes through, Opus becomes AAC.
fn audio_accepted(id: Id) -> bool {
    matches!(id, Id::AAC | Id::OPUS)
}

/// Probes `path`. Refuses, with the reason, a file FFmpeg cannot read as
/// media, one without video, with codecs the ladder cannot take, with an
/// unusable picture size, or lasting more than `max_duration_ms`.
pub fn probe(path: &Path, max_duration_ms: u64) -> Result<Probe, VodError> {
    ferrocast_transcode::init_ffmpeg();
    let input = ff::format::input(path).map_err(|e| VodError::NotMedia(e.to_string()))?;
    let format = input.format().name().to_owned();
    let video = input.streams().best(Type::Video).ok_or(VodError::NoVideo)?;
    let video_id = video.parameters().id();
    if !video_accepted(video_id) {
        return Err(VodError::UnsupportedVideo(video_id.name().to_owned()));
    }
    let decoder = ff::codec::context::Context::from_parameters(video.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| VodError::NotMedia(format!("the video stream cannot be opened: {e}")))?;
    let (width, height) = (decoder.width(), decoder.height());
    if !(16..=8192).contains(&width) || !(16..=8192).contains(&height) {
        return Err(VodError::BadSize { width, height });
    }
    let audio = input.streams().best(Type::Audio);
    let audio_codec = match &audio {
        Some(stream) => {
            let id = stream.parameters().id();
            if !audio_accepted(id) {
                return Err(VodError::UnsupportedAudio(id.name().to_owned()));
            }
            Some(id.name().to_owned())
        }
        None => None,
    };
    // AV_TIME_BASE is microseconds.
    let duration_ms = u64::try_from(input.duration()).ok().map(|us| us / 1000);
    if let Some(ms) = duration_ms
        && ms > max_duration_ms
    {
        return Err(VodError::TooLong {
            secs: ms / 1000,
            max_secs: max_duration_ms / 1000,
        });
    }
    Ok(Probe {
        format,
        duration_ms: duration_ms.filter(|ms| *ms > 0),
        video_codec: video_id.name().to_owned(),
        width,
        height,
        audio_codec,
        video_stream: video.index(),
        audio_stream: audio.map(|a| a.index()),
    })
}
