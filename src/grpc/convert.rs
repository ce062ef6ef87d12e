//! Conversions between proto messages and the domain. Requests become
//! domain values with `TryFrom`, failing with an error that names the field.

use chrono::{DateTime, SubsecRound, Utc};
use prost_types::Timestamp;

use super::{proto, recurrence::add_recurrence, retry::add_attempts};
use crate::domain::{
    Error, Excerpt, Field, Job, JobFilter, JobId, JobSpec, JobStatus, JobTally, JobType,
    ScheduleKind,
};

/// Parses a job id (24 hex digits). A bad id is repeated in the error only
/// as an [`Excerpt`].
pub fn parse_id(id: &str) -> Result<JobId, Error> {
    if id.is_empty() {
        return Err(Error::invalid(Field::Id, "must not be empty"));
    }
    JobId::parse_str(id).map_err(|_| {
        Error::invalid(
            Field::Id,
            format!("{} is not a 24-character hex ObjectId", Excerpt(id)),
        )
    })
}

/// A required timestamp as UTC, at the store's millisecond precision.
fn schedule_time(ts: Option<Timestamp>) -> Result<DateTime<Utc>, Error> {
    let ts = ts.ok_or_else(|| Error::invalid(Field::ScheduleTime, "is required"))?;
    time(Field::ScheduleTime, ts)
}

/// A timestamp of `field` as UTC, at the store's millisecond precision.
pub(super) fn time(field: Field, ts: Timestamp) -> Result<DateTime<Utc>, Error> {
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| Error::invalid(field, format!("nanos {} out of range", ts.nanos)))?;
    // Keep to the years any store represents exactly (0001-9999).
    DateTime::from_timestamp(ts.seconds, nanos)
        .filter(|t| (-62_135_596_800..=253_402_300_799).contains(&t.timestamp()))
        .map(|t| t.trunc_subsecs(3))
        .ok_or_else(|| Error::invalid(field, format!("{}s is out of range", ts.seconds)))
}

/// The filters of a ListJobs request (unset ones filter nothing).
pub fn filter_of(req: &proto::ListJobsRequest) -> Result<JobFilter, Error> {
    let status = req
        .status
        .map(|value| {
            JobStatus::from_i32(value)
                .ok_or_else(|| Error::invalid(Field::Status, format!("unknown job status {value}")))
        })
        .transpose()?;
    let kind = match req.schedule_kind.as_str() {
        "" => None,
        word => Some(word.parse::<ScheduleKind>()?),
    };
    JobFilter::new(
        status,
        req.job_type.map(job_type).transpose()?,
        kind,
        req.paused,
        Some(req.name_contains.clone()),
    )
}

fn job_type(value: i32) -> Result<JobType, Error> {
    JobType::from_i32(value)
        .ok_or_else(|| Error::invalid(Field::JobType, format!("unknown job type {value}")))
}

/// A time as the messages carry it.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl TryFrom<proto::CreateJobRequest> for JobSpec {
    type Error = Error;

    fn try_from(req: proto::CreateJobRequest) -> Result<Self, Error> {
        JobSpec {
            schedule_time: schedule_time(req.schedule_time)?,
            job_type: job_type(req.job_type)?,
            name: req.name,
            description: req.description,
            job_data: req.job_data,
        }
        .validated()
    }
}

impl TryFrom<proto::UpdateJobRequest> for (JobId, JobSpec) {
    type Error = Error;

    fn try_from(req: proto::UpdateJobRequest) -> Result<Self, Error> {
        let id = parse_id(&req.id)?;
        let spec = JobSpec {
            schedule_time: schedule_time(req.schedule_time)?,
            job_type: job_type(req.job_type)?,
            name: req.name,
            description: req.description,
            job_data: req.job_data,
        }
        .validated()?;
        Ok((id, spec))
    }
}

impl From<JobStatus> for proto::JobStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Unknown => proto::JobStatus::Unknown,
            JobStatus::Pending => proto::JobStatus::Pending,
            JobStatus::Scheduled => proto::JobStatus::Scheduled,
            JobStatus::Running => proto::JobStatus::Running,
            JobStatus::Succeeded => proto::JobStatus::Succeeded,
            JobStatus::Failed => proto::JobStatus::Failed,
        }
    }
}

/// Counts in the wire's signed numbers (none comes near `i64::MAX`).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl From<JobTally> for proto::CountJobsResponse {
    fn from(t: JobTally) -> Self {
        proto::CountJobsResponse {
            total: count(t.total),
            pending: count(t.pending),
            scheduled: count(t.scheduled),
            running: count(t.running),
            succeeded: count(t.succeeded),
            failed: count(t.failed),
            email: count(t.email),
            sms: count(t.sms),
            recurring: count(t.recurring),
            paused: count(t.paused),
        }
    }
}

