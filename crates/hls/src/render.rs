//! Media Playlist text of a [`LiveWindow`].
//!
//! One `String`, sized up front, filled with `write!`. Layout:
//!
//! ```text
//! #EXTM3U
//! #EXT-X-VERSION:9
//! #EXT-X-TARGETDURATION:<s>
//! #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=<6 TD>,PART-HOLD-BACK=<3 PT>
//! #EXT-X-PART-INF:PART-TARGET=<PT>
//! #EXT-X-MEDIA-SEQUENCE:<first msn>
//! #EXT-X-DISCONTINUITY-SEQUENCE:<n>
//! [#EXT-X-SKIP:SKIPPED-SEGMENTS=<k>]
//! per segment: [#EXT-X-DISCONTINUITY] [#EXT-X-MAP] #EXT-X-PROGRAM-DATE-TIME
//!              [#EXT-X-PART ...] #EXTINF seg<msn>.m4s
//! open segment: the same tags and its parts, no EXTINF
//! [#EXT-X-PRELOAD-HINT:TYPE=MAP] #EXT-X-PRELOAD-HINT:TYPE=PART | #EXT-X-ENDLIST
//! [#EXT-X-RENDITION-REPORT ...]
//! ```

use std::fmt::Write;

use ferrocast_media::Time90k;

use crate::datetime::write_program_date_time;
use crate::names::{PartRef, ResourceName};
use crate::query::BlockTarget;
use crate::window::{LiveWindow, Segment, ticks_to_ms};

/// `EXT-X-VERSION` of every Media Playlist.
///
/// Compatibility versions (RFC 8216bis §7, as recalled): `EXT-X-MAP` in a
/// playlist without `EXT-X-I-FRAMES-ONLY` "REQUIRES a compatibility version
/// number of 6 or greater"; a Playlist Delta Update (`EXT-X-SKIP`) requires
/// 9. Full playlists and delta updates share one version, so a client never
/// sees it change between reloads.
pub const MEDIA_PLAYLIST_VERSION: u32 = 9;

/// How long the longest quoted string or URI a playlist may carry can be.
pub const MAX_URI_LEN: usize = 1024;

/// How to render one Media Playlist response.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// Produce a Playlist Delta Update (the request had `_HLS_skip=YES` or
    /// `v2`). Falls back to the full playlist when nothing is old enough to
    /// skip.
    pub skip: bool,
    /// `EXT-X-RENDITION-REPORT` lines for the other renditions.
    pub rendition_reports: &'a [RenditionReport],
}

/// An `EXT-X-RENDITION-REPORT` for another rendition (RFC 8216bis §4.4.5.4):
/// its Media Playlist URI, relative to this one, and its newest part (its
/// [`LiveWindow::last_part`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    uri: String,
    last: Option<PartRef>,
}

/// A string that cannot go into a playlist as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidValue {
    /// Empty.
    #[error("empty")]
    Empty,
    /// Longer than [`MAX_URI_LEN`] bytes.
    #[error("longer than {MAX_URI_LEN} bytes")]
    TooLong,
    /// Contains a double quote, CR, LF or another control character (RFC
    /// 8216bis §4.2: a quoted-string "MUST NOT contain CR and/or LF (0xD,
    /// 0xA), or double quote (0x22)"; §4.1: no control characters at all).
    #[error("contains a double quote or a control character")]
    BadCharacter,
    /// A URI line would start with `#` and read as a tag or comment.
    #[error("starts with '#'")]
    LeadingHash,
}

/// Checks a value for a quoted-string attribute or a URI line.
pub(crate) fn check_playlist_text(s: &str) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue::Empty);
    }
    if s.len() > MAX_URI_LEN {
        return Err(InvalidValue::TooLong);
    }
    if s.chars().any(|c| c == '"' || c.is_control()) {
        return Err(InvalidValue::BadCharacter);
    }
    if s.starts_with('#') {
        return Err(InvalidValue::LeadingHash);
    }
    Ok(())
}

impl RenditionReport {
    /// A report for the rendition whose Media Playlist is at `uri` (for
    /// example `"../audio/audio.m3u8"` or `"video_720p.m3u8"`), whose
    /// newest part is `last` (`None` while it has none yet: the report then
    /// carries the URI only).
    pub fn new(uri: &str, last: Option<PartRef>) -> Result<Self, InvalidValue> {
        check_playlist_text(uri)?;
        Ok(RenditionReport {
            uri: uri.to_owned(),
            last,
        })
    }

