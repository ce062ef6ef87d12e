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
        Job, JobId, JobStatus, PendingEvents,
        history::{self, Run},
    },
    store::{StoreError, Unreadable, stored_time},
};

/// Job id (12 bytes) → the job, in its stored form (see `codec`).
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

/// The index tables every write keeps in step with the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IndexTable {
    Listing,
    Due,
    Outbox,
    Running,
    Finished,
}

impl IndexTable {
    /// Every index table.
    pub(super) const ALL: [IndexTable; 5] = [
        IndexTable::Listing,
        IndexTable::Due,
        IndexTable::Outbox,
        IndexTable::Running,
        IndexTable::Finished,
    ];

    pub(super) fn definition(self) -> Index {
        match self {
            IndexTable::Listing => LISTING,
            IndexTable::Due => DUE,
            IndexTable::Outbox => OUTBOX,
            IndexTable::Running => RUNNING,
            IndexTable::Finished => FINISHED,
        }
    }
}

/// The index entries a job has: (table, key time in ms).
fn index_entries(job: &Job) -> impl Iterator<Item = (IndexTable, i64)> {
    let schedule_ms = job.spec.schedule_time.timestamp_millis();
    let updated_ms = job.updated_at.timestamp_millis();
    [
        (IndexTable::Listing, schedule_ms, true),
        (IndexTable::Due, schedule_ms, job.is_armable()),
        (
            IndexTable::Running,
            updated_ms,
            job.status == JobStatus::Running,
        ),
        (IndexTable::Outbox, updated_ms, job.pending.any()),
        (IndexTable::Finished, updated_ms, job.is_retirable()),
    ]
    .into_iter()
    .filter_map(|(table, ms, has)| has.then_some((table, ms)))
}

/// The index entries `job` has that `other` has not (all of them when
/// there is no `other`; none when there is no `job`).
fn entries_not_in<'a>(
    job: Option<&'a Job>,
    other: Option<&'a Job>,
) -> impl Iterator<Item = (IndexTable, i64)> + 'a {
    let shared = move |entry| other.is_some_and(|other| index_entries(other).any(|e| e == entry));
    job.into_iter()
        .flat_map(index_entries)
        .filter(move |&entry| !shared(entry))
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
        // (Records of files from before the index say what the job owes:
        // clears rewrote them then.)
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

/// The jobs and the outbox, open for reading a job: a job owes the events
/// its record names only while its [`OUTBOX`] entry is there. A clear that
/// settles all of them removes the entry and leaves the record alone
/// ([`JobTables::settle`]), so that it copies no page of the jobs table;
/// the job's next write stores what it owes again.
pub(super) struct JobReader<J, O> {
    pub(super) jobs: J,
    outbox: O,
}

/// [`JOBS`], open in a read transaction.
type JobsRead = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

impl JobReader<JobsRead, redb::ReadOnlyTable<(i64, &'static [u8]), ()>> {
    /// Opens the tables of `txn`.
    pub(super) fn open(txn: &redb::ReadTransaction) -> Result<Self, StoreError> {
        Ok(JobReader {
            jobs: txn.open_table(JOBS).map_err(storage)?,
            outbox: txn.open_table(OUTBOX).map_err(storage)?,
        })
    }
}

