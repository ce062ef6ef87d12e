//! Delivery: publishing the events the outbox holds. Every change to a job
//! records the events it owes in the job itself, in the same atomic write
//! (the outbox: [`PendingEvents`]). Delivering a job publishes what it owes,
//! in the order create, update, run, and then clears the outbox entry only
//! if the job did not change meanwhile, so that an event is never lost.
//!
//! One entry point, [`JobService::deliver`], called right after each change
//! (create, update, firing, misfire, run timeout). The relay
//! ([`JobService::run_relay`]) is the background duty that hands it what is
//! still owed after a crash or a broker outage (at least once: the fire
//! token, the events' `ScheduledKey`, lets consumers drop duplicates).
//!
//! While the broker is unreachable, a publish waits out the broker's
//! acknowledgement timeout (`KAFKA_MESSAGE_TIMEOUT_MS`, 10 s) before it
//! fails: every call and every firing batch would wait that long, and
//! CreateJob would slow to a crawl. So the first publish that finds the
//! broker unreachable marks it down, and from then on calls and firings
//! leave their events owed at once; the relay alone keeps trying, and its
//! first publish that succeeds marks the broker up again.
//!
//! The relay leaves alone the jobs whose events a call or firing of this
//! process is publishing (or finished publishing while the relay read the
//! outbox): their outbox entries are about to be cleared, and publishing
//! them again would hand consumers a duplicate. Other replicas' calls are
//! covered by the grace period instead (`relay_grace`), which the relay
//! measures against the jobs' `updated_at`; for the jobs of the shards this
//! replica owns, at most a lease period (see
//! [`JobService::relay_grace_of`]), so that what a dead replica claimed and
//! never delivered follows its shard within about a lease.
//!
//! [`PendingEvents`]: crate::domain::PendingEvents

use std::{
    borrow::Borrow,
    collections::{HashMap, HashSet},
    sync::{Mutex, PoisonError, atomic::Ordering},
};

use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::{JobService, job_span, log_unreadable, outbox_clears::ClearTurn};
use crate::clock::span;
use crate::{
    backoff::Backoff,
    broker::{BrokerError, EventKind},
    domain::{Job, JobId},
};

/// Jobs read from the outbox per relay pass.
const RELAY_BATCH: usize = 500;
/// Jobs published at once by one delivery (each job's own events stay in
/// order). A firing batch is at most 2,048 jobs.
const PUBLISH_CONCURRENCY: usize = 512;

/// What became of a job's owed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every owed event was published and the outbox entry cleared.
    Delivered,
    /// Published, but the job changed meanwhile; the relay will publish its
    /// newer state (consumers may see a duplicate).
    Superseded,
    /// The broker or store failed; the events stay owed for the relay.
    Deferred,
}

/// Whose delivery it is, which says how it ends.
pub(super) enum Deliverer {
    /// A caller waiting for it (an API call, the relay, a sweep): its
    /// outbox clear goes at once.
    Caller,
    /// A firing batch: its places in the firing bound (`None` outside the
    /// firing loop) are given back once its events are published, and its
    /// outbox clear gives way to the claims under way (see
    /// [`super::outbox_clears`]); unless the clear is itself a delivery
    /// ([`crate::store::JobDB::clear_delivers`]): it then goes at once, and
    /// the places are held until it ends.
    Firing(Option<OwnedSemaphorePermit>),
}

impl Deliverer {
    /// The events are published: when the clear goes, and the places held
    /// until it ends (the others are given back).
    fn published(self, clear_delivers: bool) -> (ClearTurn, Option<OwnedSemaphorePermit>) {
        match self {
            Deliverer::Caller => (ClearTurn::AtOnce, None),
            Deliverer::Firing(places) if clear_delivers => (ClearTurn::AtOnce, places),
            Deliverer::Firing(_) => (ClearTurn::AfterClaims, None),
        }
    }
}

/// The jobs this process's calls and firings are delivering, and, while
/// the relay reads the outbox, those whose delivery ended meanwhile: the
/// relay must not publish them again (see the module doc).
#[derive(Debug, Default)]
pub(super) struct InFlight(Mutex<InFlightSets>);

#[derive(Debug, Default)]
struct InFlightSets {
    /// Deliveries under way per job (two calls may deliver one job).
    delivering: HashMap<JobId, u32>,
    /// Whether the relay is reading the outbox.
    relay_reading: bool,
    /// Deliveries ended while the relay reads.
    ended: HashSet<JobId>,
}

