//! The request messages built from the command line: every flag goes to its
//! field as it is, and a flag left out leaves its field unset, so that the
//! service applies its defaults and its rules.

use std::{io::Read, path::Path};

use scheduler_service::{
    grpc::{
        proto::{
            CreateJobRequest, JobStatus, ListJobsRequest, PreviewScheduleRequest, UpdateJobRequest,
        },
        scheduler::v1::{EventKind, ReportResultRequest, SubscribeRequest},
    },
    http::model::{CreateJob, JobFields, JobType, PreviewRequest, Recurrence, RetryPolicy},
};

use crate::{
    args::{
        CreateArgs, EventKindArg, JobArgs, JobTypeArg, KindArg, ListArgs, PreviewArgs,
        RecurrenceArgs, ReportArgs, ResultStatus, RetryArgs, StatusArg, UpdateArgs, WatchArgs,
    },
    errors::CliError,
};

/// CreateJob's request.
pub fn create(args: CreateArgs) -> Result<CreateJobRequest, CliError> {
    let create = CreateJob {
        job: fields(args.job)?,
        client_key: args.client_key,
    };
    Ok(create.into())
}

/// UpdateJob's request.
pub fn update(args: UpdateArgs) -> Result<UpdateJobRequest, CliError> {
    Ok(fields(args.job)?.into_request(args.id))
}

/// The job's fields of the flags, as the HTTP API's JSON has them.
fn fields(job: JobArgs) -> Result<JobFields, CliError> {
    Ok(JobFields {
        job_data: job_data(&job)?,
        name: job.name.unwrap_or_default(),
        description: job.description.unwrap_or_default(),
        schedule_time: job.at,
        job_type: job.job_type.into(),
        recurrence: recurrence(job.recurrence),
        retry_policy: retry_policy(job.retry),
    })
}

/// PreviewSchedule's request: the job, or the recurrence of the flags.
pub fn preview(args: PreviewArgs) -> PreviewScheduleRequest {
    PreviewRequest {
        id: args.id,
        recurrence: recurrence(args.recurrence),
        count: args.count,
    }
    .into()
}

/// Subscribe's request.
pub fn subscribe(args: &WatchArgs) -> SubscribeRequest {
    SubscribeRequest {
        kinds: args
            .kind
            .iter()
            .map(|kind| EventKind::from(*kind).into())
            .collect(),
        job_types: args
            .job_type
            .iter()
            .map(|job_type| i32::from(JobType::from(*job_type)))
            .collect(),
        subscription: args.subscription.clone().unwrap_or_default(),
    }
}

/// ReportResult's request.
pub fn report(args: ReportArgs) -> ReportResultRequest {
    let status = match args.status {
        ResultStatus::Succeeded => JobStatus::Succeeded,
        ResultStatus::Failed => JobStatus::Failed,
    };
    ReportResultRequest {
        id: args.id,
        status: status.into(),
        scheduled_key: args.scheduled_key,
        error: args.error,
        executor: args.executor,
        r#final: args.final_,
        retry_after_ms: args.retry_after_ms,
    }
}

/// The job's payload: `--data`, the file of `--data-file` (`-`: standard
/// input), or empty.
fn job_data(job: &JobArgs) -> Result<String, CliError> {
    match (&job.data, &job.data_file) {
        (Some(data), _) => Ok(data.clone()),
        (None, Some(path)) => read_data(path),
        (None, None) => Ok(String::new()),
    }
}

/// The text of `path`, or of standard input for `-`.
fn read_data(path: &Path) -> Result<String, CliError> {
    let input_error = |source| CliError::Input {
        what: format!("--data-file {}", path.display()),
        source,
    };
    if path == Path::new("-") {
        let mut data = String::new();
        std::io::stdin()
            .read_to_string(&mut data)
            .map_err(input_error)?;
        return Ok(data);
    }
    std::fs::read_to_string(path).map_err(input_error)
}

/// The recurrence of the flags; none when no recurrence flag is given.
fn recurrence(args: RecurrenceArgs) -> Option<Recurrence> {
    let recurrence = Recurrence {
        cron_expression: args.cron,
        interval_seconds: args.every,
        anchor_time: args.anchor,
        time_zone: args.time_zone,
        start_time: args.start,
        end_time: args.end,
        max_runs: args.max_runs,
        jitter_ms: args.jitter_ms,
        dst_repeated: args.dst_repeated,
        dst_skipped: args.dst_skipped,
        catch_up: args.catch_up,
        catch_up_max: args.catch_up_max,
        catch_up_window_seconds: args.catch_up_window_secs,
        overlap: args.overlap,
    };
    (recurrence != Recurrence::default()).then_some(recurrence)
}

/// The retry policy of the flags; none when no retry flag is given.
fn retry_policy(args: RetryArgs) -> Option<RetryPolicy> {
    let policy = RetryPolicy {
        max_attempts: args.max_attempts,
        first_delay_ms: args.first_delay_ms,
        max_delay_ms: args.max_delay_ms,
        multiplier: args.multiplier,
        jitter: args.retry_jitter,
    };
    (policy != RetryPolicy::default()).then_some(policy)
}

/// The filters of a `list`, on no page yet.
impl From<&ListArgs> for ListJobsRequest {
    fn from(args: &ListArgs) -> ListJobsRequest {
        let status = args.status.map(|status| match status {
            StatusArg::Pending => JobStatus::Pending,
            StatusArg::Scheduled => JobStatus::Scheduled,
            StatusArg::Running => JobStatus::Running,
            StatusArg::Succeeded => JobStatus::Succeeded,
            StatusArg::Failed => JobStatus::Failed,
        });
        let kind = args.kind.map(|kind| match kind {
            KindArg::Once => "once",
            KindArg::Recurring => "recurring",
        });
        ListJobsRequest {
            status: status.map(Into::into),
            job_type: args.job_type.map(|t| JobType::from(t).into()),
            schedule_kind: kind.unwrap_or_default().to_owned(),
            name_contains: args.name.clone().unwrap_or_default(),
            paused: args.paused,
            ..Default::default()
        }
    }
}

impl From<JobTypeArg> for JobType {
    fn from(job_type: JobTypeArg) -> JobType {
        match job_type {
            JobTypeArg::Email => JobType::Email,
            JobTypeArg::Sms => JobType::Sms,
        }
    }
}

impl From<EventKindArg> for EventKind {
    fn from(kind: EventKindArg) -> EventKind {
        match kind {
            EventKindArg::Create => EventKind::Create,
            EventKindArg::Update => EventKind::Update,
            EventKindArg::Run => EventKind::Run,
            EventKindArg::DeadLetter => EventKind::DeadLetter,
            EventKindArg::Delete => EventKind::Delete,
            EventKindArg::Result => EventKind::Result,
        }
    }
}
