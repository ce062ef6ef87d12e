//! An interval schedule: every N seconds from an anchor, in absolute time
//! (daylight saving does not move it).

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{Error, Field};

/// The shortest interval the service accepts unless configured otherwise,
/// and the shortest a stored schedule may have.
pub const DEFAULT_MIN_INTERVAL: TimeDelta = TimeDelta::seconds(1);

/// Fires at `anchor`, `anchor + every`, `anchor + 2 × every`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntervalSchedule {
    every: TimeDelta,
    anchor: DateTime<Utc>,
}

impl IntervalSchedule {
    /// An interval of whole seconds, at least `min_every` (the service's
    /// configured minimum, [`DEFAULT_MIN_INTERVAL`] by default), counted
    /// from `anchor`. Errors are on [`Field::Interval`].
    pub fn new(
        every: TimeDelta,
        anchor: DateTime<Utc>,
        min_every: TimeDelta,
    ) -> Result<Self, Error> {
        if every.subsec_nanos() != 0 {
            return Err(Error::invalid(
                Field::Interval,
                format!("must be whole seconds, got {every}"),
            ));
        }
        let min_every = min_every.max(DEFAULT_MIN_INTERVAL);
        if every < min_every {
            return Err(Error::invalid(
                Field::Interval,
                format!(
                    "must be at least {}s, got {}s",
                    min_every.num_seconds(),
                    every.num_seconds()
                ),
            ));
        }
        Ok(IntervalSchedule { every, anchor })
    }

    /// The period.
    pub fn every(&self) -> TimeDelta {
        self.every
    }

    /// The first instant it fires at; the others follow it by whole periods.
    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor
    }

    /// The first instant strictly after `after`; `None` past the last
    /// representable time.
    pub(super) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if after < self.anchor {
            return Some(self.anchor);
        }
        // Both are whole milliseconds or coarser; `after` may be finer, and
        // truncating it keeps the count of whole periods.
        let every_ms = self.every.num_milliseconds();
        let periods = (after - self.anchor).num_milliseconds() / every_ms + 1;
        let offset = TimeDelta::try_milliseconds(periods.checked_mul(every_ms)?)?;
        self.anchor.checked_add_signed(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn it_fires_at_the_anchor_then_every_period_after_it() {
        let anchor = at("2024-11-03T04:00:00Z");
        let every =
            IntervalSchedule::new(TimeDelta::minutes(90), anchor, DEFAULT_MIN_INTERVAL).unwrap();
        assert_eq!(every.next_after(at("2024-01-01T00:00:00Z")), Some(anchor));
        assert_eq!(every.next_after(anchor), Some(at("2024-11-03T05:30:00Z")));
        assert_eq!(
            every.next_after(at("2024-11-03T05:29:59.999999999Z")),
            Some(at("2024-11-03T05:30:00Z"))
        );
        assert_eq!(
            every.next_after(at("2024-11-03T05:30:00Z")),
            Some(at("2024-11-03T07:00:00Z"))
        );
    }

    #[test]
    fn an_interval_below_the_minimum_or_not_whole_seconds_is_refused() {
        let anchor = at("2024-01-01T00:00:00Z");
        let err = IntervalSchedule::new(TimeDelta::seconds(4), anchor, TimeDelta::seconds(5))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interval: must be at least 5s, got 4s"
        );
        let err = IntervalSchedule::new(TimeDelta::zero(), anchor, TimeDelta::zero()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interval: must be at least 1s, got 0s"
        );
        let err = IntervalSchedule::new(TimeDelta::seconds(-60), anchor, DEFAULT_MIN_INTERVAL)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interval: must be at least 1s, got -60s"
        );
        let err =
            IntervalSchedule::new(TimeDelta::milliseconds(1500), anchor, DEFAULT_MIN_INTERVAL)
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid interval: must be whole seconds, got PT1.5S"
        );
    }

    #[test]
    fn the_last_representable_time_ends_it() {
        let every = IntervalSchedule::new(
            TimeDelta::days(365 * 1000),
            DateTime::<Utc>::MAX_UTC - TimeDelta::days(1),
            DEFAULT_MIN_INTERVAL,
        )
        .unwrap();
        assert_eq!(
            every.next_after(DateTime::<Utc>::MAX_UTC - TimeDelta::hours(1)),
            None
        );
    }
}
