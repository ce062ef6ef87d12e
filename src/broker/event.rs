//! The JSON carried on the topics. Field names follow the other services of
//! this system (`Id`, `Status`, ...); run results also accept the article's
//! lower-case form.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Job, JobId, ResultStatus};

/// Which topic an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A job was created (`topic-job-create`).
    Create,
    /// A job was updated (`topic-job-update`).
    Update,
    /// A job fired and must run now (`topic-job-run`).
    Run,
}

impl EventKind {
    /// Short lower-case name, for logs and message headers.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Update => "update",
            EventKind::Run => "run",
        }
    }
}

/// The payload of every produced event: one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobEvent {
    /// Job id, 24 hex digits.
    pub id: String,
    /// Job name.
    pub name: String,
    /// Job description.
    pub description: String,
    /// When the job is due, RFC 3339 UTC.
    pub schedule_time: String,
    /// When the job was created, RFC 3339 UTC.
    pub created_at: String,
    /// When the job last changed, RFC 3339 UTC.
    pub updated_at: String,
    /// Status number (see `JobStatus`).
    pub status: i32,
    /// Job type number (see `JobType`).
    pub job_type: i32,
    /// The executor's payload.
    pub job_data: String,
    /// The fire token, on the wire as `ScheduledKey`: (Id, ScheduledKey)
    /// names one firing, for deduplication.
    #[serde(rename = "ScheduledKey")]
    pub fire_token: i64,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl From<&Job> for JobEvent {
    fn from(job: &Job) -> Self {
        JobEvent {
            id: job.id.to_hex(),
            name: job.spec.name.clone(),
            description: job.spec.description.clone(),
            schedule_time: rfc3339(job.spec.schedule_time),
            created_at: rfc3339(job.created_at),
            updated_at: rfc3339(job.updated_at),
            status: job.status.as_i32(),
            job_type: job.spec.job_type.as_i32(),
            job_data: job.spec.job_data.clone(),
            fire_token: job.fire_token,
        }
    }
}

/// Largest run-result message that is parsed; anything bigger is poison.
pub const RUN_RESULT_MAX_BYTES: usize = 64 * 1024;

/// An executor's report on a run, from `topic-job-run-result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunResult {
    /// The job that ran.
    pub id: JobId,
    /// How it went.
    pub status: ResultStatus,
}

/// Why a run-result message was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunResultError {
    /// The message has no payload.
    #[error("empty message")]
    Empty,
    /// The payload is larger than [`RUN_RESULT_MAX_BYTES`].
    #[error("message of {0} bytes exceeds the {RUN_RESULT_MAX_BYTES}-byte limit")]
    TooLarge(usize),
    /// The payload is not the expected JSON.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// The id is not 24 hex digits.
    #[error("invalid job id {0:?}")]
    InvalidId(String),
    /// The status is not SUCCEEDED (4) or FAILED (5).
    #[error("status {0} is not a result (expected 4 or 5)")]
    NotAResult(i64),
}

#[derive(Deserialize)]
struct RunResultWire {
    #[serde(rename = "Id", alias = "jobId")]
    id: String,
    #[serde(rename = "Status", alias = "status")]
    status: i64,
}

/// Parses a run-result message: `{"Id": "...", "Status": 4}` or
/// `{"jobId": "...", "status": 4}`; other fields are ignored.
pub fn parse_run_result(payload: &[u8]) -> Result<RunResult, RunResultError> {
    if payload.is_empty() {
        return Err(RunResultError::Empty);
    }
    if payload.len() > RUN_RESULT_MAX_BYTES {
        return Err(RunResultError::TooLarge(payload.len()));
    }
    let wire: RunResultWire =
        serde_json::from_slice(payload).map_err(|e| RunResultError::Malformed(e.to_string()))?;
    let id = JobId::parse_str(&wire.id).map_err(|_| RunResultError::InvalidId(wire.id.clone()))?;
    let status = i32::try_from(wire.status)
        .ok()
        .and_then(ResultStatus::from_i32)
        .ok_or(RunResultError::NotAResult(wire.status))?;
    Ok(RunResult { id, status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobSpec, JobType};

    #[test]
    fn job_event_has_the_contract_keys_and_rfc3339_utc_times() {
        let time = DateTime::parse_from_rfc3339("2023-06-30T16:50:46.304Z")
            .unwrap()
            .to_utc();
        let mut job = Job::new_scheduled(
            JobSpec {
                name: "job1".into(),
                description: "d".into(),
                schedule_time: time,
                job_type: JobType::Sms,
                job_data: "{}".into(),
            },
            time,
        );
        job.fire_token = 42;
        let value = serde_json::to_value(JobEvent::from(&job)).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "CreatedAt",
                "Description",
                "Id",
                "JobData",
                "JobType",
                "Name",
                "ScheduleTime",
                "ScheduledKey",
                "Status",
                "UpdatedAt"
            ]
        );
        assert_eq!(object["Id"], job.id.to_hex());
        assert_eq!(object["ScheduleTime"], "2023-06-30T16:50:46.304Z");
        assert_eq!(object["Status"], 2);
        assert_eq!(object["JobType"], 1);
        assert_eq!(object["ScheduledKey"], 42);
    }

    #[test]
    fn both_result_spellings_are_accepted() {
        let id = JobId::new();
        let upper = format!(r#"{{"Id":"{id}","Status":4}}"#);
        let lower = format!(r#"{{"jobId":"{id}","status":5,"name":"job1","scheduledKey":1}}"#);
        assert_eq!(
            parse_run_result(upper.as_bytes()),
            Ok(RunResult {
                id,
                status: ResultStatus::Succeeded
            })
        );
        assert_eq!(
            parse_run_result(lower.as_bytes()),
            Ok(RunResult {
                id,
                status: ResultStatus::Failed
            })
        );
    }

    #[test]
    fn poison_results_are_rejected_with_a_reason() {
        let id = JobId::new();
        assert_eq!(parse_run_result(b""), Err(RunResultError::Empty));
        assert!(matches!(
            parse_run_result(b"not json"),
            Err(RunResultError::Malformed(_))
        ));
        assert!(matches!(
            parse_run_result(br#"{"Status":4}"#),
            Err(RunResultError::Malformed(_))
        ));
        assert_eq!(
            parse_run_result(br#"{"Id":"xyz","Status":4}"#),
            Err(RunResultError::InvalidId("xyz".into()))
        );
        let running = format!(r#"{{"Id":"{id}","Status":3}}"#);
        assert_eq!(
            parse_run_result(running.as_bytes()),
            Err(RunResultError::NotAResult(3))
        );
        let huge = vec![b' '; RUN_RESULT_MAX_BYTES + 1];
        assert_eq!(
            parse_run_result(&huge),
            Err(RunResultError::TooLarge(RUN_RESULT_MAX_BYTES + 1))
        );
    }
}
