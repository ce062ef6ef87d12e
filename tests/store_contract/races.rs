//! Calls racing a firing on the same job, each race forced into one exact
//! interleaving by [`Interleaved`], through the service on each store: an
//! update or a delete that lands between a job falling due and its claim,
//! a claim that lands between an update's read and its write, and an
//! update that keeps losing (ABORTED). What docs/guarantees.md promises:
//! the store's conditional writes let exactly one side win, and the loser
//! finds out (a claim that claims nothing, an update refused as RUNNING or
//! aborted), so that a job never fires at a time it no longer has, nor
//! twice.

use std::{sync::Mutex, time::Duration};

use async_trait::async_trait;
use futures::FutureExt;
use scheduler_service::{
    broker::{BrokerError, EventKind, JobsProducer},
    clock::{Clock, ManualClock},
    config::SchedulerSettings,
    domain::Error,
    service::JobService,
    telemetry::metrics::Metrics,
    timer::Timer,
};
use tokio::sync::OnceCell;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    interleave::{Before, Interleaved},
    support::*,
};

cases!(
    an_update_that_loses_to_a_claim_is_refused_as_running,
    a_claim_that_loses_to_an_update_claims_nothing_and_the_new_time_fires,
    a_claim_that_loses_to_a_delete_claims_nothing,
    an_update_that_keeps_losing_is_aborted,
);

/// Records the events published: their kind, job and the job's status.
#[derive(Default)]
struct Recorded(Mutex<Vec<(EventKind, JobId, JobStatus)>>);

impl Recorded {
    fn runs(&self) -> Vec<JobId> {
        let events = self.0.lock().expect("events lock");
        events
            .iter()
            .filter(|e| e.0 == EventKind::Run)
            .map(|e| e.1)
            .collect()
    }
}

#[async_trait]
impl JobsProducer for Recorded {
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        let mut events = self.0.lock().expect("events lock");
        events.push((kind, job.id, job.status));
        Ok(())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// The service over a store wrapped in [`Interleaved`], on a clock the test
/// moves, with its firing loop running.
struct Race {
    service: JobService,
    store: Arc<Interleaved>,
    events: Arc<Recorded>,
    clock: ManualClock,
    shutdown: CancellationToken,
    firings: TaskTracker,
}

impl Race {
    async fn on(db: &Store) -> Race {
        let store = Interleaved::new(db.replica(4).await);
        let events = Arc::new(Recorded::default());
        let clock = ManualClock::at_wall_time();
        let shutdown = CancellationToken::new();
        let (timer, firings) = Timer::start_with(Arc::new(clock.clone()), shutdown.clone());
        let service = JobService::new(
            store.clone(),
            events.clone(),
            timer,
            SchedulerSettings::default(),
            Metrics::new(),
        );
        let in_flight = TaskTracker::new();
        tokio::spawn(
            service
                .clone()
                .run_firing(firings, in_flight.clone(), shutdown.clone()),
        );
        tokio::spawn(service.clone().run_window_loader(shutdown.clone()));
        Race {
            service,
            store,
            events,
            clock,
            shutdown,
            firings: in_flight,
        }
    }

    /// Stops the service and waits for the firings in flight: the events
    /// recorded then are all there will be.
    async fn finish(&self) -> Vec<JobId> {
        self.shutdown.cancel();
        self.firings.close();
        tokio::time::timeout(Duration::from_secs(90), self.firings.wait())
            .await
            .expect("the firings in flight end");
        self.events.runs()
    }

    /// A job due in `in_secs` seconds, created through the service.
    async fn create(&self, name: &str, in_secs: i64) -> Job {
        let due = self.clock.now_ms() + TimeDelta::seconds(in_secs);
        self.service.create(spec(name, due)).await.expect("create")
    }