impl From<Job> for proto::Job {
    fn from(job: Job) -> Self {
        let mut attempts = proto::Job::default();
        add_attempts(&mut attempts, &job);
        let mut wire = proto::Job {
            id: job.id.to_hex(),
            name: job.spec.name,
            description: job.spec.description,
            schedule_time: Some(timestamp(job.spec.schedule_time)),
            created_time: Some(timestamp(job.created_at)),
            updated_time: Some(timestamp(job.updated_at)),
            status: proto::JobStatus::from(job.status).into(),
            job_type: match job.spec.job_type {
                JobType::Email => proto::JobType::Email,
                JobType::Sms => proto::JobType::Sms,
            }
            .into(),
            job_data: job.spec.job_data,
            ..attempts
        };
        add_recurrence(&mut wire, job.recurrence.as_deref(), job.client_key);
        wire
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    fn create_request() -> proto::CreateJobRequest {
        proto::CreateJobRequest {
            name: "mail".into(),
            description: "d".into(),
            schedule_time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789,
            }),
            job_type: proto::JobType::Sms.into(),
            job_data: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn create_request_becomes_a_spec_at_millisecond_precision() {
        let spec = JobSpec::try_from(create_request()).unwrap();
        assert_eq!(spec.schedule_time.timestamp(), 1_700_000_000);
        assert_eq!(spec.schedule_time.timestamp_subsec_nanos(), 123_000_000);
        assert_eq!(spec.job_type, JobType::Sms);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let missing_time = proto::CreateJobRequest {
            schedule_time: None,
            ..create_request()
        };
        assert_eq!(
            JobSpec::try_from(missing_time).unwrap_err().invalid_field(),
            Field::ScheduleTime
        );
        let bad_nanos = proto::CreateJobRequest {
            schedule_time: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..create_request()
        };
        assert_eq!(
            JobSpec::try_from(bad_nanos).unwrap_err().invalid_field(),
            Field::ScheduleTime
        );
        let far = proto::CreateJobRequest {
            schedule_time: Some(Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..create_request()
        };
        assert_eq!(
            JobSpec::try_from(far).unwrap_err().invalid_field(),
            Field::ScheduleTime
        );
        let bad_type = proto::CreateJobRequest {
            job_type: 7,
            ..create_request()
        };
        assert_eq!(
            JobSpec::try_from(bad_type).unwrap_err().invalid_field(),
            Field::JobType
        );
        let no_name = proto::CreateJobRequest {
            name: String::new(),
            ..create_request()
        };
        assert_eq!(
            JobSpec::try_from(no_name).unwrap_err().invalid_field(),
            Field::Name
        );
        let update = proto::UpdateJobRequest {
            id: "nope".into(),
            ..Default::default()
        };
        assert_eq!(
            (<(JobId, JobSpec)>::try_from(update).unwrap_err()).invalid_field(),
            Field::Id
        );
        assert_eq!(parse_id("").unwrap_err().invalid_field(), Field::Id);
    }

    #[test]
    fn a_long_bad_id_is_repeated_only_in_part() {
        let bogus = "z".repeat(10 * 1024);
        let message = parse_id(&bogus).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
        assert!(message.starts_with("invalid id: \"zzz"), "{message}");
        assert!(message.contains("…\" (10240 bytes) is not"), "{message}");
        assert_eq!(
            parse_id("nope").unwrap_err().to_string(),
            "invalid id: \"nope\" is not a 24-character hex ObjectId"
        );
    }

    #[test]
    fn control_characters_in_a_request_are_invalid_arguments() {
        let nul_name = proto::CreateJobRequest {
            name: "mail\0".into(),
            ..create_request()
        };
        assert_eq!(
            JobSpec::try_from(nul_name).unwrap_err().invalid_field(),
            Field::Name
        );
        let update = proto::UpdateJobRequest {
            id: JobId::new().to_hex(),
            name: "mail".into(),
            description: "two\nlines".into(),
            schedule_time: create_request().schedule_time,
            job_type: 0,
            job_data: "{\"x\":\"\0\"}".into(),
            ..Default::default()
        };
        assert_eq!(
            (<(JobId, JobSpec)>::try_from(update).unwrap_err()).invalid_field(),
            Field::JobData
        );
    }

    #[test]
    fn job_converts_to_proto_with_every_field() {
        let spec = JobSpec::try_from(create_request()).unwrap();
        let job = Job::new_scheduled(spec, now());
        let wire = proto::Job::from(job.clone());
        assert_eq!(wire.id, job.id.to_hex());
        assert_eq!(wire.status, proto::JobStatus::Scheduled as i32);
        assert_eq!(wire.job_type, proto::JobType::Sms as i32);
        assert_eq!(wire.schedule_time.unwrap().nanos, 123_000_000);
        assert_eq!(
            wire.created_time.unwrap().seconds,
            job.created_at.timestamp()
        );
        assert_eq!(wire.job_data, "{}");
    }
}
