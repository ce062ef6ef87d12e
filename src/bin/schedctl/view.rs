//! What schedctl shows of each message: views of jobs, runs, events and
//! occurrences with the proto field names in snake_case, enums as their
//! lower-case names (`scheduled`, `email`, `catch_up`), and times in the
//! chosen zone. JSON output is these views; tables are made from them.

use chrono::{DateTime, FixedOffset, Local, SecondsFormat, Utc};
use prost_types::Timestamp;
use scheduler_service::grpc::{
    proto::{
        Job, JobRun, JobStatus, JobType, Occurrence, Recurrence, RetryPolicy, RunCause, RunOutcome,
    },
    scheduler::v1::{EventKind, JobEvent},
};
use serde::{Serialize, Serializer};

/// The zone times are shown in.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    /// This machine's time zone.
    Local,
    /// UTC (`--utc`).
    Utc,
}

/// A time in the chosen zone.
#[derive(Debug, Clone, Copy)]
pub struct Stamp(DateTime<FixedOffset>);

impl Stamp {
    /// RFC 3339, with milliseconds when there are any (`Z` for UTC).
    pub fn rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// Date and time to the second, for table columns.
    pub fn short(&self) -> String {
        self.0.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.rfc3339())
    }
}

impl Zone {
    /// `time` in this zone; none when unset (or out of chrono's range).
    pub fn stamp(self, time: Option<&Timestamp>) -> Option<Stamp> {
        let time = time?;
        let nanos = u32::try_from(time.nanos).ok()?;
        let utc = DateTime::<Utc>::from_timestamp(time.seconds, nanos)?;
        Some(Stamp(match self {
            Zone::Local => utc.with_timezone(&Local).fixed_offset(),
            Zone::Utc => utc.fixed_offset(),
        }))
    }
}

/// A proto enum's name without its prefix, in lower case
/// (`JOB_STATUS_SCHEDULED` → `scheduled`).
fn lower(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// A `JobStatus` value's name; the number for one this build does not know.
pub fn status_name(value: i32) -> String {
    JobStatus::try_from(value).map_or_else(
        |_| value.to_string(),
        |s| lower(s.as_str_name(), "JOB_STATUS_"),
    )
}

/// A `JobType` value's name.
pub fn job_type_name(value: i32) -> String {
    JobType::try_from(value).map_or_else(
        |_| value.to_string(),
        |t| lower(t.as_str_name(), "JOB_TYPE_"),
    )
}

/// An `EventKind` value's name.
pub fn event_kind_name(value: i32) -> String {
    EventKind::try_from(value).map_or_else(
        |_| value.to_string(),
        |k| lower(k.as_str_name(), "EVENT_KIND_"),
    )
}

/// A `RunCause` value's name.
fn cause_name(value: i32) -> String {
    RunCause::try_from(value).map_or_else(
        |_| value.to_string(),
        |c| lower(c.as_str_name(), "RUN_CAUSE_"),
    )
}

/// A `RunOutcome` value's name.
fn outcome_name(value: i32) -> String {
    RunOutcome::try_from(value).map_or_else(
        |_| value.to_string(),
        |o| lower(o.as_str_name(), "RUN_OUTCOME_"),
    )
}

/// A job. Unset messages and times, and an unset `last_outcome`, are left out.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_time: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_time: Option<Stamp>,
    pub status: String,
    pub job_type: String,
    pub job_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<RecurrenceView>,
    pub paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_occurrence: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_occurrence: Option<Stamp>,
    pub runs: i64,
    pub missed: i64,
    pub client_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryView>,
    pub attempt: i32,
    pub last_error: String,
}

/// A job's recurrence.
#[derive(Debug, Serialize)]
pub struct RecurrenceView {
    pub cron_expression: String,
    pub interval_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_time: Option<Stamp>,
    pub time_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Stamp>,
    pub max_runs: i64,
    pub jitter_ms: i64,
    pub dst_repeated: String,
    pub dst_skipped: String,
    pub catch_up: String,
    pub catch_up_max: i32,
    pub catch_up_window_seconds: i64,
    pub overlap: String,
}

/// A job's own retry policy; the fields it leaves unset are left out.
#[derive(Debug, Serialize)]
pub struct RetryView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_delay_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