impl<J, O> JobReader<J, O>
where
    J: ReadableTable<&'static [u8], &'static [u8]>,
    O: ReadableTable<(i64, &'static [u8]), ()>,
{
    /// Reads one job.
    pub(super) fn read(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        read_job(&self.jobs, &self.outbox, id)
    }

    /// Reads, for a scan, the job whose id `key` an index entry holds:
    /// `None` if there is none, the reason if the entry or the record is
    /// not a job. Only a failure of the file itself is an error.
    pub(super) fn scanned(
        &self,
        key: &[u8],
    ) -> Result<Option<Result<Job, Unreadable>>, StoreError> {
        let id = match id_of(key) {
            Ok(id) => id,
            Err(unreadable) => return Ok(Some(Err(unreadable))),
        };
        let Some(record) = self.jobs.get(id.bytes().as_slice()).map_err(storage)? else {
            return Ok(None);
        };
        self.job_of(id, record.value()).map(Some)
    }

    /// The job `id` whose record, read already, is `bytes`; the reason if
    /// it is not a job.
    pub(super) fn job_of(
        &self,
        id: JobId,
        bytes: &[u8],
    ) -> Result<Result<Job, Unreadable>, StoreError> {
        match decode(id, bytes) {
            Ok(job) => Ok(Ok(owing(&self.outbox, job)?)),
            Err(unreadable) => Ok(Err(unreadable)),
        }
    }
}

/// Reads one job from `jobs`, owing what `outbox` says (see [`JobReader`]).
fn read_job(
    jobs: &impl ReadableTable<&'static [u8], &'static [u8]>,
    outbox: &impl ReadableTable<(i64, &'static [u8]), ()>,
    id: JobId,
) -> Result<Option<Job>, StoreError> {
    match jobs.get(id.bytes().as_slice()).map_err(storage)? {
        Some(bytes) => Ok(Some(owing(outbox, decode(id, bytes.value())?)?)),
        None => Ok(None),
    }
}

/// `job` as its record says, owing nothing once its outbox entry is gone.
fn owing(
    outbox: &impl ReadableTable<(i64, &'static [u8]), ()>,
    job: Job,
) -> Result<Job, StoreError> {
    if !job.pending.any() {
        return Ok(job);
    }
    let (ms, key) = (job.updated_at.timestamp_millis(), job.id.bytes());
    if outbox.get((ms, key.as_slice())).map_err(storage)?.is_some() {
        return Ok(job);
    }
    Ok(Job {
        pending: PendingEvents::NONE,
        ..job
    })
}

/// The jobs, their index tables and the client keys inside one write
/// transaction, each opened on first use and kept open until the write's
/// end. redb opens a table by looking its name up in the transaction's
/// table tree and stages its root again when it closes; opened per job, as
/// they were, the tables were opened about fourteen times a firing (its
/// claim and its outbox clear), in batches of up to 512 jobs.
pub(super) struct JobTables<'txn> {
    txn: &'txn redb::WriteTransaction,
    jobs: Option<JobsTable<'txn>>,
    client_keys: Option<redb::Table<'txn, &'static str, &'static [u8]>>,
    indexes: [Option<IndexOpen<'txn>>; 5],
}

/// [`JOBS`], open in a write transaction.
type JobsTable<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

/// An [`Index`] table, open in a write transaction.
type IndexOpen<'txn> = redb::Table<'txn, (i64, &'static [u8]), ()>;

/// The table in `slot`, opened into it first if it is not yet.
fn opened<'a, 'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'txn redb::WriteTransaction,
    slot: &'a mut Option<redb::Table<'txn, K, V>>,
    definition: TableDefinition<K, V>,
) -> Result<&'a mut redb::Table<'txn, K, V>, StoreError> {
    let table = match slot.take() {
        Some(table) => table,
        None => txn.open_table(definition).map_err(storage)?,
    };
    Ok(slot.insert(table))
}

impl<'txn> JobTables<'txn> {
    /// The tables of `txn`, none opened yet.
    pub(super) fn new(txn: &'txn redb::WriteTransaction) -> Self {
        JobTables {
            txn,
            jobs: None,
            client_keys: None,
            indexes: Default::default(),
        }
    }

    fn jobs(&mut self) -> Result<&mut JobsTable<'txn>, StoreError> {
        opened(self.txn, &mut self.jobs, JOBS)
    }

    fn index(&mut self, table: IndexTable) -> Result<&mut IndexOpen<'txn>, StoreError> {
        opened(
            self.txn,
            &mut self.indexes[table as usize],
            table.definition(),
        )
    }

    /// Reads one job (see [`JobReader`]).
    pub(super) fn read(&mut self, id: JobId) -> Result<Option<Job>, StoreError> {
        let jobs = opened(self.txn, &mut self.jobs, JOBS)?;
        let outbox = opened(
            self.txn,
            &mut self.indexes[IndexTable::Outbox as usize],
            OUTBOX,
        )?;
        read_job(jobs, outbox, id)
    }

    /// Inserts a new job; an id already stored is refused.
    pub(super) fn insert(&mut self, job: &Job) -> Result<(), StoreError> {
        if self.read(job.id)?.is_some() {
            return Err(StoreError::Other(format!("duplicate id {}", job.id)));
        }
        self.write(job.id, None, Some(job))
    }

    /// Writes `new` (or deletes the job when `None`) replacing `old`,
    /// keeping the index tables in step.
    pub(super) fn write(
        &mut self,
        id: JobId,
        old: Option<&Job>,
        new: Option<&Job>,
    ) -> Result<(), StoreError> {
        let key = id.bytes();
        self.move_entries(key.as_slice(), old, new)?;
        self.write_client_key(key.as_slice(), old, new)?;
        match new {
            Some(job) => {
                let bytes = encode(job)?;
                self.jobs()?
                    .insert(key.as_slice(), bytes.as_slice())
                    .map_err(storage)?;
            }
            None => {
                self.jobs()?.remove(key.as_slice()).map_err(storage)?;
            }
        }
        Ok(())
    }

    /// Settles every event `current` owes: its outbox entry goes (and it
    /// enters the finished index if it is now retirable), its record stays
    /// as it is (see [`JobReader`]). In a burst, writing the record again
    /// copied one page of the jobs table per clear, scattered by id.
    pub(super) fn settle(&mut self, current: &Job) -> Result<(), StoreError> {
        let settled = Job {
            pending: PendingEvents::NONE,
            ..current.clone()
        };
        self.move_entries(current.id.bytes().as_slice(), Some(current), Some(&settled))
    }

    /// Moves the index entries of `old` to those of `new`: only the
    /// entries that differ are removed and inserted. A claim keeps the
    /// job's listing entry and an outbox clear its listing and running
    /// entries; rewritten, they were six of a firing's thirteen b-tree
    /// writes.
    fn move_entries(
        &mut self,
        key: &[u8],
        old: Option<&Job>,
        new: Option<&Job>,
    ) -> Result<(), StoreError> {
        for (table, ms) in entries_not_in(old, new) {
            self.index(table)?.remove((ms, key)).map_err(storage)?;
        }
        for (table, ms) in entries_not_in(new, old) {
            self.index(table)?.insert((ms, key), ()).map_err(storage)?;
        }
        Ok(())
    }

    /// Keeps the client-key table in step with a write of `new` over
    /// `old`; a key another job holds is [`StoreError::ClientKeyTaken`].
    fn write_client_key(
        &mut self,
        id: &[u8],
        old: Option<&Job>,
        new: Option<&Job>,
    ) -> Result<(), StoreError> {
        let old_key = old.and_then(|job| job.client_key.as_deref());
        let new_key = new.and_then(|job| job.client_key.as_deref());
        if old_key == new_key {
            return Ok(());
        }
        let keys = opened(self.txn, &mut self.client_keys, CLIENT_KEYS)?;
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

    /// Claims `id` (see [`JobDB::claim`]): the claimed job and the runs its
    /// claim ends (a recurring job's run superseded; for the caller to
    /// record, once for a whole batch), or `None` when it is gone or no
    /// longer SCHEDULED under `fire_token`.
    pub(super) fn claim(
        &mut self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<(Job, Vec<Run>)>, StoreError> {
        let Some(current) = self.read(id)? else {
            return Ok(None);
        };
        let now = stored_time(now);
        let Some(claimed) = current.claimed(fire_token, now) else {
            return Ok(None);
        };
        self.write(id, Some(&current), Some(&claimed))?;
        let ended = history::changes(&current, &claimed, None, now);
        Ok(Some((claimed, ended)))
    }
}