impl InFlight {
    fn sets(&self) -> std::sync::MutexGuard<'_, InFlightSets> {
        // The sets stay consistent whatever panicked while holding them.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `ids` as being delivered until the guard is dropped.
    fn hold(&self, ids: Vec<JobId>) -> Delivering<'_> {
        let mut sets = self.sets();
        for id in &ids {
            *sets.delivering.entry(*id).or_default() += 1;
        }
        Delivering {
            in_flight: self,
            ids,
        }
    }

    /// The relay starts reading the outbox; the read ends when the guard
    /// is dropped.
    fn relay_reads(&self) -> RelayRead<'_> {
        let mut sets = self.sets();
        sets.relay_reading = true;
        sets.ended.clear();
        RelayRead { in_flight: self }
    }
}

/// The relay's read of the outbox under way (see [`InFlight::relay_reads`]).
struct RelayRead<'a> {
    in_flight: &'a InFlight,
}

impl RelayRead<'_> {
    /// The jobs of `owing`, as read, that no delivery of this process
    /// touched since the read began.
    fn untouched(&self, owing: Vec<Job>) -> Vec<Job> {
        let sets = self.in_flight.sets();
        owing
            .into_iter()
            .filter(|job| !sets.delivering.contains_key(&job.id) && !sets.ended.contains(&job.id))
            .collect()
    }
}

impl Drop for RelayRead<'_> {
    fn drop(&mut self) {
        let mut sets = self.in_flight.sets();
        sets.relay_reading = false;
        sets.ended.clear();
    }
}

/// The jobs of one delivery under way (see [`InFlight::hold`]).
struct Delivering<'a> {
    in_flight: &'a InFlight,
    ids: Vec<JobId>,
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        let mut sets = self.in_flight.sets();
        for id in self.ids.drain(..) {
            if let Some(count) = sets.delivering.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    sets.delivering.remove(&id);
                }
            }
            if sets.relay_reading {
                sets.ended.insert(id);
            }
        }
    }
}

impl JobService {
    /// Delivers what each job owes, each job's publishing in its span (jobs
    /// concurrently, each job's events in order), then clears the outbox
    /// entries of those published in one store call (shared with other
    /// deliveries' clears, see [`super::outbox_clears`]), each only if its
    /// job is still at the version published. Never fails: what cannot be
    /// published now stays owed for the relay. Returns each job's delivery,
    /// in order.
    pub async fn deliver<J: Borrow<Job>>(&self, jobs: &[(J, Span)]) -> Vec<Delivery> {
        self.deliver_for(jobs, Deliverer::Caller).await
    }

    /// Delivers as [`JobService::deliver`] does, for `deliverer`.
    pub(super) async fn deliver_for<J: Borrow<Job>>(
        &self,
        jobs: &[(J, Span)],
        deliverer: Deliverer,
    ) -> Vec<Delivery> {
        if self.inner.broker_down.load(Ordering::Relaxed) {
            // The relay delivers them when the broker is back.
            return vec![Delivery::Deferred; jobs.len()];
        }
        let _delivering = self
            .inner
            .in_flight
            .hold(jobs.iter().map(|(job, _)| job.borrow().id).collect());
        self.deliver_now(jobs, deliverer).await
    }

    /// Delivers as [`JobService::deliver_for`] does, even while the broker
    /// is marked down (the relay's probe).
    async fn deliver_now<J: Borrow<Job>>(
        &self,
        jobs: &[(J, Span)],
        deliverer: Deliverer,
    ) -> Vec<Delivery> {
        // (The futures are made before they are streamed: a closure over
        // borrowed jobs inside the stream would not be `Send`.)
        let publishes: Vec<_> = jobs
            .iter()
            .map(|(job, span)| self.publish_events(job.borrow()).instrument(span.clone()))
            .collect();
        let published: Vec<bool> = futures::stream::iter(publishes)
            .buffered(PUBLISH_CONCURRENCY)
            .collect()
            .await;
        let (turn, _places) = deliverer.published(self.inner.db.clear_delivers());
        let (to_delete, to_clear): (Vec<&Job>, Vec<&Job>) = jobs
            .iter()
            .zip(&published)
            .filter(|(_, published)| **published)
            .map(|((job, _), _)| job.borrow())
            .partition(|job| job.pending.delete);
        let to_clear: Vec<(JobId, i64)> = to_clear.iter().map(|j| (j.id, j.version)).collect();
        let mut cleared: HashSet<JobId> = match self.clear(&to_clear, turn).await {
            Some(cleared) => cleared.into_iter().collect(),
            None => return vec![Delivery::Deferred; jobs.len()],
        };
        cleared.extend(self.delete_retired(&to_delete).await);
        jobs.iter()
            .zip(published)
            .map(
                |((job, _), published)| match (published, cleared.contains(&job.borrow().id)) {
                    (false, _) => Delivery::Deferred,
                    (true, true) => Delivery::Delivered,
                    (true, false) => Delivery::Superseded,
                },
            )
            .collect()
    }

