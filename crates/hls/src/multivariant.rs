//! The Multivariant Playlist: one `EXT-X-STREAM-INF` per rendition.

use std::fmt::Write;

use crate::render::{InvalidValue, check_playlist_text};

/// One variant stream (RFC 8216bis §4.4.6.2, EXT-X-STREAM-INF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Media Playlist URI, relative to the Multivariant Playlist
    /// (e.g. `"video_720p.m3u8"`).
    pub uri: String,
    /// `BANDWIDTH`: "the peak segment bit rate of the Variant Stream", bits
    /// per second. Required.
    pub bandwidth: u64,
    /// `AVERAGE-BANDWIDTH`, bits per second.
    pub average_bandwidth: Option<u64>,
    /// `CODECS`, e.g. `"avc1.64001f,mp4a.40.2"`. "Every EXT-X-STREAM-INF tag
    /// SHOULD include a CODECS attribute."
    pub codecs: String,
    /// `RESOLUTION` as (width, height) in pixels.
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE` as a fraction (numerator, denominator) of frames per
    /// second, e.g. `(30_000, 1_001)`; written "rounded to three decimal
    /// places" (§4.4.6.2) with integer arithmetic.
    pub frame_rate: Option<(u32, u32)>,
}

/// Why a Multivariant Playlist could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultivariantError {
    /// No variants at all.
    #[error("a multivariant playlist needs at least one variant")]
    NoVariants,
    /// A variant's URI cannot be written as a URI line.
    #[error("variant {index}: uri {reason}")]
    Uri {
        /// Position of the variant in the input.
        index: usize,
        /// What is wrong.
        reason: InvalidValue,
    },
    /// A variant's CODECS cannot be written as a quoted-string.
    #[error("variant {index}: codecs {reason}")]
    Codecs {
        /// Position of the variant in the input.
        index: usize,
        /// What is wrong.
        reason: InvalidValue,
    },
    /// A frame rate with denominator 0.
    #[error("variant {index}: frame rate has a zero denominator")]
    FrameRate {
        /// Position of the variant in the input.
        index: usize,
    },
    /// `BANDWIDTH` of 0.
    #[error("variant {index}: bandwidth must be positive")]
    ZeroBandwidth {
        /// Position of the variant in the input.
        index: usize,
    },
}

/// Renders a Multivariant Playlist listing `variants` in order.
///
/// `independent_segments` writes `EXT-X-INDEPENDENT-SEGMENTS` (RFC 8216bis
/// §4.4.2.1: "all media samples in a Media Segment can be decoded without
/// information from other segments"), true when every segment starts with
/// a key frame, as ours do.
///
/// ```
/// use ferrocast_hls::{Variant, render_multivariant};
/// let text = render_multivariant(
///     &[Variant {
///         uri: "video.m3u8".into(),
///         bandwidth: 2_500_000,
///         average_bandwidth: None,
///         codecs: "avc1.64001f,mp4a.40.2".into(),
///         resolution: Some((1280, 720)),
///         frame_rate: Some((30, 1)),
///     }],
///     true,
/// )
/// .unwrap();
/// assert!(text.contains("RESOLUTION=1280x720,FRAME-RATE=30.000\nvideo.m3u8\n"));
/// ```
pub fn render_multivariant(
    variants: &[Variant],
    independent_segments: bool,
) -> Result<String, MultivariantError> {
    if variants.is_empty() {
        return Err(MultivariantError::NoVariants);
    }
    for (index, v) in variants.iter().enumerate() {
        check_playlist_text(&v.uri).map_err(|reason| MultivariantError::Uri { index, reason })?;
        check_playlist_text(&v.codecs)
            .map_err(|reason| MultivariantError::Codecs { index, reason })?;
        if v.bandwidth == 0 {
            return Err(MultivariantError::ZeroBandwidth { index });
        }
        if matches!(v.frame_rate, Some((_, 0))) {
            return Err(MultivariantError::FrameRate { index });
        }
    }
    let mut out = String::with_capacity(
        64 + variants
            .iter()
            .map(|v| 128 + v.uri.len() + v.codecs.len())
            .sum::<usize>(),
    );
    // Writing into a String cannot fail; results are ignored below.
    out.push_str("#EXTM3U\n");
    if independent_segments {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for v in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
        if let Some(avg) = v.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={avg}");
        }
        let _ = write!(out, ",CODECS=\"{}\"", v.codecs);
        if let Some((w, h)) = v.resolution {
            // §4.4.6.2: "RESOLUTION: The value is a decimal-resolution".
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some((num, den)) = v.frame_rate.filter(|(_, den)| *den > 0) {
            // Rounded half up to thousandths.
            let (num, den) = (u64::from(num), u64::from(den));
            let millis = (num * 1000 + den / 2) / den;
            let _ = write!(out, ",FRAME-RATE={}.{:03}", millis / 1000, millis % 1000);
        }
        // §4.4.6.2: "The URI line that follows the EXT-X-STREAM-INF tag
        // specifies a Media Playlist".
        let _ = write!(out, "\n{}\n", v.uri);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant() -> Variant {
        Variant {
            uri: "v.m3u8".into(),
            bandwidth: 1,
            average_bandwidth: Some(1),
            codecs: "avc1.42e01e".into(),
            resolution: None,
            frame_rate: Some((30_000, 1_001)),
        }
    }

    #[test]
    fn refuses_bad_variants() {
        assert_eq!(
            render_multivariant(&[], true),
            Err(MultivariantError::NoVariants)
        );
        let mut v = variant();
        v.uri = "#x".into();
        assert_eq!(
            render_multivariant(&[variant(), v], false),
            Err(MultivariantError::Uri {
                index: 1,
                reason: InvalidValue::LeadingHash
            })
        );
        let mut v = variant();
        v.codecs = "a\"b".into();
        assert!(matches!(
            render_multivariant(&[v], false),
            Err(MultivariantError::Codecs { index: 0, .. })
        ));
        let mut v = variant();
        v.frame_rate = Some((30, 0));
        assert_eq!(
            render_multivariant(&[v], false),
            Err(MultivariantError::FrameRate { index: 0 })
        );
        let mut v = variant();
        v.bandwidth = 0;
        assert!(matches!(
            render_multivariant(&[v], false),
            Err(MultivariantError::ZeroBandwidth { index: 0 })
        ));
    }

    #[test]
    fn writes_attributes() {
        let text = render_multivariant(&[variant()], false).unwrap();
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1,\
             CODECS=\"avc1.42e01e\",FRAME-RATE=29.970\nv.m3u8\n"
        );
    }
}
