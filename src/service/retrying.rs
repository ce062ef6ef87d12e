//! What a failed run leads to: the next attempt or the end of its
//! attempts.
//!
//! A FAILED report is decided by the domain ([`Job::take_report`]) under
//! the job's retry policy or the service's default, and written with the
//! same conditional write as every other change (only if the job is still
//! at the version read): the retry and the result are one write, so a
//! crash cannot lose the retry, and of two replicas applying the same
//! report one writes and the other finds the job changed and reads it
//! again (it is then no longer RUNNING under that firing, and the report
//! is a duplicate or stale). A one-shot job is retried as a whole; a
//! recurring job retries the failed occurrence before its next one.

use super::{JobService, job_span};
use crate::{
    domain::{
        Error, Job, JobId,
        report::{ResultOutcome, RunReport},
    },
    telemetry::metrics::FailReason,
};

/// Reads and conditional writes a failure is tried with before the call
/// is refused as ABORTED (each lost write means the job changed meanwhile).
const WRITE_ATTEMPTS: usize = 8;

impl JobService {
    /// Stores a FAILED `report` on job `id`: on a one-shot job, the retry
    /// or the end the domain decides, armed if it is a retry.
    pub(super) async fn take_failure(
        &self,
        id: JobId,
        report: &RunReport,
    ) -> Result<ResultOutcome, Error> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(job) = self.inner.db.get(id).await? else {
                return Ok(ResultOutcome::UnknownJob);
            };
            let now = self.clock().now_ms();
            let taken = match job.take_report(report, &self.inner.settings.retry, now) {
                Ok(taken) => taken,
                Err(refused) => return Ok(ResultOutcome::refused(refused)),
            };
            if self.write_if(&job, &taken, Some(report)).await? {
                self.after_failure(&job, taken, report).await;
                return Ok(ResultOutcome::Stored);
            }
        }
        Err(Error::Aborted(id))
    }

    /// Runs a finished one-shot job again now, with fresh attempts (see
    /// [`Job::rerun`]); its update event says so.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn rerun(&self, id: JobId) -> Result<Job, Error> {
        let job = self
            .change(id, |job, service| job.rerun(service.clock().now_ms()))
            .await?;
        tracing::info!("job rerun");
        Ok(job)
    }

    /// Counts and logs a stored failure, arms its retry, and delivers what
    /// it owes (the dead-letter event of a run that failed for good).
    async fn after_failure(&self, before: &Job, job: Job, report: &RunReport) {
        let span = job_span("result", &job);
        span.in_scope(|| self.count_failure(before, &job, report));
        if job.pending.any() {
            self.deliver(&[(job, span)]).await;
        }
    }

    /// Counts and logs a stored failure (`before`: the job as read), and
    /// arms its retry.
    fn count_failure(&self, before: &Job, job: &Job, report: &RunReport) {
        if job.attempt() > before.attempt() {
            self.inner.metrics.retry_scheduled();
            tracing::info!(
                attempt = job.attempt(),
                retry_at = %job.spec.schedule_time,
                error = report.error.as_deref(),
                "run failed; next attempt scheduled"
            );
            self.arm(job);
        } else {
            self.inner.metrics.job_failed(FailReason::Result);
            self.count_dead_letter(before, job);
            tracing::info!(
                attempt = job.attempt(),
                error = report.error.as_deref(),
                "run failed; no attempt left"
            );
        }
    }

    /// Counts a dead letter when `after` (what `before` became) newly owes
    /// one: its attempts ended with a failure.
    pub(super) fn count_dead_letter(&self, before: &Job, after: &Job) {
        if after.pending.dead_letter && !before.pending.dead_letter {
            self.inner.metrics.job_dead_lettered();
        }
    }
}
