//! Why an upload was refused or its job failed.

use ferrocast_storage::StoreError;

/// Why an upload was refused (the file itself) or could not be made into
/// a VOD (the work on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VodError {
    /// FFmpeg cannot read the file as media: not a media file, or a
    /// damaged one.
    #[error("not a media file FFmpeg can read ({0})")]
    NotMedia(String),
    /// The file has no video stream.
    #[error("the file has no video stream")]
    NoVideo,
    /// The video is in a codec uploads do not take.
    #[error("video codec {0} is not accepted (H.264 or HEVC)")]
    UnsupportedVideo(String),
    /// The audio is in a codec uploads do not take.
    #[error("audio codec {0} is not accepted (AAC or Opus)")]
    UnsupportedAudio(String),
    /// The video's picture size is unusable.
    #[error("video size {width}x{height} is unusable")]
    BadSize {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The file is longer than uploads may be.
    #[error("the file lasts {secs} s, more than the {max_secs} s an upload may")]
    TooLong {
        /// Its duration, seconds.
        secs: u64,
        /// The limit, seconds.
        max_secs: u64,
    },
    /// The media could not be decoded, transcoded or packaged (a file
    /// damaged past its header, most often).
    #[error("the media could not be transcoded: {0}")]
    Media(String),
    /// Nothing playable came out of the file.
    #[error("no video could be decoded from the file")]
    NothingDecoded,
    /// The object store refused the VOD's objects, or stayed away too
    /// long.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Local files (the upload, its remuxed copy).
    #[error("{0}")]
    Io(String),
    /// Too many uploads are waiting: try again later.
    #[error("{0} uploads are already waiting to be transcoded; try again later")]
    QueueFull(usize),
    /// The process is stopping.
    #[error("the VOD service is stopping")]
    Stopped,
}

impl VodError {
    /// True when the fault is in the file itself (the uploader's to fix),
    /// false when it lies with this service.
    pub fn is_bad_file(&self) -> bool {
        matches!(
            self,
            VodError::NotMedia(_)
                | VodError::NoVideo
                | VodError::UnsupportedVideo(_)
                | VodError::UnsupportedAudio(_)
                | VodError::BadSize { .. }
                | VodError::TooLong { .. }
                | VodError::Media(_)
                | VodError::NothingDecoded
        )
    }
}

impl From<std::io::Error> for VodError {
    fn from(e: std::io::Error) -> Self {
        VodError::Io(e.to_string())
    }
}
