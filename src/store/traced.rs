//! A [`JobDB`] decorator that puts every store call in its own span, so that
//! traces show each database round trip, whichever store is behind it, and
//! counts the calls that fail (`scheduler_store_errors_total`), so that an
//! operator sees a database outage, and a test can prove that work met one.
//! A scan that meets unreadable documents succeeds, but each of them counts
//! as a failure of kind `corrupt`, so that an operator sees them too.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

use tracing::{Instrument, Span};

use super::{
    ClaimManyError, DueJob, JobDB, JobsPage, RunRetention, RunsPage, Scan, ShardLeases, StoreError,
    Unreadable,
};
use crate::{
    domain::{
        Job, JobFilter, JobId, JobTally, PageRequest, PendingEvents,
        history::Run,
        report::{ResultOutcome, RunReport},
        shard::Shards,
    },
    telemetry::metrics::Metrics,
};

/// Wraps a store; every call is a span named `db <operation>`, and every
/// failed call is counted by operation and kind.
pub struct TracedJobDB<D> {
    inner: D,
    system: &'static str,
    metrics: Arc<Metrics>,
}

impl<D: JobDB> TracedJobDB<D> {
    /// Traces the calls to `inner`, a store of kind `system` (`mongodb`,
    /// `postgresql`, `redb`), as OpenTelemetry's `db.system` names them,
    /// counting failures into `metrics`.
    pub fn new(inner: D, system: &'static str, metrics: Arc<Metrics>) -> Self {
        TracedJobDB {
            inner,
            system,
            metrics,
        }
    }

    /// A call made on behalf of a request about one job (or none): a span at
    /// info level, joined to the request's trace.
    async fn request<T, E: Failure>(
        &self,
        operation: &'static str,
        job_id: Option<JobId>,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = tracing::info_span!(
            "db",
            otel.name = format_args!("db {operation}"),
            otel.kind = "client",
            db.system = self.system,
            db.operation = operation,
            job_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if let Some(id) = job_id {
            span.record("job_id", tracing::field::display(id));
        }
        self.observed(operation, span, call).await
    }

    /// A call made outside any request (the window loader, the outbox
    /// relay, the stuck-run sweeper, the firings' claims and outbox clears,
    /// each for a batch of jobs): its span is at debug level, so that a
    /// one-span trace per poll or firing is not exported under the default
    /// `info` filter.
    async fn poll<T, E: Failure>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = tracing::debug_span!(
            "db",
            otel.name = format_args!("db {operation}"),
            otel.kind = "client",
            db.system = self.system,
            db.operation = operation,
            otel.status_code = tracing::field::Empty,
        );
        self.observed(operation, span, call).await
    }

    /// Runs `call` inside `span`; if it fails, marks the span as an error and
    /// counts the failure.
    async fn observed<T, E: Failure>(
        &self,
        operation: &'static str,
        span: Span,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let result = call.instrument(span.clone()).await;
        if let Err(err) = &result {
            span.record("otel.status_code", "ERROR");
            tracing::debug!(parent: &span, error = %err, "store call failed");
            self.metrics.store_failed(operation, err.kind());
        }
        result
    }

    /// Counts each document that the scan `operation` could not read, as
    /// one failure of kind `corrupt` each.
    fn count_unreadable(&self, operation: &'static str, unreadable: &[Unreadable]) {
        for _ in unreadable {
            self.metrics.store_failed(operation, CORRUPT);
        }
    }
}

/// The failure kind of a document that cannot be read as a job.
const CORRUPT: &str = "corrupt";

/// A store call's error, classified for the failure count.
trait Failure: std::fmt::Display {
    /// `unavailable`, `corrupt` or `other`.
    fn kind(&self) -> &'static str;
}

impl Failure for StoreError {
    fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt(_) => CORRUPT,
            StoreError::Other(_) | StoreError::ShardCount { .. } => "other",
            StoreError::ClientKeyTaken(_) => "client_key_taken",
        }
    }
}

impl Failure for ClaimManyError {
    fn kind(&self) -> &'static str {
        self.error.kind()
    }
}

#[async_trait]
impl<D: JobDB> JobDB for TracedJobDB<D> {
    fn leases(&self) -> Option<Arc<dyn ShardLeases>> {
        self.inner.leases()
    }

    fn clear_delivers(&self) -> bool {
        self.inner.clear_delivers()
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.request("ensure_indexes", None, self.inner.ensure_indexes())
            .await
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        self.request("insert", Some(job.id), self.inner.insert(job))
            .await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.request("get", Some(id), self.inner.get(id)).await
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        self.request("get_by_client_key", None, self.inner.get_by_client_key(key))
            .await
    }

    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError> {
        let listed = self
            .request("list", None, self.inner.list(page, filter))
            .await?;
        self.count_unreadable("list", &listed.unreadable);
        Ok(listed)
    }

    async fn tally(&self) -> Result<JobTally, StoreError> {
        self.request("tally", None, self.inner.tally()).await
    }

    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError> {
        self.request(
            "replace_if",
            Some(job.id),
            self.inner.replace_if(job, expected_version, ended),
        )
        .await
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.request("delete", Some(id), self.inner.delete(id))
            .await
    }

    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError> {
        self.request("runs", Some(id), self.inner.runs(id, offset, limit))
            .await
    }

    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError> {
        self.poll("prune_runs", self.inner.prune_runs(retention))
            .await
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        // A firing's claim runs before the job (and so its trace) is known: a
        // root span per firing would flood the exporter, so it is at debug
        // level like the polls; the firing's own span follows the claim.
        self.poll("claim", self.inner.claim(id, fire_token, now))
            .await
    }

    async fn claim_many(
        &self,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        // A batch of many jobs' firings: no one trace to join (see `claim`).
        self.poll("claim_many", self.inner.claim_many(firings, now))
            .await
    }

    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        self.request(
            "store_result",
            Some(id),
            self.inner.store_result(id, report, now),
        )
        .await
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        let due = self
            .poll("scheduled_before", self.inner.scheduled_before(until))
            .await?;
        self.count_unreadable("scheduled_before", &due.unreadable);
        Ok(due)
    }

    async fn scheduled_in(
        &self,
        until: DateTime<Utc>,
        shards: &Shards,
    ) -> Result<Scan<DueJob>, StoreError> {
        let due = self
            .poll("scheduled_in", self.inner.scheduled_in(until, shards))
            .await?;
        self.count_unreadable("scheduled_in", &due.unreadable);
        Ok(due)
    }

    async fn armable_of(&self, ids: &[JobId]) -> Result<Vec<DueJob>, StoreError> {
        self.poll("armable_of", self.inner.armable_of(ids)).await
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        let owing = self
            .poll("with_pending_events", self.inner.with_pending_events(limit))
            .await?;
        self.count_unreadable("with_pending_events", &owing.unreadable);
        Ok(owing)
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        self.request(
            "set_pending_if",
            Some(id),
            self.inner.set_pending_if(id, version, remaining),
        )
        .await
    }

    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        self.poll("clear_pending_many", self.inner.clear_pending_many(jobs))
            .await
    }

    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        let finished = self
            .poll("finished_before", self.inner.finished_before(cutoff, limit))
            .await?;
        self.count_unreadable("finished_before", &finished.unreadable);
        Ok(finished)
    }

    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError> {
        self.request("delete_if", Some(id), self.inner.delete_if(id, version))
            .await
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let stuck = self
            .poll("running_before", self.inner.running_before(cutoff))
            .await?;
        self.count_unreadable("running_before", &stuck.unreadable);
        Ok(stuck)
    }
}
