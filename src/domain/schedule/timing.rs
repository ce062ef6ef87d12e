//! When a job fires: its schedule, the bounds around it and its jitter, and
//! the occurrences they give.

use std::iter;

use chrono::{DateTime, TimeDelta, Utc};

use super::{CronSchedule, IntervalSchedule, Jitter, Occurrence, text::rfc3339};
use crate::domain::{Error, Field, JobId};

/// What instants a job is due at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Once, at `at` (today's jobs). A time in the past means now.
    Once {
        /// When it is due.
        at: DateTime<Utc>,
    },
    /// At the local times a cron expression matches, in a time zone.
    Cron(CronSchedule),
    /// Every whole number of seconds from an anchor.
    Interval(IntervalSchedule),
}

/// Limits around a recurring schedule: it fires at no occurrence before
/// `start` or after `end` (both inclusive), and at most `max_runs` times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    max_runs: Option<u64>,
}

impl Bounds {
    /// Bounds whose `end` is not before `start` and whose `max_runs` is at
    /// least 1; errors are on [`Field::EndTime`] and [`Field::MaxRuns`].
    pub fn new(
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        max_runs: Option<u64>,
    ) -> Result<Self, Error> {
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            return Err(Error::invalid(
                Field::EndTime,
                format!("{} is before start_time {}", rfc3339(end), rfc3339(start)),
            ));
        }
        if max_runs == Some(0) {
            return Err(Error::invalid(Field::MaxRuns, "must be at least 1"));
        }
        Ok(Bounds {
            start,
            end,
            max_runs,
        })
    }

    /// The earliest occurrence it allows.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.start
    }

    /// The latest occurrence it allows.
    pub fn end(&self) -> Option<DateTime<Utc>> {
        self.end
    }

    /// How many occurrences it allows.
    pub fn max_runs(&self) -> Option<u64> {
        self.max_runs
    }

    fn is_none(&self) -> bool {
        *self == Bounds::default()
    }
}

/// A job's schedule with its bounds and jitter: everything that decides
/// when it fires. See the docs of [`super`] for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    schedule: Schedule,
    bounds: Bounds,
    jitter: Jitter,
}

/// The occurrences of a [`Timing`] after an instant, in order; see
/// [`Timing::occurrences`].
#[derive(Debug, Clone)]
pub struct Occurrences<'a> {
    timing: &'a Timing,
    after: DateTime<Utc>,
    runs: u64,
}

impl Timing {
    /// A job due once at `at`, with no jitter: today's jobs.
    pub fn once(at: DateTime<Utc>) -> Self {
        Timing {
            schedule: Schedule::Once { at },
            bounds: Bounds::default(),
            jitter: Jitter::default(),
        }
    }

