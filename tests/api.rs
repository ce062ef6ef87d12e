//! End-to-end tests of the JobsService against the real Kafka-protocol broker
//! and MongoDB-protocol server (start them with `scripts/services.sh up`).

mod common;

use std::time::Duration;

use common::{
    EventReader, RawProducer, TestApp, advance, create_job, create_request, create_request_on,
    metric_value, scrape_metrics, scrape_when, spawn_app, spawn_app_on_clock, timestamp_in,
    wait_for_status,
};
use scheduler_service::{
    clock::ManualClock,
    config::vars,
    grpc::{
        proto,
        scheduler::v1::{self as events, job_events_client::JobEventsClient},
    },
    telemetry::metrics,
};
use tonic::Code;

/// Longest wait for an event that must come: a bound on a hang, generous
/// enough for a loaded two-core machine.
const EVENT_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn reflection_lists_the_service_and_health_reports_serving() {
    use tonic_reflection::pb::v1alpha;
    let app = spawn_app(&[]).await;

    let names = common::reflected_services(&app.channel).await;
    assert!(names.contains(&"proto.JobsService".to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    // grpcui and older grpcurl speak v1alpha; it must describe the service too.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "proto.JobsService".to_owned(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("a response");
    assert!(
        matches!(
            response.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                if !f.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );

    assert_eq!(
        common::jobs_service_health(&app.channel).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    app.stop().await;
}

#[tokio::test]
async fn create_get_and_list_with_pagination_on_polodb() {
    // The MongoDB-protocol test server ignores `sort` (real MongoDB honours
    // it), so here the pages are checked to partition the jobs; the order is
    // checked on PostgreSQL and on a real MongoDB below.
    create_get_and_list(&[], false).await;
}

#[tokio::test]
#[ignore = "needs a real MongoDB: set MONGODB_URI and run with --ignored"]
async fn create_get_and_list_with_pagination_on_a_real_mongodb() {
    let uri = std::env::var("MONGODB_URI").expect("MONGODB_URI names a real MongoDB");
    create_get_and_list(&[(vars::DATABASE_URI, &uri)], true).await;
}

#[tokio::test]
async fn create_get_and_list_with_pagination_on_postgres() {
    create_get_and_list(&[(vars::DATABASE_URI, &common::postgres_uri())], true).await;
}

async fn create_get_and_list(overrides: &[(&str, &str)], check_order: bool) {
    let overrides: Vec<(&str, &str)> = [(vars::LIST_MAX_PAGE_SIZE, "2")]
        .into_iter()
        .chain(overrides.iter().copied())
        .collect();
    let mut app = spawn_app(&overrides).await;
    let creates = EventReader::new(&app.settings.topics.job_create.name);
    // Three jobs far in the future, created out of schedule order.
    let mut ids = Vec::new();
    for (name, in_ms) in [("b", 3_600_000), ("a", 1_800_000), ("c", 7_200_000)] {
        let id = create_job(&mut app.client, create_request(name, in_ms)).await;
        assert_eq!(id.len(), 24, "ObjectId hex: {id}");
        ids.push(id);
    }

    let job = app
        .client
        .get_job(proto::GetJobRequest { id: ids[0].clone() })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.id, ids[0]);
    assert_eq!(job.name, "b");
    assert_eq!(job.description, "b description");
    assert_eq!(job.status(), proto::JobStatus::Scheduled);
    assert_eq!(job.job_type(), proto::JobType::Email);
    assert!(job.job_data.contains("SourceAddress"));
    assert!(job.created_time.is_some() && job.updated_time.is_some());
    assert_eq!(job.created_time, job.updated_time);

    let page1 = app
        .client
        .list_jobs(proto::ListJobsRequest {
            page: 1,
            size: 2,
            ..Default::default()
        })
        .await
        .expect("ListJobs")
        .into_inner();
    assert_eq!(
        (
            page1.total_count,
            page1.total_pages,
            page1.page,
            page1.size,
            page1.has_more
        ),
        (3, 2, 1, 2, true)
    );
    let page2 = app
        .client
        .list_jobs(proto::ListJobsRequest {
            page: 2,
            size: 2,
            ..Default::default()
        })
        .await
        .expect("ListJobs")
        .into_inner();
    assert_eq!((page2.total_count, page2.has_more), (3, false));
    let mut names: Vec<&str> = page1
        .jobs
        .iter()
        .chain(&page2.jobs)
        .map(|j| j.name.as_str())
        .collect();
    if check_order {
        assert_eq!(names, ["a", "b", "c"], "ordered by schedule time");
    }
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "c"], "the pages hold every job once");
    let page9 = app
        .client
        .list_jobs(proto::ListJobsRequest {
            page: 9,
            size: 2,
            ..Default::default()
        })
        .await
        .expect("ListJobs")
        .into_inner();
    assert!(page9.jobs.is_empty());
    assert_eq!(page9.total_count, 3);

    // Each create published one event keyed by the job id, with the contract's payload.
    for id in &ids {
        let (event, _) = creates.next_for(id, EVENT_TIMEOUT).await;
        let event = event.unwrap_or_else(|| panic!("create event for {id}"));
        assert_eq!(event.event.id, *id);
        assert_eq!(event.event.status, proto::JobStatus::Scheduled as i32);
        assert!(
            event.event.schedule_time.ends_with('Z'),
            "{}",
            event.event.schedule_time
        );
        assert_eq!(
            event.headers.get("event-kind").map(String::as_str),
            Some("create")
        );
    }
    app.stop().await;
}

/// Asserts that a call failed with `code` and a message mentioning `needle`.
fn expect_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err(&format!("expected {code:?} mentioning {needle:?}"));
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}

