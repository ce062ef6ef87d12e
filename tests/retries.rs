//! Retries of failed runs through gRPC and Kafka against the test servers:
//! a job whose executor fails twice and then succeeds runs three times (its
//! run events saying which attempt each is) and ends SUCCEEDED with the
//! last error kept; a job that always fails ends FAILED after its attempts
//! under the service's default policy, with one dead-letter event (on its
//! topic and to `JobEvents` subscribers) carrying its attempts and last
//! error, and an operator reruns it; a final failure ends the attempts
//! early, and a requested delay replaces the backoff; bad policies and
//! oversized results are refused naming the field. Each firing is a run of
//! the job's history (ListJobRuns), with its attempt, cause, outcome and
//! what its executor said.

mod common;

use std::time::Duration;

use common::{
    EventReader, RawProducer, TestApp, create_job, create_request, get_job, metric_value,
    scrape_metrics, spawn_app, wait_for_status,
};
use scheduler_service::{
    broker::JobEvent,
    config::vars,
    grpc::{
        proto,
        scheduler::v1::{EventKind, ReportResultRequest, job_events_client::JobEventsClient},
    },
    telemetry::metrics,
};
use tonic::Code;

/// Bounds a hang only; each wait ends as soon as its condition holds.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A policy of `max_attempts` runs, 100 ms apart, without jitter.
fn quick_policy(max_attempts: i32) -> proto::RetryPolicy {
    proto::RetryPolicy {
        max_attempts: Some(max_attempts),
        first_delay_ms: Some(100),
        max_delay_ms: Some(100),
        multiplier: Some(1.0),
        jitter: Some(0.0),
    }
}

/// The service, and a reader of its run topic.
struct Setup {
    app: TestApp,
    runs: EventReader,
}

impl Setup {
    async fn new(overrides: &[(&str, &str)]) -> Self {
        let app = spawn_app(overrides).await;
        let runs = EventReader::new(&app.settings.topics.job_run.name);
        Setup { app, runs }
    }

    /// The run event of job `id`'s next firing after `earlier` (the first
    /// with `None`); deliveries of a firing again are passed over.
    async fn next_firing(&self, id: &str, earlier: Option<&JobEvent>) -> JobEvent {
        loop {
            let (run, _) = self.runs.next_for(id, TIMEOUT).await;
            let run = run.unwrap_or_else(|| panic!("job {id} fired")).event;
            if earlier.is_none_or(|e| e.fire_token != run.fire_token) {
                return run;
            }
        }
    }

    /// Reports on `run` over gRPC; returns the outcome or the refusal.
    async fn report(
        &self,
        run: &JobEvent,
        status: proto::JobStatus,
        details: ReportResultRequest,
    ) -> Result<String, tonic::Status> {
        JobEventsClient::new(self.app.channel.clone())
            .report_result(ReportResultRequest {
                id: run.id.clone(),
                status: status.into(),
                scheduled_key: Some(run.fire_token),
                ..details
            })
            .await
            .map(|r| r.into_inner().outcome)
    }

    async fn job(&mut self, id: &str) -> proto::Job {
        get_job(&mut self.app.client, id).await
    }

    async fn assert_status(&mut self, id: &str, wanted: proto::JobStatus) {
        let got = wait_for_status(&mut self.app.client, id, wanted, TIMEOUT).await;
        assert_eq!(got, wanted, "job {id}");
    }

    /// One page of job `id`'s runs.
    async fn runs(&mut self, id: &str, page: i64, size: i64) -> proto::ListJobRunsResponse {
        let request = proto::ListJobRunsRequest {
            id: id.to_owned(),
            page,
            size,
        };
        let listed = self.app.client.list_job_runs(request).await;
        listed.expect("ListJobRuns").into_inner()
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&scrape_metrics(self.app.metrics_port).await, name, labels)
    }
}

