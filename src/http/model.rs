//! The JSON forms of `proto.JobsService`'s messages, and their conversions
//! to and from the messages.
//!
//! One convention, documented in the README: field names are the proto
//! field names (snake case), so an error's `field` is the name in the
//! body; enums are lower-case words (`scheduled`, `email`, `catch_up`);
//! times are RFC 3339 strings; durations are whole numbers whose name
//! carries the unit (`interval_seconds`, `jitter_ms`); a field that is not
//! set is left out. A request's unset field means what the unset proto
//! field means (its documented default).

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod runs;
mod stats;

use crate::{
    grpc::{proto, scheduler::v1 as events, timestamp},
    telemetry::recent::MinuteSummary,
};
pub use runs::{JobRun, Occurrence, Preview, PreviewRequest, RunsPage};
pub use stats::{FiringMinute, Firings, JobCounts, Session, StatusCounts, TypeCounts};

/// A message's time, if it has one the JSON form can show.
fn time(ts: Option<Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// A string field of a message: left out when empty.
fn text(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// A number field of a message: left out when zero.
fn number<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

/// Defines a JSON enum mirroring a proto enum: its words, and conversions
/// from and to the wire number (`Unknown`, or the variant named after
/// `else`, for a number it does not know).
///
/// A word is matched as a token tree, not a `literal` fragment: a fragment
/// reaches the derives wrapped in an invisible group, which serde sees
/// through but utoipa does not (the document would list the variants' names).
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident => $wire:path, else $fallback:ident {
        $($(#[$variant_doc:meta])* $word:ident = $variant:ident as $text:tt),+ $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $(
                $(#[$variant_doc])*
                #[allow(missing_docs)]
                #[serde(rename = $text)]
                $word,
            )+
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                match value {
                    $($name::$word => <$wire>::$variant as i32,)+
                }
            }
        }

        impl $name {
            /// The JSON word of a wire number.
            pub fn of(value: i32) -> $name {
                match <$wire>::try_from(value) {
                    $(Ok(<$wire>::$variant) => $name::$word,)+
                    #[allow(unreachable_patterns)]
                    _ => $name::$fallback,
                }
            }

            /// Its word.
            pub fn word(self) -> &'static str {
                match self {
                    $($name::$word => $text,)+
                }
            }
        }
    };
    ($(#[$doc:meta])* $name:ident => $wire:path { $($variants:tt)+ }) => {
        wire_enum!($(#[$doc])* $name => $wire, else Unknown { $($variants)+ });
    };
}

wire_enum!(
    /// A job's status.
    JobStatus => proto::JobStatus {
        Unknown = Unknown as "unknown",
        Pending = Pending as "pending",
        Scheduled = Scheduled as "scheduled",
        Running = Running as "running",
        Succeeded = Succeeded as "succeeded",
        Failed = Failed as "failed",
    }
);

// The service sends no other type, so there is no `unknown` word: a number
// it does not know reads as email.
wire_enum!(
    /// What kind of work a job is.
    JobType => proto::JobType, else Email {
        /// Send an email.
        Email = Email as "email",
        /// Send a text message.
        Sms = Sms as "sms",
    }
);

wire_enum!(
    /// Why a run started.
    RunCause => proto::RunCause {
        Unknown = Unknown as "unknown",
        Scheduled = Scheduled as "scheduled",
        Retry = Retry as "retry",
        CatchUp = CatchUp as "catch_up",
        Manual = Manual as "manual",
    }
);

wire_enum!(
    /// How a run ended, or `running`.
    RunOutcome => proto::RunOutcome {
        Unknown = Unknown as "unknown",
        Running = Running as "running",
        Succeeded = Succeeded as "succeeded",
        Failed = Failed as "failed",
        TimedOut = TimedOut as "timed_out",
        Superseded = Superseded as "superseded",
    }
);

/// A retry policy; an unset field takes the service's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    /// Delay before the first retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_delay_ms: Option<i64>,
    /// Largest delay between attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<i64>,
    /// Factor from one delay to the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Share of a delay drawn at random (0 to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

impl From<RetryPolicy> for proto::RetryPolicy {
    fn from(p: RetryPolicy) -> Self {
        proto::RetryPolicy {
            max_attempts: p.max_attempts,
            first_delay_ms: p.first_delay_ms,
            max_delay_ms: p.max_delay_ms,
            multiplier: p.multiplier,
            jitter: p.jitter,
        }
    }
}

impl From<proto::RetryPolicy> for RetryPolicy {
    fn from(p: proto::RetryPolicy) -> Self {
        RetryPolicy {
            max_attempts: p.max_attempts,
            first_delay_ms: p.first_delay_ms,
            max_delay_ms: p.max_delay_ms,
            multiplier: p.multiplier,
            jitter: p.jitter,
        }
    }
}

/// A recurring schedule: `cron_expression` or `interval_seconds`, and its
/// bounds and policies (README, "Recurring jobs").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recurrence {
    /// A cron expression (five or six fields, or a nickname).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron_expression: Option<String>,
    /// Seconds between occurrences of an interval schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i64>,
    /// An occurrence of an interval schedule (default: creation time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_time: Option<DateTime<Utc>>,
    /// IANA time zone of a cron schedule (default `UTC`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// No occurrence before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// No occurrence after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// At most this many runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<i64>,
    /// Each occurrence fires up to this much later, at random.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<i64>,
    /// A local time that occurs twice: `first`, `last` or `both`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_repeated: Option<String>,
    /// A local time that does not occur: `next-valid` or `skip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_skipped: Option<String>,
    /// Missed occurrences: `skip`, `once` or `each`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
    /// At most this many caught up with `each`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up_max: Option<i32>,
    /// Only occurrences missed within this window are caught up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up_window_seconds: Option<i64>,
    /// An occurrence due while a run is in flight: `skip`, `keep-one` or `run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlap: Option<String>,
}

impl From<Recurrence> for proto::Recurrence {
    fn from(r: Recurrence) -> Self {
        proto::Recurrence {
            cron_expression: r.cron_expression.unwrap_or_default(),
            interval_seconds: r.interval_seconds.unwrap_or_default(),
            anchor_time: r.anchor_time.map(timestamp),
            time_zone: r.time_zone.unwrap_or_default(),
            start_time: r.start_time.map(timestamp),
            end_time: r.end_time.map(timestamp),
            max_runs: r.max_runs.unwrap_or_default(),
            jitter_ms: r.jitter_ms.unwrap_or_default(),
            dst_repeated: r.dst_repeated.unwrap_or_default(),
            dst_skipped: r.dst_skipped.unwrap_or_default(),
            catch_up: r.catch_up.unwrap_or_default(),
            catch_up_max: r.catch_up_max.unwrap_or_default(),
            catch_up_window_seconds: r.catch_up_window_seconds.unwrap_or_default(),
            overlap: r.overlap.unwrap_or_default(),
        }
    }
}

impl From<proto::Recurrence> for Recurrence {
    fn from(r: proto::Recurrence) -> Self {
        Recurrence {
            cron_expression: text(r.cron_expression),
            interval_seconds: number(r.interval_seconds),
            anchor_time: time(r.anchor_time),
            time_zone: text(r.time_zone),
            start_time: time(r.start_time),
            end_time: time(r.end_time),
            max_runs: number(r.max_runs),
            jitter_ms: number(r.jitter_ms),
            dst_repeated: text(r.dst_repeated),
            dst_skipped: text(r.dst_skipped),
            catch_up: text(r.catch_up),
            catch_up_max: number(r.catch_up_max),
            catch_up_window_seconds: number(r.catch_up_window_seconds),
            overlap: text(r.overlap),
        }
    }
}

/// A job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// The job's id (24 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// When it fires (a recurring job: its current occurrence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_time: Option<DateTime<Utc>>,
    /// When it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_time: Option<DateTime<Utc>>,
    /// Its status.
    pub status: JobStatus,
    /// Its kind of work.
    pub job_type: JobType,
    /// What the executor needs (JSON text, opaque to the service).
    pub job_data: String,
    /// Its schedule, when it recurs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// Whether a recurring job is paused.
    pub paused: bool,
    /// A recurring job's next occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_occurrence: Option<DateTime<Utc>>,
    /// How a recurring job's last occurrence ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<JobStatus>,
    /// A recurring job's last occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_occurrence: Option<DateTime<Utc>>,
    /// Occurrences run.
    pub runs: i64,
    /// Occurrences missed.
    pub missed: i64,
    /// The key it was created with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Its own retry policy, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// The attempt of its current or last run.
    pub attempt: i32,
    /// The error its last failed attempt reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<proto::Job> for Job {
    fn from(j: proto::Job) -> Self {
        Job {
            id: j.id,
            name: j.name,
            description: j.description,
            schedule_time: time(j.schedule_time),
            created_time: time(j.created_time),
            updated_time: time(j.updated_time),
            status: JobStatus::of(j.status),
            job_type: JobType::of(j.job_type),
            job_data: j.job_data,
            recurrence: j.recurrence.map(Into::into),
            paused: j.paused,
            next_occurrence: time(j.next_occurrence),
            last_outcome: number(j.last_outcome).map(JobStatus::of),
            last_occurrence: time(j.last_occurrence),
            runs: j.runs,
            missed: j.missed,
            client_key: text(j.client_key),
            retry_policy: j.retry_policy.map(Into::into),
            attempt: j.attempt,
            last_error: text(j.last_error),
        }
    }
}

/// A job's client fields, as a creation gives them and an update replaces
/// them all.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobFields {
    /// Its name.
    #[schema(min_length = 1)]
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// When it fires (a recurring job may leave it out).
    #[serde(default)]
    pub schedule_time: Option<DateTime<Utc>>,
    /// Its kind of work.
    pub job_type: JobType,
    /// What the executor needs (JSON text).
    #[schema(min_length = 1)]
    pub job_data: String,
    /// Its schedule, to make it recur; left out of an update, the job
    /// becomes one-shot.
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// Its own retry policy; left out, the service's default applies.
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
}

