//! Typed records shared between roles: which renditions a stream has
//! ([`RenditionPlan`]) and the name of each rendition on the media bus
//! ([`BusName`]).
//!
//! The transcoder decides a stream's plan and the packager lists it; in one
//! process it is handed over directly, across processes it is stored in the
//! registry in its [`encode`](RenditionPlan::encode)d form.

use std::fmt;

use ferrocast_media::StreamName;

use crate::rendition::RenditionName;
use crate::window::SequencePoint;

/// Which renditions of a stream the multivariant playlist lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionPlan {
    /// List the source rendition (`stream.m3u8`). Whether or not it is
    /// listed, it is packaged and served.
    pub source_listed: bool,
    /// Renditions expected to appear (bus streams `NAME/RUNG`): a
    /// multivariant request waits for them for a while after the stream's
    /// start.
    pub rungs: Vec<RenditionName>,
}

impl Default for RenditionPlan {
    /// The source, listed, and nothing else expected.
    fn default() -> Self {
        RenditionPlan {
            source_listed: true,
            rungs: Vec::new(),
        }
    }
}

impl RenditionPlan {
    /// Whether the multivariant playlist lists `rendition` (every
    /// rendition but an unlisted source).
    pub fn lists(&self, rendition: &RenditionName) -> bool {
        self.source_listed || !rendition.is_source()
    }

    /// The stored form: `listed|unlisted RUNG,RUNG,...` (the rung list may
    /// be empty).
    ///
    /// ```
    /// use ferrocast_hls::{RenditionName, RenditionPlan};
    /// let plan = RenditionPlan { source_listed: false, rungs: vec![RenditionName::new("720p").unwrap()] };
    /// assert_eq!(plan.encode(), "unlisted 720p");
    /// assert_eq!(RenditionPlan::decode("unlisted 720p"), Some(plan));
    /// ```
    pub fn encode(&self) -> String {
        let rungs: Vec<&str> = self.rungs.iter().map(RenditionName::as_str).collect();
        let listed = if self.source_listed {
            "listed"
        } else {
            "unlisted"
        };
        format!("{listed} {}", rungs.join(","))
    }

    /// The plan stored as `value`; `None` if it is not one (a rung named
    /// `source` or twice is refused too).
    pub fn decode(value: &str) -> Option<RenditionPlan> {
        let (listed, rungs) = value.split_once(' ')?;
        let source_listed = match listed {
            "listed" => true,
            "unlisted" => false,
            _ => return None,
        };
        let mut plan = RenditionPlan {
            source_listed,
            rungs: Vec::new(),
        };
        for rung in rungs.split(',').filter(|r| !r.is_empty()) {
            let rung = RenditionName::new(rung).ok()?;
            if rung.is_source() || plan.rungs.contains(&rung) {
                return None;
            }
            plan.rungs.push(rung);
        }
        Some(plan)
    }
}

/// Where each rendition of a stream stands (its [`SequencePoint`]), as the
/// packager holding it records it, so that a packager taking the stream
/// over continues every rendition's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Each rendition and its sequence point, in rendition order.
    pub renditions: Vec<(RenditionName, SequencePoint)>,
}

impl StreamProgress {
    /// The sequence point of `rendition`, if recorded.
    pub fn of(&self, rendition: &RenditionName) -> Option<SequencePoint> {
        self.renditions
            .iter()
            .find(|(r, _)| r == rendition)
            .map(|(_, p)| *p)
    }

    /// The stored form: `RENDITION=NEXT_MSN:DISCONTINUITY_SEQUENCE,...`.
    ///
    /// ```
    /// use ferrocast_hls::{RenditionName, SequencePoint, StreamProgress};
    /// let progress = StreamProgress {
    ///     renditions: vec![(RenditionName::source(), SequencePoint { next_msn: 12, discontinuity_sequence: 1 })],
    /// };
    /// assert_eq!(progress.encode(), "source=12:1");
    /// assert_eq!(StreamProgress::decode("source=12:1"), Some(progress));
    /// ```
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .renditions
            .iter()
            .map(|(r, p)| format!("{r}={}:{}", p.next_msn, p.discontinuity_sequence))
            .collect();
        parts.join(",")
    }

    /// The progress stored as `value`; `None` if it is not one (a
    /// rendition named twice is refused too).
    pub fn decode(value: &str) -> Option<StreamProgress> {
        let mut progress = StreamProgress::default();
        for entry in value.split(',').filter(|e| !e.is_empty()) {
            let (rendition, point) = entry.split_once('=')?;
            let (msn, dsn) = point.split_once(':')?;
            let rendition = RenditionName::new(rendition).ok()?;
            if progress.of(&rendition).is_some() {
                return None;
            }
            progress.renditions.push((
                rendition,
                SequencePoint {
                    next_msn: msn.parse().ok()?,
                    discontinuity_sequence: dsn.parse().ok()?,
                },
            ));
        }
        Some(progress)
    }
}

