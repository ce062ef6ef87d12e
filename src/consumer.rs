//! The run-result consumer: the adapter that drives the service from
//! `topic-job-run-result`, as the gRPC handlers drive it from calls. It
//! reads the topic in a consumer group and stores each result through the
//! [`JobService`].
//!
//! Offsets are stored only after a message is dealt with (stored, or skipped
//! as poison), and committed in the background from those stored offsets, so
//! that a crash redelivers every unprocessed result. A poison message (not
//! JSON, unknown job, wrong status) is logged and skipped; a store outage is
//! retried on the same message until it succeeds, so consumption never
//! commits past a valid message that was not stored.
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
    broker::{BrokerError, kafka::client_config, parse_run_result},
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
            Ok(consume(consumer, service.clone(), shutdown.clone()))
        })
        .collect()
}

async fn consume(consumer: ResultConsumer, service: JobService, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
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
                if !handle(&service, &message, &shutdown).instrument(span).await {
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
                if !backoff.wait(&shutdown).await {
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
            service.metrics().result_skipped("malformed");
            tracing::warn!(error = %err, ?position, "skipping malformed run result");
            return true;
        }
    };
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        match service
            .record_result(result.id, result.status, result.fire_token)
            .await
        {
            Ok(_) => return true,
            Err(err @ Error::StoreUnavailable(_)) => {
                tracing::warn!(error = %err, ?position, retry_in = ?backoff.current(), "cannot store run result, retrying");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, ?position, "skipping run result");
                return true;
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
