//! What a recurring job does at each step, as pure functions of the job
//! read from the store: the claim of an occurrence (catch-up and overlap),
//! a run's result, a trigger, pause and resume. The stores write the job
//! these return in one conditional write.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::{
    CatchUpMode, LastRun, Overlap, Recurrence, RecurrenceSpec, Retry, Run, STANDS_FOR_MAX,
};
use crate::domain::{
    Error, Job, JobSpec, JobStatus, PendingEvents, ResultStatus, history::RunCause, new_fire_token,
    schedule::Occurrence,
};

/// The most due occurrences one claim looks at. A claim that meets more
/// (a per-second job after a long downtime) runs none of them and arms
/// the next one, still due: the next claim goes on from there, so that no
/// claim does unbounded work.
const SCAN_MAX: u64 = 10_000;

/// What a run's result does to a recurring job (see [`Job::take_result`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultDecision {
    /// The job takes it: write this job.
    Take(Box<Job>),
    /// The last finished run already holds this very result.
    Duplicate,
    /// No run takes it (none in flight, or the last holds the other result).
    Ignored(JobStatus),
    /// It names a run that is neither in flight nor the last finished one.
    Stale(JobStatus),
}

impl ResultDecision {
    /// Why a one-shot job at `status` under `current_token` refuses
    /// `result` of the firing `fire_token` (`None`: its run in flight): a
    /// token not the job's is stale; the job's own result again, a
    /// duplicate; anything else, ignored.
    pub fn refusal(
        status: JobStatus,
        current_token: i64,
        result: ResultStatus,
        fire_token: Option<i64>,
    ) -> Self {
        if fire_token.is_some_and(|token| token != current_token) {
            ResultDecision::Stale(status)
        } else if status == result.job_status() {
            ResultDecision::Duplicate
        } else {
            ResultDecision::Ignored(status)
        }
    }
}

/// What one claim of occurrence `due` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// The run it starts: its occurrence and what it stands for.
    run: Option<(DateTime<Utc>, Vec<DateTime<Utc>>)>,
    /// How many due occurrences pass without a run.
    missed: u64,
    /// The next occurrence to arm.
    next: Option<Occurrence>,
}

/// The occurrences due from `due` (inclusive) to `now`: how many, the
/// latest met, and the last `keep` of those inside the catch-up window.
struct Due {
    seen: u64,
    runnable: u64,
    latest: DateTime<Utc>,
    kept: VecDeque<Occurrence>,
    /// The scan stopped at [`SCAN_MAX`] with more due.
    cut: bool,
}

fn scan(spec: &RecurrenceSpec, due: Occurrence, runs: u64, now: DateTime<Utc>, keep: usize) -> Due {
    let window_start = now - spec.catch_up.window();
    let mut found = Due {
        seen: 0,
        runnable: 0,
        latest: due.at,
        kept: VecDeque::with_capacity(keep.min(64)),
        cut: false,
    };
    let mut at = Some(due);
    while let Some(occurrence) = at {
        // The claimed occurrence counts even a little ahead of this
        // replica's clock (the timer fired it); later ones only when due.
        if found.seen > 0 && occurrence.at > now {
            break;
        }
        if found.seen == SCAN_MAX {
            found.cut = true;
            break;
        }
        found.seen += 1;
        found.latest = occurrence.at;
        if occurrence.at >= window_start {
            found.runnable += 1;
            if found.kept.len() == keep {
                found.kept.pop_front();
            }
            found.kept.push_back(occurrence);
        }
        at = spec.timing.next_after(occurrence.at, runs);
    }
    found
}

/// The plan of a claim of occurrence `due` for a job that has fired `runs`
/// times, at `now`; `in_flight`: a run is still going (overlap `skip` and
/// `run` reach here; `keep-one` holds before).
fn plan(
    spec: &RecurrenceSpec,
    due: Occurrence,
    runs: u64,
    now: DateTime<Utc>,
    in_flight: bool,
) -> Plan {
    let skip_all = in_flight && spec.overlap == Overlap::Skip;
    let keep = match spec.catch_up.mode() {
        _ if skip_all => 0,
        CatchUpMode::Skip => 1,
        CatchUpMode::Once => STANDS_FOR_MAX,
        CatchUpMode::Each { max } => max as usize,
    };
    let found = scan(spec, due, runs, now, keep);
    let after_latest = |runs| spec.timing.next_after(found.latest, runs);
    if skip_all || found.cut || found.kept.is_empty() {
        return Plan {
            run: None,
            missed: found.seen,
            next: after_latest(runs),
        };
    }
    let beyond_window = found.seen - found.runnable;
    match spec.catch_up.mode() {
        CatchUpMode::Each { .. } => {
            let first = found.kept[0];
            let dropped = found.runnable - found.kept.len() as u64;
            Plan {
                run: Some((first.at, Vec::new())),
                missed: beyond_window + dropped,
                // The one after it: the next kept, or the first after `now`.
                next: spec.timing.next_after(first.at, runs + 1),
            }
        }
        mode => {
            let latest = found.kept[found.kept.len() - 1];
            let stands_for = if mode == CatchUpMode::Once && found.kept.len() > 1 {
                found.kept.iter().map(|o| o.at).collect()
            } else {
                Vec::new()
            };
            let ran = if mode == CatchUpMode::Once {
                found.runnable
            } else {
                1
            };
            Plan {
                run: Some((latest.at, stands_for)),
                missed: found.seen - ran,
                next: after_latest(runs + 1),
            }
        }
    }
}