/// A job to create: its fields and, to make the creation idempotent, a
/// key (or the `Idempotency-Key` header).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateJob {
    /// The job's fields.
    #[serde(flatten)]
    pub job: JobFields,
    /// The key.
    #[serde(default)]
    pub client_key: Option<String>,
}

impl From<CreateJob> for proto::CreateJobRequest {
    fn from(create: CreateJob) -> Self {
        let update = create.job.into_request(String::new());
        proto::CreateJobRequest {
            name: update.name,
            description: update.description,
            schedule_time: update.schedule_time,
            job_type: update.job_type,
            job_data: update.job_data,
            recurrence: update.recurrence,
            client_key: create.client_key.unwrap_or_default(),
            retry_policy: update.retry_policy,
        }
    }
}

impl JobFields {
    /// The UpdateJob request that gives job `id` these fields.
    pub fn into_request(self, id: String) -> proto::UpdateJobRequest {
        proto::UpdateJobRequest {
            id,
            name: self.name,
            description: self.description,
            schedule_time: self.schedule_time.map(timestamp),
            job_type: self.job_type.into(),
            job_data: self.job_data,
            recurrence: self.recurrence.map(Into::into),
            retry_policy: self.retry_policy.map(Into::into),
        }
    }
}

/// A created job's id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// The job's id.
    pub id: String,
}

