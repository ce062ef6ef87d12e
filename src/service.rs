//! The scheduler's logic: job CRUD, firing, and run results, written against
//! the [`JobDB`] and [`JobsProducer`] traits and the [`Timer`]. The gRPC layer
//! and the Kafka consumer are thin adapters onto [`JobService`].
//!
//! The store is the source of truth and the timer a cache of it: the timer
//! holds only the jobs due within the look-ahead window, a loader refills it
//! from the store as time advances, and a firing claims its job in the store
//! (one conditional update) before publishing, so that a stale timer entry,
//! a deleted job or another replica's firing can never publish twice.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::{sync::Semaphore, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    broker::{EventKind, JobsProducer},
    config::SchedulerSettings,
    domain::{Error, Job, JobId, JobSpec, JobStatus, PageRequest, ResultStatus, now},
    store::{DueJob, JobDB, JobsPage, ResultOutcome},
    timer::{Firing, Timer},
};

/// How many times an update is retried when the job changes under it.
const UPDATE_ATTEMPTS: usize = 3;
/// First and largest delay between retries of a firing or a publish.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The scheduler service; cheap to clone.
#[derive(Clone)]
pub struct JobService {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<dyn JobDB>,
    producer: Arc<dyn JobsProducer>,
    timer: Timer,
    settings: SchedulerSettings,
}

impl JobService {
    /// A service over these components.
    pub fn new(
        db: Arc<dyn JobDB>,
        producer: Arc<dyn JobsProducer>,
        timer: Timer,
        settings: SchedulerSettings,
    ) -> Self {
        JobService {
            inner: Arc::new(Inner {
                db,
                producer,
                timer,
                settings,
            }),
        }
    }

    /// The settings of the scheduling core.
    pub fn settings(&self) -> &SchedulerSettings {
        &self.inner.settings
    }

    /// The timer (for metrics and tests).
    pub fn timer(&self) -> &Timer {
        &self.inner.timer
    }

