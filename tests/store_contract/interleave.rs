//! A store that lets a test force the order of two racing writers: before a
//! chosen method runs, it runs the test's hook (the other writer's move) to
//! its end. A race that is a matter of microseconds in production becomes
//! one exact interleaving, on every store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use scheduler_service::{
    domain::{
        Job, JobFilter, JobId, JobTally, PageRequest, PendingEvents,
        history::Run,
        report::{ResultOutcome, RunReport},
    },
    store::{ClaimManyError, DueJob, JobDB, JobsPage, RunRetention, RunsPage, Scan, StoreError},
};

/// The methods a hook can run before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// [`JobDB::replace_if`]: an update's (or a misfire's) conditional write.
    ReplaceIf,
    /// [`JobDB::claim_many`]: a firing batch's claim.
    ClaimMany,
}

/// The other writer's move, run before the method it was set for.
pub type Hook = Box<dyn FnMut() -> BoxFuture<'static, ()> + Send>;

/// Wraps a store; runs the hook set for a method before each call of it.
pub struct Interleaved {
    inner: Arc<dyn JobDB>,
    hook: Mutex<Option<(Before, Hook)>>,
}

impl Interleaved {
    /// `inner`, with no hook yet.
    pub fn new(inner: Arc<dyn JobDB>) -> Arc<Self> {
        Arc::new(Interleaved {
            inner,
            hook: Mutex::new(None),
        })
    }

    /// Runs `hook` before every later call of `method`.
    pub fn before(&self, method: Before, hook: Hook) {
        *self.hook.lock().expect("hook lock") = Some((method, hook));
    }

    /// Runs the hook, if one is set for `method`.
    async fn interleave(&self, method: Before) {
        let next = {
            let mut hook = self.hook.lock().expect("hook lock");
            match hook.as_mut() {
                Some((set_for, hook)) if *set_for == method => Some(hook()),
                _ => None,
            }
        };
        if let Some(next) = next {
            next.await;
        }
    }
}

#[async_trait]
impl JobDB for Interleaved {
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.inner.ensure_indexes().await
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        self.inner.insert(job).await
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        self.inner.get_by_client_key(key).await
    }

    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError> {
        self.inner.list(page, filter).await
    }

    async fn tally(&self) -> Result<JobTally, StoreError> {
        self.inner.tally().await
    }

    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError> {
        self.interleave(Before::ReplaceIf).await;
        self.inner.replace_if(job, expected_version, ended).await
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }

    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError> {
        self.inner.runs(id, offset, limit).await
    }

    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError> {
        self.inner.prune_runs(retention).await
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        self.inner.claim(id, fire_token, now).await
    }

    async fn claim_many(
        &self,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        self.interleave(Before::ClaimMany).await;
        self.inner.claim_many(firings, now).await
    }

    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        self.inner.store_result(id, report, now).await
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        self.inner.scheduled_before(until).await
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        self.inner.with_pending_events(limit).await
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        self.inner.set_pending_if(id, version, remaining).await
    }

    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        self.inner.finished_before(cutoff, limit).await
    }

    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError> {
        self.inner.delete_if(id, version).await
    }

    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        self.inner.clear_pending_many(jobs).await
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        self.inner.running_before(cutoff).await
    }
}
