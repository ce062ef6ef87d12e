//! A Kafka producer that renews itself: a librdkafka producer that hits a
//! fatal error, or whose producer id the broker keeps refusing (an
//! idempotent producer fenced, or out of sequence after an outage), can
//! never produce again, and the service must not need a restart for that.
//! So the producer is replaced by a new one; what the old one held was not
//! acknowledged, and its sender tries again (the outbox relay, the
//! run-result consumer's dead letters).

use std::{sync::RwLock, time::Duration};

use rdkafka::{
    ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    message::ToBytes,
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};

use super::BrokerError;

/// A producer of one configuration, replaced when it can no longer produce.
pub(super) struct RenewingProducer {
    config: ClientConfig,
    current: RwLock<Generation>,
    /// How long a send waits for the broker's acknowledgement.
    timeout: Duration,
}

/// The producer in use, and how many producers came before it.
#[derive(Clone)]
struct Generation {
    number: u64,
    producer: FutureProducer,
}

impl RenewingProducer {
    /// A producer of `config` whose sends wait `timeout` for their
    /// acknowledgement. Connecting is lazy: this succeeds while the broker
    /// is down.
    pub(super) fn new(config: ClientConfig, timeout: Duration) -> Result<Self, BrokerError> {
        let producer = create_producer(&config)?;
        Ok(RenewingProducer {
            config,
            current: RwLock::new(Generation {
                number: 0,
                producer,
            }),
            timeout,
        })
    }

    /// The producer in use.
    pub(super) fn producer(&self) -> FutureProducer {
        self.generation().producer
    }

    fn generation(&self) -> Generation {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends `record` and waits for the broker's acknowledgement; a producer
    /// that the failure shows to be broken is replaced for the next send.
    pub(super) async fn send<K, P>(&self, record: FutureRecord<'_, K, P>) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let generation = self.generation();
        let sent = generation
            .producer
            .send(record, Timeout::After(self.timeout))
            .await;
        sent.map(drop).map_err(|(err, _)| {
            self.replace_if_broken(&generation, &err);
            err
        })
    }

    /// After a send on `used` failed with `err`: if that producer can no
    /// longer produce (librdkafka's fatal error, or the broker refusing its
    /// producer id or epoch, which no retry of the same producer cures),
    /// replaces it, once however many sends saw the error.
    fn replace_if_broken(&self, used: &Generation, err: &KafkaError) {
        let fatal = used.producer.client().fatal_error();
        let refused = err.rdkafka_error_code().filter(|code| {
            matches!(
                code,
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::InvalidProducerIdMapping
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            )
        });
        let Some((code, reason)) = fatal.or(refused.map(|code| (code, err.to_string()))) else {
            return;
        };
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.number != used.number {
            return; // already replaced
        }
        match create_producer(&self.config) {
            Ok(producer) => {
                tracing::error!(?code, %reason, generation = used.number + 1,
                    "the Kafka producer can no longer produce; a new producer replaces it");
                *current = Generation {
                    number: used.number + 1,
                    producer,
                };
            }
            Err(err) => tracing::error!(error = %err, "cannot replace the failed Kafka producer"),
        }
    }
}

fn create_producer(config: &ClientConfig) -> Result<FutureProducer, BrokerError> {
    config
        .create()
        .map_err(|e| BrokerError::Other(format!("cannot create Kafka producer: {e}")))
}
