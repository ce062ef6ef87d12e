//! The run-result consumer: the adapter that drives the service from
//! `topic-job-run-result`, as the gRPC handlers drive it from calls. It
//! reads the topic in a consumer group and stores each result through the
//! [`JobService`].
//!
//! Offsets are stored only after a message is dealt with, and committed in
//! the background from those stored offsets, so that a crash redelivers
//! every unprocessed result. A message is dealt with when:
//! - the store took it, or decided it: stored, a duplicate, or skipped
//!   because its job is unknown, not running, or runs another firing than
//!   the one it names (stale); each is logged and counted;
//! - it could not be stored, and is on the dead-letter topic
//!   (`TOPIC_JOB_RUN_RESULT_DEAD_LETTER`) with the reason in a header (see
//!   [`crate::broker::dead_letter`]): a malformed message (not a result
//!   message: it is also counted as skipped), a result the store refused
//!   (a corrupt job, say), or a result that the store could not take for a
//!   passing reason ([`Error::StoreUnavailable`]: an outage, a fail-over, a
//!   full disk) while it was retried with backoff for `RUN_RESULT_RETRY_SECS`.
//!
//! A dead letter that the broker does not take is retried until it does, so
//! consumption never commits past a result that is neither stored nor on
//! the dead-letter topic; nor does shutdown, which leaves the message being
//! retried uncommitted, to be delivered again.
//!
//! Each message is handled in a span that continues the trace in its
//! `traceparent` header (the run event's, copied by the executor), and the
//! consumer's lag per partition is read from librdkafka's statistics.

use std::{sync::Arc, time::Duration};

use opentelemetry::propagation::Extractor;
use rdkafka::{
    ClientContext, Message, Statistics,
    consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer},
    message::{BorrowedMessage, Headers},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    backoff::Backoff,
    broker::{
        BrokerError, RunResult, RunResultError, dead_letter::DeadLetters, kafka::client_config,
        parse_run_result,
    },
    config::{KafkaSettings, TopicSettings},
    domain::Error,
    service::JobService,
    telemetry::{metrics::Metrics, propagation::set_parent_from},
};

/// How often librdkafka reports statistics (the consumer lag).
const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// The consumer's context: turns librdkafka's statistics into the lag gauge.
struct LagReporter {
    metrics: Arc<Metrics>,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" entry, and
                // a lag of -1 means not known yet.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .set_consumer_lag(topic, *partition, stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

type ResultConsumer = StreamConsumer<LagReporter>;

/// First and largest delay between retries of a store or broker failure.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The `topics.consumer_workers` consumers of the run-result group, each a
/// future that consumes until shutdown (the caller runs them as duties).
pub fn result_consumers(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    service: JobService,
    shutdown: CancellationToken,
) -> Result<Vec<impl Future<Output = ()> + Send + 'static>, BrokerError> {
    let dead_letters = Arc::new(DeadLetters::new(kafka, &topics.job_run_result_dead_letter)?);
    (0..topics.consumer_workers)
        .map(|worker| {
            let consumer: ResultConsumer = client_config(kafka)
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
                .set(
                    "statistics.interval.ms",
                    STATISTICS_INTERVAL.as_millis().to_string(),
                )
                .create_with_context(LagReporter {
                    metrics: service.metrics().clone(),
                })
                .map_err(|e| BrokerError::Other(format!("cannot create Kafka consumer: {e}")))?;
            consumer
                .subscribe(&[&topics.job_run_result])
                .map_err(|e| BrokerError::Other(format!("cannot subscribe: {e}")))?;
            let handler = Handler {
                service: service.clone(),
                dead_letters: dead_letters.clone(),
                retry_bound: kafka.result_retry,
                shutdown: shutdown.clone(),
            };
            Ok(consume(consumer, handler))
        })
        .collect()
}

