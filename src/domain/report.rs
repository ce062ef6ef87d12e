//! What an executor reports about a run: its outcome, and optionally the
//! firing it ran (`ScheduledKey`), an error text, its own name, whether a
//! failure is final, and the delay it asks for before a retry. Each
//! adapter (the Kafka result consumer, `ReportResult`) builds a
//! [`RunReport`] through [`RunReport::with_details`], so that the same
//! bounds hold for both.

use chrono::TimeDelta;

use super::{
    Error, Field, JobStatus, ResultStatus, job::check_len, recurrence::ResultDecision, retry::delay,
};

/// Longest error text kept from a result, in bytes (the 4 KiB).
pub const ERROR_MAX_BYTES: usize = 4096;
/// Longest executor name kept from a result, in bytes.
pub const EXECUTOR_MAX_BYTES: usize = 256;

/// An executor's report on one run, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The outcome.
    pub status: ResultStatus,
    /// The firing it reports on (the run event's `ScheduledKey`); `None`:
    /// the job's run in flight, as the article's executors report.
    pub fire_token: Option<i64>,
    /// What went wrong, as the executor put it.
    pub error: Option<String>,
    /// Which executor ran it.
    pub executor: Option<String>,
    /// A failure the executor says retrying cannot cure.
    pub last_attempt: bool,
    /// The delay the executor asks for before the next attempt (after a
    /// rate limit, say), instead of the policy's backoff.
    pub retry_after: Option<TimeDelta>,
}

impl RunReport {
    /// A bare outcome, as the article's executors report it.
    pub fn of(status: ResultStatus, fire_token: Option<i64>) -> Self {
        RunReport {
            status,
            fire_token,
            error: None,
            executor: None,
            last_attempt: false,
            retry_after: None,
        }
    }

    /// This report with the optional details checked: an error text of at
    /// most [`ERROR_MAX_BYTES`], an executor name of at most
    /// [`EXECUTOR_MAX_BYTES`], a retry delay from 0 to
    /// [`super::retry::RETRY_DELAY_MAX`]. Empty texts count as absent.
    pub fn with_details(
        self,
        error: Option<String>,
        executor: Option<String>,
        last_attempt: bool,
        retry_after_ms: Option<i64>,
    ) -> Result<Self, Error> {
        let error = error.filter(|e| !e.is_empty());
        let executor = executor.filter(|e| !e.is_empty());
        if let Some(text) = &error {
            check_len(Field::ResultError, text, ERROR_MAX_BYTES)?;
        }
        if let Some(name) = &executor {
            check_len(Field::Executor, name, EXECUTOR_MAX_BYTES)?;
        }
        let retry_after = retry_after_ms
            .map(|ms| delay(Field::RetryAfter, ms))
            .transpose()?;
        Ok(RunReport {
            error,
            executor,
            last_attempt,
            retry_after,
            ..self
        })
    }
}

/// What happened when a run result was offered to the store (what
/// [`crate::store::JobDB::store_result`] answers).
///
/// A result may name the firing it reports on, by that firing's fire token
/// (the run event's `ScheduledKey`). A job keeps the token of its last
/// firing until it is scheduled again (an update, or a run timed out and
/// retried, draws a new one), so the token tells a late result of an
/// earlier firing from a result of the current one:
/// - a token other than the job's, whatever the job's status: `Stale`;
/// - the job's token (or none) on a RUNNING job: `Stored`;
/// - the job's token (or none) on a job that already holds this result:
///   `Duplicate` (the same firing's result again);
/// - the job's token (or none) on a job in any other state: `Ignored`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultOutcome {
    /// The job was RUNNING and now holds the result.
    Stored,
    /// The job already holds this very result: a duplicate, nothing changed.
    Duplicate,
    /// The job is in another state (scheduled again, or holds the other result).
    Ignored(JobStatus),
    /// The result names a firing that is not the job's current one (the job,
    /// now in this status, was fired, retried or rescheduled since): nothing
    /// changed.
    Stale(JobStatus),
    /// No job has this id.
    UnknownJob,
}

impl ResultOutcome {
    /// The outcome of a result a recurring job refused.
    pub(crate) fn refused(decision: ResultDecision) -> Self {
        match decision {
            ResultDecision::Take(_) => ResultOutcome::Stored,
            ResultDecision::Duplicate => ResultOutcome::Duplicate,
            ResultDecision::Ignored(status) => ResultOutcome::Ignored(status),
            ResultDecision::Stale(status) => ResultOutcome::Stale(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::retry::RETRY_DELAY_MAX;

    #[test]
    fn details_within_their_bounds_are_kept_and_empty_ones_dropped() {
        let report = RunReport::of(ResultStatus::Failed, Some(7))
            .with_details(Some("SMTP 451".into()), Some(String::new()), true, Some(0))
            .unwrap();
        assert_eq!(report.error.as_deref(), Some("SMTP 451"));
        assert_eq!(report.executor, None);
        assert!(report.last_attempt);
        assert_eq!(report.retry_after, Some(TimeDelta::zero()));
    }

    #[test]
    fn oversized_texts_and_delays_out_of_range_are_refused_by_name() {
        let bare = || RunReport::of(ResultStatus::Failed, None);
        let long = "x".repeat(ERROR_MAX_BYTES + 1);
        let err = bare().with_details(Some(long), None, false, None);
        assert_eq!(err.unwrap_err().invalid_field(), Field::ResultError);
        let name = "e".repeat(EXECUTOR_MAX_BYTES + 1);
        let err = bare().with_details(None, Some(name), false, None);
        assert_eq!(err.unwrap_err().invalid_field(), Field::Executor);
        for ms in [
            -1,
            RETRY_DELAY_MAX.num_milliseconds() + 1,
            i64::MIN,
            i64::MAX,
        ] {
            let err = bare().with_details(None, None, false, Some(ms));
            assert_eq!(err.unwrap_err().invalid_field(), Field::RetryAfter, "{ms}");
        }
        assert!(
            bare()
                .with_details(Some("x".repeat(ERROR_MAX_BYTES)), None, false, None)
                .is_ok()
        );
    }
}