impl Job {
    /// A new recurring job, SCHEDULED for its first occurrence (at its fire
    /// time, jitter included), owing its create event.
    pub fn new_recurring(
        spec: JobSpec,
        recurrence: RecurrenceSpec,
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        let job = Job::new_scheduled(spec, now);
        job.with_recurrence(recurrence, now)
    }

    /// This job (new or rescheduled) following `recurrence` from `now`:
    /// its schedule time is the first occurrence's fire time.
    pub fn with_recurrence(
        self,
        recurrence: RecurrenceSpec,
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        let (recurrence, first) = Recurrence::start(recurrence, now)?;
        let schedule_time = recurrence.spec.timing.fire_time(&self.id, &first);
        Ok(Job {
            spec: JobSpec {
                schedule_time,
                ..self.spec
            },
            recurrence: Some(Box::new(recurrence)),
            ..self
        })
    }

    /// The claim of a recurring job's occurrence under `fire_token` (see
    /// [`Job::claimed`]): the job with the occurrence's run started (or the
    /// occurrences passed over), occurrence N+1 and a fresh fire token for
    /// it, at the next version. `None` when it cannot be claimed: another
    /// token, paused, held, no occurrence left, or the previous run's event
    /// still owed (that occurrence then waits for the event's delivery).
    /// A pending retry is claimed before occurrence `next` (see
    /// [`Job::claimed_retry`]); a run of a new occurrence starts at
    /// attempt 1.
    pub(crate) fn claimed_occurrence(&self, fire_token: i64, now: DateTime<Utc>) -> Option<Self> {
        let rec = self.recurrence.as_ref()?;
        let claimable = self.fire_token == fire_token
            && rec.is_armable()
            && !self.pending.run
            && matches!(self.status, JobStatus::Scheduled | JobStatus::Running);
        if !claimable {
            return None;
        }
        if let Some(retry) = rec.retry {
            return Some(self.claimed_retry(rec, retry, fire_token, now));
        }
        let due = rec.next?;
        let in_flight = rec.run.is_some();
        let mut next = Job {
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        };
        let mut state = rec.clone();
        if in_flight && rec.spec.overlap == Overlap::KeepOne {
            state.held = true;
            next.recurrence = Some(state);
            return Some(next);
        }
        let due = Occurrence::regular(due);
        let plan = plan(&rec.spec, due, rec.runs, now, in_flight);
        state.missed += plan.missed;
        state.next = plan.next.map(|o| o.at);
        if let Some(occurrence) = plan.next {
            next.spec.schedule_time = rec.spec.timing.fire_time(&self.id, &occurrence);
        }
        next.fire_token = new_fire_token();
        if let Some((occurrence, stands_for)) = plan.run {
            // Behind its schedule: the run is of an occurrence it missed.
            let behind = !stands_for.is_empty() || state.next.is_some_and(|next| next <= now);
            state.runs += 1;
            state.run = Some(Run {
                token: fire_token,
                occurrence,
                stands_for,
                retry_at: None,
                fired_at: now,
                cause: if behind {
                    RunCause::CatchUp
                } else {
                    RunCause::Scheduled
                },
            });
            next.status = JobStatus::Running;
            next.pending.run = true;
            next.attempts = self.first_attempt();
        } else if !in_flight && state.next.is_none() {
            next.status = ended_status(state.last);
        }
        next.recurrence = Some(state);
        Some(next)
    }