    /// The rendition's Media Playlist URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The rendition's newest part.
    pub fn last(&self) -> Option<PartRef> {
        self.last
    }
}

/// Writes `ms` milliseconds as seconds with three decimals.
fn write_ms(out: &mut String, ms: i64) {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    // Writing into a String cannot fail.
    let _ = write!(out, "{sign}{}.{:03}", abs / 1000, abs % 1000);
}

/// Writes a 90 kHz duration as seconds with three decimals, rounded half
/// away from zero, in integers only: how every duration of every playlist
/// (live, DVR, VOD) is written.
pub fn write_secs(out: &mut String, t: Time90k) {
    write_ms(out, ticks_to_ms(t));
}

/// One line, `\n`-terminated (RFC 8216bis §4.1: "Each line is a URI, is
/// blank, or starts with the character '#'. ... lines are terminated by
/// either a single line feed character or a carriage return character
/// followed by a line feed character").
fn line(out: &mut String, s: &str) {
    out.push_str(s);
    out.push('\n');
}

impl LiveWindow {
    /// Renders the Media Playlist that answers a blocking request for
    /// `target` (its `_HLS_msn` / `_HLS_part`), once
    /// [`LiveWindow::blocking_status`] says it can be answered: with a
    /// Part Index, the playlist as of the first part that satisfied it
    /// ([`LiveWindow::as_of`]), so each reload adds one part; otherwise,
    /// or when that is the current playlist anyway, [`LiveWindow::render`].
    pub fn render_for(&self, target: BlockTarget, options: &RenderOptions<'_>) -> String {
        let snapshot = target
            .part
            .and_then(|index| {
                self.first_part_from(PartRef {
                    msn: target.msn,
                    index,
                })
            })
            .and_then(|part| self.as_of(part));
        match snapshot {
            Some(window) => window.render(options),
            None => self.render(options),
        }
    }

