//! The playlists and summary that close a recording: one media playlist
//! per rendition (`EXT-X-PLAYLIST-TYPE:VOD`, `EXT-X-ENDLIST`,
//! discontinuities where the live stream had them), a multivariant
//! playlist, and `recording.json`. Pure: the same segments give the same
//! objects, whether the writer closes the recording or another process
//! recovers it from a listing.

use std::collections::BTreeMap;
use std::fmt::Write;

use bytes::Bytes;
use ferrocast_hls::{
    AUDIO_GROUP_ID, AudioRendition, RenditionName, Variant, render_multivariant_with_audio,
};
use ferrocast_media::StreamName;

use crate::layout::{
    Layout, PLAYLIST_NAME, RecordingId, SUMMARY_NAME, SegmentName, init_file_name,
};
use crate::manifest::{self, ClosedBy, RenditionSummary, Summary, TracksInfo};

/// `EXT-X-VERSION` of the VOD media playlists: 6 is the first with
/// `EXT-X-MAP` in playlists that are not I-frame only; nothing later is used.
const VOD_PLAYLIST_VERSION: u32 = 6;

/// What was recorded of one rendition.
#[derive(Debug, Clone, Default)]
pub struct RenditionRecord {
    /// Its segments, in any order (duplicates of one Media Sequence
    /// Number from two writers: the later epoch's is kept).
    pub segments: Vec<SegmentName>,
    /// Its init generations' tracks.
    pub tracks: BTreeMap<u32, TracksInfo>,
}

/// The objects that close a recording, in the order to write them (the
/// summary last: its presence says the recording is closed).
#[derive(Debug, Clone)]
pub struct Closing {
    /// Keys and bodies.
    pub objects: Vec<(String, Bytes)>,
    /// The summary, as written.
    pub summary: Summary,
}

/// Segments in playlist order: by Media Sequence Number, one per number
/// (the highest epoch's).
fn playlist_order(segments: &[SegmentName]) -> Vec<SegmentName> {
    let mut sorted = segments.to_vec();
    sorted.sort_by_key(|s| (s.msn, std::cmp::Reverse(s.epoch)));
    sorted.dedup_by_key(|s| s.msn);
    sorted
}

/// A segment's duration in milliseconds, rounded as playlists write it.
fn duration_ms(segment: &SegmentName) -> i64 {
    ferrocast_hls::ticks_to_ms(segment.duration)
}

/// The media playlist of `segments` (already in playlist order, not empty).
pub fn media_playlist(segments: &[SegmentName]) -> String {
    let longest = segments.iter().map(duration_ms).max().unwrap_or(0);
    // RFC 8216bis §4.4.3.1: EXTINF rounded to the nearest integer must not
    // exceed the target duration.
    let target = ((longest + 500) / 1000).max(1);
    let first = segments.first().map_or(0, |s| s.msn);
    let mut out = String::with_capacity(128 + segments.len() * 96);
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{VOD_PLAYLIST_VERSION}\n#EXT-X-TARGETDURATION:{target}\n\
         #EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    let mut previous: Option<&SegmentName> = None;
    for segment in segments {
        let map = (segment.generation, segment.epoch);
        let broken = previous.is_some_and(|p| segment.breaks_after(p));
        if broken {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if previous.is_none_or(|p| map != (p.generation, p.epoch)) {
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}\"",
                init_file_name(segment.generation, segment.epoch)
            );
        }
        if previous.is_none() || broken {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                ferrocast_hls::format_program_date_time(segment.program_date_time_ms)
            );
        }
        out.push_str("#EXTINF:");
        ferrocast_hls::write_secs(&mut out, segment.duration);
        let _ = write!(out, ",\n{}\n", segment.file_name());
        previous = Some(segment);
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

fn bits_per_second(bytes: u64, ms: i64) -> u64 {
    (u128::from(bytes) * 8 * 1000 / ms.max(1) as u128).min(u128::from(u64::MAX)) as u64
}

/// The variant of a rendition's media playlist: codecs of its newest
/// generation, peak and average bitrate of its segments.
fn variant(
    name: &RenditionName,
    segments: &[SegmentName],
    record: &RenditionRecord,
) -> Option<Variant> {
    let newest = segments.iter().map(|s| s.generation).max()?;
    let tracks = record
        .tracks
        .get(&newest)
        .or_else(|| record.tracks.values().next_back())?;
    let peak = segments
        .iter()
        .map(|s| bits_per_second(s.bytes, duration_ms(s)))
        .max()
        .unwrap_or(0);
    let bytes: u64 = segments.iter().map(|s| s.bytes).sum();
    let ms: i64 = segments.iter().map(duration_ms).sum();
    Some(Variant {
        uri: format!("{name}/{PLAYLIST_NAME}"),
        bandwidth: peak.max(1),
        average_bandwidth: Some(bits_per_second(bytes, ms).max(1)),
        codecs: tracks.codecs.clone(),
        resolution: tracks.resolution,
        frame_rate: tracks.frame_rate,
    })
}

