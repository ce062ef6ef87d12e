//! The command line: the global flags, the subcommands and their flags
//! (clap's derive API), and the parsers of values that need more than
//! `FromStr` (times, durations, the token). Only types are checked here:
//! the service validates the values and names the field at fault.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tonic::metadata::{Ascii, MetadataValue};

use crate::errors::EXIT_CODES_HELP;

/// schedctl: a command-line client of the scheduler service (gRPC
/// `proto.JobsService` and `scheduler.v1.JobEvents`).
#[derive(Debug, Parser)]
#[command(name = "schedctl", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Flags of every command.
    #[command(flatten, next_help_heading = "Global options")]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The service's gRPC address; https:// connects with TLS.
    #[arg(
        long,
        global = true,
        env = "SCHEDCTL_ADDR",
        default_value = "http://127.0.0.1:9001",
        value_parser = parse_addr
    )]
    pub addr: String,
    /// A token (JWT) sent as `authorization: Bearer <token>` with every call.
    #[arg(long, global = true, env = "SCHEDCTL_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<MetadataValue<Ascii>>,
    /// The CA certificate (PEM) that the service's TLS certificate is checked
    /// against (without it, an https address is checked against Mozilla's roots).
    #[arg(long, global = true, value_name = "PEM_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Tables for people, or one JSON object per line for programs (the HTTP
    /// API's JSON forms, times in UTC).
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Show times in tables in UTC instead of the local time zone (JSON times
    /// are always UTC).
    #[arg(long, global = true)]
    pub utc: bool,
    /// How long to wait for the connection and for each answer (1 to 86400).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables readable at 80 columns (long cells cut with an ellipsis; times
    /// in the local zone, or UTC with --utc).
    Table,
    /// One JSON object per line: a job, run, occurrence or event as the HTTP
    /// API writes it (times RFC 3339 UTC, unset fields left out).
    Json,
}

/// The subcommands, one per call of the service (and `completions`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a job (CreateJob); prints its id.
    Create(CreateArgs),
    /// Show a job (GetJob).
    Get(IdArg),
    /// List jobs in schedule-time order (ListJobs).
    List(ListArgs),
    /// Replace every field of a job (UpdateJob): a field left out is
    /// cleared, as UpdateJob replaces them all; the job is scheduled anew.
    Update(UpdateArgs),
    /// Delete a job and its run history (DeleteJob).
    Delete(IdArg),
    /// Pause a recurring job (PauseJob).
    Pause(IdArg),
    /// Resume a paused recurring job (ResumeJob).
    Resume(IdArg),
    /// Run a recurring job once now, outside its schedule (TriggerJob).
    Trigger(IdArg),
    /// Run a finished one-shot job again now, with fresh attempts (RerunJob).
    Rerun(IdArg),
    /// The next occurrences of a job, or of a recurrence given by flags
    /// (PreviewSchedule).
    Preview(PreviewArgs),
    /// A job's runs, newest first (ListJobRuns).
    Runs(RunsArgs),
    /// Print job events as they happen until interrupted (JobEvents.Subscribe).
    Watch(WatchArgs),
    /// Report a running job's result, as an executor does (JobEvents.ReportResult).
    Report(ReportArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// A job's id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// The job's id.
    pub id: String,
}

/// `create`: the job's fields and its idempotency key.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Idempotent creation: a repeat with the same key returns the same job
    /// (with other content: ALREADY_EXISTS).
    #[arg(long, value_name = "KEY")]
    pub client_key: Option<String>,
    /// The job's fields.
    #[command(flatten)]
    pub job: JobArgs,
}

/// `update`: the job and all of its new fields.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The job's id.
    pub id: String,
    /// The job's new fields (every one: those left out are cleared).
    #[command(flatten)]
    pub job: JobArgs,
}

/// The client fields of a job, as CreateJob and UpdateJob take them.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job's name (required by the service).
    #[arg(long)]
    pub name: Option<String>,
    /// What the job is for.
    #[arg(long)]
    pub description: Option<String>,
    /// When a one-shot job fires (RFC 3339, e.g. 2030-01-01T09:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<DateTime<Utc>>,
    /// The kind of executor the job is for.
    #[arg(long = "type", value_enum, default_value_t = JobTypeArg::Email)]
    pub job_type: JobTypeArg,
    /// The executor's payload (required by the service).
    #[arg(long, value_name = "TEXT", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the payload from a file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub data_file: Option<PathBuf>,
    /// A recurring schedule (any of these flags makes the job recurring).
    #[command(flatten, next_help_heading = "Recurrence")]
    pub recurrence: RecurrenceArgs,
    /// The job's own retry policy (any of these flags sets one).
    #[command(flatten, next_help_heading = "Retry policy")]
    pub retry: RetryArgs,
}

