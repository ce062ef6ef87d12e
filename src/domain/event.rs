//! Job events: which event of a job's life ([`EventKind`]), an event as
//! published with its place in the event log ([`LoggedEvent`]), and what a
//! subscriber asks for ([`EventFilter`]).

use std::collections::HashSet;

use super::{Job, JobType, PendingEvents};

/// Which event of a job's life: each goes to its own topic with Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A job was created (`topic-job-create`).
    Create,
    /// A job was updated (`topic-job-update`).
    Update,
    /// A job fired and must run now (`topic-job-run`).
    Run,
    /// A job's run failed for good: no attempt is left under its retry
    /// policy, or its executor said the failure is final
    /// (`topic-job-dead-letter`).
    DeadLetter,
    /// A finished job was removed by `JOB_RETENTION`, with its run history
    /// (`topic-job-delete`).
    Delete,
    /// A run's result was stored: a notice to the live subscribers of the
    /// replica that stored it (the web console's feed). Never owed, never
    /// published to a broker (the result came from one) and never logged.
    Result,
}

impl EventKind {
    /// Short lower-case name, for logs and message headers.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Update => "update",
            EventKind::Run => "run",
            EventKind::DeadLetter => "dead-letter",
            EventKind::Delete => "delete",
            EventKind::Result => "result",
        }
    }

    /// The events `pending` owes, in the order they are published (create,
    /// update, run, dead letter, delete: the order of a job's life).
    pub fn owed(pending: PendingEvents) -> impl Iterator<Item = EventKind> {
        [
            (pending.create, EventKind::Create),
            (pending.update, EventKind::Update),
            (pending.run, EventKind::Run),
            (pending.dead_letter, EventKind::DeadLetter),
            (pending.delete, EventKind::Delete),
        ]
        .into_iter()
        .filter_map(|(owed, kind)| owed.then_some(kind))
    }
}

/// One published event: the job as it was published, and its sequence
/// number in the event log (from 1, in the order of publication), or 0 when
/// no log keeps it (with MongoDB or PostgreSQL, Kafka's topics do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Its place in the event log; 0 when not logged.
    pub sequence: u64,
    /// Which event.
    pub kind: EventKind,
    /// The job as published.
    pub job: Job,
}

/// The events a subscriber asks for: empty sets mean every kind, every type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these kinds (all when empty).
    pub kinds: HashSet<EventKind>,
    /// Only jobs of these types (all when empty).
    pub job_types: HashSet<JobType>,
}

impl EventFilter {
    /// Whether an event of `kind` about a job of `job_type` passes.
    pub fn admits(&self, kind: EventKind, job_type: JobType) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.job_types.is_empty() || self.job_types.contains(&job_type))
    }
}

/// What an acknowledgement of a logged event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The event is now acknowledged: it is not delivered to this name again.
    Acked,
    /// It was acknowledged already (or passed over, or removed).
    Duplicate,
    /// No event has this sequence number yet; `last` is the latest one (0:
    /// none yet).
    Beyond {
        /// The latest sequence number given out.
        last: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_events_come_in_the_order_of_a_jobs_life() {
        let all = PendingEvents {
            create: true,
            update: true,
            run: true,
            dead_letter: true,
            delete: true,
        };
        let kinds: Vec<EventKind> = EventKind::owed(all).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Create,
                EventKind::Update,
                EventKind::Run,
                EventKind::DeadLetter,
                EventKind::Delete
            ]
        );
        assert_eq!(EventKind::owed(PendingEvents::NONE).count(), 0);
    }

    #[test]
    fn an_empty_filter_admits_everything_and_a_set_only_its_members() {
        assert!(EventFilter::default().admits(EventKind::Create, JobType::Sms));
        let runs_by_email = EventFilter {
            kinds: [EventKind::Run].into(),
            job_types: [JobType::Email].into(),
        };
        assert!(runs_by_email.admits(EventKind::Run, JobType::Email));
        assert!(!runs_by_email.admits(EventKind::Create, JobType::Email));
        assert!(!runs_by_email.admits(EventKind::Run, JobType::Sms));
    }
}
