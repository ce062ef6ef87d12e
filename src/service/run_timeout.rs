//! Run timeouts: a job RUNNING for longer than `SCHEDULER_RUN_TIMEOUT_SECS`
//! without a result (its executor crashed, or the result was lost) is
//! failed or fired again, per `SCHEDULER_RUN_TIMEOUT_POLICY`, with an update
//! event. Under `fail`, a timed-out run is a failed attempt: a one-shot job
//! with attempts left under its retry policy is scheduled again after the
//! backoff (see [`super::retrying`]), else it is FAILED. The sweeper ([`JobService::run_timeout_sweeper`]) looks a few
//! times per timeout.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{JobService, job_span, log_unreadable};
use crate::clock::span;
use crate::{
    config::RunTimeoutPolicy,
    domain::{
        Error, Job, JobStatus, PendingEvents, ResultStatus, report::RunReport, retry::RetryPolicy,
    },
    duties::every,
    telemetry::metrics::FailReason,
};

impl JobService {
    /// Applies the run-timeout policy to jobs RUNNING for longer than the run
    /// timeout. Returns how many jobs it changed. A stored job that cannot be
    /// read is logged and left as it is; the others time out.
    pub async fn expire_stuck_runs(&self) -> Result<usize, Error> {
        let timeout = span(self.settings().run_timeout);
        let now = self.clock().now_ms();
        let stuck = self.inner.db.running_before(now - timeout).await?;
        log_unreadable("run-timeout sweeper", &stuck.unreadable);
        let mut changed = 0;
        for job in stuck.found {
            let next = match (job.recurrence.is_some(), self.settings().run_timeout_policy) {
                // A recurring job's run that timed out failed: retried
                // under its policy, or the job goes on with its next
                // occurrence.
                (true, _) => match job.take_report(&timeout_report(timeout), self.retry(), now) {
                    Ok(failed) => failed,
                    Err(_) => continue,
                },
                (false, RunTimeoutPolicy::Fail) => self.timed_out(&job, timeout, now),
                (false, RunTimeoutPolicy::Retry) => job.retried(now),
            };
            // Conditional on the version: a result that arrived meanwhile wins.
            if !self.write_if(&job, &next, None).await? {
                continue;
            }
            self.count_dead_letter(&job, &next);
            match next.status {
                JobStatus::Failed => self.inner.metrics.job_failed(FailReason::RunTimeout),
                JobStatus::Scheduled if next.attempt() > job.attempt() => {
                    self.inner.metrics.retry_scheduled();
                }
                _ => {}
            }
            let span = job_span("run timed out", &next);
            span.in_scope(|| tracing::warn!(status = ?next.status, "run timed out"));
            self.arm(&next);
            self.deliver(&[(next, span)]).await;
            changed += 1;
        }
        Ok(changed)
    }

    /// A one-shot `job` whose run timed out, as a failed attempt: its retry,
    /// or FAILED; owing an update event either way.
    fn timed_out(&self, job: &Job, timeout: chrono::Duration, now: DateTime<Utc>) -> Job {
        let next = job
            .take_report(&timeout_report(timeout), self.retry(), now)
            .unwrap_or_else(|_| job.with_status(JobStatus::Failed, now));
        Job {
            pending: PendingEvents {
                update: true,
                ..next.pending
            },
            ..next
        }
    }

    /// The service's default retry policy.
    fn retry(&self) -> &RetryPolicy {
        &self.settings().retry
    }

