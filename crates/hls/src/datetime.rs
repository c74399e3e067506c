//! `EXT-X-PROGRAM-DATE-TIME` values, formatted from Unix milliseconds.
//!
//! RFC 8216bis §4.4.4.6: "The EXT-X-PROGRAM-DATE-TIME tag associates the
//! first sample of a Media Segment with an absolute date and/or time. ...
//! `#EXT-X-PROGRAM-DATE-TIME:<date-time-msec>` where date-time-msec is an
//! ISO/IEC 8601:2004 date/time representation, such as
//! YYYY-MM-DDThh:mm:ss.SSSZ."
//!
//! Done by hand (no calendar crate): the proleptic Gregorian calendar in UTC
//! needs one days-to-civil conversion, which is small and tested here against
//! known dates.

use std::fmt::Write;

const MS_PER_DAY: i64 = 86_400_000;

/// Formats `unix_ms` (milliseconds since 1970-01-01T00:00:00Z) as
/// `YYYY-MM-DDThh:mm:ss.SSSZ`.
///
/// Every `i64` is accepted; years outside 0..=9999 print with more digits or
/// a sign, which no real clock produces.
///
/// ```
/// assert_eq!(
///     ferrocast_hls::format_program_date_time(1_700_000_000_123),
///     "2023-11-14T22:13:20.123Z"
/// );
/// ```
pub fn format_program_date_time(unix_ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_program_date_time(&mut out, unix_ms);
    out
}

/// Appends the formatted date-time of [`format_program_date_time`] to `out`.
pub(crate) fn write_program_date_time(out: &mut String, unix_ms: i64) {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let hour = ms_of_day / 3_600_000;
    let minute = ms_of_day / 60_000 % 60;
    let second = ms_of_day / 1_000 % 60;
    let milli = ms_of_day % 1_000;
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
    );
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic
/// Gregorian. Howard Hinnant's `civil_from_days`: shift the year to start on
/// 1 March so the leap day is last, then split into 400-year eras.
///
/// No intermediate overflows for any `i64` day count that comes from an `i64`
/// of milliseconds (|days| < 1.1e14).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction: month in 1..=12, day in 1..=31.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_program_date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_program_date_time(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        // Leap day and the turn of a century that is a leap year.
        assert_eq!(
            format_program_date_time(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date_time(1_709_251_199_999),
            "2024-02-29T23:59:59.999Z"
        );
        // 2100 is not a leap year: 28 Feb is followed by 1 Mar.
        assert_eq!(
            format_program_date_time(4_107_542_400_000),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(format_program_date_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            format_program_date_time(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
    }

    /// The inverse (days_from_civil), to check the conversion round-trips.
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    proptest! {
        #[test]
        fn civil_round_trips(days in -10_000_000i64..10_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m));
            prop_assert!((1..=31).contains(&d));
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn never_panics(ms in any::<i64>()) {
            let s = format_program_date_time(ms);
            prop_assert!(s.ends_with('Z'));
        }
    }
}
