//! Retention: the run history does not grow without bound. A job keeps
//! its newest runs (`RUNS_RETENTION`'s count) and no finished run older
//! than its age; the duty ([`JobService::run_retention`]) removes the rest
//! in bounded batches ([`PRUNE_BATCH`] runs a statement), never on a
//! request's path, every `RETENTION_INTERVAL_SECS`.

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;

use super::JobService;
use crate::{domain::Error, duties::every, store::RunRetention};

/// Most runs one pruning statement removes.
pub const PRUNE_BATCH: usize = 1_000;

impl JobService {
    /// Removes the runs the retention no longer keeps, a batch at a time
    /// until a batch comes back short; returns how many it removed.
    pub async fn prune_history(&self) -> Result<u64, Error> {
        let history = self.settings().history;
        let age = TimeDelta::from_std(history.run_max_age).unwrap_or(TimeDelta::MAX);
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

    /// The retention duty: prunes the history every retention interval,
    /// until shutdown.
    pub async fn run_retention(self, shutdown: CancellationToken) {
        let period = self.settings().history.interval;
        let jumps = self.clock_jumps();
        every("retention", period, shutdown, jumps, move || {
            let service = self.clone();
            async move {
                service.prune_history().await.map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .await;
    }
}
