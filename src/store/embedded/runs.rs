//! The run history in the file: one table of ended runs keyed by (job id,
//! fired time, fire token), so that a job's runs are one range in the
//! order they fired, each written whole in the transaction of the job
//! change that ends it.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{
    codec::{id_of, time},
    errors::{other, storage},
};
use crate::{
    domain::{
        JobId,
        history::{Run, RunCause, RunOutcome},
    },
    store::{RunRetention, RunsPage, StoreError, Unreadable},
};

/// (job id, fired time in ms, fire token) → the run, as JSON.
pub(super) const RUNS: TableDefinition<(&[u8], i64, i64), &[u8]> = TableDefinition::new("job_runs");

/// The key of a run.
type Key<'a> = (&'a [u8], i64, i64);

/// The stored form of a run (the job and token are the key).
#[derive(Serialize, Deserialize)]
struct StoredRun {
    attempt: u32,
    cause: i16,
    due_ms: i64,
    fired_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished_ms: Option<i64>,
    outcome: i16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    executor: Option<String>,
}

fn encode(run: &Run) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredRun {
        attempt: run.attempt,
        cause: run.cause.code(),
        due_ms: run.due_at.timestamp_millis(),
        fired_ms: run.fired_at.timestamp_millis(),
        finished_ms: run.finished_at.map(|t| t.timestamp_millis()),
        outcome: run.outcome.code(),
        error: run.error.clone(),
        executor: run.executor.clone(),
    })
    .map_err(other)
}

fn decode(job_id: JobId, fire_token: i64, bytes: &[u8]) -> Result<Run, StoreError> {
    let unreadable = |reason: String| StoreError::Corrupt(Unreadable::job(job_id, reason));
    let stored: StoredRun =
        serde_json::from_slice(bytes).map_err(|e| unreadable(format!("run record: {e}")))?;
    let code = |what: &str, code: i16| unreadable(format!("run record: {what} {code}"));
    Ok(Run {
        job_id,
        fire_token,
        attempt: stored.attempt,
        cause: RunCause::from_code(stored.cause).ok_or_else(|| code("cause", stored.cause))?,
        due_at: time(stored.due_ms, job_id)?,
        fired_at: time(stored.fired_ms, job_id)?,
        finished_at: stored.finished_ms.map(|ms| time(ms, job_id)).transpose()?,
        outcome: RunOutcome::from_code(stored.outcome)
            .ok_or_else(|| code("outcome", stored.outcome))?,
        error: stored.error,
        executor: stored.executor,
    })
}

/// Records the runs `ended` inside `txn` (a record written again is the
/// same entry).
pub(super) fn record(txn: &redb::WriteTransaction, ended: &[Run]) -> Result<(), StoreError> {
    if ended.is_empty() {
        return Ok(());
    }
    let mut runs = txn.open_table(RUNS).map_err(storage)?;
    for run in ended {
        let id = run.job_id.bytes();
        let key = (
            id.as_slice(),
            run.fired_at.timestamp_millis(),
            run.fire_token,
        );
        runs.insert(key, encode(run)?.as_slice()).map_err(storage)?;
    }
    Ok(())
}

/// Every key of job `id`'s runs.
fn job_range(id: &[u8; 12]) -> std::ops::RangeInclusive<Key<'_>> {
    (id.as_slice(), i64::MIN, i64::MIN)..=(id.as_slice(), i64::MAX, i64::MAX)
}

/// Deletes every run of job `id` inside `txn`.
pub(super) fn forget(txn: &redb::WriteTransaction, id: JobId) -> Result<(), StoreError> {
    let bytes = id.bytes();
    let mut runs = txn.open_table(RUNS).map_err(storage)?;
    runs.retain_in(job_range(&bytes), |_, _| false)
        .map_err(storage)?;
    Ok(())
}

/// Removes the runs `(job, fired ms, token)` inside `txn`.
pub(super) fn remove(
    txn: &redb::WriteTransaction,
    keys: &[(JobId, i64, i64)],
) -> Result<(), StoreError> {
    let mut runs = txn.open_table(RUNS).map_err(storage)?;
    for (id, at, token) in keys {
        runs.remove((id.bytes().as_slice(), *at, *token))
            .map_err(storage)?;
    }
    Ok(())
}

/// Job `id`'s runs from the `offset`-th newest, at most `limit`, read in
/// `txn`.
pub(super) fn page(
    txn: &redb::ReadTransaction,
    id: JobId,
    offset: u64,
    limit: u64,
) -> Result<RunsPage, StoreError> {
    let runs = txn.open_table(RUNS).map_err(storage)?;
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = id.bytes();
    let mut found = Vec::new();
    let mut total = 0;
    for entry in runs.range(job_range(&bytes)).map_err(storage)?.rev() {
        let (key, value) = entry.map_err(storage)?;
        if total >= skip && found.len() < take {
            found.push(decode(id, key.value().2, value.value())?);
        }
        total += 1;
    }
    Ok(RunsPage {
        runs: found,
        total: total as u64,
    })
}

/// The runs `retention` removes, at most its limit, found in `txn`: job
/// by job, each job's oldest first.
pub(super) fn doomed(
    txn: &redb::ReadTransaction,
    retention: &RunRetention,
) -> Result<Vec<(JobId, i64, i64)>, StoreError> {
    let runs = txn.open_table(RUNS).map_err(storage)?;
    let mut doomed = Vec::new();
    let mut job: Option<(JobId, Vec<Run>)> = None;
    for entry in runs.iter().map_err(storage)? {
        let (key, value) = entry.map_err(storage)?;
        let (id, _, token) = key.value();
        let id = id_of(id)?;
        let run = decode(id, token, value.value())?;
        match &mut job {
            Some((current, runs)) if *current == id => runs.push(run),
            _ => {
                if let Some((_, runs)) = job.take() {
                    doomed.extend(doomed_of(runs, retention));
                }
                job = Some((id, vec![run]));
            }
        }
        if doomed.len() >= retention.limit {
            break;
        }
    }
    if let Some((_, runs)) = job {
        doomed.extend(doomed_of(runs, retention));
    }
    doomed.truncate(retention.limit);
    Ok(doomed)
}

/// The keys of the runs of one job (`runs`) that `retention` removes.
fn doomed_of(runs: Vec<Run>, retention: &RunRetention) -> impl Iterator<Item = (JobId, i64, i64)> {
    crate::store::pruned(runs, retention)
        .into_iter()
        .map(|run| (run.job_id, run.fired_at.timestamp_millis(), run.fire_token))
}