    /// A schedule with bounds and jitter. Bounds are for recurring
    /// schedules: a once-schedule with one is refused, on the bound's field.
    pub fn new(schedule: Schedule, bounds: Bounds, jitter: Jitter) -> Result<Self, Error> {
        if matches!(schedule, Schedule::Once { .. }) && !bounds.is_none() {
            let field = if bounds.start.is_some() {
                Field::StartTime
            } else if bounds.end.is_some() {
                Field::EndTime
            } else {
                Field::MaxRuns
            };
            return Err(Error::invalid(
                field,
                "applies only to recurring (cron and interval) schedules",
            ));
        }
        Ok(Timing {
            schedule,
            bounds,
            jitter,
        })
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The bounds (none for a once-schedule).
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// The jitter bound.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The timing in English words, for people: the schedule (a cron
    /// expression as croner describes it), its zone and its bounds.
    pub fn describe(&self) -> String {
        let mut words = match &self.schedule {
            Schedule::Once { at } => format!("Once, at {}", rfc3339(*at)),
            Schedule::Cron(cron) => format!(
                "{}, in {}",
                cron.expression.describe().trim_end_matches('.'),
                cron.time_zone.name()
            ),
            Schedule::Interval(interval) => {
                let every = interval.every().to_std().unwrap_or_default();
                format!(
                    "Every {}, counted from {}",
                    humantime::format_duration(every),
                    rfc3339(interval.anchor())
                )
            }
        };
        if let Some(start) = self.bounds.start {
            words.push_str(&format!(", from {}", rfc3339(start)));
        }
        if let Some(end) = self.bounds.end {
            words.push_str(&format!(", until {}", rfc3339(end)));
        }
        if let Some(max) = self.bounds.max_runs {
            words.push_str(&format!(", at most {max} runs"));
        }
        words
    }

    /// The first occurrence of a job created (or rescheduled) at `now`: a
    /// once-schedule's time, even in the past (it is then due now, as
    /// today); for a recurring schedule, the first occurrence at or after
    /// both `now` and `start`. A schedule with none is refused: on
    /// [`Field::EndTime`] when `end` comes first, else on the schedule's
    /// own field.
    pub fn first(&self, now: DateTime<Utc>) -> Result<Occurrence, Error> {
        if let Schedule::Once { at } = self.schedule {
            return Ok(Occurrence::regular(at));
        }
        let just_before = now - TimeDelta::nanoseconds(1);
        self.next_after(just_before, 0).ok_or_else(|| {
            let from = self.bounds.start.map_or(now, |start| start.max(now));
            match self.bounds.end {
                Some(end) => Error::invalid(
                    Field::EndTime,
                    format!("no occurrence from {} to {}", rfc3339(from), rfc3339(end)),
                ),
                None => Error::invalid(
                    self.schedule_field(),
                    format!("has no occurrence from {} on", rfc3339(from)),
                ),
            }
        })
    }

    /// The occurrence after `after` (the nominal time of the occurrence
    /// that last fired, never its jittered fire time) for a job that has
    /// fired `runs` times; `None` when there is none: past `end`, `runs` at
    /// `max_runs`, a once-schedule at or before `after`.
    pub fn next_after(&self, after: DateTime<Utc>, runs: u64) -> Option<Occurrence> {
        if self.bounds.max_runs.is_some_and(|max| runs >= max) {
            return None;
        }
        let after = match self.bounds.start {
            Some(start) if start > after => start - TimeDelta::nanoseconds(1),
            _ => after,
        };
        let next = match &self.schedule {
            Schedule::Once { at } => (*at > after).then(|| Occurrence::regular(*at)),
            Schedule::Cron(cron) => cron.next_after(after),
            Schedule::Interval(interval) => interval.next_after(after).map(Occurrence::regular),
        }?;
        match self.bounds.end {
            Some(end) if next.at > end => None,
            _ => Some(next),
        }
    }

    /// The occurrences after `after` for a job that has fired `runs` times,
    /// in order, as [`Timing::next_after`] gives them one after another:
    /// the ones missed while the service was down
    /// (`.take_while(|o| o.at <= now)`), or a preview of a stored job.
    pub fn occurrences(&self, after: DateTime<Utc>, runs: u64) -> Occurrences<'_> {
        Occurrences {
            timing: self,
            after,
            runs,
        }
    }

    /// The first `count` occurrences of a schedule not yet saved, as if it
    /// were created at `now`: [`Timing::first`], then those after it. A
    /// schedule with none is refused as [`Timing::first`] refuses it.
    pub fn preview(&self, now: DateTime<Utc>, count: usize) -> Result<Vec<Occurrence>, Error> {
        let first = self.first(now)?;
        Ok(iter::once(first)
            .chain(self.occurrences(first.at, 1))
            .take(count)
            .collect())
    }

    /// When `job` fires for `occurrence`: its nominal time plus the job's
    /// jitter delay for it (see [`Jitter::delay`]).
    pub fn fire_time(&self, job: &JobId, occurrence: &Occurrence) -> DateTime<Utc> {
        occurrence.at + self.jitter.delay(job, occurrence.at)
    }

    fn schedule_field(&self) -> Field {
        match self.schedule {
            Schedule::Once { .. } => Field::ScheduleTime,
            Schedule::Cron(_) => Field::CronExpression,
            Schedule::Interval(_) => Field::Interval,
        }
    }
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        let next = self.timing.next_after(self.after, self.runs)?;
        self.after = next.at;
        self.runs += 1;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use chrono_tz::Tz;