async fn consume(consumer: ResultConsumer, handler: Handler) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let received = tokio::select! {
            () = handler.shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                backoff.reset();
                let span = tracing::info_span!(
                    "consume",
                    otel.name = format_args!("{} process", message.topic()),
                    otel.kind = "consumer",
                    messaging.system = "kafka",
                    messaging.destination.name = %message.topic(),
                    messaging.kafka.partition = message.partition(),
                    messaging.kafka.offset = message.offset(),
                );
                set_parent_from(&span, &HeaderExtractor(&message));
                if !handler.handle(&message).instrument(span).await {
                    break;
                }
                if let Err(err) = consumer.store_offset_from_message(&message) {
                    tracing::warn!(error = %err, "cannot store consumer offset");
                }
            }
            Err(err) => {
                // Broker unreachable or a transient fetch error: librdkafka
                // reconnects by itself; wait a little so as not to spin.
                tracing::warn!(error = %err, retry_in = ?backoff.current(), "run-result consumer error");
                if !backoff.wait(&handler.shutdown).await {
                    break;
                }
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

/// Why a run result went to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
enum Undeliverable {
    /// The message is not a run result.
    #[error("malformed: {0}")]
    Malformed(RunResultError),
    /// The store refused the result, and would refuse it again.
    #[error("store error: {0}")]
    StoreError(Error),
    /// The store could not take the result for as long as it was retried.
    #[error("store unavailable for {} s: {error}", retried.as_secs())]
    StoreUnavailable {
        /// How long it was retried.
        retried: Duration,
        /// The last failure.
        error: Error,
    },
}

impl Undeliverable {
    /// The reason's label in `scheduler_results_dead_lettered_total`.
    fn label(&self) -> &'static str {
        match self {
            Undeliverable::Malformed(_) => "malformed",
            Undeliverable::StoreError(_) => "store_error",
            Undeliverable::StoreUnavailable { .. } => "store_unavailable",
        }
    }
}

/// What became of a message that is not yet dealt with.
enum Stop {
    /// Shutdown interrupted a retry: the message stays uncommitted.
    Shutdown,
    /// It cannot be stored: to the dead-letter topic with it.
    Undeliverable(Undeliverable),
}

/// What one consumer does with each message.
struct Handler {
    service: JobService,
    dead_letters: Arc<DeadLetters>,
    /// How long a result is retried while the store is unavailable.
    retry_bound: Duration,
    shutdown: CancellationToken,
}

impl Handler {
    /// Deals with one message (see the module documentation); false only
    /// when shutdown interrupted a retry (the message is then left
    /// uncommitted, to be delivered again).
    async fn handle(&self, message: &BorrowedMessage<'_>) -> bool {
        let position = (message.partition(), message.offset());
        let stored = match parse_run_result(message.payload().unwrap_or_default()) {
            Ok(result) => self.store(result, position).await,
            Err(err) => {
                self.service.metrics().result_skipped("malformed");
                tracing::warn!(error = %err, ?position, "malformed run result");
                Err(Stop::Undeliverable(Undeliverable::Malformed(err)))
            }
        };
        match stored {
            Ok(()) => true,
            Err(Stop::Shutdown) => false,
            Err(Stop::Undeliverable(reason)) => self.dead_letter(message, &reason).await,
        }
    }

    /// Offers `result` to the service, retrying with backoff while the store
    /// is unavailable, for at most the retry bound.
    async fn store(&self, result: RunResult, position: (i32, i64)) -> Result<(), Stop> {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        loop {
            let recorded = self.service.record_result(result.id, &result.report).await;
            match recorded {
                Ok(_) => return Ok(()),
                Err(error @ Error::StoreUnavailable(_)) => {
                    let retried = started.elapsed();
                    if retried >= self.retry_bound {
                        let reason = Undeliverable::StoreUnavailable { retried, error };
                        return Err(Stop::Undeliverable(reason));
                    }
                    tracing::warn!(%error, ?position, retry_in = ?backoff.current(), "cannot store run result, retrying");
                    if !backoff.wait(&self.shutdown).await {
                        return Err(Stop::Shutdown);
                    }
                }
                Err(error) => return Err(Stop::Undeliverable(Undeliverable::StoreError(error))),
            }
        }
    }

    /// Publishes `message` to the dead-letter topic for `reason`, retrying
    /// with backoff until the broker takes it; false only if shutdown came
    /// first (the message is then left uncommitted).
    async fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &Undeliverable) -> bool {
        let position = (message.partition(), message.offset());
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        let text = reason.to_string();
        let (metrics, topic) = (self.service.metrics(), self.dead_letters.topic());
        loop {
            match self.dead_letters.publish(message, &text).await {
                Ok(()) => {
                    metrics.event_published(topic);
                    metrics.result_dead_lettered(reason.label());
                    tracing::error!(%reason, ?position, topic, "run result sent to the dead-letter topic");
                    return true;
                }
                Err(err) => {
                    metrics.event_failed(topic);
                    tracing::warn!(error = %err, %reason, ?position, retry_in = ?backoff.current(), "cannot send run result to the dead-letter topic, retrying");
                    if !backoff.wait(&self.shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// A message's headers as a trace-context carrier.
struct HeaderExtractor<'a, 'm>(&'a BorrowedMessage<'m>);

impl Extractor for HeaderExtractor<'_, '_> {
    fn get(&self, key: &str) -> Option<&str> {
        let headers = self.0.headers()?;
        headers
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(key))
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .headers()
            .map(|headers| headers.iter().map(|header| header.key).collect())
            .unwrap_or_default()
    }
}
