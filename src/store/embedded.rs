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
//! A claim copies, as every write does, the b-tree pages it touches: the
//! jobs are stored in a compact binary form (`codec`), and a clear that
//! settles every event a job owes removes its outbox entry only, not
//! rewriting the job (`tables::JobReader`), so that a burst of firings
//! copies and syncs fewer pages of the jobs table.
//!
//! The store also keeps the event log ([`EventLog`], in [`log`]): each
//! event is appended in the write that clears it from its job's outbox, and
//! handed, once committed, to the sink set by [`EmbeddedJobDB::on_append`].

mod codec;
mod errors;
mod log;
mod runs;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    path::Path,
    sync::{Arc, OnceLock, mpsc},
    thread::JoinHandle,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

#[cfg(doc)]
use super::event_log::EventLog;
use super::{
    ClaimManyError, DueJob, JobDB, JobsPage, RunRetention, RunsPage, Scan, StoreError, stored_time,
};
use crate::domain::{
    Job, JobFilter, JobId, JobTally, LoggedEvent, PageRequest, PendingEvents,
    history::{self, Run},
    report::{ResultOutcome, RunReport},
};
use codec::{decode, decode_facets, encode, id_of};
use errors::{other, storage};
use tables::{
    CLIENT_KEYS, DUE, FINISHED, Index, IndexTable, JOBS, JobReader, JobTables, LISTING, OUTBOX,
    RUNNING, fill_finished,
};
use writer::{OnCommit, QueuedWrite, Write, run_writer};

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

/// The default bound on the store's page cache in memory, in bytes. (redb's
/// own default is 1 GiB, which a store of many jobs would slowly fill; past
/// this the operating system's file cache still serves reads.)
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

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
        txn.open_table(CLIENT_KEYS).map_err(storage)?;
        for table in IndexTable::ALL {
            txn.open_table(table.definition()).map_err(storage)?;
        }
        fill_finished(&txn)?;
        txn.open_table(runs::RUNS).map_err(storage)?;
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
            let jobs = JobReader::open(&txn)?;
            let mut reads = Vec::new();
            for entry in keys.range(..(until_ms, &[][..])).map_err(storage)? {
                if reads.len() >= limit {
                    break;
                }
                let (key, _) = entry.map_err(storage)?;
                reads.extend(jobs.scanned(key.value().1)?);
            }
            Ok(reads.into_iter().collect())
        })
        .await
    }
}

