//! The DVR playlist of a live rendition (`dvr.m3u8`): the recorded
//! segments within the DVR window, so a viewer can go back up to that far
//! behind live.
//!
//! It is a plain live media playlist (no parts, no blocking reload: it
//! changes once per segment), sliding as the window moves on, with
//! Playlist Delta Updates (`CAN-SKIP-UNTIL`, `_HLS_skip=YES`) so that a
//! player reloading a two-hour window gets the newest minute, not all of
//! it. A segment the live window still holds is named as on the live
//! playlist (`segN.m4s`, served from memory); an older one by its
//! recording's copy (`/vod/…`, served by the edge from the object store).
//! Init sections always come from the recording.

use std::fmt::Write;

use ferrocast_hls::write_secs;
use ferrocast_media::Time90k;

use crate::recording::{DvrList, DvrSegment};

/// `EXT-X-VERSION`: 9 for `EXT-X-SKIP`.
const DVR_PLAYLIST_VERSION: u32 = 9;

/// File name of a rendition's DVR playlist.
pub const DVR_PLAYLIST: &str = "dvr.m3u8";

/// File name of a stream's DVR multivariant playlist.
pub const DVR_MULTIVARIANT: &str = "index-dvr.m3u8";

/// Whether the playlist has a discontinuity between `previous` and
/// `segment`: the recorder's rule (a recorder sliding its window counts
/// those that leave the front in [`DvrList::discontinuity_sequence`]); one
/// init segment URI per init generation and writer.
fn breaks(previous: &DvrSegment, segment: &DvrSegment) -> bool {
    segment.discontinuity
        || segment.msn != previous.msn.saturating_add(1)
        || segment.archive_init_uri != previous.archive_init_uri
}

/// Renders `list` (target duration `target_duration_secs`); `in_memory`
/// says whether the live window still holds a segment; `skip`: a delta
/// update.
pub fn render(
    list: &DvrList,
    target_duration_secs: u32,
    in_memory: impl Fn(u64) -> bool,
    skip: bool,
) -> String {
    let segments = &list.segments;
    let six_td = Time90k(i64::from(target_duration_secs) * 6 * 90_000);
    // RFC 8216bis §6.2.5.1: a delta update replaces the segments earlier
    // than the Skip Boundary (CAN-SKIP-UNTIL from the end) with EXT-X-SKIP.
    let skipped = if skip {
        let mut after = Time90k::ZERO;
        let mut eligible = 0;
        for (i, s) in segments.iter().enumerate().rev() {
            if after >= six_td {
                eligible = i + 1;
                break;
            }
            after = Time90k(after.0.saturating_add(s.duration.0));
        }
        eligible
    } else {
        0
    };
    let mut out = String::with_capacity(256 + 100 * (segments.len() - skipped));
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{DVR_PLAYLIST_VERSION}\n#EXT-X-TARGETDURATION:{target_duration_secs}\n"
    );
    out.push_str("#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=");
    write_secs(&mut out, six_td);
    out.push('\n');
    let first = segments.first().map_or(0, |s| s.msn);
    let _ = write!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n",
        list.discontinuity_sequence
    );
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }
    // The map in force is stated again after a skip.
    let mut map: Option<&str> = None;
    for (i, segment) in segments.iter().enumerate().skip(skipped) {
        let broken = i > 0 && breaks(&segments[i - 1], segment);
        if broken {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(segment.archive_init_uri.as_str()) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", segment.archive_init_uri);
            map = Some(&segment.archive_init_uri);
        }
        if i == skipped || broken {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                ferrocast_hls::format_program_date_time(segment.program_date_time_ms)
            );
        }
        out.push_str("#EXTINF:");
        write_secs(&mut out, segment.duration);
        out.push_str(",\n");
        if in_memory(segment.msn) {
            let _ = writeln!(out, "seg{}.m4s", segment.msn);
        } else {
            let _ = writeln!(out, "{}", segment.archive_uri);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(msn: u64, discontinuity: bool) -> DvrSegment {
        DvrSegment {
            msn,
            duration: Time90k::from_millis(2000),
            discontinuity,
            program_date_time_ms: 1_700_000_000_000 + msn as i64 * 2000,
            init_generation: 0,
            archive_uri: format!("/vod/cam/ID/720p/s{msn}.m4s"),
            archive_init_uri: "/vod/cam/ID/720p/init-g0-e0.mp4".into(),
        }
    }

    #[test]
    fn old_segments_from_the_recording_new_ones_from_memory() {
        let list = DvrList {
            segments: (10..14).map(|m| segment(m, m == 12)).collect(),
            discontinuity_sequence: 3,
        };
        let text = render(&list, 2, |msn| msn >= 13, false);
        let expected = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12.000\n#EXT-X-MEDIA-SEQUENCE:10\n\
            #EXT-X-DISCONTINUITY-SEQUENCE:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-MAP:URI=\"/vod/cam/ID/720p/init-g0-e0.mp4\"\n\
            #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z\n\
            #EXTINF:2.000,\n/vod/cam/ID/720p/s10.m4s\n\
            #EXTINF:2.000,\n/vod/cam/ID/720p/s11.m4s\n\
            #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:44.000Z\n\
            #EXTINF:2.000,\n/vod/cam/ID/720p/s12.m4s\n\
            #EXTINF:2.000,\nseg13.m4s\n";
        assert_eq!(text, expected);
        m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs reads it");
    }

    #[test]
    fn a_delta_update_skips_what_lies_six_target_durations_back() {
        let list = DvrList {
            segments: (0..20).map(|m| segment(m, false)).collect(),
            discontinuity_sequence: 0,
        };
        let full = render(&list, 2, |_| false, false);
        let delta = render(&list, 2, |_| false, true);
        // 20 segments of 2 s; the last 6 (12 s) stay, and the one that
        // ends exactly 12 s back is skipped.
        assert!(
            delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=14\n"),
            "{delta}"
        );
        assert_eq!(delta.matches("#EXTINF").count(), 6);
        assert!(delta.contains("#EXT-X-MAP:URI="), "the map is stated again");
        assert_eq!(full.matches("#EXTINF").count(), 20);
        // Too short a window to skip anything.
        let short = DvrList {
            segments: (0..5).map(|m| segment(m, false)).collect(),
            discontinuity_sequence: 0,
        };
        assert!(!render(&short, 2, |_| false, true).contains("SKIP:"));
    }
}
