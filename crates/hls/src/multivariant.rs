//! The Multivariant Playlist: one `EXT-X-STREAM-INF` per rendition, and
//! an `EXT-X-MEDIA` for the audio when it is a rendition of its own.

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

impl Variant {
    /// This variant played with an audio rendition whose own figures are
    /// `audio` (its `CODECS` and bit rates): its codecs listed after this
    /// variant's, its bit rates added, as §4.4.6.2 asks of a variant whose
    /// renditions are played together.
    pub fn add_audio(&mut self, audio: &Variant) {
        self.codecs = format!("{},{}", self.codecs, audio.codecs);
        self.bandwidth = self.bandwidth.saturating_add(audio.bandwidth);
        self.average_bandwidth = self
            .average_bandwidth
            .zip(audio.average_bandwidth)
            .map(|(v, a)| v.saturating_add(a));
    }
}

/// The `GROUP-ID` (and `NAME`) of a stream's audio rendition.
pub const AUDIO_GROUP_ID: &str = "audio";

/// An audio rendition every variant plays with (RFC 8216bis §4.4.6.1,
/// `EXT-X-MEDIA:TYPE=AUDIO`), its group named on each `EXT-X-STREAM-INF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRendition {
    /// `GROUP-ID` (also each variant's `AUDIO`) and `NAME`.
    pub group_id: String,
    /// Media Playlist URI, relative to the Multivariant Playlist.
    pub uri: String,
    /// `CHANNELS`: "the count of audio channels", when known.
    pub channels: Option<u32>,
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
    /// The audio rendition's URI or group cannot be written.
    #[error("audio rendition: {reason}")]
    Audio {
        /// What is wrong.
        reason: InvalidValue,
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
    render_multivariant_with_audio(variants, None, independent_segments)
}

/// [`render_multivariant`], every variant playing with the audio rendition
/// `audio` when there is one: an `EXT-X-MEDIA:TYPE=AUDIO` tag (the default
/// and only choice of its group) and `AUDIO` on each `EXT-X-STREAM-INF`.
/// Each variant's `CODECS` and `BANDWIDTH` must already count the audio
/// (§4.4.6.2: CODECS lists "every media format present in any Media
/// Segment in any of the Renditions"; BANDWIDTH is the peak of "any
/// playable combination of Renditions").
///
/// ```
/// use ferrocast_hls::{AudioRendition, Variant, render_multivariant_with_audio};
/// let video = Variant {
///     uri: "stream.m3u8".into(),
///     bandwidth: 2_564_000,
///     average_bandwidth: None,
///     codecs: "avc1.64001f,mp4a.40.2".into(),
///     resolution: Some((1280, 720)),
///     frame_rate: Some((30, 1)),
/// };
/// let audio = AudioRendition {
///     group_id: "audio".into(),
///     uri: "audio/stream.m3u8".into(),
///     channels: Some(2),
/// };
/// let text = render_multivariant_with_audio(&[video], Some(&audio), true).unwrap();
/// assert!(text.contains(
///     "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,\
///      AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio/stream.m3u8\"\n"
/// ));
/// assert!(text.contains(",FRAME-RATE=30.000,AUDIO=\"audio\"\nstream.m3u8\n"));
/// ```
pub fn render_multivariant_with_audio(
    variants: &[Variant],
    audio: Option<&AudioRendition>,
    independent_segments: bool,
) -> Result<String, MultivariantError> {
    if let Some(audio) = audio {
        check_playlist_text(&audio.uri).map_err(|reason| MultivariantError::Audio { reason })?;
        check_playlist_text(&audio.group_id)
            .map_err(|reason| MultivariantError::Audio { reason })?;
    }
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
    if let Some(audio) = audio {
        // §4.4.6.1: TYPE, GROUP-ID and NAME are required; DEFAULT=YES with
        // AUTOSELECT=YES, as the only rendition of its group.
        let _ = write!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{0}\",NAME=\"{0}\",DEFAULT=YES,AUTOSELECT=YES",
            audio.group_id
        );
        if let Some(channels) = audio.channels {
            let _ = write!(out, ",CHANNELS=\"{channels}\"");
        }
        let _ = writeln!(out, ",URI=\"{}\"", audio.uri);
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
        if let Some(audio) = audio {
            let _ = write!(out, ",AUDIO=\"{}\"", audio.group_id);
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