/// The objects that close recording `id` of `stream`.
pub fn closing(
    layout: &Layout,
    stream: &StreamName,
    id: &RecordingId,
    renditions: &BTreeMap<RenditionName, RenditionRecord>,
    closed_by: ClosedBy,
) -> Closing {
    let mut objects = Vec::new();
    let mut variants = Vec::new();
    let mut audio = None;
    let mut summaries = Vec::new();
    let mut started_ms = i64::MAX;
    for (name, record) in renditions {
        let segments = playlist_order(&record.segments);
        let Some(first) = segments.first() else {
            continue;
        };
        started_ms = started_ms.min(first.program_date_time_ms);
        objects.push((
            format!("{}{PLAYLIST_NAME}", layout.rendition(stream, id, name)),
            Bytes::from(media_playlist(&segments)),
        ));
        match variant(name, &segments, record) {
            // The audio packaged apart: every video variant plays with it.
            Some(media) if name.is_audio() => {
                audio = Some((
                    media,
                    AudioRendition {
                        group_id: AUDIO_GROUP_ID.to_owned(),
                        uri: format!("{name}/{PLAYLIST_NAME}"),
                        channels: None,
                    },
                ));
            }
            Some(video) => variants.push(video),
            None => {}
        }
        summaries.push(RenditionSummary {
            name: name.to_string(),
            segments: segments.len() as u64,
            duration_ms: segments.iter().map(duration_ms).sum(),
        });
    }
    let audio = audio.map(|(media, rendition)| {
        for variant in &mut variants {
            variant.add_audio(&media);
        }
        rendition
    });
    // The best first: players start with the first variant.
    variants.sort_by(|a, b| {
        b.bandwidth
            .cmp(&a.bandwidth)
            .then_with(|| a.uri.cmp(&b.uri))
    });
    if let Ok(text) = render_multivariant_with_audio(&variants, audio.as_ref(), true) {
        objects.push((
            format!("{}{PLAYLIST_NAME}", layout.root(stream, id)),
            Bytes::from(text),
        ));
    }
    let summary = Summary {
        stream: stream.as_str().to_owned(),
        recording: id.to_string(),
        started_ms: if started_ms == i64::MAX {
            0
        } else {
            started_ms
        },
        duration_ms: summaries.iter().map(|r| r.duration_ms).max().unwrap_or(0),
        renditions: summaries,
        closed_by,
    };
    objects.push((
        format!("{}{SUMMARY_NAME}", layout.root(stream, id)),
        manifest::write(&summary),
    ));
    Closing { objects, summary }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrocast_media::Time90k;

    fn segment(msn: u64, ms: i64, discontinuity: bool) -> SegmentName {
        SegmentName {
            msn,
            epoch: 0,
            generation: 0,
            duration: Time90k::from_millis(ms),
            bytes: 250_000,
            program_date_time_ms: 1_700_000_000_000 + msn as i64 * 2000,
            discontinuity,
        }
    }

    #[test]
    fn media_playlist_lists_every_segment_with_breaks_and_an_end() {
        let mut segments = vec![
            segment(3, 2000, false),
            segment(1, 2000, true),
            segment(2, 1960, false),
        ];
        segments.push(segment(4, 2002, true));
        segments.push(segment(6, 1500, false));
        let text = media_playlist(&playlist_order(&segments));
        let expected = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n\
            #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-MAP:URI=\"init-g0-e0.mp4\"\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n\
            #EXTINF:2.000,\ns0000000001-e0-g0-d180000-b250000-t1700000002000-x.m4s\n\
            #EXTINF:1.960,\ns0000000002-e0-g0-d176400-b250000-t1700000004000.m4s\n\
            #EXTINF:2.000,\ns0000000003-e0-g0-d180000-b250000-t1700000006000.m4s\n\
            #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z\n\
            #EXTINF:2.002,\ns0000000004-e0-g0-d180180-b250000-t1700000008000-x.m4s\n\
            #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n\
            #EXTINF:1.500,\ns0000000006-e0-g0-d135000-b250000-t1700000012000.m4s\n\
            #EXT-X-ENDLIST\n";
        assert_eq!(text, expected);
        m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("m3u8-rs reads it");
    }

    #[test]
    fn a_newer_writer_wins_a_duplicate_and_gets_its_own_map() {
        let mut newer = segment(2, 2000, true);
        newer.epoch = 5;
        let segments = playlist_order(&[segment(1, 2000, false), segment(2, 2000, false), newer]);
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[1].epoch, 5);
        let text = media_playlist(&segments);
        assert!(
            text.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-g0-e5.mp4\"\n"),
            "{text}"
        );
    }

    #[test]
    fn closing_writes_playlists_then_the_summary() {
        let layout = Layout::new("rec");
        let stream = StreamName::new("cam").unwrap();
        let id = RecordingId::parse("20231114T221320Z-0000abcd").unwrap();
        let tracks = TracksInfo {
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some((30, 1)),
        };
        let mut renditions = BTreeMap::new();
        renditions.insert(
            RenditionName::new("720p").unwrap(),
            RenditionRecord {
                segments: vec![segment(1, 2000, false), segment(2, 2000, false)],
                tracks: BTreeMap::from([(0, tracks.clone())]),
            },
        );
        renditions.insert(RenditionName::source(), RenditionRecord::default());
        let closing = closing(&layout, &stream, &id, &renditions, ClosedBy::Writer);
        let keys: Vec<&str> = closing.objects.iter().map(|(k, _)| k.as_str()).collect();
        let root = format!("rec/cam/{id}/");
        assert_eq!(
            keys,
            [
                format!("{root}720p/index.m3u8"),
                format!("{root}index.m3u8"),
                format!("{root}recording.json")
            ]
        );
        let multivariant = std::str::from_utf8(&closing.objects[1].1).unwrap();
        assert!(
            multivariant.contains("BANDWIDTH=1000000,AVERAGE-BANDWIDTH=1000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720"),
            "{multivariant}"
        );
        assert!(multivariant.contains("\n720p/index.m3u8\n"));
        assert_eq!(closing.summary.duration_ms, 4000);
        assert_eq!(closing.summary.renditions.len(), 1);
        let read: Summary = manifest::read("k", &closing.objects[2].1).unwrap();
        assert_eq!(read, closing.summary);
    }

    #[test]
    fn a_separate_audio_rendition_is_listed_with_every_variant() {
        let layout = Layout::new("rec");
        let stream = StreamName::new("cam").unwrap();
        let id = RecordingId::parse("20231114T221320Z-0000abcd").unwrap();
        let record = |codecs: &str, resolution, bytes| {
            let mut segments = vec![segment(1, 2000, false), segment(2, 2000, false)];
            for s in &mut segments {
                s.bytes = bytes;
            }
            RenditionRecord {
                segments,
                tracks: BTreeMap::from([(
                    0,
                    TracksInfo {
                        codecs: codecs.into(),
                        resolution,
                        frame_rate: None,
                    },
                )]),
            }
        };
        let renditions = BTreeMap::from([
            (
                RenditionName::source(),
                record("avc1.64001f", Some((1280, 720)), 250_000),
            ),
            (RenditionName::audio(), record("mp4a.40.2", None, 16_000)),
        ]);
        let closing = closing(&layout, &stream, &id, &renditions, ClosedBy::Writer);
        let multivariant = closing
            .objects
            .iter()
            .find(|(k, _)| k == &format!("rec/cam/{id}/index.m3u8"))
            .map(|(_, body)| std::str::from_utf8(body).unwrap())
            .unwrap();
        // One variant, with the audio's codec and bit rate (1 Mbit/s of
        // video, 64 kbit/s of audio), and the audio rendition apart.
        assert!(
            multivariant.contains(
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,\
                 AUTOSELECT=YES,URI=\"audio/index.m3u8\"\n"
            ),
            "{multivariant}"
        );
        assert!(
            multivariant.contains(
                "BANDWIDTH=1064000,AVERAGE-BANDWIDTH=1064000,CODECS=\"avc1.64001f,mp4a.40.2\",\
                 RESOLUTION=1280x720,AUDIO=\"audio\"\nsource/index.m3u8\n"
            ),
            "{multivariant}"
        );
        assert_eq!(multivariant.matches("#EXT-X-STREAM-INF").count(), 1);
        assert!(
            closing
                .objects
                .iter()
                .any(|(k, _)| k == &format!("rec/cam/{id}/audio/index.m3u8"))
        );
    }
}
