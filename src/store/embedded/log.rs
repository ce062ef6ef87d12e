//! The embedded store's event log ([`EventLog`]): job events under
//! sequence numbers in the store's own file, appended in the transaction
//! that clears them from their job's outbox, and the positions of the named
//! subscriptions that read them.
//!
//! Tables: `events` (sequence number → event), `events_meta` (the next
//! sequence number, kept apart so that numbers are never given twice, even
//! once the retention removed every event), `subscriptions` (name → its
//! position, filter and missed count) and `subscription_acks` ((name,
//! sequence number) of the events acknowledged beyond the position: a
//! shared name acknowledges out of order).

use std::time::Duration;

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{EmbeddedJobDB, JobTables, decode, encode, id_of, other, storage};
use crate::{
    domain::{AckOutcome, EventFilter, EventKind, Job, JobId, JobType, LoggedEvent, PendingEvents},
    store::{
        StoreError, Unreadable,
        event_log::{EventLog, SubscriptionStart},
    },
};

/// Sequence number → kind, job type, time logged, job id, the job.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// `NEXT_SEQUENCE` → the next sequence number to give.
const META: TableDefinition<&str, u64> = TableDefinition::new("events_meta");
const NEXT_SEQUENCE: &str = "next_sequence";
/// Subscription name → [`StoredSubscription`], as JSON.
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// (name, sequence number) of events acknowledged beyond the position.
const ACKS: TableDefinition<(&str, u64), ()> = TableDefinition::new("subscription_acks");

/// The fixed head of a stored event: kind (1 byte), job type (4), time
/// logged in ms (8), job id (12); the job in its stored form follows.
const HEAD: usize = 1 + 4 + 8 + 12;

/// Creates the log's tables, so that reads never meet a missing one.
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(EVENTS).map_err(storage)?;
    txn.open_table(META).map_err(storage)?;
    txn.open_table(SUBSCRIPTIONS).map_err(storage)?;
    txn.open_table(ACKS).map_err(storage)?;
    Ok(())
}

fn kind_code(kind: EventKind) -> u8 {
    match kind {
        EventKind::Create => 1,
        EventKind::Update => 2,
        EventKind::Run => 3,
        EventKind::DeadLetter => 4,
        EventKind::Delete => 5,
        // (Never logged: a notice to live subscribers only.)
        EventKind::Result => 6,
    }
}

fn kind_of(code: u8) -> Option<EventKind> {
    match code {
        1 => Some(EventKind::Create),
        2 => Some(EventKind::Update),
        3 => Some(EventKind::Run),
        4 => Some(EventKind::DeadLetter),
        5 => Some(EventKind::Delete),
        6 => Some(EventKind::Result),
        _ => None,
    }
}

/// What a filter needs of a stored event, read without decoding the job.
struct Head {
    kind: Option<EventKind>,
    job_type: Option<JobType>,
    logged_ms: i64,
}

impl Head {
    fn read(bytes: &[u8]) -> Option<Head> {
        let head = bytes.get(..HEAD)?;
        Some(Head {
            kind: kind_of(head[0]),
            job_type: JobType::from_i32(i32::from_le_bytes(head[1..5].try_into().ok()?)),
            logged_ms: i64::from_le_bytes(head[5..13].try_into().ok()?),
        })
    }

    /// Whether `filter` admits the event (an unreadable one: no).
    fn admitted_by(&self, filter: &EventFilter) -> bool {
        matches!((self.kind, self.job_type), (Some(kind), Some(job_type)) if filter.admits(kind, job_type))
    }
}

fn encode_event(kind: EventKind, job: &Job, logged_ms: i64) -> Result<Vec<u8>, StoreError> {
    let stored = encode(job)?;
    let mut bytes = Vec::with_capacity(HEAD + stored.len());
    bytes.push(kind_code(kind));
    bytes.extend_from_slice(&job.spec.job_type.as_i32().to_le_bytes());
    bytes.extend_from_slice(&logged_ms.to_le_bytes());
    bytes.extend_from_slice(&job.id.bytes());
    bytes.extend_from_slice(&stored);
    Ok(bytes)
}

