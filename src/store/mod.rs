//! Job persistence: the [`JobDB`] port the service talks to, and its stores.
//! [`mongo::MongoJobDB`] is the article's store; [`postgres::PgJobDB`] the
//! store for several replicas (its claims are atomic across connections);
//! [`pg_tls`] its TLS; [`embedded::EmbeddedJobDB`] the crash-safe file store used when no
//! database is configured; [`memory::MemoryJobDB`] the reference of the
//! rules, for unit tests and benchmarks. [`traced::TracedJobDB`] wraps any of
//! them in spans. `tests/store_contract` holds every store to the same rules.
//!
//! Every state change is a single conditional update on one job, so that two
//! callers (or two replicas) racing on the same job cannot both win.
//!
//! The store contract (`tests/store_contract`) holds every implementation
//! to the rules documented on [`JobDB`].
//!
//! One rule concerns documents a store cannot read back as jobs: a scan
//! answers the jobs it can read and reports the others ([`Scan`]), so that
//! one bad document never stops the timer, the outbox relay or the run
//! timeouts for every other job (see [`JobDB`]).

pub mod embedded;
pub mod event_log;
pub mod leases;
pub mod memory;
pub mod mongo;
pub mod pg_tls;
pub mod postgres;
mod shared;
pub mod traced;

pub use leases::ShardLeases;
pub use shared::runs_of;
pub(crate) use shared::{
    claim_read, pruned, record_runs, result_read, runs_page, stored_job, stored_time,
};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    self, Job, JobFilter, JobId, JobTally, PageRequest, PendingEvents,
    history::Run,
    report::{ResultOutcome, RunReport},
    shard::Shards,
};

/// How many times a read-and-conditional-write step on a recurring job is
/// tried when the job changes between the read and the write.
pub(crate) const RECURRING_ATTEMPTS: usize = 8;

/// A failure of the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached, timed out, or failed in a way
    /// that trying the same call again may cure (a fail-over, a full disk, a
    /// lost race): callers that must not give up on a call retry it.
    #[error("{0}")]
    Unavailable(String),
    /// A stored document could not be read back as a job.
    #[error("corrupt job document: {0}")]
    Corrupt(Unreadable),
    /// Any other refusal by the database: trying the same call again would
    /// meet it again.
    #[error("{0}")]
    Other(String),
    /// An insert whose client key another job holds (see
    /// [`JobDB::get_by_client_key`]).
    #[error("client key {0:?} is taken")]
    ClientKeyTaken(String),
    /// The store's shard leases were made for another shard count, and a
    /// live replica holds one (see [`leases::ShardLeases::prepare`]).
    #[error(
        "the store's shard leases are for {stored} shards, not SCHEDULER_SHARDS={configured}; \
         the count is fixed while any replica runs: stop every replica to change it"
    )]
    ShardCount {
        /// The count the leases were made for.
        stored: u16,
        /// The count this replica is configured with.
        configured: u16,
    },
}

impl From<StoreError> for domain::Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(msg) => domain::Error::StoreUnavailable(msg),
            StoreError::Corrupt(unreadable) => domain::Error::Internal(unreadable.to_string()),
            StoreError::Other(msg) => domain::Error::Internal(msg),
            StoreError::ClientKeyTaken(key) => {
                domain::Error::AlreadyExists(format!("a job with client_key {key:?} exists"))
            }
            other @ StoreError::ShardCount { .. } => domain::Error::Internal(other.to_string()),
        }
    }
}

/// A stored document that cannot be read back as a job: which one, when
/// its id can be read, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The job's id, unless the id itself cannot be read.
    pub id: Option<JobId>,
    /// What cannot be read (the field and its value, or the decoder's error).
    pub reason: String,
}

impl Unreadable {
    /// The document of job `id`, unreadable for `reason`.
    pub fn job(id: JobId, reason: impl Into<String>) -> Self {
        Unreadable {
            id: Some(id),
            reason: reason.into(),
        }
    }

    /// A document whose id cannot be read either.
    pub fn without_id(reason: impl Into<String>) -> Self {
        Unreadable {
            id: None,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(f, "job {id}: {}", self.reason),
            None => write!(f, "a document without a readable id: {}", self.reason),
        }
    }
}

impl std::error::Error for Unreadable {}

impl From<Unreadable> for StoreError {
    fn from(unreadable: Unreadable) -> Self {
        StoreError::Corrupt(unreadable)
    }
}

/// What a scan met: every job it could read, in the scan's order, and each
/// stored document it could not read as a job, which it reports instead of
/// failing (see [`JobDB`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<T> {
    /// The jobs read, in the order the scan promises.
    pub found: Vec<T>,
    /// The documents met that are not readable jobs, each once.
    pub unreadable: Vec<Unreadable>,
}

