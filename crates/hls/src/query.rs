//! Delivery Directives: the `_HLS_msn`, `_HLS_part` and `_HLS_skip` query
//! parameters of a Media Playlist request, parsed strictly (they are network
//! input).
//!
//! RFC 8216bis §6.2.5 (Delivery Directives Interface), as recalled from the
//! draft:
//!
//! - "_HLS_msn=&lt;M&gt;: Indicates that the Server must hold the request until a
//!   Playlist contains a Media Segment with Media Sequence Number of M or
//!   later."
//! - "_HLS_part=&lt;N&gt;: Used in combination with _HLS_msn to indicate that the
//!   Server must hold the request until a Playlist contains Partial Segment N
//!   of Media Sequence Number of M or later. ... If the _HLS_part directive
//!   is present without a corresponding _HLS_msn, the Server MUST return
//!   Bad Request, such as HTTP 400."
//! - "_HLS_skip=YES|v2: Requests a Playlist Delta Update".

use crate::names::{NumberError, parse_decimal_u32, parse_decimal_u64};

/// What a blocking request waits for: Media Segment `msn`, or Partial
/// Segment `part` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockTarget {
    /// `_HLS_msn`: the Media Sequence Number waited for.
    pub msn: u64,
    /// `_HLS_part`: the Part Index waited for, if given.
    pub part: Option<u32>,
}

/// The `_HLS_skip` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SkipRequest {
    /// Absent: the full Playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: a Playlist Delta Update skipping Media Segments.
    Yes,
    /// `_HLS_skip=v2`: also skip old EXT-X-DATERANGE tags. This server writes
    /// no date ranges and does not advertise CAN-SKIP-DATERANGES, so it
    /// answers `v2` as `YES`.
    V2,
}

impl SkipRequest {
    /// Whether a Playlist Delta Update was asked for.
    pub fn wants_delta(self) -> bool {
        !matches!(self, SkipRequest::No)
    }
}

/// The Delivery Directives of one Media Playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PlaylistRequest {
    /// Blocking Playlist Reload target, if `_HLS_msn` was given.
    pub block: Option<BlockTarget>,
    /// Playlist Delta Update request.
    pub skip: SkipRequest,
}

/// Which query parameter a [`QueryError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryParam {
    /// `_HLS_msn`.
    Msn,
    /// `_HLS_part`.
    Part,
    /// `_HLS_skip`.
    Skip,
}

impl std::fmt::Display for QueryParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryParam::Msn => "_HLS_msn",
            QueryParam::Part => "_HLS_part",
            QueryParam::Skip => "_HLS_skip",
        })
    }
}

/// A malformed Delivery Directive; every variant means HTTP 400.
///
/// The refused value is not kept: it is untrusted input of any length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// `_HLS_part` without `_HLS_msn` (RFC 8216bis §6.2.5: "the Server MUST
    /// return Bad Request").
    #[error("_HLS_part given without _HLS_msn")]
    PartWithoutMsn,
    /// `_HLS_msn` or `_HLS_part` is not a decimal-integer in range.
    #[error("{param} is not a valid decimal-integer: {reason}")]
    BadNumber {
        /// The parameter.
        param: QueryParam,
        /// What is wrong with it.
        reason: NumberError,
    },
    /// `_HLS_skip` is neither `YES` nor `v2`.
    #[error("_HLS_skip must be YES or v2")]
    BadSkip,
    /// A directive given more than once.
    #[error("{0} given more than once")]
    Duplicate(QueryParam),
    /// The query string is longer than [`MAX_QUERY_LEN`].
    #[error("query string longer than {MAX_QUERY_LEN} bytes")]
    TooLong,
}

/// The longest query string [`PlaylistRequest::from_query`] reads.
pub const MAX_QUERY_LEN: usize = 1024;

impl PlaylistRequest {
    /// Parses the raw (already percent-decoded) values of `_HLS_msn`,
    /// `_HLS_part` and `_HLS_skip`; `None` where the parameter is absent.
    ///
    /// The HTTP layer should refuse a request naming one parameter twice
    /// before calling this. Numbers are ASCII digits only (no sign, no
    /// spaces), at most 20 digits for `_HLS_msn` and 10 for `_HLS_part`, and
    /// must fit `u64` / `u32`.
    ///
    /// ```
    /// use ferrocast_hls::{BlockTarget, PlaylistRequest, QueryError};
    /// let req = PlaylistRequest::parse(Some("273"), Some("2"), None).unwrap();
    /// assert_eq!(req.block, Some(BlockTarget { msn: 273, part: Some(2) }));
    /// assert_eq!(
    ///     PlaylistRequest::parse(None, Some("2"), None),
    ///     Err(QueryError::PartWithoutMsn)
    /// );
    /// ```
    pub fn parse(
        msn: Option<&str>,
        part: Option<&str>,
        skip: Option<&str>,
    ) -> Result<Self, QueryError> {
        let msn = msn
            .map(|v| {
                parse_decimal_u64(v).map_err(|reason| QueryError::BadNumber {
                    param: QueryParam::Msn,
                    reason,
                })
            })
            .transpose()?;
        let part = part
            .map(|v| {
                parse_decimal_u32(v).map_err(|reason| QueryError::BadNumber {
                    param: QueryParam::Part,
                    reason,
                })
            })
            .transpose()?;
        let block = match (msn, part) {
            (None, Some(_)) => return Err(QueryError::PartWithoutMsn),
            (None, None) => None,
            (Some(msn), part) => Some(BlockTarget { msn, part }),
        };
        let skip = match skip {
            None => SkipRequest::No,
            Some("YES") => SkipRequest::Yes,
            Some("v2") => SkipRequest::V2,
            Some(_) => return Err(QueryError::BadSkip),
        };
        Ok(PlaylistRequest { block, skip })
    }

