//! The rules every store applies in the same way, written once: the
//! precision of stored times, the read-decide-write loops of a claim and
//! a result on stores without a batch statement for them, and the paging
//! and retention of run records kept as values.

use chrono::{DateTime, SubsecRound, Utc};

use super::{JobDB, RECURRING_ATTEMPTS, RunRetention, RunsPage, StoreError};
use crate::domain::{
    self, Job, JobId, PageRequest,
    history::{self, Run},
    report::{ResultOutcome, RunReport},
};

/// `time` at the precision every store keeps: the millisecond.
pub(crate) fn stored_time(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(3)
}

/// `job` as a store keeps it: its times cut to the millisecond, so that a
/// store that keeps jobs as values (memory) answers what a database would.
pub(crate) fn stored_job(job: &Job) -> Job {
    Job {
        spec: domain::JobSpec {
            schedule_time: stored_time(job.spec.schedule_time),
            ..job.spec.clone()
        },
        created_at: stored_time(job.created_at),
        updated_at: stored_time(job.updated_at),
        ..job.clone()
    }
}

/// The claim of job `job` (as read) under `fire_token`, as a conditional
/// write of what [`Job::claimed`] decides (with the record of a run it
/// supersedes): written
/// only if the job is still at the version read, so that of racing
/// claimers exactly one wins; the others read the job again and find the
/// token consumed. For the stores whose claim statement leaves recurring
/// jobs out, and for MongoDB's every claim.
pub(crate) async fn claim_read<D: JobDB + ?Sized>(
    db: &D,
    mut job: Job,
    fire_token: i64,
    now: DateTime<Utc>,
) -> Result<Option<Job>, StoreError> {
    let now = stored_time(now);
    for _ in 0..RECURRING_ATTEMPTS {
        let Some(claimed) = job.claimed(fire_token, now) else {
            return Ok(None);
        };
        let runs = history::changes(&job, &claimed, None, now);
        if db.replace_if(&claimed, job.version, &runs).await? {
            return Ok(Some(claimed));
        }
        match db.get(job.id).await? {
            Some(current) => job = current,
            None => return Ok(None),
        }
    }
    Err(StoreError::Unavailable(format!(
        "job {} changed under its claim {RECURRING_ATTEMPTS} times in a row",
        job.id
    )))
}

/// `report` on job `job` (as read), as a conditional write of what
/// [`Job::result_taken`] decides with the run's end, tried again on a newer
/// read when the job changed meanwhile. For recurring jobs in the stores
/// whose result statement leaves them out, and for MongoDB's every result.
pub(crate) async fn result_read<D: JobDB + ?Sized>(
    db: &D,
    mut job: Job,
    report: &RunReport,
    now: DateTime<Utc>,
) -> Result<ResultOutcome, StoreError> {
    let now = stored_time(now);
    for _ in 0..RECURRING_ATTEMPTS {
        let decision = match job.result_taken(report.status, report.fire_token, now) {
            Ok(decision) => decision,
            Err(refused) => return Ok(ResultOutcome::refused(refused)),
        };
        let runs = history::changes(&job, &decision, Some(report), now);
        if db.replace_if(&decision, job.version, &runs).await? {
            return Ok(ResultOutcome::Stored);
        }
        match db.get(job.id).await? {
            Some(current) => job = current,
            None => return Ok(ResultOutcome::UnknownJob),
        }
    }
    Err(StoreError::Unavailable(format!(
        "job {} changed under its result {RECURRING_ATTEMPTS} times in a row",
        job.id
    )))
}

/// `runs` (all of a job's) from the `offset`-th newest, at most `limit`:
/// for the stores that keep records as values.
pub(crate) fn runs_page(mut runs: Vec<Run>, offset: u64, limit: u64) -> RunsPage {
    runs.sort_by_key(|run| std::cmp::Reverse((run.fired_at, run.fire_token)));
    let total = runs.len() as u64;
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    RunsPage {
        runs: runs.into_iter().skip(offset).take(limit).collect(),
        total,
    }
}

/// One page of job `id`'s runs, newest first: its run in flight (read
/// from the job, which is read first), then its recorded runs. `None` for
/// an unknown job. A run that ended between the two reads is listed once,
/// as recorded.
pub async fn runs_of<D: JobDB + ?Sized>(
    db: &D,
    id: JobId,
    page: PageRequest,
) -> Result<Option<RunsPage>, StoreError> {
    let Some(job) = db.get(id).await? else {
        return Ok(None);
    };
    let Some(in_flight) = job.run_in_flight() else {
        return db.runs(id, page.offset(), page.size).await.map(Some);
    };
    // The run in flight is the newest: first on page 1, and one place
    // ahead of every record.
    let first = page.offset() == 0;
    let offset = page.offset().saturating_sub(1);
    let mut listed = db.runs(id, offset, page.size - u64::from(first)).await?;
    if listed
        .runs
        .iter()
        .any(|r| r.fire_token == in_flight.fire_token)
    {
        return Ok(Some(listed));
    }
    listed.total += 1;
    if first {
        listed.runs.insert(0, in_flight);
    }
    Ok(Some(listed))
}

/// Which of `runs` (all of one job's) `retention` removes, oldest first:
/// for the stores that keep records as values.
pub(crate) fn pruned(mut runs: Vec<Run>, retention: &RunRetention) -> Vec<Run> {
    runs.sort_by_key(|run| std::cmp::Reverse((run.fired_at, run.fire_token)));
    let keep = usize::try_from(retention.per_job).unwrap_or(usize::MAX);
    let mut doomed: Vec<Run> = runs
        .into_iter()
        .enumerate()
        .filter(|(n, run)| {
            *n >= keep || (run.finished_at.is_some() && run.fired_at < retention.fired_before)
        })
        .map(|(_, run)| run)
        .collect();
    doomed.reverse();
    doomed
}

/// `ended` recorded in `runs` (one job's records): a record already
/// there (the same fire token) stays as it is.
pub(crate) fn record_runs(runs: &mut Vec<Run>, ended: &[Run]) {
    for run in ended {
        if !runs.iter().any(|r| r.fire_token == run.fire_token) {
            runs.push(run.clone());
        }
    }
}
