//! Population baselines: where an account's volume sits among all tracked accounts.
//!
//! Each shard keeps, per account, the histogram bucket its metrics currently fall in and reports
//! bucket moves as deltas at a tick; the scorer adds the deltas of every shard. Addition commutes,
//! so the baseline is the same whatever the number of shards or the order reports arrive in, and
//! percentiles cost O(buckets) instead of a sort over every account.
//!
//! The population is "every tracked account, at its latest tick": an account silent since
//! yesterday still contributes yesterday's numbers until it is evicted, so the baseline describes
//! accounts on their active days, not a dilution by idle ones.

use serde::{Deserialize, Serialize};

/// Number of population metrics.
pub const METRICS: usize = 4;
/// Metric names, in index order.
pub const METRIC_NAMES: [&str; METRICS] = [
    "requests_last_hour",
    "requests_24h",
    "completion_tokens_24h",
    "completion_tokens_last_hour",
];
pub const REQUESTS_HOUR: usize = 0;
pub const REQUESTS_DAY: usize = 1;
pub const TOKENS_DAY: usize = 2;
pub const TOKENS_HOUR: usize = 3;
/// Marker for "not in the histogram".
pub const NO_BUCKET: u8 = u8::MAX;
/// Four buckets per doubling: a percentile is read to within about 19 %.
const BUCKETS_PER_OCTAVE: f64 = 4.0;
const BUCKETS: usize = 160;

/// Histogram bucket of a non-negative value (0 has its own bucket).
pub fn bucket_of(value: u64) -> u8 {
    if value == 0 {
        return 0;
    }
    let b = 1.0 + ((value as f64).log2() * BUCKETS_PER_OCTAVE).floor();
    b.clamp(1.0, (BUCKETS - 1) as f64) as u8
}

/// A representative value of a bucket (its geometric middle).
fn bucket_value(bucket: usize) -> f64 {
    if bucket == 0 {
        0.0
    } else {
        ((bucket as f64 - 1.0 + 0.5) / BUCKETS_PER_OCTAVE).exp2()
    }
}

/// Bucket moves reported by one shard at one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulationDelta {
    moves: Vec<(u8, u8, i32)>,
}

impl PopulationDelta {
    /// Records an account moving from `old` to `new` in `metric` (either may be `NO_BUCKET`).
    pub fn record(&mut self, metric: usize, old: u8, new: u8) {
        if old == new {
            return;
        }
        if old != NO_BUCKET {
            self.moves.push((metric as u8, old, -1));
        }
        if new != NO_BUCKET {
            self.moves.push((metric as u8, new, 1));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

/// Histograms of every metric over the tracked population.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    counts: Vec<i64>,
}

impl Default for Population {
    fn default() -> Self {
        Self {
            counts: vec![0; METRICS * BUCKETS],
        }
    }
}

impl Population {
    pub fn apply(&mut self, delta: &PopulationDelta) {
        for &(metric, bucket, change) in &delta.moves {
            let index = metric as usize * BUCKETS + bucket as usize;
            if let Some(count) = self.counts.get_mut(index) {
                *count += i64::from(change);
            }
        }
    }

    pub fn accounts(&self, metric: usize) -> u64 {
        self.row(metric).iter().map(|c| (*c).max(0) as u64).sum()
    }

    fn row(&self, metric: usize) -> &[i64] {
        &self.counts[metric * BUCKETS..(metric + 1) * BUCKETS]
    }

    /// The `q` quantile (0..=1) of a metric, or `None` with no accounts.
    pub fn quantile(&self, metric: usize, q: f64) -> Option<f64> {
        let total = self.accounts(metric);
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (bucket, count) in self.row(metric).iter().enumerate() {
            seen += (*count).max(0) as u64;
            if seen >= rank {
                return Some(bucket_value(bucket));
            }
        }
        None
    }

    /// A snapshot of the baselines the detectors compare with.
    pub fn view(&self, percentile: f64) -> PopulationView {
        let mut view = PopulationView::default();
        for metric in 0..METRICS {
            view.accounts[metric] = self.accounts(metric);
            view.median[metric] = self.quantile(metric, 0.5).unwrap_or(0.0);
            view.high[metric] = self.quantile(metric, percentile).unwrap_or(0.0);
        }
        view.percentile = percentile;
        view
    }
}

/// Baselines at one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PopulationView {
    pub accounts: [u64; METRICS],
    pub median: [f64; METRICS],
    /// The configured high percentile (default p99).
    pub high: [f64; METRICS],
    pub percentile: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_values_round_trip_within_a_bucket() {
        let mut last = 0;
        for v in [0u64, 1, 2, 3, 10, 100, 1_000, 1_000_000, u64::MAX] {
            let b = bucket_of(v);
            assert!(b >= last);
            last = b;
        }
        let v = bucket_value(bucket_of(1_000) as usize);
        assert!((v / 1_000.0 - 1.0).abs() < 0.2, "{v}");
    }

    #[test]
    fn quantiles_follow_moves_in_and_out_of_the_population() {
        let mut population = Population::default();
        let mut delta = PopulationDelta::default();
        for v in 1..=100u64 {
            delta.record(REQUESTS_DAY, NO_BUCKET, bucket_of(v * 10));
        }
        population.apply(&delta);
        let p99 = population.quantile(REQUESTS_DAY, 0.99).unwrap();
        assert!((850.0..1_200.0).contains(&p99), "{p99}");
        let p50 = population.quantile(REQUESTS_DAY, 0.5).unwrap();
        assert!((400.0..600.0).contains(&p50), "{p50}");
        // Everyone above 500 leaves: the high percentile falls.
        let mut leave = PopulationDelta::default();
        for v in 51..=100u64 {
            leave.record(REQUESTS_DAY, bucket_of(v * 10), NO_BUCKET);
        }
        population.apply(&leave);
        assert_eq!(population.accounts(REQUESTS_DAY), 50);
        assert!(population.quantile(REQUESTS_DAY, 0.99).unwrap() < 600.0);
        assert_eq!(population.quantile(REQUESTS_HOUR, 0.5), None);
    }
}
