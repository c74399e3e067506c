//! Rendition names and where each rendition's Media Playlist lives
//! relative to the others.
//!
//! A stream `NAME` is served as a set of renditions. The source rendition
//! (the publisher's own media, [`RenditionName::source`]) keeps the paths a
//! single-rendition stream has always had; every other rendition (a rung of
//! a transcoding ladder, e.g. `720p`) lives one directory down:
//!
//! | rendition | Media Playlist, relative to `/live/NAME/` |
//! |---|---|
//! | source | `stream.m3u8` |
//! | `720p` | `720p/stream.m3u8` |
//! | audio, when in a rendition of its own | `audio/stream.m3u8` |
//!
//! Names come from URLs and from bus stream names (`NAME/RUNG`), so the
//! parser is strict: 1 to [`MAX_RENDITION_LEN`] bytes of
//! `[A-Za-z0-9._-]`, not starting with `.` (so never `.` or `..`).

use std::fmt;

/// The longest rendition name accepted.
pub const MAX_RENDITION_LEN: usize = 32;

/// The name of the source rendition.
const SOURCE: &str = "source";

/// The name of the audio rendition (audio packaged apart from the video).
const AUDIO: &str = "audio";

/// The file name of every rendition's Media Playlist.
pub const MEDIA_PLAYLIST_NAME: &str = "stream.m3u8";

/// A validated rendition name: `source`, or a rung such as `720p`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RenditionName(String);

/// Why a string is not a [`RenditionName`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenditionNameError {
    /// Empty, or longer than [`MAX_RENDITION_LEN`] bytes.
    #[error("rendition name is {len} bytes; 1 to {MAX_RENDITION_LEN} allowed")]
    Length {
        /// Length of the refused name, in bytes.
        len: usize,
    },
    /// A byte outside `[A-Za-z0-9._-]`, or a leading `.`.
    #[error(
        "rendition name may hold only ASCII letters, digits, '-', '_' and '.', and may not start with '.'"
    )]
    Character,
}

impl RenditionName {
    /// Validates a rendition name.
    ///
    /// ```
    /// use ferrocast_hls::RenditionName;
    /// assert!(RenditionName::new("720p").is_ok());
    /// assert!(RenditionName::new("..").is_err());
    /// assert!(RenditionName::new("a/b").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self, RenditionNameError> {
        if name.is_empty() || name.len() > MAX_RENDITION_LEN {
            return Err(RenditionNameError::Length { len: name.len() });
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if name.starts_with('.') || !name.bytes().all(allowed) {
            return Err(RenditionNameError::Character);
        }
        Ok(RenditionName(name.to_owned()))
    }

    /// The source rendition, `source`: the publisher's own media.
    pub fn source() -> Self {
        RenditionName(SOURCE.to_owned())
    }

    /// True for the source rendition.
    pub fn is_source(&self) -> bool {
        self.0 == SOURCE
    }

    /// The audio rendition, `audio`: a stream's audio, packaged apart from
    /// its video (`EXT-X-MEDIA:TYPE=AUDIO`). No rung may take this name.
    pub fn audio() -> Self {
        RenditionName(AUDIO.to_owned())
    }

    /// True for the audio rendition.
    pub fn is_audio(&self) -> bool {
        self.0 == AUDIO
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This rendition's Media Playlist URI relative to the Multivariant
    /// Playlist (`/live/NAME/index.m3u8`): `stream.m3u8` for the source,
    /// `RUNG/stream.m3u8` otherwise.
    pub fn playlist_uri(&self) -> String {
        if self.is_source() {
            MEDIA_PLAYLIST_NAME.to_owned()
        } else {
            format!("{}/{MEDIA_PLAYLIST_NAME}", self.0)
        }
    }

    /// The Media Playlist URI of `other`, relative to this rendition's Media
    /// Playlist: what an `EXT-X-RENDITION-REPORT` in this rendition's
    /// playlist says for `other`.
    ///
    /// ```
    /// use ferrocast_hls::RenditionName;
    /// let source = RenditionName::source();
    /// let hd = RenditionName::new("720p").unwrap();
    /// let sd = RenditionName::new("360p").unwrap();
    /// assert_eq!(source.uri_of(&hd), "720p/stream.m3u8");
    /// assert_eq!(hd.uri_of(&source), "../stream.m3u8");
    /// assert_eq!(hd.uri_of(&sd), "../360p/stream.m3u8");
    /// ```
    pub fn uri_of(&self, other: &RenditionName) -> String {
        if self.is_source() {
            other.playlist_uri()
        } else {
            format!("../{}", other.playlist_uri())
        }
    }
}

impl fmt::Display for RenditionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_refuses() {
        for ok in ["720p", "source", "a", "A.b-c_d", &"x".repeat(32)] {
            assert_eq!(RenditionName::new(ok).unwrap().as_str(), ok);
        }
        assert_eq!(
            RenditionName::new(""),
            Err(RenditionNameError::Length { len: 0 })
        );
        assert_eq!(
            RenditionName::new(&"x".repeat(33)),
            Err(RenditionNameError::Length { len: 33 })
        );
        for bad in [
            ".", "..", ".hidden", "a/b", "a\\b", "a%2f", "é", "a b", "a\n",
        ] {
            assert!(RenditionName::new(bad).is_err(), "{bad:?}");
        }
        assert!(RenditionName::new("source").unwrap().is_source());
        assert!(!RenditionName::new("720p").unwrap().is_source());
        assert!(RenditionName::new("audio").unwrap().is_audio());
        assert_eq!(RenditionName::audio().playlist_uri(), "audio/stream.m3u8");
    }

    #[test]
    fn uris() {
        let source = RenditionName::source();
        let hd = RenditionName::new("720p").unwrap();
        assert_eq!(source.playlist_uri(), "stream.m3u8");
        assert_eq!(hd.playlist_uri(), "720p/stream.m3u8");
        assert_eq!(source.uri_of(&hd), "720p/stream.m3u8");
        assert_eq!(hd.uri_of(&source), "../stream.m3u8");
    }

    proptest! {
        /// Whatever is accepted is safe as a path component and in a
        /// playlist URI.
        #[test]
        fn accepted_names_are_safe(s in "\\PC{0,40}") {
            if let Ok(name) = RenditionName::new(&s) {
                prop_assert!(!name.as_str().contains(['/', '\\', '%', '"']));
                prop_assert!(!name.as_str().starts_with('.'));
                prop_assert!(name.as_str().len() <= MAX_RENDITION_LEN);
            }
        }
    }
}