    /// Moves the clock by `secs` seconds.
    fn advance(&self, secs: i64) {
        self.clock.advance(TimeDelta::seconds(secs));
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Waits until `check` holds for job `id` as stored (a bound on a hang).
async fn until_stored(db: &Arc<dyn JobDB>, id: JobId, check: impl Fn(Option<&Job>) -> bool) {
    tokio::time::timeout(Duration::from_secs(90), async {
        while !check(db.get(id).await.expect("get").as_ref()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the job reached the state waited for");
}

async fn an_update_that_loses_to_a_claim_is_refused_as_running(db: &Store) {
    let race = Race::on(db).await;
    let job = race.create("claimed first", 30).await;
    // The update has read the job (SCHEDULED); before it writes, the job
    // falls due and the firing claims it.
    let inner: Arc<dyn JobDB> = db.replica(1).await;
    let clock = race.clock.clone();
    race.store.before(
        Before::ReplaceIf,
        Box::new(move || {
            let (inner, clock) = (inner.clone(), clock.clone());
            async move {
                clock.advance(TimeDelta::seconds(30));
                until_stored(&inner, job.id, |j| {
                    j.is_some_and(|j| j.status == JobStatus::Running)
                })
                .await;
            }
            .boxed()
        }),
    );
    let refused = race
        .service
        .update(job.id, spec("too late", race.clock.now_ms()))
        .await
        .expect_err("the job is running");
    assert!(
        matches!(refused, Error::FailedPrecondition(_)),
        "{refused:?}"
    );
    let stored = race.service.get(job.id).await.expect("get");
    assert_eq!(
        (stored.status, stored.spec.name.as_str()),
        (JobStatus::Running, "claimed first")
    );
}

async fn a_claim_that_loses_to_an_update_claims_nothing_and_the_new_time_fires(db: &Store) {
    let race = Race::on(db).await;
    let job = race.create("moved", 30).await;
    // The job falls due; before its claim (and any other: a clock jump
    // also makes the loader arm the job again), an update moves it an hour
    // on.
    let service = race.service.clone();
    let later = race.clock.now_ms() + TimeDelta::hours(1);
    let updated = Arc::new(OnceCell::new());
    race.store.before(
        Before::ClaimMany,
        Box::new(move || {
            let (service, updated) = (service.clone(), updated.clone());
            async move {
                updated
                    .get_or_init(|| async {
                        service
                            .update(job.id, spec("moved on", later))
                            .await
                            .expect("update");
                    })
                    .await;
            }
            .boxed()
        }),
    );
    race.advance(30);
    let inner = db.replica(1).await;
    // The update lands (a new fire token); the old firing claims nothing.
    until_stored(&inner, job.id, |j| {
        j.is_some_and(|j| j.spec.name == "moved on")
    })
    .await;
    let moved = race.service.get(job.id).await.expect("get");
    assert_eq!(moved.status, JobStatus::Scheduled);
    assert_ne!(moved.fire_token, job.fire_token);
    // At its new time the job fires, once.
    race.advance(3_600);
    until_stored(&inner, job.id, |j| {
        j.is_some_and(|j| j.status == JobStatus::Running)
    })
    .await;
    let fired = race.service.get(job.id).await.expect("get");
    assert_eq!(fired.fire_token, moved.fire_token);
    assert_eq!(race.finish().await, [job.id]);
}

async fn a_claim_that_loses_to_a_delete_claims_nothing(db: &Store) {
    let race = Race::on(db).await;
    let job = race.create("deleted", 30).await;
    let marker = race.create("marker", 40).await;
    // The job falls due; before its claim (and any other), it is deleted.
    let service = race.service.clone();
    let deleted = Arc::new(OnceCell::new());
    race.store.before(
        Before::ClaimMany,
        Box::new(move || {
            let (service, deleted) = (service.clone(), deleted.clone());
            async move {
                deleted
                    .get_or_init(|| async {
                        service.delete(job.id).await.expect("delete");
                    })
                    .await;
            }
            .boxed()
        }),
    );
    race.advance(30);
    let inner = db.replica(1).await;
    until_stored(&inner, job.id, |j| j.is_none()).await;
    // The marker, due after it, fires; the deleted job never did.
    race.advance(10);
    until_stored(&inner, marker.id, |j| {
        j.is_some_and(|j| j.status == JobStatus::Running)
    })
    .await;
    assert_eq!(race.finish().await, [marker.id]);
    assert!(matches!(
        race.service.get(job.id).await,
        Err(Error::NotFound(_))
    ));
}

async fn an_update_that_keeps_losing_is_aborted(db: &Store) {
    let race = Race::on(db).await;
    let job = race.create("busy", 3_600).await;
    // Between each of the update's reads and its write, another writer
    // changes the job: the update retries, then gives up.
    let inner: Arc<dyn JobDB> = db.replica(1).await;
    let changes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = changes.clone();
    race.store.before(
        Before::ReplaceIf,
        Box::new(move || {
            let (inner, counted) = (inner.clone(), counted.clone());
            async move {
                let current = inner.get(job.id).await.expect("get").expect("found");
                let changed = Job {
                    version: current.version + 1,
                    ..current.clone()
                };
                assert!(
                    inner
                        .replace_if(&changed, current.version, &[])
                        .await
                        .expect("write")
                );
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            .boxed()
        }),
    );
    let aborted = race
        .service
        .update(job.id, spec("never", race.clock.now_ms()))
        .await
        .expect_err("aborted");
    assert!(
        matches!(aborted, Error::Aborted(id) if id == job.id),
        "{aborted:?}"
    );
    assert_eq!(
        changes.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "three attempts"
    );
    assert_eq!(
        race.service.get(job.id).await.expect("get").spec.name,
        "busy"
    );
}