    use super::*;
    use crate::domain::schedule::{
        CronExpression, DEFAULT_MIN_INTERVAL, DstPolicy, parse_time_zone,
    };

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn every_minute_from(anchor: &str, bounds: Bounds) -> Timing {
        let interval =
            IntervalSchedule::new(TimeDelta::minutes(1), at(anchor), DEFAULT_MIN_INTERVAL).unwrap();
        Timing::new(Schedule::Interval(interval), bounds, Jitter::default()).unwrap()
    }

    fn times(occurrences: impl Iterator<Item = Occurrence>) -> Vec<DateTime<Utc>> {
        occurrences.map(|o| o.at).collect()
    }

    #[test]
    fn a_once_schedule_is_due_at_its_time_even_past_and_only_once() {
        let due = at("2024-01-01T09:00:00.250Z");
        let once = Timing::once(due);
        assert_eq!(once.first(at("2025-01-01T00:00:00Z")).unwrap().at, due);
        assert_eq!(
            once.next_after(at("2023-12-31T00:00:00Z"), 0).unwrap().at,
            due
        );
        assert_eq!(once.next_after(due, 1), None);
        assert_eq!(
            once.preview(at("2023-01-01T00:00:00Z"), 5).unwrap().len(),
            1
        );
    }

    #[test]
    fn start_and_end_are_inclusive_and_max_runs_counts_the_firings() {
        let bounds = Bounds::new(
            Some(at("2024-01-01T00:02:00Z")),
            Some(at("2024-01-01T00:04:00Z")),
            None,
        )
        .unwrap();
        let timing = every_minute_from("2024-01-01T00:00:00Z", bounds);
        assert_eq!(
            times(timing.occurrences(at("2023-12-31T00:00:00Z"), 0)),
            [
                at("2024-01-01T00:02:00Z"),
                at("2024-01-01T00:03:00Z"),
                at("2024-01-01T00:04:00Z")
            ]
        );
        let three = Bounds::new(None, None, Some(3)).unwrap();
        let timing = every_minute_from("2024-01-01T00:00:00Z", three);
        let after = at("2024-01-01T00:00:30Z");
        assert_eq!(timing.occurrences(after, 0).count(), 3);
        assert_eq!(timing.occurrences(after, 2).count(), 1);
        assert_eq!(timing.next_after(after, 3), None);
    }

    #[test]
    fn bounds_that_break_a_rule_and_bounds_on_a_once_schedule_are_refused() {
        let start = Some(at("2024-01-02T00:00:00Z"));
        let before = Some(at("2024-01-01T00:00:00Z"));
        let err = Bounds::new(start, before, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid end_time: 2024-01-01T00:00:00Z is before start_time 2024-01-02T00:00:00Z"
        );
        assert_eq!(
            Bounds::new(None, None, Some(0))
                .unwrap_err()
                .invalid_field(),
            Field::MaxRuns
        );
        let once = Schedule::Once {
            at: at("2024-01-01T00:00:00Z"),
        };
        for (bounds, field) in [
            (Bounds::new(start, None, None).unwrap(), Field::StartTime),
            (Bounds::new(None, start, None).unwrap(), Field::EndTime),
            (Bounds::new(None, None, Some(1)).unwrap(), Field::MaxRuns),
        ] {
            let err = Timing::new(once.clone(), bounds, Jitter::default()).unwrap_err();
            assert_eq!(err.invalid_field(), field);
        }
    }

