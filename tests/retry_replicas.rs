//! Retries with the service as child processes on PostgreSQL: three
//! replicas given each failure twice (through Kafka to whichever replica
//! consumes it, and through `ReportResult` to another) retry each failure
//! exactly once; and a service killed (SIGKILL) between a failure and its
//! retry runs the retry exactly once after its restart. In both, the job's
//! run history holds each firing exactly once.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{
    EventReader, RawProducer, ReceivedEvent, get_job, kafka_brokers,
    processes::{LogDir, ServiceProcess, total_metric},
    test_vars, var_of,
};
use scheduler_service::{
    config::vars,
    grpc::{
        proto::{self, jobs_service_client::JobsServiceClient},
        scheduler::v1::{ReportResultRequest, job_events_client::JobEventsClient},
    },
    telemetry::metrics,
};
use tonic::transport::Channel;

/// Bounds a hang only.
const HANG: Duration = Duration::from_secs(90);

/// Up to two runs, the retry `delay_ms` after the failure.
fn retry_twice(delay_ms: i64) -> proto::RetryPolicy {
    proto::RetryPolicy {
        max_attempts: Some(2),
        first_delay_ms: Some(delay_ms),
        max_delay_ms: Some(delay_ms),
        multiplier: Some(1.0),
        jitter: Some(0.0),
    }
}

async fn create(client: &mut JobsServiceClient<Channel>, name: String, delay_ms: i64) -> String {
    client
        .create_job(proto::CreateJobRequest {
            name,
            job_type: proto::JobType::Email.into(),
            job_data: "{}".to_owned(),
            schedule_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            retry_policy: Some(retry_twice(delay_ms)),
            ..Default::default()
        })
        .await
        .expect("CreateJob")
        .into_inner()
        .id
}

async fn report(port: u16, run: &ReceivedEvent, status: proto::JobStatus) -> String {
    JobEventsClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect")
        .report_result(ReportResultRequest {
            id: run.key.clone(),
            status: status.into(),
            scheduled_key: Some(run.event.fire_token),
            error: Some("boom".to_owned()),
            ..Default::default()
        })
        .await
        .expect("ReportResult")
        .into_inner()
        .outcome
}

async fn status_of(client: &mut JobsServiceClient<Channel>, id: &str) -> proto::JobStatus {
    let job = get_job(client, id).await;
    proto::JobStatus::try_from(job.status).expect("a status")
}

/// Job `id`'s history as (fire token, attempt, outcome), oldest first.
async fn history(client: &mut JobsServiceClient<Channel>, id: &str) -> Vec<(i64, i32, i32)> {
    let request = proto::ListJobRunsRequest {
        id: id.to_owned(),
        page: 1,
        size: 10,
    };
    let listed = client.list_job_runs(request).await.expect("ListJobRuns");
    let mut runs: Vec<(i64, i32, i32)> = listed
        .into_inner()
        .runs
        .iter()
        .map(|r| (r.fire_token, r.attempt, r.outcome))
        .collect();
    runs.reverse();
    runs
}

/// A failed first run and a successful retry, under these fire tokens.
fn failed_then_succeeded(first: i64, retry: i64) -> Vec<(i64, i32, i32)> {
    vec![
        (first, 1, proto::RunOutcome::Failed as i32),
        (retry, 2, proto::RunOutcome::Succeeded as i32),
    ]
}

/// The distinct firings (keys) of each job among `events`.
fn firings(events: &[ReceivedEvent]) -> HashMap<String, HashSet<i64>> {
    let mut by_job: HashMap<String, HashSet<i64>> = HashMap::new();
    for e in events {
        by_job
            .entry(e.key.clone())
            .or_default()
            .insert(e.event.fire_token);
    }
    by_job
}