    /// The claim of `retry`, pending on this job under `fire_token`: a run
    /// of the retried occurrence starts (at the attempt the failure left),
    /// and occurrence `next` is armed again under a fresh token. It counts
    /// as no run of the schedule (`max_runs`).
    fn claimed_retry(
        &self,
        rec: &Recurrence,
        retry: Retry,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Job {
        let mut state = rec.clone();
        state.retry = None;
        state.run = Some(Run {
            token: fire_token,
            occurrence: retry.occurrence,
            stands_for: Vec::new(),
            retry_at: Some(retry.at),
            fired_at: now,
            cause: RunCause::Scheduled,
        });
        let schedule_time = state.next.map_or(self.spec.schedule_time, |next| {
            rec.spec
                .timing
                .fire_time(&self.id, &Occurrence::regular(next))
        });
        Job {
            spec: JobSpec {
                schedule_time,
                ..self.spec.clone()
            },
            status: JobStatus::Running,
            updated_at: now,
            version: self.version + 1,
            fire_token: new_fire_token(),
            pending: PendingEvents {
                run: true,
                ..self.pending
            },
            recurrence: Some(Box::new(state)),
            ..self.clone()
        }
    }

    /// What a run's result does to this job, reported on the run
    /// `fire_token` names (`None`: the run in flight). A recurring job takes
    /// it when that run is in flight: it records the outcome and returns to
    /// SCHEDULED for its next occurrence, or to the outcome's status when it
    /// has none left. `None` for a one-shot job (the stores decide those
    /// in their own write).
    pub fn take_result(
        &self,
        result: ResultStatus,
        fire_token: Option<i64>,
        now: DateTime<Utc>,
    ) -> Option<ResultDecision> {
        let rec = self.recurrence.as_ref()?;
        if let Some(run) = &rec.run
            && self.status == JobStatus::Running
            && fire_token.is_none_or(|token| token == run.token)
        {
            let mut state = rec.clone();
            state.last = Some(LastRun {
                token: run.token,
                occurrence: run.occurrence,
                outcome: result,
            });
            state.run = None;
            state.held = false;
            let status = match state.next {
                Some(_) => JobStatus::Scheduled,
                None => result.job_status(),
            };
            return Some(ResultDecision::Take(Box::new(Job {
                status,
                updated_at: now,
                version: self.version + 1,
                recurrence: Some(state),
                // The run's event reached the executor that reported.
                pending: PendingEvents {
                    run: false,
                    ..self.pending
                },
                ..self.clone()
            })));
        }
        let last = rec
            .last
            .filter(|last| fire_token.is_none_or(|t| t == last.token));
        Some(match (last, fire_token) {
            (Some(last), _) if last.outcome == result => ResultDecision::Duplicate,
            (None, Some(_)) => ResultDecision::Stale(self.status),
            _ => ResultDecision::Ignored(self.status),
        })
    }

    /// This recurring job with one extra run started now, outside its
    /// schedule (its occurrences are unchanged), owing the run's event.
    /// Refused while a run is in flight or its event still owed, and for a
    /// one-shot job.
    pub fn triggered(&self, now: DateTime<Utc>) -> Result<Self, Error> {
        let rec = self.recurring("triggered")?;
        if rec.run.is_some() || self.pending.run {
            return Err(Error::FailedPrecondition(format!(
                "job {} has a run in flight; trigger it again once its result is in",
                self.id
            )));
        }
        if let Some(retry) = rec.retry {
            return Err(Error::FailedPrecondition(format!(
                "job {} retries its run of {} at {}; trigger it again after",
                self.id, retry.occurrence, retry.at
            )));
        }
        let mut state = rec.clone();
        state.run = Some(Run {
            token: new_fire_token(),
            occurrence: now,
            stands_for: Vec::new(),
            retry_at: None,
            fired_at: now,
            cause: RunCause::Manual,
        });
        Ok(Job {
            status: JobStatus::Running,
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                run: true,
                ..self.pending
            },
            recurrence: Some(Box::new(state)),
            ..self.clone()
        })
    }

    /// This recurring job paused (`true`) or resumed, owing an update
    /// event. A resumed job's missed occurrences follow its catch-up policy
    /// when it next fires (at once if one is due).
    pub fn with_paused(&self, paused: bool, now: DateTime<Utc>) -> Result<Self, Error> {
        let rec = self.recurring(if paused { "paused" } else { "resumed" })?;
        let mut state = rec.clone();
        state.paused = paused;
        Ok(Job {
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                update: true,
                ..self.pending
            },
            recurrence: Some(Box::new(state)),
            ..self.clone()
        })
    }

    fn recurring(&self, what: &str) -> Result<&Recurrence, Error> {
        self.recurrence.as_deref().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "job {} is a one-shot job; only recurring jobs can be {what}",
                self.id
            ))
        })
    }
}

/// The status of a recurring job whose schedule has no occurrence left and
/// no run in flight: its last run's outcome, FAILED if it never ran.
fn ended_status(last: Option<LastRun>) -> JobStatus {
    last.map_or(JobStatus::Failed, |last| last.outcome.job_status())
}

#[cfg(test)]
mod tests;
