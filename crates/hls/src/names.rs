//! The fixed naming scheme of the resources a window publishes, and its
//! strict parser.
//!
//! | resource | name |
//! |---|---|
//! | Media Initialization Section, generation `N` | `init{N}.mp4` |
//! | Partial Segment `i` of Media Segment `m` | `part{m}.{i}.m4s` |
//! | Media Segment `m` | `seg{m}.m4s` |
//!
//! Names come back from clients as the last path component of a URL, so the
//! parser is strict: a fixed ASCII prefix and suffix around canonical decimal
//! numbers (ASCII digits only, no sign, no leading zero, bounded length). Any
//! name it accepts is one the window could have written, and none contains
//! `/`, `\`, `..` or a percent sign.

use std::fmt;

/// The longest name [`ResourceName::parse`] looks at; longer input is
/// rejected before any other work. `part` + 20 + `.` + 10 + `.m4s` is 39.
pub const MAX_NAME_LEN: usize = 40;

/// Digits in `u64::MAX`.
const U64_DIGITS: usize = 20;
/// Digits in `u32::MAX`.
const U32_DIGITS: usize = 10;

/// One Partial Segment: Part Index `index` of the Media Segment with Media
/// Sequence Number `msn`.
///
/// RFC 8216bis §4.4.4.9: "Each Partial Segment has a Part Index, which is an
/// integer indicating the position of the Partial Segment within its Parent
/// Segment. The first Partial Segment has a Part Index of zero."
///
/// Displays as its resource name, `part{msn}.{index}.m4s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartRef {
    /// Media Sequence Number of the Parent Segment.
    pub msn: u64,
    /// Part Index within the Parent Segment, from 0.
    pub index: u32,
}

impl fmt::Display for PartRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "part{}.{}.m4s", self.msn, self.index)
    }
}

/// A resource name of the window's scheme, parsed.
///
/// Displays as the name it was parsed from (names are canonical).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceName {
    /// `init{generation}.mp4`: a Media Initialization Section.
    Init {
        /// The init generation (bumped by the packager when codec
        /// parameters change).
        generation: u32,
    },
    /// `part{msn}.{index}.m4s`: a Partial Segment.
    Part(PartRef),
    /// `seg{msn}.m4s`: a whole Media Segment.
    Segment {
        /// Media Sequence Number.
        msn: u64,
    },
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceName::Init { generation } => write!(f, "init{generation}.mp4"),
            ResourceName::Part(part) => part.fmt(f),
            ResourceName::Segment { msn } => write!(f, "seg{msn}.m4s"),
        }
    }
}

/// Why a resource name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Longer than [`MAX_NAME_LEN`] bytes.
    #[error("resource name is {len} bytes, longer than {MAX_NAME_LEN}")]
    TooLong {
        /// Length of the refused name, in bytes.
        len: usize,
    },
    /// Not of the form `init{N}.mp4`, `part{M}.{I}.m4s` or `seg{M}.m4s`.
    #[error("not a resource name of this server")]
    Unrecognised,
    /// The right shape, but a number in it is not canonical or too large.
    #[error("bad number in resource name: {0}")]
    Number(#[from] NumberError),
    /// A valid name, but of another kind than the caller asked for.
    #[error("resource name is of another kind")]
    WrongKind,
}

/// Why a decimal number (in a name or a query value) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NumberError {
    /// No digits at all.
    #[error("empty")]
    Empty,
    /// A byte other than an ASCII digit `0`-`9`.
    #[error("not an ASCII decimal digit string")]
    NotDigits,
    /// A leading zero on a number other than `0` (names are canonical).
    #[error("leading zero")]
    LeadingZero,
    /// More digits than the target type can hold, or a value above its
    /// maximum.
    #[error("out of range")]
    OutOfRange,
}

impl ResourceName {
    /// Parses a resource name (the last path component of a request URL).
    ///
    /// ```
    /// use ferrocast_hls::{PartRef, ResourceName};
    /// assert_eq!(
    ///     ResourceName::parse("part12.3.m4s"),
    ///     Ok(ResourceName::Part(PartRef { msn: 12, index: 3 }))
    /// );
    /// assert!(ResourceName::parse("../seg1.m4s").is_err());
    /// ```
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: name.len() });
        }
        if let Some(body) = strip(name, "part", ".m4s") {
            let (msn, index) = body.split_once('.').ok_or(NameError::Unrecognised)?;
            return Ok(ResourceName::Part(PartRef {
                msn: parse_canonical_u64(msn)?,
                index: parse_canonical_u32(index)?,
            }));
        }
        if let Some(body) = strip(name, "seg", ".m4s") {
            return Ok(ResourceName::Segment {
                msn: parse_canonical_u64(body)?,
            });
        }
        if let Some(body) = strip(name, "init", ".mp4") {
            return Ok(ResourceName::Init {
                generation: parse_canonical_u32(body)?,
            });
        }
        Err(NameError::Unrecognised)
    }
}

/// Parses a Partial Segment name `part{msn}.{index}.m4s`.
pub fn parse_part_name(name: &str) -> Result<PartRef, NameError> {
    match ResourceName::parse(name)? {
        ResourceName::Part(part) => Ok(part),
        _ => Err(NameError::WrongKind),
    }
}

/// Parses a Media Segment name `seg{msn}.m4s`, giving the Media Sequence
/// Number.
pub fn parse_segment_name(name: &str) -> Result<u64, NameError> {
    match ResourceName::parse(name)? {
        ResourceName::Segment { msn } => Ok(msn),
        _ => Err(NameError::WrongKind),
    }
}

