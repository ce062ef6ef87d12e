//! The JSON forms of a job's runs and of a schedule's preview.

use super::*;

/// One run of a job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobRun {
    /// The firing's token (the run event's `ScheduledKey`).
    pub fire_token: i64,
    /// Its attempt, from 1.
    pub attempt: i32,
    /// Why it started.
    pub cause: RunCause,
    /// When it was due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_time: Option<DateTime<Utc>>,
    /// When it fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired_time: Option<DateTime<Utc>>,
    /// How late it fired.
    pub lateness_ms: i64,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<DateTime<Utc>>,
    /// How it ended, or `running`.
    pub outcome: RunOutcome,
    /// The error its executor reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The executor that reported its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

impl From<proto::JobRun> for JobRun {
    fn from(r: proto::JobRun) -> Self {
        JobRun {
            fire_token: r.fire_token,
            attempt: r.attempt,
            cause: RunCause::of(r.cause),
            due_time: time(r.due_time),
            fired_time: time(r.fired_time),
            lateness_ms: r.lateness_ms,
            finished_time: time(r.finished_time),
            outcome: RunOutcome::of(r.outcome),
            error: text(r.error),
            executor: text(r.executor),
        }
    }
}

/// A page of a job's runs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunsPage {
    /// Runs in all.
    pub total_count: i64,
    /// Pages in all.
    pub total_pages: i64,
    /// This page.
    pub page: i64,
    /// Items per page.
    pub size: i64,
    /// Whether a later page has runs.
    pub has_more: bool,
    /// The runs.
    pub runs: Vec<JobRun>,
}

impl From<proto::ListJobRunsResponse> for RunsPage {
    fn from(r: proto::ListJobRunsResponse) -> Self {
        RunsPage {
            total_count: r.total_count,
            total_pages: r.total_pages,
            page: r.page,
            size: r.size,
            has_more: r.has_more,
            runs: r.runs.into_iter().map(Into::into).collect(),
        }
    }
}

/// What to preview: a job's schedule (`id`) or a `recurrence`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PreviewRequest {
    /// A job whose schedule to preview.
    #[serde(default)]
    pub id: Option<String>,
    /// A schedule to preview.
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// How many occurrences (default 10).
    #[serde(default)]
    pub count: Option<i32>,
}

impl From<PreviewRequest> for proto::PreviewScheduleRequest {
    fn from(p: PreviewRequest) -> Self {
        proto::PreviewScheduleRequest {
            id: p.id.unwrap_or_default(),
            recurrence: p.recurrence.map(Into::into),
            count: p.count.unwrap_or_default(),
        }
    }
}

/// An occurrence of a schedule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Occurrence {
    /// When.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// `regular`, `repeated-first`, `repeated-second` or `shifted`.
    pub kind: String,
}

/// The next occurrences of a schedule.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// In time order.
    pub occurrences: Vec<Occurrence>,
    /// The schedule, its time zone and bounds in English words.
    #[serde(default)]
    pub description: String,
}

impl From<proto::Occurrence> for Occurrence {
    fn from(o: proto::Occurrence) -> Self {
        Occurrence {
            time: time(o.time),
            kind: o.kind,
        }
    }
}

impl From<proto::PreviewScheduleResponse> for Preview {
    fn from(p: proto::PreviewScheduleResponse) -> Self {
        Preview {
            occurrences: p.occurrences.into_iter().map(Into::into).collect(),
            description: p.description,
        }
    }
}