impl<T> Scan<T> {
    /// A scan that read every document it met (a store that cannot hold an
    /// unreadable one, such as memory).
    pub fn readable(found: Vec<T>) -> Self {
        Scan {
            found,
            unreadable: Vec::new(),
        }
    }

    /// The same scan with each job read turned into `f(job)`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Scan<U> {
        Scan {
            found: self.found.into_iter().map(f).collect(),
            unreadable: self.unreadable,
        }
    }
}

/// Reads of documents, in order: the readable ones are found, the others
/// reported.
impl<T> FromIterator<Result<T, Unreadable>> for Scan<T> {
    fn from_iter<I: IntoIterator<Item = Result<T, Unreadable>>>(reads: I) -> Self {
        let mut scan = Scan::readable(Vec::new());
        for read in reads {
            match read {
                Ok(job) => scan.found.push(job),
                Err(unreadable) => scan.unreadable.push(unreadable),
            }
        }
        scan
    }
}

/// A [`JobDB::claim_many`] that failed for some or all of its firings.
#[derive(Debug, thiserror::Error)]
#[error("{} of the batch's claims failed: {error}", failed.len())]
pub struct ClaimManyError {
    /// Jobs claimed all the same: a store that claims job by job can fail
    /// part of a batch, and these must still be delivered.
    pub claimed: Vec<Job>,
    /// The `(id, fire token)` firings whose claim failed, to be retried.
    pub failed: Vec<(JobId, i64)>,
    /// The first failure.
    #[source]
    pub error: StoreError,
}

impl ClaimManyError {
    /// The whole batch failed (a store that applies it in one step).
    pub fn whole(firings: &[(JobId, i64)], error: StoreError) -> Self {
        ClaimManyError {
            claimed: Vec::new(),
            failed: firings.to_vec(),
            error,
        }
    }
}

/// One page of jobs and the total number of jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsPage {
    /// The readable jobs on the page, ordered by schedule time then id.
    pub jobs: Vec<Job>,
    /// The documents on the page that cannot be read as jobs: the page
    /// holds that many jobs fewer than it would.
    pub unreadable: Vec<Unreadable>,
    /// How many jobs exist in all, readable or not.
    pub total: u64,
}

/// One page of a job's runs, newest first, and how many it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsPage {
    /// The runs on the page, by fired time then fire token, newest first.
    pub runs: Vec<Run>,
    /// How many runs of the job the store holds.
    pub total: u64,
}

/// Which runs [`JobDB::prune_runs`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunRetention {
    /// Runs kept per job, the newest (by fired time).
    pub per_job: u32,
    /// Finished runs that fired before this time are removed even within
    /// `per_job`.
    pub fired_before: DateTime<Utc>,
    /// Most runs removed by one call (a bounded batch).
    pub limit: usize,
}

/// A scheduled job as the timer needs it: what to fire, when, with which token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueJob {
    /// The job to fire.
    pub id: JobId,
    /// When it is due.
    pub schedule_time: DateTime<Utc>,
    /// The fire token it must still carry to be claimed.
    pub fire_token: i64,
}

impl From<&Job> for DueJob {
    /// The due job of a job the timer should hold ([`Job::is_armable`]).
    fn from(job: &Job) -> Self {
        DueJob {
            id: job.id,
            schedule_time: job.spec.schedule_time,
            fire_token: job.fire_token,
        }
    }
}

