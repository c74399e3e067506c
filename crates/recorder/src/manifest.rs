//! The small JSON objects of a recording: the open marker, each init
//! generation's tracks, and the summary of a closed recording.

use serde::{Deserialize, Serialize};

/// Longest JSON object of a recording read back from the store; anything
/// larger is not one of ours.
pub const MAX_JSON: usize = 64 * 1024;

/// `.open/STREAM/ID`: a recording being written, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenMarker {
    /// The stream.
    pub stream: String,
    /// The recording id.
    pub recording: String,
    /// The writer's fencing epoch (0 for `ferrocast up`).
    pub epoch: u64,
    /// Which process writes it (host and process id), for operators.
    pub writer: String,
    /// When the recording started, ms since the Unix epoch.
    pub started_ms: i64,
    /// When the writer last said it is still writing; a marker whose
    /// heartbeat is older than the closer's `stale_after` belongs to a
    /// writer that is gone.
    pub heartbeat_ms: i64,
}

/// `tracks-gG-eE.json`: what a variant needs of an init generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TracksInfo {
    /// `CODECS`, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Video width and height.
    pub resolution: Option<(u32, u32)>,
    /// Video frame rate as a fraction.
    pub frame_rate: Option<(u32, u32)>,
}

impl TracksInfo {
    /// From the tracks of an init segment.
    pub fn of(tracks: &[ferrocast_media::TrackInfo]) -> Self {
        use ferrocast_media::TrackKind;
        let codecs: Vec<String> = tracks.iter().map(|t| t.params.codec_string()).collect();
        let video = tracks.iter().find(|t| t.kind() == TrackKind::Video);
        TracksInfo {
            codecs: codecs.join(","),
            resolution: video.and_then(|t| t.params.resolution()),
            frame_rate: video.and_then(|t| t.params.frame_rate()),
        }
    }
}

/// How a recording was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// Its writer, when the stream ended.
    Writer,
    /// Another process, after its writer stopped without closing it.
    Recovery,
    /// Not live: an uploaded file, transcoded and packaged as VOD.
    Upload,
}

/// `recording.json`: a closed recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The stream.
    pub stream: String,
    /// The recording id.
    pub recording: String,
    /// Program date time of its first segment, ms since the Unix epoch.
    pub started_ms: i64,
    /// Total duration of its longest rendition, ms.
    pub duration_ms: i64,
    /// Its renditions, with their segment counts.
    pub renditions: Vec<RenditionSummary>,
    /// Who closed it.
    pub closed_by: ClosedBy,
}

/// One rendition of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionSummary {
    /// Its name (`source`, `720p`, …).
    pub name: String,
    /// Segments in its playlist.
    pub segments: u64,
    /// Their total duration, ms.
    pub duration_ms: i64,
}

/// Why a JSON object of a recording could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct BadObject {
    /// The object's key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Reads one of our JSON objects, refusing anything over [`MAX_JSON`].
pub fn read<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, BadObject> {
    if bytes.len() > MAX_JSON {
        return Err(BadObject {
            key: key.to_owned(),
            reason: format!("{} bytes, more than {MAX_JSON}", bytes.len()),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| BadObject {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// Writes one of our JSON objects.
pub fn write<T: Serialize>(value: &T) -> bytes::Bytes {
    // Serialising these plain structs cannot fail.
    bytes::Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}