#[async_trait]
impl JobDB for EmbeddedJobDB {
    /// The events a clear settles go to the live subscribers from its log.
    fn clear_delivers(&self) -> bool {
        true
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        // The index tables are created by `open` and kept by every write.
        Ok(())
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let job = job.clone();
        self.write(move |txn| JobTables::new(txn).insert(&job))
            .await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            JobReader::open(&txn)?.read(id)
        })
        .await
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let keys = txn.open_table(CLIENT_KEYS).map_err(storage)?;
            let Some(id) = keys.get(key.as_str()).map_err(storage)? else {
                return Ok(None);
            };
            let id = id_of(id.value())?;
            JobReader::open(&txn)?.read(id)
        })
        .await
    }

    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError> {
        let filter = filter.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let reader = JobReader::open(&txn)?;
            let jobs = &reader.jobs;
            let listing = txn.open_table(LISTING).map_err(storage)?;
            let skip = usize::try_from(page.offset()).unwrap_or(usize::MAX);
            let take = usize::try_from(page.size).unwrap_or(usize::MAX);
            if filter.is_empty() {
                let total = jobs.len().map_err(storage)?;
                let mut reads = Vec::new();
                for entry in listing.iter().map_err(storage)?.skip(skip).take(take) {
                    let (key, _) = entry.map_err(storage)?;
                    reads.extend(reader.scanned(key.value().1)?);
                }
                return Ok(page_of(reads.into_iter().collect(), total));
            }
            // A filter reads every job, in listing order, to count them: its
            // facets only, the whole job only for the page.
            let (mut reads, mut total) = (Vec::new(), 0);
            for entry in listing.iter().map_err(storage)? {
                let (key, _) = entry.map_err(storage)?;
                let key = key.value().1;
                let Some(record) = jobs.get(key).map_err(storage)? else {
                    continue;
                };
                let id = id_of(key);
                let facets = id.clone().and_then(|id| decode_facets(id, record.value()));
                // (An unreadable job is listed, to be reported.)
                if facets.is_ok_and(|facets| !filter.admits_facets(&facets)) {
                    continue;
                }
                if (skip..skip.saturating_add(take)).contains(&total) {
                    reads.push(match id {
                        Ok(id) => reader.job_of(id, record.value())?,
                        Err(unreadable) => Err(unreadable),
                    });
                }
                total += 1;
            }
            Ok(page_of(reads.into_iter().collect(), total as u64))
        })
        .await
    }

    async fn tally(&self) -> Result<JobTally, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            // In key order (no index lookups): the order does not matter.
            let mut tally = JobTally::default();
            for entry in jobs.iter().map_err(storage)? {
                let (key, record) = entry.map_err(storage)?;
                match id_of(key.value()).and_then(|id| decode_facets(id, record.value())) {
                    Ok(facets) => tally.add_facets(&facets),
                    Err(_) => tally.total += 1,
                }
            }
            Ok(tally)
        })
        .await
    }

    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError> {
        let job = job.clone();
        let ended = ended.to_vec();
        self.write(move |txn| {
            let mut tables = JobTables::new(txn);
            match tables.read(job.id)? {
                Some(current) if current.version == expected_version => {
                    tables.write(job.id, Some(&current), Some(&job))?;
                    runs::record(txn, &ended)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.write(move |txn| {
            let mut tables = JobTables::new(txn);
            let current = tables.read(id)?;
            runs::forget(txn, id)?;
            match current {
                Some(current) => tables.write(id, Some(&current), None).map(|()| true),
                None => Ok(false),
            }
        })
        .await
    }

    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError> {
        self.blocking(move |db| runs::page(&db.begin_read().map_err(storage)?, id, offset, limit))
            .await
    }

    /// The runs to remove are found in a read transaction, so that the
    /// scan never holds the writer; they are removed in one write.
    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError> {
        let doomed = self
            .blocking(move |db| runs::doomed(&db.begin_read().map_err(storage)?, &retention))
            .await?;
        let count = doomed.len() as u64;
        if count > 0 {
            self.write(move |txn| runs::remove(txn, &doomed)).await?;
        }
        Ok(count)
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        self.write(move |txn| {
            let Some((job, ended)) = JobTables::new(txn).claim(id, fire_token, now)? else {
                return Ok(None);
            };
            runs::record(txn, &ended)?;
            Ok(Some(job))
        })
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
            let mut tables = JobTables::new(txn);
            let mut claimed = Vec::with_capacity(batch.len());
            let mut ended = Vec::new();
            for &(id, fire_token) in &batch {
                // Each claim reads the job again: one listed twice is claimed once.
                if let Some((job, runs)) = tables.claim(id, fire_token, now)? {
                    claimed.push(job);
                    ended.extend(runs);
                }
            }
            runs::record(txn, &ended)?;
            Ok(claimed)
        })
        .await
        // One transaction: it claims all of the batch or none of it.
        .map_err(|err| ClaimManyError::whole(firings, err))
    }

    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        let report = report.clone();
        let now = stored_time(now);
        let (result, fire_token) = (report.status, report.fire_token);
        self.write(move |txn| {
            let mut tables = JobTables::new(txn);
            let Some(current) = tables.read(id)? else {
                return Ok(ResultOutcome::UnknownJob);
            };
            // Decided inside the write transaction: the check and the write
            // are one atomic step.
            let taken = match current.result_taken(result, fire_token, now) {
                Ok(taken) => taken,
                Err(refused) => return Ok(ResultOutcome::refused(refused)),
            };
            tables.write(id, Some(&current), Some(&taken))?;
            runs::record(txn, &history::changes(&current, &taken, Some(&report), now))?;
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
        self.write_logged(move |txn, logged| {
            log::settle_owed(&mut JobTables::new(txn), id, version, remaining, logged)
        })
        .await
    }

    /// One write transaction for the whole batch, as for `claim_many`; the
    /// events cleared are logged in it, job by job in the batch's order.
    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        let jobs = jobs.to_vec();
        self.write_logged(move |txn, logged| {
            let mut tables = JobTables::new(txn);
            let mut cleared = Vec::with_capacity(jobs.len());
            for &(id, version) in &jobs {
                if log::settle_owed(&mut tables, id, version, PendingEvents::NONE, logged)? {
                    cleared.push(id);
                }
            }
            Ok(cleared)
        })
        .await
    }

    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        self.indexed(FINISHED, cutoff.timestamp_millis(), limit)
            .await
    }

    /// Logs the events it owed, as the clear of its outbox would, in the
    /// same write that deletes it.
    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError> {
        self.write_logged(move |txn, logged| {
            let mut tables = JobTables::new(txn);
            if !log::settle_owed(&mut tables, id, version, PendingEvents::NONE, logged)? {
                return Ok(false);
            }
            let settled = tables.read(id)?;
            runs::forget(txn, id)?;
            tables.write(id, settled.as_ref(), None)?;
            Ok(true)
        })
        .await
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        self.indexed(RUNNING, cutoff.timestamp_millis(), usize::MAX)
            .await
    }
}

/// A page of a listing, of `total` jobs in all.
fn page_of(page: Scan<Job>, total: u64) -> JobsPage {
    JobsPage {
        jobs: page.found,
        unreadable: page.unreadable,
        total,
    }
}