    /// Renders the Media Playlist.
    ///
    /// With `options.skip`, a Playlist Delta Update (RFC 8216bis §6.2.5.1,
    /// §4.4.5.2) when at least one segment lies wholly before the Skip
    /// Boundary; otherwise the full playlist.
    pub fn render(&self, options: &RenderOptions<'_>) -> String {
        let target = self.cfg.target_duration();
        let three_td = Time90k(target.0.saturating_mul(3));
        let six_td = Time90k(target.0.saturating_mul(6));

        // Time from the end of each listed segment to the end of the
        // playlist (which includes the held and open segments' parts):
        // decides part retention and skipping.
        let open_duration = self
            .held
            .iter()
            .chain(self.open.iter())
            .fold(Time90k::ZERO, |acc, s| {
                Time90k(acc.0.saturating_add(s.duration.0))
            });
        let mut after = Vec::with_capacity(self.listed.len());
        let mut acc = open_duration;
        for s in self.listed.iter().rev() {
            after.push(acc);
            acc = Time90k(acc.0.saturating_add(s.duration.0));
        }
        after.reverse();

        // RFC 8216bis §4.4.5.2 / §6.2.5.1 (recalled): a delta update
        // replaces the Media Segments earlier than the Skip Boundary
        // (CAN-SKIP-UNTIL from the end of the playlist) with EXT-X-SKIP. A
        // segment is skipped only if it ends at least that far back.
        let skipped = if options.skip {
            after.iter().take_while(|a| **a >= six_td).count()
        } else {
            0
        };

        let parts_listed: usize = self
            .listed
            .iter()
            .zip(&after)
            .filter(|(_, a)| **a < three_td)
            .map(|(s, _)| s.parts.len())
            .sum::<usize>()
            + self
                .held
                .iter()
                .chain(self.open.iter())
                .map(|s| s.parts.len())
                .sum::<usize>();
        let segments_listed = self.listed.len() - skipped + 2;
        let mut out = String::with_capacity(
            320 + 120 * segments_listed + 56 * parts_listed + 96 * options.rendition_reports.len(),
        );

        line(&mut out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:{MEDIA_PLAYLIST_VERSION}");
        // §4.4.3.1: "#EXT-X-TARGETDURATION:<s> where s is a decimal-integer
        // indicating the Target Duration in seconds."
        let _ = writeln!(
            out,
            "#EXT-X-TARGETDURATION:{}",
            self.cfg.target_duration_secs
        );

        // §4.4.3.8 EXT-X-SERVER-CONTROL:
        // CAN-SKIP-UNTIL: "The Skip Boundary MUST be at least six times the
        //   Target Duration." We use exactly six.
        // PART-HOLD-BACK: "Its value MUST be at least twice the Part Target
        //   Duration. Its value SHOULD be at least three times the Part
        //   Target Duration." Three times the *written* PART-TARGET, so the
        //   rounding of either value cannot break the rule.
        // CAN-BLOCK-RELOAD: "The value is an enumerated-string whose value is
        //   YES if the server supports Blocking Playlist Reload."
        let part_target_ms = ticks_to_ms(self.cfg.part_target);
        out.push_str("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=");
        write_secs(&mut out, six_td);
        out.push_str(",PART-HOLD-BACK=");
        write_ms(
            &mut out,
            part_target_ms.saturating_mul(i64::from(self.cfg.part_hold_back_parts)),
        );
        out.push('\n');
        // §4.4.3.7: EXT-X-PART-INF "is REQUIRED if a Playlist contains one
        // or more EXT-X-PART tags"; always written, since the open segment's
        // parts come and go.
        out.push_str("#EXT-X-PART-INF:PART-TARGET=");
        write_ms(&mut out, part_target_ms);
        out.push('\n');
        // §4.4.3.2: "The EXT-X-MEDIA-SEQUENCE tag indicates the Media
        // Sequence Number of the first Media Segment that appears in a
        // Playlist file." In a delta update that is still the first
        // (skipped) one: the client counts SKIPPED-SEGMENTS on from it.
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence());
        // §4.4.3.3: "The EXT-X-DISCONTINUITY-SEQUENCE tag MUST appear before
        // the first Media Segment in the Playlist."
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            self.discontinuity_sequence
        );
        if skipped > 0 {
            // §4.4.5.2: "SKIPPED-SEGMENTS: The value is a decimal-integer
            // specifying the number of Media Segments replaced by the
            // EXT-X-SKIP tag."
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }

        // The generation of the last EXT-X-MAP written. None at the start
        // and after a skip: the EXT-X-SKIP tag "replaces the segment URI
        // lines and all Media Segment Tags tags that are applied to those
        // segments", so the map in force is stated again.
        let mut map: Option<u32> = None;
        for (s, a) in self.listed.iter().zip(&after).skip(skipped) {
            write_segment_tags(&mut out, s, &mut map);
            // §4.4.4.9 / §6.2.2 (recalled): Partial Segments are kept in the
            // playlist for (at least) the last three Target Durations and
            // removed when older. Per whole segment, so the Part Index of
            // every listed part is its position among its segment's listed
            // parts.
            if *a < three_td {
                write_parts(&mut out, s);
            }
            if s.gap {
                // §4.4.4.7 (recalled): "The EXT-X-GAP tag indicates that the
                // segment URI to which it applies does not contain media
                // data and SHOULD NOT be loaded by clients."
                line(&mut out, "#EXT-X-GAP");
            }
            // §4.4.4.1: "#EXTINF:<duration>,[<title>]"; §4.4.3.1: "The
            // EXTINF duration of each Media Segment in a Playlist file, when
            // rounded to the nearest integer, MUST be less than or equal to
            // the Target Duration" (see ClosedSegment::exceeds_target_duration).
            out.push_str("#EXTINF:");
            write_secs(&mut out, s.duration);
            out.push_str(",\n");
            let _ = writeln!(out, "{}", ResourceName::Segment { msn: s.msn });
        }
        // A held segment (LiveWindow::close_segment_held) is written like
        // the open one: its parts, no EXTINF and URI yet.
        for open in self
            .held
            .iter()
            .chain(self.open.iter())
            .filter(|s| !s.parts.is_empty())
        {
            write_segment_tags(&mut out, open, &mut map);
            write_parts(&mut out, open);
        }