fn decode_event(sequence: u64, bytes: &[u8]) -> Result<LoggedEvent, Unreadable> {
    let unreadable = || Unreadable::without_id(format!("event {sequence} of the log"));
    let kind = bytes.first().and_then(|code| kind_of(*code));
    let (Some(kind), Some(id)) = (kind, bytes.get(13..HEAD)) else {
        return Err(unreadable());
    };
    let id = id_of(id)?;
    Ok(LoggedEvent {
        sequence,
        kind,
        job: decode(id, &bytes[HEAD..])?,
    })
}

/// A subscription as stored: its position, its filter and its missed count.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredSubscription {
    position: u64,
    missed: u64,
    /// Kind codes (empty: every kind).
    kinds: Vec<u8>,
    /// Job type numbers (empty: every type).
    job_types: Vec<i32>,
}

impl StoredSubscription {
    fn filter(&self) -> EventFilter {
        EventFilter {
            kinds: self
                .kinds
                .iter()
                .filter_map(|code| kind_of(*code))
                .collect(),
            job_types: self
                .job_types
                .iter()
                .filter_map(|t| JobType::from_i32(*t))
                .collect(),
        }
    }

    fn set_filter(&mut self, filter: &EventFilter) {
        self.kinds = filter.kinds.iter().map(|kind| kind_code(*kind)).collect();
        self.kinds.sort_unstable();
        self.job_types = filter.job_types.iter().map(|t| t.as_i32()).collect();
        self.job_types.sort_unstable();
    }
}