impl From<&RetryPolicy> for RetryView {
    fn from(policy: &RetryPolicy) -> RetryView {
        RetryView {
            max_attempts: policy.max_attempts,
            first_delay_ms: policy.first_delay_ms,
            max_delay_ms: policy.max_delay_ms,
            multiplier: policy.multiplier,
            jitter: policy.jitter,
        }
    }
}

/// One run of a job.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub fire_token: i64,
    pub attempt: i32,
    pub cause: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_time: Option<Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_time: Option<Stamp>,
    pub lateness_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<Stamp>,
    pub outcome: String,
    pub error: String,
    pub executor: String,
}

/// A job event from Subscribe.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobView>,
    pub scheduled_key: i64,
    pub sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<Stamp>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub occurrences: Vec<Stamp>,
}

/// One occurrence of a schedule.
#[derive(Debug, Serialize)]
pub struct OccurrenceView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Stamp>,
    pub kind: String,
}

impl Zone {
    /// The view of `job`.
    pub fn job(self, job: &Job) -> JobView {
        JobView {
            id: job.id.clone(),
            name: job.name.clone(),
            description: job.description.clone(),
            schedule_time: self.stamp(job.schedule_time.as_ref()),
            created_time: self.stamp(job.created_time.as_ref()),
            updated_time: self.stamp(job.updated_time.as_ref()),
            status: status_name(job.status),
            job_type: job_type_name(job.job_type),
            job_data: job.job_data.clone(),
            recurrence: job.recurrence.as_ref().map(|r| self.recurrence(r)),
            paused: job.paused,
            next_occurrence: self.stamp(job.next_occurrence.as_ref()),
            last_outcome: (job.last_outcome != 0).then(|| status_name(job.last_outcome)),
            last_occurrence: self.stamp(job.last_occurrence.as_ref()),
            runs: job.runs,
            missed: job.missed,
            client_key: job.client_key.clone(),
            retry_policy: job.retry_policy.as_ref().map(RetryView::from),
            attempt: job.attempt,
            last_error: job.last_error.clone(),
        }
    }

    /// The view of a recurrence.
    fn recurrence(self, r: &Recurrence) -> RecurrenceView {
        RecurrenceView {
            cron_expression: r.cron_expression.clone(),
            interval_seconds: r.interval_seconds,
            anchor_time: self.stamp(r.anchor_time.as_ref()),
            time_zone: r.time_zone.clone(),
            start_time: self.stamp(r.start_time.as_ref()),
            end_time: self.stamp(r.end_time.as_ref()),
            max_runs: r.max_runs,
            jitter_ms: r.jitter_ms,
            dst_repeated: r.dst_repeated.clone(),
            dst_skipped: r.dst_skipped.clone(),
            catch_up: r.catch_up.clone(),
            catch_up_max: r.catch_up_max,
            catch_up_window_seconds: r.catch_up_window_seconds,
            overlap: r.overlap.clone(),
        }
    }

    /// The view of a run.
    pub fn run(self, run: &JobRun) -> RunView {
        RunView {
            fire_token: run.fire_token,
            attempt: run.attempt,
            cause: cause_name(run.cause),
            due_time: self.stamp(run.due_time.as_ref()),
            fired_time: self.stamp(run.fired_time.as_ref()),
            lateness_ms: run.lateness_ms,
            finished_time: self.stamp(run.finished_time.as_ref()),
            outcome: outcome_name(run.outcome),
            error: run.error.clone(),
            executor: run.executor.clone(),
        }
    }

    /// The view of an event.
    pub fn event(self, event: &JobEvent) -> EventView {
        EventView {
            kind: event_kind_name(event.kind),
            job: event.job.as_ref().map(|job| self.job(job)),
            scheduled_key: event.scheduled_key,
            sequence: event.sequence,
            occurrence: self.stamp(event.occurrence.as_ref()),
            occurrences: event
                .occurrences
                .iter()
                .filter_map(|time| self.stamp(Some(time)))
                .collect(),
        }
    }

    /// The view of an occurrence.
    pub fn occurrence(self, occurrence: &Occurrence) -> OccurrenceView {
        OccurrenceView {
            time: self.stamp(occurrence.time.as_ref()),
            kind: occurrence.kind.clone(),
        }
    }
}
