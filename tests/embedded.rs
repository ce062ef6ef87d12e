//! The service with no external server: the embedded store in a data
//! directory, the in-process event bus, and executors over gRPC
//! (`scheduler.v1.JobEvents`). Nothing here talks to the broker or database
//! servers the other tests use.

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    create_job, create_jobs, create_request,
    embedded::{
        ack, channel_to, embedded_vars, job_id, next_event, next_item, spawn_embedded,
        wait_until_running,
    },
    processes::{LogDir, ServiceProcess},
};
use scheduler_service::grpc::{
    proto::{self, jobs_service_client::JobsServiceClient},
    scheduler::v1::{
        EventKind, ReportResultRequest, SubscribeResponse, job_events_client::JobEventsClient,
        subscribe_response::Item,
    },
};
use tonic::{Code, Streaming, transport::Channel};

async fn subscribe(channel: &Channel, kinds: &[EventKind]) -> Streaming<SubscribeResponse> {
    common::embedded::subscribe(channel, kinds, "").await
}

/// The next run event's (job id, scheduled key) from a stream.
async fn next_run(stream: &mut Streaming<SubscribeResponse>) -> (String, i64) {
    let event = next_event(stream).await;
    assert_eq!(
        event.kind,
        EventKind::Run as i32,
        "only run events were asked for"
    );
    (job_id(&event), event.scheduled_key)
}

#[tokio::test]
async fn the_whole_cycle_runs_with_no_external_server() {
    let dir = LogDir::fresh();
    let mut app = spawn_embedded(dir.path(), &[]).await;
    let mut runs = subscribe(&app.channel, &[EventKind::Run]).await;
    let id = create_job(&mut app.client, create_request("embedded", 300)).await;
    let (fired, _) = next_run(&mut runs).await;
    assert_eq!(fired, id);

    let mut executor = JobEventsClient::new(app.channel.clone());
    let report = |status: proto::JobStatus| ReportResultRequest {
        id: id.clone(),
        status: status as i32,
        scheduled_key: None,
        ..Default::default()
    };
    let stored = executor
        .report_result(report(proto::JobStatus::Succeeded))
        .await
        .expect("ReportResult");
    assert_eq!(stored.into_inner().outcome, "stored");
    let again = executor
        .report_result(report(proto::JobStatus::Succeeded))
        .await
        .expect("duplicate");
    assert_eq!(again.into_inner().outcome, "duplicate");
    let job = app
        .client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.status(), proto::JobStatus::Succeeded);

    let bad = executor
        .report_result(report(proto::JobStatus::Running))
        .await
        .expect_err("not a result");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let unknown = ReportResultRequest {
        id: bson::oid::ObjectId::new().to_hex(),
        status: proto::JobStatus::Failed as i32,
        scheduled_key: None,
        ..Default::default()
    };
    assert_eq!(
        executor
            .report_result(unknown)
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );
    let conflicting = executor
        .report_result(report(proto::JobStatus::Failed))
        .await
        .expect_err("already succeeded");
    assert_eq!(conflicting.code(), Code::FailedPrecondition);
    app.stop().await;
}

#[tokio::test]
async fn two_subscribers_both_receive_every_run_event() {
    let dir = LogDir::fresh();
    let mut app = spawn_embedded(dir.path(), &[]).await;
    let mut first = subscribe(&app.channel, &[EventKind::Run]).await;
    let mut second = subscribe(&app.channel, &[]).await;
    let mut ids = create_jobs(&mut app.client, "fan", 5, 300, 0).await;
    let mut seen_first = Vec::new();
    for _ in 0..5 {
        seen_first.push(next_run(&mut first).await.0);
    }
    // The second stream asked for every kind: it sees the creates and the runs.
    let mut seen_second = Vec::new();
    while seen_second.len() < 5 {
        let message = tokio::time::timeout(Duration::from_secs(90), second.message())
            .await
            .expect("an event")
            .expect("stream")
            .expect("open");
        if let Some(Item::Event(event)) = message.item
            && event.kind == EventKind::Run as i32
        {
            seen_second.push(event.job.expect("job").id);
        }
    }
    seen_first.sort();
    seen_second.sort();
    ids.sort();
    assert_eq!(seen_first, ids);
    assert_eq!(seen_second, ids);
    app.stop().await;
}

#[tokio::test]
async fn kill_9_and_restart_keep_and_fire_every_job() {
    let dir = LogDir::fresh();
    let env = embedded_vars(&dir.path().join("data"));
    let mut service = ServiceProcess::start(&env, dir.path()).await;
    let mut client: JobsServiceClient<Channel> = service.client().await;
    let ids = create_jobs(&mut client, "kept", 10, 4_000, 100).await;
    service.kill_9();
    service.restart().await;
    let channel = channel_to(service.port).await;
    let mut client = JobsServiceClient::new(channel.clone());
    let listed = client
        .list_jobs(proto::ListJobsRequest {
            page: 1,
            size: 100,
            ..Default::default()
        })
        .await
        .expect("ListJobs")
        .into_inner();
    assert_eq!(listed.total_count, 10, "every job kept");
    // Every job fires after the restart (its status says so, whenever the
    // restart finished).
    wait_until_running(&mut client, &ids).await;
    // A named subscriber that subscribes only now: the runs published
    // before it came are replayed to it from the event log.
    let mut runs = common::embedded::subscribe(&channel, &[EventKind::Run], "kept-runs").await;
    // Each run is acknowledged as it arrives.
    let mut fired: HashMap<String, usize> = HashMap::new();
    while fired.len() < ids.len() {
        let event = next_event(&mut runs).await;
        assert_eq!(ack(&channel, "kept-runs", event.sequence).await, "acked");
        *fired.entry(job_id(&event)).or_default() += 1;
    }
    // Then the service stops, which ends the stream: nothing more came, no
    // run twice and none of another job.
    assert!(service.terminate().await.success(), "graceful exit");
    while let Some(Item::Event(event)) = next_item(&mut runs).await {
        *fired.entry(job_id(&event)).or_default() += 1;
    }
    let mut fired_ids: Vec<&String> = fired.keys().collect();
    fired_ids.sort();
    let mut expected: Vec<&String> = ids.iter().collect();
    expected.sort();
    assert_eq!(fired_ids, expected, "every job's run");
    assert!(fired.values().all(|n| *n == 1), "each once: {fired:?}");
}