fn read_subscription(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<StoredSubscription, StoreError> {
    match table.get(name).map_err(storage)? {
        Some(bytes) => serde_json::from_slice(bytes.value())
            .map_err(|e| other(format!("subscription {name:?}: {e}"))),
        None => Ok(StoredSubscription::default()),
    }
}

fn write_subscription(
    txn: &redb::WriteTransaction,
    name: &str,
    subscription: &StoredSubscription,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(subscription).map_err(other)?;
    txn.open_table(SUBSCRIPTIONS)
        .map_err(storage)?
        .insert(name, bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

/// The next sequence number to give.
fn next_sequence(txn: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(META).map_err(storage)?;
    let next = meta.get(NEXT_SEQUENCE).map_err(storage)?;
    Ok(next.map_or(1, |next| next.value()))
}

/// Appends `events` to the log inside `txn`, in order, numbering them
/// (the log's tables are opened once for a whole batch).
pub(super) fn append(
    txn: &redb::WriteTransaction,
    events: &mut [LoggedEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let logged_ms = crate::domain::now().timestamp_millis();
    let mut next = next_sequence(txn)?;
    let mut table = txn.open_table(EVENTS).map_err(storage)?;
    for event in events {
        event.sequence = next;
        let bytes = encode_event(event.kind, &event.job, logged_ms)?;
        table.insert(next, bytes.as_slice()).map_err(storage)?;
        next += 1;
    }
    txn.open_table(META)
        .map_err(storage)?
        .insert(NEXT_SEQUENCE, next)
        .map_err(storage)?;
    Ok(())
}

/// Sets what job `id` owes to `remaining` if it is still at `version`, and
/// adds to `logged` each event this clears, in the order of publication,
/// for [`append`] in the same transaction. The events are those the stored
/// job owes, so a job cleared twice at one version (a call and the relay
/// racing) logs its events once. Settling all of them leaves the job's
/// record alone ([`JobTables::settle`]). Returns whether the job was set.
pub(super) fn settle_owed(
    tables: &mut JobTables<'_>,
    id: JobId,
    version: i64,
    remaining: PendingEvents,
    logged: &mut Vec<LoggedEvent>,
) -> Result<bool, StoreError> {
    let current = tables.read(id)?;
    let Some(current) = current.filter(|c| c.version == version) else {
        return Ok(false);
    };
    let cleared = PendingEvents {
        create: current.pending.create && !remaining.create,
        update: current.pending.update && !remaining.update,
        run: current.pending.run && !remaining.run,
        dead_letter: current.pending.dead_letter && !remaining.dead_letter,
        delete: current.pending.delete && !remaining.delete,
    };
    logged.extend(EventKind::owed(cleared).map(|kind| LoggedEvent {
        sequence: 0,
        kind,
        job: current.clone(),
    }));
    if remaining.any() {
        let updated = Job {
            pending: remaining,
            ..current.clone()
        };
        tables.write(id, Some(&current), Some(&updated))?;
    } else {
        tables.settle(&current)?;
    }
    Ok(true)
}

/// Moves `subscription`'s position past every event after it that is
/// acknowledged, left out by its filter, or no longer kept.
fn advance(
    txn: &redb::WriteTransaction,
    name: &str,
    subscription: &mut StoredSubscription,
    next: u64,
) -> Result<(), StoreError> {
    let filter = subscription.filter();
    let events = txn.open_table(EVENTS).map_err(storage)?;
    let mut acks = txn.open_table(ACKS).map_err(storage)?;
    let first_kept = events
        .first()
        .map_err(storage)?
        .map_or(next, |(k, _)| k.value());
    while subscription.position + 1 < next {
        let sequence = subscription.position + 1;
        if sequence < first_kept {
            // Removed by the retention: nothing to wait for below the first kept.
            subscription.position = first_kept - 1;
            continue;
        }
        let passed = acks.remove((name, sequence)).map_err(storage)?.is_some()
            || match events.get(sequence).map_err(storage)? {
                Some(event) => !Head::read(event.value()).is_some_and(|h| h.admitted_by(&filter)),
                None => true,
            };
        if !passed {
            break;
        }
        subscription.position = sequence;
    }
    Ok(())
}

/// Removes the oldest events inside `txn` as [`EventLog::trim`] says.
fn trim_in(
    txn: &redb::WriteTransaction,
    max_events: u64,
    cutoff_ms: i64,
) -> Result<u64, StoreError> {
    let mut events = txn.open_table(EVENTS).map_err(storage)?;
    let kept = events.len().map_err(storage)?;
    let mut removed = Vec::new();
    for entry in events.iter().map_err(storage)? {
        let (sequence, event) = entry.map_err(storage)?;
        let head = Head::read(event.value());
        let too_old = head.as_ref().is_none_or(|h| h.logged_ms < cutoff_ms);
        if kept - removed.len() as u64 <= max_events && !too_old {
            break;
        }
        removed.push((sequence.value(), head));
    }
    let Some(&(last, _)) = removed.last() else {
        return Ok(0);
    };
    count_missed(txn, &removed, last)?;
    events.retain_in(..=last, |_, _| false).map_err(storage)?;
    Ok(removed.len() as u64)
}

/// Counts, for each subscription, the `removed` events (up to `last`) that
/// it had not acknowledged and its filter admits, and moves it past them.
fn count_missed(
    txn: &redb::WriteTransaction,
    removed: &[(u64, Option<Head>)],
    last: u64,
) -> Result<(), StoreError> {
    let mut behind = Vec::new();
    for entry in txn
        .open_table(SUBSCRIPTIONS)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (name, _) = entry.map_err(storage)?;
        behind.push(name.value().to_owned());
    }
    let mut acks = txn.open_table(ACKS).map_err(storage)?;
    for name in behind {
        let mut subscription =
            read_subscription(&txn.open_table(SUBSCRIPTIONS).map_err(storage)?, &name)?;
        if subscription.position >= last {
            continue;
        }
        let filter = subscription.filter();
        for (sequence, head) in removed {
            let acked = acks.remove((name.as_str(), *sequence)).map_err(storage)?;
            if *sequence > subscription.position
                && acked.is_none()
                && head.as_ref().is_some_and(|h| h.admitted_by(&filter))
            {
                subscription.missed += 1;
            }
        }
        subscription.position = last;
        write_subscription(txn, &name, &subscription)?;
    }
    Ok(())
}

impl EmbeddedJobDB {
    /// Whether the log holds more than `max_events` events or one logged
    /// before `cutoff_ms`: a read, so that a pass with nothing to remove
    /// commits nothing.
    async fn needs_trim(&self, max_events: u64, cutoff_ms: i64) -> Result<bool, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            if events.len().map_err(storage)? > max_events {
                return Ok(true);
            }
            let first = events.first().map_err(storage)?;
            Ok(first.is_some_and(|(_, event)| {
                Head::read(event.value()).is_none_or(|h| h.logged_ms < cutoff_ms)
            }))
        })
        .await
    }
}

