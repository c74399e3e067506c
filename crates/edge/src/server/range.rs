//! Byte ranges of whole objects (RFC 9110 §14): what the edge answers to a
//! `Range` request for a recording's segment or init segment.
//!
//! One range is served (`206` with `Content-Range`); a header that is not
//! a byte range the edge reads (several ranges, another unit, a malformed
//! value) is ignored and the whole object sent, as §14.2 allows; a range
//! that starts past the end is `416` with `Content-Range: bytes */LEN`.

/// What to send for a `Range` header against an object of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole object, `200`.
    Whole,
    /// Bytes `start..=end`, `206`.
    Part {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        end: u64,
    },
    /// Nothing of it can be served, `416`.
    Unsatisfiable,
}

/// Reads `header` (the `Range` value, if any) against an object of `len`
/// bytes.
pub fn answer(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        // `bytes=-N`: the last N bytes.
        ("", suffix) => match number(suffix) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if len > 0 => RangeAnswer::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Whole,
        },
        (first, last) => {
            let Some(start) = number(first) else {
                return RangeAnswer::Whole;
            };
            let end = match last {
                "" => None,
                last => match number(last) {
                    Some(end) if end >= start => Some(end),
                    _ => return RangeAnswer::Whole,
                },
            };
            if start >= len {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Part {
                start,
                end: end.map_or(len - 1, |e| e.min(len - 1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        let part = |start, end| RangeAnswer::Part { start, end };
        for (header, expected) in [
            (None, RangeAnswer::Whole),
            (Some("bytes=0-99"), part(0, 99)),
            (Some("bytes=10-"), part(10, 999)),
            (Some("bytes=900-5000"), part(900, 999)),
            (Some("bytes=-100"), part(900, 999)),
            (Some("bytes=-5000"), part(0, 999)),
            (Some("bytes=1000-"), RangeAnswer::Unsatisfiable),
            (Some("bytes=-0"), RangeAnswer::Unsatisfiable),
            (Some("bytes=0-1,5-6"), RangeAnswer::Whole),
            (Some("items=0-1"), RangeAnswer::Whole),
            (Some("bytes=5-1"), RangeAnswer::Whole),
            (Some("bytes=x-1"), RangeAnswer::Whole),
            (Some("bytes=+1-2"), RangeAnswer::Whole),
            (Some("bytes=-"), RangeAnswer::Whole),
        ] {
            assert_eq!(answer(header, 1000), expected, "{header:?}");
        }
        assert_eq!(answer(Some("bytes=0-"), 0), RangeAnswer::Unsatisfiable);
    }

    proptest! {
        #[test]
        fn a_part_always_lies_inside_the_object(header in "\\PC{0,40}", len in 0u64..10_000) {
            if let RangeAnswer::Part { start, end } = answer(Some(&header), len) {
                prop_assert!(start <= end && end < len);
            }
        }

        #[test]
        fn well_formed_ranges_are_served(start in 0u64..2000, extra in 0u64..2000, len in 1u64..2000) {
            let header = format!("bytes={start}-{}", start + extra);
            match answer(Some(&header), len) {
                RangeAnswer::Part { start: s, end } => {
                    prop_assert_eq!(s, start);
                    prop_assert_eq!(end, (start + extra).min(len - 1));
                }
                RangeAnswer::Unsatisfiable => prop_assert!(start >= len),
                RangeAnswer::Whole => prop_assert!(false, "well formed"),
            }
        }
    }
}