/// A stream on the media bus: a stream's source, named `NAME`, or one of
/// its transcoded rungs, named `NAME/RUNG`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusName {
    /// The stream.
    pub stream: StreamName,
    /// Which of its renditions ([`RenditionName::source`] for the source).
    pub rendition: RenditionName,
}

impl BusName {
    /// The source of `stream`.
    pub fn source(stream: StreamName) -> BusName {
        BusName {
            stream,
            rendition: RenditionName::source(),
        }
    }

    /// Rendition `rendition` of `stream`.
    pub fn new(stream: StreamName, rendition: RenditionName) -> BusName {
        BusName { stream, rendition }
    }

    /// The bus name `name` split into stream and rendition; `None` if it is
    /// not one (`NAME/source` is refused: it would shadow the source).
    ///
    /// ```
    /// use ferrocast_hls::BusName;
    /// let rung = BusName::parse("cam/720p").unwrap();
    /// assert_eq!((rung.stream.as_str(), rung.rendition.as_str()), ("cam", "720p"));
    /// assert!(BusName::parse("cam").unwrap().rendition.is_source());
    /// assert_eq!(rung.to_string(), "cam/720p");
    /// assert!(BusName::parse("cam/source").is_none());
    /// ```
    pub fn parse(name: &str) -> Option<BusName> {
        match name.split_once('/') {
            None => Some(BusName::source(StreamName::new(name).ok()?)),
            Some((stream, rung)) => {
                let rendition = RenditionName::new(rung).ok()?;
                if rendition.is_source() {
                    return None;
                }
                Some(BusName::new(StreamName::new(stream).ok()?, rendition))
            }
        }
    }

    /// True for a stream's source.
    pub fn is_source(&self) -> bool {
        self.rendition.is_source()
    }
}

impl fmt::Display for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_source() {
            f.write_str(self.stream.as_str())
        } else {
            write!(f, "{}/{}", self.stream.as_str(), self.rendition)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bus_names_split_into_stream_and_rendition() {
        let source = BusName::parse("cam1").unwrap();
        assert_eq!((source.stream.as_str(), source.is_source()), ("cam1", true));
        let rung = BusName::parse("cam1/720p").unwrap();
        assert_eq!(
            (rung.stream.as_str(), rung.rendition.as_str()),
            ("cam1", "720p")
        );
        for bad in [
            "cam1/source",
            "cam1/",
            "/720p",
            "cam1/a/b",
            "cam1/..",
            "a b",
            "",
        ] {
            assert!(BusName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plans_refuse_what_is_not_one() {
        assert_eq!(
            RenditionPlan::decode("listed "),
            Some(RenditionPlan::default())
        );
        for bad in [
            "",
            "listed",
            "yes 720p",
            "listed source",
            "listed 720p,720p",
            "listed a b",
            "listed ../x",
        ] {
            assert_eq!(RenditionPlan::decode(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn bus_names_round_trip(name in "[A-Za-z0-9_-]{1,12}(/[a-z0-9]{1,6})?") {
            if let Some(parsed) = BusName::parse(&name) {
                prop_assert_eq!(parsed.to_string(), name);
            }
        }

        #[test]
        fn plans_round_trip(listed: bool, rungs in proptest::collection::btree_set("[a-z0-9]{1,8}", 0..5)) {
            let plan = RenditionPlan {
                source_listed: listed,
                rungs: rungs
                    .iter()
                    .filter(|r| r.as_str() != "source")
                    .map(|r| RenditionName::new(r).unwrap())
                    .collect(),
            };
            prop_assert_eq!(RenditionPlan::decode(&plan.encode()), Some(plan));
        }

        #[test]
        fn progress_round_trips(points in proptest::collection::btree_map("[a-z0-9]{1,8}", (any::<u64>(), any::<u64>()), 0..5)) {
            let progress = StreamProgress {
                renditions: points
                    .iter()
                    .map(|(r, (msn, dsn))| {
                        (
                            RenditionName::new(r).unwrap(),
                            SequencePoint { next_msn: *msn, discontinuity_sequence: *dsn },
                        )
                    })
                    .collect(),
            };
            prop_assert_eq!(StreamProgress::decode(&progress.encode()), Some(progress));
        }

        #[test]
        fn decoding_never_panics(value in "\\PC{0,40}") {
            let _ = RenditionPlan::decode(&value);
            let _ = BusName::parse(&value);
            let _ = StreamProgress::decode(&value);
        }
    }
}
