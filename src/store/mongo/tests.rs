//! Unit tests of the MongoDB store's document form and error classes.

use mongodb::error::{ErrorKind, RETRYABLE_WRITE_ERROR, WriteFailure};

use super::*;
use super::{codec::*, errors::*};
use crate::domain::now;
use crate::{
    domain::{JobSpec, JobType},
    store::Unreadable,
};

fn job() -> Job {
    Job::new_scheduled(
        JobSpec {
            name: "mail".into(),
            description: "weekly".into(),
            schedule_time: now(),
            job_type: JobType::Sms,
            job_data: r#"{"to":"x"}"#.into(),
        },
        now(),
    )
}

#[test]
fn document_round_trip_keeps_every_field() {
    let job = Job {
        status: JobStatus::Failed,
        version: 7,
        pending: PendingEvents {
            create: false,
            update: true,
            run: true,
            dead_letter: true,
            delete: true,
        },
        trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..job()
    };
    let document = job_to_document(&job);
    for key in [
        "_id",
        "name",
        "description",
        "scheduleTime",
        "createdAt",
        "updatedAt",
        "status",
        "jobType",
        "jobData",
        "scheduledKey",
        "version",
        "pendingCreate",
        "pendingUpdate",
        "pendingRun",
        "pendingDeadLetter",
        "traceParent",
    ] {
        assert!(document.contains_key(key), "missing {key}");
    }
    assert_eq!(document.get_i32("status").unwrap(), 5);
    assert_eq!(document.get_i32("jobType").unwrap(), 1);
    assert_eq!(document.get_i32("outbox").unwrap(), 1);
    assert_eq!(job_from_document(&document).unwrap(), job);
}

/// A server's command error with this code.
fn command_error(code: i32, name: &str) -> MongoError {
    let command = bson::from_document(doc! { "code": code, "codeName": name, "errmsg": name })
        .expect("a command error");
    MongoError::from(ErrorKind::Command(command))
}

/// A write error, or a write-concern error, with this code and labels.
fn write_failure(concern: bool, code: i32, labels: &[&str]) -> MongoError {
    let error = doc! { "code": code, "errmsg": "e", "errorLabels": labels };
    let failure = if concern {
        WriteFailure::WriteConcernError(bson::from_document(error).expect("wc error"))
    } else {
        WriteFailure::WriteError(bson::from_document(error).expect("write error"))
    };
    MongoError::from(ErrorKind::Write(failure))
}

#[test]
fn fail_over_shutdown_and_network_errors_are_unavailable_the_others_not() {
    let transient = [
        command_error(10107, "NotWritablePrimary"),
        command_error(13435, "NotPrimaryNoSecondaryOk"),
        command_error(189, "PrimarySteppedDown"),
        command_error(91, "ShutdownInProgress"),
        command_error(11600, "InterruptedAtShutdown"),
        command_error(6, "HostUnreachable"),
        command_error(89, "NetworkTimeout"),
        write_failure(true, 64, &[]),
        write_failure(true, 100, &[]),
        MongoError::from(std::io::ErrorKind::ConnectionReset),
    ];
    for err in transient {
        assert!(
            matches!(map_err(err.clone()), StoreError::Unavailable(_)),
            "{err}"
        );
    }
    let refused = [
        command_error(11000, "DuplicateKey"),
        command_error(2, "BadValue"),
        command_error(13, "Unauthorized"),
        write_failure(false, 11000, &[]),
        write_failure(false, 10107, &[]),
        MongoError::custom("a fault of the caller"),
    ];
    for err in refused {
        assert!(
            matches!(map_err(err.clone()), StoreError::Other(_)),
            "{err}"
        );
    }
}

#[test]
fn a_retryable_label_makes_an_error_transient() {
    let labelled = write_failure(true, 100, &[RETRYABLE_WRITE_ERROR]);
    assert!(has_transient_label(&labelled));
    assert!(!has_transient_label(&write_failure(true, 100, &[])));
    assert!(!has_transient_label(&write_failure(
        true,
        100,
        &["NoWritesPerformed"]
    )));
}

#[test]
fn a_document_with_a_bad_field_is_reported_as_corrupt() {
    let job = job();
    let mut document = job_to_document(&job);
    document.insert("status", 42);
    let err = job_from_document(&document).unwrap_err();
    assert_eq!(err, Unreadable::job(job.id, "status"));
    document.insert("_id", "not an ObjectId");
    let err = job_from_document(&document).unwrap_err();
    assert_eq!(err.id, None, "{err}");
}

#[test]
fn a_duplicate_key_on_mongodb_or_polodb_means_the_record_is_there() {
    let polodb = command_error(1, "duplicate key error collection: jobs_runs, index: _id_");
    assert!(already_there(&write_failure(false, 11000, &[])));
    assert!(already_there(&polodb));
    for other in [
        write_failure(false, 121, &[]),
        write_failure(true, 11000, &[]),
        command_error(1, "no handler found"),
    ] {
        assert!(!already_there(&other), "{other}");
    }
}

#[test]
fn the_paused_pattern_matches_the_stored_recurrence_of_a_paused_job_only() {
    use crate::domain::recurrence::{Recurrence, RecurrenceSpec};
    let (active, _) =
        Recurrence::start(RecurrenceSpec::every_minute(), now()).expect("a recurrence");
    let paused = Recurrence {
        paused: true,
        ..active.clone()
    };
    let pattern = regex::Regex::new(PAUSED).expect("a valid pattern");
    assert!(
        pattern.is_match(&paused.to_stored()),
        "{}",
        paused.to_stored()
    );
    assert!(
        !pattern.is_match(&active.to_stored()),
        "{}",
        active.to_stored()
    );
}
