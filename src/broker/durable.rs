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
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, hash_map::Entry},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::{
    sync::{
        Notify,
        broadcast::{self, error::RecvError},
        mpsc::{self, error::TrySendError},
        oneshot, watch,
    },
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::hub::{EventHub, HubEvent, Outgoing};
use crate::{
    domain::{EventFilter, JobId},
    duties::every,
    store::{
        StoreError,
        event_log::{AckOutcome, EventLog, SubscriptionStart},
    },
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
        let group = Group {
            name: name.to_owned(),
            log: self.log.clone(),
            filter: EventFilter::default(),
            members: Vec::new(),
            next_member: 0,
            last_pick: 0,
            cursor: 1,
            behind: true,
            started: false,
            pending: BTreeMap::new(),
            unacked: HashMap::new(),
            owners: HashMap::new(),
            acked: HashSet::new(),
            returned: BTreeSet::new(),
            room: room.clone(),
            stall: self.stall,
            metrics: self.metrics.clone(),
        };
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

/// What a group listens to.
struct Links {
    queue: mpsc::UnboundedReceiver<Command>,
    /// The hub: each logged event, as it is committed.
    events: broadcast::Receiver<Arc<HubEvent>>,
    groups: Arc<Mutex<HashMap<String, GroupHandle>>>,
    shutdown: CancellationToken,
}

/// One stream of a name.
struct Member {
    id: u64,
    out: mpsc::Sender<Outgoing>,
    ended: Option<oneshot::Sender<End>>,
    /// Events delivered to it and not acknowledged.
    unacked: usize,
    /// Since when an event has waited for room in its buffer.
    waiting_since: Option<Instant>,
}

/// The task of one name with streams open: see the module's documentation.
struct Group {
    name: String,
    log: Arc<dyn EventLog>,
    filter: EventFilter,
    members: Vec<Member>,
    next_member: u64,
    /// The member chosen last among equals.
    last_pick: u64,
    /// The next sequence number to read from the log.
    cursor: u64,
    /// Whether the log may hold events from `cursor` on that the group has
    /// not read.
    behind: bool,
    /// Whether the name's position was read.
    started: bool,
    /// Events to deliver, by sequence number.
    pending: BTreeMap<u64, Arc<HubEvent>>,
    /// Events delivered and not acknowledged: to which member, of which job.
    unacked: HashMap<u64, (u64, JobId)>,
    /// Jobs with unacknowledged events: at which member, and how many.
    owners: HashMap<JobId, (u64, usize)>,
    /// Events from `cursor` on acknowledged already.
    acked: HashSet<u64>,
    /// Events of members that left, to read from the log again.
    returned: BTreeSet<u64>,
    room: Arc<Notify>,
    stall: Duration,
    metrics: Arc<Metrics>,
}

/// Waits until a member's client goes away; resolves with its id.
fn left(id: u64, out: &mpsc::Sender<Outgoing>) -> BoxFuture<'static, u64> {
    let out = out.clone();
    async move {
        out.closed().await;
        id
    }
    .boxed()
}

impl Group {
    /// Delivers until shutdown, or until the last member left.
    async fn run(mut self, mut links: Links) {
        let mut leaving = FuturesUnordered::new();
        loop {
            self.pump().await;
            if self.members.is_empty() {
                match self.retire(&mut links) {
                    Some(command) => {
                        self.handle(command, &mut leaving).await;
                        continue;
                    }
                    None => return,
                }
            }
            let stall_at = self.stall_deadline();
            tokio::select! {
                // Commands before departures: an acknowledgement sent before
                // its client left must not be delivered again.
                biased;
                () = links.shutdown.cancelled() => return self.stop(&links),
                Some(command) = links.queue.recv() => self.handle(command, &mut leaving).await,
                received = links.events.recv() => {
                    if !self.offer(received) {
                        return self.stop(&links);
                    }
                }
                Some(id) = leaving.next(), if !leaving.is_empty() => self.remove(id, End::Left),
                () = self.room.notified() => {}
                () = tokio::time::sleep_until(stall_at.unwrap_or_else(Instant::now)), if stall_at.is_some() => {
                    self.drop_stalled();
                }
            }
        }
    }

    /// With no member left: ends the group (None), or returns a command
    /// that came meanwhile. Under the lock of the groups, so that no join
    /// is sent to a group that has ended.
    fn retire(&self, links: &mut Links) -> Option<Command> {
        let mut groups = links.groups.lock().unwrap_or_else(PoisonError::into_inner);
        match links.queue.try_recv() {
            Ok(command) => Some(command),
            Err(_) => {
                groups.remove(&self.name);
                None
            }
        }
    }

    /// Ends every member's stream at shutdown, and the group.
    fn stop(&mut self, links: &Links) {
        for member in std::mem::take(&mut self.members) {
            if let Some(ended) = member.ended {
                let _ = ended.send(End::Stopping);
            }
        }
        let mut groups = links.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups.remove(&self.name);
    }

    async fn handle(
        &mut self,
        command: Command,
        leaving: &mut FuturesUnordered<BoxFuture<'static, u64>>,
    ) {
        match command {
            Command::Join { member, reply } => {
                let joined = self.join(member, leaving).await;
                let _ = reply.send(joined);
            }
            Command::Ack(sequence) => self.acknowledged(sequence),
        }
    }

    /// Adds a member (reading the name's position for the first); it is
    /// told first how many events the retention removed before the name
    /// acknowledged them.
    async fn join(
        &mut self,
        member: NewMember,
        leaving: &mut FuturesUnordered<BoxFuture<'static, u64>>,
    ) -> Result<(), JoinError> {
        if !self.members.is_empty() && member.filter != self.filter {
            return Err(JoinError::FilterDiffers(self.name.clone()));
        }
        let start = self.log.subscribe(&self.name, &member.filter).await?;
        if !self.started {
            self.start(start.clone(), member.filter);
        }
        if start.missed > 0 {
            self.metrics.subscriber_missed(start.missed);
            // A new buffer has room.
            let _ = member.out.try_send(Outgoing::Lagged(start.missed));
        }
        self.next_member += 1;
        leaving.push(left(self.next_member, &member.out));
        self.members.push(Member {
            id: self.next_member,
            out: member.out,
            ended: Some(member.ended),
            unacked: 0,
            waiting_since: None,
        });
        Ok(())
    }

    fn start(&mut self, start: SubscriptionStart, filter: EventFilter) {
        self.started = true;
        self.filter = filter;
        self.cursor = start.position + 1;
        self.acked = start.acked.into_iter().collect();
    }

    /// Forgets an acknowledged event: delivered, or still to deliver.
    fn acknowledged(&mut self, sequence: u64) {
        let Some((member, job)) = self.unacked.remove(&sequence) else {
            let waiting =
                self.pending.remove(&sequence).is_some() | self.returned.remove(&sequence);
            if !waiting && sequence >= self.cursor {
                self.acked.insert(sequence);
            }
            return;
        };
        if let Some(member) = self.members.iter_mut().find(|m| m.id == member) {
            member.unacked -= 1;
        }
        if let Entry::Occupied(mut owner) = self.owners.entry(job) {
            owner.get_mut().1 -= 1;
            if owner.get().1 == 0 {
                owner.remove();
            }
        }
    }

    /// Takes a live event from the hub when it is the next to read; false
    /// if the hub is gone (the service is). A result notice (sequence 0,
    /// never logged) is never the next to read: named subscriptions do not
    /// carry notices.
    fn offer(&mut self, received: Result<Arc<HubEvent>, RecvError>) -> bool {
        match received {
            Ok(event) if self.started && !self.behind && event.sequence == self.cursor => {
                if self.pending.len() < READ_AHEAD {
                    self.cursor += 1;
                    self.pending.insert(event.sequence, event);
                } else {
                    self.behind = true;
                }
            }
            Ok(event) => self.behind |= event.sequence >= self.cursor,
            Err(RecvError::Lagged(_)) => self.behind = true,
            Err(RecvError::Closed) => return false,
        }
        true
    }

    /// Delivers what it can, in order of sequence numbers, until the next
    /// event must wait (for room at its member, or for the log).
    async fn pump(&mut self) {
        if !self.started {
            // Not before the name's position is read.
            return;
        }
        for member in &mut self.members {
            if member.out.capacity() > 0 {
                member.waiting_since = None;
            }
        }
        self.read_returned().await;
        loop {
            if self.pending.is_empty() && !(self.behind && self.read_log().await) {
                return;
            }
            let Some((&sequence, event)) = self.pending.first_key_value() else {
                return;
            };
            let event = event.clone();
            if self.acked.remove(&sequence)
                || !self.filter.admits(event.kind, event.job.spec.job_type)
            {
                self.pending.remove(&sequence);
                continue;
            }
            let Some(index) = self.target(event.job.id) else {
                return;
            };
            let member = &mut self.members[index];
            match member.out.try_send(Outgoing::Event(event.clone())) {
                Ok(()) => {
                    member.unacked += 1;
                    let id = member.id;
                    self.pending.remove(&sequence);
                    self.unacked.insert(sequence, (id, event.job.id));
                    self.owners.entry(event.job.id).or_insert((id, 0)).1 += 1;
                }
                Err(TrySendError::Full(_)) => {
                    member.waiting_since.get_or_insert_with(Instant::now);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    let id = member.id;
                    self.remove(id, End::Left);
                }
            }
        }
    }

    /// The member the next event of `job` goes to, if one has room: the one
    /// with the job's unacknowledged events, else the one with the fewest
    /// unacknowledged events (in turn among equals). Members an event waits
    /// for are marked so.
    fn target(&mut self, job: JobId) -> Option<usize> {
        let now = Instant::now();
        if let Some(&(owner, _)) = self.owners.get(&job) {
            let index = self.members.iter().position(|m| m.id == owner)?;
            let member = &mut self.members[index];
            if member.out.capacity() == 0 {
                member.waiting_since.get_or_insert(now);
                return None;
            }
            return Some(index);
        }
        let count = self.members.len();
        let first = self
            .members
            .iter()
            .position(|m| m.id > self.last_pick)
            .unwrap_or(0);
        let chosen = (0..count)
            .map(|i| (first + i) % count)
            .filter(|&i| self.members[i].out.capacity() > 0)
            .min_by_key(|&i| self.members[i].unacked);
        match chosen {
            Some(index) => self.last_pick = self.members[index].id,
            None => {
                for member in &mut self.members {
                    member.waiting_since.get_or_insert(now);
                }
            }
        }
        chosen
    }

    /// Reads the next events from the log; false if there were none (or
    /// the store failed: the next pass tries again). A gap before them is
    /// events the retention removed: the members learn how many the name
    /// missed.
    async fn read_log(&mut self) -> bool {
        let events = match self.log.read_from(self.cursor, READ_AHEAD).await {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(subscription = %self.name, error = %err, "cannot read the event log");
                return false;
            }
        };
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            self.behind = false;
            return false;
        };
        if first.sequence > self.cursor {
            self.report_missed().await;
        }
        self.behind = events.len() == READ_AHEAD;
        self.cursor = last.sequence + 1;
        self.pending
            .extend(events.into_iter().map(|e| (e.sequence, Arc::new(e))));
        true
    }

    /// Tells every member how many events the name missed, if any.
    async fn report_missed(&mut self) {
        match self.log.take_missed(&self.name).await {
            Ok(0) => {}
            Ok(missed) => {
                tracing::warn!(subscription = %self.name, missed, "events removed before they were acknowledged");
                self.metrics.subscriber_missed(missed);
                for member in &self.members {
                    // A full buffer holds events: the notice is dropped, the count kept in the metric.
                    let _ = member.out.try_send(Outgoing::Lagged(missed));
                }
            }
            Err(err) => {
                tracing::warn!(subscription = %self.name, error = %err, "cannot read the missed events")
            }
        }
    }

    /// Reads the events of members that left, to deliver them again.
    async fn read_returned(&mut self) {
        if self.returned.is_empty() {
            return;
        }
        let sequences: Vec<u64> = self.returned.iter().copied().collect();
        match self.log.read_at(sequences).await {
            Ok(events) => {
                self.returned.clear();
                self.pending
                    .extend(events.into_iter().map(|e| (e.sequence, Arc::new(e))));
            }
            Err(err) => {
                tracing::warn!(subscription = %self.name, error = %err, "cannot read events to deliver again")
            }
        }
    }

    /// Ends member `id`'s stream for `end`; its unacknowledged events are
    /// delivered again, to the others.
    fn remove(&mut self, id: u64, end: End) {
        let Some(index) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let member = self.members.remove(index);
        if let Some(ended) = member.ended {
            let _ = ended.send(end);
        }
        let returned: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, (at, _))| *at == id)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in returned {
            if let Some((_, job)) = self.unacked.remove(&sequence) {
                self.owners.remove(&job);
            }
            self.returned.insert(sequence);
        }
    }

    /// When the first member waiting for room has waited the stall limit.
    fn stall_deadline(&self) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| m.waiting_since)
            .min()
            .map(|since| since + self.stall)
    }

    /// Drops the members that waited the stall limit.
    fn drop_stalled(&mut self) {
        let now = Instant::now();
        let stalled: Vec<u64> = self
            .members
            .iter()
            .filter(|m| {
                m.waiting_since
                    .is_some_and(|since| since + self.stall <= now)
            })
            .map(|m| m.id)
            .collect();
        for id in stalled {
            tracing::warn!(subscription = %self.name, "dropped a member that did not read");
            self.remove(id, End::Stalled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{EventKind, Job, JobSpec, JobType, now},
        store::{JobDB, embedded::EmbeddedJobDB},
    };

    /// The embedded store feeding a hub, and named subscriptions over it.
    fn subscriptions(dir: &std::path::Path) -> (EmbeddedJobDB, Subscriptions) {
        let db = EmbeddedJobDB::open(dir).unwrap();
        let hub = EventHub::new(64);
        let logged = hub.clone();
        let sink = Box::new(move |events: Vec<_>| events.into_iter().for_each(|e| logged.send(e)));
        assert!(db.on_append(sink).is_ok());
        let subscriptions = Subscriptions::new(
            Arc::new(db.clone()),
            hub,
            CancellationToken::new(),
            Duration::from_secs(30),
            Metrics::new(),
        );
        (db, subscriptions)
    }

    /// Creates `count` jobs and fires them: a create and a run event each,
    /// logged job after job.
    async fn publish(db: &EmbeddedJobDB, count: usize) -> Vec<JobId> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let spec = JobSpec {
                name: "shared".into(),
                description: String::new(),
                schedule_time: now(),
                job_type: JobType::Email,
                job_data: "{}".into(),
            };
            let job = Job::new_scheduled(spec, now());
            db.insert(&job).await.unwrap();
            db.claim(job.id, job.fire_token, now()).await.unwrap();
            db.clear_pending_many(&[(job.id, 1)]).await.unwrap();
            ids.push(job.id);
        }
        ids
    }

    async fn member(subscriptions: &Subscriptions, name: &str) -> mpsc::Receiver<Outgoing> {
        let (out, events) = mpsc::channel(64);
        let joined = subscriptions
            .join(name, EventFilter::default(), out)
            .await
            .unwrap();
        // (The room notices only matter to a full buffer.)
        drop(joined);
        events
    }

    /// The next event a member receives (a bound of 90 s on a hang).
    async fn next(events: &mut mpsc::Receiver<Outgoing>) -> Arc<HubEvent> {
        let received = tokio::time::timeout(Duration::from_secs(90), events.recv()).await;
        match received.expect("an event in time").expect("open") {
            Outgoing::Event(event) => event,
            Outgoing::Lagged(missed) => panic!("lagged {missed}"),
        }
    }

    #[tokio::test]
    async fn one_name_shares_its_events_and_a_leaving_members_go_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (db, subscriptions) = subscriptions(dir.path());
        let (mut a, mut b) = (
            member(&subscriptions, "workers").await,
            member(&subscriptions, "workers").await,
        );
        publish(&db, 4).await;
        let mut at: HashMap<u64, &str> = HashMap::new();
        let mut jobs: HashMap<JobId, &str> = HashMap::new();
        let mut at_b = Vec::new();
        for _ in 0..8 {
            let (event, who) = tokio::select! {
                event = next(&mut a) => (event, "a"),
                event = next(&mut b) => (event, "b"),
            };
            assert!(at.insert(event.sequence, who).is_none(), "each event once");
            // A job's events go to one member while they are unacknowledged.
            assert_eq!(*jobs.entry(event.job.id).or_insert(who), who);
            if who == "b" {
                at_b.push(event.sequence);
            }
        }
        assert_eq!(at.len(), 8);
        assert!(!at_b.is_empty() && at_b.len() < 8, "shared: {at:?}");
        // b leaves without acknowledging: its events go to a, in order.
        drop(b);
        let mut again = Vec::new();
        for _ in 0..at_b.len() {
            again.push(next(&mut a).await.sequence);
        }
        assert_eq!(again, at_b);
    }

    #[tokio::test]
    async fn a_name_resumes_after_what_it_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (db, subscriptions) = subscriptions(dir.path());
        let mut first = member(&subscriptions, "resumer").await;
        let ids = publish(&db, 2).await;
        for expected in 1..=4 {
            assert_eq!(next(&mut first).await.sequence, expected);
        }
        for sequence in [1, 2] {
            assert_eq!(
                subscriptions.ack("resumer", sequence).await.unwrap(),
                AckOutcome::Acked
            );
        }
        drop(first);
        let more = publish(&db, 1).await;
        let mut second = member(&subscriptions, "resumer").await;
        let mut seen = Vec::new();
        for _ in 0..4 {
            let event = next(&mut second).await;
            seen.push((event.sequence, event.kind, event.job.id));
        }
        assert_eq!(
            seen,
            [
                (3, EventKind::Create, ids[1]),
                (4, EventKind::Run, ids[1]),
                (5, EventKind::Create, more[0]),
                (6, EventKind::Run, more[0])
            ]
        );
        assert_eq!(
            subscriptions.ack("resumer", 1).await.unwrap(),
            AckOutcome::Duplicate
        );
    }

    #[tokio::test]
    async fn streams_of_one_name_must_share_its_filter() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, subscriptions) = subscriptions(dir.path());
        let _open = member(&subscriptions, "strict").await;
        let runs = EventFilter {
            kinds: [EventKind::Run].into(),
            ..EventFilter::default()
        };
        let (out, _events) = mpsc::channel(1);
        let refused = subscriptions.join("strict", runs, out).await;
        assert!(matches!(refused, Err(JoinError::FilterDiffers(_))));
    }
}
