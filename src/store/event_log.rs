//! The event log port: job events kept in the store, in the order they were
//! published, each under a sequence number, with the positions of the named
//! (durable) subscriptions that read them. Only the embedded store keeps a
//! log ([`super::embedded::EmbeddedJobDB`]): without Kafka it is the bus, so
//! an event published while no executor listens is kept for it. With Kafka
//! and MongoDB or PostgreSQL, the topics are the log and consumer groups
//! the subscriptions.
//!
//! Events enter the log in the write that clears them from their job's
//! outbox ([`super::JobDB::clear_pending_many`]): one transaction, so an
//! event is logged exactly once, whether the service crashes before that
//! write (the relay logs it later) or after it (nothing is owed any more).

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::domain::{AckOutcome, EventFilter, LoggedEvent};

/// Where a named subscription resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionStart {
    /// Every event up to this sequence number is acknowledged, or passed
    /// over (its filter leaves it out, or the retention removed it).
    pub position: u64,
    /// Events after `position` acknowledged already, in order.
    pub acked: Vec<u64>,
    /// Events the retention removed before this subscription acknowledged
    /// them, since it last learned of such a loss.
    pub missed: u64,
}

/// Job events kept in order, and the positions of named subscriptions.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Where the subscription `name` resumes (a new name: at the start of
    /// the log); records `filter` as its filter (the events it leaves out
    /// count as passed over) and resets its count of missed events.
    async fn subscribe(
        &self,
        name: &str,
        filter: &EventFilter,
    ) -> Result<SubscriptionStart, StoreError>;

    /// At most `limit` events from sequence number `from` on, in order.
    async fn read_from(&self, from: u64, limit: usize) -> Result<Vec<LoggedEvent>, StoreError>;

    /// The events with these sequence numbers that are still kept, in order.
    async fn read_at(&self, sequences: Vec<u64>) -> Result<Vec<LoggedEvent>, StoreError>;

    /// Acknowledges, for `name`, the event `sequence`.
    async fn ack(&self, name: &str, sequence: u64) -> Result<AckOutcome, StoreError>;

    /// How many events `name` missed (the retention removed them before it
    /// acknowledged them) since it was last told; resets the count.
    async fn take_missed(&self, name: &str) -> Result<u64, StoreError>;

    /// Removes the oldest events until at most `max_events` are kept and
    /// none is older than `max_age`; each subscription that had not
    /// acknowledged a removed event its filter admits counts it as missed.
    /// Returns how many events were removed.
    async fn trim(&self, max_events: u64, max_age: Duration) -> Result<u64, StoreError>;
}
