//! The run history in the file: each run's record by (job id, fire
//! token), and the order of a job's runs by (job id, fired time, fire
//! token), both written in the transaction of the job change that starts
//! or ends the run.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{
    codec::{id_of, time},
    errors::{other, storage},
};
use crate::{
    domain::{
        JobId,
        history::{Run, RunCause, RunChange, RunOutcome},
    },
    store::{RunRetention, RunsPage, StoreError, Unreadable},
};

/// (job id, fire token) → the run, as JSON.
pub(super) const RUNS: TableDefinition<(&[u8], i64), &[u8]> = TableDefinition::new("runs");
/// (job id, fired time in ms, fire token) of every run: a job's runs in
/// the order they fired.
pub(super) const RUN_ORDER: TableDefinition<(&[u8], i64, i64), ()> =
    TableDefinition::new("run_order");

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

/// Writes `changes` inside `txn` (see [`crate::store::apply_run_change`]:
/// a start already recorded, or an end of a run not recorded, changes
/// nothing).
pub(super) fn record(
    txn: &redb::WriteTransaction,
    changes: &[RunChange],
) -> Result<(), StoreError> {
    let mut runs = txn.open_table(RUNS).map_err(storage)?;
    let mut order = txn.open_table(RUN_ORDER).map_err(storage)?;
    for change in changes {
        match change {
            RunChange::Started(run) => {
                let id = run.job_id.bytes();
                let key = (id.as_slice(), run.fire_token);
                if runs.get(key).map_err(storage)?.is_none() {
                    runs.insert(key, encode(run)?.as_slice()).map_err(storage)?;
                    let at = run.fired_at.timestamp_millis();
                    order
                        .insert((id.as_slice(), at, run.fire_token), ())
                        .map_err(storage)?;
                }
            }
            RunChange::Ended(end) => {
                let id = end.job_id.bytes();
                let key = (id.as_slice(), end.fire_token);
                let stored = match runs.get(key).map_err(storage)? {
                    Some(bytes) => decode(end.job_id, end.fire_token, bytes.value())?,
                    None => continue,
                };
                let ended = encode(&stored.ended(end))?;
                runs.insert(key, ended.as_slice()).map_err(storage)?;
            }
        }
    }
    Ok(())
}

/// Deletes every run of job `id` inside `txn`.
pub(super) fn forget(txn: &redb::WriteTransaction, id: JobId) -> Result<(), StoreError> {
    let keys = run_keys(&txn.open_table(RUN_ORDER).map_err(storage)?, id)?;
    let keys: Vec<_> = keys
        .into_iter()
        .map(|(at, token)| (id, at, token))
        .collect();
    remove(txn, &keys)
}

/// The (fired ms, token) keys of job `id`'s runs, oldest first.
fn run_keys(
    order: &impl ReadableTable<(&'static [u8], i64, i64), ()>,
    id: JobId,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let bytes = id.bytes();
    let range = (bytes.as_slice(), i64::MIN, i64::MIN)..=(bytes.as_slice(), i64::MAX, i64::MAX);
    order
        .range(range)
        .map_err(storage)?
        .map(|entry| {
            let (key, _) = entry.map_err(storage)?;
            let (_, at, token) = key.value();
            Ok((at, token))
        })
        .collect()
}

/// Removes the runs `(job, fired ms, token)` inside `txn`.
pub(super) fn remove(
    txn: &redb::WriteTransaction,
    keys: &[(JobId, i64, i64)],
) -> Result<(), StoreError> {
    let mut runs = txn.open_table(RUNS).map_err(storage)?;
    let mut order = txn.open_table(RUN_ORDER).map_err(storage)?;
    for (id, at, token) in keys {
        let id = id.bytes();
        runs.remove((id.as_slice(), *token)).map_err(storage)?;
        order
            .remove((id.as_slice(), *at, *token))
            .map_err(storage)?;
    }
    Ok(())
}

/// One page of job `id`'s runs, newest first, read in `txn`.
pub(super) fn page(
    txn: &redb::ReadTransaction,
    id: JobId,
    page: crate::domain::PageRequest,
) -> Result<RunsPage, StoreError> {
    let order = txn.open_table(RUN_ORDER).map_err(storage)?;
    let runs = txn.open_table(RUNS).map_err(storage)?;
    let keys = run_keys(&order, id)?;
    let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
    let take = usize::try_from(page.size).unwrap_or(usize::MAX);
    let bytes = id.bytes();
    let mut found = Vec::new();
    for &(_, token) in keys.iter().rev().skip(skip).take(take) {
        if let Some(record) = runs.get((bytes.as_slice(), token)).map_err(storage)? {
            found.push(decode(id, token, record.value())?);
        }
    }
    Ok(RunsPage {
        runs: found,
        total: keys.len() as u64,
    })
}

/// The runs `retention` removes, at most its limit, found in `txn`: job
/// by job, each job's oldest first.
pub(super) fn doomed(
    txn: &redb::ReadTransaction,
    retention: &RunRetention,
) -> Result<Vec<(JobId, i64, i64)>, StoreError> {
    let order = txn.open_table(RUN_ORDER).map_err(storage)?;
    let runs = txn.open_table(RUNS).map_err(storage)?;
    let mut doomed = Vec::new();
    let mut job: Option<(JobId, Vec<(i64, i64)>)> = None;
    for entry in order.iter().map_err(storage)? {
        let (key, _) = entry.map_err(storage)?;
        let (id, at, token) = key.value();
        let id = id_of(id)?;
        match &mut job {
            Some((current, keys)) if *current == id => keys.push((at, token)),
            _ => {
                if let Some((done, keys)) = job.take() {
                    doomed_of(&runs, done, &keys, retention, &mut doomed)?;
                }
                job = Some((id, vec![(at, token)]));
            }
        }
        if doomed.len() >= retention.limit {
            break;
        }
    }
    if let Some((done, keys)) = job {
        doomed_of(&runs, done, &keys, retention, &mut doomed)?;
    }
    doomed.truncate(retention.limit);
    Ok(doomed)
}

/// Adds to `doomed` the runs of job `id` (its `keys`, oldest first) that
/// `retention` removes.
fn doomed_of(
    runs: &impl ReadableTable<(&'static [u8], i64), &'static [u8]>,
    id: JobId,
    keys: &[(i64, i64)],
    retention: &RunRetention,
    doomed: &mut Vec<(JobId, i64, i64)>,
) -> Result<(), StoreError> {
    let bytes = id.bytes();
    let mut records = Vec::with_capacity(keys.len());
    for &(_, token) in keys {
        if let Some(record) = runs.get((bytes.as_slice(), token)).map_err(storage)? {
            records.push(decode(id, token, record.value())?);
        }
    }
    doomed.extend(
        crate::store::pruned(records, retention)
            .into_iter()
            .map(|run| (id, run.fired_at.timestamp_millis(), run.fire_token)),
    );
    Ok(())
}
