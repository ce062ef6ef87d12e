//! The run-result consumer: reads `topic-job-run-result` in a consumer group
//! and stores each result through the [`JobService`].
//!
//! Offsets are stored only after a message is dealt with (stored, or skipped
//! as poison), and committed in the background from those stored offsets, so
//! that a crash redelivers every unprocessed result. A poison message (not
//! JSON, unknown job, wrong status) is logged and skipped; a store outage is
//! retried on the same message until it succeeds, so consumption never
//! commits past a valid message that was not stored.

use std::time::Duration;

use rdkafka::{
    Message,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::BorrowedMessage,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{BrokerError, kafka::client_config, parse_run_result};
use crate::{
    config::{KafkaSettings, TopicSettings},
    domain::Error,
    service::JobService,
};

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Starts `topics.consumer_workers` consumers in the run-result group.
pub fn spawn_result_consumers(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    service: JobService,
    shutdown: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, BrokerError> {
    (0..topics.consumer_workers)
        .map(|worker| {
            let consumer: StreamConsumer = client_config(kafka)
                .set("group.id", &topics.consumer_group_id)
                .set("client.id", format!("scheduler-service-results-{worker}"))
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "1000")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set(
                    "fetch.wait.max.ms",
                    kafka.fetch_wait_max.as_millis().to_string(),
                )
                .create()
                .map_err(|e| BrokerError::Other(format!("cannot create Kafka consumer: {e}")))?;
            consumer
                .subscribe(&[&topics.job_run_result])
                .map_err(|e| BrokerError::Other(format!("cannot subscribe: {e}")))?;
            Ok(tokio::spawn(consume(
                consumer,
                service.clone(),
                shutdown.clone(),
            )))
        })
        .collect()
}

async fn consume(consumer: StreamConsumer, service: JobService, shutdown: CancellationToken) {
    let mut delay = RETRY_FIRST;
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                delay = RETRY_FIRST;
                if !handle(&service, &message, &shutdown).await {
                    break;
                }
                if let Err(err) = consumer.store_offset_from_message(&message) {
                    tracing::warn!(error = %err, "cannot store consumer offset");
                }
            }
            Err(err) => {
                // Broker unreachable or a transient fetch error: librdkafka
                // reconnects by itself; wait a little so as not to spin.
                tracing::warn!(error = %err, "run-result consumer error");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
    // Commit what was processed and leave the group, so that another member
    // takes over the partitions at once.
    if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(error = %err, "no offsets to commit at shutdown");
    }
    consumer.unsubscribe();
    tracing::info!("run-result consumer stopped");
}

/// Deals with one message; false only when shutdown interrupted a retry (the
/// message is then left uncommitted, to be redelivered).
async fn handle(
    service: &JobService,
    message: &BorrowedMessage<'_>,
    shutdown: &CancellationToken,
) -> bool {
    let position = (message.partition(), message.offset());
    let result = match parse_run_result(message.payload().unwrap_or_default()) {
        Ok(result) => result,
        Err(err) => {
            tracing::warn!(error = %err, ?position, "skipping malformed run result");
            return true;
        }
    };
    let mut delay = RETRY_FIRST;
    loop {
        match service.record_result(result.id, result.status).await {
            Ok(_) => return true,
            Err(err @ Error::StoreUnavailable(_)) => {
                tracing::warn!(error = %err, ?position, retry_in = ?delay, "cannot store run result, retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
            Err(err) => {
                tracing::warn!(error = %err, ?position, "skipping run result");
                return true;
            }
        }
    }
}
