//! The last hour of firings, minute by minute: how many jobs fired, how
//! late, and how their runs ended. The web console's overview draws it.
//!
//! Prometheus counts totals since start-up; a chart of the last hour needs
//! them per minute, and the console cannot count on a Prometheus server
//! being there to ask. So the instruments that count firings and results
//! ([`super::metrics::Metrics`]) also count here, into the minute they
//! happen in. A minute with firings holds a lateness histogram
//! (HdrHistogram, 2 significant digits up to an hour: about 8 KiB), so the
//! hour costs at most half a MiB and a quiet service nothing. These are
//! this replica's firings: each replica keeps its own.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

/// Minutes kept: the last hour and the current minute.
const KEPT: i64 = 61;

/// Largest lateness told apart, in milliseconds (an hour); a later firing
/// counts as an hour late.
const MAX_LATENESS_MS: u64 = 3_600_000;

/// The firings of the last hour, by minute; shared by the instruments.
#[derive(Debug, Default)]
pub struct RecentFirings {
    minutes: Mutex<VecDeque<Minute>>,
}

/// What happened in one minute.
#[derive(Debug)]
struct Minute {
    /// Minutes since the Unix epoch.
    index: i64,
    succeeded: u64,
    failed: u64,
    /// Lateness of the firings, in milliseconds (its count is the firings).
    lateness: Option<Histogram<u32>>,
}

/// One minute of the last hour, summed up.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteSummary {
    /// When the minute began.
    pub start: DateTime<Utc>,
    /// Jobs fired.
    pub fired: u64,
    /// Runs that ended SUCCEEDED.
    pub succeeded: u64,
    /// Runs that ended FAILED (retried or not).
    pub failed: u64,
    /// Median, 99th percentile and largest lateness, in milliseconds (none
    /// without firings).
    pub lateness_ms: Option<[u64; 3]>,
}

impl RecentFirings {
    /// A job fired `lateness_ms` late at `at`.
    pub fn fired(&self, lateness_ms: u64, at: DateTime<Utc>) {
        self.in_minute(at, |minute| {
            let lateness = minute.lateness.get_or_insert_with(|| {
                Histogram::new_with_bounds(1, MAX_LATENESS_MS, 2)
                    .expect("constant bounds that HdrHistogram accepts")
            });
            lateness.saturating_record(lateness_ms);
        });
    }

    /// A run ended at `at`, SUCCEEDED or not.
    pub fn ended(&self, succeeded: bool, at: DateTime<Utc>) {
        self.in_minute(at, |minute| {
            if succeeded {
                minute.succeeded += 1;
            } else {
                minute.failed += 1;
            }
        });
    }

    /// The 60 minutes up to and including `now`'s, oldest first; a minute
    /// without events is all zeros.
    pub fn last_hour(&self, now: DateTime<Utc>) -> Vec<MinuteSummary> {
        let minutes = self.minutes.lock().unwrap_or_else(PoisonError::into_inner);
        let current = minute_of(now);
        (current - 59..=current)
            .map(|index| {
                let minute = minutes.iter().find(|m| m.index == index);
                summary(index, minute)
            })
            .collect()
    }

    /// Runs `count` on the minute of `at`, begun if new; minutes older
    /// than the hour are dropped.
    fn in_minute(&self, at: DateTime<Utc>, count: impl FnOnce(&mut Minute)) {
        let index = minute_of(at);
        let mut minutes = self.minutes.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = minutes.back().map_or(index, |m| m.index.max(index));
        if index <= newest - KEPT {
            // Older than the hour kept (the clock stepped far back).
            return;
        }
        while minutes.front().is_some_and(|m| m.index <= newest - KEPT) {
            minutes.pop_front();
        }
        // Nearly always the newest minute; a clock that stepped back finds
        // an older one, or a place for it.
        let before = minutes.iter().rposition(|m| m.index <= index);
        let slot = match before {
            Some(i) if minutes[i].index == index => i,
            _ => {
                let place = before.map_or(0, |i| i + 1);
                minutes.insert(place, Minute::new(index));
                place
            }
        };
        count(&mut minutes[slot]);
    }
}

impl Minute {
    fn new(index: i64) -> Minute {
        Minute {
            index,
            succeeded: 0,
            failed: 0,
            lateness: None,
        }
    }
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

fn summary(index: i64, minute: Option<&Minute>) -> MinuteSummary {
    let lateness = minute.and_then(|m| m.lateness.as_ref());
    MinuteSummary {
        start: DateTime::from_timestamp(index * 60, 0).unwrap_or_default(),
        fired: lateness.map_or(0, Histogram::len),
        succeeded: minute.map_or(0, |m| m.succeeded),
        failed: minute.map_or(0, |m| m.failed),
        lateness_ms: lateness
            .map(|h| [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn at(minute: i64, second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 / 60 * 60 + minute * 60 + second, 0).unwrap()
    }

    #[test]
    fn firings_and_outcomes_count_in_their_minute() {
        let recent = RecentFirings::default();
        for lateness in 1..=100 {
            recent.fired(lateness, at(0, 5));
        }
        recent.fired(7, at(2, 59));
        recent.ended(true, at(2, 0));
        recent.ended(false, at(2, 1));
        let hour = recent.last_hour(at(2, 30));
        assert_eq!(hour.len(), 60);
        assert_eq!(hour[59].start, at(2, 0));
        let (first, second, third) = (&hour[57], &hour[58], &hour[59]);
        assert_eq!((first.fired, first.lateness_ms), (100, Some([50, 99, 100])));
        assert_eq!(
            (second.fired, second.succeeded, second.lateness_ms),
            (0, 0, None)
        );
        assert_eq!((third.fired, third.succeeded, third.failed), (1, 1, 1));
        assert_eq!(third.lateness_ms, Some([7, 7, 7]));
    }

    #[test]
    fn minutes_older_than_the_hour_are_dropped_and_a_clock_step_back_is_kept_in_order() {
        let recent = RecentFirings::default();
        recent.fired(1, at(0, 0));
        recent.fired(2, at(70, 0));
        // The clock stepped back 10 minutes: counted in its own minute.
        recent.fired(3, at(60, 0));
        // Older than every minute kept: not counted.
        recent.fired(4, at(0, 0) - TimeDelta::minutes(5));
        let minutes = recent.minutes.lock().unwrap();
        let kept: Vec<i64> = minutes
            .iter()
            .map(|m| m.index - minute_of(at(0, 0)))
            .collect();
        assert_eq!(kept, [60, 70]);
        drop(minutes);
        let hour = recent.last_hour(at(70, 0));
        assert_eq!(hour.iter().map(|m| m.fired).sum::<u64>(), 2);
        assert_eq!(hour[49].lateness_ms, Some([3, 3, 3]));
    }

    #[test]
    fn a_lateness_beyond_an_hour_counts_as_an_hour() {
        let recent = RecentFirings::default();
        recent.fired(10 * MAX_LATENESS_MS, at(0, 0));
        let max = recent.last_hour(at(0, 0))[59].lateness_ms.unwrap()[2];
        assert!((MAX_LATENESS_MS..MAX_LATENESS_MS + MAX_LATENESS_MS / 50).contains(&max));
    }
}