    /// The end of the look-ahead window: jobs due before it are armed.
    fn horizon(&self) -> DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.inner.settings.look_ahead)
                .unwrap_or(chrono::Duration::MAX)
    }

    /// Arms a SCHEDULED job if it is due within the window, else disarms it
    /// (the loader arms it when the window reaches it).
    fn arm(&self, job: &Job) {
        if job.status == JobStatus::Scheduled && job.spec.schedule_time < self.horizon() {
            self.inner
                .timer
                .arm(job.id, job.spec.schedule_time, job.scheduled_key);
        } else {
            self.inner.timer.cancel(&job.id);
        }
    }

    /// Stores a new SCHEDULED job, arms it and publishes its create event.
    #[tracing::instrument(skip_all, fields(job_id))]
    pub async fn create(&self, spec: JobSpec) -> Result<Job, Error> {
        let job = Job::new_scheduled(spec.validated()?, now());
        tracing::Span::current().record("job_id", tracing::field::display(job.id));
        self.inner.db.insert(&job).await?;
        self.arm(&job);
        self.inner.producer.publish(EventKind::Create, &job).await?;
        tracing::info!(schedule_time = %job.spec.schedule_time, "job created");
        Ok(job)
    }

    /// The job with this id.
    pub async fn get(&self, id: JobId) -> Result<Job, Error> {
        self.inner.db.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// One page of jobs, ordered by schedule time then id.
    pub async fn list(&self, page: PageRequest) -> Result<JobsPage, Error> {
        Ok(self.inner.db.list(page).await?)
    }

    /// Replaces the client fields of a job and schedules it again. A RUNNING
    /// job is refused; a finished one is scheduled anew.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn update(&self, id: JobId, spec: JobSpec) -> Result<Job, Error> {
        let spec = spec.validated()?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(id).await?;
            if current.status == JobStatus::Running {
                return Err(Error::FailedPrecondition(format!(
                    "job {id} is running; it can be updated once its result is in"
                )));
            }
            let updated = current.rescheduled(spec.clone(), now());
            if self.inner.db.replace_if(&updated, &current).await? {
                self.arm(&updated);
                self.inner
                    .producer
                    .publish(EventKind::Update, &updated)
                    .await?;
                tracing::info!(schedule_time = %updated.spec.schedule_time, "job updated");
                return Ok(updated);
            }
            // The job changed between our read and our write (fired, updated
            // or deleted meanwhile): read it again and decide afresh.
        }
        Err(Error::Aborted(id))
    }

    /// Deletes a job and disarms it; a deleted job never fires (its claim
    /// finds no document).
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn delete(&self, id: JobId) -> Result<(), Error> {
        if !self.inner.db.delete(id).await? {
            return Err(Error::NotFound(id));
        }
        self.inner.timer.cancel(&id);
        tracing::info!("job deleted");
        Ok(())
    }

    /// Stores an executor's result on a RUNNING job.
    #[tracing::instrument(skip_all, fields(job_id = %id, result = ?result))]
    pub async fn record_result(
        &self,
        id: JobId,
        result: ResultStatus,
    ) -> Result<ResultOutcome, Error> {
        let outcome = self.inner.db.store_result(id, result, now()).await?;
        match outcome {
            ResultOutcome::Stored => tracing::info!("run result stored"),
            ResultOutcome::Duplicate => tracing::debug!("duplicate run result ignored"),
            ResultOutcome::Ignored(status) => {
                tracing::warn!(?status, "run result for a job that is not running ignored")
            }
            ResultOutcome::UnknownJob => tracing::warn!("run result for an unknown job ignored"),
        }
        Ok(outcome)
    }

    /// Fires one due job: claims it in the store, then publishes its run
    /// event. Unavailability of the store or broker is retried with backoff
    /// until it succeeds, the job is re-armed by someone else, or shutdown.
    #[tracing::instrument(skip_all, fields(job_id = %firing.id, due = %firing.due()))]
    pub async fn fire(&self, firing: Firing, shutdown: &CancellationToken) {
        let mut delay = RETRY_FIRST;
        let claimed = loop {
            match self
                .inner
                .db
                .claim(firing.id, firing.scheduled_key, now())
                .await
            {
                Ok(claimed) => break claimed,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "claim failed, retrying");
                    if !self.backoff(&mut delay, &firing, shutdown).await {
                        return;
                    }
                }
            }
        };
        let Some(job) = claimed else {
            self.rearm_if_stale(firing).await;
            return;
        };
        let mut delay = RETRY_FIRST;
        loop {
            match self.inner.producer.publish(EventKind::Run, &job).await {
                Ok(()) => {
                    let lateness_ms = Utc::now().timestamp_millis() - firing.due_ms;
                    tracing::info!(lateness_ms, "job fired");
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "run event not published, retrying");
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Sleeps before a retry of `firing`; false when the retry must not
    /// happen (shutdown, or the job was armed again meanwhile).
    async fn backoff(
        &self,
        delay: &mut Duration,
        firing: &Firing,
        shutdown: &CancellationToken,
    ) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(RETRY_MAX);
        !self.inner.timer.is_armed(&firing.id)
    }

    /// After a lost claim: if the job is still SCHEDULED under a newer fire
    /// token that the timer does not hold (two updates raced to arm it), arm
    /// the current token so that the job is not left unarmed.
    async fn rearm_if_stale(&self, firing: Firing) {
        if let Ok(Some(job)) = self.inner.db.get(firing.id).await
            && job.status == JobStatus::Scheduled
            && job.scheduled_key != firing.scheduled_key
        {
            self.inner
                .timer
                .arm_if_vacant(job.id, job.spec.schedule_time, job.scheduled_key);
        }
    }

    /// Arms every SCHEDULED job due within the look-ahead window that the
    /// timer does not hold yet. Returns how many the store listed.
    pub async fn load_window(&self) -> Result<usize, Error> {
        let due: Vec<DueJob> = self.inner.db.scheduled_before(self.horizon()).await?;
        let count = due.len();
        for job in due {
            // Never override an arming made by create/update meanwhile: it is
            // at least as new as this snapshot.
            self.inner
                .timer
                .arm_if_vacant(job.id, job.schedule_time, job.scheduled_key);
        }
        Ok(count)
    }
}

/// Runs firings as the timer emits them, at most `fire_concurrency` at once.
/// Returns when the timer stops; in-flight firings are tracked by `tasks`.
pub fn spawn_firing_loop(
    service: JobService,
    mut firings: tokio::sync::mpsc::UnboundedReceiver<Firing>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let permits = Arc::new(Semaphore::new(service.settings().fire_concurrency));
    tokio::spawn(async move {
        while let Some(firing) = firings.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let service = service.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                service.fire(firing, &shutdown).await;
                drop(permit);
            });
        }
    })
}

