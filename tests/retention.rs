//! Retention through gRPC and Kafka against the test servers: a job
//! finished longer ago than `JOB_RETENTION` is removed with its runs after
//! its delete event reaches `topic-job-delete` (counted in
//! `scheduler_jobs_expired_total`), a job that has not finished is kept;
//! a job keeps only its newest `RUNS_RETENTION` runs.

mod common;

use std::time::Duration;

use common::{
    EventReader, TestApp, create_job, create_request, get_job, metric_value, scrape_when,
    spawn_app, wait_for_status,
};
use scheduler_service::{
    broker::JobEvent,
    config::vars,
    grpc::{
        proto,
        scheduler::v1::{ReportResultRequest, job_events_client::JobEventsClient},
    },
    telemetry::metrics,
};
use tonic::Code;

/// Bounds a hang only; each wait ends as soon as its condition holds.
const TIMEOUT: Duration = Duration::from_secs(60);

async fn report(app: &TestApp, run: &JobEvent, status: proto::JobStatus, retry_after_ms: i64) {
    let outcome = JobEventsClient::new(app.channel.clone())
        .report_result(ReportResultRequest {
            id: run.id.clone(),
            status: status.into(),
            scheduled_key: Some(run.fire_token),
            error: Some("boom".into()),
            retry_after_ms: Some(retry_after_ms),
            ..Default::default()
        })
        .await
        .expect("ReportResult");
    assert_eq!(outcome.into_inner().outcome, "stored");
}

async fn runs_total(app: &mut TestApp, id: &str) -> Result<i64, tonic::Status> {
    let request = proto::ListJobRunsRequest {
        id: id.to_owned(),
        page: 1,
        size: 100,
    };
    let listed = app.client.list_job_runs(request).await?.into_inner();
    assert_eq!(listed.total_count, listed.runs.len() as i64);
    Ok(listed.total_count)
}

#[tokio::test]
async fn a_finished_job_past_its_retention_is_removed_after_its_delete_event() {
    let mut app = spawn_app(&[
        (vars::JOB_RETENTION, "1s"),
        (vars::RETENTION_INTERVAL_SECS, "1"),
    ])
    .await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let deletes = EventReader::new(&app.settings.topics.job_delete);
    let done = create_job(&mut app.client, create_request("done", 0)).await;
    let waiting = create_job(&mut app.client, create_request("waiting", 3_600_000)).await;
    let (run, _) = runs.next_for(&done, TIMEOUT).await;
    report(
        &app,
        &run.expect("fired").event,
        proto::JobStatus::Succeeded,
        0,
    )
    .await;
    let status = wait_for_status(&mut app.client, &done, proto::JobStatus::Succeeded, TIMEOUT);
    assert_eq!(status.await, proto::JobStatus::Succeeded);

    let (deleted, others) = deletes.next_for(&done, TIMEOUT).await;
    let deleted = deleted.expect("a delete event").event;
    assert!(others.is_empty(), "only the finished job: {others:?}");
    assert_eq!(deleted.status, proto::JobStatus::Succeeded as i32);
    let text = scrape_when(app.metrics_port, (metrics::JOBS_EXPIRED, &[]), 1.0, TIMEOUT).await;
    assert_eq!(metric_value(&text, metrics::JOBS_EXPIRED, &[]), 1.0);
    let gone = app
        .client
        .get_job(proto::GetJobRequest { id: done.clone() })
        .await;
    assert_eq!(gone.expect_err("removed").code(), Code::NotFound);
    let history = runs_total(&mut app, &done).await;
    assert_eq!(history.expect_err("removed").code(), Code::NotFound);
    assert_eq!(get_job(&mut app.client, &waiting).await.name, "waiting");
    app.stop().await;
}

#[tokio::test]
async fn a_job_keeps_only_its_newest_runs() {
    let mut app = spawn_app(&[
        (vars::RUNS_RETENTION, "2,30d"),
        (vars::RETENTION_INTERVAL_SECS, "1"),
    ])
    .await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let request = proto::CreateJobRequest {
        retry_policy: Some(proto::RetryPolicy {
            max_attempts: Some(10),
            ..Default::default()
        }),
        ..create_request("flaky", 0)
    };
    let id = create_job(&mut app.client, request).await;
    let mut tokens = Vec::new();
    for attempt in 1..=3 {
        let run = loop {
            let (run, _) = runs.next_for(&id, TIMEOUT).await;
            let run = run.expect("a firing").event;
            if !tokens.contains(&run.fire_token) {
                break run;
            }
        };
        tokens.push(run.fire_token);
        // The last failure asks for an hour: the job waits, its runs stay.
        let delay = if attempt == 3 { 3_600_000 } else { 0 };
        report(&app, &run, proto::JobStatus::Failed, delay).await;
    }
    let text = scrape_when(app.metrics_port, (metrics::RUNS_PRUNED, &[]), 1.0, TIMEOUT).await;
    assert_eq!(metric_value(&text, metrics::RUNS_PRUNED, &[]), 1.0);
    let request = proto::ListJobRunsRequest {
        id: id.clone(),
        page: 1,
        size: 10,
    };
    let listed = app.client.list_job_runs(request).await.expect("runs");
    let kept: Vec<i64> = listed
        .into_inner()
        .runs
        .iter()
        .map(|r| r.fire_token)
        .collect();
    assert_eq!(kept, [tokens[2], tokens[1]], "the newest two");
    app.stop().await;
}
