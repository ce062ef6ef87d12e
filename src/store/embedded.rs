//! The embedded [`JobDB`]: a crash-safe file in the data directory, for a
//! scheduler that runs with no database server.
//!
//! Built on `redb`, an embedded key-value store with ACID transactions,
//! copy-on-write B-trees and a checksummed commit that survives `kill -9`
//! and power loss (each commit is made durable before it returns). Every
//! operation updates the job and its index tables in one write transaction,
//! so a claim, an outbox change or a result is atomic, and the single writer
//! of redb serialises claimers. The file is for one process: replicas need a
//! shared store (PostgreSQL or MongoDB).
//!
//! Writes are group-committed: one writer thread applies every write queued
//! while the previous commit ran, in order, in one transaction, and answers
//! each only once that transaction is durable. Under concurrent load one
//! commit (one fsync) then serves many calls instead of one each; a lone
//! write is committed at once.
//!
//! The store also keeps the event log ([`EventLog`], in [`log`]): each
//! event is appended in the write that clears it from its job's outbox, and
//! handed, once committed, to the sink set by [`EmbeddedJobDB::on_append`].

mod log;

use std::{
    path::Path,
    sync::{Arc, OnceLock, mpsc},
    thread::JoinHandle,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::event_log::EventLog;
use super::{
    ClaimManyError, DueJob, JobDB, JobsPage, ResultOutcome, Scan, StoreError, Unreadable,
    refused_result, stored_time, takes_result,
};
use crate::domain::{
    Job, JobId, JobSpec, JobStatus, JobType, LoggedEvent, PageRequest, PendingEvents, ResultStatus,
};

/// Job id (12 bytes) → the job, as JSON.
const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
/// (schedule time in ms, id) of every job: the listing order.
const LISTING: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("listing");
/// (schedule time in ms, id) of SCHEDULED jobs: what the timer arms.
const DUE: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("due");
/// (last change in ms, id) of jobs that owe events: the outbox.
const OUTBOX: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("outbox");
/// (last change in ms, id) of RUNNING jobs: candidates for the run timeout.
const RUNNING: TableDefinition<(i64, &[u8]), ()> = TableDefinition::new("running");

/// Jobs in a `redb` file.
#[derive(Clone)]
pub struct EmbeddedJobDB {
    inner: Arc<Inner>,
}

/// The database and its group-commit writer; dropping the last handle stops
/// the writer and closes the file before returning (so that it can be
/// opened again at once).
struct Inner {
    db: Arc<Database>,
    writes: Option<mpsc::Sender<Box<dyn QueuedWrite>>>,
    writer: Option<JoinHandle<()>>,
    /// Where logged events go once committed (see [`EmbeddedJobDB::on_append`]).
    sink: Arc<OnceLock<Sink>>,
}

/// Takes the events of the log as each commit makes them durable, in the
/// order of their sequence numbers.
pub type Sink = Box<dyn Fn(Vec<LoggedEvent>) + Send + Sync>;

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has drained it.
        self.writes.take();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("embedded store writer panicked");
        }
    }
}

/// Most writes committed together.
const MAX_GROUP: usize = 256;

/// A write waiting for the writer thread.
trait QueuedWrite: Send {
    /// Applies the write to `txn`; false if it failed, and then the write
    /// must be dropped with the whole transaction (so it may be applied
    /// again, alone). Its error is kept for its answer.
    fn apply(&mut self, txn: &redb::WriteTransaction) -> bool;

