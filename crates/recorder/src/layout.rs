//! Where a recording's objects live, and the names that carry each
//! segment's playlist attributes.
//!
//! ```text
//! PREFIX.open/STREAM/ID                      open marker (JSON), deleted once closed
//! PREFIXSTREAM/ID/index.m3u8                 multivariant VOD playlist   (at the end)
//! PREFIXSTREAM/ID/recording.json             summary                     (at the end)
//! PREFIXSTREAM/ID/RENDITION/index.m3u8       media VOD playlist          (at the end)
//! PREFIXSTREAM/ID/RENDITION/init-gG-eE.mp4   init segment of generation G by writer epoch E
//! PREFIXSTREAM/ID/RENDITION/tracks-gG-eE.json  its codecs, resolution, frame rate
//! PREFIXSTREAM/ID/RENDITION/sMSN-eE-gG-dTICKS-bBYTES-tPDT[-x].m4s  a segment
//! ```
//!
//! A segment's key holds everything its playlist line needs (Media
//! Sequence Number, duration in 90 kHz ticks, size, program date time,
//! discontinuity, init generation, writer's fencing epoch), so a recording
//! cut off by a crash is closed from a listing alone. Stream names never
//! start with `.`, so `.open/` cannot clash with a stream.

use std::fmt;

use ferrocast_hls::RenditionName;
use ferrocast_media::{StreamName, Time90k};

/// Where recordings go in the store: every key starts with the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

/// A recording's id: its start time (UTC) and a random suffix,
/// `YYYYMMDDTHHMMSSZ-xxxxxxxx`; ids sort in start order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(String);

impl RecordingId {
    /// A new id for a recording starting at `unix_ms`.
    pub fn new(unix_ms: i64) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_i64(unix_ms);
        hasher.write_u32(std::process::id());
        let stamp = ferrocast_hls::format_program_date_time(unix_ms);
        // "2026-12-06T02:37:43.123Z" -> "20261206T023743Z"
        let compact: String = stamp
            .split('.')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        RecordingId(format!("{compact}Z-{:08x}", hasher.finish() as u32))
    }

    /// An id read back from a key: 1 to 64 of `A-Z a-z 0-9 -`.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| RecordingId(text.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the recording started, ms since the Unix epoch (to the
    /// second), read from the id; `None` for an id not made by
    /// [`RecordingId::new`].
    pub fn started_ms(&self) -> Option<i64> {
        let stamp = self.0.get(..16)?;
        let digits = |range: std::ops::Range<usize>| -> Option<i64> {
            let text = stamp.get(range)?;
            text.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse().ok())?
        };
        if stamp.as_bytes().get(8) != Some(&b'T') || stamp.as_bytes().get(15) != Some(&b'Z') {
            return None;
        }
        let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
        let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A segment's attributes, as written in its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    /// Media Sequence Number on the live playlist.
    pub msn: u64,
    /// Fencing epoch of the writer (0 for `ferrocast up`).
    pub epoch: u64,
    /// Init segment generation.
    pub generation: u32,
    /// Duration in 90 kHz ticks.
    pub duration: Time90k,
    /// Size in bytes.
    pub bytes: u64,
    /// Program date time of its first sample, ms since the Unix epoch
    /// (clamped to 0 and above).
    pub program_date_time_ms: i64,
    /// It follows a break in the timeline.
    pub discontinuity: bool,
}

impl SegmentName {
    /// Whether a playlist has a discontinuity between `previous` and this
    /// segment: the live stream had one, a segment is missing between
    /// them, or they need different init segments (another generation or
    /// another writer). The VOD and DVR playlists both follow this rule.
    pub fn breaks_after(&self, previous: &SegmentName) -> bool {
        self.discontinuity
            || self.msn != previous.msn.saturating_add(1)
            || (self.generation, self.epoch) != (previous.generation, previous.epoch)
    }

    /// Its file name, `sMSN-eE-gG-dTICKS-bBYTES-tPDT[-x].m4s`.
    pub fn file_name(&self) -> String {
        format!(
            "s{:010}-e{}-g{}-d{}-b{}-t{}{}.m4s",
            self.msn,
            self.epoch,
            self.generation,
            self.duration.ticks().max(0),
            self.bytes,
            self.program_date_time_ms.max(0),
            if self.discontinuity { "-x" } else { "" }
        )
    }

    /// Reads a file name made by [`SegmentName::file_name`]; `None` for
    /// anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let body = name.strip_prefix('s')?.strip_suffix(".m4s")?;
        let mut fields = body.split('-');
        let msn = fields.next()?.parse().ok()?;
        let number = |field: Option<&str>, tag: char| -> Option<u64> {
            let digits = field?.strip_prefix(tag)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let epoch = number(fields.next(), 'e')?;
        let generation = u32::try_from(number(fields.next(), 'g')?).ok()?;
        let duration = i64::try_from(number(fields.next(), 'd')?).ok()?;
        let bytes = number(fields.next(), 'b')?;
        let pdt = i64::try_from(number(fields.next(), 't')?).ok()?;
        let discontinuity = match fields.next() {
            None => false,
            Some("x") => true,
            Some(_) => return None,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(SegmentName {
            msn,
            epoch,
            generation,
            duration: Time90k(duration),
            bytes,
            program_date_time_ms: pdt,
            discontinuity,
        })
    }
}

/// An init segment's (or its tracks file's) generation and writer epoch,
/// from `init-gG-eE.mp4` or `tracks-gG-eE.json`.
pub fn parse_generation_file(name: &str, stem: &str, extension: &str) -> Option<(u32, u64)> {
    let body = name
        .strip_prefix(stem)?
        .strip_prefix("-g")?
        .strip_suffix(extension)?;
    let (generation, epoch) = body.split_once("-e")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(generation) || !digits(epoch) {
        return None;
    }
    Some((generation.parse().ok()?, epoch.parse().ok()?))
}

/// Name of the init segment of `generation` written at `epoch`.
pub fn init_file_name(generation: u32, epoch: u64) -> String {
    format!("init-g{generation}-e{epoch}.mp4")
}

/// Name of the tracks file of `generation` written at `epoch`.
pub fn tracks_file_name(generation: u32, epoch: u64) -> String {
    format!("tracks-g{generation}-e{epoch}.json")
}

/// File name of every playlist (media and multivariant).
pub const PLAYLIST_NAME: &str = "index.m3u8";

/// File name of a closed recording's summary.
pub const SUMMARY_NAME: &str = "recording.json";

impl Layout {
    /// Keys start with `prefix`, which is empty or ends with `/` (one is
    /// added if missing).
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        Layout { prefix }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where open markers are: `PREFIX.open/`.
    pub fn markers(&self) -> String {
        format!("{}.open/", self.prefix)
    }

