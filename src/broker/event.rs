//! The job events published on the topics, as JSON. Field names follow the
//! other services of this system (`Id`, `Status`, ...); the run results read
//! back are in `run_result`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::EventKind;
use crate::domain::Job;

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
    /// names one firing, for deduplication. For a recurring job, the token
    /// of its run in flight when it has one ([`Job::current_fire_token`]): unique to
    /// each occurrence.
    #[serde(rename = "ScheduledKey")]
    pub fire_token: i64,
    /// Recurring jobs only: the occurrence (its nominal time, RFC 3339 UTC)
    /// the run in flight stands for, else the next one. Absent for one-shot
    /// jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<String>,
    /// Recurring jobs only, on a catch-up run under `once`: every occurrence
    /// the run stands for, in order. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<Vec<String>>,
    /// The attempt this firing is, from 2 on a retry of a failed run.
    /// Absent on a first attempt (so the article's events are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The error text of the job's last failed attempt, if its executor
    /// sent one (a dead-letter event says why the job failed). Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
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
            fire_token: job.current_fire_token(),
            occurrence: job.recurrence.as_ref().and_then(|rec| {
                rec.run
                    .as_ref()
                    .map(|run| run.occurrence)
                    .or(rec.next)
                    .map(rfc3339)
            }),
            occurrences: job
                .recurrence
                .as_ref()
                .and_then(|rec| rec.run.as_ref())
                .filter(|run| !run.stands_for.is_empty())
                .map(|run| run.stands_for.iter().copied().map(rfc3339).collect()),
            attempt: Some(job.attempt()).filter(|&n| n > 1),
            last_error: job.last_error().map(str::to_owned),
        }
    }
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
    fn a_retry_says_which_attempt_it_is() {
        let mut job = Job::new_scheduled(
            JobSpec {
                name: "job1".into(),
                description: String::new(),
                schedule_time: Utc::now(),
                job_type: JobType::Email,
                job_data: "{}".into(),
            },
            Utc::now(),
        );
        job.attempts = Some(Box::new(crate::domain::retry::Attempts {
            attempt: 3,
            ..Default::default()
        }));
        let value = serde_json::to_value(JobEvent::from(&job)).unwrap();
        assert_eq!(value["Attempt"], 3);
        assert!(value.get("LastError").is_none(), "no error sent");
    }
}