    /// Answers the caller: the applied result if the commit succeeded.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A write and the caller waiting for its result.
struct Write<T, F> {
    op: F,
    result: Option<Result<T, StoreError>>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
    /// Run on the writer thread once the write is committed, before the
    /// caller is answered: commits' hooks run in the order of the commits.
    on_commit: Option<OnCommit<T>>,
}

/// What a write does with its result once committed.
type OnCommit<T> = Box<dyn FnOnce(&mut T) + Send>;

impl<T, F> QueuedWrite for Write<T, F>
where
    T: Send,
    F: FnMut(&redb::WriteTransaction) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, txn: &redb::WriteTransaction) -> bool {
        let result = (self.op)(txn);
        let applied = result.is_ok();
        self.result = Some(result);
        applied
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (committed, self.result) {
            (Ok(()), Some(mut result)) => {
                if let (Ok(value), Some(hook)) = (&mut result, self.on_commit) {
                    hook(value);
                }
                result
            }
            (Ok(()), None) => Err(StoreError::Other("write never applied".into())),
            (Err(err), _) => Err(err),
        };
        // The caller may have gone (a cancelled call): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// The writer thread: takes the writes queued, commits them as one group.
fn run_writer(db: &Database, queue: &mpsc::Receiver<Box<dyn QueuedWrite>>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

/// Commits `group` in one transaction; if one write fails, the transaction
/// is dropped and each write is committed alone, so that one failure never
/// fails or half-applies the others.
fn commit_group(db: &Database, mut group: Vec<Box<dyn QueuedWrite>>) {
    if group.len() > 1 {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(err) => {
                let err = commit_failed(err);
                return group.into_iter().for_each(|w| w.finish(Err(err.clone())));
            }
        };
        if group.iter_mut().all(|write| write.apply(&txn)) {
            let committed = txn.commit().map_err(commit_failed);
            return group.into_iter().for_each(|w| w.finish(committed.clone()));
        }
        if let Err(err) = txn.abort() {
            tracing::warn!(error = %err, "cannot abort a failed write group");
        }
    }
    for mut write in group {
        let committed = db.begin_write().map_err(commit_failed).and_then(|txn| {
            if write.apply(&txn) {
                txn.commit().map_err(commit_failed)
            } else {
                // The write's own error is its answer; nothing is kept.
                txn.abort().map_err(commit_failed)
            }
        });
        write.finish(committed);
    }
}

/// The stored form of a job (the id is the key).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    name: String,
    description: String,
    schedule_ms: i64,
    created_ms: i64,
    updated_ms: i64,
    status: i32,
    job_type: i32,
    job_data: String,
    fire_token: i64,
    version: i64,
    pending_create: bool,
    pending_update: bool,
    pending_run: bool,
    /// Absent in files written before traces were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_parent: Option<String>,
}

fn other(err: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("embedded store: {err}"))
}

/// A failure of redb or of its file as a [`StoreError`]:
/// [`StoreError::Unavailable`] when trying again may succeed (see
/// [`transient`]), so that callers retry the call instead of giving up on
/// it (a run result is not dropped while the disk is full).
fn storage(err: impl Into<redb::Error>) -> StoreError {
    classified("embedded store", err.into())
}

/// As [`storage`], for the commit of a group of writes.
fn commit_failed(err: impl Into<redb::Error>) -> StoreError {
    classified("embedded store: commit failed", err.into())
}

fn classified(context: &str, err: redb::Error) -> StoreError {
    let message = format!("{context}: {err}");
    if transient(&err) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

/// Whether trying again may cure `err`: an I/O error that passes (the disk
/// or a quota full, ENOSPC and EDQUOT; memory short; a call interrupted or
/// that would block), and redb's refusal of every use of the file after
/// such an error (`PreviousIo`), which lasts until the store is opened
/// again: a restart, once the disk has room. A corrupted file, a closed
/// database or a misuse of redb is not cured by trying again.
fn transient(err: &redb::Error) -> bool {
    use std::io::ErrorKind;
    match err {
        redb::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::StorageFull
                | ErrorKind::QuotaExceeded
                | ErrorKind::OutOfMemory
                | ErrorKind::Interrupted
                | ErrorKind::WouldBlock
        ),
        redb::Error::PreviousIo => true,
        _ => false,
    }
}

fn time(ms: i64, id: JobId) -> Result<DateTime<Utc>, Unreadable> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Unreadable::job(id, format!("time {ms} out of range")))
}

fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredJob {
        name: job.spec.name.clone(),
        description: job.spec.description.clone(),
        schedule_ms: job.spec.schedule_time.timestamp_millis(),
        created_ms: job.created_at.timestamp_millis(),
        updated_ms: job.updated_at.timestamp_millis(),
        status: job.status.as_i32(),
        job_type: job.spec.job_type.as_i32(),
        job_data: job.spec.job_data.clone(),
        fire_token: job.fire_token,
        version: job.version,
        pending_create: job.pending.create,
        pending_update: job.pending.update,
        pending_run: job.pending.run,
        trace_parent: job.trace_parent.clone(),
    })
    .map_err(other)
}

fn decode(id: JobId, bytes: &[u8]) -> Result<Job, Unreadable> {
    let stored: StoredJob =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::job(id, e.to_string()))?;
    let corrupt = |what: &str| Unreadable::job(id, format!("invalid {what}"));
    Ok(Job {
        id,
        spec: JobSpec {
            name: stored.name,
            description: stored.description,
            schedule_time: time(stored.schedule_ms, id)?,
            job_type: JobType::from_i32(stored.job_type).ok_or_else(|| corrupt("job type"))?,
            job_data: stored.job_data,
        },
        created_at: time(stored.created_ms, id)?,
        updated_at: time(stored.updated_ms, id)?,
        status: JobStatus::from_i32(stored.status).ok_or_else(|| corrupt("status"))?,
        fire_token: stored.fire_token,
        version: stored.version,
        pending: PendingEvents {
            create: stored.pending_create,
            update: stored.pending_update,
            run: stored.pending_run,
        },
        trace_parent: stored.trace_parent,
    })
}

fn id_of(bytes: &[u8]) -> Result<JobId, Unreadable> {
    <[u8; 12]>::try_from(bytes)
        .map(JobId::from_bytes)
        .map_err(|_| Unreadable::without_id(format!("job key of {} bytes", bytes.len())))
}

/// An index table: (time in ms, job id) → nothing.
type Index = TableDefinition<'static, (i64, &'static [u8]), ()>;

/// The index entries a job has: (table, key time in ms).
fn index_entries(job: &Job) -> Vec<(Index, i64)> {
    let schedule_ms = job.spec.schedule_time.timestamp_millis();
    let updated_ms = job.updated_at.timestamp_millis();
    let mut entries = vec![(LISTING, schedule_ms)];
    if job.status == JobStatus::Scheduled {
        entries.push((DUE, schedule_ms));
    }
    if job.status == JobStatus::Running {
        entries.push((RUNNING, updated_ms));
    }
    if job.pending.any() {
        entries.push((OUTBOX, updated_ms));
    }
    entries
}

