//! Median, p90, p99 and max of a set of measurements.

/// Nearest-rank percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of values.
    pub count: usize,
    /// 50th percentile.
    pub median: i64,
    /// 90th percentile.
    pub p90: i64,
    /// 99th percentile.
    pub p99: i64,
    /// Largest value.
    pub max: i64,
}

impl Summary {
    /// Summarise `values`; `None` when there are none.
    pub fn of(values: &[i64]) -> Option<Summary> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        Some(Summary {
            count: sorted.len(),
            median: nearest_rank(&sorted, 50),
            p90: nearest_rank(&sorted, 90),
            p99: nearest_rank(&sorted, 99),
            max,
        })
    }

    /// As a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "median": self.median,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
        })
    }
}

/// The smallest value with at least `percent`% of the sample at or below it.
fn nearest_rank(sorted: &[i64], percent: usize) -> i64 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).rev().collect();
        let s = Summary::of(&values).expect("not empty");
        assert_eq!((s.median, s.p90, s.p99, s.max), (50, 90, 99, 100));
        let one = Summary::of(&[7]).expect("not empty");
        assert_eq!((one.median, one.p90, one.p99, one.max), (7, 7, 7, 7));
        assert_eq!(Summary::of(&[]), None);
    }
}
