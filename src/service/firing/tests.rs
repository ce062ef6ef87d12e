use std::collections::HashSet;

use super::*;
use crate::{
    broker::EventKind,
    clock::Clock,
    config::SchedulerSettings,
    domain::{
        Error, ResultStatus,
        report::{ResultOutcome, RunReport},
    },
    service::testing::{RecordingProducer, TestService},
    store::memory::MemoryJobDB,
};

fn recording() -> (TestService, Arc<RecordingProducer>) {
    let producer = Arc::new(RecordingProducer::default());
    let t = TestService::new(SchedulerSettings::default(), producer.clone());
    (t, producer)
}

#[test]
fn a_batch_is_the_backlog_spread_over_the_free_slots_within_bounds() {
    // (queued, free slots, most) → size
    let cases = [
        // A lone firing, or a few: fired at once, alone or together.
        ((1, 4, 512), 1),
        ((3, 4, 512), 1),
        ((5, 4, 512), 2),
        ((3, 1, 512), 3),
        // A burst: shared among the batches that can start now.
        ((1_000, 4, 512), 250),
        ((1_000, 2, 512), 500),
        ((1_000, 1, 512), 512),
        ((30_000, 4, 512), 512),
        // The bound from SCHEDULER_FIRE_CONCURRENCY (64 → 16).
        ((1_000, 4, 16), 16),
        // Degenerate inputs still give a batch of at least one.
        ((0, 4, 512), 1),
        ((10, 0, 512), 10),
        ((10, 4, 0), 1),
    ];
    for ((queued, free, max), size) in cases {
        assert_eq!(
            batch_size(queued, free, max),
            size,
            "{queued} queued, {free} free, at most {max}"
        );
    }
}

#[tokio::test]
async fn a_firing_claims_once_and_a_stale_token_claims_nothing() {
    let mut t = TestService::with_look_ahead(Duration::from_secs(10));
    let svc = t.svc.clone();
    let job = svc.create(t.spec(-1)).await.unwrap();
    let firing = t.next_firings(1).await[0];
    let shutdown = CancellationToken::new();
    svc.fire_batch(vec![firing], BatchPermits::default(), &shutdown)
        .await;
    assert_eq!(svc.get(job.id).await.unwrap().status, JobStatus::Running);
    let err = svc.update(job.id, t.spec(1_000)).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert_eq!(
        svc.record_result(job.id, &RunReport::of(ResultStatus::Succeeded, None))
            .await
            .unwrap(),
        ResultOutcome::Stored
    );
    assert_eq!(
        svc.record_result(job.id, &RunReport::of(ResultStatus::Succeeded, None))
            .await
            .unwrap(),
        ResultOutcome::Duplicate
    );
    // A finished job updated is scheduled again with a new token; the old
    // firing no longer claims it.
    let again = svc.update(job.id, t.spec(60_000)).await.unwrap();
    assert_eq!(again.status, JobStatus::Scheduled);
    svc.fire_batch(vec![firing], BatchPermits::default(), &shutdown)
        .await;
    assert_eq!(svc.get(job.id).await.unwrap().status, JobStatus::Scheduled);
}

#[tokio::test]
async fn a_lost_claim_arms_the_job_under_its_newer_token() {
    let mut t = TestService::with_look_ahead(Duration::from_secs(10));
    let svc = t.svc.clone();
    let job = svc.create(t.spec(-1)).await.unwrap();
    let stale = t.next_firings(1).await[0];
    // Updated under a new token, which the timer then lost (two updates
    // raced to arm it).
    let updated = svc.update(job.id, t.spec(5_000)).await.unwrap();
    svc.timer().cancel(&job.id);
    svc.fire_batch(
        vec![stale],
        BatchPermits::default(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(svc.get(job.id).await.unwrap().status, JobStatus::Scheduled);
    assert!(svc.timer().is_armed(&job.id), "armed again");
    t.advance_ms(5_000);
    let firing = t.next_firings(1).await[0];
    assert_eq!((firing.id, firing.fire_token), (job.id, updated.fire_token));
}

#[tokio::test]
async fn a_partly_failed_batch_delivers_its_claims_at_once_and_retries_the_rest() {
    let producer = Arc::new(RecordingProducer::default());
    let db = Arc::new(MemoryJobDB::new());
    let mut t = TestService::on(db.clone(), SchedulerSettings::default(), producer.clone());
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(t.svc.create(t.spec(-1)).await.unwrap());
    }
    let batch = t.next_firings(3).await;
    // The middle job's claim fails twice (say, a connection dropped).
    db.fail_next_claims(jobs[1].id, 2);
    t.svc
        .fire_batch(batch, BatchPermits::default(), &CancellationToken::new())
        .await;

    let runs = producer.runs();
    // Each job ran once; the two claimed at the first try were published
    // before the retried one, not left for the relay.
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[2], jobs[1].id, "{runs:?}");
    for job in &jobs {
        let stored = t.svc.get(job.id).await.unwrap();
        assert_eq!(stored.status, JobStatus::Running);
        assert!(!stored.pending.any(), "outbox cleared: {stored:?}");
    }
}

