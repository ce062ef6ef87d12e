//! Run timeouts: a job RUNNING for longer than `SCHEDULER_RUN_TIMEOUT_SECS`
//! without a result (its executor crashed, or the result was lost) is
//! failed or fired again, per `SCHEDULER_RUN_TIMEOUT_POLICY`, with an update
//! event. The sweeper ([`JobService::run_timeout_sweeper`]) looks a few
//! times per timeout.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{JobService, job_span};
use crate::{
    config::RunTimeoutPolicy,
    domain::{Error, JobStatus, now},
    duties::every,
    telemetry::metrics::FailReason,
};

impl JobService {
    /// Applies the run-timeout policy to jobs RUNNING for longer than the run
    /// timeout. Returns how many jobs it changed.
    pub async fn expire_stuck_runs(&self) -> Result<usize, Error> {
        let timeout = chrono::Duration::from_std(self.settings().run_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let stuck = self.inner.db.running_before(now() - timeout).await?;
        let mut changed = 0;
        for job in stuck {
            let next = match self.settings().run_timeout_policy {
                RunTimeoutPolicy::Fail => job.with_status(JobStatus::Failed, now()),
                RunTimeoutPolicy::Retry => job.retried(now()),
            };
            // Conditional on the version: a result that arrived meanwhile wins.
            if !self.inner.db.replace_if(&next, job.version).await? {
                continue;
            }
            if next.status == JobStatus::Failed {
                self.inner.metrics.job_failed(FailReason::RunTimeout);
            }
            let span = job_span("run timed out", &next);
            span.in_scope(|| tracing::warn!(status = ?next.status, "run timed out"));
            self.arm(&next);
            self.deliver(&[(next, span)]).await;
            changed += 1;
        }
        Ok(changed)
    }

    /// Expires stuck runs a few times per run timeout, until shutdown.
    pub async fn run_timeout_sweeper(self, shutdown: CancellationToken) {
        let period = (self.settings().run_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        every("run-timeout sweeper", period, shutdown, move || {
            let service = self.clone();
            async move {
                service
                    .expire_stuck_runs()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        broker::EventKind,
        config::SchedulerSettings,
        service::testing::{RecordingProducer, service_with, spec},
    };

    #[tokio::test]
    async fn stuck_runs_fail_or_retry_by_policy() {
        for (policy, expected) in [
            (RunTimeoutPolicy::Fail, JobStatus::Failed),
            (RunTimeoutPolicy::Retry, JobStatus::Scheduled),
        ] {
            let producer = Arc::new(RecordingProducer::default());
            let settings = SchedulerSettings {
                run_timeout: Duration::from_millis(50),
                run_timeout_policy: policy,
                ..SchedulerSettings::default()
            };
            let (svc, mut rx) = service_with(settings, producer.clone());
            let job = svc.create(spec(-1)).await.unwrap();
            let firing = rx.recv().await.unwrap();
            svc.fire_batch(vec![firing], &CancellationToken::new())
                .await;
            assert_eq!(svc.expire_stuck_runs().await.unwrap(), 0, "not yet stuck");
            tokio::time::sleep(Duration::from_millis(80)).await;
            assert_eq!(svc.expire_stuck_runs().await.unwrap(), 1);
            let after = svc.get(job.id).await.unwrap();
            assert_eq!(after.status, expected);
            assert!(
                producer
                    .events()
                    .contains(&(EventKind::Update, job.id, expected))
            );
            if policy == RunTimeoutPolicy::Retry {
                assert_ne!(after.fire_token, firing.fire_token);
                let refired = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("the retried job fires again")
                    .expect("timer running");
                assert_eq!((refired.id, refired.fire_token), (job.id, after.fire_token));
            }
        }
    }
}