    /// Parses the Delivery Directives out of a raw query string (the part
    /// after `?`, e.g. `_HLS_msn=273&_HLS_part=2`), then as
    /// [`PlaylistRequest::parse`].
    ///
    /// Other parameters (a token, a cache buster) are ignored. A directive
    /// given twice is refused. No percent-decoding is done: valid values
    /// (digits, `YES`, `v2`) never need it, so an encoded value is refused
    /// as malformed.
    pub fn from_query(query: &str) -> Result<Self, QueryError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong);
        }
        let (mut msn, mut part, mut skip) = (None, None, None);
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (slot, param) = match key {
                "_HLS_msn" => (&mut msn, QueryParam::Msn),
                "_HLS_part" => (&mut part, QueryParam::Part),
                "_HLS_skip" => (&mut skip, QueryParam::Skip),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(QueryError::Duplicate(param));
            }
        }
        PlaylistRequest::parse(msn, part, skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_directives() {
        assert_eq!(
            PlaylistRequest::parse(None, None, None),
            Ok(PlaylistRequest::default())
        );
        assert_eq!(
            PlaylistRequest::parse(Some("5"), None, Some("YES")),
            Ok(PlaylistRequest {
                block: Some(BlockTarget { msn: 5, part: None }),
                skip: SkipRequest::Yes
            })
        );
        assert_eq!(
            PlaylistRequest::parse(Some("007"), Some("0"), Some("v2")),
            Ok(PlaylistRequest {
                block: Some(BlockTarget {
                    msn: 7,
                    part: Some(0)
                }),
                skip: SkipRequest::V2
            })
        );
        assert!(SkipRequest::V2.wants_delta() && !SkipRequest::No.wants_delta());
    }

    #[test]
    fn rejects_bad_values() {
        let num = |param, reason| Err(QueryError::BadNumber { param, reason });
        assert_eq!(
            PlaylistRequest::parse(None, Some("1"), None),
            Err(QueryError::PartWithoutMsn)
        );
        assert_eq!(
            PlaylistRequest::parse(Some(""), None, None),
            num(QueryParam::Msn, NumberError::Empty)
        );
        for v in ["-1", "+1", " 1", "1 ", "0x10", "1e3", "١", "1.0"] {
            assert_eq!(
                PlaylistRequest::parse(Some(v), None, None),
                num(QueryParam::Msn, NumberError::NotDigits),
                "{v:?}"
            );
        }
        assert_eq!(
            PlaylistRequest::parse(Some("18446744073709551616"), None, None),
            num(QueryParam::Msn, NumberError::OutOfRange)
        );
        assert_eq!(
            PlaylistRequest::parse(Some(&"9".repeat(4096)), None, None),
            num(QueryParam::Msn, NumberError::OutOfRange)
        );
        assert_eq!(
            PlaylistRequest::parse(Some("1"), Some("4294967296"), None),
            num(QueryParam::Part, NumberError::OutOfRange)
        );
        for v in ["yes", "NO", "", "YES ", "v3"] {
            assert_eq!(
                PlaylistRequest::parse(None, None, Some(v)),
                Err(QueryError::BadSkip)
            );
        }
    }

    #[test]
    fn from_query_string() {
        assert_eq!(
            PlaylistRequest::from_query(""),
            Ok(PlaylistRequest::default())
        );
        assert_eq!(
            PlaylistRequest::from_query("token=abc&_HLS_msn=273&_HLS_part=2&_HLS_skip=YES"),
            Ok(PlaylistRequest {
                block: Some(BlockTarget {
                    msn: 273,
                    part: Some(2)
                }),
                skip: SkipRequest::Yes
            })
        );
        assert_eq!(
            PlaylistRequest::from_query("_HLS_msn=1&_HLS_msn=2"),
            Err(QueryError::Duplicate(QueryParam::Msn))
        );
        assert_eq!(
            PlaylistRequest::from_query("_HLS_part=2"),
            Err(QueryError::PartWithoutMsn)
        );
        assert!(PlaylistRequest::from_query("_HLS_msn").is_err());
        assert!(PlaylistRequest::from_query("_HLS_msn=%31").is_err());
        assert_eq!(
            PlaylistRequest::from_query(&"a".repeat(MAX_QUERY_LEN + 1)),
            Err(QueryError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn from_query_never_panics(q in "\\PC{0,80}") {
            let _ = PlaylistRequest::from_query(&q);
        }

        #[test]
        fn never_panics(
            msn in proptest::option::of("\\PC{0,40}"),
            part in proptest::option::of("\\PC{0,40}"),
            skip in proptest::option::of("\\PC{0,8}"),
        ) {
            let _ = PlaylistRequest::parse(msn.as_deref(), part.as_deref(), skip.as_deref());
        }

        #[test]
        fn numbers_round_trip(msn in any::<u64>(), part in any::<u32>()) {
            let req = PlaylistRequest::parse(
                Some(&msn.to_string()),
                Some(&part.to_string()),
                None,
            );
            prop_assert_eq!(
                req,
                Ok(PlaylistRequest {
                    block: Some(BlockTarget { msn, part: Some(part) }),
                    skip: SkipRequest::No
                })
            );
        }
    }
}