/// Storage of jobs. Implementations must make each method one atomic step on
/// one job (the batch methods: one atomic step on each of their jobs). Every
/// change but [`JobDB::set_pending_if`] and [`JobDB::clear_pending_many`]
/// increments the job's `version`; the `*_if` methods change a job only while
/// it is still at the version the caller read, so that racing writers
/// (threads or replicas) cannot both win.
///
/// Unreadable documents: a stored document that cannot be read back as a
/// job makes a call about that one job fail with [`StoreError::Corrupt`]
/// ([`JobDB::get`], for instance). A scan of many jobs
/// ([`JobDB::scheduled_before`], [`JobDB::with_pending_events`],
/// [`JobDB::running_before`], and [`JobDB::list`]) does not fail for it: it
/// answers every job it can read and reports each document it cannot, once,
/// in its [`Scan::unreadable`] (or [`JobsPage::unreadable`]), with the job's
/// id when that can be read. A scan still fails when the store does (an
/// outage). A document counts in a scan where its readable fields place it
/// (an unreadable one takes its place in a `limit` or a page); a store that
/// cannot hold an unreadable document (memory) reports none.
#[async_trait]
pub trait JobDB: Send + Sync + 'static {
    /// The shard leases of the replicas sharing this store, or `None` for
    /// a store only one process opens (embedded), whose replica owns every
    /// shard.
    fn leases(&self) -> Option<Arc<dyn ShardLeases>> {
        None
    }

    /// Whether clearing a job's outbox entry is itself a delivery: the
    /// store logs the events it clears for live subscribers (the embedded
    /// store's event log), so a clear must never wait.
    fn clear_delivers(&self) -> bool {
        false
    }

    /// Creates the indexes (and, for SQL stores, the tables) the queries need.
    /// A server that refuses an optional index is reported as an error; the
    /// caller decides whether that is fatal.
    async fn ensure_indexes(&self) -> Result<(), StoreError>;

    /// Stores a new job. A job whose client key another job holds is
    /// refused with [`StoreError::ClientKeyTaken`] (a unique index in every
    /// store, so that racing creations with one key make one job).
    async fn insert(&self, job: &Job) -> Result<(), StoreError>;

    /// The job created with this client key, if any.
    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError>;

    /// The job with this id, if it exists.
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// One page of the jobs `filter` admits, ordered by schedule time then
    /// id, and how many it admits in all; the page's unreadable documents
    /// are reported, not fatal.
    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError>;

    /// How many jobs there are, in all and by facet ([`JobTally::add`] is
    /// the rule), in one pass; unreadable documents count in no facet.
    async fn tally(&self) -> Result<JobTally, StoreError>;

    /// Writes every field of `job` (same id) only if the stored job is still
    /// at `expected_version`, and with it, in the same atomic step, the
    /// records of the runs the change ends (`ended`: [`domain::history::changes`]
    /// of the job read and `job`; a record already stored stays as it is).
    /// Returns whether it was written. The caller sets `job.version`
    /// (normally `expected_version + 1`).
    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError>;

    /// Deletes the job and its run history. Returns whether it existed.
    async fn delete(&self, id: JobId) -> Result<bool, StoreError>;

    /// The recorded (ended) runs of job `id` from the `offset`-th newest
    /// (by fired time, then fire token), at most `limit`, and how many it
    /// has; none for an unknown job. The run in flight is the job's (see
    /// [`runs_of`]).
    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError>;

    /// Removes, in one bounded batch of at most `retention.limit` runs, the
    /// runs beyond the newest `retention.per_job` of their job and the
    /// finished runs fired before `retention.fired_before`. Returns how
    /// many it removed (fewer than the limit: nothing more to remove).
    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError>;

    /// Claims a due job for firing, in one conditional update: a SCHEDULED
    /// job with this fire token becomes RUNNING, owes its run event
    /// (`pending.run`), and moves to the next version (its run in flight,
    /// [`Job::run_in_flight`], is the job's). Returns the claimed job, or
    /// `None` when the job was deleted, rescheduled or claimed by someone
    /// else.
    ///
    /// A recurring job is claimed as [`Job::claimed`] decides (its
    /// occurrence's run, occurrence N+1 and its new fire token), in the same
    /// one conditional write: a store that cannot say it in one statement
    /// reads the job and writes it with `claim_recurring`, conditioned on
    /// the version read, so that racing claimers still win each occurrence
    /// once.
    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError>;

    /// Claims many due jobs at once: each `(id, fire token)` is claimed as by
    /// [`JobDB::claim`]. Returns the jobs claimed (in no particular order);
    /// the others were deleted, rescheduled or claimed by someone else.
    ///
    /// Each job's claim is atomic on its own, so that racing claimers (other
    /// replicas' batches, single claims) still win each job exactly once. A
    /// store may apply the whole batch in one step (one statement or
    /// transaction): that is what makes it cheaper than one claim per job.
    /// On an error the [`ClaimManyError`] lists the firings whose claim
    /// failed, and the jobs claimed all the same. A failed claim may have
    /// been applied all the same, exactly as a single claim whose answer was
    /// lost: that job is RUNNING and owes its run event, which the outbox
    /// relay publishes.
    ///
    /// The default runs one [`JobDB::claim`] per job, all at once: a store
    /// without a batch statement (MongoDB) then still has as many claims in
    /// flight as firings, as before batching. Every claim is awaited even if
    /// one fails, so that none is abandoned half-way, and the jobs that were
    /// claimed are returned with the error so that they fire now rather
    /// than when the relay next runs.
    async fn claim_many(
        &self,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        let claims = futures::future::join_all(
            firings
                .iter()
                .map(|&(id, fire_token)| self.claim(id, fire_token, now)),
        )
        .await;
        let mut claimed = Vec::with_capacity(claims.len());
        let mut failed = Vec::new();
        let mut first_error = None;
        for (&firing, claim) in firings.iter().zip(claims) {
            match claim {
                Ok(job) => claimed.extend(job),
                Err(err) => {
                    failed.push(firing);
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            None => Ok(claimed),
            Some(error) => Err(ClaimManyError {
                claimed,
                failed,
                error,
            }),
        }
    }

    /// Stores an executor's `report` on a RUNNING job (next version), in one
    /// conditional write: only while the job is RUNNING and, when the
    /// report names the firing it reports on (`fire_token`), only while the
    /// job still carries that token, so that a late result of an earlier
    /// firing never finishes a later one. The run's record is written in
    /// the same atomic step ([`domain::history::changes`]). Otherwise nothing
    /// changes, and the outcome says why (see [`ResultOutcome`]). The
    /// report's retry fields are the service's to apply (a FAILED report
    /// with attempts left is not stored here, but through `replace_if`).
    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError>;

    /// Jobs the timer should hold ([`Job::is_armable`]) due before `until`,
    /// earliest first: what the timer arms (SCHEDULED one-shot jobs, and
    /// recurring jobs with an occurrence to fire, even while a run is in
    /// flight: the overlap policy decides when it comes due).
    /// Only jobs read whole are answered, so that the timer never arms a job
    /// whose claim could not read it; the unreadable are reported.
    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError>;

    /// As [`JobDB::scheduled_before`], only the jobs of `shards` (a
    /// replica's share, see [`crate::domain::shard`]). The default reads the
    /// whole window and keeps theirs; PostgreSQL filters in its query.
    async fn scheduled_in(
        &self,
        until: DateTime<Utc>,
        shards: &Shards,
    ) -> Result<Scan<DueJob>, StoreError> {
        let mut due = self.scheduled_before(until).await?;
        if !shards.is_all() {
            due.found.retain(|job| shards.holds(&job.id));
        }
        Ok(due)
    }

    /// The jobs among `ids` that the timer should hold, as due jobs: after
    /// lost claims, whether a job is due under a newer token. One `get`
    /// each unless the store reads them at once (PostgreSQL reads the three
    /// columns of all in one query).
    async fn armable_of(&self, ids: &[JobId]) -> Result<Vec<DueJob>, StoreError> {
        let mut due = Vec::new();
        for id in ids {
            if let Some(job) = self.get(*id).await?
                && job.is_armable()
            {
                due.push(DueJob::from(&job));
            }
        }
        Ok(due)
    }

    /// Jobs that owe events (the outbox), least recently changed first, at
    /// most `limit` documents (readable or not); the unreadable are reported.
    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError>;

    /// Sets the job's owed events to `remaining` if it is still at `version`;
    /// the version is left as it is. Returns whether it was set.
    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError>;

    /// Clears every owed event of each `(id, version)` job that is still at
    /// that version, as [`JobDB::set_pending_if`] with
    /// [`PendingEvents::NONE`] does for one job. Returns the ids of the jobs
    /// cleared (in no particular order); a job that changed meanwhile keeps
    /// what it owes.
    ///
    /// As with [`JobDB::claim_many`], a store may apply the whole batch in
    /// one step, and on an error some jobs may have been cleared all the same.
    ///
    /// The default runs one [`JobDB::set_pending_if`] per job, all at once,
    /// as [`JobDB::claim_many`] does.
    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        let clears = futures::future::join_all(jobs.iter().map(|&(id, version)| async move {
            Ok::<_, StoreError>(
                self.set_pending_if(id, version, PendingEvents::NONE)
                    .await?
                    .then_some(id),
            )
        }))
        .await;
        let mut cleared = Vec::with_capacity(clears.len());
        for clear in clears {
            cleared.extend(clear?);
        }
        Ok(cleared)
    }

    /// RUNNING jobs whose last change is before `cutoff`, least recently
    /// changed first: runs that may be stuck; the unreadable are reported.
    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError>;

    /// Finished one-shot jobs (SUCCEEDED or FAILED) that owe no event and
    /// last changed before `cutoff`, least recently changed first, at most
    /// `limit` documents: what `JOB_RETENTION` retires
    /// ([`Job::retired`]); the unreadable are reported.
    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError>;

    /// Deletes the job and its runs if it is still at `version`: the end
    /// of the delivery of a retired job's delete event, in place of the
    /// clear of its outbox (the embedded store logs the events it owed, as
    /// that clear would). Returns whether it was deleted.
    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError>;
}
