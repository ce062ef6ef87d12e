//! The message broker: the [`JobsProducer`] trait the service publishes job
//! events through, the JSON formats on the topics (job events out, run
//! results in, read by the [`crate::consumer`] adapter), the Kafka producer
//! and topic administration, the dead-letter topic of the run results that
//! cannot be stored, and the in-process hub that feeds gRPC subscribers
//! (and is the only bus when Kafka is not configured).

pub mod dead_letter;
pub mod durable;
mod event;
pub mod hub;
pub mod kafka;
mod renewing;
mod run_result;

use async_trait::async_trait;

use crate::domain::{self, Job};

pub use event::{EventKind, JobEvent};
pub use run_result::{RunResult, RunResultError, parse_run_result};

/// A failure to hand an event to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker could not be reached or did not acknowledge in time.
    #[error("{0}")]
    Unavailable(String),
    /// The broker refused the request for another reason.
    #[error("{0}")]
    Other(String),
}

impl From<BrokerError> for domain::Error {
    fn from(err: BrokerError) -> Self {
        match err {
            BrokerError::Unavailable(msg) | BrokerError::Other(msg) => {
                domain::Error::BrokerUnavailable(msg)
            }
        }
    }
}

/// Publishes job events. `publish` returns once the broker has acknowledged
/// the event.
#[async_trait]
pub trait JobsProducer: Send + Sync + 'static {
    /// Publishes `job` as an event of `kind` (to that kind's topic).
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError>;

    /// Waits until every event handed over so far is delivered, or `timeout`.
    async fn flush(&self, timeout: std::time::Duration) -> Result<(), BrokerError>;
}

/// A producer that drops every event: for benchmarks of the scheduling core
/// and for unit tests that do not look at events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullProducer;

#[async_trait]
impl JobsProducer for NullProducer {
    async fn publish(&self, _kind: EventKind, _job: &Job) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn flush(&self, _timeout: std::time::Duration) -> Result<(), BrokerError> {
        Ok(())
    }
}
