//! Kafka: the client (brokers, compression, idempotence, timeouts, and its
//! transport security from [`super::kafka_security`]) and the topics the
//! service produces to and consumes, with their shapes.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, kafka_security::KafkaSecurity, value, vars};

/// The Kafka client.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Compression codec of produced batches.
    pub compression: String,
    /// Whether the producer is idempotent.
    pub idempotence: bool,
    /// How long a publish may wait for the acknowledgement.
    pub message_timeout: Duration,
    /// Longest time a fetch waits for data on the broker.
    pub fetch_wait_max: Duration,
    /// How long the run-result consumer retries a result that the store
    /// cannot take for a passing reason (an outage, a fail-over, a full
    /// disk) before it sends the result to the dead-letter topic.
    pub result_retry: Duration,
    /// TLS and SASL of the connections to the brokers.
    pub security: KafkaSecurity,
}

/// A topic the service creates and produces to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replicas: i32,
}

/// Topic names and shapes, from the topics file.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    /// Create events.
    pub job_create: TopicSpec,
    /// Update events.
    pub job_update: TopicSpec,
    /// Run events.
    pub job_run: TopicSpec,
    /// Run results (consumed).
    pub job_run_result: String,
    /// Run results that could not be stored, with the reason (created and
    /// produced to).
    pub job_run_result_dead_letter: String,
    /// Dead-letter events: jobs whose run failed for good (created and
    /// produced to).
    pub job_dead_letter: String,
    /// Delete events: finished jobs removed by `JOB_RETENTION` (created and
    /// produced to).
    pub job_delete: String,
    /// Consumer group of the run-result consumer.
    pub consumer_group_id: String,
    /// Consumers in that group.
    pub consumer_workers: usize,
}

/// How long a run result that the store cannot take for a passing reason
/// is retried by default: longer than a replica set's election or a
/// PostgreSQL restart (seconds to a minute), so that those never send a
/// result to the dead-letter topic, and short enough that one result does
/// not hold its partition for long when the store stays down (each result
/// then waits this long, and goes to the dead-letter topic, to be replayed).
const DEFAULT_RESULT_RETRY: Duration = Duration::from_secs(300);

/// The Kafka client's variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct KafkaVars {
    kafka_brokers: Option<String>,
    kafka_compression: String,
    #[serde(deserialize_with = "value::flag")]
    kafka_enable_idempotence: bool,
    #[serde(deserialize_with = "value::millis")]
    kafka_message_timeout_ms: Duration,
    #[serde(deserialize_with = "value::millis")]
    kafka_fetch_wait_max_ms: Duration,
    #[serde(deserialize_with = "value::seconds")]
    run_result_retry_secs: Duration,
}

impl Default for KafkaVars {
    fn default() -> Self {
        KafkaVars {
            kafka_brokers: None,
            kafka_compression: "lz4".to_owned(),
            kafka_enable_idempotence: true,
            kafka_message_timeout_ms: Duration::from_millis(10_000),
            kafka_fetch_wait_max_ms: Duration::from_millis(100),
            run_result_retry_secs: DEFAULT_RESULT_RETRY,
        }
    }
}

impl KafkaVars {
    /// How long a publish may wait for the acknowledgement, brokers or not.
    pub(super) fn message_timeout(&self) -> Duration {
        self.kafka_message_timeout_ms
    }

    /// The client's settings, with `security`; `None` when no brokers are
    /// set (events then go to the in-process hub only). The other variables
    /// are checked either way; librdkafka checks the security settings only
    /// when there are brokers to use them with.
    pub(super) fn into_settings(
        self,
        security: KafkaSecurity,
    ) -> Result<Option<KafkaSettings>, ConfigError> {
        let compression = self.kafka_compression.to_ascii_lowercase();
        if !matches!(
            compression.as_str(),
            "none" | "gzip" | "lz4" | "zstd" | "snappy"
        ) {
            return Err(ConfigError::new(
                vars::KAFKA_COMPRESSION,
                format!("expected none, gzip, lz4, zstd or snappy, got {compression:?}"),
            ));
        }
        if let Some(brokers) = &self.kafka_brokers
            && brokers.split(',').any(|b| b.trim().is_empty())
        {
            return Err(ConfigError::new(
                vars::KAFKA_BROKERS,
                format!("empty entry in {brokers:?}"),
            ));
        }
        let Some(brokers) = self.kafka_brokers else {
            return Ok(None);
        };
        security.check_with_librdkafka()?;
        Ok(Some(KafkaSettings {
            brokers,
            compression,
            idempotence: self.kafka_enable_idempotence,
            message_timeout: self.kafka_message_timeout_ms,
            fetch_wait_max: self.kafka_fetch_wait_max_ms,
            result_retry: self.run_result_retry_secs,
            security,
        }))
    }
}

/// Most consumers of the run-result topic in the group.
const MAX_CONSUMER_WORKERS: usize = 64;

