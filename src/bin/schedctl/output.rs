//! Printing results on standard output: as tables readable at 80 columns
//! (long cells cut with an ellipsis; `get` as a two-column key/value
//! listing; times in the local zone, or UTC with `--utc`), or as exactly
//! one JSON object per line: a job, run, occurrence or event in the HTTP
//! API's JSON form ([`scheduler_service::http::model`], times RFC 3339 UTC
//! whatever the zone), or a small result object such as `{"id": ...}`.

use std::io::Write;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat, Utc};
use comfy_table::{Cell, ColumnConstraint, ContentArrangement, Row, Table, Width, presets};
use scheduler_service::http::model::{
    Created, Job, JobEvent, JobRun, JobStatus, Lagged, Occurrence, Recurrence, RetryPolicy,
};
use serde::Serialize;

use crate::{args::Output, errors::CliError};

/// The width tables are fitted to.
const WIDTH: u16 = 80;

/// The zone tables show times in (JSON times are UTC whatever it is).
#[derive(Debug, Clone, Copy)]
enum Zone {
    /// This machine's time zone.
    Local,
    /// UTC (`--utc`).
    Utc,
}

impl Zone {
    /// `time` in this zone.
    fn at(self, time: DateTime<Utc>) -> DateTime<FixedOffset> {
        match self {
            Zone::Local => time.with_timezone(&Local).fixed_offset(),
            Zone::Utc => time.fixed_offset(),
        }
    }

