//! The edge's upstream side as Prometheus collectors: the coalescing
//! layer's counters and cache gauges, and each origin client's counters
//! and circuit breaker. They are read from the components' own statistics
//! at each scrape, so they live in the process's one registry next to
//! every other metric ([`EdgeMetrics::register_upstream`](super::EdgeMetrics::register_upstream)).

use std::sync::{Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::http_upstream::HttpUpstreamStats;
use crate::{BreakerState, Coalescing, CoalescingStats, HttpUpstream, InProcessUpstream};
use crate::{RoutedUpstream, Upstream};

/// An upstream that talks to origins over the network and keeps counters
/// per origin.
pub trait OriginStats {
    /// Each origin (`host:port`, never a path or credentials) and its
    /// client's counters; empty for an upstream without a network client.
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)>;
}

impl OriginStats for HttpUpstream {
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)> {
        vec![(self.origin().to_owned(), self.stats())]
    }
}

impl OriginStats for RoutedUpstream {
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)> {
        self.stats()
    }
}

impl OriginStats for InProcessUpstream {
    fn origin_stats(&self) -> Vec<(String, HttpUpstreamStats)> {
        Vec::new()
    }
}

/// Builds a metric family handle; the names and help texts are constants,
/// so failing is a programming error the unit tests catch.
fn counter_vec(
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

/// One origin counter: its family and how to read it.
struct OriginCounter {
    family: IntCounterVec,
    read: fn(&HttpUpstreamStats) -> u64,
}

/// The collector: family handles filled from the statistics at each
/// scrape (under a lock, so that concurrent scrapes do not interleave).
pub(super) struct UpstreamCollector<U: Upstream> {
    coalescing: Coalescing<U>,
    families: Mutex<Families>,
    descs: Vec<Desc>,
}

/// Reads one figure of the coalescing layer's statistics.
type ReadCoalescing = fn(&CoalescingStats) -> u64;

struct Families {
    requests: IntCounterVec,
    counters: Vec<(IntCounterVec, ReadCoalescing)>,
    gauges: Vec<(IntGaugeVec, ReadCoalescing)>,
    origin: Vec<OriginCounter>,
    breaker: IntGaugeVec,
}

impl Families {
    fn new() -> Result<Self, prometheus::Error> {
        let coalescing_counter =
            |name, help, read: ReadCoalescing| -> Result<_, prometheus::Error> {
                Ok((counter_vec(name, help, &[])?, read))
            };
        let coalescing_gauge = |name, help, read: ReadCoalescing| -> Result<_, prometheus::Error> {
            Ok((gauge_vec(name, help, &[])?, read))
        };
        let origin = |name, help, read: fn(&HttpUpstreamStats) -> u64| {
            Ok::<_, prometheus::Error>(OriginCounter {
                family: counter_vec(name, help, &["origin"])?,
                read,
            })
        };
        Ok(Families {
            requests: counter_vec(
                "ferrocast_edge_coalesce_requests_total",
                "Edge upstream requests by outcome: answered from the cache (hit), started a \
                 fetch (miss), joined a fetch in flight (coalesced), went upstream alone \
                 (bypassed).",
                &["outcome"],
            )?,
            counters: vec![
                coalescing_counter(
                    "ferrocast_edge_coalesce_errors_total",
                    "Shared fetches that ended in an upstream error.",
                    |s: &CoalescingStats| s.errors,
                )?,
                coalescing_counter(
                    "ferrocast_edge_cache_stored_total",
                    "Responses put in the edge's cache.",
                    |s: &CoalescingStats| s.stored,
                )?,
                coalescing_counter(
                    "ferrocast_edge_cache_evictions_total",
                    "Cached objects dropped to make room.",
                    |s: &CoalescingStats| s.evictions,
                )?,
                coalescing_counter(
                    "ferrocast_edge_cache_expirations_total",
                    "Cached objects dropped because their time was up.",
                    |s: &CoalescingStats| s.expirations,
                )?,
            ],
            gauges: vec![
                coalescing_gauge(
                    "ferrocast_edge_cache_bytes",
                    "Bytes of finished media in the edge's cache.",
                    |s: &CoalescingStats| s.cached_bytes,
                )?,
                coalescing_gauge(
                    "ferrocast_edge_cache_objects",
                    "Objects in the edge's cache.",
                    |s: &CoalescingStats| s.cached_objects,
                )?,
                coalescing_gauge(
                    "ferrocast_edge_coalesce_in_flight",
                    "Distinct upstream fetches in flight.",
                    |s: &CoalescingStats| s.in_flight,
                )?,
            ],
            origin: vec![
                origin(
                    "ferrocast_edge_origin_requests_total",
                    "Requests the edge made of the origin (after coalescing).",
                    |s: &HttpUpstreamStats| s.requests,
                )?,
                origin(
                    "ferrocast_edge_origin_attempts_total",
                    "Attempts sent to the origin, retries included.",
                    |s: &HttpUpstreamStats| s.attempts,
                )?,
                origin(
                    "ferrocast_edge_origin_retries_total",
                    "Retries after a failed connection or a 502/503/504.",
                    |s: &HttpUpstreamStats| s.retries,
                )?,
                origin(
                    "ferrocast_edge_origin_failures_total",
                    "Attempts that counted as failures for the circuit breaker.",
                    |s: &HttpUpstreamStats| s.failures,
                )?,
                origin(
                    "ferrocast_edge_origin_rejected_total",
                    "Requests refused at once because the circuit breaker was open.",
                    |s: &HttpUpstreamStats| s.rejected,
                )?,
                origin(
                    "ferrocast_edge_origin_broken_bodies_total",
                    "Origin bodies that broke off after their head.",
                    |s: &HttpUpstreamStats| s.broken_bodies,
                )?,
                origin(
                    "ferrocast_edge_origin_breaker_opened_total",
                    "Times the origin's circuit breaker opened.",
                    |s: &HttpUpstreamStats| s.breaker_opened,
                )?,
            ],
            breaker: gauge_vec(
                "ferrocast_edge_origin_breaker_state",
                "The origin's circuit breaker: 1 for the state it is in.",
                &["origin", "state"],
            )?,
        })
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        let mut all: Vec<&dyn Collector> = vec![&self.requests];
        all.extend(self.counters.iter().map(|(f, _)| f as &dyn Collector));
        all.extend(self.gauges.iter().map(|(f, _)| f as &dyn Collector));
        all.extend(self.origin.iter().map(|o| &o.family as &dyn Collector));
        all.push(&self.breaker);
        all
    }

    /// Sets every family to `coalescing` and `origins`. Origins that are
    /// gone (a routed edge's packager replaced) lose their series.
    fn fill(&self, coalescing: &CoalescingStats, origins: &[(String, HttpUpstreamStats)]) {
        for (outcome, value) in [
            ("hit", coalescing.hits),
            ("miss", coalescing.misses),
            ("coalesced", coalescing.coalesced),
            ("bypassed", coalescing.bypassed),
        ] {
            set_counter(&self.requests, &[outcome], value);
        }
        for (family, read) in &self.counters {
            set_counter(family, &[], read(coalescing));
        }
        for (family, read) in &self.gauges {
            family
                .with_label_values::<&str>(&[])
                .set(i64::try_from(read(coalescing)).unwrap_or(i64::MAX));
        }
        for counter in &self.origin {
            counter.family.reset();
        }
        self.breaker.reset();
        for (origin, stats) in origins {
            for counter in &self.origin {
                set_counter(&counter.family, &[origin], (counter.read)(stats));
            }
            for state in [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
            ] {
                self.breaker
                    .with_label_values(&[origin.as_str(), state.as_str()])
                    .set(i64::from(stats.breaker == state));
            }
        }
    }
}

/// Brings a counter series to `value` (statistics only grow; a counter
/// family that was reset starts again from zero).
fn set_counter(family: &IntCounterVec, labels: &[&str], value: u64) {
    let counter = family.with_label_values(labels);
    counter.inc_by(value.saturating_sub(counter.get()));
}

impl<U: Upstream + OriginStats> UpstreamCollector<U> {
    pub(super) fn new(coalescing: Coalescing<U>) -> Result<Self, prometheus::Error> {
        let families = Families::new()?;
        let descs = families
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Ok(UpstreamCollector {
            coalescing,
            families: Mutex::new(families),
            descs,
        })
    }
}

impl<U: Upstream + OriginStats + 'static> Collector for UpstreamCollector<U> {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families.fill(
            &self.coalescing.stats(),
            &self.coalescing.upstream().origin_stats(),
        );
        families
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

