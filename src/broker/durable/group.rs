//! The task of one subscription name with streams open: it reads the
//! event log from the name's position, shares the events among the name's
//! streams, and records their acknowledgements (see the parent module).

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
        oneshot,
    },
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::super::hub::{HubEvent, Outgoing};
use crate::{
    domain::{EventFilter, JobId},
    store::event_log::{EventLog, SubscriptionStart},
    telemetry::metrics::Metrics,
};

use super::{Command, End, GroupHandle, JoinError, NewMember, READ_AHEAD};

/// What a group listens to.
pub(super) struct Links {
    pub(super) queue: mpsc::UnboundedReceiver<Command>,
    /// The hub: each logged event, as it is committed.
    pub(super) events: broadcast::Receiver<Arc<HubEvent>>,
    pub(super) groups: Arc<Mutex<HashMap<String, GroupHandle>>>,
    pub(super) shutdown: CancellationToken,
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
pub(super) struct Group {
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
    /// The group of `name`, before it has read its position.
    pub(super) fn new(
        name: &str,
        log: Arc<dyn EventLog>,
        room: Arc<Notify>,
        stall: Duration,
        metrics: Arc<Metrics>,
    ) -> Group {
        Group {
            name: name.to_owned(),
            log,
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
            room,
            stall,
            metrics,
        }
    }

    /// Delivers until shutdown, or until the last member left.
    pub(super) async fn run(mut self, mut links: Links) {
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