    /// The open marker of a recording.
    pub fn marker(&self, stream: &StreamName, id: &RecordingId) -> String {
        format!("{}{}/{id}", self.markers(), stream.as_str())
    }

    /// Reads a marker key back into its stream and recording.
    pub fn parse_marker(&self, key: &str) -> Option<(StreamName, RecordingId)> {
        let rest = key.strip_prefix(&self.markers())?;
        let (stream, id) = rest.split_once('/')?;
        Some((StreamName::new(stream).ok()?, RecordingId::parse(id)?))
    }

    /// Every key of a recording starts with this: `PREFIXSTREAM/ID/`.
    pub fn root(&self, stream: &StreamName, id: &RecordingId) -> String {
        format!("{}{}/{id}/", self.prefix, stream.as_str())
    }

    /// The directory of one rendition: `PREFIXSTREAM/ID/RENDITION/`.
    pub fn rendition(
        &self,
        stream: &StreamName,
        id: &RecordingId,
        rendition: &RenditionName,
    ) -> String {
        format!("{}{rendition}/", self.root(stream, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn segment_names_read_back(
            msn in any::<u64>(),
            epoch in any::<u64>(),
            generation in any::<u32>(),
            duration in 0..i64::MAX,
            bytes in any::<u64>(),
            pdt in 0..i64::MAX,
            discontinuity in any::<bool>(),
        ) {
            let name = SegmentName {
                msn, epoch, generation, duration: Time90k(duration), bytes,
                program_date_time_ms: pdt, discontinuity,
            };
            let file = name.file_name();
            prop_assert!(ferrocast_storage::check_key(&file).is_ok());
            prop_assert_eq!(SegmentName::parse(&file), Some(name));
        }

        #[test]
        fn arbitrary_names_never_panic(name in "\\PC{0,80}") {
            let _ = SegmentName::parse(&name);
            let _ = parse_generation_file(&name, "init", ".mp4");
        }
    }

    proptest! {
        #[test]
        fn an_id_says_when_its_recording_started(ms in 0i64..8_000_000_000_000) {
            let id = RecordingId::new(ms);
            prop_assert_eq!(id.started_ms(), Some(ms - ms % 1000));
        }
    }

    #[test]
    fn foreign_ids_have_no_start() {
        for id in [
            "x",
            "20261306T000000Z-1",
            "20261206X000000Z-1",
            "2026120GT000000Z-1",
        ] {
            assert_eq!(RecordingId::parse(id).unwrap().started_ms(), None, "{id}");
        }
    }

    #[test]
    fn foreign_names_are_not_segments() {
        for name in [
            "s1-e0-g0-d1-b1-t1.m4s.tmp",
            "s1-e0-g0-d1-b1-t1-y.m4s",
            "s1-e0-g0-d-b1-t1.m4s",
            "s1-e0-g0-d+1-b1-t1.m4s",
            "s1-e0-g0-d1-b1.m4s",
            "s1-e0-g0-d1-b1-t1-x-x.m4s",
            "index.m3u8",
        ] {
            assert_eq!(SegmentName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn layout_keys_and_markers() {
        let layout = Layout::new("/rec");
        let stream = StreamName::new("cam1").unwrap();
        let id = RecordingId::new(1_700_000_000_123);
        assert!(id.as_str().starts_with("20231114T221320Z-"), "{id}");
        assert_eq!(layout.root(&stream, &id), format!("rec/cam1/{id}/"));
        let marker = layout.marker(&stream, &id);
        assert_eq!(marker, format!("rec/.open/cam1/{id}"));
        assert_eq!(
            layout.parse_marker(&marker),
            Some((stream.clone(), id.clone()))
        );
        assert_eq!(layout.parse_marker("rec/cam1/x"), None);
        let hd = RenditionName::new("720p").unwrap();
        assert_eq!(
            layout.rendition(&stream, &id, &hd),
            format!("rec/cam1/{id}/720p/")
        );
        assert_eq!(Layout::new("").root(&stream, &id), format!("cam1/{id}/"));
        assert_eq!(
            parse_generation_file(&init_file_name(3, 7), "init", ".mp4"),
            Some((3, 7))
        );
        assert_eq!(
            parse_generation_file(&tracks_file_name(0, 2), "tracks", ".json"),
            Some((0, 2))
        );
        assert_eq!(parse_generation_file("init-g-e1.mp4", "init", ".mp4"), None);
    }
}