/// What an update or a deletion says.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// In words.
    pub message: String,
}

/// Which page to list.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The page, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Items per page (default 20; at most `LIST_MAX_PAGE_SIZE`).
    #[param(minimum = 1)]
    pub size: Option<i64>,
}

/// Which jobs to list: a page of those the filters admit (each left out
/// filters nothing).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// The page, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Items per page (default 20; at most `LIST_MAX_PAGE_SIZE`).
    #[param(minimum = 1)]
    pub size: Option<i64>,
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Only one-shot (`once`) or recurring (`recurring`) jobs (empty: both).
    #[param(pattern = "^(once|recurring)?$")]
    pub schedule_kind: Option<String>,
    /// Only jobs whose name contains this text, ignoring case.
    pub name_contains: Option<String>,
    /// `true`: only paused recurring jobs; `false`: every job not paused
    /// (one-shot jobs included).
    pub paused: Option<bool>,
}

impl JobsQuery {
    /// The ListJobs request of this query, on page `page` of `size`.
    pub fn into_request(self, page: i64, size: i64) -> proto::ListJobsRequest {
        proto::ListJobsRequest {
            page,
            size,
            status: self.status.map(Into::into),
            job_type: self.job_type.map(Into::into),
            schedule_kind: self.schedule_kind.unwrap_or_default(),
            name_contains: self.name_contains.unwrap_or_default(),
            paused: self.paused,
        }
    }
}

/// A page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobsPage {
    /// Jobs in all.
    pub total_count: i64,
    /// Pages in all.
    pub total_pages: i64,
    /// This page.
    pub page: i64,
    /// Items per page.
    pub size: i64,
    /// Whether a later page has jobs.
    pub has_more: bool,
    /// The jobs, by schedule time.
    pub jobs: Vec<Job>,
}

impl From<proto::ListJobsResponse> for JobsPage {
    fn from(r: proto::ListJobsResponse) -> Self {
        JobsPage {
            total_count: r.total_count,
            total_pages: r.total_pages,
            page: r.page,
            size: r.size,
            has_more: r.has_more,
            jobs: r.jobs.into_iter().map(Into::into).collect(),
        }
    }
}

wire_enum!(
    /// What kind of change an event announces (`unknown`: unspecified).
    EventKind => events::EventKind {
        Unknown = Unspecified as "unknown",
        Create = Create as "create",
        Update = Update as "update",
        Run = Run as "run",
        DeadLetter = DeadLetter as "dead_letter",
        Delete = Delete as "delete",
        Result = Result as "result",
    }
);

/// One event of the stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// What changed.
    pub kind: EventKind,
    /// The job as the change left it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// A run event's fire token (the Kafka event's `ScheduledKey`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_key: Option<i64>,
    /// Its place in a named subscription's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// A recurring job's occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<DateTime<Utc>>,
    /// Every occurrence a catch-up run stands for.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub occurrences: Vec<DateTime<Utc>>,
}

impl From<events::JobEvent> for JobEvent {
    fn from(e: events::JobEvent) -> Self {
        JobEvent {
            kind: EventKind::of(e.kind),
            job: e.job.map(Into::into),
            scheduled_key: number(e.scheduled_key),
            sequence: number(e.sequence),
            occurrence: time(e.occurrence),
            occurrences: e
                .occurrences
                .into_iter()
                .filter_map(|t| time(Some(t)))
                .collect(),
        }
    }
}

/// The notice that events were missed (a subscriber that fell behind).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Lagged {
    /// How many.
    pub missed: u64,
}

impl From<events::Lagged> for Lagged {
    fn from(l: events::Lagged) -> Self {
        Lagged { missed: l.missed }
    }
}