/// Decodes a stored event for a read, or logs that it cannot be read.
fn readable(sequence: u64, bytes: &[u8]) -> Option<LoggedEvent> {
    decode_event(sequence, bytes)
        .inspect_err(|unreadable| {
            tracing::error!(sequence, %unreadable, "an event of the log cannot be read; skipped");
        })
        .ok()
}

#[async_trait]
impl EventLog for EmbeddedJobDB {
    async fn subscribe(
        &self,
        name: &str,
        filter: &EventFilter,
    ) -> Result<SubscriptionStart, StoreError> {
        let (name, filter) = (name.to_owned(), filter.clone());
        self.write(move |txn| {
            let mut subscription =
                read_subscription(&txn.open_table(SUBSCRIPTIONS).map_err(storage)?, &name)?;
            let mut acked = Vec::new();
            let acks = txn.open_table(ACKS).map_err(storage)?;
            for entry in acks
                .range((name.as_str(), 0)..=(name.as_str(), u64::MAX))
                .map_err(storage)?
            {
                acked.push(entry.map_err(storage)?.0.value().1);
            }
            let start = SubscriptionStart {
                position: subscription.position,
                acked,
                missed: subscription.missed,
            };
            subscription.missed = 0;
            subscription.set_filter(&filter);
            write_subscription(txn, &name, &subscription)?;
            Ok(start)
        })
        .await
    }

    async fn read_from(&self, from: u64, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let mut read = Vec::new();
            for entry in events.range(from..).map_err(storage)?.take(limit) {
                let (sequence, event) = entry.map_err(storage)?;
                read.extend(readable(sequence.value(), event.value()));
            }
            Ok(read)
        })
        .await
    }

    async fn read_at(&self, sequences: Vec<u64>) -> Result<Vec<LoggedEvent>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let mut read = Vec::with_capacity(sequences.len());
            for sequence in sequences {
                if let Some(event) = events.get(sequence).map_err(storage)? {
                    read.extend(readable(sequence, event.value()));
                }
            }
            Ok(read)
        })
        .await
    }

    async fn ack(&self, name: &str, sequence: u64) -> Result<AckOutcome, StoreError> {
        let name = name.to_owned();
        self.write(move |txn| {
            let next = next_sequence(txn)?;
            if sequence == 0 || sequence >= next {
                return Ok(AckOutcome::Beyond { last: next - 1 });
            }
            let mut subscription =
                read_subscription(&txn.open_table(SUBSCRIPTIONS).map_err(storage)?, &name)?;
            let mut acks = txn.open_table(ACKS).map_err(storage)?;
            if sequence <= subscription.position
                || acks
                    .insert((name.as_str(), sequence), ())
                    .map_err(storage)?
                    .is_some()
            {
                return Ok(AckOutcome::Duplicate);
            }
            drop(acks);
            advance(txn, &name, &mut subscription, next)?;
            write_subscription(txn, &name, &subscription)?;
            Ok(AckOutcome::Acked)
        })
        .await
    }

    async fn take_missed(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.to_owned();
        self.write(move |txn| {
            let mut subscription =
                read_subscription(&txn.open_table(SUBSCRIPTIONS).map_err(storage)?, &name)?;
            let missed = std::mem::take(&mut subscription.missed);
            if missed > 0 {
                write_subscription(txn, &name, &subscription)?;
            }
            Ok(missed)
        })
        .await
    }

    async fn trim(&self, max_events: u64, max_age: Duration) -> Result<u64, StoreError> {
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let cutoff_ms = crate::domain::now()
            .checked_sub_signed(max_age)
            .map_or(i64::MIN, |cutoff| cutoff.timestamp_millis());
        if !self.needs_trim(max_events, cutoff_ms).await? {
            return Ok(0);
        }
        self.write(move |txn| trim_in(txn, max_events, cutoff_ms))
            .await
    }
}

#[cfg(test)]
mod tests;