        if self.ended {
            // §4.4.3.4: "The EXT-X-ENDLIST tag indicates that no more Media
            // Segments will be added to the Media Playlist file."
            line(&mut out, "#EXT-X-ENDLIST");
        } else {
            // §4.4.5.3 EXT-X-PRELOAD-HINT: TYPE=MAP hints the init section
            // the next part needs when no listed part announced it yet. "A
            // Playlist MUST NOT contain more than one EXT-X-PRELOAD-HINT tag
            // with the same TYPE attribute".
            if let Some(open) = self.open.as_ref().filter(|s| s.parts.is_empty())
                && map != Some(open.init_generation)
            {
                let _ = writeln!(
                    out,
                    "#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"{}\"",
                    ResourceName::Init {
                        generation: open.init_generation
                    }
                );
            }
            if let Some(hint) = self.preload_hint() {
                let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
            }
        }

        // §4.4.5.4: "#EXT-X-RENDITION-REPORT:<attribute-list>" with URI,
        // LAST-MSN and LAST-PART.
        for report in options.rendition_reports {
            let _ = write!(out, "#EXT-X-RENDITION-REPORT:URI=\"{}\"", report.uri);
            if let Some(last) = report.last {
                let _ = write!(out, ",LAST-MSN={},LAST-PART={}", last.msn, last.index);
            }
            out.push('\n');
        }
        out
    }
}

fn write_segment_tags(out: &mut String, s: &Segment, map: &mut Option<u32>) {
    if s.discontinuity {
        // §4.4.4.3: "The EXT-X-DISCONTINUITY tag indicates a discontinuity
        // between the Media Segment that follows it and the one that
        // preceded it."
        line(out, "#EXT-X-DISCONTINUITY");
    }
    if *map != Some(s.init_generation) {
        // §4.4.4.5: EXT-X-MAP "applies to every Media Segment that appears
        // after it in the Playlist until the next EXT-X-MAP tag or until the
        // end of the Playlist."
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{}\"",
            ResourceName::Init {
                generation: s.init_generation
            }
        );
        *map = Some(s.init_generation);
    }
    // §4.4.4.6, on every segment: it costs one line and keeps each segment
    // placed in time however the playlist is cut (window, delta update).
    out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
    write_program_date_time(out, s.program_date_time_ms);
    out.push('\n');
}

fn write_parts(out: &mut String, s: &Segment) {
    for (index, p) in s.parts.iter().enumerate() {
        // §4.4.4.9: "#EXT-X-PART:<attribute-list>"; DURATION and URI are
        // REQUIRED; "INDEPENDENT=YES" when the part "contains an
        // independent frame".
        out.push_str("#EXT-X-PART:DURATION=");
        write_secs(out, p.duration);
        let _ = write!(out, ",URI=\"part{}.{}.m4s\"", s.msn, index);
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_integer_rounded() {
        let f = |t| {
            let mut s = String::new();
            write_secs(&mut s, Time90k(t));
            s
        };
        assert_eq!(f(0), "0.000");
        assert_eq!(f(90_000), "1.000");
        assert_eq!(f(18_000), "0.200");
        assert_eq!(f(30_000), "0.333"); // 1/3 s
        assert_eq!(f(45), "0.001"); // 0.5 ms rounds up
        assert_eq!(f(44), "0.000");
        assert_eq!(f(360_007), "4.000");
        assert_eq!(f(-90_045), "-1.001");
        // No f64 drift however long.
        assert_eq!(f(90_000 * 86_400 * 365 + 9), "31536000.000");
    }

    #[test]
    fn rejects_unsafe_report_uris() {
        assert_eq!(RenditionReport::new("", None), Err(InvalidValue::Empty));
        assert_eq!(
            RenditionReport::new("a\"b.m3u8", None),
            Err(InvalidValue::BadCharacter)
        );
        assert_eq!(
            RenditionReport::new("a.m3u8\n#EXT-X-ENDLIST", None),
            Err(InvalidValue::BadCharacter)
        );
        assert_eq!(
            RenditionReport::new(&"a".repeat(MAX_URI_LEN + 1), None),
            Err(InvalidValue::TooLong)
        );
        let ok = RenditionReport::new("../audio/audio.m3u8", None).unwrap();
        assert_eq!(ok.uri(), "../audio/audio.m3u8");
    }
}
