//! Retention: neither the run history nor the finished jobs grow without
//! bound. A job keeps its newest runs (`RUNS_RETENTION`'s count) and no
//! finished run older than its age; with `JOB_RETENTION` set, a one-shot
//! job finished longer ago than that is removed with its runs, after its
//! delete event (`topic-job-delete`, `JobEvents`) is published: the job is
//! retired ([`Job::retired`]: it owes the event in its outbox, in one
//! conditional write), and the delivery of the event deletes it instead
//! of clearing its outbox, so that a crash anywhere leaves the event owed
//! and the job in place until both are done (the event at least once).
//! The duty ([`JobService::run_retention`]) does this every
//! `RETENTION_INTERVAL_SECS`, in bounded batches ([`PRUNE_BATCH`] runs or
//! jobs a statement), never on a request's path.
//!
//! [`Job::retired`]: crate::domain::Job::retired

use tokio_util::sync::CancellationToken;

use tracing::Span;

use super::{JobService, log_unreadable};
use crate::clock::span;
use crate::{domain::Error, duties::every, store::RunRetention};

/// Most runs one pruning statement removes.
pub const PRUNE_BATCH: usize = 1_000;

impl JobService {
    /// Removes the runs the retention no longer keeps, a batch at a time
    /// until a batch comes back short; returns how many it removed.
    pub async fn prune_history(&self) -> Result<u64, Error> {
        let history = self.settings().history;
        let age = span(history.run_max_age);
        let retention = RunRetention {
            per_job: history.runs_per_job,
            fired_before: self.clock().now_ms() - age,
            limit: PRUNE_BATCH,
        };
        let mut removed = 0;
        loop {
            let batch = self.inner.db.prune_runs(retention).await?;
            removed += batch;
            self.inner.metrics.runs_pruned(batch);
            if batch < PRUNE_BATCH as u64 {
                break;
            }
            // Other work on the store goes first between batches.
            tokio::task::yield_now().await;
        }
        if removed > 0 {
            tracing::info!(removed, "old runs removed from the history");
        }
        Ok(removed)
    }

    /// Retires the one-shot jobs finished longer ago than `JOB_RETENTION`
    /// (none when it is unset), a batch at a time, and delivers their
    /// delete events, which deletes them; returns how many were retired.
    pub async fn expire_finished_jobs(&self) -> Result<usize, Error> {
        let Some(retention) = self.settings().history.job_retention else {
            return Ok(0);
        };
        let age = span(retention);
        let mut retired = 0;
        loop {
            let now = self.clock().now_ms();
            let finished = self
                .inner
                .db
                .finished_before(now - age, PRUNE_BATCH)
                .await?;
            log_unreadable("retention", &finished.unreadable);
            let read = finished.found.len();
            let mut batch = Vec::with_capacity(read);
            for job in finished.found {
                let Some(next) = job.retired(now) else {
                    continue;
                };
                // Conditional: a job changed since the read stays.
                if self.write_if(&job, &next, None).await? {
                    batch.push((next, Span::current()));
                }
            }
            retired += batch.len();
            self.deliver(&batch).await;
            if read < PRUNE_BATCH {
                break;
            }
        }
        if retired > 0 {
            tracing::info!(retired, "finished jobs past JOB_RETENTION removed");
        }
        Ok(retired)
    }

    /// The retention duty: prunes the history and removes expired jobs
    /// every retention interval, until shutdown.
    pub async fn run_retention(self, shutdown: CancellationToken) {
        let period = self.settings().history.interval;
        let jumps = self.clock_jumps();
        every("retention", period, shutdown, jumps, move || {
            let service = self.clone();
            async move {
                service.prune_history().await.map_err(|e| e.to_string())?;
                service
                    .expire_finished_jobs()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .await;
    }
}