/// The topics' variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct TopicVars {
    topic_job_create: String,
    #[serde(deserialize_with = "value::positive")]
    topic_job_create_partitions: i32,
    #[serde(deserialize_with = "value::positive")]
    topic_job_create_replicas: i32,
    topic_job_update: String,
    #[serde(deserialize_with = "value::positive")]
    topic_job_update_partitions: i32,
    #[serde(deserialize_with = "value::positive")]
    topic_job_update_replicas: i32,
    topic_job_run: String,
    #[serde(deserialize_with = "value::positive")]
    topic_job_run_partitions: i32,
    #[serde(deserialize_with = "value::positive")]
    topic_job_run_replicas: i32,
    topic_job_run_result: String,
    topic_job_run_result_dead_letter: String,
    topic_job_dead_letter: String,
    topic_job_delete: String,
    topic_job_run_result_consumer_group_id: String,
    #[serde(deserialize_with = "value::positive")]
    topic_job_run_result_consumer_worker_count: usize,
}

impl Default for TopicVars {
    fn default() -> Self {
        TopicVars {
            topic_job_create: "topic-job-create".to_owned(),
            topic_job_create_partitions: 1,
            topic_job_create_replicas: 1,
            topic_job_update: "topic-job-update".to_owned(),
            topic_job_update_partitions: 1,
            topic_job_update_replicas: 1,
            topic_job_run: "topic-job-run".to_owned(),
            topic_job_run_partitions: 1,
            topic_job_run_replicas: 1,
            topic_job_run_result: "topic-job-run-result".to_owned(),
            topic_job_run_result_dead_letter: "topic-job-run-result-dead-letter".to_owned(),
            topic_job_dead_letter: "topic-job-dead-letter".to_owned(),
            topic_job_delete: "topic-job-delete".to_owned(),
            topic_job_run_result_consumer_group_id: "job-run-result-consumer-scheduler".to_owned(),
            topic_job_run_result_consumer_worker_count: 1,
        }
    }
}

impl TopicVars {
    /// The topics' settings, with at most [`MAX_CONSUMER_WORKERS`] consumers.
    pub(super) fn into_settings(self) -> Result<TopicSettings, ConfigError> {
        if self.topic_job_run_result_consumer_worker_count > MAX_CONSUMER_WORKERS {
            return Err(ConfigError::new(
                vars::TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT,
                format!("must be at most {MAX_CONSUMER_WORKERS}"),
            ));
        }
        Ok(TopicSettings {
            job_create: TopicSpec {
                name: self.topic_job_create,
                partitions: self.topic_job_create_partitions,
                replicas: self.topic_job_create_replicas,
            },
            job_update: TopicSpec {
                name: self.topic_job_update,
                partitions: self.topic_job_update_partitions,
                replicas: self.topic_job_update_replicas,
            },
            job_run: TopicSpec {
                name: self.topic_job_run,
                partitions: self.topic_job_run_partitions,
                replicas: self.topic_job_run_replicas,
            },
            job_run_result: self.topic_job_run_result,
            job_run_result_dead_letter: self.topic_job_run_result_dead_letter,
            job_dead_letter: self.topic_job_dead_letter,
            job_delete: self.topic_job_delete,
            consumer_group_id: self.topic_job_run_result_consumer_group_id,
            consumer_workers: self.topic_job_run_result_consumer_worker_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::settings;
    use super::*;

    #[test]
    fn topics_come_from_the_lookup() {
        let s = settings(&[
            (vars::TOPIC_JOB_RUN, "runs"),
            (vars::TOPIC_JOB_RUN_PARTITIONS, "6"),
            (vars::TOPIC_JOB_RUN_REPLICAS, "3"),
            (vars::TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT, "4"),
        ])
        .unwrap();
        assert_eq!(
            s.topics.job_run,
            TopicSpec {
                name: "runs".into(),
                partitions: 6,
                replicas: 3
            }
        );
        assert_eq!(s.topics.consumer_workers, 4);
    }

    #[test]
    fn the_dead_letter_topic_and_the_retry_bound_have_defaults_and_can_be_set() {
        let brokers = (vars::KAFKA_BROKERS, "127.0.0.1:9092");
        let s = settings(&[brokers]).unwrap();
        assert_eq!(
            s.topics.job_run_result_dead_letter,
            "topic-job-run-result-dead-letter"
        );
        assert_eq!(s.kafka.unwrap().result_retry, Duration::from_secs(300));
        let s = settings(&[
            brokers,
            (vars::TOPIC_JOB_RUN_RESULT_DEAD_LETTER, "results-dlq"),
            (vars::RUN_RESULT_RETRY_SECS, "30"),
        ])
        .unwrap();
        assert_eq!(s.topics.job_run_result_dead_letter, "results-dlq");
        assert_eq!(s.kafka.unwrap().result_retry, Duration::from_secs(30));
        for refused in ["0", "five"] {
            let err = settings(&[brokers, (vars::RUN_RESULT_RETRY_SECS, refused)]).unwrap_err();
            assert_eq!(err.name, vars::RUN_RESULT_RETRY_SECS, "{refused}");
        }
    }
}
