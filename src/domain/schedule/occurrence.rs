//! One occurrence of a schedule: the instant it is due and, for a cron
//! schedule on a daylight-saving transition, how that instant relates to the
//! local time the expression named.

use chrono::{DateTime, NaiveDateTime, Utc};

/// An instant a schedule is due at (its nominal time, before any jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Occurrence {
    /// The nominal instant. The next occurrence is computed from this one,
    /// never from the jittered fire time.
    pub at: DateTime<Utc>,
    /// How `at` relates to the local time the schedule named.
    pub kind: OccurrenceKind,
}

/// How an occurrence's instant relates to the local time its schedule named.
/// Once and interval schedules, and cron schedules away from transitions,
/// are always [`OccurrenceKind::Regular`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OccurrenceKind {
    /// The local time occurs exactly once (or the schedule is not local).
    Regular,
    /// The local time occurs twice (the clocks went back) and this is one of
    /// its two instants.
    Repeated(Pass),
    /// The local time does not exist (the clocks went forward over it): the
    /// occurrence is at the first instant after the gap. `wall` is the first
    /// local time in the gap that the expression matched.
    Shifted {
        /// The skipped local time the expression named.
        wall: NaiveDateTime,
    },
}

/// Which of the two instants of a repeated local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// The earlier instant, before the clocks went back (e.g. 01:30 EDT).
    First,
    /// The later instant, after the clocks went back (e.g. 01:30 EST).
    Second,
}

impl Occurrence {
    /// An occurrence at a local time that occurs once.
    pub(crate) fn regular(at: DateTime<Utc>) -> Self {
        Occurrence {
            at,
            kind: OccurrenceKind::Regular,
        }
    }
}
