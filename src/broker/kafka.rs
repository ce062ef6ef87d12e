//! The Kafka [`JobsProducer`] and topic administration, on `rdkafka`.
//!
//! The producer is idempotent with `acks=all` (unless configured otherwise),
//! so a retry inside librdkafka never duplicates or reorders an event; the message key is the job id, so
//! the events of one job stay in order on one partition.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureRecord, Producer},
    util::Timeout,
};

use tracing::Instrument;

use super::{BrokerError, EventKind, JobEvent, JobsProducer, renewing::RenewingProducer};
use crate::{
    config::{KafkaSettings, TopicSettings, TopicSpec},
    domain::Job,
    telemetry::{
        metrics::Metrics,
        propagation::{exporting, inject_current},
    },
};

/// The base client configuration shared by producer, consumer and admin:
/// the brokers and the transport security (TLS, SASL).
pub fn client_config(kafka: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "scheduler-service");
    for property in kafka.security.properties() {
        config.set(property.name, property.value);
    }
    config
}

/// The configuration of a producer of the service: its brokers and
/// security, `acks=all`, idempotent (unless configured otherwise), the
/// configured compression and acknowledgement timeout.
pub(super) fn producer_config(kafka: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(kafka);
    if kafka.idempotence {
        config.set("enable.idempotence", "true");
    } else {
        // Without idempotence a retried batch could overtake the next
        // one; a single request in flight keeps each partition in order.
        config.set("max.in.flight.requests.per.connection", "1");
    }
    config
        .set("acks", "all")
        .set("compression.type", &kafka.compression)
        .set("linger.ms", "2")
        .set(
            "message.timeout.ms",
            kafka.message_timeout.as_millis().to_string(),
        );
    config
}

/// Publishes job events to the three event topics, each with the W3C trace
/// context of the publishing span in its headers.
///
/// A producer that can no longer produce is replaced by a new one (see
/// `broker/renewing.rs`); what it held was not acknowledged and stays in the
/// outbox, for the relay to publish again.
pub struct KafkaJobsProducer {
    producer: RenewingProducer,
    topics: TopicSettings,
    metrics: Arc<Metrics>,
}

impl KafkaJobsProducer {
    /// Creates the producer. Connecting is lazy: this succeeds while the
    /// broker is down, and publishes fail after `message_timeout` until it is up.
    pub fn new(
        kafka: &KafkaSettings,
        topics: TopicSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        let producer = RenewingProducer::new(producer_config(kafka), kafka.message_timeout)?;
        Ok(KafkaJobsProducer {
            producer,
            topics,
            metrics,
        })
    }

    /// The topic of an event of `kind`; a result notice has none.
    fn topic(&self, kind: EventKind) -> Result<&str, BrokerError> {
        Ok(match kind {
            EventKind::Create => &self.topics.job_create.name,
            EventKind::Update => &self.topics.job_update.name,
            EventKind::Run => &self.topics.job_run.name,
            EventKind::DeadLetter => &self.topics.job_dead_letter,
            EventKind::Delete => &self.topics.job_delete,
            EventKind::Result => {
                return Err(BrokerError::Other(
                    "a result notice is for live subscribers only, not a topic".into(),
                ));
            }
        })
    }

    /// Sends one event and waits for the broker's acknowledgement; the
    /// current span's trace context goes into the headers.
    async fn send(&self, topic: &str, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        let payload = serde_json::to_vec(&JobEvent::from(job))
            .map_err(|e| BrokerError::Other(format!("cannot encode event: {e}")))?;
        let key = job.id.to_hex();
        let firing_key = format!("{key}:{}", job.current_fire_token());
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "event-kind",
                value: Some(kind.as_str()),
            })
            .insert(Header {
                key: "firing-key",
                value: Some(&firing_key),
            });
        let mut trace_context = HashMap::new();
        inject_current(&mut trace_context);
        for (name, value) in &trace_context {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        self.producer.send(record).await.map_err(|e| map_err(&e))
    }
}

/// The service's error for a send the broker did not acknowledge: a
/// message it can never take is [`BrokerError::Other`], anything else may
/// pass and is [`BrokerError::Unavailable`].
pub(super) fn map_err(err: &KafkaError) -> BrokerError {
    match err.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessage) => {
            BrokerError::Other(err.to_string())
        }
        _ => BrokerError::Unavailable(err.to_string()),
    }
}

/// The producer span of one event, for the trace: made only while spans
/// are exported, since there is one per event (see `firing_span` in the
/// service).
fn publish_span(topic: &str, kind: EventKind, job: &Job) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "publish",
        otel.name = format_args!("{topic} publish"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = %topic,
        job_id = %job.id,
        event_kind = kind.as_str(),
    )
}

#[async_trait]
impl JobsProducer for KafkaJobsProducer {
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        let topic = self.topic(kind)?;
        let span = publish_span(topic, kind, job);
        let published = self.send(topic, kind, job).instrument(span.clone()).await;
        match &published {
            Ok(()) => self.metrics.event_published(topic),
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                self.metrics.event_failed(topic);
            }
        }
        published
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BrokerError> {
        let producer = self.producer.producer();
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(|e| BrokerError::Other(e.to_string()))?
            .map_err(|e| map_err(&e))
    }
}

/// Creates the topics the service produces to (the dead-letter topics of
/// run results and of jobs among them, and the run-result topic it
/// consumes, so that a fresh cluster works); a topic that exists is fine.
pub async fn ensure_topics(
    kafka: &KafkaSettings,
    topics: &TopicSettings,
    timeout: Duration,
) -> Result<(), BrokerError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka)
        .create()
        .map_err(|e| BrokerError::Other(format!("cannot create Kafka admin client: {e}")))?;
    let one_partition = |name: &String| TopicSpec {
        name: name.clone(),
        partitions: 1,
        replicas: topics.job_run.replicas,
    };
    let run_result = one_partition(&topics.job_run_result);
    let result_dead_letter = one_partition(&topics.job_run_result_dead_letter);
    let job_dead_letter = one_partition(&topics.job_dead_letter);
    let job_delete = one_partition(&topics.job_delete);
    let specs = [
        &topics.job_create,
        &topics.job_update,
        &topics.job_run,
        &run_result,
        &result_dead_letter,
        &job_dead_letter,
        &job_delete,
    ];
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|t| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replicas)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Timeout::After(timeout)))
        .request_timeout(Some(Timeout::After(timeout)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| map_err(&e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, code)) => {
                return Err(BrokerError::Unavailable(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}
