//! Recurring jobs: a job that fires on a [`Timing`] (cron or interval)
//! instead of once, with the policies that decide what happens when the
//! service was down ([`CatchUp`]) or a run is still going when the next
//! occurrence comes ([`Overlap`]), and the state that follows it from one
//! occurrence to the next ([`Recurrence`]).
//!
//! Everything here is pure: the stores apply what [`Job::claimed`] and
//! [`Job::take_result`] decide (see `advance.rs`) in one conditional write,
//! so that the claim that fires occurrence N also stores occurrence N+1 and
//! its fire token, and racing claimers win each occurrence once.
//!
//! # Defaults
//!
//! | what | default | why |
//! |---|---|---|
//! | catch-up | `once` | missed occurrences are not lost silently: one run stands for all of them, and its event lists them |
//! | catch-up window | 1 hour ([`DEFAULT_CATCH_UP_WINDOW`]) | an occurrence more than an hour late is stale for most work; at most 7 days ([`CATCH_UP_WINDOW_MAX`]) |
//! | `each` maximum | 10 ([`DEFAULT_CATCH_UP_MAX`]) | a bounded burst after a long downtime; at most 1000 |
//! | overlap | `skip` | never two runs of one job at once (Quartz's `DisallowConcurrentExecution`, Temporal's default) |
//!
//! [`Job::claimed`]: crate::domain::Job::claimed
//! [`Job::take_result`]: crate::domain::Job::take_result

mod advance;
mod stored;

use std::{fmt, str::FromStr};

use chrono::{DateTime, TimeDelta, Utc};

pub use advance::ResultDecision;

use super::{
    Error, Excerpt, Field, ResultStatus,
    history::RunCause,
    schedule::{Occurrence, Timing},
};

/// How late an occurrence may still run unless the job says otherwise.
pub const DEFAULT_CATCH_UP_WINDOW: TimeDelta = TimeDelta::hours(1);
/// The longest catch-up window accepted.
pub const CATCH_UP_WINDOW_MAX: TimeDelta = TimeDelta::days(7);
/// How many missed occurrences `each` runs unless the job says otherwise.
pub const DEFAULT_CATCH_UP_MAX: u32 = 10;
/// The most missed occurrences `each` may be asked to run.
pub const CATCH_UP_MAX: u32 = 1000;
/// The most occurrences a `once` catch-up run's event lists (the latest).
pub const STANDS_FOR_MAX: usize = 1000;

/// What a job does with occurrences it missed (the service was down, or the
/// job paused), within its catch-up window; older ones never run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpMode {
    /// `skip`: only the latest occurrence due runs; the missed ones do not.
    Skip,
    /// `once` (the default): one run stands for every missed occurrence;
    /// its event lists them (`Occurrences`).
    Once,
    /// `each`: each missed occurrence runs, one after another, at most
    /// `max` of them (the latest); the overlap policy applies between them.
    Each {
        /// The most missed occurrences run.
        max: u32,
    },
}

/// The catch-up policy: its mode and how late an occurrence may still run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    mode: CatchUpMode,
    window: TimeDelta,
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            mode: CatchUpMode::Once,
            window: DEFAULT_CATCH_UP_WINDOW,
        }
    }
}

impl CatchUp {
    /// A policy whose `each` maximum is 1 to [`CATCH_UP_MAX`] and whose
    /// window is whole milliseconds from 1 s to [`CATCH_UP_WINDOW_MAX`];
    /// errors are on [`Field::CatchUp`] and [`Field::CatchUpWindow`].
    pub fn new(mode: CatchUpMode, window: TimeDelta) -> Result<Self, Error> {
        if let CatchUpMode::Each { max } = mode
            && !(1..=CATCH_UP_MAX).contains(&max)
        {
            return Err(Error::invalid(
                Field::CatchUpMax,
                format!("must be from 1 to {CATCH_UP_MAX}, got {max}"),
            ));
        }
        if window < TimeDelta::seconds(1) || window > CATCH_UP_WINDOW_MAX {
            return Err(Error::invalid(
                Field::CatchUpWindow,
                format!(
                    "must be from 1s to {}s, got {}ms",
                    CATCH_UP_WINDOW_MAX.num_seconds(),
                    window.num_milliseconds()
                ),
            ));
        }
        Ok(CatchUp { mode, window })
    }

    /// The mode.
    pub fn mode(&self) -> CatchUpMode {
        self.mode
    }

    /// How late an occurrence may still run.
    pub fn window(&self) -> TimeDelta {
        self.window
    }
}

/// What a job does when an occurrence comes due while its previous run is
/// still RUNNING (no result yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Overlap {
    /// `skip` (the default): the occurrence does not run; the next one is
    /// armed.
    #[default]
    Skip,
    /// `keep-one`: the occurrence waits for the run's result and runs then
    /// (later occurrences that pass meanwhile follow the catch-up policy).
    KeepOne,
    /// `run`: it runs anyway. Only the latest run's result is recorded: a
    /// result that names an earlier run is stale.
    Run,
}

impl Overlap {
    const ALL: [Overlap; 3] = [Overlap::Skip, Overlap::KeepOne, Overlap::Run];

    /// The policy's wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::KeepOne => "keep-one",
            Overlap::Run => "run",
        }
    }
}

impl FromStr for Overlap {
    type Err = Error;

