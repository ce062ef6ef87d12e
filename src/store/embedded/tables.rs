//! The tables of the file: the jobs and the indexes every write keeps in
//! step with them, and the reads and writes of one job inside a
//! transaction.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition};

use super::{
    codec::{decode, encode, id_of},
    errors::storage,
};
#[cfg(doc)]
use crate::store::JobDB;
use crate::{
    domain::{
        Job, JobId, JobStatus,
        history::{self, Run},
    },
    store::{StoreError, Unreadable, stored_time},
};

/// Job id (12 bytes) → the job, as JSON.
pub(super) const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
/// (schedule time in ms, id) of every job: the listing order.
pub(super) const LISTING: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("listing");
/// (schedule time in ms, id) of the jobs the timer should hold
/// ([`Job::is_armable`]): what it arms.
pub(super) const DUE: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("due");
/// (last change in ms, id) of jobs that owe events: the outbox.
pub(super) const OUTBOX: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("outbox");
/// (last change in ms, id) of RUNNING jobs: candidates for the run timeout.
pub(super) const RUNNING: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("running");
/// (last change in ms, id) of finished one-shot jobs that owe nothing:
/// what `JOB_RETENTION` retires ([`Job::is_retirable`]).
pub(super) const FINISHED: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("finished");
/// Marks of one-time upgrades of the file, by name.
pub(super) const UPGRADES: TableDefinition<&str, ()> = TableDefinition::new("upgrades");
/// The upgrade that filled [`FINISHED`] for the jobs of older files.
pub(super) const FINISHED_FILLED: &str = "finished index filled";

/// Client key → the id of the job created with it: unique.
pub(super) const CLIENT_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("client_keys");

/// An index table: (time in ms, job id) → nothing.
pub(super) type Index = TableDefinition<'static, (i64, &'static [u8]), ()>;

/// The index entries a job has: (table, key time in ms).
pub(super) fn index_entries(job: &Job) -> Vec<(Index, i64)> {
    let schedule_ms = job.spec.schedule_time.timestamp_millis();
    let updated_ms = job.updated_at.timestamp_millis();
    let mut entries = vec![(LISTING, schedule_ms)];
    if job.is_armable() {
        entries.push((DUE, schedule_ms));
    }
    if job.status == JobStatus::Running {
        entries.push((RUNNING, updated_ms));
    }
    if job.pending.any() {
        entries.push((OUTBOX, updated_ms));
    }
    if job.is_retirable() {
        entries.push((FINISHED, updated_ms));
    }
    entries
}

/// Fills [`FINISHED`] for the jobs of a file written before it, once
/// (the mark in [`UPGRADES`] says it was done).
pub(super) fn fill_finished(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut upgrades = txn.open_table(UPGRADES).map_err(storage)?;
    if upgrades.get(FINISHED_FILLED).map_err(storage)?.is_some() {
        return Ok(());
    }
    let jobs = txn.open_table(JOBS).map_err(storage)?;
    let mut finished = txn.open_table(FINISHED).map_err(storage)?;
    for entry in jobs.iter().map_err(storage)? {
        let (key, value) = entry.map_err(storage)?;
        // A record that is not a job is left to the scans that report it.
        let Ok(job) = id_of(key.value()).and_then(|id| decode(id, value.value())) else {
            continue;
        };
        if job.is_retirable() {
            let at = job.updated_at.timestamp_millis();
            finished.insert((at, key.value()), ()).map_err(storage)?;
        }
    }
    upgrades.insert(FINISHED_FILLED, ()).map_err(storage)?;
    Ok(())
}

/// Reads one job inside a transaction.
pub(super) fn read_job(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    id: JobId,
) -> Result<Option<Job>, StoreError> {
    match table.get(id.bytes().as_slice()).map_err(storage)? {
        Some(bytes) => Ok(Some(decode(id, bytes.value())?)),
        None => Ok(None),
    }
}

/// Reads, for a scan, the job whose id `key` an index entry holds: `None`
/// if there is none, the reason if the entry or the record is not a job.
/// Only a failure of the file itself is an error.
pub(super) fn scanned_job(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Result<Job, Unreadable>>, StoreError> {
    let id = match id_of(key) {
        Ok(id) => id,
        Err(unreadable) => return Ok(Some(Err(unreadable))),
    };
    let record = table.get(id.bytes().as_slice()).map_err(storage)?;
    Ok(record.map(|bytes| decode(id, bytes.value())))
}

/// Writes `new` (or deletes the job when `None`) replacing `old`, keeping the
/// index tables in step, inside `txn`.
pub(super) fn write_job(
    txn: &redb::WriteTransaction,
    id: JobId,
    old: Option<&Job>,
    new: Option<&Job>,
) -> Result<(), StoreError> {
    let key = id.bytes();
    if let Some(job) = old {
        for (table, ms) in index_entries(job) {
            txn.open_table(table)
                .map_err(storage)?
                .remove((ms, key.as_slice()))
                .map_err(storage)?;
        }
    }
    write_client_key(txn, key.as_slice(), old, new)?;
    let mut jobs = txn.open_table(JOBS).map_err(storage)?;
    match new {
        Some(job) => {
            jobs.insert(key.as_slice(), encode(job)?.as_slice())
                .map_err(storage)?;
            for (table, ms) in index_entries(job) {
                txn.open_table(table)
                    .map_err(storage)?
                    .insert((ms, key.as_slice()), ())
                    .map_err(storage)?;
            }
        }
        None => {
            jobs.remove(key.as_slice()).map_err(storage)?;
        }
    }
    Ok(())
}

/// Keeps the client-key table in step with a write of `new` over `old`;
/// a key another job holds is [`StoreError::ClientKeyTaken`].
fn write_client_key(
    txn: &redb::WriteTransaction,
    id: &[u8],
    old: Option<&Job>,
    new: Option<&Job>,
) -> Result<(), StoreError> {
    let old_key = old.and_then(|job| job.client_key.as_deref());
    let new_key = new.and_then(|job| job.client_key.as_deref());
    if old_key == new_key {
        return Ok(());
    }
    let mut keys = txn.open_table(CLIENT_KEYS).map_err(storage)?;
    if let Some(key) = old_key {
        keys.remove(key).map_err(storage)?;
    }
    if let Some(key) = new_key {
        if keys.get(key).map_err(storage)?.is_some() {
            return Err(StoreError::ClientKeyTaken(key.to_owned()));
        }
        keys.insert(key, id).map_err(storage)?;
    }
    Ok(())
}

/// Claims `id` inside `txn` (see [`JobDB::claim`]): the claimed job and
/// the runs its claim ends (a recurring job's run superseded; for the
/// caller to record, once for a whole batch), or `None` when it is gone or
/// no longer SCHEDULED under `fire_token`.
pub(super) fn claim_in(
    txn: &redb::WriteTransaction,
    id: JobId,
    fire_token: i64,
    now: DateTime<Utc>,
) -> Result<Option<(Job, Vec<Run>)>, StoreError> {
    let Some(current) = read_job(&txn.open_table(JOBS).map_err(storage)?, id)? else {
        return Ok(None);
    };
    let now = stored_time(now);
    let Some(claimed) = current.claimed(fire_token, now) else {
        return Ok(None);
    };
    write_job(txn, id, Some(&current), Some(&claimed))?;
    let ended = history::changes(&current, &claimed, None, now);
    Ok(Some((claimed, ended)))
}