#[tokio::test]
async fn a_batch_claims_what_it_can_and_delivers_each_job_in_order() {
    let (mut t, producer) = recording();
    let svc = t.svc.clone();
    // Created while the broker is down: each job owes create, then run.
    producer.set_down(true);
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(svc.create(t.spec(-1)).await.unwrap());
    }
    producer.set_down(false);
    // The broker is back (as the relay's next success would tell).
    svc.inner
        .broker_down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let mut batch = t.next_firings(5).await;
    // One job deleted and one claimed already (another replica): the
    // batch claims the other three.
    svc.delete(jobs[3].id).await.unwrap();
    let other = svc
        .inner
        .db
        .claim(jobs[4].id, jobs[4].fire_token, t.clock.now_ms())
        .await
        .unwrap()
        .unwrap();
    // A stale firing of a job already in the batch claims nothing more.
    batch.push(Firing {
        fire_token: jobs[0].fire_token ^ 1,
        ..batch[0]
    });
    svc.fire_batch(batch, BatchPermits::default(), &CancellationToken::new())
        .await;

    let events = producer.events();
    for job in &jobs[..3] {
        let stored = svc.get(job.id).await.unwrap();
        assert_eq!(stored.status, JobStatus::Running);
        assert!(!stored.pending.any(), "outbox cleared: {stored:?}");
        let own: Vec<(EventKind, JobStatus)> = events
            .iter()
            .filter(|e| e.1 == job.id)
            .map(|e| (e.0, e.2))
            .collect();
        assert_eq!(
            own,
            [
                (EventKind::Create, JobStatus::Running),
                (EventKind::Run, JobStatus::Running)
            ]
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| e.1 == jobs[3].id || e.1 == jobs[4].id)
    );
    // The other claimer's job still owes its events: its claimer (or the
    // relay) publishes them, not this batch.
    assert_eq!(svc.get(jobs[4].id).await.unwrap(), other);
}

#[tokio::test]
async fn a_batch_published_while_the_broker_is_down_stays_owed() {
    let (mut t, producer) = recording();
    let a = t.svc.create(t.spec(-1)).await.unwrap();
    let b = t.svc.create(t.spec(-1)).await.unwrap();
    producer.set_down(true);
    let due = t.next_firings(2).await;
    t.svc
        .fire_batch(due, BatchPermits::default(), &CancellationToken::new())
        .await;
    for id in [a.id, b.id] {
        let stored = t.svc.get(id).await.unwrap();
        assert_eq!(stored.status, JobStatus::Running);
        assert!(stored.pending.run && !stored.pending.create, "{stored:?}");
    }
    assert_eq!(
        t.svc
            .inner
            .db
            .with_pending_events(10)
            .await
            .unwrap()
            .found
            .len(),
        2
    );
}

