//! The run history on the wire: a job's runs as `JobRun` messages, and the
//! paging fields ListJobs and ListJobRuns share.

use super::{convert::timestamp, proto};
use crate::domain::{
    PageRequest,
    history::{Run, RunCause, RunOutcome},
};

/// The paging fields of a listing's response: totals, the page, whether
/// more follow.
pub(super) struct Paging {
    pub(super) total_count: i64,
    pub(super) total_pages: i64,
    pub(super) page: i64,
    pub(super) size: i64,
    pub(super) has_more: bool,
}

impl Paging {
    /// The paging of `page` over `total` items.
    pub(super) fn of(page: PageRequest, total: u64) -> Self {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Paging {
            total_count: count(total),
            total_pages: count(page.total_pages(total)),
            page: count(page.page),
            size: count(page.size),
            has_more: page.has_more(total),
        }
    }
}

impl From<RunCause> for proto::RunCause {
    fn from(cause: RunCause) -> Self {
        match cause {
            RunCause::Scheduled => proto::RunCause::Scheduled,
            RunCause::Retry => proto::RunCause::Retry,
            RunCause::CatchUp => proto::RunCause::CatchUp,
            RunCause::Manual => proto::RunCause::Manual,
        }
    }
}

impl From<RunOutcome> for proto::RunOutcome {
    fn from(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Running => proto::RunOutcome::Running,
            RunOutcome::Succeeded => proto::RunOutcome::Succeeded,
            RunOutcome::Failed => proto::RunOutcome::Failed,
            RunOutcome::TimedOut => proto::RunOutcome::TimedOut,
            RunOutcome::Superseded => proto::RunOutcome::Superseded,
        }
    }
}

impl From<Run> for proto::JobRun {
    fn from(run: Run) -> Self {
        proto::JobRun {
            fire_token: run.fire_token,
            attempt: i32::try_from(run.attempt).unwrap_or(i32::MAX),
            cause: proto::RunCause::from(run.cause).into(),
            due_time: Some(timestamp(run.due_at)),
            fired_time: Some(timestamp(run.fired_at)),
            lateness_ms: run.lateness().num_milliseconds(),
            finished_time: run.finished_at.map(timestamp),
            outcome: proto::RunOutcome::from(run.outcome).into(),
            error: run.error.unwrap_or_default(),
            executor: run.executor.unwrap_or_default(),
        }
    }
}