/// Parses a Media Initialization Section name `init{generation}.mp4`, giving
/// the generation.
pub fn parse_init_name(name: &str) -> Result<u32, NameError> {
    match ResourceName::parse(name)? {
        ResourceName::Init { generation } => Ok(generation),
        _ => Err(NameError::WrongKind),
    }
}

fn strip<'a>(name: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)
}

/// ASCII digits only, at most `max_digits` of them.
pub(crate) fn check_digits(s: &str, max_digits: usize) -> Result<(), NumberError> {
    if s.is_empty() {
        return Err(NumberError::Empty);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumberError::NotDigits);
    }
    if s.len() > max_digits {
        return Err(NumberError::OutOfRange);
    }
    Ok(())
}

/// A decimal-integer (RFC 8216bis §4.2: "an unquoted string of characters
/// from the set [0..9]"), leading zeros allowed, into a `u64`.
pub(crate) fn parse_decimal_u64(s: &str) -> Result<u64, NumberError> {
    check_digits(s, U64_DIGITS)?;
    s.parse().map_err(|_| NumberError::OutOfRange)
}

/// As [`parse_decimal_u64`], into a `u32`.
pub(crate) fn parse_decimal_u32(s: &str) -> Result<u32, NumberError> {
    check_digits(s, U32_DIGITS)?;
    s.parse().map_err(|_| NumberError::OutOfRange)
}

fn check_canonical(s: &str) -> Result<(), NumberError> {
    if s.len() > 1 && s.starts_with('0') {
        return Err(NumberError::LeadingZero);
    }
    Ok(())
}

fn parse_canonical_u64(s: &str) -> Result<u64, NumberError> {
    let n = parse_decimal_u64(s)?;
    check_canonical(s)?;
    Ok(n)
}

fn parse_canonical_u32(s: &str) -> Result<u32, NumberError> {
    let n = parse_decimal_u32(s)?;
    check_canonical(s)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            ResourceName::parse("init0.mp4"),
            Ok(ResourceName::Init { generation: 0 })
        );
        assert_eq!(parse_init_name("init42.mp4"), Ok(42));
        assert_eq!(parse_segment_name("seg0.m4s"), Ok(0));
        assert_eq!(
            parse_segment_name("seg18446744073709551615.m4s"),
            Ok(u64::MAX)
        );
        assert_eq!(
            parse_part_name("part7.0.m4s"),
            Ok(PartRef { msn: 7, index: 0 })
        );
        assert_eq!(
            parse_part_name("part18446744073709551615.4294967295.m4s"),
            Ok(PartRef {
                msn: u64::MAX,
                index: u32::MAX
            })
        );
    }

    #[test]
    fn rejects_wrong_kind() {
        assert_eq!(parse_part_name("seg1.m4s"), Err(NameError::WrongKind));
        assert_eq!(parse_segment_name("init1.mp4"), Err(NameError::WrongKind));
        assert_eq!(parse_init_name("part1.2.m4s"), Err(NameError::WrongKind));
    }

    #[test]
    fn rejects_hostile_and_malformed_names() {
        let bad = [
            "",
            "../seg1.m4s",
            "seg1.m4s/..",
            "part1.2.m4s/..",
            "..%2Fseg1.m4s",
            "seg-1.m4s",
            "seg+1.m4s",
            "seg 1.m4s",
            "seg1.m4s ",
            "seg1.m4s\0",
            "seg.m4s",
            "seg01.m4s",
            "seg1.mp4",
            "init1.m4s",
            "SEG1.m4s",
            "part1.m4s",
            "part1..m4s",
            "part.1.m4s",
            "part1.2.3.m4s",
            "part1.02.m4s",
            "seg18446744073709551616.m4s", // u64::MAX + 1
            "part1.4294967296.m4s",        // u32::MAX + 1
            "seg١.m4s",                    // Arabic-Indic digit one
            "seg１.m4s",                   // fullwidth digit one
            "seg\u{0661}\u{0662}.m4s",
            "seg1.m4s?x=1",
            "/seg1.m4s",
            "seg1\\..\\.m4s",
        ];
        for name in bad {
            assert!(ResourceName::parse(name).is_err(), "accepted {name:?}");
        }
        let long = format!("seg{}.m4s", "1".repeat(100));
        assert_eq!(
            ResourceName::parse(&long),
            Err(NameError::TooLong { len: long.len() })
        );
        assert_eq!(
            ResourceName::parse("seg123456789012345678901.m4s"),
            Err(NameError::Number(NumberError::OutOfRange))
        );
    }

    proptest! {
        #[test]
        fn round_trips(msn in any::<u64>(), index in any::<u32>(), generation in any::<u32>()) {
            for name in [
                ResourceName::Part(PartRef { msn, index }),
                ResourceName::Segment { msn },
                ResourceName::Init { generation },
            ] {
                let text = name.to_string();
                prop_assert!(text.len() <= MAX_NAME_LEN);
                prop_assert_eq!(ResourceName::parse(&text), Ok(name));
            }
        }

        #[test]
        fn accepted_names_are_canonical_and_safe(s in "\\PC{0,48}") {
            if let Ok(name) = ResourceName::parse(&s) {
                prop_assert_eq!(name.to_string(), s.clone());
                prop_assert!(!s.contains('/') && !s.contains('\\') && !s.contains(".."));
            }
        }

        #[test]
        fn near_misses_never_panic(s in "(part|seg|init)[0-9.\\-+ ]{0,30}(\\.m4s|\\.mp4)?") {
            if let Ok(name) = ResourceName::parse(&s) {
                prop_assert_eq!(name.to_string(), s);
            }
        }
    }
}
