//! Stream names: the one identifier a stream has from ingest to URL.

use std::fmt;

/// The application prefix every stream lives under (`live/NAME`).
pub const APP: &str = "live";

/// Longest accepted stream name, in bytes.
pub const MAX_LEN: usize = 64;

/// A validated stream name: `NAME` of `live/NAME`.
///
/// 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`, not starting
/// with `.`. It is safe in a URL path segment, a file name and a log line as
/// it is, which is why it is checked once here and trusted afterwards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamName(String);

/// Why a string is not a [`StreamName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamNameError {
    /// Empty or longer than [`MAX_LEN`].
    #[error("stream name must be 1 to {MAX_LEN} bytes long")]
    Length,
    /// A character outside `[A-Za-z0-9._-]`, or a leading `.`.
    #[error(
        "stream name may hold only ASCII letters, digits, '-', '_' and '.', and may not start with '.'"
    )]
    Character,
}

impl StreamName {
    /// Validate a bare name (`NAME`).
    pub fn new(name: &str) -> Result<Self, StreamNameError> {
        if name.is_empty() || name.len() > MAX_LEN {
            return Err(StreamNameError::Length);
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if name.starts_with('.') || !name.bytes().all(allowed) {
            return Err(StreamNameError::Character);
        }
        Ok(StreamName(name.to_owned()))
    }

    /// Validate a resource path `live/NAME`.
    pub fn from_resource(resource: &str) -> Result<Self, StreamNameError> {
        match resource.strip_prefix(APP).and_then(|r| r.strip_prefix('/')) {
            Some(name) => StreamName::new(name),
            None => Err(StreamNameError::Character),
        }
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{APP}/{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(StreamName::new("cam-1_a.b").unwrap().as_str(), "cam-1_a.b");
        assert_eq!(
            StreamName::from_resource("live/x").unwrap().to_string(),
            "live/x"
        );
    }

    #[test]
    fn rejects_anything_path_like() {
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "é",
            "a%2e",
            &"x".repeat(65),
        ] {
            assert!(StreamName::new(bad).is_err(), "{bad:?}");
        }
        assert!(StreamName::from_resource("vod/x").is_err());
        assert!(StreamName::from_resource("live/../x").is_err());
        assert!(StreamName::from_resource("livex").is_err());
    }
}