/// Reads one job inside a transaction.
fn read_job(
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
fn scanned_job(
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
fn write_job(
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

/// The default bound on the store's page cache in memory, in bytes. (redb's
/// own default is 1 GiB, which a store of many jobs would slowly fill; past
/// this the operating system's file cache still serves reads.)
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Claims `id` inside `txn` (see [`JobDB::claim`]): the claimed job, or
/// `None` when it is gone or no longer SCHEDULED under `fire_token`.
fn claim_in(
    txn: &redb::WriteTransaction,
    id: JobId,
    fire_token: i64,
    now: DateTime<Utc>,
) -> Result<Option<Job>, StoreError> {
    let Some(current) = read_job(&txn.open_table(JOBS).map_err(storage)?, id)? else {
        return Ok(None);
    };
    let claimed = current.claimed(fire_token, stored_time(now));
    if let Some(claimed) = &claimed {
        write_job(txn, id, Some(&current), Some(claimed))?;
    }
    Ok(claimed)
}

impl EmbeddedJobDB {
    /// Opens (or creates) the store file `jobs.redb` in `dir`, with a page
    /// cache of [`DEFAULT_CACHE_BYTES`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Like [`EmbeddedJobDB::open`], with a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| other(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join("jobs.redb"))
            .map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        // Create every table, so that reads never meet a missing one.
        txn.open_table(JOBS).map_err(storage)?;
        for table in [LISTING, DUE, OUTBOX, RUNNING] {
            txn.open_table(table).map_err(storage)?;
        }
        log::create_tables(&txn)?;
        txn.commit().map_err(storage)?;
        let db = Arc::new(db);
        let (writes, queue) = mpsc::channel();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("embedded-store-writer".to_owned())
            .spawn(move || run_writer(&writer_db, &queue))
            .map_err(|e| other(format!("cannot start the writer thread: {e}")))?;
        Ok(EmbeddedJobDB {
            inner: Arc::new(Inner {
                db,
                writes: Some(writes),
                writer: Some(writer),
                sink: Arc::new(OnceLock::new()),
            }),
        })
    }

    /// Sets where the events of the log go once committed (the in-process
    /// hub of live subscribers), in the order of their sequence numbers;
    /// once: a later sink is refused and returned.
    pub fn on_append(&self, sink: Sink) -> Result<(), Sink> {
        self.inner.sink.set(sink)
    }

    /// Runs `op` on a blocking thread (redb is synchronous and its writer
    /// waits for the previous one).
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || op(&db))
            .await
            .map_err(other)?
    }

    /// Runs `op` in a write transaction (the writer's current group) and
    /// returns its result once that transaction is committed. `op` may run
    /// twice (alone again if its group is rolled back), so it reads what it
    /// decides on inside the transaction and writes nothing before it
    /// errs.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnMut(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_then(op, None).await
    }

    /// Runs `op` as [`EmbeddedJobDB::write`] does, then appends to the log,
    /// in the same transaction, the events it gave; once they are
    /// committed, they go to the sink.
    async fn write_logged<T: Send + 'static>(
        &self,
        mut op: impl FnMut(&redb::WriteTransaction, &mut Vec<LoggedEvent>) -> Result<T, StoreError>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        let sink = self.inner.sink.clone();
        let op = move |txn: &redb::WriteTransaction| {
            let mut logged = Vec::new();
            let value = op(txn, &mut logged)?;
            log::append(txn, &mut logged)?;
            Ok((value, logged))
        };
        let hand_over: OnCommit<(T, Vec<LoggedEvent>)> = Box::new(move |(_, logged)| {
            if let Some(sink) = sink.get()
                && !logged.is_empty()
            {
                sink(std::mem::take(logged));
            }
        });
        Ok(self.write_then(op, Some(hand_over)).await?.0)
    }

    /// Queues `op` for the writer, with `on_commit` for its committed result.
    async fn write_then<T: Send + 'static>(
        &self,
        op: impl FnMut(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
        on_commit: Option<OnCommit<T>>,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let write = Box::new(Write {
            op,
            result: None,
            reply,
            on_commit,
        });
        let queued = self
            .inner
            .writes
            .as_ref()
            .is_some_and(|writes| writes.send(write).is_ok());
        if !queued {
            return Err(other("the embedded store's writer has stopped"));
        }
        answer
            .await
            .map_err(|_| other("the embedded store's writer has stopped"))?
    }

    /// The jobs whose keys in `index` come before `until_ms`, in key order,
    /// at most `limit` of them readable or not; the unreadable are reported.
    async fn indexed(
        &self,
        index: Index,
        until_ms: i64,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let keys = txn.open_table(index).map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            let mut reads = Vec::new();
            for entry in keys.range(..(until_ms, &[][..])).map_err(storage)? {
                if reads.len() >= limit {
                    break;
                }
                let (key, _) = entry.map_err(storage)?;
                reads.extend(scanned_job(&jobs, key.value().1)?);
            }
            Ok(reads.into_iter().collect())
        })
        .await
    }
}