    /// Clears the outbox entries of `published` jobs still at their
    /// version; the ids cleared, or `None` if the store failed (the events
    /// stay owed and will be published again).
    async fn clear(&self, published: &[(JobId, i64)], turn: ClearTurn) -> Option<Vec<JobId>> {
        if published.is_empty() {
            return Some(Vec::new());
        }
        self.inner
            .outbox_clears
            .clear(&self.inner.db, published, turn)
            .await
    }

    /// Deletes each retired job whose delete event was just published, if
    /// it is still at the version published; the ids deleted. One that
    /// cannot be deleted now keeps owing its event, and the relay
    /// publishes it again (at least once).
    async fn delete_retired(&self, published: &[&Job]) -> Vec<JobId> {
        let mut deleted = Vec::with_capacity(published.len());
        for job in published {
            match self.inner.db.delete_if(job.id, job.version).await {
                Ok(true) => {
                    self.inner.timer.cancel(&job.id);
                    self.inner.metrics.job_expired();
                    deleted.push(job.id);
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(job_id = %job.id, error = %err,
                    "delete event published, but the job stays; it will be published again"),
            }
        }
        deleted
    }

    /// Publishes the events `job` owes, in the order create, update, run.
    /// False if one could not be published: it and those after it stay owed,
    /// and the relay is woken to retry.
    async fn publish_events(&self, job: &Job) -> bool {
        for kind in EventKind::owed(job.pending) {
            match self.inner.producer.publish(kind, job).await {
                Ok(()) => {
                    if kind == EventKind::Run {
                        let due = job.firing_due();
                        let lateness = self.clock().now() - due;
                        self.inner
                            .metrics
                            .run_published(lateness.num_milliseconds());
                    }
                    if self.inner.broker_down.swap(false, Ordering::Relaxed) {
                        tracing::info!("the broker is back: calls and firings publish again");
                    }
                }
                Err(err) => {
                    tracing::warn!(job_id = %job.id, kind = kind.as_str(), error = %err,
                        "event not published; it stays in the outbox");
                    if matches!(err, BrokerError::Unavailable(_))
                        && !self.inner.broker_down.swap(true, Ordering::Relaxed)
                    {
                        tracing::warn!(
                            "the broker is unreachable: events are left to the relay until it is back"
                        );
                    }
                    self.inner.relay_wake.notify_one();
                    return false;
                }
            }
        }
        true
    }

    /// Delivers what the outbox holds until shutdown: every `outbox_poll`,
    /// at once when shards were taken, and soon after a delivery failed
    /// (after the current backoff, which grows while passes keep failing).
    pub async fn run_relay(self, shutdown: CancellationToken) {
        let poll = self.settings().outbox_poll;
        let mut wait = std::time::Duration::ZERO;
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.inner.relay_now.notified() => {}
                () = self.inner.relay_wake.notified() => {
                    // A call just failed to publish: give the broker the
                    // current backoff before trying again.
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff.current()) => {}
                    }
                }
            }
            wait = match self.relay_pass().await {
                Ok(()) => {
                    backoff.reset();
                    poll
                }
                Err(err) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %err, retry_in = ?wait, "outbox relay pass failed");
                    wait
                }
            };
        }
    }

    /// Delivers the jobs that owe events and changed long enough ago. A job
    /// changed so recently that the call which changed it may still be
    /// publishing is left to that call, and so is a job this process is
    /// delivering or delivered during the read: relaying it too would
    /// duplicate its events. A stored job that cannot be read is logged and
    /// left owing; the pass goes on with the others (and does not count as
    /// failed).
    pub(crate) async fn relay_pass(&self) -> Result<(), String> {
        let read = self.inner.in_flight.relay_reads();
        let owing = self
            .inner
            .db
            .with_pending_events(RELAY_BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let untouched = read.untouched(owing.found);
        drop(read);
        log_unreadable("outbox relay", &owing.unreadable);
        let now = self.clock().now_ms();
        let settled = |job: &Job| {
            let grace = self.relay_grace_of(job, self.settings().relay_grace);
            job.updated_at <= now - span(grace)
        };
        let ready: Vec<(Job, Span)> = untouched
            .into_iter()
            .filter(|job| settled(job))
            .map(|job| {
                let span = job_span("relay events", &job);
                (job, span)
            })
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        let deliveries = self.deliver_now(&ready, Deliverer::Caller).await;
        let deferred = deliveries
            .iter()
            .filter(|d| **d == Delivery::Deferred)
            .count();
        tracing::info!(
            relayed = deliveries.len() - deferred,
            deferred,
            "outbox relay pass"
        );
        if deferred > 0 {
            return Err(format!("{deferred} jobs' events still owed"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        config::SchedulerSettings,
        domain::JobStatus,
        service::{
            firing::BatchPermits,
            testing::{RecordingProducer, TestService},
        },
        telemetry::metrics,
    };
    use tokio_util::sync::CancellationToken;

    fn now_span(job: Job) -> [(Job, Span); 1] {
        [(job, Span::current())]
    }

    fn recording(relay_grace: Duration) -> (TestService, Arc<RecordingProducer>) {
        let producer = Arc::new(RecordingProducer::default());
        let settings = SchedulerSettings {
            relay_grace,
            ..SchedulerSettings::default()
        };
        (TestService::new(settings, producer.clone()), producer)
    }

    #[tokio::test]
    async fn a_firings_places_outlast_its_publishes_only_where_the_clear_delivers() {
        let bound = Arc::new(tokio::sync::Semaphore::new(3));
        let places = || Some(bound.clone().try_acquire_many_owned(3).unwrap());
        let (turn, held) = Deliverer::Firing(places()).published(false);
        assert_eq!(turn, ClearTurn::AfterClaims);
        assert!(held.is_none());
        assert_eq!(bound.available_permits(), 3, "given back once published");
        let (turn, held) = Deliverer::Firing(places()).published(true);
        assert_eq!(turn, ClearTurn::AtOnce, "the clear is the delivery");
        assert_eq!(bound.available_permits(), 0, "held until it ends");
        drop(held);
        assert_eq!(Deliverer::Caller.published(false).0, ClearTurn::AtOnce);
    }

    #[tokio::test]
    async fn a_run_event_counts_how_late_the_broker_took_it() {
        let (mut t, _) = recording(Duration::ZERO);
        let svc = t.svc.clone();
        svc.create(t.spec(-1_500)).await.unwrap();
        let firing = t.next_firings(1).await[0];
        svc.fire_batch(
            vec![firing],
            BatchPermits::default(),
            &CancellationToken::new(),
        )
        .await;
        let text = svc.metrics().render(0);
        let bucket = |le: &str| {
            let series = format!("{}_bucket{{le=\"{le}\"}} ", metrics::RUN_PUBLISH_LATENESS);
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str())?.parse::<f64>().ok())
        };
        // Due 1.5 s before the clock's now; the create event is not counted.
        assert_eq!(bucket("1"), Some(0.0), "{text}");
        assert_eq!(bucket("2.5"), Some(1.0), "{text}");
    }

    #[tokio::test]
    async fn events_owed_while_the_broker_is_down_stay_in_the_outbox_in_order() {
        let (mut t, producer) = recording(Duration::ZERO);
        let svc = t.svc.clone();
        producer.set_down(true);
        let job = svc.create(t.spec(-1)).await.unwrap();
        let due = t.next_firings(1).await;
        svc.fire_batch(due, BatchPermits::default(), &CancellationToken::new())
            .await;
        let stored = svc.get(job.id).await.unwrap();
        assert_eq!(stored.status, JobStatus::Running);
        assert!(stored.pending.create && stored.pending.run, "{stored:?}");
        assert!(producer.events().is_empty());

        producer.set_down(false);
        assert_eq!(
            svc.inner
                .db
                .with_pending_events(10)
                .await
                .unwrap()
                .found
                .len(),
            1
        );
        svc.relay_pass().await.unwrap();
        let kinds: Vec<EventKind> = producer.events().iter().map(|e| e.0).collect();
        assert_eq!(kinds, [EventKind::Create, EventKind::Run]);
        assert!(!svc.get(job.id).await.unwrap().pending.any());
    }

    #[tokio::test]
    async fn a_delivery_superseded_by_a_change_leaves_the_newer_events_owed() {
        let (t, producer) = recording(Duration::from_secs(11));
        let svc = &t.svc;
        producer.set_down(true);
        let created = svc.create(t.spec(60_000)).await.unwrap();
        svc.update(created.id, t.spec(70_000)).await.unwrap();
        producer.set_down(false);
        // Delivering the stale snapshot publishes it but must not clear the
        // update owed by the newer version.
        assert_eq!(
            svc.deliver_now(&now_span(created.clone()), Deliverer::Caller)
                .await,
            [Delivery::Superseded]
        );
        let stored = svc.get(created.id).await.unwrap();
        assert!(stored.pending.create && stored.pending.update);
        assert_eq!(svc.deliver(&now_span(stored)).await, [Delivery::Delivered]);
    }

    #[tokio::test]
    async fn while_the_broker_is_down_calls_leave_their_events_to_the_relay() {
        let (t, producer) = recording(Duration::ZERO);
        let svc = &t.svc;
        producer.set_down(true);
        let first = svc.create(t.spec(60_000)).await.unwrap();
        assert_eq!(
            producer.attempts(),
            1,
            "the first call finds the broker down"
        );
        let second = svc.create(t.spec(60_000)).await.unwrap();
        assert_eq!(producer.attempts(), 1, "the next one does not wait for it");
        // The relay keeps trying; its first success marks the broker up.
        assert!(svc.relay_pass().await.is_err());
        producer.set_down(false);
        svc.relay_pass().await.unwrap();
        let third = svc.create(t.spec(60_000)).await.unwrap();
        let created: Vec<JobId> = producer.events().iter().map(|e| e.1).collect();
        assert_eq!(created.len(), 3);
        assert_eq!(created[2], third.id, "published by its call");
        for job in [first, second, third] {
            assert!(!svc.get(job.id).await.unwrap().pending.any());
        }
    }

    #[tokio::test]
    async fn the_relay_never_publishes_again_what_a_firing_is_publishing() {
        let (mut t, producer) = recording(Duration::ZERO);
        let svc = t.svc.clone();
        svc.create(t.spec(-1)).await.unwrap();
        let due = t.next_firings(1).await;
        producer.hold(true);
        let firing = tokio::spawn({
            let svc = svc.clone();
            async move {
                svc.fire_batch(due, BatchPermits::default(), &CancellationToken::new())
                    .await
            }
        });
        while producer.attempts() < 2 {
            tokio::task::yield_now().await;
        }
        // The run event is being published and still owed; the clock jumps
        // past any grace. The relay leaves it to the firing.
        t.advance_ms(3_600_000);
        // (A publish by the relay would wait for the release: the timeout
        // only bounds that hang.)
        tokio::time::timeout(Duration::from_secs(30), svc.relay_pass())
            .await
            .expect("the relay publishes nothing")
            .unwrap();
        assert_eq!(producer.attempts(), 2, "the relay published again");
        producer.hold(false);
        firing.await.unwrap();
        assert_eq!(producer.runs().len(), 1);
        svc.relay_pass().await.unwrap();
        assert_eq!(producer.runs().len(), 1);
    }

    #[tokio::test]
    async fn a_delivery_that_ends_while_the_relay_reads_is_left_out_of_its_pass() {
        let in_flight = InFlight::default();
        let t = TestService::new(
            SchedulerSettings::default(),
            Arc::new(RecordingProducer::default()),
        );
        let job = Job::new_scheduled(t.spec(0), t.svc.clock().now_ms());
        let delivering = in_flight.hold(vec![job.id]);
        let read = in_flight.relay_reads();
        drop(delivering);
        assert!(read.untouched(vec![job.clone()]).is_empty());
        drop(read);
        // The next pass reads after that delivery ended: the job is its own.
        let read = in_flight.relay_reads();
        assert_eq!(read.untouched(vec![job]).len(), 1);
    }

    #[tokio::test]
    async fn the_relay_leaves_just_changed_jobs_to_their_call_and_delivers_the_rest() {
        let (t, producer) = recording(Duration::from_secs(11));
        let svc = &t.svc;
        producer.set_down(true);
        let job = svc.create(t.spec(60_000)).await.unwrap();
        assert!(svc.relay_pass().await.is_ok(), "nothing settled to relay");
        producer.set_down(false);
        // Within the grace period the relay leaves the job to its call.
        t.advance_ms(11_000 - 1);
        svc.relay_pass().await.unwrap();
        assert!(producer.events().is_empty());
        assert!(svc.get(job.id).await.unwrap().pending.create);
        // Past it, the relay delivers; while the broker is down it fails.
        t.advance_ms(1);
        producer.set_down(true);
        assert!(svc.relay_pass().await.is_err(), "the broker is down");
        producer.set_down(false);
        svc.relay_pass().await.unwrap();
        assert_eq!(
            producer.events(),
            [(EventKind::Create, job.id, JobStatus::Scheduled)]
        );
        assert!(!svc.get(job.id).await.unwrap().pending.any());
    }
}
