//! Timing of one subject over a list of instants: the mean cost of a call
//! from a timed loop, and percentiles of calls timed one by one.

use std::{hint::black_box, time::Instant};

use chrono::{DateTime, Utc};

use crate::cases::Subject;

/// Percentiles of what one subject cost on one case.
pub struct Figures {
    /// Percentiles of calls timed one by one (ns; each includes the cost of
    /// reading the clock twice, about 20-40 ns here).
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// The mean cost of a call: `calls` calls over `instants`, cycled.
pub fn mean_ns(subject: &Subject, instants: &[DateTime<Utc>], calls: usize) -> f64 {
    let started = Instant::now();
    for after in instants.iter().cycle().take(calls) {
        black_box(subject.next(black_box(*after)));
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

/// Percentiles of `calls` calls timed one by one.
pub fn figures(subject: &Subject, instants: &[DateTime<Utc>], calls: usize) -> Figures {
    let mut each: Vec<u64> = instants
        .iter()
        .cycle()
        .take(calls)
        .map(|after| {
            let started = Instant::now();
            black_box(subject.next(black_box(*after)));
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .collect();
    each.sort_unstable();
    let at = |quantile: f64| each[((each.len() - 1) as f64 * quantile).round() as usize];
    Figures {
        p50_ns: at(0.50),
        p99_ns: at(0.99),
        max_ns: at(1.0),
    }
}

/// The (lower) median.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}
