//! The domain: what a job is, the rules its fields obey, when it fires
//! ([`schedule`]), and the errors the service speaks in. Nothing here knows
//! about gRPC, MongoDB or Kafka.

mod error;
mod event;
mod filter;
pub mod history;
mod job;
pub mod recurrence;
pub mod report;
pub mod retry;
pub mod schedule;
pub mod shard;
mod tally;

pub use error::{EXCERPT_MAX_CHARS, Error, Excerpt, Field};
pub use event::{AckOutcome, EventFilter, EventKind, LoggedEvent};
pub use filter::{JobFacets, JobFilter, ScheduleKind};
pub use job::{
    CLIENT_KEY_MAX_BYTES, ClientKey, DESCRIPTION_MAX_BYTES, JOB_DATA_MAX_BYTES, Job, JobId,
    JobSpec, JobStatus, JobType, NAME_MAX_BYTES, PageRequest, PendingEvents, ResultStatus,
    new_fire_token, now,
};
pub use tally::JobTally;