    #[test]
    fn a_schedule_with_no_occurrence_left_is_refused() {
        let ended = Bounds::new(None, Some(at("2024-01-01T00:00:00Z")), None).unwrap();
        let timing = every_minute_from("2023-01-01T00:00:00Z", ended);
        let err = timing.first(at("2024-06-01T00:00:00Z")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid end_time: no occurrence from 2024-06-01T00:00:00Z to 2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn an_interval_and_its_bounds_are_described_in_words() {
        let bounds = Bounds::new(
            Some(at("2024-01-01T00:00:00Z")),
            Some(at("2024-02-01T00:00:00Z")),
            Some(5),
        )
        .unwrap();
        assert_eq!(
            every_minute_from("2023-12-31T23:59:00Z", bounds).describe(),
            "Every 1m, counted from 2023-12-31T23:59:00Z, from 2024-01-01T00:00:00Z, \
             until 2024-02-01T00:00:00Z, at most 5 runs"
        );
        assert_eq!(
            Timing::once(at("2024-01-01T09:00:00Z")).describe(),
            "Once, at 2024-01-01T09:00:00Z"
        );
    }

    #[test]
    fn an_interval_schedule_ignores_daylight_saving() {
        // Hourly from midnight EDT on the day New York's clocks go back:
        // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST.
        let hourly = IntervalSchedule::new(
            TimeDelta::hours(1),
            at("2024-11-03T00:00:00-04:00"),
            DEFAULT_MIN_INTERVAL,
        )
        .unwrap();
        let timing = Timing::new(
            Schedule::Interval(hourly),
            Bounds::default(),
            Jitter::default(),
        )
        .unwrap();
        assert_eq!(
            times(
                timing
                    .preview(at("2024-11-01T00:00:00Z"), 4)
                    .unwrap()
                    .into_iter()
            ),
            [
                at("2024-11-03T04:00:00Z"),
                at("2024-11-03T05:00:00Z"),
                at("2024-11-03T06:00:00Z"),
                at("2024-11-03T07:00:00Z")
            ]
        );
    }

    /// The service's use, step by step: the example of the module's API.
    #[test]
    fn create_fire_catch_up_and_preview_a_cron_job() {
        // Create: from the strings of a request.
        let cron = CronSchedule {
            expression: CronExpression::parse("0 9 * * MON-FRI").unwrap(),
            time_zone: parse_time_zone("Europe/London").unwrap(),
            dst: DstPolicy {
                repeated: "first".parse().unwrap(),
                skipped: "next-valid".parse().unwrap(),
            },
        };
        let jitter = Jitter::new(TimeDelta::seconds(30)).unwrap();
        let timing = Timing::new(Schedule::Cron(cron), Bounds::default(), jitter).unwrap();
        let stored = timing.to_string();
        assert_eq!(
            stored,
            "cron tz=Europe/London repeated=first skipped=next-valid jitter=30000ms expr=0 9 * * MON-FRI"
        );
        let job = JobId::parse_str("65f0c1d2e3f4a5b6c7d8e9f0").unwrap();
        // In words, for the console.
        assert_eq!(
            timing.describe(),
            "At 09:00, on Monday, Tuesday, Wednesday, Thursday, and Friday, in Europe/London"
        );

        // The first fire time: Friday 2024-03-29 09:00 GMT, plus its jitter.
        let now = at("2024-03-29T08:00:00Z");
        let first = timing.first(now).unwrap();
        assert_eq!(first.at, at("2024-03-29T09:00:00Z"));
        let fire = timing.fire_time(&job, &first);
        assert!(fire >= first.at && fire < first.at + TimeDelta::seconds(30));

        // After it fired: the next, from the nominal time, read back from
        // the store. Monday 09:00 BST (the clocks went forward on Sunday).
        let timing: Timing = stored.parse().unwrap();
        let next = timing.next_after(first.at, 1).unwrap();
        assert_eq!(next.at, at("2024-04-01T08:00:00Z"));

        // Catch-up: down from Monday 08:30Z to Thursday 12:00Z.
        let missed: Vec<_> = timing
            .occurrences(next.at, 2)
            .take_while(|o| o.at <= at("2024-04-04T12:00:00Z"))
            .take(100)
            .map(|o| o.at)
            .collect();
        assert_eq!(
            missed,
            [
                at("2024-04-02T08:00:00Z"),
                at("2024-04-03T08:00:00Z"),
                at("2024-04-04T08:00:00Z")
            ]
        );

        // Preview of an expression not yet saved.
        let preview = Timing::new(
            Schedule::Cron(CronSchedule {
                expression: CronExpression::parse("@monthly").unwrap(),
                time_zone: Tz::UTC,
                dst: DstPolicy::default(),
            }),
            Bounds::default(),
            Jitter::default(),
        )
        .unwrap()
        .preview(now, 2)
        .unwrap();
        assert_eq!(
            times(preview.into_iter()),
            [at("2024-04-01T00:00:00Z"), at("2024-05-01T00:00:00Z")]
        );
    }
}
