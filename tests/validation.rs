//! Bad input over gRPC, end to end: control characters are INVALID_ARGUMENT
//! before any store sees them (PostgreSQL cannot store NUL in text, and its
//! refusal used to reach the client as INTERNAL), and an error repeats only
//! a short excerpt of a value it was sent.

mod common;

use common::{create_request, spawn_app};
use scheduler_service::{
    config::vars,
    grpc::{
        proto,
        scheduler::v1::{ReportResultRequest, job_events_client::JobEventsClient},
    },
};
use tonic::{Code, Status};

/// Longest error message a bad request is answered with, in bytes.
const SHORT_MESSAGE_BYTES: usize = 200;

fn assert_invalid(result: Result<impl std::fmt::Debug, Status>, field: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("invalid {field}: ")),
        "{status:?}"
    );
}

#[tokio::test]
async fn control_characters_are_invalid_arguments_on_postgres() {
    let mut app = spawn_app(&[(vars::DATABASE_URI, &common::postgres_uri())]).await;

    let refused = [
        ("name", "mail\0", "", "{}"),
        ("description", "mail", "\u{1b}[2J", "{}"),
        ("job_data", "mail", "", "{\"Message\":\"a\0b\"}"),
    ];
    for (field, name, description, job_data) in refused {
        let request = proto::CreateJobRequest {
            name: name.into(),
            description: description.into(),
            job_data: job_data.into(),
            ..create_request(field, 60_000)
        };
        assert_invalid(app.client.create_job(request).await, field);
    }

    // A multi-line description and control characters in job_data are
    // stored and read back as they were.
    let accepted = proto::CreateJobRequest {
        description: "line one\r\n\tline two\n".into(),
        job_data: "{\"Message\":\"bell \u{7} escape \u{1b}\"}".into(),
        ..create_request("multi-line", 60_000)
    };
    let id = common::create_job(&mut app.client, accepted.clone()).await;
    let job = app
        .client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .expect("GetJob")
        .into_inner();
    assert_eq!(job.description, accepted.description);
    assert_eq!(job.job_data, accepted.job_data);

    let nul_update = proto::UpdateJobRequest {
        id,
        name: "\0".into(),
        description: String::new(),
        schedule_time: accepted.schedule_time,
        job_type: accepted.job_type,
        job_data: accepted.job_data,
        ..Default::default()
    };
    assert_invalid(app.client.update_job(nul_update).await, "name");
    app.stop().await;
}

#[tokio::test]
async fn a_10_kb_bogus_id_is_answered_with_a_short_message() {
    let mut app = spawn_app(&[]).await;
    let bogus = "z".repeat(10 * 1024);
    let mut events = JobEventsClient::new(app.channel.clone());

    let answers = [
        app.client
            .get_job(proto::GetJobRequest { id: bogus.clone() })
            .await
            .map(drop),
        app.client
            .delete_job(proto::DeleteJobRequest { id: bogus.clone() })
            .await
            .map(drop),
        app.client
            .update_job(proto::UpdateJobRequest {
                id: bogus.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        events
            .report_result(ReportResultRequest {
                id: bogus.clone(),
                status: proto::JobStatus::Succeeded.into(),
                scheduled_key: None,
                ..Default::default()
            })
            .await
            .map(drop),
    ];
    for answer in answers {
        let status = answer.expect_err("a bogus id is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().len() < SHORT_MESSAGE_BYTES,
            "{} bytes: {}",
            status.message().len(),
            status.message()
        );
        assert!(
            status.message().contains("…\" (10240 bytes)"),
            "{}",
            status.message()
        );
    }
    app.stop().await;
}