/// The fields of a `Recurrence`; unset ones take the service's defaults.
#[derive(Debug, Args)]
pub struct RecurrenceArgs {
    /// A cron expression: 5 fields, 6 (seconds first) or a macro (@daily...).
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// Every N seconds, or a duration such as 90s, 5m, 1h 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_every)]
    pub every: Option<i64>,
    /// The time an interval counts from (RFC 3339) [the creation time].
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub anchor: Option<DateTime<Utc>>,
    /// The IANA zone a cron expression is read in, e.g. Europe/London [UTC].
    #[arg(long, value_name = "ZONE")]
    pub time_zone: Option<String>,
    /// No occurrence before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub start: Option<DateTime<Utc>>,
    /// No occurrence after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub end: Option<DateTime<Utc>>,
    /// At most this many runs [0: no limit].
    #[arg(long, value_name = "N")]
    pub max_runs: Option<i64>,
    /// Delay each firing by up to this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub jitter_ms: Option<i64>,
    /// A local time that occurs twice: first, last or both [first].
    #[arg(long, value_name = "POLICY")]
    pub dst_repeated: Option<String>,
    /// A local time that does not exist: next-valid or skip [next-valid].
    #[arg(long, value_name = "POLICY")]
    pub dst_skipped: Option<String>,
    /// Missed occurrences: skip, once or each [once].
    #[arg(long, value_name = "POLICY")]
    pub catch_up: Option<String>,
    /// Under `each`, at most this many catch-up runs [10].
    #[arg(long, value_name = "N")]
    pub catch_up_max: Option<i32>,
    /// How late an occurrence may still run, in seconds [3600].
    #[arg(long, value_name = "SECS")]
    pub catch_up_window_secs: Option<i64>,
    /// An occurrence due while a run is in flight: skip, keep-one or run [skip].
    #[arg(long, value_name = "POLICY")]
    pub overlap: Option<String>,
}

/// The fields of a `RetryPolicy`; unset ones take the service's defaults.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// At most this many runs in all (1: no retry).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<i32>,
    /// The delay before the first retry.
    #[arg(long, value_name = "MS")]
    pub first_delay_ms: Option<i64>,
    /// The longest delay between retries.
    #[arg(long, value_name = "MS")]
    pub max_delay_ms: Option<i64>,
    /// How much each delay grows over the previous one.
    #[arg(long, value_name = "FACTOR")]
    pub multiplier: Option<f64>,
    /// The largest share (0 to 1) by which a delay is shortened at random.
    #[arg(long, value_name = "SHARE")]
    pub retry_jitter: Option<f64>,
}

/// One page of a listing.
#[derive(Debug, Args)]
pub struct PageArgs {
    /// The page, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: i64,
    /// Items per page (at most the service's LIST_MAX_PAGE_SIZE).
    #[arg(long, default_value_t = 20)]
    pub size: i64,
    /// Every page from --page on.
    #[arg(long)]
    pub all: bool,
}

/// `list`: a page of the jobs the filters admit (none given: every job).
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Which page.
    #[command(flatten)]
    pub page: PageArgs,
    /// Only jobs with this status.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Only jobs of this type.
    #[arg(long = "type", value_enum)]
    pub job_type: Option<JobTypeArg>,
    /// Only one-shot or only recurring jobs.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Only jobs whose name contains this text (ignoring case).
    #[arg(long)]
    pub name: Option<String>,
    /// true: only paused recurring jobs; false: every job not paused
    /// (one-shot jobs included).
    #[arg(long, value_name = "true|false")]
    pub paused: Option<bool>,
}

/// `runs`: a job and a page of its runs.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The job's id.
    pub id: String,
    /// Which runs.
    #[command(flatten)]
    pub page: PageArgs,
}

