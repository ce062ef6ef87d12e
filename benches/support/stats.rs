//! Figures of a run and of several runs: latency percentiles of one run,
//! computed with an HdrHistogram (no sorted copy of the samples, so that a
//! run's memory figures are not the bench's own), and medians across runs.

use hdrhistogram::Histogram;

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

impl Percentiles {
    /// Of latencies in µs (negative ones, from early firings, included),
    /// by nearest rank; `None` without any.
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
        let ms = |us: u64| (i64::try_from(us).unwrap_or(i64::MAX) + offset) as f64 / 1000.0;
        Some(Percentiles {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        })
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