/// Refills the timer from the store every half window (sooner after a
/// failure), so that jobs beyond the window, jobs of a restarted service and
/// jobs another replica created are armed in time.
pub fn spawn_window_loader(service: JobService, shutdown: CancellationToken) -> JoinHandle<()> {
    let period = (service.settings().look_ahead / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut retry = RETRY_FIRST;
        loop {
            let wait = match service.load_window().await {
                Ok(count) => {
                    tracing::debug!(count, armed = service.timer().len(), "window loaded");
                    retry = RETRY_FIRST;
                    period
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?retry, "cannot load due jobs");
                    let wait = retry.min(period);
                    retry = (retry * 2).min(RETRY_MAX);
                    wait
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{broker::NullProducer, domain::JobType, store::memory::MemoryJobDB};

    fn spec(in_ms: i64) -> JobSpec {
        JobSpec {
            name: "n".into(),
            description: String::new(),
            schedule_time: now() + chrono::Duration::milliseconds(in_ms),
            job_type: JobType::Email,
            job_data: "{}".into(),
        }
    }

    fn service(look_ahead: Duration) -> (JobService, tokio::sync::mpsc::UnboundedReceiver<Firing>) {
        let (timer, rx) = Timer::start(CancellationToken::new());
        let settings = SchedulerSettings {
            look_ahead,
            ..SchedulerSettings::default()
        };
        (
            JobService::new(
                Arc::new(MemoryJobDB::new()),
                Arc::new(NullProducer),
                timer,
                settings,
            ),
            rx,
        )
    }

    #[tokio::test]
    async fn jobs_beyond_the_window_are_armed_only_when_it_reaches_them() {
        let (svc, _rx) = service(Duration::from_secs(10));
        let near = svc.create(spec(1_000)).await.unwrap();
        let far = svc.create(spec(60_000)).await.unwrap();
        assert!(svc.timer().is_armed(&near.id));
        assert!(!svc.timer().is_armed(&far.id));
        // Moving the far job into the window arms it; moving it out disarms it.
        svc.update(far.id, spec(2_000)).await.unwrap();
        assert!(svc.timer().is_armed(&far.id));
        svc.update(far.id, spec(60_000)).await.unwrap();
        assert!(!svc.timer().is_armed(&far.id));
    }

    #[tokio::test]
    async fn the_loader_arms_what_the_timer_lost() {
        let (svc, _rx) = service(Duration::from_secs(10));
        let job = svc.create(spec(5_000)).await.unwrap();
        svc.timer().cancel(&job.id);
        assert_eq!(svc.load_window().await.unwrap(), 1);
        assert!(svc.timer().is_armed(&job.id));
    }

    #[tokio::test]
    async fn a_firing_claims_once_and_a_stale_token_claims_nothing() {
        let (svc, mut rx) = service(Duration::from_secs(10));
        let job = svc.create(spec(-1)).await.unwrap();
        let firing = rx.recv().await.unwrap();
        let shutdown = CancellationToken::new();
        svc.fire(firing, &shutdown).await;
        assert_eq!(svc.get(job.id).await.unwrap().status, JobStatus::Running);
        let err = svc.update(job.id, spec(1_000)).await.unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        assert_eq!(
            svc.record_result(job.id, ResultStatus::Succeeded)
                .await
                .unwrap(),
            ResultOutcome::Stored
        );
        assert_eq!(
            svc.record_result(job.id, ResultStatus::Succeeded)
                .await
                .unwrap(),
            ResultOutcome::Duplicate
        );
        // A finished job updated is scheduled again with a new token; the old
        // firing no longer claims it.
        let again = svc.update(job.id, spec(60_000)).await.unwrap();
        assert_eq!(again.status, JobStatus::Scheduled);
        svc.fire(firing, &shutdown).await;
        assert_eq!(svc.get(job.id).await.unwrap().status, JobStatus::Scheduled);
    }

    #[tokio::test]
    async fn a_deleted_job_is_disarmed_and_gone() {
        let (svc, _rx) = service(Duration::from_secs(10));
        let job = svc.create(spec(1_000)).await.unwrap();
        svc.delete(job.id).await.unwrap();
        assert!(!svc.timer().is_armed(&job.id));
        assert!(matches!(svc.delete(job.id).await, Err(Error::NotFound(_))));
        assert!(matches!(svc.get(job.id).await, Err(Error::NotFound(_))));
    }
}