fn failure(error: &str) -> ReportResultRequest {
    ReportResultRequest {
        error: Some(error.to_owned()),
        executor: Some("mailer-1".to_owned()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_job_that_fails_twice_then_succeeds_runs_three_times_and_succeeds() {
    let mut setup = Setup::new(&[]).await;
    let request = proto::CreateJobRequest {
        retry_policy: Some(quick_policy(3)),
        ..create_request("flaky", 0)
    };
    let id = create_job(&mut setup.app.client, request).await;
    let first = setup.next_firing(&id, None).await;
    assert_eq!(first.attempt, None, "a first attempt says nothing");

    // The first failure comes through Kafka, as the article's executors
    // send results, with the new keys.
    let result = format!(
        r#"{{"Id":"{id}","Status":5,"ScheduledKey":{},"Error":"SMTP 451","Executor":"mailer-1"}}"#,
        first.fire_token
    );
    let topic = &setup.app.settings.topics.job_run_result;
    RawProducer::new().send(topic, &id, result.as_bytes()).await;
    let second = setup.next_firing(&id, Some(&first)).await;
    assert_eq!(second.attempt, Some(2));
    assert_ne!(
        second.fire_token, first.fire_token,
        "a retry is a new firing"
    );
    assert_eq!(setup.job(&id).await.last_error, "SMTP 451");

    let failed = setup
        .report(
            &second,
            proto::JobStatus::Failed,
            failure("connection reset"),
        )
        .await;
    assert_eq!(failed.expect("ReportResult"), "stored");
    let third = setup.next_firing(&id, Some(&second)).await;
    assert_eq!(third.attempt, Some(3));
    let done = setup
        .report(
            &third,
            proto::JobStatus::Succeeded,
            ReportResultRequest::default(),
        )
        .await;
    assert_eq!(done.expect("ReportResult"), "stored");

    setup.assert_status(&id, proto::JobStatus::Succeeded).await;
    let job = setup.job(&id).await;
    assert_eq!(job.attempt, 3);
    assert_eq!(job.last_error, "connection reset");
    assert_eq!(job.retry_policy, Some(quick_policy(3)));
    assert_eq!(setup.metric(metrics::RETRIES_SCHEDULED, &[]).await, 2.0);
    // A late repeat of the first failure changes nothing.
    let stale = setup
        .report(&first, proto::JobStatus::Failed, failure("late"))
        .await;
    assert_eq!(stale.expect("ReportResult"), "stale");

    // Its history: three runs, newest first, each with its firing, attempt
    // and what its executor said.
    let runs = setup.runs(&id, 1, 10).await;
    assert_eq!((runs.total_count, runs.has_more), (3, false));
    let seen: Vec<(i64, i32, i32, i32, &str, &str)> = runs
        .runs
        .iter()
        .map(|r| {
            let (error, executor) = (r.error.as_str(), r.executor.as_str());
            (r.fire_token, r.attempt, r.cause, r.outcome, error, executor)
        })
        .collect();
    let (scheduled, retry) = (
        proto::RunCause::Scheduled as i32,
        proto::RunCause::Retry as i32,
    );
    let (ok, failed) = (
        proto::RunOutcome::Succeeded as i32,
        proto::RunOutcome::Failed as i32,
    );
    assert_eq!(
        seen,
        [
            (third.fire_token, 3, retry, ok, "", ""),
            (
                second.fire_token,
                2,
                retry,
                failed,
                "connection reset",
                "mailer-1"
            ),
            (
                first.fire_token,
                1,
                scheduled,
                failed,
                "SMTP 451",
                "mailer-1"
            ),
        ]
    );
    for run in &runs.runs {
        let (fired, finished) = (
            run.fired_time.expect("fired"),
            run.finished_time.expect("done"),
        );
        assert!(
            finished.seconds * 1_000 + i64::from(finished.nanos / 1_000_000)
                >= fired.seconds * 1_000 + i64::from(fired.nanos / 1_000_000)
        );
        assert!(run.lateness_ms >= 0, "{run:?}");
    }
    let second_page = setup.runs(&id, 2, 2).await;
    assert_eq!(second_page.runs, runs.runs[2..]);
    setup.app.stop().await;
}

#[tokio::test]
async fn listing_runs_refuses_an_unknown_job_and_a_bad_page() {
    let mut setup = Setup::new(&[]).await;
    let client = &mut setup.app.client;
    let unknown = proto::ListJobRunsRequest {
        id: "0123456789abcdef01234567".into(),
        page: 1,
        size: 10,
    };
    let err = client
        .list_job_runs(unknown)
        .await
        .expect_err("unknown job");
    assert_eq!(err.code(), Code::NotFound);
    let id = create_job(client, create_request("later", 3_600)).await;
    let empty = setup.runs(&id, 1, 10).await;
    assert_eq!(
        (empty.total_count, empty.runs.len()),
        (0, 0),
        "not fired yet"
    );
    let client = &mut setup.app.client;
    for (page, size, field) in [(0, 10, "page"), (1, 0, "size"), (1, 100_000, "size")] {
        let request = proto::ListJobRunsRequest {
            id: id.clone(),
            page,
            size,
        };
        let err = client.list_job_runs(request).await.expect_err("bad page");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    setup.app.stop().await;
}

#[tokio::test]
async fn a_job_that_always_fails_ends_failed_after_the_default_attempts() {
    let mut setup = Setup::new(&[
        (vars::SCHEDULER_RETRY_MAX_ATTEMPTS, "2"),
        (vars::SCHEDULER_RETRY_FIRST_DELAY_MS, "100"),
        (vars::SCHEDULER_RETRY_JITTER, "0"),
        // No relay pass within the test: the dead letter comes from the
        // result's own delivery.
        (vars::OUTBOX_POLL_MS, "3600000"),
    ])
    .await;
    let dead_letters = EventReader::new(&setup.app.settings.topics.job_dead_letter);
    let mut subscriber =
        common::embedded::subscribe(&setup.app.channel, &[EventKind::DeadLetter], "").await;
    let id = create_job(&mut setup.app.client, create_request("doomed", 0)).await;
    let first = setup.next_firing(&id, None).await;
    let outcome = setup.report(&first, proto::JobStatus::Failed, failure("no such mailbox"));
    assert_eq!(outcome.await.expect("ReportResult"), "stored");
    let second = setup.next_firing(&id, Some(&first)).await;
    assert_eq!(second.attempt, Some(2));
    let outcome = setup.report(&second, proto::JobStatus::Failed, failure("still none"));
    assert_eq!(outcome.await.expect("ReportResult"), "stored");

    setup.assert_status(&id, proto::JobStatus::Failed).await;
    let job = setup.job(&id).await;
    assert_eq!((job.attempt, job.last_error.as_str()), (2, "still none"));
    assert_eq!(job.retry_policy, None, "it follows the default");
    assert_eq!(setup.metric(metrics::RETRIES_SCHEDULED, &[]).await, 1.0);
    let failed = setup
        .metric(metrics::JOBS_FAILED, &[("reason", "result")])
        .await;
    assert_eq!(failed, 1.0, "failed once, for good");
    let dead_lettered = setup.metric(metrics::JOBS_DEAD_LETTERED, &[]).await;
    assert_eq!(dead_lettered, 1.0, "one job owes a dead letter");
    for (attempt, runs) in [("first", 1.0), ("retry", 1.0)] {
        let started = setup
            .metric(metrics::RUN_ATTEMPTS, &[("attempt", attempt)])
            .await;
        assert_eq!(started, runs, "{attempt} attempts started");
    }
    let (dead, _) = dead_letters.next_for(&id, TIMEOUT).await;
    let dead = dead.expect("a dead-letter event").event;
    assert_eq!(dead.status, proto::JobStatus::Failed as i32);
    assert_eq!(
        (dead.attempt, dead.last_error.as_deref()),
        (Some(2), Some("still none"))
    );
    assert_eq!(
        dead.fire_token, second.fire_token,
        "the firing that failed for good"
    );
    let streamed = common::embedded::next_event(&mut subscriber).await;
    assert_eq!(streamed.kind, EventKind::DeadLetter as i32);
    let job = streamed.job.expect("the job");
    assert_eq!((job.id.as_str(), job.attempt), (id.as_str(), 2));
    assert_eq!(job.last_error, "still none");

    // An operator reruns it: it runs again now, from its first attempt.
    let rerun = setup
        .app
        .client
        .rerun_job(proto::RerunJobRequest { id: id.clone() })
        .await
        .expect("RerunJob")
        .into_inner();
    assert_eq!(rerun.status, proto::JobStatus::Scheduled as i32);
    assert_eq!((rerun.attempt, rerun.last_error.as_str()), (1, ""));
    let third = setup.next_firing(&id, Some(&second)).await;
    assert_eq!(third.attempt, None, "a first attempt again");
    let outcome = setup.report(
        &third,
        proto::JobStatus::Succeeded,
        ReportResultRequest::default(),
    );
    assert_eq!(outcome.await.expect("ReportResult"), "stored");
    setup.assert_status(&id, proto::JobStatus::Succeeded).await;
    let rerun = |id: &str| proto::RerunJobRequest { id: id.to_owned() };
    setup
        .app
        .client
        .rerun_job(rerun(&id))
        .await
        .expect("a SUCCEEDED job reruns too");
    setup.next_firing(&id, Some(&third)).await;
    setup.assert_status(&id, proto::JobStatus::Running).await;
    let busy = setup.app.client.rerun_job(rerun(&id)).await.unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    let runs = setup.runs(&id, 1, 10).await.runs;
    let causes: Vec<(i32, i32)> = runs.iter().map(|r| (r.cause, r.attempt)).collect();
    let (manual, scheduled, retry) = (
        proto::RunCause::Manual as i32,
        proto::RunCause::Scheduled as i32,
        proto::RunCause::Retry as i32,
    );
    assert_eq!(
        causes,
        [(manual, 1), (manual, 1), (retry, 2), (scheduled, 1)],
        "newest first: the two reruns are manual"
    );
    setup.app.stop().await;
    // Everything published after the first dead letter, to the end of the
    // topic: no second one for this job.
    let later = dead_letters.rest().await;
    assert!(
        later.iter().all(|event| event.key != id),
        "a second dead letter: {later:?}"
    );
}

#[tokio::test]
async fn a_final_failure_ends_the_attempts_and_a_requested_delay_replaces_the_backoff() {
    let mut setup = Setup::new(&[]).await;
    let request = |name: &str| proto::CreateJobRequest {
        retry_policy: Some(quick_policy(5)),
        ..create_request(name, 0)
    };
    let id = create_job(&mut setup.app.client, request("final")).await;
    let run = setup.next_firing(&id, None).await;
    let final_failure = ReportResultRequest {
        r#final: true,
        ..failure("invalid address")
    };
    let outcome = setup.report(&run, proto::JobStatus::Failed, final_failure);
    assert_eq!(outcome.await.expect("ReportResult"), "stored");
    setup.assert_status(&id, proto::JobStatus::Failed).await;
    assert_eq!(setup.job(&id).await.attempt, 1);

    let id = create_job(&mut setup.app.client, request("rate-limited")).await;
    let run = setup.next_firing(&id, None).await;
    let later = ReportResultRequest {
        retry_after_ms: Some(3_600_000),
        ..failure("429")
    };
    let outcome = setup.report(&run, proto::JobStatus::Failed, later);
    assert_eq!(outcome.await.expect("ReportResult"), "stored");
    let job = setup.job(&id).await;
    assert_eq!(job.status, proto::JobStatus::Scheduled as i32);
    let (due, decided) = (job.schedule_time.unwrap(), job.updated_time.unwrap());
    assert_eq!(
        due.seconds - decided.seconds,
        3_600,
        "an hour after the result"
    );
    assert_eq!(due.nanos, decided.nanos);
    setup.app.stop().await;
}

#[tokio::test]
async fn bad_policies_and_oversized_results_are_refused_naming_the_field() {
    let mut setup = Setup::new(&[]).await;
    let cases = [
        (quick_policy(0), "retry_policy.max_attempts"),
        (
            proto::RetryPolicy {
                max_delay_ms: Some(10),
                first_delay_ms: Some(20),
                ..Default::default()
            },
            "retry_policy.max_delay_ms",
        ),
        (
            proto::RetryPolicy {
                multiplier: Some(0.5),
                ..Default::default()
            },
            "retry_policy.multiplier",
        ),
    ];
    for (policy, field) in cases {
        let request = proto::CreateJobRequest {
            retry_policy: Some(policy),
            ..create_request("bad", 1_000)
        };
        let err = setup.app.client.create_job(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let id = create_job(&mut setup.app.client, create_request("reported", 0)).await;
    let run = setup.next_firing(&id, None).await;
    let oversized = failure(&"x".repeat(4097));
    let err = setup
        .report(&run, proto::JobStatus::Failed, oversized)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("error"), "{}", err.message());
    let too_late = ReportResultRequest {
        retry_after_ms: Some(-1),
        ..Default::default()
    };
    let err = setup
        .report(&run, proto::JobStatus::Failed, too_late)
        .await
        .unwrap_err();
    assert!(
        err.message().contains("retry_after_ms"),
        "{}",
        err.message()
    );
    setup.assert_status(&id, proto::JobStatus::Running).await;
    setup.app.stop().await;
}

#[tokio::test]
async fn update_job_sets_or_clears_the_policy_and_starts_the_attempts_afresh() {
    let mut setup = Setup::new(&[]).await;
    let id = create_job(&mut setup.app.client, create_request("edited", 0)).await;
    let run = setup.next_firing(&id, None).await;
    let outcome = setup.report(&run, proto::JobStatus::Failed, failure("nope"));
    assert_eq!(outcome.await.expect("ReportResult"), "stored");
    setup.assert_status(&id, proto::JobStatus::Failed).await;

    let update = |policy: Option<proto::RetryPolicy>| {
        let request = create_request("edited", 3_600_000);
        proto::UpdateJobRequest {
            id: id.clone(),
            name: request.name,
            schedule_time: request.schedule_time,
            job_type: request.job_type,
            job_data: request.job_data,
            retry_policy: policy,
            ..Default::default()
        }
    };
    setup
        .app
        .client
        .update_job(update(Some(quick_policy(4))))
        .await
        .expect("UpdateJob with a policy");
    let job = setup.job(&id).await;
    assert_eq!(job.retry_policy, Some(quick_policy(4)));
    assert_eq!(
        (job.attempt, job.last_error.as_str()),
        (1, ""),
        "fresh attempts"
    );
    setup
        .app
        .client
        .update_job(update(None))
        .await
        .expect("UpdateJob without a policy");
    assert_eq!(setup.job(&id).await.retry_policy, None, "the default again");
    let recurring = proto::UpdateJobRequest {
        recurrence: Some(proto::Recurrence {
            interval_seconds: 60,
            ..Default::default()
        }),
        ..update(Some(quick_policy(2)))
    };
    setup
        .app
        .client
        .update_job(recurring)
        .await
        .expect("a recurring job takes a policy");
    assert_eq!(setup.job(&id).await.retry_policy, Some(quick_policy(2)));
    setup.app.stop().await;
}

#[tokio::test]
async fn a_recurring_job_retries_its_failed_occurrence_before_the_next() {
    let mut setup = Setup::new(&[]).await;
    let request = proto::CreateJobRequest {
        retry_policy: Some(quick_policy(3)),
        recurrence: Some(proto::Recurrence {
            interval_seconds: 3_600,
            ..Default::default()
        }),
        ..create_request("hourly", 0)
    };
    let id = create_job(&mut setup.app.client, request).await;
    let first = setup.next_firing(&id, None).await;
    let occurrence = first.occurrence.clone().expect("an occurrence");
    let next = setup
        .job(&id)
        .await
        .next_occurrence
        .expect("a next occurrence");
    let (mut run, mut tokens) = (first, Vec::new());
    for attempt in 1..=3 {
        assert_eq!(
            run.occurrence.as_ref(),
            Some(&occurrence),
            "the same occurrence"
        );
        assert_eq!(run.attempt, (attempt > 1).then_some(attempt));
        tokens.push(run.fire_token);
        let error = format!("failure {attempt}");
        let failed = setup.report(&run, proto::JobStatus::Failed, failure(&error));
        assert_eq!(failed.await.expect("ReportResult"), "stored");
        if attempt < 3 {
            run = setup.next_firing(&id, Some(&run)).await;
        }
    }
    // No attempt left: the occurrence failed for good, and the job waits
    // for its next occurrence, which the retries did not move.
    let job = setup.job(&id).await;
    assert_eq!(job.status, proto::JobStatus::Scheduled as i32);
    assert_eq!(job.next_occurrence, Some(next));
    assert_eq!((job.attempt, job.last_error.as_str()), (3, "failure 3"));
    let dead = EventReader::new(&setup.app.settings.topics.job_dead_letter);
    let (letter, _) = dead.next_for(&id, TIMEOUT).await;
    assert_eq!(letter.expect("a dead letter").event.attempt, Some(3));

    let runs = setup.runs(&id, 1, 10).await;
    let seen: Vec<(i64, i32, i32)> = runs
        .runs
        .iter()
        .map(|r| (r.fire_token, r.attempt, r.cause))
        .collect();
    let (scheduled, retry) = (
        proto::RunCause::Scheduled as i32,
        proto::RunCause::Retry as i32,
    );
    let expected = [
        (tokens[2], 3, retry),
        (tokens[1], 2, retry),
        (tokens[0], 1, scheduled),
    ];
    assert_eq!(seen, expected);
    setup.app.stop().await;
}
