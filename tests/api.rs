//! End-to-end tests of the JobsService against the real Kafka-protocol broker
//! and MongoDB-protocol server (start them with `scripts/services.sh up`).

mod common;

use std::time::Duration;

use common::{
    EventReader, RawProducer, create_job, create_request, spawn_app, timestamp_in, wait_for_status,
};
use scheduler_service::{config::vars, grpc::proto};
use tonic::Code;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

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
async fn create_get_and_list_with_pagination_on_mongodb() {
    // The MongoDB-protocol test server ignores `sort` (real MongoDB honours
    // it), so here the pages are checked to partition the jobs; the order is
    // checked on PostgreSQL below.
    create_get_and_list(&[], false).await;
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
        .list_jobs(proto::ListJobsRequest { page: 1, size: 2 })
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
        .list_jobs(proto::ListJobsRequest { page: 2, size: 2 })
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
        .list_jobs(proto::ListJobsRequest { page: 9, size: 2 })
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
        let request = proto::ListJobsRequest { page, size };
        expect_code(
            client.list_jobs(request).await,
            Code::InvalidArgument,
            needle,
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_job_fires_on_time_and_its_run_event_is_published_once() {
    let mut app = spawn_app(&[]).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let due_in_ms = 1_500;
    let request = create_request("on-time", due_in_ms);
    let due = request.schedule_time.expect("set");
    let id = create_job(&mut app.client, request).await;
    let past = create_job(&mut app.client, create_request("in-the-past", -60_000)).await;

    let (fired, _) = runs.next_for(&id, EVENT_TIMEOUT).await;
    let fired = fired.expect("run event");
    let due = chrono::DateTime::from_timestamp(due.seconds, u32::try_from(due.nanos).unwrap_or(0))
        .expect("time");
    let lateness = fired.received_at - due;
    assert!(
        lateness >= chrono::Duration::zero(),
        "fired {lateness} early"
    );
    assert!(
        lateness < chrono::Duration::seconds(1),
        "fired {lateness} late"
    );
    assert_eq!(fired.event.status, proto::JobStatus::Running as i32);
    assert_eq!(
        fired.headers.get("event-kind").map(String::as_str),
        Some("run")
    );
    assert_eq!(
        fired.headers.get("firing-key"),
        Some(&format!("{id}:{}", fired.event.fire_token))
    );
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &id,
            proto::JobStatus::Running,
            Duration::from_secs(5)
        )
        .await,
        proto::JobStatus::Running
    );
    assert_eq!(
        wait_for_status(
            &mut app.client,
            &past,
            proto::JobStatus::Running,
            Duration::from_secs(5)
        )
        .await,
        proto::JobStatus::Running
    );

    // Nothing else arrives for this job: it fired exactly once.
    let (again, _) = runs.next_for(&id, Duration::from_secs(2)).await;
    assert!(again.is_none(), "second run event {again:?}");
    app.stop().await;
}

#[tokio::test]
async fn update_reschedules_and_delete_cancels() {
    let mut app = spawn_app(&[]).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let updates = EventReader::new(&app.settings.topics.job_update.name);

    let moved = create_job(&mut app.client, create_request("moved", 800)).await;
    let deleted = create_job(&mut app.client, create_request("deleted", 800)).await;
    let marker = create_job(&mut app.client, create_request("marker", 1_600)).await;

    let new_time = timestamp_in(3_000);
    app.client
        .update_job(proto::UpdateJobRequest {
            id: moved.clone(),
            name: "moved-renamed".into(),
            description: "later".into(),
            schedule_time: Some(new_time),
            job_type: proto::JobType::Sms.into(),
            job_data: "{\"to\":\"+100\"}".into(),
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

    // The marker (due at 1.6 s) fires before the moved job (now 3 s); neither
    // the moved job's old time (0.8 s) nor the deleted job may fire.
    let (marker_run, before) = runs.next_for(&marker, EVENT_TIMEOUT).await;
    assert!(marker_run.is_some(), "marker fired");
    assert!(
        before.is_empty(),
        "fired before the marker: {:?}",
        before.iter().map(|e| &e.event.name).collect::<Vec<_>>()
    );
    let (moved_run, between) = runs.next_for(&moved, EVENT_TIMEOUT).await;
    let moved_run = moved_run.expect("moved job fired at its new time");
    assert!(between.is_empty(), "unexpected runs: {between:?}");
    assert_eq!(moved_run.event.name, "moved-renamed");
    let new_due = chrono::DateTime::from_timestamp(new_time.seconds, 0).expect("time");
    assert!(
        moved_run.received_at >= new_due,
        "moved job fired before its new time"
    );
    let (late, _) = runs.next_for(&deleted, Duration::from_secs(1)).await;
    assert!(late.is_none(), "deleted job fired");
    app.stop().await;
}

#[tokio::test]
async fn results_from_kafka_finish_jobs_and_poison_messages_are_skipped() {
    let mut app = spawn_app(&[]).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let results_topic = app.settings.topics.job_run_result.clone();
    let producer = RawProducer::new();

    let ok_job = create_job(&mut app.client, create_request("ok", 0)).await;
    let failed_job = create_job(&mut app.client, create_request("fails", 0)).await;
    for id in [&ok_job, &failed_job] {
        assert!(
            runs.next_for(id, EVENT_TIMEOUT).await.0.is_some(),
            "{id} fired"
        );
    }
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
async fn an_unreachable_store_answers_unavailable_quickly() {
    // Nothing listens on port 1: the store is unreachable.
    let mut app = spawn_app(&[
        (vars::DATABASE_URI, "mongodb://127.0.0.1:1/"),
        (vars::DATABASE_TIMEOUT_MS, "300"),
    ])
    .await;
    let started = std::time::Instant::now();
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
            .list_jobs(proto::ListJobsRequest { page: 1, size: 10 })
            .await
            .expect_err("down"),
        app.client
            .delete_job(proto::DeleteJobRequest { id })
            .await
            .expect_err("down"),
    ] {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
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
async fn a_job_beyond_the_look_ahead_window_is_loaded_and_fires_on_time() {
    // A 1 s window: the job (due in 3 s) is not armed at creation; the
    // loader (every half window) must arm it in time.
    let mut app = spawn_app(&[(vars::SCHEDULER_LOOK_AHEAD_SECS, "1")]).await;
    let runs = EventReader::new(&app.settings.topics.job_run.name);
    let request = create_request("far", 3_000);
    let due = request.schedule_time.expect("set");
    let id = create_job(&mut app.client, request).await;
    let (fired, _) = runs.next_for(&id, EVENT_TIMEOUT).await;
    let fired = fired.expect("run event");
    let due = chrono::DateTime::from_timestamp(due.seconds, u32::try_from(due.nanos).unwrap_or(0))
        .expect("time");
    let lateness = fired.received_at - due;
    assert!(
        lateness >= chrono::Duration::zero() && lateness < chrono::Duration::seconds(1),
        "lateness {lateness}"
    );
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
