//! The service's error type. Every layer converts its own failures into this
//! enum, and the gRPC layer maps each variant to one status code. Also
//! [`Excerpt`], the one way an error repeats a value it was sent, so that no
//! message grows with its input.

use std::fmt::{self, Write as _};

use super::JobId;

/// A request field, named as the client sees it, so that error messages point
/// at what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The job id.
    Id,
    /// The job name.
    Name,
    /// The free-text description.
    Description,
    /// When the job is due.
    ScheduleTime,
    /// The kind of job (email, SMS).
    JobType,
    /// The executor's payload.
    JobData,
    /// The 1-based page number of a listing.
    Page,
    /// The page size of a listing.
    Size,
    /// A recurring schedule's cron expression.
    CronExpression,
    /// The IANA time zone a cron expression is read in.
    TimeZone,
    /// What a cron schedule does at a local time that occurs twice.
    DstRepeated,
    /// What a cron schedule does at a local time that does not exist.
    DstSkipped,
    /// An interval schedule's period.
    Interval,
    /// The instant an interval schedule counts its periods from.
    AnchorTime,
    /// The earliest time a recurring schedule may fire.
    StartTime,
    /// The latest time a recurring schedule may fire.
    EndTime,
    /// How many times a recurring schedule fires at most.
    MaxRuns,
    /// The bound of the delay added to each firing.
    Jitter,
    /// A schedule's stored text form as a whole.
    Schedule,
    /// What a recurring job does with missed occurrences.
    CatchUp,
    /// How many missed occurrences `each` runs at most.
    CatchUpMax,
    /// How late a missed occurrence may still run.
    CatchUpWindow,
    /// What a recurring job does when an occurrence comes during a run.
    Overlap,
    /// The key that makes a creation idempotent.
    ClientKey,
    /// How many occurrences a preview lists.
    Count,
    /// A recurring job's stored state as a whole.
    Recurrence,
    /// How many runs a retry policy allows in all.
    RetryMaxAttempts,
    /// A retry policy's first delay.
    RetryFirstDelay,
    /// A retry policy's largest delay.
    RetryMaxDelay,
    /// What a retry policy multiplies each delay by.
    RetryMultiplier,
    /// The share of a retry delay a retry policy's jitter takes off.
    RetryJitter,
    /// A job's stored attempts as a whole.
    Attempts,
    /// The error text of a run result.
    ResultError,
    /// The executor named by a run result.
    Executor,
    /// The delay a run result asks for before a retry.
    RetryAfter,
    /// A listing's status filter.
    Status,
    /// A listing's schedule kind filter.
    ScheduleKind,
    /// A listing's name filter.
    NameContains,
}

impl Field {
    /// The field's name in the wire contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::Description => "description",
            Field::ScheduleTime => "schedule_time",
            Field::JobType => "job_type",
            Field::JobData => "job_data",
            Field::Page => "page",
            Field::Size => "size",
            Field::CronExpression => "cron_expression",
            Field::TimeZone => "time_zone",
            Field::DstRepeated => "dst_repeated",
            Field::DstSkipped => "dst_skipped",
            Field::Interval => "interval",
            Field::AnchorTime => "anchor_time",
            Field::StartTime => "start_time",
            Field::EndTime => "end_time",
            Field::MaxRuns => "max_runs",
            Field::Jitter => "jitter",
            Field::Schedule => "schedule",
            Field::CatchUp => "catch_up",
            Field::CatchUpMax => "catch_up_max",
            Field::CatchUpWindow => "catch_up_window",
            Field::Overlap => "overlap",
            Field::ClientKey => "client_key",
            Field::Count => "count",
            Field::Recurrence => "recurrence",
            Field::RetryMaxAttempts => "retry_policy.max_attempts",
            Field::RetryFirstDelay => "retry_policy.first_delay_ms",
            Field::RetryMaxDelay => "retry_policy.max_delay_ms",
            Field::RetryMultiplier => "retry_policy.multiplier",
            Field::RetryJitter => "retry_policy.jitter",
            Field::Attempts => "attempts",
            Field::ResultError => "error",
            Field::Executor => "executor",
            Field::RetryAfter => "retry_after_ms",
            Field::Status => "status",
            Field::ScheduleKind => "schedule_kind",
            Field::NameContains => "name_contains",
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in a call to the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent a value that breaks a rule; the message names the field.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: Field,
        /// What is wrong with it.
        reason: String,
    },
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job exists but is in a state that forbids the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A job with the client key of this creation exists with other content.
    #[error("{0}")]
    AlreadyExists(String),
    /// The job changed under the call too many times in a row; retrying is safe.
    #[error("job {0} was modified concurrently, retry the call")]
    Aborted(JobId),
    /// The database could not be reached or did not answer in time.
    #[error("job store unavailable: {0}")]
    StoreUnavailable(String),
    /// The message broker could not be reached or did not acknowledge in time.
    #[error("message broker unavailable: {0}")]
    BrokerUnavailable(String),
    /// A fault of the service itself (a corrupt document, a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(field: Field, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

