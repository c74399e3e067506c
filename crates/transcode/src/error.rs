//! The transcoder's error type.
#![forbid(unsafe_code)]

use crate::plan::PlanError;

/// Why the transcoder failed. Each variant names the rung, track or FFmpeg
/// operation it happened in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranscodeError {
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// FFmpeg has no codec of that name (Debian's build has all we use;
    /// a custom build may not).
    #[error("FFmpeg has no {kind} named {name:?}")]
    CodecMissing {
        /// `encoder` or `decoder`.
        kind: &'static str,
        /// FFmpeg's codec name.
        name: String,
    },
    /// An FFmpeg call failed.
    #[error("{op} failed for {subject}: {message}")]
    Ffmpeg {
        /// What was being done (`open encoder`, `scale`, ...).
        op: &'static str,
        /// Which rung or track (`rung 720p (libx264)`, `video track 256`).
        subject: String,
        /// FFmpeg's error text.
        message: String,
    },
    /// An encoder wrote parameter sets our parsers reject.
    #[error("rung {rung}: unusable parameter sets from the encoder: {message}")]
    EncoderParams {
        /// Rung name.
        rung: String,
        /// The parser's complaint.
        message: String,
    },
    /// A rung's worker thread could not start or stopped unexpectedly.
    #[error("rung {rung}: {what}")]
    Worker {
        /// Rung name.
        rung: String,
        /// What went wrong.
        what: String,
    },
    /// Audio that cannot be converted.
    #[error("audio track {track}: {what}")]
    Audio {
        /// Source track id.
        track: u16,
        /// What is wrong.
        what: String,
    },
}

impl TranscodeError {
    /// A closure turning an FFmpeg error into [`TranscodeError::Ffmpeg`].
    pub(crate) fn ffmpeg(
        op: &'static str,
        subject: impl Into<String>,
    ) -> impl FnOnce(ffmpeg_next::Error) -> Self {
        let subject = subject.into();
        move |e| TranscodeError::Ffmpeg {
            op,
            subject,
            message: e.to_string(),
        }
    }
}
