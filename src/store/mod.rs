//! Job persistence. The service talks to the [`JobDB`] trait only; MongoDB is
//! the production implementation and [`memory::MemoryJobDB`] serves unit tests
//! and benchmarks.
//!
//! Every state change is a single conditional update on one job, so that two
//! callers (or two replicas) racing on the same job cannot both win.

pub mod embedded;
pub mod memory;
pub mod mongo;
pub mod postgres;
pub mod traced;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{self, Job, JobId, JobStatus, PageRequest, PendingEvents, ResultStatus};

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or timed out.
    #[error("{0}")]
    Unavailable(String),
    /// A stored document could not be read back as a job.
    #[error("corrupt job document: {0}")]
    Corrupt(String),
    /// Any other refusal by the database.
    #[error("{0}")]
    Other(String),
}

impl From<StoreError> for domain::Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(msg) => domain::Error::StoreUnavailable(msg),
            StoreError::Corrupt(msg) | StoreError::Other(msg) => domain::Error::Internal(msg),
        }
    }
}

/// One page of jobs and the total number of jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsPage {
    /// The jobs on the page, ordered by schedule time then id.
    pub jobs: Vec<Job>,
    /// How many jobs exist in all.
    pub total: u64,
}

/// A scheduled job as the timer needs it: what to fire, when, with which token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueJob {
    /// The job to fire.
    pub id: JobId,
    /// When it is due.
    pub schedule_time: DateTime<Utc>,
    /// The fire token it must still carry to be claimed.
    pub scheduled_key: i64,
}

impl From<&Job> for DueJob {
    fn from(job: &Job) -> Self {
        DueJob {
            id: job.id,
            schedule_time: job.spec.schedule_time,
            scheduled_key: job.scheduled_key,
        }
    }
}

/// What happened when a run result was offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultOutcome {
    /// The job was RUNNING and now holds the result.
    Stored,
    /// The job already holds this very result: a duplicate, nothing changed.
    Duplicate,
    /// The job is in another state (scheduled again, or holds the other result).
    Ignored(JobStatus),
    /// No job has this id.
    UnknownJob,
}

/// Storage of jobs. Implementations must make each method one atomic step on
/// one job. Every change but [`JobDB::set_pending_if`] increments the job's
/// `version`; the `*_if` methods change a job only while it is still at the
/// version the caller read, so that racing writers (threads or replicas)
/// cannot both win.
#[async_trait]
pub trait JobDB: Send + Sync + 'static {
    /// Creates the indexes (and, for SQL stores, the tables) the queries need.
    /// A server that refuses an optional index is reported as an error; the
    /// caller decides whether that is fatal.
    async fn ensure_indexes(&self) -> Result<(), StoreError>;

    /// Stores a new job.
    async fn insert(&self, job: &Job) -> Result<(), StoreError>;

    /// The job with this id, if it exists.
    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError>;

    /// One page of all jobs, ordered by schedule time then id, and the total.
    async fn list(&self, page: PageRequest) -> Result<JobsPage, StoreError>;

    /// Writes every field of `job` (same id) only if the stored job is still
    /// at `expected_version`. Returns whether it was written. The caller sets
    /// `job.version` (normally `expected_version + 1`).
    async fn replace_if(&self, job: &Job, expected_version: i64) -> Result<bool, StoreError>;

    /// Deletes the job. Returns whether it existed.
    async fn delete(&self, id: JobId) -> Result<bool, StoreError>;

    /// Claims a due job for firing, in one conditional update: a SCHEDULED
    /// job with this fire token becomes RUNNING, owes its run event
    /// (`pending.run`), and moves to the next version. Returns the claimed
    /// job, or `None` when the job was deleted, rescheduled or claimed by
    /// someone else.
    async fn claim(
        &self,
        id: JobId,
        scheduled_key: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError>;

    /// Stores an executor's result on a RUNNING job (next version).
    async fn store_result(
        &self,
        id: JobId,
        result: ResultStatus,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError>;

    /// SCHEDULED jobs due before `until`, earliest first: what the timer arms.
    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Vec<DueJob>, StoreError>;

    /// Jobs that owe events (the outbox), least recently changed first, at
    /// most `limit`.
    async fn with_pending_events(&self, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Sets the job's owed events to `remaining` if it is still at `version`;
    /// the version is left as it is. Returns whether it was set.
    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError>;

    /// RUNNING jobs whose last change is before `cutoff`: runs that may be stuck.
    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Vec<Job>, StoreError>;
}

/// Decides a result's outcome from the job's current status; shared by the
/// stores so that they agree on what counts as a duplicate.
pub(crate) fn result_outcome(current: JobStatus, result: ResultStatus) -> ResultOutcome {
    if current == result.job_status() {
        ResultOutcome::Duplicate
    } else {
        ResultOutcome::Ignored(current)
    }
}