    /// `skip`, `keep-one` or `run`; an error on [`Field::Overlap`].
    fn from_str(name: &str) -> Result<Self, Error> {
        Overlap::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::invalid(
                    Field::Overlap,
                    format!(
                        "{} is not a policy; expected skip, keep-one or run",
                        Excerpt(name)
                    ),
                )
            })
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CatchUpMode {
    /// The mode named `name` (`skip`, `once`, `each`), with `max` for
    /// `each`; an error on [`Field::CatchUp`].
    pub fn parse(name: &str, max: u32) -> Result<Self, Error> {
        match name.to_ascii_lowercase().as_str() {
            "skip" => Ok(CatchUpMode::Skip),
            "once" => Ok(CatchUpMode::Once),
            "each" => Ok(CatchUpMode::Each { max }),
            _ => Err(Error::invalid(
                Field::CatchUp,
                format!(
                    "{} is not a policy; expected skip, once or each",
                    Excerpt(name)
                ),
            )),
        }
    }

    /// The mode's wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUpMode::Skip => "skip",
            CatchUpMode::Once => "once",
            CatchUpMode::Each { .. } => "each",
        }
    }
}

/// What a client chooses for a recurring job: its timing and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurrenceSpec {
    /// When it fires (a cron or interval schedule, with bounds and jitter).
    pub timing: Timing,
    /// What happens to missed occurrences.
    pub catch_up: CatchUp,
    /// What happens to an occurrence due while a run is still going.
    pub overlap: Overlap,
}

#[cfg(test)]
impl RecurrenceSpec {
    /// Every minute from 2024-01-01, default catch-up, overlap `skip`: the
    /// recurrence of tests that need a recurring job, not a particular one.
    pub(crate) fn every_minute() -> RecurrenceSpec {
        RecurrenceSpec {
            timing: "interval every=60s anchor=2024-01-01T00:00:00Z"
                .parse()
                .expect("a valid timing"),
            catch_up: CatchUp::default(),
            overlap: Overlap::Skip,
        }
    }
}

/// The run of a recurring job in flight: which firing, and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its fire token (the run event's `ScheduledKey`): the token the claim
    /// consumed, unique to the occurrence; a result names it.
    pub token: i64,
    /// The occurrence it runs for (its nominal time); for a run triggered
    /// outside the schedule, when it was triggered.
    pub occurrence: DateTime<Utc>,
    /// For a catch-up run under `once`: every occurrence it stands for, in
    /// order (the last is `occurrence`); empty otherwise.
    pub stands_for: Vec<DateTime<Utc>>,
    /// For a retry of a failed run, when the retry was due (the
    /// occurrence is older); `None` for a run of the schedule or a trigger.
    pub retry_at: Option<DateTime<Utc>>,
    /// When it was claimed and fired.
    pub fired_at: DateTime<Utc>,
    /// Why it fired (a retry's cause is that of the run it retries: its
    /// attempt says it is a retry).
    pub cause: RunCause,
}

/// A failed run's occurrence to run again under the job's retry policy:
/// while it is pending, the job's fire token and schedule time stand for
/// it, and occurrence `next` waits behind it (it comes before `next`'s
/// fire time, or it is not made: a retry never delays the next occurrence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The occurrence the failed run ran for.
    pub occurrence: DateTime<Utc>,
    /// When the retry is due.
    pub at: DateTime<Utc>,
}

/// How a recurring job's last finished run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    /// Its fire token.
    pub token: i64,
    /// The occurrence it ran for.
    pub occurrence: DateTime<Utc>,
    /// Its outcome.
    pub outcome: ResultStatus,
}

/// A recurring job: what the client chose and where the job is in its
/// schedule. The job's `fire_token` stands for occurrence `next`, and its
/// `schedule_time` is that occurrence's fire time (jitter included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    /// The timing and policies.
    pub spec: RecurrenceSpec,
    /// Paused: it keeps its schedule but does not fire; on resume, the
    /// catch-up policy decides about the occurrences missed meanwhile.
    pub paused: bool,
    /// How many runs fired (what `max_runs` bounds).
    pub runs: u64,
    /// How many occurrences passed without a run (catch-up, overlap).
    pub missed: u64,
    /// The nominal time of the next occurrence, the one the job's fire
    /// token stands for; `None` when the schedule has none left.
    pub next: Option<DateTime<Utc>>,
    /// Under `keep-one`: occurrence `next` came due during a run and waits
    /// for its result.
    pub held: bool,
    /// The run in flight, if any (the job is then RUNNING).
    pub run: Option<Run>,
    /// The last finished run.
    pub last: Option<LastRun>,
    /// A failed run's occurrence waiting to run again.
    pub retry: Option<Retry>,
}

impl Recurrence {
    /// The recurrence of a job created (or rescheduled) at `now`, and its
    /// first occurrence; a schedule that never fires is refused (see
    /// [`Timing::first`]).
    pub fn start(spec: RecurrenceSpec, now: DateTime<Utc>) -> Result<(Self, Occurrence), Error> {
        let first = spec.timing.first(now)?;
        Ok((
            Recurrence {
                spec,
                paused: false,
                runs: 0,
                missed: 0,
                next: Some(first.at),
                held: false,
                run: None,
                last: None,
                retry: None,
            },
            first,
        ))
    }

    /// Whether the timer should hold the job for occurrence `next` (or a
    /// pending retry): not paused, not held for a run's end, and with an
    /// occurrence or a retry left.
    pub fn is_armable(&self) -> bool {
        !self.paused && !self.held && (self.next.is_some() || self.retry.is_some())
    }
}