    /// Expires stuck runs a few times per run timeout, until shutdown.
    pub async fn run_timeout_sweeper(self, shutdown: CancellationToken) {
        let period = (self.settings().run_timeout / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        let jumps = self.clock_jumps();
        every("run-timeout sweeper", period, shutdown, jumps, move || {
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

/// The failure a run timeout stands for: no result within `timeout`.
fn timeout_report(timeout: chrono::Duration) -> RunReport {
    RunReport {
        error: Some(format!(
            "no result within the run timeout ({} s)",
            timeout.num_seconds()
        )),
        ..RunReport::of(ResultStatus::Failed, None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        broker::EventKind,
        clock::Clock,
        config::SchedulerSettings,
        domain::retry::RetryPolicy,
        service::{
            firing::BatchPermits,
            testing::{RecordingProducer, TestService},
        },
        timer::Firing,
    };

    /// A service with a 600 s run timeout and `settings`' other values,
    /// its recording producer, and a job it fired (under that firing).
    async fn fired(
        settings: SchedulerSettings,
    ) -> (TestService, Arc<RecordingProducer>, Job, Firing) {
        let producer = Arc::new(RecordingProducer::default());
        let settings = SchedulerSettings {
            run_timeout: Duration::from_secs(600),
            ..settings
        };
        let mut t = TestService::new(settings, producer.clone());
        let job = t.svc.create(t.spec(-1)).await.unwrap();
        let firing = t.next_firings(1).await[0];
        t.svc
            .fire_batch(
                vec![firing],
                BatchPermits::default(),
                &CancellationToken::new(),
            )
            .await;
        (t, producer, job, firing)
    }

    #[tokio::test]
    async fn stuck_runs_fail_or_retry_by_policy() {
        for (policy, expected) in [
            (RunTimeoutPolicy::Fail, JobStatus::Failed),
            (RunTimeoutPolicy::Retry, JobStatus::Scheduled),
        ] {
            let settings = SchedulerSettings {
                run_timeout_policy: policy,
                ..SchedulerSettings::default()
            };
            let (mut t, producer, job, firing) = fired(settings).await;
            let svc = t.svc.clone();
            t.advance_ms(600_000);
            assert_eq!(svc.expire_stuck_runs().await.unwrap(), 0, "not yet stuck");
            // The clock going back never makes a run stuck either.
            t.advance_ms(-3_600_000);
            assert_eq!(svc.expire_stuck_runs().await.unwrap(), 0);
            t.advance_ms(3_600_000 + 1);
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
                let refired = t.next_firings(1).await[0];
                assert_eq!((refired.id, refired.fire_token), (job.id, after.fire_token));
            }
        }
    }

    #[tokio::test]
    async fn a_timed_out_run_is_a_failed_attempt_under_the_retry_policy() {
        let settings = SchedulerSettings {
            retry: RetryPolicy::new(2, 5_000, 5_000, 1.0, 0.0).unwrap(),
            ..SchedulerSettings::default()
        };
        let (mut t, producer, job, _) = fired(settings).await;
        let svc = t.svc.clone();
        t.advance_ms(600_001);
        assert_eq!(svc.expire_stuck_runs().await.unwrap(), 1);
        let retry = svc.get(job.id).await.unwrap();
        assert_eq!((retry.status, retry.attempt()), (JobStatus::Scheduled, 2));
        assert_eq!(
            retry.spec.schedule_time,
            t.clock.now_ms() + chrono::Duration::seconds(5)
        );
        assert!(
            retry.last_error().unwrap().contains("run timeout"),
            "{retry:?}"
        );
        assert!(
            producer
                .events()
                .contains(&(EventKind::Update, job.id, JobStatus::Scheduled))
        );
        // The second attempt times out too: no attempt is left.
        t.advance_ms(5_000);
        let refired = t.next_firings(1).await[0];
        svc.fire_batch(
            vec![refired],
            BatchPermits::default(),
            &CancellationToken::new(),
        )
        .await;
        t.advance_ms(600_001);
        assert_eq!(svc.expire_stuck_runs().await.unwrap(), 1);
        let ended = svc.get(job.id).await.unwrap();
        assert_eq!((ended.status, ended.attempt()), (JobStatus::Failed, 2));
    }

    #[tokio::test]
    async fn a_result_that_arrives_first_wins_over_the_timeout() {
        let (t, _, job, _) = fired(SchedulerSettings::default()).await;
        t.advance_ms(600_001);
        t.svc
            .record_result(
                job.id,
                &crate::domain::report::RunReport::of(crate::domain::ResultStatus::Succeeded, None),
            )
            .await
            .unwrap();
        assert_eq!(t.svc.expire_stuck_runs().await.unwrap(), 0);
        assert_eq!(
            t.svc.get(job.id).await.unwrap().status,
            JobStatus::Succeeded
        );
    }

    #[tokio::test]
    async fn a_recurring_run_that_times_out_failed_and_its_job_goes_on() {
        use crate::{
            clock::Clock,
            domain::{
                ResultStatus,
                recurrence::{CatchUp, Overlap, RecurrenceSpec},
                schedule::{Bounds, IntervalSchedule, Jitter, Schedule, Timing},
            },
            service::NewJob,
        };
        for policy in [RunTimeoutPolicy::Fail, RunTimeoutPolicy::Retry] {
            let settings = SchedulerSettings {
                run_timeout: Duration::from_secs(600),
                run_timeout_policy: policy,
                ..SchedulerSettings::default()
            };
            let mut t = TestService::new(settings, Arc::new(RecordingProducer::default()));
            let hourly = IntervalSchedule::new(
                chrono::TimeDelta::hours(1),
                t.clock.now_ms(),
                chrono::TimeDelta::seconds(1),
            )
            .unwrap();
            let timing = Timing::new(
                Schedule::Interval(hourly),
                Bounds::default(),
                Jitter::default(),
            )
            .unwrap();
            let recurrence = RecurrenceSpec {
                timing,
                catch_up: CatchUp::default(),
                overlap: Overlap::default(),
            };
            let job = t
                .svc
                .create_job(NewJob {
                    recurrence: Some(recurrence),
                    ..NewJob::one_shot(t.spec(0))
                })
                .await
                .unwrap();
            let due = t.next_firings(1).await;
            t.svc
                .fire_batch(due, BatchPermits::default(), &CancellationToken::new())
                .await;
            let running = t.svc.get(job.id).await.unwrap();
            assert_eq!(running.status, JobStatus::Running);
            t.advance_ms(600_001);
            assert_eq!(t.svc.expire_stuck_runs().await.unwrap(), 1);
            let after = t.svc.get(job.id).await.unwrap();
            assert_eq!(after.status, JobStatus::Scheduled, "{policy:?}");
            let rec = after.recurrence.as_ref().unwrap();
            assert_eq!(rec.last.map(|l| l.outcome), Some(ResultStatus::Failed));
            assert!(rec.run.is_none());
            assert_eq!(
                after.fire_token, running.fire_token,
                "the next occurrence stays armed"
            );
        }
    }
}