#[tokio::test]
async fn bad_requests_get_precise_error_codes() {
    let mut app = spawn_app(&[(vars::LIST_MAX_PAGE_SIZE, "50")]).await;
    let client = &mut app.client;

    let valid = create_request("x", 0);
    for (request, needle) in [
        (
            proto::CreateJobRequest {
                name: String::new(),
                ..valid.clone()
            },
            "name",
        ),
        (
            proto::CreateJobRequest {
                job_data: String::new(),
                ..valid.clone()
            },
            "job_data",
        ),
        (
            proto::CreateJobRequest {
                schedule_time: None,
                ..valid.clone()
            },
            "schedule_time",
        ),
        (
            proto::CreateJobRequest {
                job_type: 9,
                ..valid.clone()
            },
            "job_type",
        ),
        (
            proto::CreateJobRequest {
                job_data: "x".repeat(64 * 1024 + 1),
                ..valid.clone()
            },
            "job_data",
        ),
    ] {
        expect_code(
            client.create_job(request).await,
            Code::InvalidArgument,
            needle,
        );
    }

    let unknown = bson::oid::ObjectId::new().to_hex();
    for (id, code, needle) in [
        ("not-an-id", Code::InvalidArgument, "id"),
        ("", Code::InvalidArgument, "id"),
        (unknown.as_str(), Code::NotFound, unknown.as_str()),
    ] {
        let request = proto::GetJobRequest { id: id.to_owned() };
        expect_code(client.get_job(request).await, code, needle);
    }
    for (id, code, needle) in [
        (unknown.as_str(), Code::NotFound, unknown.as_str()),
        ("zz", Code::InvalidArgument, "id"),
    ] {
        let request = proto::DeleteJobRequest { id: id.to_owned() };
        expect_code(client.delete_job(request).await, code, needle);
    }

    let update = proto::UpdateJobRequest {
        id: unknown.clone(),
        name: "n".into(),
        description: String::new(),
        schedule_time: Some(timestamp_in(1000)),
        job_type: 0,
        job_data: "d".into(),
        ..Default::default()
    };
    for (request, code, needle) in [
        (update.clone(), Code::NotFound, unknown.as_str()),
        (
            proto::UpdateJobRequest {
                id: "bad".into(),
                ..update.clone()
            },
            Code::InvalidArgument,
            "id",
        ),
        (
            proto::UpdateJobRequest {
                name: " ".into(),
                ..update.clone()
            },
            Code::InvalidArgument,
            "name",
        ),
        (
            proto::UpdateJobRequest {
                schedule_time: None,
                ..update.clone()
            },
            Code::InvalidArgument,
            "schedule_time",
        ),
    ] {
        expect_code(client.update_job(request).await, code, needle);
    }

    for (page, size, needle) in [(0, 10, "page"), (1, 0, "size"), (1, 51, "at most 50")] {
        let request = proto::ListJobsRequest {
            page,
            size,
            ..Default::default()
        };
        expect_code(
            client.list_jobs(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_due_job_fires_once_and_a_future_one_waits_for_its_time() {
    let clock = ManualClock::at_wall_time();
    let mut app = spawn_app_on_clock(&[], &clock).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let later = create_job(
        &mut app.client,
        create_request_on(&clock, "later", 3_600_000),
    )
    .await;
    let past = create_job(&mut app.client, create_request_on(&clock, "past", -60_000)).await;

    // A time in the past fires at once; the job due in an hour waits, as
    // long as the clock stays where it is.
    let (fired, before) = runs.next_for(&past, EVENT_TIMEOUT).await;
    let fired = fired.expect("the past job's run event");
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(fired.event.status, proto::JobStatus::Running as i32);
    assert_eq!(
        fired.headers.get("event-kind").map(String::as_str),
        Some("run")
    );
    assert_eq!(
        fired.headers.get("firing-key"),
        Some(&format!("{past}:{}", fired.event.fire_token))
    );
    assert_eq!(
        status_of(&mut app, &later).await,
        proto::JobStatus::Scheduled
    );

    // A minute short of its time it still waits; at its time it fires.
    advance(&clock, 3_600_000 - 60_000);
    assert_eq!(
        status_of(&mut app, &later).await,
        proto::JobStatus::Scheduled
    );
    advance(&clock, 60_000);
    let (fired, between) = runs.next_for(&later, EVENT_TIMEOUT).await;
    assert!(between.is_empty(), "{between:?}");
    assert_eq!(fired.expect("run event").event.name, "later");
    assert_eq!(status_of(&mut app, &later).await, proto::JobStatus::Running);
    // The other ran an hour ago with no result since: its run timed out.
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &past,
            proto::JobStatus::Failed,
            EVENT_TIMEOUT
        )
        .await,
        proto::JobStatus::Failed
    );
    // Once everything in flight is done, the topic holds no other run.
    app.stop().await;
    let rest = runs.rest().await;
    assert!(rest.is_empty(), "runs after the last: {rest:?}");
}

/// The status of job `id`.
async fn status_of(app: &mut TestApp, id: &str) -> proto::JobStatus {
    app.client
        .get_job(proto::GetJobRequest { id: id.to_owned() })
        .await
        .expect("GetJob")
        .into_inner()
        .status()
}

#[tokio::test]
async fn update_reschedules_and_delete_cancels() {
    let clock = ManualClock::at_wall_time();
    let mut app = spawn_app_on_clock(&[], &clock).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let updates = EventReader::new(&app.settings.topics.job_update.name);
    let minutes = |n: i64| n * 60_000;

    let moved = create_job(
        &mut app.client,
        create_request_on(&clock, "moved", minutes(10)),
    )
    .await;
    let deleted = create_job(
        &mut app.client,
        create_request_on(&clock, "deleted", minutes(10)),
    )
    .await;
    let marker = create_job(
        &mut app.client,
        create_request_on(&clock, "marker", minutes(20)),
    )
    .await;

    let new_time = create_request_on(&clock, "moved", minutes(30)).schedule_time;
    app.client
        .update_job(proto::UpdateJobRequest {
            id: moved.clone(),
            name: "moved-renamed".into(),
            description: "later".into(),
            schedule_time: new_time,
            job_type: proto::JobType::Sms.into(),
            job_data: "{\"to\":\"+100\"}".into(),
            ..Default::default()
        })
        .await
        .expect("UpdateJob");
    let reply = app
        .client
        .delete_job(proto::DeleteJobRequest {
            id: deleted.clone(),
        })
        .await
        .expect("DeleteJob")
        .into_inner();
    assert!(reply.message.contains(&deleted));
    let gone = app
        .client
        .get_job(proto::GetJobRequest {
            id: deleted.clone(),
        })
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);

    let (update_event, _) = updates.next_for(&moved, EVENT_TIMEOUT).await;
    let update_event = update_event.expect("update event");
    assert_eq!(update_event.event.name, "moved-renamed");
    assert_eq!(update_event.event.job_type, proto::JobType::Sms as i32);

    // Past the old time of the moved and deleted jobs and the marker's:
    // only the marker fires; the moved job waits for its new time.
    advance(&clock, minutes(25));
    let (marker_run, before) = runs.next_for(&marker, EVENT_TIMEOUT).await;
    assert!(marker_run.is_some(), "marker fired");
    assert!(
        before.is_empty(),
        "fired before the marker: {:?}",
        before.iter().map(|e| &e.event.name).collect::<Vec<_>>()
    );
    assert_eq!(
        status_of(&mut app, &moved).await,
        proto::JobStatus::Scheduled
    );
    advance(&clock, minutes(5));
    let (moved_run, between) = runs.next_for(&moved, EVENT_TIMEOUT).await;
    let moved_run = moved_run.expect("moved job fired at its new time");
    assert!(between.is_empty(), "unexpected runs: {between:?}");
    assert_eq!(moved_run.event.name, "moved-renamed");
    // Nothing else ran: not the deleted job, not the moved one twice.
    app.stop().await;
    let rest = runs.rest().await;
    assert!(rest.is_empty(), "runs after the moved job's: {rest:?}");
}

#[tokio::test]
async fn results_from_kafka_finish_jobs_and_poison_messages_are_skipped() {
    let mut app = spawn_app(&[]).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let results_topic = app.settings.topics.job_run_result.clone();
    let producer = RawProducer::new();

    let ok_job = create_job(&mut app.client, create_request("ok", 0)).await;
    let failed_job = create_job(&mut app.client, create_request("fails", 0)).await;
    let unfired = runs
        .missing_of(&[&ok_job, &failed_job], EVENT_TIMEOUT)
        .await;
    assert!(unfired.is_empty(), "{unfired:?} not fired");
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &ok_job,
            proto::JobStatus::Running,
            Duration::from_secs(5)
        )
        .await,
        proto::JobStatus::Running
    );

    // A running job cannot be updated.
    let refused = app
        .client
        .update_job(proto::UpdateJobRequest {
            id: ok_job.clone(),
            name: "n".into(),
            description: String::new(),
            schedule_time: Some(timestamp_in(60_000)),
            job_type: 0,
            job_data: "d".into(),
            ..Default::default()
        })
        .await
        .expect_err("running job update refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // Poison first: not JSON, an unknown job, a non-result status, an empty message.
    producer
        .send(&results_topic, "x", b"this is not json")
        .await;
    let unknown = bson::oid::ObjectId::new().to_hex();
    producer
        .send(
            &results_topic,
            &unknown,
            format!(r#"{{"Id":"{unknown}","Status":4}}"#).as_bytes(),
        )
        .await;
    producer
        .send(
            &results_topic,
            &ok_job,
            format!(r#"{{"Id":"{ok_job}","Status":3}}"#).as_bytes(),
        )
        .await;
    producer.send(&results_topic, "x", b"").await;
    // Then valid results, in both spellings.
    producer
        .send(
            &results_topic,
            &ok_job,
            format!(r#"{{"Id":"{ok_job}","Status":4}}"#).as_bytes(),
        )
        .await;
    producer
        .send(
            &results_topic,
            &failed_job,
            format!(r#"{{"jobId":"{failed_job}","status":5,"name":"fails"}}"#).as_bytes(),
        )
        .await;

    let timeout = Duration::from_secs(60);
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &ok_job,
            proto::JobStatus::Succeeded,
            timeout
        )
        .await,
        proto::JobStatus::Succeeded
    );
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &failed_job,
            proto::JobStatus::Failed,
            timeout
        )
        .await,
        proto::JobStatus::Failed
    );

    // A finished job can be updated: it is scheduled again.
    app.client
        .update_job(proto::UpdateJobRequest {
            id: ok_job.clone(),
            name: "again".into(),
            description: String::new(),
            schedule_time: Some(timestamp_in(3_600_000)),
            job_type: 0,
            job_data: "d".into(),
            ..Default::default()
        })
        .await
        .expect("update of a finished job");
    let job = app
        .client
        .get_job(proto::GetJobRequest { id: ok_job.clone() })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.status(), proto::JobStatus::Scheduled);
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_store_answers_unavailable_from_the_database_timeout() {
    // Nothing listens on port 1: the store is unreachable. Each call is cut
    // by the database timeout (UNAVAILABLE), long before the request
    // timeout would cut it (CANCELLED).
    let mut app = spawn_app(&[
        (vars::DATABASE_URI, "mongodb://127.0.0.1:1/"),
        (vars::DATABASE_TIMEOUT_MS, "300"),
        (vars::GRPC_REQUEST_TIMEOUT_MS, "600000"),
    ])
    .await;
    let status = app
        .client
        .create_job(create_request("x", 1000))
        .await
        .expect_err("store down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let id = bson::oid::ObjectId::new().to_hex();
    for status in [
        app.client
            .get_job(proto::GetJobRequest { id: id.clone() })
            .await
            .expect_err("down"),
        app.client
            .list_jobs(proto::ListJobsRequest {
                page: 1,
                size: 10,
                ..Default::default()
            })
            .await
            .expect_err("down"),
        app.client
            .delete_job(proto::DeleteJobRequest { id })
            .await
            .expect_err("down"),
    ] {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_broker_does_not_lose_the_job() {
    // With the broker down, the job is stored and its event kept in the
    // outbox (the durability tests show it published once the broker is back).
    let mut app = spawn_app(&[
        (vars::KAFKA_BROKERS, "127.0.0.1:1"),
        (vars::KAFKA_MESSAGE_TIMEOUT_MS, "300"),
    ])
    .await;
    let id = app
        .client
        .create_job(create_request("kept", 3_600_000))
        .await
        .expect("CreateJob succeeds while the broker is down")
        .into_inner()
        .id;
    let job = app
        .client
        .get_job(proto::GetJobRequest { id })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.status(), proto::JobStatus::Scheduled);
    app.stop().await;
}

#[tokio::test]
async fn a_job_beyond_the_look_ahead_window_is_armed_by_the_loader_and_fires() {
    // A 1 s window: the job, due in an hour, is not armed at creation; when
    // the clock reaches it, the loader (every half window) arms it.
    let clock = ManualClock::at_wall_time();
    let mut app = spawn_app_on_clock(&[(vars::SCHEDULER_LOOK_AHEAD_SECS, "1")], &clock).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let id = create_job(&mut app.client, create_request_on(&clock, "far", 3_600_000)).await;
    let armed = || async {
        metric_value(
            &scrape_metrics(app.metrics_port).await,
            metrics::ARMED_TIMERS,
            &[],
        )
    };
    assert_eq!(armed().await, 0.0, "beyond the window, not armed");
    advance(&clock, 3_600_000);
    let (fired, _) = runs.next_for(&id, EVENT_TIMEOUT).await;
    assert_eq!(fired.expect("run event").event.name, "far");
    app.stop().await;
}

#[tokio::test]
async fn a_run_without_a_result_times_out_as_failed_with_an_event() {
    let mut app = spawn_app(&[(vars::SCHEDULER_RUN_TIMEOUT_SECS, "1")]).await;
    let updates = EventReader::new(&app.settings.topics.job_update.name);
    let id = create_job(&mut app.client, create_request("stuck", 0)).await;
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &id,
            proto::JobStatus::Failed,
            Duration::from_secs(20)
        )
        .await,
        proto::JobStatus::Failed
    );
    let (event, _) = updates.next_for(&id, EVENT_TIMEOUT).await;
    assert_eq!(
        event.expect("update event").event.status,
        proto::JobStatus::Failed as i32
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_found_too_late_under_skip_if_late_fails_without_running() {
    let clock = ManualClock::at_wall_time();
    let mut app = spawn_app_on_clock(
        &[(vars::SCHEDULER_MISFIRE_POLICY, "skip-if-late:60")],
        &clock,
    )
    .await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let updates = EventReader::new(&app.settings.topics.job_update.name);
    let missed = create_job(&mut app.client, create_request_on(&clock, "missed", 60_000)).await;
    let kept = create_job(&mut app.client, create_request_on(&clock, "kept", 600_000)).await;
    // Ten minutes pass at once (the service was paused): the first job is
    // nine minutes late, past the 60 s limit; the second is due right now.
    advance(&clock, 600_000);
    let (failed, _) = updates.next_for(&missed, EVENT_TIMEOUT).await;
    assert_eq!(
        failed.expect("update event").event.status,
        proto::JobStatus::Failed as i32
    );
    assert_eq!(status_of(&mut app, &missed).await, proto::JobStatus::Failed);
    let (ran, others) = runs.next_for(&kept, EVENT_TIMEOUT).await;
    assert!(ran.is_some(), "the job on time runs");
    app.stop().await;
    let all_runs: Vec<String> = others
        .into_iter()
        .chain(runs.rest().await)
        .map(|e| e.key)
        .collect();
    assert!(
        !all_runs.contains(&missed),
        "the late job ran: {all_runs:?}"
    );
}

#[tokio::test]
async fn a_timed_out_run_fires_again_under_a_new_token_with_the_retry_policy() {
    let clock = ManualClock::at_wall_time();
    let mut app = spawn_app_on_clock(
        &[
            // (The sweeper looks four times per timeout, in real time.)
            (vars::SCHEDULER_RUN_TIMEOUT_SECS, "1"),
            (vars::SCHEDULER_RUN_TIMEOUT_POLICY, "retry"),
        ],
        &clock,
    )
    .await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let updates = EventReader::new(&app.settings.topics.job_update.name);
    let id = create_job(&mut app.client, create_request_on(&clock, "retried", 0)).await;
    let (first, _) = runs.next_for(&id, EVENT_TIMEOUT).await;
    let first = first.expect("first run");
    // No result within the run timeout: scheduled again, and fired again.
    advance(&clock, 2_000);
    let (rescheduled, _) = updates.next_for(&id, EVENT_TIMEOUT).await;
    let rescheduled = rescheduled.expect("update event");
    assert_eq!(rescheduled.event.status, proto::JobStatus::Scheduled as i32);
    let (second, _) = runs.next_for(&id, EVENT_TIMEOUT).await;
    let second = second.expect("second run");
    assert_ne!(second.event.fire_token, first.event.fire_token);
    assert_eq!(second.event.fire_token, rescheduled.event.fire_token);
    app.stop().await;
    assert!(runs.rest().await.is_empty(), "two runs, no more");
}

/// A JobEvents client of `app`.
fn events_client(app: &TestApp) -> JobEventsClient<tonic::transport::Channel> {
    JobEventsClient::new(app.channel.clone())
}

#[tokio::test]
async fn a_running_job_can_be_deleted_and_its_late_results_are_ignored() {
    let mut app = spawn_app(&[]).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let results_topic = app.settings.topics.job_run_result.clone();
    let id = create_job(&mut app.client, create_request("deleted while running", 0)).await;
    assert!(runs.next_for(&id, EVENT_TIMEOUT).await.0.is_some(), "fired");
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &id,
            proto::JobStatus::Running,
            EVENT_TIMEOUT
        )
        .await,
        proto::JobStatus::Running
    );
    app.client
        .delete_job(proto::DeleteJobRequest { id: id.clone() })
        .await
        .expect("a RUNNING job can be deleted");

    // Its executor reports anyway, over gRPC and through Kafka.
    let reported = events_client(&app)
        .report_result(events::ReportResultRequest {
            id: id.clone(),
            status: proto::JobStatus::Succeeded.into(),
            scheduled_key: None,
            ..Default::default()
        })
        .await
        .expect_err("no such job any more");
    assert_eq!(reported.code(), Code::NotFound);
    let producer = RawProducer::new();
    producer
        .send(
            &results_topic,
            &id,
            format!(r#"{{"Id":"{id}","Status":4}}"#).as_bytes(),
        )
        .await;
    // A result for a live job sent after it shows when the first was handled
    // (one partition: in order).
    let marker = create_job(&mut app.client, create_request("marker", 0)).await;
    assert!(runs.next_for(&marker, EVENT_TIMEOUT).await.0.is_some());
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &marker,
            proto::JobStatus::Running,
            EVENT_TIMEOUT
        )
        .await,
        proto::JobStatus::Running
    );
    producer
        .send(
            &results_topic,
            &marker,
            format!(r#"{{"Id":"{marker}","Status":4}}"#).as_bytes(),
        )
        .await;
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &marker,
            proto::JobStatus::Succeeded,
            EVENT_TIMEOUT
        )
        .await,
        proto::JobStatus::Succeeded
    );
    let text = scrape_metrics(app.metrics_port).await;
    // The gRPC report and the Kafka result, both for the deleted job.
    assert_eq!(
        metric_value(
            &text,
            metrics::RESULTS_SKIPPED,
            &[("reason", "unknown_job")]
        ),
        2.0
    );
    let gone = app
        .client
        .get_job(proto::GetJobRequest { id })
        .await
        .expect_err("still deleted");
    assert_eq!(gone.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn results_through_kafka_change_only_a_running_job_and_each_is_counted() {
    let clock = ManualClock::at_wall_time();
    let mut app = spawn_app_on_clock(&[], &clock).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let topic = app.settings.topics.job_run_result.clone();
    let producer = RawProducer::new();
    let send = |id: &str, status: i32| format!(r#"{{"Id":"{id}","Status":{status}}}"#);

    let scheduled = create_job(
        &mut app.client,
        create_request_on(&clock, "later", 3_600_000),
    )
    .await;
    let running = create_job(&mut app.client, create_request_on(&clock, "running", 0)).await;
    let marker = create_job(&mut app.client, create_request_on(&clock, "marker", 0)).await;
    let unfired = runs.missing_of(&[&running, &marker], EVENT_TIMEOUT).await;
    assert!(unfired.is_empty(), "{unfired:?} not fired");
    for id in [&running, &marker] {
        assert_eq!(
            wait_for_status(
                &mut app.client,
                id,
                proto::JobStatus::Running,
                EVENT_TIMEOUT
            )
            .await,
            proto::JobStatus::Running
        );
    }
    let unknown = bson::oid::ObjectId::new().to_hex();
    let oversize = format!(
        r#"{{"Id":"{running}","Status":5,"pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    let messages = [
        (scheduled.as_str(), send(&scheduled, 4)), // not running: skipped
        (running.as_str(), send(&running, 4)),     // stored
        (running.as_str(), send(&running, 4)),     // a duplicate: consumed, no change
        (running.as_str(), send(&running, 5)),     // conflicting: skipped
        (unknown.as_str(), send(&unknown, 4)),     // unknown job: skipped
        (running.as_str(), oversize),              // over 64 KiB: malformed
        (marker.as_str(), send(&marker, 5)),       // the last, to know all were read
    ];
    for (key, payload) in &messages {
        producer.send(&topic, key, payload.as_bytes()).await;
    }
    // One partition: the results are handled in order, so the marker's
    // result being stored means every earlier one was handled.
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &marker,
            proto::JobStatus::Failed,
            EVENT_TIMEOUT
        )
        .await,
        proto::JobStatus::Failed
    );
    assert_eq!(
        status_of(&mut app, &scheduled).await,
        proto::JobStatus::Scheduled
    );
    assert_eq!(
        status_of(&mut app, &running).await,
        proto::JobStatus::Succeeded
    );
    let consumed = (metrics::RESULTS_CONSUMED, &[][..]);
    let text = scrape_when(app.metrics_port, consumed, 3.0, EVENT_TIMEOUT).await;
    let skipped = |reason| metric_value(&text, metrics::RESULTS_SKIPPED, &[("reason", reason)]);
    assert_eq!(metric_value(&text, metrics::RESULTS_CONSUMED, &[]), 3.0);
    assert_eq!(skipped("not_running"), 2.0);
    assert_eq!(skipped("unknown_job"), 1.0);
    assert_eq!(skipped("malformed"), 1.0);
    assert_eq!(metric_value(&text, metrics::JOBS_SUCCEEDED, &[]), 1.0);
    assert_eq!(
        metric_value(&text, metrics::JOBS_FAILED, &[("reason", "result")]),
        1.0
    );
    app.stop().await;
}