#[tokio::test]
async fn too_late_jobs_are_skipped_and_the_rest_fire_alone_or_batched() {
    for batched in [false, true] {
        let producer = Arc::new(RecordingProducer::default());
        let settings = SchedulerSettings {
            misfire: MisfirePolicy::SkipIfLaterThan(Duration::from_secs(5)),
            ..SchedulerSettings::default()
        };
        let mut t = TestService::new(settings, producer.clone());
        let svc = t.svc.clone();
        let late = svc.create(t.spec(-60_000)).await.unwrap();
        let recent = svc.create(t.spec(-1_000)).await.unwrap();
        // Exactly at the limit is not too late.
        let edge = svc.create(t.spec(-5_000)).await.unwrap();
        let due = t.next_firings(3).await;
        if batched {
            svc.fire_batch(due, BatchPermits::default(), &CancellationToken::new())
                .await;
        } else {
            for firing in due {
                svc.fire_batch(
                    vec![firing],
                    BatchPermits::default(),
                    &CancellationToken::new(),
                )
                .await;
            }
        }
        assert_eq!(svc.get(late.id).await.unwrap().status, JobStatus::Failed);
        assert_eq!(svc.get(recent.id).await.unwrap().status, JobStatus::Running);
        assert_eq!(svc.get(edge.id).await.unwrap().status, JobStatus::Running);
        let events = producer.events();
        assert!(events.contains(&(EventKind::Update, late.id, JobStatus::Failed)));
        assert!(events.contains(&(EventKind::Run, recent.id, JobStatus::Running)));
        assert!(
            !events
                .iter()
                .any(|e| e.0 == EventKind::Run && e.1 == late.id),
            "batched: {batched}"
        );
    }
}

