//! An in-memory [`JobDB`]: the reference implementation of the store's rules,
//! used by unit tests and benchmarks. Not durable. It keeps jobs as values,
//! so it never holds an unreadable document and its scans report none.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::RwLock;

use super::{
    DueJob, JobDB, JobsPage, RunRetention, RunsPage, Scan, ShardLeases, StoreError,
    leases::MemoryLeases, pruned, record_runs, runs_page, stored_job, stored_time,
};
use crate::domain::{
    Job, JobFilter, JobId, JobStatus, JobTally, PageRequest, PendingEvents,
    history::{self, Run},
    report::{ResultOutcome, RunReport},
};

/// The jobs and their runs, changed together under one lock.
#[derive(Debug, Default)]
struct State {
    jobs: HashMap<JobId, Job>,
    runs: HashMap<JobId, Vec<Run>>,
}

impl State {
    /// Sets the owed events of job `id` to `remaining` if it is still at
    /// `version`; whether it was set.
    fn set_pending_if(&mut self, id: JobId, version: i64, remaining: PendingEvents) -> bool {
        match self.jobs.get_mut(&id) {
            Some(job) if job.version == version => {
                job.pending = remaining;
                true
            }
            _ => false,
        }
    }

    fn record(&mut self, id: JobId, ended: &[Run]) {
        if !ended.is_empty() {
            record_runs(self.runs.entry(id).or_default(), ended);
        }
    }
}

/// Jobs and runs in hash maps behind one lock; every method is atomic.
#[derive(Debug, Default)]
pub struct MemoryJobDB {
    state: RwLock<State>,
    /// The replicas sharing this store in one process (tests).
    leases: Arc<MemoryLeases>,
    /// Unit tests of failure handling: how many more claims of a job fail.
    #[cfg(test)]
    failing_claims: std::sync::Mutex<HashMap<JobId, usize>>,
    /// Unit tests of grouped clears: the clears made, and whether they wait.
    #[cfg(test)]
    clears: ClearsSeen,
}

/// The `clear_pending_many` calls a unit test sees, and a switch that
/// holds them at their start until released.
#[cfg(test)]
#[derive(Debug)]
struct ClearsSeen {
    made: std::sync::atomic::AtomicUsize,
    held: tokio::sync::watch::Sender<bool>,
}

#[cfg(test)]
impl Default for ClearsSeen {
    fn default() -> Self {
        ClearsSeen {
            made: std::sync::atomic::AtomicUsize::new(0),
            held: tokio::sync::watch::Sender::new(false),
        }
    }
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

    /// Makes every `clear_pending_many` wait at its start (`true`) until
    /// released (`false`).
    #[cfg(test)]
    pub fn hold_clears(&self, held: bool) {
        self.clears.held.send_replace(held);
    }