/// `preview`: a stored job, or a recurrence given by flags.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The stored job to preview (or give a recurrence with the flags below).
    pub id: Option<String>,
    /// How many occurrences [10].
    #[arg(long)]
    pub count: Option<i32>,
    /// A recurrence not yet saved.
    #[command(flatten, next_help_heading = "Recurrence")]
    pub recurrence: RecurrenceArgs,
}

/// `watch`: Subscribe's filters, and acknowledgement.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only these kinds of event (repeat or separate with commas) [all].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub kind: Vec<EventKindArg>,
    /// Only jobs of these types (repeat or separate with commas) [all].
    #[arg(long = "type", value_enum, value_delimiter = ',')]
    pub job_type: Vec<JobTypeArg>,
    /// A durable subscription's name (embedded store only): resumes where
    /// the name left off, and redelivers what it did not acknowledge.
    #[arg(long, value_name = "NAME")]
    pub subscription: Option<String>,
    /// Acknowledge each event once printed (with --subscription).
    #[arg(long, requires = "subscription")]
    pub ack: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// `report`: an executor's result for a running job.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The job's id.
    pub id: String,
    /// How the run ended.
    #[arg(long, value_enum)]
    pub status: ResultStatus,
    /// The run event's scheduled key: the result counts only for that firing.
    #[arg(long, value_name = "KEY")]
    pub scheduled_key: Option<i64>,
    /// What went wrong, kept as the job's last error.
    #[arg(long, value_name = "TEXT")]
    pub error: Option<String>,
    /// Which executor ran it.
    #[arg(long, value_name = "NAME")]
    pub executor: Option<String>,
    /// A failure retrying cannot cure: no further attempt.
    #[arg(long = "final")]
    pub final_: bool,
    /// The delay before the next attempt, instead of the retry policy's.
    #[arg(long, value_name = "MS")]
    pub retry_after_ms: Option<i64>,
}

/// `completions`: which shell.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A job type (`JobType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobTypeArg {
    /// JOB_TYPE_EMAIL.
    Email,
    /// JOB_TYPE_SMS.
    Sms,
}

/// A job status (`JobStatus`), spelled as the JSON output spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Created, not yet scheduled.
    Pending,
    /// Waiting for its time.
    Scheduled,
    /// Fired, its result not in yet.
    Running,
    /// Its last run succeeded.
    Succeeded,
    /// Its last run failed for good.
    Failed,
}

/// One-shot or recurring (`ListJobsRequest.schedule_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// One-shot jobs.
    Once,
    /// Recurring jobs.
    Recurring,
}

/// An event kind (`EventKind`), spelled as the JSON output spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum EventKindArg {
    /// A job was created.
    Create,
    /// A job was updated.
    Update,
    /// A job fired.
    Run,
    /// A job failed for good.
    DeadLetter,
    /// A finished job was removed by retention.
    Delete,
    /// A run's result was stored (live streams of that replica only).
    Result,
}

/// A run's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResultStatus {
    /// JOB_STATUS_SUCCEEDED.
    Succeeded,
    /// JOB_STATUS_FAILED.
    Failed,
}

/// An address tonic can connect to (http:// or https://).
fn parse_addr(value: &str) -> Result<String, String> {
    let uri: tonic::transport::Uri = value.parse().map_err(|err| format!("{err}"))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(value.to_owned()),
        _ => Err("expected http://HOST:PORT or https://HOST:PORT".to_owned()),
    }
}

/// The `authorization` value of a token given bare or as `Bearer <token>`.
fn parse_token(value: &str) -> Result<MetadataValue<Ascii>, String> {
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    format!("Bearer {token}")
        .parse()
        .map_err(|_| "a token is printable ASCII".to_owned())
}

/// An RFC 3339 time.
fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|err| format!("{err} (expected RFC 3339, e.g. 2030-01-01T09:00:00Z)"))
}

/// Whole seconds: a number, or a duration such as `90s` or `1h 30m`.
fn parse_every(value: &str) -> Result<i64, String> {
    if let Ok(seconds) = value.parse::<i64>() {
        return Ok(seconds);
    }
    let duration = humantime::parse_duration(value).map_err(|err| format!("{err}"))?;
    whole_seconds(duration)
}

/// A duration as whole seconds.
fn whole_seconds(duration: Duration) -> Result<i64, String> {
    if duration.subsec_nanos() != 0 {
        return Err("an interval is whole seconds".to_owned());
    }
    i64::try_from(duration.as_secs()).map_err(|_| "too long".to_owned())
}