#[tokio::test]
async fn a_firing_that_waited_past_the_misfire_limit_is_skipped() {
    let producer = Arc::new(RecordingProducer::default());
    let settings = SchedulerSettings {
        misfire: MisfirePolicy::SkipIfLaterThan(Duration::from_secs(5)),
        ..SchedulerSettings::default()
    };
    let mut t = TestService::new(settings, producer.clone());
    let job = t.svc.create(t.spec(1_000)).await.unwrap();
    t.advance_ms(1_000);
    let firing = t.next_firings(1).await[0];
    // The firing is handed over on time, but runs only after the clock
    // jumped a minute (a paused VM): too late by then.
    t.advance_ms(60_000);
    t.svc
        .fire_batch(
            vec![firing],
            BatchPermits::default(),
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(t.svc.get(job.id).await.unwrap().status, JobStatus::Failed);
    assert!(producer.runs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firing_loop_fires_every_job_once_in_batches() {
    const JOBS: usize = 2_000;
    let producer = Arc::new(RecordingProducer::default());
    let settings = SchedulerSettings {
        fire_concurrency: 64,
        ..SchedulerSettings::default()
    };
    let t = TestService::new(settings, producer.clone());
    let svc = t.svc.clone();
    // Every job due at the same moment, 20 ms from now.
    let spec = t.spec(20);
    let firing_loop = FiringLoop::start(&svc, t.firings);
    let ids: HashSet<JobId> = create_all(&svc, spec, JOBS).await.into_iter().collect();
    assert!(producer.runs().is_empty(), "nothing is due yet");
    // All fall due together.
    t.clock.advance(chrono::Duration::milliseconds(20));
    // A liveness bound, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), async {
        while producer.runs().len() < JOBS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every job fires");
    let fired = producer.runs();
    assert_eq!(fired.len(), JOBS, "each once");
    assert_eq!(fired.into_iter().collect::<HashSet<_>>(), ids);
    firing_loop.drain_and_stop().await;
    assert!(
        svc.inner
            .db
            .with_pending_events(10)
            .await
            .unwrap()
            .found
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_its_claim_slot_back_before_its_delivery() {
    let producer = Arc::new(RecordingProducer::default());
    // 4 claim slots, batches of up to 4, 16 firings in flight at most.
    let settings = SchedulerSettings {
        fire_concurrency: 16,
        ..SchedulerSettings::default()
    };
    let t = TestService::new(settings, producer.clone());
    let svc = t.svc.clone();
    let first: Vec<JobId> = create_all(&svc, t.spec(20), BATCHES_IN_FLIGHT).await;
    let second: Vec<JobId> = create_all(&svc, t.spec(40), BATCHES_IN_FLIGHT).await;
    let firing_loop = FiringLoop::start(&svc, t.firings);
    // A slow broker: every delivery waits in its publishes.
    producer.hold(true);
    // The first jobs fall due one by one into batches of one, a slot each.
    t.clock.advance(chrono::Duration::milliseconds(20));
    wait_until_running(&svc, &first).await;
    // Their deliveries still wait; the next jobs are claimed all the same.
    t.clock.advance(chrono::Duration::milliseconds(20));
    wait_until_running(&svc, &second).await;
    assert!(producer.runs().is_empty(), "no delivery has ended");
    producer.hold(false);
    firing_loop.drain_and_stop().await;
    let fired: HashSet<JobId> = producer.runs().into_iter().collect();
    assert_eq!(fired, first.iter().chain(&second).copied().collect());
    assert_eq!(producer.runs().len(), 2 * BATCHES_IN_FLIGHT, "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_gives_its_place_back_once_published_before_its_clear() {
    let producer = Arc::new(RecordingProducer::default());
    let memory = Arc::new(MemoryJobDB::new());
    // 4 places in all: 4 claim slots, batches of one.
    let settings = SchedulerSettings {
        fire_concurrency: BATCHES_IN_FLIGHT,
        ..SchedulerSettings::default()
    };
    let t = TestService::on(memory.clone(), settings, producer.clone());
    let svc = t.svc.clone();
    let first = create_all(&svc, t.spec(20), BATCHES_IN_FLIGHT).await;
    let second = create_all(&svc, t.spec(40), BATCHES_IN_FLIGHT).await;
    let firing_loop = FiringLoop::start(&svc, t.firings);
    // From now on no outbox clear ends: the first jobs' deliveries stay
    // in their clears, every place taken if a place lasted until then.
    memory.hold_clears(true);
    t.clock.advance(chrono::Duration::milliseconds(20));
    wait_until_published(&producer, BATCHES_IN_FLIGHT).await;
    t.clock.advance(chrono::Duration::milliseconds(20));
    wait_until_published(&producer, 2 * BATCHES_IN_FLIGHT).await;
    memory.hold_clears(false);
    firing_loop.drain_and_stop().await;
    let fired: HashSet<JobId> = producer.runs().into_iter().collect();
    assert_eq!(fired, first.iter().chain(&second).copied().collect());
    let owing = svc.inner.db.with_pending_events(10).await.unwrap().found;
    assert!(owing.is_empty(), "every clear went once released");
}

/// Waits until `runs` run events are published; a liveness bound, not a
/// timing assertion.
async fn wait_until_published(producer: &RecordingProducer, runs: usize) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while producer.runs().len() < runs {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("published");
}

/// A service's firing loop, spawned for a test of its batches.
struct FiringLoop {
    task: tokio::task::JoinHandle<()>,
    in_flight: TaskTracker,
    shutdown: CancellationToken,
}

impl FiringLoop {
    /// Spawns `svc`'s firing loop on the timer's `firings`.
    fn start(svc: &JobService, firings: UnboundedReceiver<Firing>) -> Self {
        let in_flight = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(svc.clone().run_firing(
            firings,
            in_flight.clone(),
            shutdown.clone(),
        ));
        FiringLoop {
            task,
            in_flight,
            shutdown,
        }
    }

    /// Waits for the batches in flight to end (a liveness bound, not a
    /// timing assertion), then stops the loop.
    async fn drain_and_stop(self) {
        self.in_flight.close();
        tokio::time::timeout(Duration::from_secs(60), self.in_flight.wait())
            .await
            .expect("the deliveries end");
        self.shutdown.cancel();
        self.task.abort();
    }
}

/// Creates `n` jobs of `spec`; their ids.
async fn create_all(svc: &JobService, spec: crate::domain::JobSpec, n: usize) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(svc.create(spec.clone()).await.unwrap().id);
    }
    ids
}

/// Waits until every job of `ids` is RUNNING (claimed); a liveness bound,
/// not a timing assertion.
async fn wait_until_running(svc: &JobService, ids: &[JobId]) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let mut running = 0;
            for id in ids {
                if svc.get(*id).await.unwrap().status == JobStatus::Running {
                    running += 1;
                }
            }
            if running == ids.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every job is claimed");
}
