//! The request messages built from the command line: every flag goes to its
//! field as it is, and a flag left out leaves its field unset, so that the
//! service applies its defaults and its rules.

use std::{io::Read, path::Path};

use scheduler_service::grpc::{
    proto::{
        CreateJobRequest, JobStatus, JobType, ListJobsRequest, PreviewScheduleRequest, Recurrence,
        RetryPolicy, UpdateJobRequest,
    },
    scheduler::v1::{EventKind, ReportResultRequest, SubscribeRequest},
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
    let job_data = job_data(&args.job)?;
    let job = args.job;
    Ok(CreateJobRequest {
        name: job.name.unwrap_or_default(),
        description: job.description.unwrap_or_default(),
        schedule_time: job.at,
        job_type: JobType::from(job.job_type).into(),
        job_data,
        recurrence: recurrence(job.recurrence),
        client_key: args.client_key.unwrap_or_default(),
        retry_policy: retry_policy(job.retry),
    })
}

/// UpdateJob's request.
pub fn update(args: UpdateArgs) -> Result<UpdateJobRequest, CliError> {
    let job_data = job_data(&args.job)?;
    let job = args.job;
    Ok(UpdateJobRequest {
        id: args.id,
        name: job.name.unwrap_or_default(),
        description: job.description.unwrap_or_default(),
        schedule_time: job.at,
        job_type: JobType::from(job.job_type).into(),
        job_data,
        recurrence: recurrence(job.recurrence),
        retry_policy: retry_policy(job.retry),
    })
}

/// PreviewSchedule's request: the job, or the recurrence of the flags.
pub fn preview(args: PreviewArgs) -> PreviewScheduleRequest {
    PreviewScheduleRequest {
        id: args.id.unwrap_or_default(),
        recurrence: recurrence(args.recurrence),
        count: args.count.unwrap_or_default(),
    }
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
            .map(|job_type| JobType::from(*job_type).into())
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
    let given = args.cron.is_some()
        || args.every.is_some()
        || args.anchor.is_some()
        || args.time_zone.is_some()
        || args.start.is_some()
        || args.end.is_some()
        || args.max_runs.is_some()
        || args.jitter_ms.is_some()
        || args.dst_repeated.is_some()
        || args.dst_skipped.is_some()
        || args.catch_up.is_some()
        || args.catch_up_max.is_some()
        || args.catch_up_window_secs.is_some()
        || args.overlap.is_some();
    given.then(|| Recurrence {
        cron_expression: args.cron.unwrap_or_default(),
        interval_seconds: args.every.unwrap_or_default(),
        anchor_time: args.anchor,
        time_zone: args.time_zone.unwrap_or_default(),
        start_time: args.start,
        end_time: args.end,
        max_runs: args.max_runs.unwrap_or_default(),
        jitter_ms: args.jitter_ms.unwrap_or_default(),
        dst_repeated: args.dst_repeated.unwrap_or_default(),
        dst_skipped: args.dst_skipped.unwrap_or_default(),
        catch_up: args.catch_up.unwrap_or_default(),
        catch_up_max: args.catch_up_max.unwrap_or_default(),
        catch_up_window_seconds: args.catch_up_window_secs.unwrap_or_default(),
        overlap: args.overlap.unwrap_or_default(),
    })
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
        }
    }
}
