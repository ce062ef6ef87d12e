//! Named (durable) subscriptions: job events read from the store's event
//! log ([`EventLog`]) under a subscription name, like a Kafka consumer
//! group, so that an executor that was away (disconnected, or the service
//! restarted) receives what was published meanwhile.
//!
//! A name's position is kept in the store: an event is delivered until the
//! name acknowledges it ([`Subscriptions::ack`]). Each name with streams
//! open has one task, its group, which reads the log from the name's
//! position on and hands each event to one of the name's streams (its
//! members):
//! - an event of a job that has unacknowledged events at a member goes to
//!   that member too, so that each job's events arrive in order, on one
//!   stream (a job is partitioned to one member while it has events in
//!   flight);
//! - any other event goes to the member with the fewest unacknowledged
//!   events and room in its buffer (in turn among equals);
//! - when a member leaves, its unacknowledged events go to the others, in
//!   order, before any newer event (or, if it was the last, stay in the log
//!   for the name's next stream).
//!
//! The members of one name share one filter (a stream that asks for another
//! while the name has streams open is refused), and the events it leaves out
//! count as passed over. A member whose buffer stays full for the stall
//! limit while an event waits for it is dropped, as anonymous subscribers
//! are; while one waits for it, the group delivers nothing else (so that
//! each name's order holds), and its other members wait too.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::{
    Notify,
    mpsc::{self},
    oneshot, watch,
};
use tokio_util::sync::CancellationToken;

use self::group::{Group, Links};
use super::hub::{EventHub, Outgoing};
use crate::{
    domain::{AckOutcome, EventFilter},
    duties::every,
    store::{StoreError, event_log::EventLog},
    telemetry::metrics::Metrics,
};

/// Events a group reads from the log at once, and holds ahead of delivery.
const READ_AHEAD: usize = 256;

/// How often the retention of the event log is enforced.
pub const RETENTION_PERIOD: Duration = Duration::from_secs(1);

/// Why a member's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client went away: it cancelled, or its connection closed.
    Left,
    /// The client took no event for the stall limit while one waited.
    Stalled,
    /// The service is stopping.
    Stopping,
}

/// Why a stream could not join its name.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The name has streams open with another filter.
    #[error("subscription {0:?} is open with another filter; its streams must share one")]
    FilterDiffers(String),
    /// The store could not read or record the name's position.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The service is stopping.
    #[error("the service is shutting down")]
    Stopping,
}

/// A stream that joined its name: its end, and what to notify each time it
/// takes an event from its buffer (its group then has room to deliver).
pub struct Joined {
    /// Resolves with why the group ended the stream.
    pub ended: oneshot::Receiver<End>,
    /// Notify once per event taken.
    pub room: Arc<Notify>,
}

/// The named subscriptions of the service; cheap to clone.
#[derive(Clone)]
pub struct Subscriptions {
    log: Arc<dyn EventLog>,
    hub: EventHub,
    groups: Arc<Mutex<HashMap<String, GroupHandle>>>,
    shutdown: CancellationToken,
    stall: Duration,
    metrics: Arc<Metrics>,
}

/// A running group: its commands, and its room notice.
struct GroupHandle {
    commands: mpsc::UnboundedSender<Command>,
    room: Arc<Notify>,
}

/// What a group is told.
enum Command {
    /// A new stream for the name.
    Join {
        member: NewMember,
        reply: oneshot::Sender<Result<(), JoinError>>,
    },
    /// The name acknowledged this event (it is recorded in the store).
    Ack(u64),
}

/// A stream joining its name.
struct NewMember {
    filter: EventFilter,
    out: mpsc::Sender<Outgoing>,
    ended: oneshot::Sender<End>,
}

impl Subscriptions {
    /// Named subscriptions over `log`, woken by `hub` as events are logged;
    /// their streams end at `shutdown`, or after `stall` without reading
    /// while an event waits.
    pub fn new(
        log: Arc<dyn EventLog>,
        hub: EventHub,
        shutdown: CancellationToken,
        stall: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Subscriptions {
            log,
            hub,
            groups: Arc::default(),
            shutdown,
            stall,
            metrics,
        }
    }

    /// Adds a stream, whose buffer is `out`, to the subscription `name`.
    pub async fn join(
        &self,
        name: &str,
        filter: EventFilter,
        out: mpsc::Sender<Outgoing>,
    ) -> Result<Joined, JoinError> {
        let (ended, ended_rx) = oneshot::channel();
        let (reply, answer) = oneshot::channel();
        let command = Command::Join {
            member: NewMember { filter, out, ended },
            reply,
        };
        let room = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let command = match groups.get(name) {
                Some(group) => match group.commands.send(command) {
                    Ok(()) => None,
                    // That group has ended without leaving (it panicked).
                    Err(mpsc::error::SendError(command)) => Some(command),
                },
                None => Some(command),
            };
            if let Some(command) = command {
                groups.insert(name.to_owned(), self.start_group(name, command));
            }
            groups.get(name).map(|group| group.room.clone())
        };
        answer.await.map_err(|_| JoinError::Stopping)??;
        Ok(Joined {
            ended: ended_rx,
            room: room.unwrap_or_default(),
        })
    }

    /// Records that `name` acknowledged the event `sequence`, and tells its
    /// group, if it runs.
    pub async fn ack(&self, name: &str, sequence: u64) -> Result<AckOutcome, StoreError> {
        let outcome = self.log.ack(name, sequence).await?;
        if outcome == AckOutcome::Acked {
            let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(group) = groups.get(name) {
                // A group that just ended has nothing in flight.
                let _ = group.commands.send(Command::Ack(sequence));
            }
        }
        Ok(outcome)
    }

    /// Starts the group of `name`, with `first` as its first command.
    fn start_group(&self, name: &str, first: Command) -> GroupHandle {
        let (commands, queue) = mpsc::unbounded_channel();
        // (Cannot fail: the queue is right here.)
        let _ = commands.send(first);
        let room = Arc::new(Notify::new());
        let group = Group::new(
            name,
            self.log.clone(),
            room.clone(),
            self.stall,
            self.metrics.clone(),
        );
        let links = Links {
            queue,
            events: self.hub.subscribe(),
            groups: self.groups.clone(),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(group.run(links));
        GroupHandle { commands, room }
    }
}

/// Enforces the retention of `log` every [`RETENTION_PERIOD`] until
/// shutdown (and at once when the clock jumps, in `jumps`): at most
/// `max_events` events, none older than `max_age`.
pub async fn run_retention(
    log: Arc<dyn EventLog>,
    (max_events, max_age): (u64, Duration),
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    jumps: watch::Receiver<u64>,
) {
    every(
        "event log retention",
        RETENTION_PERIOD,
        shutdown,
        jumps,
        || async {
            let removed = log
                .trim(max_events, max_age)
                .await
                .map_err(|e| e.to_string())?;
            if removed > 0 {
                metrics.events_trimmed(removed);
                tracing::debug!(removed, "event log trimmed to its retention");
            }
            Ok(())
        },
    )
    .await;
}

mod group;
#[cfg(test)]
mod tests;