#[async_trait]
impl JobDB for EmbeddedJobDB {
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        // The index tables are created by `open` and kept by every write.
        Ok(())
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let job = job.clone();
        self.write(move |txn| {
            let existing = read_job(&txn.open_table(JOBS).map_err(storage)?, job.id)?;
            if existing.is_some() {
                return Err(StoreError::Other(format!("duplicate id {}", job.id)));
            }
            write_job(txn, job.id, None, Some(&job))
        })
        .await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            read_job(&txn.open_table(JOBS).map_err(storage)?, id)
        })
        .await
    }

    async fn list(&self, page: PageRequest) -> Result<JobsPage, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            let listing = txn.open_table(LISTING).map_err(storage)?;
            let total = jobs.len().map_err(storage)?;
            let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
            let take = usize::try_from(page.size).unwrap_or(usize::MAX);
            let mut reads = Vec::new();
            for entry in listing.iter().map_err(storage)?.skip(skip).take(take) {
                let (key, _) = entry.map_err(storage)?;
                reads.extend(scanned_job(&jobs, key.value().1)?);
            }
            let page: Scan<Job> = reads.into_iter().collect();
            Ok(JobsPage {
                jobs: page.found,
                unreadable: page.unreadable,
                total,
            })
        })
        .await
    }

    async fn replace_if(&self, job: &Job, expected_version: i64) -> Result<bool, StoreError> {
        let job = job.clone();
        self.write(move |txn| {
            let current = read_job(&txn.open_table(JOBS).map_err(storage)?, job.id)?;
            match current {
                Some(current) if current.version == expected_version => {
                    write_job(txn, job.id, Some(&current), Some(&job))?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let current = read_job(&txn.open_table(JOBS).map_err(storage)?, id)?;
            match current {
                Some(current) => write_job(txn, id, Some(&current), None).map(|()| true),
                None => Ok(false),
            }
        })
        .await
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        self.write(move |txn| claim_in(txn, id, fire_token, now))
            .await
    }

    /// One write transaction for the whole batch: one commit (and fsync)
    /// instead of one per job; redb's single writer makes it atomic.
    async fn claim_many(
        &self,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        let batch = firings.to_vec();
        self.write(move |txn| {
            let mut claimed = Vec::with_capacity(batch.len());
            for &(id, fire_token) in &batch {
                // Each claim reads the job again: one listed twice is claimed once.
                claimed.extend(claim_in(txn, id, fire_token, now)?);
            }
            Ok(claimed)
        })
        .await
        // One transaction: it claims all of the batch or none of it.
        .map_err(|err| ClaimManyError::whole(firings, err))
    }

    async fn store_result(
        &self,
        id: JobId,
        result: ResultStatus,
        fire_token: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        self.write(move |txn| {
            let current = read_job(&txn.open_table(JOBS).map_err(storage)?, id)?;
            let Some(current) = current else {
                return Ok(ResultOutcome::UnknownJob);
            };
            // Decided inside the write transaction: the check and the write
            // are one atomic step.
            if !takes_result(current.status, current.fire_token, fire_token) {
                let (status, token) = (current.status, current.fire_token);
                return Ok(refused_result(status, token, result, fire_token));
            }
            let finished = current.finished(result, stored_time(now));
            write_job(txn, id, Some(&current), Some(&finished))?;
            Ok(ResultOutcome::Stored)
        })
        .await
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        let jobs = self
            .indexed(DUE, until.timestamp_millis(), usize::MAX)
            .await?;
        Ok(jobs.map(|job| DueJob::from(&job)))
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        self.indexed(OUTBOX, i64::MAX, limit).await
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        // The events it clears are logged in the same transaction.
        self.write_logged(move |txn, logged| log::settle_owed(txn, id, version, remaining, logged))
            .await
    }

    /// One write transaction for the whole batch, as for `claim_many`; the
    /// events cleared are logged in it, job by job in the batch's order.
    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        let jobs = jobs.to_vec();
        self.write_logged(move |txn, logged| {
            let mut cleared = Vec::with_capacity(jobs.len());
            for &(id, version) in &jobs {
                if log::settle_owed(txn, id, version, PendingEvents::NONE, logged)? {
                    cleared.push(id);
                }
            }
            Ok(cleared)
        })
        .await
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        self.indexed(RUNNING, cutoff.timestamp_millis(), usize::MAX)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    fn job(in_ms: i64) -> Job {
        Job::new_scheduled(
            JobSpec {
                name: format!("job in {in_ms}"),
                description: "d".into(),
                schedule_time: now() + chrono::Duration::milliseconds(in_ms),
                job_type: JobType::Sms,
                job_data: "{}".into(),
            },
            now(),
        )
    }

    /// A queued insert of `job` and the receiver of its answer.
    fn queued_insert(
        job: Job,
    ) -> (
        Box<dyn QueuedWrite>,
        tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let op = move |txn: &redb::WriteTransaction| {
            if read_job(&txn.open_table(JOBS).map_err(storage)?, job.id)?.is_some() {
                return Err(StoreError::Other("duplicate".into()));
            }
            write_job(txn, job.id, None, Some(&job))
        };
        let write = Write {
            op,
            result: None,
            reply,
            on_commit: None,
        };
        (Box::new(write), answer)
    }

    #[test]
    fn a_full_disk_and_passing_io_errors_are_unavailable_the_others_not() {
        use std::io::{Error, ErrorKind};
        let io = |err: Error| redb::StorageError::Io(err);
        let transient = [
            storage(io(ErrorKind::StorageFull.into())),
            // ENOSPC, as the operating system reports a full disk.
            storage(io(Error::from_raw_os_error(28))),
            storage(io(ErrorKind::QuotaExceeded.into())),
            storage(io(ErrorKind::OutOfMemory.into())),
            storage(io(ErrorKind::Interrupted.into())),
            storage(io(ErrorKind::WouldBlock.into())),
            storage(redb::StorageError::PreviousIo),
            commit_failed(redb::CommitError::Storage(
                io(ErrorKind::StorageFull.into()),
            )),
            storage(redb::TransactionError::Storage(io(
                ErrorKind::StorageFull.into()
            ))),
        ];
        for err in transient {
            assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        }
        let refused = [
            storage(io(ErrorKind::PermissionDenied.into())),
            storage(io(ErrorKind::InvalidData.into())),
            storage(redb::StorageError::Corrupted("bad page".into())),
            storage(redb::StorageError::DatabaseClosed),
            commit_failed(redb::CommitError::TransactionPoisoned),
        ];
        for err in refused {
            assert!(matches!(err, StoreError::Other(_)), "{err}");
        }
    }

    #[tokio::test]
    async fn a_failed_write_in_a_group_fails_alone_and_the_others_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        let existing = job(1_000);
        db.insert(&existing).await.unwrap();
        let fresh: Vec<Job> = (0..3).map(|i| job(2_000 + i)).collect();
        // The duplicate sits mid-group: the writes before it were applied
        // when it failed, and must be rolled back and committed alone.
        let (mut group, mut answers) = (Vec::new(), Vec::new());
        for job in [&fresh[0], &existing, &fresh[1], &fresh[2]] {
            let (write, answer) = queued_insert(job.clone());
            group.push(write);
            answers.push(answer);
        }
        commit_group(&db.inner.db, group);
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
        assert!(results[1].is_err(), "the duplicate is refused");
        for job in &fresh {
            assert_eq!(db.get(job.id).await.unwrap().as_ref(), Some(job));
        }
        assert_eq!(db.get(existing.id).await.unwrap(), Some(existing));
        let listed = db.list(PageRequest::new(1, 10, 10).unwrap()).await.unwrap();
        assert_eq!(listed.total, 4, "each job stored once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_are_all_committed_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Vec<Job> = (0..200).map(job).collect();
        {
            let db = EmbeddedJobDB::open(dir.path()).unwrap();
            let inserts = jobs.iter().cloned().map(|job| {
                let db = db.clone();
                tokio::spawn(async move { db.insert(&job).await })
            });
            for insert in futures::future::join_all(inserts).await {
                insert.unwrap().unwrap();
            }
        }
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        for job in &jobs {
            assert_eq!(db.get(job.id).await.unwrap().as_ref(), Some(job));
        }
    }

    #[tokio::test]
    async fn every_operation_keeps_the_indexes_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        let (late, early) = (job(5_000), job(1_000));
        db.insert(&late).await.unwrap();
        db.insert(&early).await.unwrap();
        assert!(db.insert(&early).await.is_err(), "duplicate id");
        assert_eq!(db.get(late.id).await.unwrap(), Some(late.clone()));

        let page = db.list(PageRequest::new(1, 10, 10).unwrap()).await.unwrap();
        assert_eq!(page.total, 2);
        assert_eq!(
            page.jobs,
            [early.clone(), late.clone()],
            "ordered by schedule time"
        );
        let due = db
            .scheduled_before(now() + chrono::Duration::seconds(2))
            .await
            .unwrap();
        assert_eq!(due, Scan::readable(vec![DueJob::from(&early)]));
        assert_eq!(db.with_pending_events(10).await.unwrap().found.len(), 2);

        // Claim: only with the current token, only once; the job leaves the
        // due index and enters the running one, owing its run event.
        assert_eq!(
            db.claim(early.id, early.fire_token + 1, now())
                .await
                .unwrap(),
            None
        );
        let claimed = db
            .claim(early.id, early.fire_token, now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((claimed.status, claimed.version), (JobStatus::Running, 1));
        assert!(claimed.pending.run && claimed.pending.create);
        assert_eq!(
            db.claim(early.id, early.fire_token, now()).await.unwrap(),
            None
        );
        assert!(
            db.scheduled_before(now() + chrono::Duration::seconds(2))
                .await
                .unwrap()
                .found
                .is_empty()
        );
        let later = now() + chrono::Duration::seconds(1);
        assert_eq!(
            db.running_before(later).await.unwrap(),
            Scan::readable(vec![claimed.clone()])
        );

        // The outbox entry clears only at the version it was read at.
        assert!(
            !db.set_pending_if(early.id, 0, PendingEvents::NONE)
                .await
                .unwrap()
        );
        assert!(
            db.set_pending_if(early.id, 1, PendingEvents::NONE)
                .await
                .unwrap()
        );
        assert_eq!(
            db.with_pending_events(10).await.unwrap(),
            Scan::readable(vec![late.clone()])
        );

        assert_eq!(
            db.store_result(early.id, ResultStatus::Failed, None, now())
                .await
                .unwrap(),
            ResultOutcome::Stored
        );
        assert_eq!(
            db.store_result(early.id, ResultStatus::Failed, None, now())
                .await
                .unwrap(),
            ResultOutcome::Duplicate
        );
        assert_eq!(
            db.store_result(early.id, ResultStatus::Succeeded, None, now())
                .await
                .unwrap(),
            ResultOutcome::Ignored(JobStatus::Failed)
        );
        assert_eq!(
            db.store_result(JobId::new(), ResultStatus::Failed, None, now())
                .await
                .unwrap(),
            ResultOutcome::UnknownJob
        );
        assert!(db.running_before(later).await.unwrap().found.is_empty());

        // replace_if only at the expected version; delete removes every trace.
        let moved = late.rescheduled(late.spec.clone(), now());
        assert!(!db.replace_if(&moved, 7).await.unwrap());
        assert!(db.replace_if(&moved, 0).await.unwrap());
        assert!(db.delete(late.id).await.unwrap());
        assert!(!db.delete(late.id).await.unwrap());
        assert_eq!(
            db.list(PageRequest::new(1, 10, 10).unwrap())
                .await
                .unwrap()
                .jobs
                .len(),
            1
        );
        assert!(db.with_pending_events(10).await.unwrap().found.is_empty());
    }

    #[tokio::test]
    async fn jobs_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let kept = Job {
            trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..job(60_000)
        };
        {
            let db = EmbeddedJobDB::open(dir.path()).unwrap();
            db.insert(&kept).await.unwrap();
        }
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        assert_eq!(db.get(kept.id).await.unwrap(), Some(kept));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_win_each_job_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        let jobs: Vec<Job> = (0..50).map(|_| job(0)).collect();
        for job in &jobs {
            db.insert(job).await.unwrap();
        }
        let claimers = (0..8).map(|_| {
            let (db, jobs) = (db.clone(), jobs.clone());
            tokio::spawn(async move {
                let mut won = 0;
                for job in &jobs {
                    won += usize::from(
                        db.claim(job.id, job.fire_token, now())
                            .await
                            .unwrap()
                            .is_some(),
                    );
                }
                won
            })
        });
        let won: usize = futures::future::join_all(claimers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .sum();
        assert_eq!(won, jobs.len());
    }
}
