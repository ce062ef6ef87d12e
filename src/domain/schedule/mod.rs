//! Schedules: when a job fires. Pure computation, no I/O: what a schedule
//! is, its validation, and its occurrences, correct across daylight-saving
//! transitions.
//!
//! # What a schedule is
//!
//! A [`Timing`] is a [`Schedule`] with [`Bounds`] and a [`Jitter`]:
//! - [`Schedule::Once`]: due once at a time (today's jobs; a time in the
//!   past means now).
//! - [`Schedule::Cron`]: at the local times a cron expression matches in an
//!   IANA time zone, under a [`DstPolicy`] ([`CronSchedule`]). Expressions
//!   have 5 fields (minute hour day-of-month month day-of-week), 6 (seconds
//!   first) or are a macro (`@yearly`, `@annually`, `@monthly`, `@weekly`,
//!   `@daily`, `@midnight`, `@hourly`), in croner's syntax: lists, ranges,
//!   steps, `JAN`-`DEC`, `SUN`-`SAT`, `L` (last), `W` (nearest weekday),
//!   `#` (nth weekday of the month). When both day fields are restricted a
//!   day matches either, as in Vixie cron (`+` before day-of-week: both).
//! - [`Schedule::Interval`]: every N seconds from an anchor instant
//!   ([`IntervalSchedule`]), in absolute time: daylight saving does not
//!   move it.
//!
//! Bounds are for recurring schedules: no occurrence before `start` or
//! after `end` (both inclusive), and at most `max_runs` firings (the
//! service counts them and passes the count in). The jitter delays each
//! firing by a deterministic amount below its bound (see [`Jitter`]).
//!
//! # Daylight saving
//!
//! A cron expression names local wall-clock times. Where a zone's clocks
//! jump, a local time occurs twice or not at all, and the job's
//! [`DstPolicy`] decides:
//!
//! - **A time that occurs twice** (clocks go back; [`RepeatedTime`]). In
//!   New York on 2024-11-03 the clocks go from 01:59:59 EDT back to 01:00
//!   EST, so 01:30 is 05:30Z and again 06:30Z. `30 1 * * *` fires at
//!   05:30Z under `first` (the default), at 06:30Z under `last`, at both
//!   under `both`. An expression that matches many times in the repeated
//!   hour follows the same rule for each time: `0 * * * *` fires at 00:00
//!   EDT, 01:00 EDT and 02:00 EST under `first` (the hour 01 once, not
//!   twice), 00:00 EDT, 01:00 EST, 02:00 EST under `last`, and at all four
//!   instants under `both`; `*/15 * * * *` fires 4 times in the repeated
//!   hour under `first` or `last` and 8 under `both`.
//! - **A time that does not exist** (clocks go forward; [`SkippedTime`]). In
//!   New York on 2024-03-10 the clocks go from 01:59:59 EST to 03:00 EDT.
//!   `30 2 * * *` fires at 03:00 EDT (07:00Z) under `next-valid` (the
//!   default): once at the first instant after the gap, however many
//!   skipped times matched (`10,40 * * * *` fires 01:10, 01:40, 03:00, 03:10,
//!   03:40), and at 03:00 only once even when 03:00 itself matches. Under
//!   `skip` it does not fire that day.
//! - **Half-hour zones** behave alike: Australia/Lord_Howe goes from 02:00
//!   to 02:30 on the first Sunday of October and back from 02:00 to 01:30 on
//!   the first Sunday of April, so its repeated and skipped times are half
//!   an hour long.
//!
//! Each [`Occurrence`] says which case it is ([`OccurrenceKind`]): regular,
//! one of the two passes of a repeated time, or shifted out of a gap.
//! croner is used to match wall-clock times only; the policies are applied
//! here, whatever the shape of the expression. croner's own handling is not
//! configurable and picks by shape: in croner 4 a fixed time (`30 1 * * *`)
//! runs at the first instant and right after a gap, while a wildcard or a
//! step (`0 * * * *`) runs at both instants and never in a gap, so an
//! hourly job runs twice in the repeated hour; croner 3 (which
//! tokio-cron-scheduler uses) runs wildcards on the first pass only, but
//! asked from inside the second pass it answers an instant of the first,
//! before the one it was asked from.
//!
//! # Defaults
//!
//! | what | default | why |
//! |---|---|---|
//! | time zone | `UTC` | no transitions: a client that names none gets no surprise |
//! | repeated time | `first` | each local time fires once, at the first instant the clock shows it: no second run of a daily job, and no extra runs of an hourly one |
//! | skipped time | `next-valid` | a daily job still runs on the day the clocks go forward, at the first instant after the gap, once |
//! | jitter | 0 | fires at the nominal time, as today |
//! | minimum interval | 1 s ([`DEFAULT_MIN_INTERVAL`]) | the service passes its configured one to [`IntervalSchedule::new`] |
//!
//! # Stored text form
//!
//! A [`Timing`] is stored as one line (`Display`, read back with
//! `FromStr`): the kind, then `key=value` words, the expression last (it
//! has spaces):
//!
//! ```text
//! once at=2030-01-01T09:00:00Z
//! interval every=90s anchor=2024-01-01T00:00:00.250Z max_runs=10
//! cron tz=Europe/London repeated=first skipped=next-valid end=2025-01-01T00:00:00Z jitter=30000ms expr=30 1 * * *
//! ```
//!
//! Times are RFC 3339 in UTC, as precise as they are (milliseconds in
//! practice); `every` is in whole seconds, `jitter` in milliseconds; absent
//! bounds and a zero jitter are left out; the expression is normalised
//! ([`CronExpression`]). Written in this order, read in any (`tz`,
//! `repeated` and `skipped` default when absent). Reading a written form
//! gives the same timing, and a timing is always written the same way, so
//! stores may keep and compare it. Reading checks every rule but the
//! configured minimum interval (only the 1 s floor), so that a stored job
//! stays readable when the configuration changes.
//!
//! # Use
//!
//! The service builds a [`Timing`] from a request (each part validated on
//! its own [`Field`](crate::domain::Field)), stores its text form, arms [`Timing::fire_time`] of [`Timing::first`], and after each firing
//! asks [`Timing::next_after`] the occurrence's nominal time.
//! [`Timing::occurrences`] lists the ones missed during a downtime, and
//! [`Timing::preview`] the next ones of a schedule not yet saved.

mod cron;
mod dst;
mod expression;
mod interval;
mod jitter;
mod occurrence;
mod text;
mod timing;

#[cfg(test)]
mod dst_table;

pub use cron::{CronSchedule, parse_time_zone};
pub use dst::{DstPolicy, RepeatedTime, SkippedTime};
pub use expression::{CRON_EXPRESSION_MAX_BYTES, CronExpression};
pub use interval::{DEFAULT_MIN_INTERVAL, IntervalSchedule};
pub use jitter::{JITTER_MAX, Jitter};
pub use occurrence::{Occurrence, OccurrenceKind, Pass};
pub use timing::{Bounds, Occurrences, Schedule, Timing};
