//! What the service's unit tests share: a producer that records events and
//! can be switched off (the broker down), and services over the in-memory
//! store on a clock that moves only when a test moves it, so that no test
//! depends on how fast the machine runs.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::JobService;
use crate::{
    broker::{BrokerError, EventKind, JobsProducer, NullProducer},
    clock::{Clock, ManualClock},
    config::SchedulerSettings,
    domain::{Job, JobId, JobSpec, JobStatus, JobType},
    store::memory::MemoryJobDB,
    telemetry::metrics::Metrics,
    timer::{Firing, Timer},
};

/// A producer that records events and can be switched off (broker down) or
/// held (a slow broker: publishes wait until released).
#[derive(Default)]
pub(crate) struct RecordingProducer {
    events: Mutex<Vec<(EventKind, JobId, JobStatus)>>,
    down: AtomicBool,
    attempts: AtomicUsize,
    held: tokio::sync::watch::Sender<bool>,
}

impl RecordingProducer {
    /// Makes every publish wait (`true`) until released (`false`).
    pub(crate) fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// Makes every publish fail (broker down) or succeed again.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every event published so far: its kind, job and the job's status.
    pub(crate) fn events(&self) -> Vec<(EventKind, JobId, JobStatus)> {
        self.events.lock().expect("events lock").clone()
    }

    /// How many publishes were tried, successful or not.
    pub(crate) fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// The jobs of the run events published so far, in order.
    pub(crate) fn runs(&self) -> Vec<JobId> {
        self.events()
            .into_iter()
            .filter(|e| e.0 == EventKind::Run)
            .map(|e| e.1)
            .collect()
    }
}

#[async_trait]
impl JobsProducer for RecordingProducer {
    async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let mut held = self.held.subscribe();
        // (The sender lives as long as the producer.)
        let _ = held.wait_for(|held| !held).await;
        if self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("down".into()));
        }
        self.events
            .lock()
            .expect("events lock")
            .push((kind, job.id, job.status));
        Ok(())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BrokerError> {
        Ok(())
    }
}

/// A service over an in-memory store, on a clock that moves only when told.
pub(crate) struct TestService {
    /// The service.
    pub svc: JobService,
    /// Its timer's firings, which the test runs (or a firing loop does).
    pub firings: UnboundedReceiver<Firing>,
    /// The clock of the service and its timer.
    pub clock: ManualClock,
}

impl TestService {
    /// A service over a fresh in-memory store, publishing to `producer`.
    pub(crate) fn new(settings: SchedulerSettings, producer: Arc<dyn JobsProducer>) -> Self {
        TestService::on(Arc::new(MemoryJobDB::new()), settings, producer)
    }

    /// A service over `db`.
    pub(crate) fn on(
        db: Arc<MemoryJobDB>,
        settings: SchedulerSettings,
        producer: Arc<dyn JobsProducer>,
    ) -> Self {
        let clock = ManualClock::at_wall_time();
        let (timer, firings) = Timer::start_with(Arc::new(clock.clone()), CancellationToken::new());
        let svc = JobService::new(db, producer, timer, settings, Metrics::new());
        TestService {
            svc,
            firings,
            clock,
        }
    }

    /// A service with this look-ahead window that publishes nowhere.
    pub(crate) fn with_look_ahead(look_ahead: Duration) -> Self {
        let settings = SchedulerSettings {
            look_ahead,
            ..SchedulerSettings::default()
        };
        TestService::new(settings, Arc::new(NullProducer))
    }

    /// A job spec due `in_ms` milliseconds from the clock's now.
    pub(crate) fn spec(&self, in_ms: i64) -> JobSpec {
        JobSpec {
            name: "n".into(),
            description: String::new(),
            schedule_time: self.clock.now_ms() + chrono::Duration::milliseconds(in_ms),
            job_type: JobType::Email,
            job_data: "{}".into(),
        }
    }

    /// Moves the clock by `ms` milliseconds.
    pub(crate) fn advance_ms(&self, ms: i64) {
        self.clock.advance(chrono::Duration::milliseconds(ms));
    }

    /// The next `n` firings the timer emits.
    pub(crate) async fn next_firings(&mut self, n: usize) -> Vec<Firing> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.firings.recv().await.expect("the timer runs"));
        }
        out
    }
}
