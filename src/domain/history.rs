//! The run history: one record per firing of a job ([`Run`]): when it
//! was due and fired, why, at which attempt, and how it ended, so that an
//! operator sees every attempt, how late it fired, how it ended and what
//! its executor said.
//!
//! A run in flight is part of its job: the claim that fires it writes what
//! its record needs into the job ([`Job::run_in_flight`] reads it back),
//! so the firing path writes nothing more than before. When the run ends
//! (its result, its run timeout, or a recurring job's next run taking its
//! place), the job change that ends it writes its whole record, in the
//! same atomic step ([`changes`] decides which, from the job before and
//! after the change), into a table or collection of its own with an index
//! by job. A listing shows the run in flight from the job, above the
//! records. A record is keyed by its job and its fire token, which no two
//! firings of a job share, so that writing it twice (a retried write,
//! MongoDB's outbox flushed again) leaves one record.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Error, Job, JobId, JobStatus, PendingEvents, ResultStatus, report::RunReport};

/// Why a run fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunCause {
    /// Its schedule came due.
    Scheduled,
    /// An earlier attempt failed and the retry policy fired it again.
    Retry,
    /// A recurring job's occurrence the service had missed (it was down,
    /// or the job paused), run under the catch-up policy.
    CatchUp,
    /// An operator triggered it outside the schedule.
    Manual,
}

/// How a run ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOutcome {
    /// Fired; no result yet.
    Running,
    /// Its executor reported success.
    Succeeded,
    /// Its executor reported failure.
    Failed,
    /// No result came within the run timeout.
    TimedOut,
    /// A recurring job's next run started before this one's result came
    /// (overlap `run`): the job follows the newer run, and a result of
    /// this one is stale.
    Superseded,
}

macro_rules! coded {
    ($ty:ident { $($variant:ident = $code:literal, $name:literal;)+ }) => {
        impl $ty {
            /// Every value, in code order.
            pub const ALL: [$ty; [$($code),+].len()] = [$($ty::$variant),+];

            /// Its storage code.
            pub fn code(self) -> i16 {
                match self { $($ty::$variant => $code),+ }
            }

            /// The value stored as `code`, if any.
            pub fn from_code(code: i16) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.code() == code)
            }

            /// Its lower-case name, for logs and JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
    };
}

coded!(RunCause {
    Scheduled = 1, "scheduled";
    Retry = 2, "retry";
    CatchUp = 3, "catch_up";
    Manual = 4, "manual";
});

coded!(RunOutcome {
    Running = 1, "running";
    Succeeded = 2, "succeeded";
    Failed = 3, "failed";
    TimedOut = 4, "timed_out";
    Superseded = 5, "superseded";
});

impl From<ResultStatus> for RunOutcome {
    fn from(result: ResultStatus) -> Self {
        match result {
            ResultStatus::Succeeded => RunOutcome::Succeeded,
            ResultStatus::Failed => RunOutcome::Failed,
        }
    }
}

/// One firing of a job and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The job it ran.
    pub job_id: JobId,
    /// Its fire token (the run event's `ScheduledKey`): with the job, the
    /// record's key.
    pub fire_token: i64,
    /// Its attempt under the job's retry policy, from 1.
    pub attempt: u32,
    /// Why it fired.
    pub cause: RunCause,
    /// When it was due (for a recurring job, its occurrence plus jitter).
    pub due_at: DateTime<Utc>,
    /// When it was claimed and fired.
    pub fired_at: DateTime<Utc>,
    /// When it ended; `None` while it runs.
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The error text its executor sent (at most 4 KiB).
    pub error: Option<String>,
    /// The name its executor sent.
    pub executor: Option<String>,
}

impl Run {
    /// How late it fired.
    pub fn lateness(&self) -> TimeDelta {
        self.fired_at - self.due_at
    }

    /// This record ended at `now` with `outcome`, and what the executor
    /// reported (`report`), if it reported.
    fn ended(self, now: DateTime<Utc>, outcome: RunOutcome, report: Option<&RunReport>) -> Run {
        Run {
            finished_at: Some(now),
            outcome,
            error: report.and_then(|r| r.error.clone()),
            executor: report.and_then(|r| r.executor.clone()),
            ..self
        }
    }
}

impl Job {
    /// The record of the run this job has in flight, as far as it has
    /// gone: a one-shot job's while RUNNING (fired when it last changed,
    /// which only its claim does while it runs), a recurring job's run in
    /// flight.
    pub fn run_in_flight(&self) -> Option<Run> {
        let attempt = self.attempt();
        let (fire_token, fired_at, cause) = match &self.recurrence {
            None if self.status == JobStatus::Running => {
                let manual = self.attempts.as_ref().is_some_and(|a| a.manual);
                let cause = if manual {
                    RunCause::Manual
                } else {
                    RunCause::Scheduled
                };
                (self.fire_token, self.updated_at, cause)
            }
            None => return None,
            Some(rec) => {
                let run = rec.run.as_ref()?;
                (run.token, run.fired_at, run.cause)
            }
        };
        Some(Run {
            job_id: self.id,
            fire_token,
            attempt,
            cause: if attempt > 1 { RunCause::Retry } else { cause },
            due_at: self.firing_due(),
            fired_at,
            finished_at: None,
            outcome: RunOutcome::Running,
            error: None,
            executor: None,
        })
    }
}

impl Job {
    /// This job retired by `JOB_RETENTION` at `now`, if it may be: a
    /// one-shot job SUCCEEDED or FAILED that owes no event. It owes its
    /// delete event, and the delivery that publishes it deletes the job
    /// with its runs; meanwhile the job takes no update and no rerun (see
    /// [`Job::check_not_retired`]), so that what is deleted is what the
    /// event announced.
    pub fn retired(&self, now: DateTime<Utc>) -> Option<Job> {
        self.is_retirable().then(|| Job {
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                delete: true,
                ..PendingEvents::NONE
            },
            ..self.clone()
        })
    }

    /// Whether `JOB_RETENTION` may retire it (see [`Job::retired`]).
    pub fn is_retirable(&self) -> bool {
        let finished = matches!(self.status, JobStatus::Succeeded | JobStatus::Failed);
        finished && self.recurrence.is_none() && !self.pending.any()
    }

    /// Refuses a change of a job being removed by `JOB_RETENTION`.
    pub fn check_not_retired(&self) -> Result<(), Error> {
        if self.pending.delete {
            return Err(Error::FailedPrecondition(format!(
                "job {} finished long ago and is being removed (JOB_RETENTION)",
                self.id
            )));
        }
        Ok(())
    }
}

/// The runs the change of `before` into `after` at `now` ends: the run
/// in flight before, if `after` no longer has it, recorded whole, ended
/// as `report` says (without one: superseded when `after` has another run
/// in flight, else timed out).
pub fn changes(
    before: &Job,
    after: &Job,
    report: Option<&RunReport>,
    now: DateTime<Utc>,
) -> Vec<Run> {
    let Some(run) = before.run_in_flight() else {
        return Vec::new();
    };
    let now_running = after.run_in_flight().map(|r| r.fire_token);
    if now_running == Some(run.fire_token) {
        return Vec::new();
    }
    let outcome = match report {
        Some(report) => report.status.into(),
        None if now_running.is_some() => RunOutcome::Superseded,
        None => RunOutcome::TimedOut,
    };
    vec![run.ended(now, outcome, report)]
}

#[cfg(test)]
mod tests;
