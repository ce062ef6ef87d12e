//! The in-process event hub: every published job event, fanned out to the
//! gRPC `JobEvents.Subscribe` streams. With Kafka configured the hub rides
//! along (events go to Kafka and to subscribers); without Kafka it is the
//! only bus, so the service runs with no external process.
//!
//! On the embedded store, events reach the hub from the store's event log
//! (each as its append is committed, with its sequence number), not from
//! the producer: see [`crate::store::event_log`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{BrokerError, EventKind, JobsProducer};
use crate::domain::{Job, LoggedEvent};

/// How many events a slow subscriber may fall behind before it is told it
/// missed some.
pub const HUB_CAPACITY: usize = 4096;

/// One published event (its sequence number is 0 unless a log keeps it).
pub type HubEvent = LoggedEvent;

/// What a subscriber's stream carries: an event of the hub (shared), or how
/// many events the subscriber missed.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// An event.
    Event(Arc<HubEvent>),
    /// The subscriber missed this many events.
    Lagged(u64),
}

/// The broadcast point of job events; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<HubEvent>>,
}

impl EventHub {
    /// A hub keeping up to `capacity` events for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        EventHub {
            sender: broadcast::channel(capacity).0,
        }
    }

    /// A new subscription, receiving the events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<HubEvent>> {
        self.sender.subscribe()
    }

    /// Sends `event` to every subscriber.
    pub fn send(&self, event: HubEvent) {
        // No subscriber is not an error: the event simply has no audience.
        let _ = self.sender.send(Arc::new(event));
    }
}

/// Publishes to the broker, if one is configured, then to the hub, if
/// given (none when the store's event log feeds it). An event reaches
/// subscribers only once the broker acknowledged it, so a subscriber never
/// sees an event that the outbox will publish again.
pub struct FanOutProducer {
    broker: Option<Arc<dyn JobsProducer>>,
    hub: Option<EventHub>,
}

impl FanOutProducer {
    /// Fans out to `broker` (none: in-process only) and `hub`.
    pub fn new(broker: Option<Arc<dyn JobsProducer>>, hub: Option<EventHub>) -> Self {
        FanOutProducer { broker, hub }
    }
}

#[async_trait]
impl JobsProducer for FanOutProducer {
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        if let Some(broker) = &self.broker {
            broker.publish(kind, job).await?;
        }
        if let Some(hub) = &self.hub {
            hub.send(HubEvent {
                sequence: 0,
                kind,
                job: job.clone(),
            });
        }
        Ok(())
    }

    async fn flush(&self, timeout: std::time::Duration) -> Result<(), BrokerError> {
        match &self.broker {
            Some(broker) => broker.flush(timeout).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobSpec, JobType, now};

    fn job() -> Job {
        Job::new_scheduled(
            JobSpec {
                name: "n".into(),
                description: String::new(),
                schedule_time: now(),
                job_type: JobType::Email,
                job_data: "{}".into(),
            },
            now(),
        )
    }

    struct DownBroker;

    #[async_trait]
    impl JobsProducer for DownBroker {
        async fn publish(&self, _: EventKind, _: &Job) -> Result<(), BrokerError> {
            Err(BrokerError::Unavailable("down".into()))
        }
        async fn flush(&self, _: std::time::Duration) -> Result<(), BrokerError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_subscriber_receives_every_event_and_a_slow_one_learns_it_lagged() {
        let hub = EventHub::new(2);
        let producer = FanOutProducer::new(None, Some(hub.clone()));
        let (mut a, mut b) = (hub.subscribe(), hub.subscribe());
        let job = job();
        producer.publish(EventKind::Create, &job).await.unwrap();
        assert_eq!(a.recv().await.unwrap().kind, EventKind::Create);
        assert_eq!(b.recv().await.unwrap().job, job);
        for kind in [EventKind::Update, EventKind::Run, EventKind::Run] {
            producer.publish(kind, &job).await.unwrap();
        }
        assert!(matches!(
            a.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
    }

    #[tokio::test]
    async fn an_event_the_broker_refused_is_not_fanned_out() {
        let hub = EventHub::new(8);
        let producer = FanOutProducer::new(Some(Arc::new(DownBroker)), Some(hub.clone()));
        let mut subscriber = hub.subscribe();
        assert!(producer.publish(EventKind::Run, &job()).await.is_err());
        assert!(subscriber.try_recv().is_err());
    }
}