    /// The `clear_pending_many` calls made so far (held ones included).
    #[cfg(test)]
    pub fn clears_made(&self) -> usize {
        self.clears.made.load(std::sync::atomic::Ordering::SeqCst)
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
    fn leases(&self) -> Option<Arc<dyn ShardLeases>> {
        Some(self.leases.clone())
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let mut state = self.state.write().await;
        let jobs = &mut state.jobs;
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
        Ok(self.state.read().await.jobs.get(&id).cloned())
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        let state = self.state.read().await;
        Ok(state
            .jobs
            .values()
            .find(|j| j.client_key.as_deref() == Some(key))
            .cloned())
    }

    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError> {
        let state = self.state.read().await;
        let mut all: Vec<&Job> = state.jobs.values().filter(|j| filter.admits(j)).collect();
        all.sort_by_key(|j| (j.spec.schedule_time, j.id));
        let offset = usize::try_from(page.offset()).unwrap_or(usize::MAX);
        let size = usize::try_from(page.size).unwrap_or(usize::MAX);
        Ok(JobsPage {
            total: all.len() as u64,
            jobs: all.into_iter().skip(offset).take(size).cloned().collect(),
            unreadable: Vec::new(),
        })
    }

    async fn tally(&self) -> Result<JobTally, StoreError> {
        Ok(JobTally::of(self.state.read().await.jobs.values()))
    }

    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError> {
        let mut state = self.state.write().await;
        match state.jobs.get_mut(&job.id) {
            Some(current) if current.version == expected_version => {
                *current = stored_job(job);
                state.record(job.id, ended);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let mut state = self.state.write().await;
        state.runs.remove(&id);
        Ok(state.jobs.remove(&id).is_some())
    }

    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError> {
        let state = self.state.read().await;
        let runs = state.runs.get(&id).cloned().unwrap_or_default();
        Ok(runs_page(runs, offset, limit))
    }

    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError> {
        let mut state = self.state.write().await;
        let mut removed = 0;
        for runs in state.runs.values_mut() {
            let left = retention.limit - removed;
            let doomed: Vec<i64> = pruned(runs.clone(), &retention)
                .into_iter()
                .take(left)
                .map(|run| run.fire_token)
                .collect();
            runs.retain(|run| !doomed.contains(&run.fire_token));
            removed += doomed.len();
            if removed == retention.limit {
                break;
            }
        }
        state.runs.retain(|_, runs| !runs.is_empty());
        Ok(removed as u64)
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
        let now = stored_time(now);
        let mut state = self.state.write().await;
        let Some(job) = state.jobs.get_mut(&id) else {
            return Ok(None);
        };
        let Some(claimed) = job.claimed(fire_token, now) else {
            return Ok(None);
        };
        let runs = history::changes(job, &claimed, None, now);
        *job = claimed.clone();
        state.record(id, &runs);
        Ok(Some(claimed))
    }

    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        let now = stored_time(now);
        let (result, fire_token) = (report.status, report.fire_token);
        let mut state = self.state.write().await;
        let Some(job) = state.jobs.get_mut(&id) else {
            return Ok(ResultOutcome::UnknownJob);
        };
        let taken = match job.result_taken(result, fire_token, now) {
            Ok(taken) => taken,
            Err(refused) => return Ok(ResultOutcome::refused(refused)),
        };
        let runs = history::changes(job, &taken, Some(report), now);
        *job = taken;
        state.record(id, &runs);
        Ok(ResultOutcome::Stored)
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        let state = self.state.read().await;
        let mut due: Vec<DueJob> = state
            .jobs
            .values()
            .filter(|j| j.is_armable() && j.spec.schedule_time < until)
            .map(DueJob::from)
            .collect();
        due.sort_by_key(|d| (d.schedule_time, d.id));
        Ok(Scan::readable(due))
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        let state = self.state.read().await;
        let mut owing: Vec<Job> = state
            .jobs
            .values()
            .filter(|j| j.pending.any())
            .cloned()
            .collect();
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
        Ok(self
            .state
            .write()
            .await
            .set_pending_if(id, version, remaining))
    }

    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        #[cfg(test)]
        {
            self.clears
                .made
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut held = self.clears.held.subscribe();
            // (The sender lives as long as the store.)
            let _ = held.wait_for(|held| !*held).await;
        }
        let mut state = self.state.write().await;
        Ok(jobs
            .iter()
            .filter(|(id, version)| state.set_pending_if(*id, *version, PendingEvents::NONE))
            .map(|(id, _)| *id)
            .collect())
    }

    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        let state = self.state.read().await;
        let mut finished: Vec<Job> = state
            .jobs
            .values()
            .filter(|j| j.updated_at < cutoff && j.is_retirable())
            .cloned()
            .collect();
        finished.sort_by_key(|j| (j.updated_at, j.id));
        finished.truncate(limit);
        Ok(Scan::readable(finished))
    }

    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError> {
        let mut state = self.state.write().await;
        if state.jobs.get(&id).is_none_or(|job| job.version != version) {
            return Ok(false);
        }
        state.runs.remove(&id);
        Ok(state.jobs.remove(&id).is_some())
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let state = self.state.read().await;
        let mut stuck: Vec<Job> = state
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running && j.updated_at < cutoff)
            .cloned()
            .collect();
        stuck.sort_by_key(|j| (j.updated_at, j.id));
        Ok(Scan::readable(stuck))
    }
}
