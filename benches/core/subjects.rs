//! The subjects' add phases: each starts its scheduler, adds every job of
//! the input (timed by an [`AddPhase`]) and records the lateness of each
//! firing as it happens. The product (the timer and the firing path), the
//! peer (tokio-cron-scheduler) and the baseline (tokio-util's DelayQueue).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use scheduler_service::{
    broker::{BrokerError, EventKind, JobsProducer, NullProducer},
    config::SchedulerSettings,
    domain::{Job, JobId, JobSpec, JobType, PendingEvents, now},
    service::JobService,
    store::{JobDB, memory::MemoryJobDB},
    telemetry::metrics::Metrics,
    timer::Timer,
};
use tokio::task::JoinHandle;
use tokio_cron_scheduler::{Job as PeerJob, JobScheduler};
use tokio_util::{sync::CancellationToken, task::TaskTracker, time::DelayQueue};

use crate::{
    measure::{AddPhase, Added, Recorder, at_ms},
    support::{now_us, proc::status_kib},
};

/// (a) The bare timer; a task reads firings off its channel.
pub async fn add_timer(offsets: &[i64], lateness: Arc<Recorder>, many: bool) -> Added {
    let shutdown = CancellationToken::new();
    let (timer, mut firings) = Timer::start(shutdown.clone());
    let settled = timer.clone();
    tokio::spawn(async move {
        // Settled as the firing path settles them: what is ready together,
        // under one lock.
        while let Some(first) = firings.recv().await {
            let mut ids = Vec::with_capacity(firings.len() + 1);
            let mut next = Some(first);
            while let Some(firing) = next {
                lateness.record(now_us() - firing.due_ms * 1000);
                ids.push(firing.id);
                next = firings.try_recv().ok();
            }
            settled.settle(ids);
        }
    });
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    if many {
        const CHUNK: usize = 1024;
        for (c, chunk) in offsets.chunks(CHUNK).enumerate() {
            timer.arm_many(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, off)| (JobId::new(), at_ms(t0_ms + off), (c * CHUNK + i) as i64)),
            );
        }
    } else {
        for (i, off) in offsets.iter().enumerate() {
            timer.arm(JobId::new(), at_ms(t0_ms + off), i as i64);
        }
    }
    phase.end((timer, shutdown))
}

/// `NullProducer`, plus the lateness of each run event it is handed.
struct RecordingProducer {
    inner: NullProducer,
    lateness: Arc<Recorder>,
}

#[async_trait]
impl JobsProducer for RecordingProducer {
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        self.inner.publish(kind, job).await?;
        if kind == EventKind::Run {
            // A recurring job's run stands for an occurrence; its schedule
            // time is already the next one's.
            let due = job
                .recurrence
                .as_ref()
                .and_then(|r| r.run.as_ref())
                .map_or(job.spec.schedule_time, |run| run.occurrence);
            self.lateness.record_due(due.timestamp_micros());
        }
        Ok(())
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BrokerError> {
        self.inner.flush(timeout).await
    }
}

/// (b) The firing path: jobs in `MemoryJobDB`, armed in the timer, fired by
/// `JobService::run_firing` (the firing loop, in batches) (claim, publish of the run
/// event through `NullProducer`, then the outbox entry cleared in the store).
pub async fn add_service(
    offsets: &[i64],
    lateness: Arc<Recorder>,
    via_create: bool,
    look_ahead: Duration,
) -> Added {
    let (service, keep) = start_service(lateness, look_ahead);
    let (db, timer) = (keep.db.clone(), service.timer().clone());
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    for off in offsets {
        let due = at_ms(t0_ms + off);
        let spec = JobSpec {
            name: "bench-job".into(),
            description: String::new(),
            schedule_time: due,
            job_type: JobType::Email,
            job_data: "{}".into(),
        };
        if via_create {
            service.create(spec).await.expect("create");
        } else {
            // As a job whose create event was delivered long ago: only its
            // run event is owed when it fires.
            let job = Job {
                pending: PendingEvents::NONE,
                ..Job::new_scheduled(spec, now())
            };
            db.insert(&job).await.expect("insert");
            timer.arm(job.id, due, job.fire_token);
        }
    }
    phase.end((service, keep))
}

/// What keeps a started firing path running: its store, its firing loop
/// and the token that stops it.
pub struct Running {
    pub db: Arc<MemoryJobDB>,
    _firing_loop: JoinHandle<()>,
    _shutdown: CancellationToken,
}

/// A `JobService` on `MemoryJobDB` and `NullProducer`, the lateness of its
/// run events recorded, its firing loop started.
pub fn start_service(lateness: Arc<Recorder>, look_ahead: Duration) -> (JobService, Running) {
    let shutdown = CancellationToken::new();
    let (timer, firings) = Timer::start(shutdown.clone());
    let db = Arc::new(MemoryJobDB::new());
    let producer = Arc::new(RecordingProducer {
        inner: NullProducer,
        lateness,
    });
    let settings = SchedulerSettings {
        look_ahead,
        ..SchedulerSettings::default()
    };
    let service = JobService::new(db.clone(), producer, timer, settings, Metrics::new());
    let tasks = TaskTracker::new();
    let firing_loop = tokio::spawn(service.clone().run_firing(firings, tasks, shutdown.clone()));
    let running = Running {
        db,
        _firing_loop: firing_loop,
        _shutdown: shutdown,
    };
    (service, running)
}

/// The peer: tokio-cron-scheduler one-shot jobs, scheduler started first.
pub async fn add_peer(offsets: &[i64], lateness: Arc<Recorder>, requested: Arc<Recorder>) -> Added {
    let scheduler = JobScheduler::new().await.expect("peer scheduler");
    scheduler.start().await.expect("peer start");
    let phase = AddPhase::begin();
    let t0_ms = phase.t0_ms;
    for off in offsets {
        let due_ms = t0_ms + off;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let wait = Duration::from_millis(
            u64::try_from(due_ms - now.as_millis() as i64).unwrap_or_default(),
        );
        // The peer keeps due times in whole seconds: floor(now) + floor(wait)
        // (JobLocked::make_one_shot_job); it fires at its first 500 ms tick
        // at or after that.
        let promised_us = (now.as_secs() + wait.as_secs()) as i64 * 1_000_000;
        let (lateness, requested) = (lateness.clone(), requested.clone());
        let job = PeerJob::new_one_shot_async(wait, move |_, _| {
            let fired = now_us();
            lateness.record(fired - promised_us);
            requested.record(fired - due_ms * 1000);
            Box::pin(async {})
        })
        .expect("peer job");
        scheduler.add(job).await.expect("peer add");
    }
    phase.end(scheduler)
}

/// The baseline: one task owns a `DelayQueue`, adds every entry, then polls.
pub async fn add_delay_queue(offsets: Arc<[i64]>, lateness: Arc<Recorder>) -> Added {
    let (report, added) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut queue: DelayQueue<i64> = DelayQueue::with_capacity(offsets.len());
        let rss_before_kib = status_kib("self", "VmRSS:");
        let base = tokio::time::Instant::now();
        let base_us = now_us();
        let t0_ms = base_us / 1000;
        let phase = AddPhase::starting(t0_ms, rss_before_kib);
        for off in offsets.iter() {
            let due_ms = t0_ms + off;
            let from_base = u64::try_from(due_ms * 1000 - base_us).unwrap_or_default();
            queue.insert_at(due_ms, base + Duration::from_micros(from_base));
        }
        let _ = report.send(phase.end(()));
        while let Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)).await {
            lateness.record(now_us() - expired.into_inner() * 1000);
        }
    });
    added.await.expect("delay queue task")
}