/// Most characters of an input value an error message repeats (the `…`
/// that marks a cut included).
pub const EXCERPT_MAX_CHARS: usize = 64;

/// An input value as an error message shows it: quoted, escaped as `{:?}`
/// escapes it (so control characters are visible), and at most
/// [`EXCERPT_MAX_CHARS`] characters between the quotes. A longer value is
/// cut, `…` marks the cut, and its full length follows:
/// `"xxxxxxxx…" (10240 bytes)`. A client that sends 10 KB of garbage gets a
/// short answer, and the log line stays short too.
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(pub &'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = String::with_capacity(EXCERPT_MAX_CHARS);
        let mut width = 0;
        // Where `shown` ends while one character is still left for `…`.
        let mut cut_at = 0;
        for c in self.0.chars() {
            let escaped = c.escape_debug();
            width += escaped.len();
            if width > EXCERPT_MAX_CHARS {
                shown.truncate(cut_at);
                return write!(f, "\"{shown}…\" ({} bytes)", self.0.len());
            }
            shown.extend(escaped);
            if width < EXCERPT_MAX_CHARS {
                cut_at = shown.len();
            }
        }
        f.write_char('"')?;
        f.write_str(&shown)?;
        f.write_char('"')
    }
}

#[cfg(test)]
impl Error {
    /// The field an INVALID_ARGUMENT names (in tests: any other error fails
    /// the test).
    pub(crate) fn invalid_field(self) -> Field {
        match self {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars_between_quotes(shown: &str) -> usize {
        let inner = &shown[1..shown.rfind('"').unwrap()];
        inner.chars().count()
    }

    #[test]
    fn a_short_value_is_shown_whole_and_quoted() {
        assert_eq!(Excerpt("abc").to_string(), r#""abc""#);
        assert_eq!(Excerpt("").to_string(), r#""""#);
        let exact = "x".repeat(EXCERPT_MAX_CHARS);
        assert_eq!(Excerpt(&exact).to_string(), format!("\"{exact}\""));
    }

    #[test]
    fn a_long_value_is_cut_to_the_limit_with_a_mark_and_its_length() {
        let long = "x".repeat(10 * 1024);
        let shown = Excerpt(&long).to_string();
        assert_eq!(chars_between_quotes(&shown), EXCERPT_MAX_CHARS);
        assert!(shown.ends_with("…\" (10240 bytes)"), "{shown}");
        assert!(shown.starts_with(&format!("\"{}", "x".repeat(EXCERPT_MAX_CHARS - 1))));
        let one_over = "y".repeat(EXCERPT_MAX_CHARS + 1);
        assert_eq!(
            chars_between_quotes(&Excerpt(&one_over).to_string()),
            EXCERPT_MAX_CHARS
        );
    }

    #[test]
    fn control_characters_are_escaped_and_count_as_their_escapes() {
        assert_eq!(Excerpt("a\0b\n").to_string(), r#""a\0b\n""#);
        // Escapes are never cut in the middle: 31 NULs are 62 characters of
        // `\0`, and a 32nd would leave no room for the `…`.
        let nuls = "\0".repeat(40);
        let shown = Excerpt(&nuls).to_string();
        assert!(chars_between_quotes(&shown) <= EXCERPT_MAX_CHARS, "{shown}");
        assert!(
            shown.starts_with(&format!("\"{}…", r"\0".repeat(31))),
            "{shown}"
        );
        let wide = "\u{1b}".repeat(40);
        let shown = Excerpt(&wide).to_string();
        assert!(chars_between_quotes(&shown) <= EXCERPT_MAX_CHARS, "{shown}");
        assert!(shown.contains(r"\u{1b}…"), "{shown}");
    }
}
