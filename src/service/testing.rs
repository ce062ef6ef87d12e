//! What the service's unit tests share: a producer that records events and
//! can be switched off (the broker down), and services over the in-memory
//! store.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::JobService;
use crate::{
    broker::{BrokerError, EventKind, JobsProducer, NullProducer},
    config::SchedulerSettings,
    domain::{Job, JobId, JobSpec, JobStatus, JobType, now},
    store::memory::MemoryJobDB,
    telemetry::metrics::Metrics,
    timer::{Firing, Timer},
};

/// A producer that records events and can be switched off (broker down).
#[derive(Default)]
pub(crate) struct RecordingProducer {
    events: Mutex<Vec<(EventKind, JobId, JobStatus)>>,
    down: AtomicBool,
}

impl RecordingProducer {
    /// Makes every publish fail (broker down) or succeed again.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every event published so far: its kind, job and the job's status.
    pub(crate) fn events(&self) -> Vec<(EventKind, JobId, JobStatus)> {
        self.events.lock().expect("events lock").clone()
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

/// A job spec due `in_ms` milliseconds from now.
pub(crate) fn spec(in_ms: i64) -> JobSpec {
    JobSpec {
        name: "n".into(),
        description: String::new(),
        schedule_time: now() + chrono::Duration::milliseconds(in_ms),
        job_type: JobType::Email,
        job_data: "{}".into(),
    }
}

/// A service over a fresh in-memory store, and its timer's firings.
pub(crate) fn service_with(
    settings: SchedulerSettings,
    producer: Arc<dyn JobsProducer>,
) -> (JobService, UnboundedReceiver<Firing>) {
    service_on(Arc::new(MemoryJobDB::new()), settings, producer)
}

/// A service over `db`, and its timer's firings.
pub(crate) fn service_on(
    db: Arc<MemoryJobDB>,
    settings: SchedulerSettings,
    producer: Arc<dyn JobsProducer>,
) -> (JobService, UnboundedReceiver<Firing>) {
    let (timer, rx) = Timer::start(CancellationToken::new());
    (
        JobService::new(db, producer, timer, settings, Metrics::new()),
        rx,
    )
}

/// A service with this look-ahead window that publishes nowhere.
pub(crate) fn service(look_ahead: Duration) -> (JobService, UnboundedReceiver<Firing>) {
    let settings = SchedulerSettings {
        look_ahead,
        ..SchedulerSettings::default()
    };
    service_with(settings, Arc::new(NullProducer))
}

/// The next `n` firings the timer emits.
pub(crate) async fn firings(rx: &mut UnboundedReceiver<Firing>, n: usize) -> Vec<Firing> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(rx.recv().await.expect("the timer runs"));
    }
    out
}