    /// RFC 3339, with fractional seconds when there are any (`Z` for UTC);
    /// empty when unset.
    fn rfc3339(self, time: Option<DateTime<Utc>>) -> String {
        time.map(|time| self.at(time).to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .unwrap_or_default()
    }

    /// Date and time to the second, for table columns; empty when unset.
    fn short(self, time: Option<DateTime<Utc>>) -> String {
        time.map(|time| self.at(time).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    }
}

/// A Lagged notice as a line of `watch -o json`, told from the events by
/// its kind: `{"kind": "lagged", "missed": N}`.
#[derive(Serialize)]
struct LaggedLine {
    /// Always `lagged`.
    kind: &'static str,
    /// The notice.
    #[serde(flatten)]
    lagged: Lagged,
}

/// Writes each result in the chosen format, table times in the chosen zone.
pub struct Printer {
    format: Output,
    zone: Zone,
}

impl Printer {
    /// A printer for `--output` and `--utc`.
    pub fn new(format: Output, utc: bool) -> Printer {
        let zone = if utc { Zone::Utc } else { Zone::Local };
        Printer { format, zone }
    }

    /// A created job's id: `{"id": ...}`, or the id alone.
    pub fn created(&self, id: String) -> Result<(), CliError> {
        match self.format {
            Output::Json => json(&Created { id }),
            Output::Table => line(&id),
        }
    }

    /// What was done to a job: `{"<done>": id}`, or `<done> <id>`.
    pub fn done(&self, done: &str, id: &str) -> Result<(), CliError> {
        match self.format {
            Output::Json => json(&serde_json::json!({ done: id })),
            Output::Table => line(&format!("{done} {id}")),
        }
    }

    /// ReportResult's outcome: `{"id": ..., "outcome": ...}`, or the outcome.
    pub fn reported(&self, id: &str, outcome: &str) -> Result<(), CliError> {
        match self.format {
            Output::Json => json(&serde_json::json!({ "id": id, "outcome": outcome })),
            Output::Table => line(outcome),
        }
    }

    /// One job: its JSON object, or a key/value listing of what is set.
    pub fn job(&self, job: &Job) -> Result<(), CliError> {
        if self.format == Output::Json {
            return json(job);
        }
        let mut table = table(&[]);
        for (key, value) in job_pairs(job, self.zone) {
            if !value.is_empty() {
                add_row(&mut table, vec![key.to_owned(), value]);
            }
        }
        fit(&mut table, &[0]);
        line(&render(&mut table))
    }

    /// A list of jobs, then (tables only) `footer`.
    pub fn jobs(&self, jobs: &[Job], footer: &str) -> Result<(), CliError> {
        if self.format == Output::Json {
            return jobs.iter().try_for_each(json);
        }
        let mut table = table(&["ID", "NAME", "STATUS", "TYPE", "SCHEDULE TIME"]);
        for job in jobs {
            // A paused job is SCHEDULED, but what matters is that it waits.
            let status = if job.paused {
                "paused"
            } else {
                job.status.word()
            };
            let cells = vec![
                job.id.clone(),
                job.name.clone(),
                status.to_owned(),
                job.job_type.word().to_owned(),
                self.zone.short(job.schedule_time),
            ];
            add_row(&mut table, cells);
        }
        fit(&mut table, &[0, 2, 3, 4]);
        print_listing(&mut table, jobs.is_empty(), footer)
    }

    /// A page of runs, then (tables only) `footer`.
    pub fn runs(&self, runs: &[JobRun], footer: &str) -> Result<(), CliError> {
        if self.format == Output::Json {
            return runs.iter().try_for_each(json);
        }
        let mut table = table(&[
            "FIRE TOKEN",
            "ATTEMPT",
            "CAUSE",
            "OUTCOME",
            "FIRED",
            "ERROR",
        ]);
        for run in runs {
            let cells = vec![
                run.fire_token.to_string(),
                run.attempt.to_string(),
                run.cause.word().to_owned(),
                run.outcome.word().to_owned(),
                self.zone.short(run.fired_time),
                shown(run.error.as_ref()),
            ];
            add_row(&mut table, cells);
        }
        fit(&mut table, &[0, 1, 2, 3, 4]);
        print_listing(&mut table, runs.is_empty(), footer)
    }

    /// A schedule's occurrences.
    pub fn occurrences(&self, occurrences: &[Occurrence]) -> Result<(), CliError> {
        if self.format == Output::Json {
            return occurrences.iter().try_for_each(json);
        }
        let mut table = table(&["TIME", "KIND"]);
        for occurrence in occurrences {
            let time = self.zone.rfc3339(occurrence.time);
            add_row(&mut table, vec![time, occurrence.kind.clone()]);
        }
        print_listing(&mut table, occurrences.is_empty(), "")
    }

    /// Before the first event: the header of the event lines (tables only).
    pub fn events_header(&self) -> Result<(), CliError> {
        match self.format {
            Output::Json => Ok(()),
            Output::Table => line(&event_line(["KIND", "JOB ID", "SCHEDULED KEY", "NAME"])),
        }
    }

    /// One event, on one line.
    pub fn event(&self, event: &JobEvent) -> Result<(), CliError> {
        if self.format == Output::Json {
            return json(event);
        }
        let (id, name) = event
            .job
            .as_ref()
            .map(|job| (job.id.as_str(), job.name.as_str()))
            .unwrap_or_default();
        let key = shown(event.scheduled_key);
        line(&event_line([event.kind.word(), id, &key, name]))
    }

    /// A Lagged notice: `{"kind": "lagged", "missed": N}`, or a line.
    pub fn lagged(&self, lagged: Lagged) -> Result<(), CliError> {
        match self.format {
            Output::Json => json(&LaggedLine {
                kind: "lagged",
                lagged,
            }),
            Output::Table => line(&event_line([
                "lagged",
                &format!("{} events missed", lagged.missed),
                "",
                "",
            ])),
        }
    }
}

/// One JSON object on its own line.
fn json(value: &impl Serialize) -> Result<(), CliError> {
    line(&serde_json::to_string(value)?)
}

/// `text` and a new line (standard output is flushed at each line).
fn line(text: &str) -> Result<(), CliError> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// A table without borders, fitted to [`WIDTH`], its rows one line high.
fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_truncation_indicator("…");
    if !header.is_empty() {
        table.set_header(header.iter().map(Cell::new));
    }
    table
}

/// Adds a row that is cut, not wrapped, when too long.
fn add_row(table: &mut Table, cells: Vec<String>) {
    let mut row = Row::from(cells);
    row.max_height(1);
    table.add_row(row);
}

/// Keeps these columns whole (ids, times, short names): the others give way.
fn fit(table: &mut Table, whole: &[usize]) {
    for index in whole {
        if let Some(column) = table.column_mut(*index) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
}

/// A table as printed: columns two spaces apart, flush left.
fn render(table: &mut Table) -> String {
    let last = table.column_count().saturating_sub(1);
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding(if index == last { (0, 0) } else { (0, 2) });
    }
    table.trim_fmt()
}

/// A listing, `(none)` when it is empty, and its footer.
fn print_listing(table: &mut Table, empty: bool, footer: &str) -> Result<(), CliError> {
    if empty {
        line("(none)")?;
    } else {
        line(&render(table))?;
    }
    if footer.is_empty() {
        return Ok(());
    }
    line(footer)
}

/// One line of `watch`: kind, job id, key, then the name cut to fit.
fn event_line(cells: [&str; 4]) -> String {
    let mut table = table(&[]);
    add_row(
        &mut table,
        cells.iter().map(|cell| (*cell).to_owned()).collect(),
    );
    // Fixed widths, so that the lines of every event line up.
    let widths = [13, 26, 21, 20];
    for (column, width) in table.column_iter_mut().zip(widths) {
        column.set_constraint(ColumnConstraint::Absolute(Width::Fixed(width)));
    }
    render(&mut table)
}

/// A value for a table cell; empty when unset.
fn shown(value: Option<impl ToString>) -> String {
    value.map(|value| value.to_string()).unwrap_or_default()
}

/// The key/value listing of a job: its fields, then a recurring job's
/// schedule and counters and its own retry policy (empty values: unset).
fn job_pairs(job: &Job, zone: Zone) -> Vec<(&'static str, String)> {
    let time = |time| zone.rfc3339(time);
    let mut pairs = vec![
        ("id", job.id.clone()),
        ("name", job.name.clone()),
        ("description", job.description.clone()),
        ("status", job.status.word().to_owned()),
        ("job_type", job.job_type.word().to_owned()),
        ("schedule_time", time(job.schedule_time)),
        ("job_data", job.job_data.clone()),
        ("created_time", time(job.created_time)),
        ("updated_time", time(job.updated_time)),
        ("attempt", job.attempt.to_string()),
        ("last_error", shown(job.last_error.as_ref())),
        ("client_key", shown(job.client_key.as_ref())),
    ];
    if let Some(recurrence) = &job.recurrence {
        pairs.extend(recurrence_pairs(job, recurrence, zone));
    }
    if let Some(retry) = &job.retry_policy {
        pairs.extend(retry_pairs(retry));
    }
    pairs
}

/// A recurring job's counters and schedule.
fn recurrence_pairs(job: &Job, r: &Recurrence, zone: Zone) -> Vec<(&'static str, String)> {
    let time = |time| zone.rfc3339(time);
    vec![
        ("paused", job.paused.to_string()),
        ("next_occurrence", time(job.next_occurrence)),
        ("last_outcome", shown(job.last_outcome.map(JobStatus::word))),
        ("last_occurrence", time(job.last_occurrence)),
        ("runs", job.runs.to_string()),
        ("missed", job.missed.to_string()),
        (
            "recurrence.cron_expression",
            shown(r.cron_expression.as_ref()),
        ),
        ("recurrence.interval_seconds", shown(r.interval_seconds)),
        ("recurrence.anchor_time", time(r.anchor_time)),
        ("recurrence.time_zone", shown(r.time_zone.as_ref())),
        ("recurrence.start_time", time(r.start_time)),
        ("recurrence.end_time", time(r.end_time)),
        ("recurrence.max_runs", shown(r.max_runs)),
        ("recurrence.jitter_ms", shown(r.jitter_ms)),
        ("recurrence.dst_repeated", shown(r.dst_repeated.as_ref())),
        ("recurrence.dst_skipped", shown(r.dst_skipped.as_ref())),
        ("recurrence.catch_up", shown(r.catch_up.as_ref())),
        ("recurrence.catch_up_max", shown(r.catch_up_max)),
        (
            "recurrence.catch_up_window_seconds",
            shown(r.catch_up_window_seconds),
        ),
        ("recurrence.overlap", shown(r.overlap.as_ref())),
    ]
}

/// A job's own retry policy.
fn retry_pairs(retry: &RetryPolicy) -> Vec<(&'static str, String)> {
    vec![
        ("retry_policy.max_attempts", shown(retry.max_attempts)),
        ("retry_policy.first_delay_ms", shown(retry.first_delay_ms)),
        ("retry_policy.max_delay_ms", shown(retry.max_delay_ms)),
        ("retry_policy.multiplier", shown(retry.multiplier)),
        ("retry_policy.jitter", shown(retry.jitter)),
    ]
}