#[tokio::test]
async fn three_replicas_given_each_failure_twice_retry_it_exactly_once() {
    const JOBS: usize = 60;
    let dir = LogDir::fresh();
    let env = test_vars(&[(vars::DATABASE_URI, &common::postgres_uri())]);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(ServiceProcess::start(&env, dir.path()).await);
    }
    let mut client = replicas[0].client().await;
    let runs = EventReader::on(&kafka_brokers(), var_of(&env, vars::TOPIC_JOB_RUN));
    let results = var_of(&env, vars::TOPIC_JOB_RUN_RESULT).to_owned();
    let producer = RawProducer::new();
    for i in 0..JOBS {
        create(&mut client, format!("flaky {i}"), 200).await;
    }

    // Each first run fails, told twice; each retry succeeds.
    let (mut events, mut done) = (Vec::new(), HashSet::new());
    while done.len() < JOBS {
        let run = runs.next(HANG).await.expect("a run event");
        let replica = &replicas[events.len() % 3];
        match run.event.attempt {
            None => {
                let message = format!(
                    r#"{{"Id":"{}","Status":5,"ScheduledKey":{},"Error":"boom"}}"#,
                    run.key, run.event.fire_token
                );
                let (_, outcome) = tokio::join!(
                    producer.send(&results, &run.key, message.as_bytes()),
                    report(replica.port, &run, proto::JobStatus::Failed),
                );
                assert!(
                    ["stored", "duplicate", "stale"].contains(&outcome.as_str()),
                    "{outcome}"
                );
            }
            Some(2) => {
                report(replica.port, &run, proto::JobStatus::Succeeded).await;
                done.insert(run.key.clone());
            }
            Some(other) => panic!("attempt {other} of job {}", run.key),
        }
        events.push(run);
    }
    let retries = total_metric(&replicas, metrics::RETRIES_SCHEDULED, &[]).await;
    assert_eq!(
        retries, JOBS as f64,
        "each failure retried once, by one replica"
    );
    for (id, keys) in firings(&events) {
        assert_eq!(keys.len(), 2, "job {id}: a first run and one retry");
        assert_eq!(
            status_of(&mut client, &id).await,
            proto::JobStatus::Succeeded
        );
        // The history holds each firing once, however many replicas
        // raced on its claim and its results.
        let runs = history(&mut client, &id).await;
        let (first, retry) = (runs[0].0, runs.get(1).map_or(0, |r| r.0));
        assert!(keys.contains(&first) && keys.contains(&retry), "job {id}");
        assert_eq!(runs, failed_then_succeeded(first, retry), "job {id}");
    }
    for replica in &mut replicas {
        replica.terminate().await;
    }
    events.extend(runs.rest().await);
    assert!(
        firings(&events).values().all(|keys| keys.len() == 2),
        "no third firing"
    );
}

#[tokio::test]
async fn a_kill_9_between_a_failure_and_its_retry_runs_the_retry_once() {
    let dir = LogDir::fresh();
    let env = test_vars(&[(vars::DATABASE_URI, &common::postgres_uri())]);
    let mut service = ServiceProcess::start(&env, dir.path()).await;
    let runs = EventReader::on(&kafka_brokers(), var_of(&env, vars::TOPIC_JOB_RUN));
    let mut client = service.client().await;
    // The retry is due 3 s after the failure: the kill lands before it.
    let id = create(&mut client, "flaky".to_owned(), 3_000).await;
    let (first, _) = runs.next_for(&id, HANG).await;
    let first = first.expect("the first run");
    assert_eq!(
        report(service.port, &first, proto::JobStatus::Failed).await,
        "stored"
    );
    assert_eq!(
        status_of(&mut client, &id).await,
        proto::JobStatus::Scheduled
    );
    service.kill_9();

    service.restart().await;
    let mut client = service.client().await;
    let mut events = vec![first];
    let retry = loop {
        let (run, _) = runs.next_for(&id, HANG).await;
        let run = run.expect("the retry");
        if run.event.attempt == Some(2) {
            break run;
        }
        events.push(run);
    };
    assert_eq!(
        report(service.port, &retry, proto::JobStatus::Succeeded).await,
        "stored"
    );
    let (first_key, retry_key) = (events[0].event.fire_token, retry.event.fire_token);
    events.push(retry);
    assert_eq!(
        status_of(&mut client, &id).await,
        proto::JobStatus::Succeeded
    );
    assert_eq!(
        history(&mut client, &id).await,
        failed_then_succeeded(first_key, retry_key),
        "each run once across the kill"
    );
    service.terminate().await;
    events.extend(runs.rest().await);
    assert_eq!(
        firings(&events)[&id].len(),
        2,
        "the first run and one retry"
    );
}