/// Keeps the type parameter out of the registry's boxed collector.
pub(super) fn boxed<U: Upstream + OriginStats + 'static>(
    coalescing: Coalescing<U>,
) -> Result<Box<dyn Collector>, prometheus::Error> {
    Ok(Box::new(UpstreamCollector::new(coalescing)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn stats(requests: u64, breaker: BreakerState) -> HttpUpstreamStats {
        HttpUpstreamStats {
            requests,
            attempts: 7,
            retries: 2,
            failures: 3,
            rejected: 1,
            broken_bodies: 0,
            breaker_opened: 1,
            breaker,
        }
    }

    fn render(families: &Families) -> String {
        let gathered: Vec<MetricFamily> = families
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect();
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &gathered, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn origins_and_coalescing_render_as_prometheus_families() {
        let families = Families::new().unwrap();
        let coalescing = CoalescingStats {
            hits: 10,
            misses: 4,
            evictions: 2,
            cached_bytes: 4096,
            ..CoalescingStats::default()
        };
        families.fill(
            &coalescing,
            &[
                ("packager:8080".to_owned(), stats(5, BreakerState::Open)),
                ("packager-2:8080".to_owned(), stats(9, BreakerState::Closed)),
            ],
        );
        let text = render(&families);
        for line in [
            "# TYPE ferrocast_edge_origin_requests_total counter",
            "ferrocast_edge_origin_requests_total{origin=\"packager:8080\"} 5",
            "ferrocast_edge_origin_requests_total{origin=\"packager-2:8080\"} 9",
            "ferrocast_edge_origin_breaker_opened_total{origin=\"packager:8080\"} 1",
            "ferrocast_edge_origin_breaker_state{origin=\"packager:8080\",state=\"open\"} 1",
            "ferrocast_edge_origin_breaker_state{origin=\"packager:8080\",state=\"closed\"} 0",
            "ferrocast_edge_origin_breaker_state{origin=\"packager-2:8080\",state=\"closed\"} 1",
            "ferrocast_edge_coalesce_requests_total{outcome=\"hit\"} 10",
            "ferrocast_edge_coalesce_requests_total{outcome=\"miss\"} 4",
            "ferrocast_edge_cache_evictions_total 2",
            "ferrocast_edge_cache_bytes 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE ferrocast_edge_origin_requests_total counter")
                .count(),
            1
        );

        // The next scrape: a replaced origin loses its series, counters
        // follow the statistics.
        families.fill(
            &CoalescingStats {
                hits: 12,
                ..coalescing
            },
            &[("packager-3:8080".to_owned(), stats(1, BreakerState::Closed))],
        );
        let text = render(&families);
        assert!(!text.contains("packager:8080"), "{text}");
        assert!(
            text.lines()
                .any(|l| l == "ferrocast_edge_origin_requests_total{origin=\"packager-3:8080\"} 1"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "ferrocast_edge_coalesce_requests_total{outcome=\"hit\"} 12"),
            "{text}"
        );
    }
}
