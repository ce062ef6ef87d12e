//! The service's error type. Every layer converts its own failures into this
//! enum, and the gRPC layer maps each variant to one status code.

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
