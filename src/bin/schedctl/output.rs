//! Printing results on standard output: as tables readable at 80 columns
//! (long cells cut with an ellipsis; `get` as a two-column key/value
//! listing), or as exactly one JSON object per line (the views of
//! [`crate::view`], or a small result object such as `{"id": ...}`).

use std::io::Write;

use comfy_table::{Cell, ColumnConstraint, ContentArrangement, Row, Table, Width, presets};
use scheduler_service::grpc::proto::{Job, JobRun, Occurrence};
use scheduler_service::grpc::scheduler::v1::JobEvent;
use serde::Serialize;

use crate::{
    args::Output,
    errors::CliError,
    view::{JobView, RecurrenceView, RetryView, Stamp, Zone},
};

/// The width tables are fitted to.
const WIDTH: u16 = 80;

/// Writes each result in the chosen format, times in the chosen zone.
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
    pub fn created(&self, id: &str) -> Result<(), CliError> {
        match self.format {
            Output::Json => json(&serde_json::json!({ "id": id })),
            Output::Table => line(id),
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

    /// One job: its JSON object, or a key/value listing.
    pub fn job(&self, job: &Job) -> Result<(), CliError> {
        let view = self.zone.job(job);
        match self.format {
            Output::Json => json(&view),
            Output::Table => {
                let mut table = table(&[]);
                for (key, value) in job_pairs(&view) {
                    add_row(&mut table, vec![key, value]);
                }
                fit(&mut table, &[0]);
                line(&render(&mut table))
            }
        }
    }

    /// A list of jobs, then (tables only) `footer`.
    pub fn jobs(&self, jobs: &[Job], footer: &str) -> Result<(), CliError> {
        let views = jobs.iter().map(|job| self.zone.job(job));
        if self.format == Output::Json {
            return views.into_iter().try_for_each(|view| json(&view));
        }
        let mut table = table(&["ID", "NAME", "STATUS", "TYPE", "SCHEDULE TIME"]);
        for view in views {
            // A paused job is SCHEDULED, but what matters is that it waits.
            let status = if view.paused {
                "paused".to_owned()
            } else {
                view.status
            };
            let time = short(view.schedule_time);
            add_row(
                &mut table,
                vec![view.id, view.name, status, view.job_type, time],
            );
        }
        fit(&mut table, &[0, 2, 3, 4]);
        print_listing(&mut table, jobs.is_empty(), footer)
    }

    /// A page of runs, then (tables only) `footer`.
    pub fn runs(&self, runs: &[JobRun], footer: &str) -> Result<(), CliError> {
        let views = runs.iter().map(|run| self.zone.run(run));
        if self.format == Output::Json {
            return views.into_iter().try_for_each(|view| json(&view));
        }
        let mut table = table(&[
            "FIRE TOKEN",
            "ATTEMPT",
            "CAUSE",
            "OUTCOME",
            "FIRED",
            "ERROR",
        ]);
        for view in views {
            let cells = vec![
                view.fire_token.to_string(),
                view.attempt.to_string(),
                view.cause,
                view.outcome,
                short(view.fired_time),
                view.error,
            ];
            add_row(&mut table, cells);
        }
        fit(&mut table, &[0, 1, 2, 3, 4]);
        print_listing(&mut table, runs.is_empty(), footer)
    }

    /// A schedule's occurrences.
    pub fn occurrences(&self, occurrences: &[Occurrence]) -> Result<(), CliError> {
        let views = occurrences.iter().map(|o| self.zone.occurrence(o));
        if self.format == Output::Json {
            return views.into_iter().try_for_each(|view| json(&view));
        }
        let mut table = table(&["TIME", "KIND"]);
        for view in views {
            let time = view.time.map(|time| time.rfc3339()).unwrap_or_default();
            add_row(&mut table, vec![time, view.kind]);
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
        let view = self.zone.event(event);
        if self.format == Output::Json {
            return json(&view);
        }
        let (id, name) = view.job.map(|job| (job.id, job.name)).unwrap_or_default();
        line(&event_line([
            &view.kind,
            &id,
            &view.scheduled_key.to_string(),
            &name,
        ]))
    }

    /// A Lagged notice: `{"kind": "lagged", "missed": N}`, or a line.
    pub fn lagged(&self, missed: u64) -> Result<(), CliError> {
        match self.format {
            Output::Json => json(&serde_json::json!({ "kind": "lagged", "missed": missed })),
            Output::Table => line(&event_line([
                "lagged",
                &format!("{missed} events missed"),
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

/// A time for a table column; empty when unset.
fn short(time: Option<Stamp>) -> String {
    time.map(|time| time.short()).unwrap_or_default()
}

/// The key/value listing of a job: every field, the optional ones when set.
fn job_pairs(view: &JobView) -> Vec<(String, String)> {
    let time = |stamp: Option<Stamp>| stamp.map(|s| s.rfc3339()).unwrap_or_default();
    let mut pairs: Vec<(String, String)> = [
        ("id", view.id.clone()),
        ("name", view.name.clone()),
        ("description", view.description.clone()),
        ("status", view.status.clone()),
        ("job_type", view.job_type.clone()),
        ("schedule_time", time(view.schedule_time)),
        ("job_data", view.job_data.clone()),
        ("created_time", time(view.created_time)),
        ("updated_time", time(view.updated_time)),
        ("attempt", view.attempt.to_string()),
        ("last_error", view.last_error.clone()),
        ("client_key", view.client_key.clone()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    if let Some(recurrence) = &view.recurrence {
        pairs.extend(recurrence_pairs(view, recurrence));
    }
    if let Some(retry) = &view.retry_policy {
        pairs.extend(retry_pairs(retry));
    }
    pairs
}

/// A recurring job's schedule and counters: the fields that are set.
fn recurrence_pairs(job: &JobView, r: &RecurrenceView) -> Vec<(String, String)> {
    let time = |stamp: Option<Stamp>| stamp.map(|s| s.rfc3339()).unwrap_or_default();
    let number = |n: i64| if n == 0 { String::new() } else { n.to_string() };
    let fields = [
        ("paused", job.paused.to_string()),
        ("next_occurrence", time(job.next_occurrence)),
        ("last_outcome", job.last_outcome.clone().unwrap_or_default()),
        ("last_occurrence", time(job.last_occurrence)),
        ("runs", job.runs.to_string()),
        ("missed", job.missed.to_string()),
        ("recurrence.cron_expression", r.cron_expression.clone()),
        ("recurrence.interval_seconds", number(r.interval_seconds)),
        ("recurrence.anchor_time", time(r.anchor_time)),
        ("recurrence.time_zone", r.time_zone.clone()),
        ("recurrence.start_time", time(r.start_time)),
        ("recurrence.end_time", time(r.end_time)),
        ("recurrence.max_runs", number(r.max_runs)),
        ("recurrence.jitter_ms", number(r.jitter_ms)),
        ("recurrence.dst_repeated", r.dst_repeated.clone()),
        ("recurrence.dst_skipped", r.dst_skipped.clone()),
        ("recurrence.catch_up", r.catch_up.clone()),
        ("recurrence.catch_up_max", number(i64::from(r.catch_up_max))),
        (
            "recurrence.catch_up_window_seconds",
            number(r.catch_up_window_seconds),
        ),
        ("recurrence.overlap", r.overlap.clone()),
    ];
    set_pairs(fields)
}

/// A job's own retry policy: the fields that are set.
fn retry_pairs(retry: &RetryView) -> Vec<(String, String)> {
    let text = |value: Option<String>| value.unwrap_or_default();
    let fields = [
        (
            "retry_policy.max_attempts",
            text(retry.max_attempts.map(|n| n.to_string())),
        ),
        (
            "retry_policy.first_delay_ms",
            text(retry.first_delay_ms.map(|n| n.to_string())),
        ),
        (
            "retry_policy.max_delay_ms",
            text(retry.max_delay_ms.map(|n| n.to_string())),
        ),
        (
            "retry_policy.multiplier",
            text(retry.multiplier.map(|n| n.to_string())),
        ),
        (
            "retry_policy.jitter",
            text(retry.jitter.map(|n| n.to_string())),
        ),
    ];
    set_pairs(fields)
}

/// The pairs whose value is not empty.
fn set_pairs<const N: usize>(fields: [(&str, String); N]) -> Vec<(String, String)> {
    fields
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}
