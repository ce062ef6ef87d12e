//! Figures of a run and of several runs: latency percentiles of one run,
//! computed with an HdrHistogram (no sorted copy of the samples, so that a
//! run's memory figures are not the bench's own), the run's distribution as
//! a curve of a few hundred points for the charts, and medians across runs.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// 4 significant digits: exact to the microsecond below 32.7 ms and within
/// 0.007 % above, finer than any figure is printed (0.01 ms at best).
const SIGNIFICANT_DIGITS: u8 = 4;

/// p50, p99 and max of one run's latencies, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One run's latency distribution as (quantile, ms) points, quantiles
/// rising from 0 to 1 (the max): what a chart draws, small enough to hand
/// from a child process as JSON and to keep an SVG small.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve(pub Vec<(f64, f64)>);

/// One run's latencies (µs) in an HdrHistogram, shifted so that early
/// (negative) ones fit.
pub struct Latencies {
    histogram: Histogram<u32>,
    offset: i64,
}

impl Latencies {
    /// Of latencies in µs (negative ones included); `None` without any.
    pub fn of_us(values: impl Iterator<Item = i64> + Clone) -> Option<Self> {
        let (min, max) = values
            .clone()
            .fold(None, |range: Option<(i64, i64)>, v| match range {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })?;
        // The histogram holds non-negative values: shift by the lowest, if
        // it is below zero (the resolution is then that of the spread from
        // the lowest: still exact within 32.7 ms of it).
        let offset = min.min(0);
        let shifted = |v: i64| u64::try_from(v - offset).unwrap_or(0);
        let mut histogram =
            Histogram::<u32>::new_with_max(shifted(max).max(2), SIGNIFICANT_DIGITS).ok()?;
        for v in values {
            histogram.saturating_record(shifted(v));
        }
        Some(Latencies { histogram, offset })
    }

    fn ms(&self, shifted_us: u64) -> f64 {
        (i64::try_from(shifted_us).unwrap_or(i64::MAX) + self.offset) as f64 / 1000.0
    }

    /// p50, p99 and max, by nearest rank.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            p50_ms: self.ms(self.histogram.value_at_quantile(0.50)),
            p99_ms: self.ms(self.histogram.value_at_quantile(0.99)),
            max_ms: self.ms(self.histogram.max()),
        }
    }

    /// The distribution at every 0.5 % up to 98.5 %, then at 20 points a
    /// decade of the tail (99 %, …, down to a single sample), then the max:
    /// about 260 points at 100,000 samples, 280 at a million.
    pub fn curve(&self) -> Curve {
        let count = self.histogram.len() as f64;
        let bulk = (0..198).map(|i| f64::from(i) / 200.0);
        let tail = (0..)
            .map(|k| 1.0 - 0.01 * 10f64.powf(-f64::from(k) / 20.0))
            .take_while(|q| (1.0 - q) * count >= 1.0);
        let mut points: Vec<(f64, f64)> = bulk
            .chain(tail)
            .map(|q| (q, self.ms(self.histogram.value_at_quantile(q))))
            .collect();
        points.push((1.0, self.ms(self.histogram.max())));
        Curve(points)
    }
}

/// The (lower) median of a figure over runs; `values` must not be empty.
pub fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[(values.len() - 1) / 2]
}

/// The median of the runs that gave the figure, if any did.
pub fn median_of_some(values: Vec<Option<f64>>) -> Option<f64> {
    let values: Vec<f64> = values.into_iter().flatten().collect();
    (!values.is_empty()).then(|| median(values))
}

/// The run whose `p99` is the (lower) median of the runs', a run without
/// one counting as the highest: the run a chart draws, as one run's
/// distribution cannot be a median of several. `None` if `runs` is empty.
pub fn median_run<T>(runs: &[T], p99: impl Fn(&T) -> Option<f64>) -> Option<&T> {
    let mut sorted: Vec<&T> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |r: &T| p99(r).unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b))
    });
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}
