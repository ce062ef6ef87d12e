//! The dead-letter topic of run results (`TOPIC_JOB_RUN_RESULT_DEAD_LETTER`):
//! where the run-result consumer puts a message it cannot store, instead of
//! dropping it. The message goes as it came (its key, payload and headers,
//! so that an operator can produce it to the run-result topic again once the
//! cause is fixed), with headers that say why and where it came from:
//! [`REASON`], [`ORIGINAL_TOPIC`], [`ORIGINAL_PARTITION`] and
//! [`ORIGINAL_OFFSET`].

use rdkafka::{
    Message,
    message::{BorrowedMessage, Header, Headers, OwnedHeaders},
    producer::FutureRecord,
};

use super::{
    BrokerError,
    kafka::{map_err, producer_config},
    renewing::RenewingProducer,
};
use crate::config::KafkaSettings;

/// Header of a dead letter: why it could not be stored.
pub const REASON: &str = "dead-letter-reason";
/// Header of a dead letter: the topic it was read from.
pub const ORIGINAL_TOPIC: &str = "dead-letter-original-topic";
/// Header of a dead letter: the partition it was read from.
pub const ORIGINAL_PARTITION: &str = "dead-letter-original-partition";
/// Header of a dead letter: its offset in that partition.
pub const ORIGINAL_OFFSET: &str = "dead-letter-original-offset";

/// The prefix of the headers a dead letter gets; a message's own headers
/// with it (a dead letter produced again, and dead again) are replaced.
const PREFIX: &str = "dead-letter-";

/// Publishes run results to the dead-letter topic; shared by the consumers.
pub struct DeadLetters {
    producer: RenewingProducer,
    topic: String,
}

impl DeadLetters {
    /// A producer to `topic`, configured as the event producer (every
    /// replica acknowledges a dead letter, and an idempotent producer never
    /// writes one twice on its own retries), and replaced likewise when it
    /// can no longer produce. Connecting is lazy, as for the event producer.
    pub fn new(kafka: &KafkaSettings, topic: &str) -> Result<Self, BrokerError> {
        let mut config = producer_config(kafka);
        config.set("client.id", "scheduler-service-dead-letters");
        Ok(DeadLetters {
            producer: RenewingProducer::new(config, kafka.message_timeout)?,
            topic: topic.to_owned(),
        })
    }

    /// The topic dead letters go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `message` as it came, with `reason` and where it came from
    /// in its headers, and waits for the broker's acknowledgement.
    pub async fn publish(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
    ) -> Result<(), BrokerError> {
        let headers = dead_letter_headers(message, reason);
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        self.producer.send(record).await.map_err(|e| map_err(&e))
    }
}

/// The headers of `message` (but any of a dead letter's own) and those that
/// make it a dead letter.
fn dead_letter_headers(message: &BorrowedMessage<'_>, reason: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(own) = message.headers() {
        for header in own.iter().filter(|h| !h.key.starts_with(PREFIX)) {
            headers = headers.insert(header);
        }
    }
    let (partition, offset) = (
        message.partition().to_string(),
        message.offset().to_string(),
    );
    for (key, value) in [
        (REASON, reason),
        (ORIGINAL_TOPIC, message.topic()),
        (ORIGINAL_PARTITION, partition.as_str()),
        (ORIGINAL_OFFSET, offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}
