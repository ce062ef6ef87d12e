//! An in-memory [`JobDB`]: the reference implementation of the store's rules,
//! used by unit tests and benchmarks. Not durable. It keeps jobs as values,
//! so it never holds an unreadable document and its scans report none.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::RwLock;

use super::{
    DueJob, JobDB, JobsPage, ResultOutcome, Scan, StoreError, refused_result, stored_job,
    stored_time, takes_result,
};
use crate::domain::{
    Job, JobId, JobStatus, PageRequest, PendingEvents, ResultStatus, recurrence::ResultDecision,
};

/// Jobs in a hash map behind one lock; every method is atomic.
#[derive(Debug, Default)]
pub struct MemoryJobDB {
    jobs: RwLock<HashMap<JobId, Job>>,
    /// Unit tests of failure handling: how many more claims of a job fail.
    #[cfg(test)]
    failing_claims: std::sync::Mutex<HashMap<JobId, usize>>,
}

impl MemoryJobDB {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `times` claims of `id` fail as if the database were
    /// unreachable.
    #[cfg(test)]
    pub fn fail_next_claims(&self, id: JobId, times: usize) {
        if let Ok(mut failing) = self.failing_claims.lock() {
            failing.insert(id, times);
        }
    }

    /// Whether this claim of `id` is one set to fail (and counts it).
    #[cfg(test)]
    fn claim_fails(&self, id: JobId) -> bool {
        let Ok(mut failing) = self.failing_claims.lock() else {
            return false;
        };
        match failing.get_mut(&id) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl JobDB for MemoryJobDB {
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let mut jobs = self.jobs.write().await;
        if jobs.contains_key(&job.id) {
            return Err(StoreError::Other(format!("duplicate id {}", job.id)));
        }
        if let Some(key) = &job.client_key
            && jobs.values().any(|j| j.client_key.as_ref() == Some(key))
        {
            return Err(StoreError::ClientKeyTaken(key.clone()));
        }
        jobs.insert(job.id, stored_job(job));
        Ok(())
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        Ok(self.jobs.read().await.get(&id).cloned())
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        let jobs = self.jobs.read().await;
        Ok(jobs
            .values()
            .find(|j| j.client_key.as_deref() == Some(key))
            .cloned())
    }

    async fn list(&self, page: PageRequest) -> Result<JobsPage, StoreError> {
        let jobs = self.jobs.read().await;
        let mut all: Vec<&Job> = jobs.values().collect();
        all.sort_by_key(|j| (j.spec.schedule_time, j.id));
        let offset = usize::try_from(page.offset()).unwrap_or(usize::MAX);
        let size = usize::try_from(page.size).unwrap_or(usize::MAX);
        Ok(JobsPage {
            jobs: all.into_iter().skip(offset).take(size).cloned().collect(),
            unreadable: Vec::new(),
            total: jobs.len() as u64,
        })
    }

    async fn replace_if(&self, job: &Job, expected_version: i64) -> Result<bool, StoreError> {
        let mut jobs = self.jobs.write().await;
        match jobs.get_mut(&job.id) {
            Some(current) if current.version == expected_version => {
                *current = stored_job(job);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        Ok(self.jobs.write().await.remove(&id).is_some())
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        #[cfg(test)]
        if self.claim_fails(id) {
            return Err(StoreError::Unavailable("claim set to fail".into()));
        }
        let mut jobs = self.jobs.write().await;
        let Some(job) = jobs.get_mut(&id) else {
            return Ok(None);
        };
        let claimed = job.claimed(fire_token, stored_time(now));
        if let Some(claimed) = &claimed {
            *job = claimed.clone();
        }
        Ok(claimed)
    }

    async fn store_result(
        &self,
        id: JobId,
        result: ResultStatus,
        fire_token: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        let mut jobs = self.jobs.write().await;
        let Some(job) = jobs.get_mut(&id) else {
            return Ok(ResultOutcome::UnknownJob);
        };
        match job.take_result(result, fire_token, stored_time(now)) {
            Some(ResultDecision::Take(taken)) => {
                *job = *taken;
                return Ok(ResultOutcome::Stored);
            }
            Some(refused) => return Ok(ResultOutcome::refused(refused)),
            None => {}
        }
        if !takes_result(job.status, job.fire_token, fire_token) {
            return Ok(refused_result(
                job.status,
                job.fire_token,
                result,
                fire_token,
            ));
        }
        *job = job.finished(result, stored_time(now));
        Ok(ResultOutcome::Stored)
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        let jobs = self.jobs.read().await;
        let mut due: Vec<DueJob> = jobs
            .values()
            .filter(|j| j.is_armable() && j.spec.schedule_time < until)
            .map(DueJob::from)
            .collect();
        due.sort_by_key(|d| (d.schedule_time, d.id));
        Ok(Scan::readable(due))
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        let jobs = self.jobs.read().await;
        let mut owing: Vec<Job> = jobs.values().filter(|j| j.pending.any()).cloned().collect();
        owing.sort_by_key(|j| (j.updated_at, j.id));
        owing.truncate(limit);
        Ok(Scan::readable(owing))
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        let mut jobs = self.jobs.write().await;
        match jobs.get_mut(&id) {
            Some(job) if job.version == version => {
                job.pending = remaining;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let jobs = self.jobs.read().await;
        let mut stuck: Vec<Job> = jobs
            .values()
            .filter(|j| j.status == JobStatus::Running && j.updated_at < cutoff)
            .cloned()
            .collect();
        stuck.sort_by_key(|j| (j.updated_at, j.id));
        Ok(Scan::readable(stuck))
    }
}
