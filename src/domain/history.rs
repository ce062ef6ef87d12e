//! The run history: one record per firing of a job ([`Run`]), started when
//! the firing is claimed and ended when its result comes or its run times
//! out, so that an operator sees every attempt, how late it fired, how it
//! ended and what its executor said.
//!
//! The stores keep the records apart from the jobs (a table or collection
//! with an index by job) but write them in the same atomic step as the
//! job change that starts or ends the run. What that step changes in the
//! history is decided here, from the job before and after the change
//! ([`changes`]): a run starts when the job gets a run in flight it did
//! not have, and ends when the run in flight it had is gone. A record is
//! keyed by its job and its fire token, which no two firings of a job
//! share, so that writing a change twice (a retried write, MongoDB's
//! outbox flushed again) leaves one record.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Error, Job, JobId, JobStatus, PendingEvents, ResultStatus, report::RunReport};

/// Runs kept per job unless configured otherwise.
pub const DEFAULT_RUNS_PER_JOB: u32 = 100;

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

/// The end of a run: what a result or a run timeout writes on its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// The job it ran.
    pub job_id: JobId,
    /// The fire token of the run that ended.
    pub fire_token: i64,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended (never [`RunOutcome::Running`]).
    pub outcome: RunOutcome,
    /// The error text its executor sent.
    pub error: Option<String>,
    /// The name its executor sent.
    pub executor: Option<String>,
}

/// What one job change does to the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunChange {
    /// A run started: a new record.
    Started(Run),
    /// A run ended: its record is completed.
    Ended(RunEnd),
}

impl Run {
    /// How late it fired.
    pub fn lateness(&self) -> TimeDelta {
        self.fired_at - self.due_at
    }

    /// The run `job` has in flight right after a change at `now` (its
    /// claim, or a trigger), which consumed the fire token `claimed`. A
    /// recurring run under another token than the one consumed was
    /// triggered (`Job::triggered` draws its own).
    pub fn started(job: &Job, claimed: i64, now: DateTime<Utc>) -> Option<Run> {
        let (fire_token, cause) = match &job.recurrence {
            None if job.status == JobStatus::Running => (job.fire_token, RunCause::Scheduled),
            None => return None,
            Some(rec) => {
                let run = rec.run.as_ref()?;
                let behind = rec.next.is_some_and(|next| next <= now);
                let cause = if run.token != claimed {
                    RunCause::Manual
                } else if behind || !run.stands_for.is_empty() {
                    RunCause::CatchUp
                } else {
                    RunCause::Scheduled
                };
                (run.token, cause)
            }
        };
        let attempt = job.attempt();
        Some(Run {
            job_id: job.id,
            fire_token,
            attempt,
            cause: if attempt > 1 { RunCause::Retry } else { cause },
            due_at: job.firing_due(),
            fired_at: now,
            finished_at: None,
            outcome: RunOutcome::Running,
            error: None,
            executor: None,
        })
    }

    /// This record with `end` written on it.
    pub fn ended(self, end: &RunEnd) -> Run {
        Run {
            finished_at: Some(end.finished_at),
            outcome: end.outcome,
            error: end.error.clone(),
            executor: end.executor.clone(),
            ..self
        }
    }
}

impl RunEnd {
    /// The end `report` gives the run of job `id` under `fire_token`.
    pub fn reported(id: JobId, fire_token: i64, report: &RunReport, now: DateTime<Utc>) -> Self {
        RunEnd {
            job_id: id,
            fire_token,
            finished_at: now,
            outcome: report.status.into(),
            error: report.error.clone(),
            executor: report.executor.clone(),
        }
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
        let finished = matches!(self.status, JobStatus::Succeeded | JobStatus::Failed);
        (finished && self.recurrence.is_none() && !self.pending.any()).then(|| Job {
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                delete: true,
                ..PendingEvents::NONE
            },
            ..self.clone()
        })
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

/// The key of the run `job` has in flight: a one-shot job's fire token
/// while RUNNING, a recurring job's run's token.
fn in_flight(job: &Job) -> Option<i64> {
    match &job.recurrence {
        None => (job.status == JobStatus::Running).then_some(job.fire_token),
        Some(rec) => rec.run.as_ref().map(|run| run.token),
    }
}

/// What the change of `before` into `after` at `now` does to the history:
/// the run in flight before ends if `after` no longer has it (as `report`
/// says; without one, it was superseded by the run in flight after, or
/// else timed out), and the run in flight after starts if `before` did not
/// have it.
pub fn changes(
    before: &Job,
    after: &Job,
    report: Option<&RunReport>,
    now: DateTime<Utc>,
) -> Vec<RunChange> {
    let (was, is) = (in_flight(before), in_flight(after));
    let mut changes = Vec::new();
    if let Some(token) = was.filter(|&token| is != Some(token)) {
        changes.push(RunChange::Ended(match report {
            Some(report) => RunEnd::reported(before.id, token, report, now),
            None => RunEnd {
                job_id: before.id,
                fire_token: token,
                finished_at: now,
                outcome: if is.is_some() {
                    RunOutcome::Superseded
                } else {
                    RunOutcome::TimedOut
                },
                error: None,
                executor: None,
            },
        }));
    }
    if is.is_some() && is != was {
        changes.extend(Run::started(after, before.fire_token, now).map(RunChange::Started));
    }
    changes
}

#[cfg(test)]
mod tests;
