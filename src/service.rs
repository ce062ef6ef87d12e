//! The scheduler's logic: job CRUD, firing, run results and event delivery,
//! written against the [`JobDB`] and [`JobsProducer`] traits and the
//! [`Timer`]. The gRPC layer and the Kafka consumer are thin adapters onto
//! [`JobService`]; [`crate::background`] runs its periodic duties.
//!
//! Three rules make it safe to run several replicas and to crash anywhere:
//! - The store is the source of truth and the timer a cache of it. A firing
//!   claims its job in the store (one conditional update on status and fire
//!   token) before anything is published, so a stale timer entry, a deleted
//!   job or another replica's firing never publishes twice.
//! - Every change records the event it owes in the same atomic write (the
//!   outbox inside the job). Delivery publishes owed events in order and then
//!   clears them only if the job did not change meanwhile, so an event is
//!   never lost; after a crash or broker outage the relay publishes it (at
//!   least once; the firing key lets consumers drop duplicates).
//! - Every write that depends on a read is conditional on the version read.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    broker::{EventKind, JobsProducer},
    config::{MisfirePolicy, RunTimeoutPolicy, SchedulerSettings},
    domain::{
        Error, Job, JobId, JobSpec, JobStatus, PageRequest, PendingEvents, ResultStatus, now,
    },
    store::{DueJob, JobDB, JobsPage, ResultOutcome},
    telemetry::{
        metrics::{FailReason, Metrics},
        propagation::{current_traceparent, set_parent_from_traceparent},
    },
    timer::{Firing, Timer},
};

/// How many times an update is retried when the job changes under it.
const UPDATE_ATTEMPTS: usize = 3;
/// First and largest delay between retries of a claim.
pub(crate) const RETRY_FIRST: Duration = Duration::from_millis(100);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(10);

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
    metrics: Arc<Metrics>,
    /// Wakes the outbox relay when a delivery failed.
    relay_wake: Notify,
}

/// The result of trying to publish a job's owed events.
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

impl JobService {
    /// A service over these components, counting into `metrics`.
    pub fn new(
        db: Arc<dyn JobDB>,
        producer: Arc<dyn JobsProducer>,
        timer: Timer,
        settings: SchedulerSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        JobService {
            inner: Arc::new(Inner {
                db,
                producer,
                timer,
                settings,
                metrics,
                relay_wake: Notify::new(),
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

    /// The instruments this service counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The store.
    pub(crate) fn db(&self) -> &dyn JobDB {
        self.inner.db.as_ref()
    }

    /// Resolves when a delivery failed and the relay should try at once.
    pub(crate) async fn relay_woken(&self) {
        self.inner.relay_wake.notified().await;
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
                .arm(job.id, job.spec.schedule_time, job.fire_token);
        } else {
            self.inner.timer.cancel(&job.id);
        }
    }

    /// Stores a new SCHEDULED job, arms it and publishes its create event.
    /// The job is stored once this returns, even if the broker is down: its
    /// event is then published by the relay when the broker is back.
    #[tracing::instrument(skip_all, fields(job_id))]
    pub async fn create(&self, spec: JobSpec) -> Result<Job, Error> {
        let job = Job {
            // The job's firing, run and result join the trace of this call.
            trace_parent: current_traceparent(),
            ..Job::new_scheduled(spec.validated()?, now())
        };
        tracing::Span::current().record("job_id", tracing::field::display(job.id));
        self.inner.db.insert(&job).await?;
        self.arm(&job);
        self.inner.metrics.job_created();
        tracing::info!(schedule_time = %job.spec.schedule_time, "job created");
        self.deliver(&job).await;
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
            let mut updated = current.rescheduled(spec.clone(), now());
            // What happens next to the job follows from this call.
            if let Some(trace_parent) = current_traceparent() {
                updated.trace_parent = Some(trace_parent);
            }
            if self.inner.db.replace_if(&updated, current.version).await? {
                self.arm(&updated);
                tracing::info!(schedule_time = %updated.spec.schedule_time, "job updated");
                self.deliver(&updated).await;
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
            ResultOutcome::Stored => {
                match result {
                    ResultStatus::Succeeded => self.inner.metrics.job_succeeded(),
                    ResultStatus::Failed => self.inner.metrics.job_failed(FailReason::Result),
                }
                self.inner.metrics.result_consumed();
                tracing::info!("run result stored");
            }
            ResultOutcome::Duplicate => {
                self.inner.metrics.result_consumed();
                tracing::debug!("duplicate run result ignored");
            }
            ResultOutcome::Ignored(status) => {
                self.inner.metrics.result_skipped("not_running");
                tracing::warn!(?status, "run result for a job that is not running ignored");
            }
            ResultOutcome::UnknownJob => {
                self.inner.metrics.result_skipped("unknown_job");
                tracing::warn!("run result for an unknown job ignored");
            }
        }
        Ok(outcome)
    }

    /// Fires a batch of due jobs. Each job too late under the misfire policy
    /// is handled on its own; the others are claimed in the store in one call
    /// (retried with backoff while the store is unreachable, until it
    /// succeeds or shutdown, leaving out jobs armed again meanwhile: their
    /// new arming fires them). The claimed jobs' events are then published,
    /// jobs concurrently and each job's in order, and the outbox entries of
    /// those published are cleared in one call.
    ///
    /// Batching is what lets a store keep up when many jobs fall due
    /// together: one statement (one commit) claims the batch, and one more
    /// clears it, instead of two per job.
    #[tracing::instrument(skip_all, fields(jobs = firings.len()))]
    pub async fn fire_batch(&self, firings: Vec<Firing>, shutdown: &CancellationToken) {
        let mut to_claim = Vec::with_capacity(firings.len());
        let mut misfired = Vec::new();
        for firing in firings {
            match self.too_late(&firing) {
                Some(late) => misfired.push(self.skip_misfire(firing, late, shutdown)),
                None => to_claim.push(firing),
            }
        }
        // Misfires are rare (after downtime) and each is a read and a
        // conditional write; they proceed alongside the batch's claim.
        let ((), ()) = futures::join!(
            async {
                futures::future::join_all(misfired).await;
            },
            self.claim_and_deliver(to_claim, shutdown)
        );
    }

    /// How late `firing` is, if the misfire policy says it must not run.
    fn too_late(&self, firing: &Firing) -> Option<Duration> {
        let MisfirePolicy::SkipIfLaterThan(limit) = self.inner.settings.misfire else {
            return None;
        };
        let late = (Utc::now() - firing.due()).to_std().unwrap_or_default();
        (late > limit).then_some(late)
    }

    /// The claim and delivery of [`JobService::fire_batch`]. Claims that
    /// fail are retried with backoff; the jobs claimed meanwhile (a store
    /// that claims job by job can fail part of a batch) are delivered at once.
    async fn claim_and_deliver(&self, mut firings: Vec<Firing>, shutdown: &CancellationToken) {
        let mut delay = RETRY_FIRST;
        while !firings.is_empty() {
            let keys: Vec<(JobId, i64)> = firings.iter().map(|f| (f.id, f.fire_token)).collect();
            let (claimed, failed) = match self.inner.db.claim_many(&keys, now()).await {
                Ok(claimed) => (claimed, Vec::new()),
                Err(err) => {
                    tracing::warn!(error = %err.error, failed = err.failed.len(), jobs = firings.len(), retry_in = ?delay, "claims failed, retrying them");
                    (err.claimed, err.failed)
                }
            };
            let failed: HashSet<(JobId, i64)> = failed.into_iter().collect();
            let (retry, answered): (Vec<Firing>, Vec<Firing>) = firings
                .into_iter()
                .partition(|f| failed.contains(&(f.id, f.fire_token)));
            self.deliver_claimed(answered, claimed).await;
            firings = retry;
            if firings.is_empty() || !self.backoff(&mut delay, shutdown).await {
                return;
            }
            // A job armed again meanwhile (updated, or re-armed by the
            // loader) fires from its new arming; claiming it here too would
            // only race that firing.
            firings.retain(|f| !self.inner.timer.is_armed(&f.id));
        }
    }

    /// Delivers the jobs a claim of `answered` returned. What the store did
    /// not claim was lost (deleted, updated, fired by another replica); what
    /// it claimed was asked for, under the same fire token.
    async fn deliver_claimed(&self, answered: Vec<Firing>, claimed: Vec<Job>) {
        let mut asked: HashMap<(JobId, i64), Firing> = answered
            .into_iter()
            .map(|f| ((f.id, f.fire_token), f))
            .collect();
        let now_ms = Utc::now().timestamp_millis();
        let fired: Vec<(Job, i64)> = claimed
            .into_iter()
            .map(|job| {
                let due_ms = asked
                    .remove(&(job.id, job.fire_token))
                    .map_or(now_ms, |f| f.due_ms);
                (job, now_ms - due_ms)
            })
            .collect();
        let lost: Vec<_> = asked
            .into_values()
            .map(|f| self.rearm_if_stale(f))
            .collect();
        let ((), ()) = futures::join!(
            async {
                futures::future::join_all(lost).await;
            },
            self.deliver_fired(fired)
        );
    }

    /// Publishes what `job` still owes on behalf of the outbox relay, in the
    /// job's trace.
    pub async fn relay(&self, job: &Job) -> Delivery {
        self.deliver(job)
            .instrument(job_span("relay events", job))
            .await
    }

    /// Sleeps `delay` before a retry and doubles it; false on shutdown (the
    /// retry must not happen).
    async fn backoff(&self, delay: &mut Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(RETRY_MAX);
        true
    }

    /// Marks a job that is too late under the misfire policy as FAILED
    /// instead of running it (only if it is still SCHEDULED under this token).
    async fn skip_misfire(&self, firing: Firing, late: Duration, shutdown: &CancellationToken) {
        let mut delay = RETRY_FIRST;
        loop {
            let outcome = async {
                let Some(job) = self.inner.db.get(firing.id).await? else {
                    return Ok(None);
                };
                if job.status != JobStatus::Scheduled || job.fire_token != firing.fire_token {
                    return Ok(None);
                }
                let failed = job.with_status(JobStatus::Failed, now());
                let written = self.inner.db.replace_if(&failed, job.version).await?;
                Ok::<_, crate::store::StoreError>(written.then_some(failed))
            }
            .await;
            match outcome {
                Ok(Some(failed)) => {
                    self.inner.metrics.job_failed(FailReason::Misfire);
                    let span = job_span("misfire", &failed);
                    span.in_scope(|| {
                        tracing::warn!(late = ?late, "misfire: job too late, marked FAILED");
                    });
                    self.deliver(&failed).instrument(span).await;
                    return;
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(job_id = %firing.id, error = %err, retry_in = ?delay, "misfire handling failed, retrying");
                    if !self.backoff(&mut delay, shutdown).await
                        || self.inner.timer.is_armed(&firing.id)
                    {
                        return;
                    }
                }
            }
        }
    }

    /// After a lost claim: if the job is still SCHEDULED under a newer fire
    /// token that the timer does not hold (two updates raced to arm it), arm
    /// the current token so that the job is not left unarmed.
    async fn rearm_if_stale(&self, firing: Firing) {
        if let Ok(Some(job)) = self.inner.db.get(firing.id).await
            && job.status == JobStatus::Scheduled
            && job.fire_token != firing.fire_token
        {
            self.inner
                .timer
                .arm_if_vacant(job.id, job.spec.schedule_time, job.fire_token);
        }
    }

    /// Publishes the events `job` owes, in the order create, update, run,
    /// then clears them in the store if the job is still at this version.
    /// Never fails: what cannot be published now stays owed for the relay.
    pub async fn deliver(&self, job: &Job) -> Delivery {
        if !self.publish_owed(job).await {
            return Delivery::Deferred;
        }
        match self
            .inner
            .db
            .set_pending_if(job.id, job.version, PendingEvents::NONE)
            .await
        {
            Ok(true) => Delivery::Delivered,
            Ok(false) => Delivery::Superseded,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "published, but the outbox entry stays; it will be published again");
                Delivery::Deferred
            }
        }
    }

    /// Delivers just-fired jobs (each with its lateness in ms) as
    /// [`JobService::deliver`] does each: counts each firing and publishes
    /// its owed events in a span that joins the job's trace (jobs
    /// concurrently, each job's events in order), then clears the outbox
    /// entries of those published in one call, each only if its job is still
    /// at the version published.
    async fn deliver_fired(&self, fired: Vec<(Job, i64)>) {
        let published: Vec<(JobId, i64)> =
            futures::future::join_all(fired.iter().map(|(job, lateness_ms)| {
                self.inner.metrics.job_fired(*lateness_ms);
                async move {
                    tracing::info!(lateness_ms, "job fired");
                    self.publish_owed(job)
                        .await
                        .then_some((job.id, job.version))
                }
                .instrument(job_span("fire job", job))
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        if published.is_empty() {
            return;
        }
        match self.inner.db.clear_pending_many(&published).await {
            // A job not cleared changed after its claim (a result, a run
            // timeout): its newer state owes its own events, which stay.
            Ok(cleared) => tracing::debug!(
                published = published.len(),
                cleared = cleared.len(),
                "outbox entries cleared"
            ),
            Err(err) => {
                tracing::warn!(jobs = published.len(), error = %err,
                    "published, but the outbox entries stay; they will be published again");
            }
        }
    }

    /// Publishes the events `job` owes, in the order create, update, run.
    /// False if one could not be published: it and those after it stay owed,
    /// and the relay is woken to retry.
    async fn publish_owed(&self, job: &Job) -> bool {
        let owed = [
            (job.pending.create, EventKind::Create),
            (job.pending.update, EventKind::Update),
            (job.pending.run, EventKind::Run),
        ];
        for kind in owed.iter().filter(|(owed, _)| *owed).map(|(_, kind)| *kind) {
            if let Err(err) = self.inner.producer.publish(kind, job).await {
                tracing::warn!(job_id = %job.id, kind = kind.as_str(), error = %err,
                    "event not published; it stays in the outbox");
                self.inner.relay_wake.notify_one();
                return false;
            }
        }
        true
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
                .arm_if_vacant(job.id, job.schedule_time, job.fire_token);
        }
        Ok(count)
    }

    /// Applies the run-timeout policy to jobs RUNNING for longer than the run
    /// timeout. Returns how many jobs it changed.
    pub async fn expire_stuck_runs(&self) -> Result<usize, Error> {
        let timeout = chrono::Duration::from_std(self.inner.settings.run_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let stuck = self.inner.db.running_before(now() - timeout).await?;
        let mut changed = 0;
        for job in stuck {
            let next = match self.inner.settings.run_timeout_policy {
                RunTimeoutPolicy::Fail => job.with_status(JobStatus::Failed, now()),
                RunTimeoutPolicy::Retry => job.retried(now()),
            };
            // Conditional on the version: a result that arrived meanwhile wins.
            if self.inner.db.replace_if(&next, job.version).await? {
                if next.status == JobStatus::Failed {
                    self.inner.metrics.job_failed(FailReason::RunTimeout);
                }
                let span = job_span("run timed out", &next);
                span.in_scope(|| tracing::warn!(status = ?next.status, "run timed out"));
                self.arm(&next);
                self.deliver(&next).instrument(span).await;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// A span for work on `job` outside any call (a firing, the relay, the
/// sweeper), joined to the trace of the call that last scheduled the job.
fn job_span(name: &'static str, job: &Job) -> tracing::Span {
    let span = tracing::info_span!("job", otel.name = name, job_id = %job.id);
    set_parent_from_traceparent(&span, job.trace_parent.as_deref());
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        broker::{BrokerError, NullProducer},
        domain::JobType,
        store::memory::MemoryJobDB,
    };
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// A producer that records events and can be switched off (broker down).
    #[derive(Default)]
    struct RecordingProducer {
        events: Mutex<Vec<(EventKind, JobId, JobStatus)>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl RecordingProducer {
        /// Makes every publish fail (broker down) or succeed again.
        fn set_down(&self, down: bool) {
            self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl JobsProducer for RecordingProducer {
        async fn publish(&self, kind: EventKind, job: &Job) -> Result<(), BrokerError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(BrokerError::Unavailable("down".into()));
            }
            self.events.lock().unwrap().push((kind, job.id, job.status));
            Ok(())
        }

        async fn flush(&self, _timeout: Duration) -> Result<(), BrokerError> {
            Ok(())
        }
    }

    fn spec(in_ms: i64) -> JobSpec {
        JobSpec {
            name: "n".into(),
            description: String::new(),
            schedule_time: now() + chrono::Duration::milliseconds(in_ms),
            job_type: JobType::Email,
            job_data: "{}".into(),
        }
    }

    fn service_with(
        settings: SchedulerSettings,
        producer: Arc<dyn JobsProducer>,
    ) -> (JobService, tokio::sync::mpsc::UnboundedReceiver<Firing>) {
        service_on(Arc::new(MemoryJobDB::new()), settings, producer)
    }

    fn service_on(
        db: Arc<MemoryJobDB>,
        settings: SchedulerSettings,
        producer: Arc<dyn JobsProducer>,
    ) -> (JobService, tokio::sync::mpsc::UnboundedReceiver<Firing>) {
        let (timer, rx) = Timer::start(CancellationToken::new());
        (
            JobService::new(db, producer, timer, settings, Metrics::new()),
            rx,
        )
    }

    fn service(look_ahead: Duration) -> (JobService, tokio::sync::mpsc::UnboundedReceiver<Firing>) {
        let settings = SchedulerSettings {
            look_ahead,
            ..SchedulerSettings::default()
        };
        service_with(settings, Arc::new(NullProducer))
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
        svc.fire_batch(vec![firing], &shutdown).await;
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
        svc.fire_batch(vec![firing], &shutdown).await;
        assert_eq!(svc.get(job.id).await.unwrap().status, JobStatus::Scheduled);
    }

    /// The next `n` firings the timer emits.
    async fn firings(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<Firing>,
        n: usize,
    ) -> Vec<Firing> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(rx.recv().await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_partly_failed_batch_delivers_its_claims_at_once_and_retries_the_rest() {
        let producer = Arc::new(RecordingProducer::default());
        let db = Arc::new(MemoryJobDB::new());
        let (svc, mut rx) = service_on(db.clone(), SchedulerSettings::default(), producer.clone());
        let mut jobs = Vec::new();
        for _ in 0..3 {
            jobs.push(svc.create(spec(-1)).await.unwrap());
        }
        let batch = firings(&mut rx, 3).await;
        // The middle job's claim fails twice (say, a connection dropped).
        db.fail_next_claims(jobs[1].id, 2);
        svc.fire_batch(batch, &CancellationToken::new()).await;

        let runs: Vec<JobId> = producer
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == EventKind::Run)
            .map(|e| e.1)
            .collect();
        // Each job ran once; the two claimed at the first try were published
        // before the retried one, not left for the relay.
        assert_eq!(runs.len(), 3, "{runs:?}");
        assert_eq!(runs[2], jobs[1].id, "{runs:?}");
        for job in &jobs {
            let stored = svc.get(job.id).await.unwrap();
            assert_eq!(stored.status, JobStatus::Running);
            assert!(!stored.pending.any(), "outbox cleared: {stored:?}");
        }
    }

    #[tokio::test]
    async fn a_batch_claims_what_it_can_and_delivers_each_job_in_order() {
        let producer = Arc::new(RecordingProducer::default());
        let (svc, mut rx) = service_with(SchedulerSettings::default(), producer.clone());
        // Created while the broker is down: each job owes create, then run.
        producer.set_down(true);
        let mut jobs = Vec::new();
        for _ in 0..5 {
            jobs.push(svc.create(spec(-1)).await.unwrap());
        }
        producer.set_down(false);
        let mut batch = firings(&mut rx, 5).await;
        // One job deleted and one claimed already (another replica): the
        // batch claims the other three.
        svc.delete(jobs[3].id).await.unwrap();
        let other = svc
            .db()
            .claim(jobs[4].id, jobs[4].fire_token, now())
            .await
            .unwrap()
            .unwrap();
        // A stale firing of a job already in the batch claims nothing more.
        batch.push(Firing {
            fire_token: jobs[0].fire_token ^ 1,
            ..batch[0]
        });
        svc.fire_batch(batch, &CancellationToken::new()).await;

        let events = producer.events.lock().unwrap().clone();
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
        let producer = Arc::new(RecordingProducer::default());
        let (svc, mut rx) = service_with(SchedulerSettings::default(), producer.clone());
        let a = svc.create(spec(-1)).await.unwrap();
        let b = svc.create(spec(-1)).await.unwrap();
        producer.set_down(true);
        svc.fire_batch(firings(&mut rx, 2).await, &CancellationToken::new())
            .await;
        for id in [a.id, b.id] {
            let stored = svc.get(id).await.unwrap();
            assert_eq!(stored.status, JobStatus::Running);
            assert!(stored.pending.run && !stored.pending.create, "{stored:?}");
        }
        assert_eq!(svc.db().with_pending_events(10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn too_late_jobs_are_skipped_and_the_rest_fire_alone_or_batched() {
        for batched in [false, true] {
            let producer = Arc::new(RecordingProducer::default());
            let settings = SchedulerSettings {
                misfire: MisfirePolicy::SkipIfLaterThan(Duration::from_secs(5)),
                ..SchedulerSettings::default()
            };
            let (svc, mut rx) = service_with(settings, producer.clone());
            let late = svc.create(spec(-60_000)).await.unwrap();
            let recent = svc.create(spec(-1_000)).await.unwrap();
            let due = firings(&mut rx, 2).await;
            if batched {
                svc.fire_batch(due, &CancellationToken::new()).await;
            } else {
                for firing in due {
                    svc.fire_batch(vec![firing], &CancellationToken::new())
                        .await;
                }
            }
            assert_eq!(svc.get(late.id).await.unwrap().status, JobStatus::Failed);
            assert_eq!(svc.get(recent.id).await.unwrap().status, JobStatus::Running);
            let events = producer.events.lock().unwrap().clone();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_firing_loop_fires_every_job_once_in_batches() {
        const JOBS: usize = 2_000;
        let producer = Arc::new(RecordingProducer::default());
        let settings = SchedulerSettings {
            fire_concurrency: 64,
            ..SchedulerSettings::default()
        };
        let (svc, rx) = service_with(settings, producer.clone());
        let shutdown = CancellationToken::new();
        let tasks = tokio_util::task::TaskTracker::new();
        let firing_loop =
            crate::background::spawn_firing_loop(svc.clone(), rx, tasks.clone(), shutdown.clone());
        let mut ids = HashSet::new();
        for _ in 0..JOBS {
            ids.insert(svc.create(spec(20)).await.unwrap().id);
        }
        let runs = || {
            producer
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.0 == EventKind::Run)
                .map(|e| e.1)
                .collect::<Vec<JobId>>()
        };
        // A liveness bound, not a timing assertion: the jobs are due at once.
        tokio::time::timeout(Duration::from_secs(60), async {
            while runs().len() < JOBS {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("every job fires");
        let fired = runs();
        assert_eq!(fired.len(), JOBS, "each once");
        assert_eq!(fired.into_iter().collect::<HashSet<_>>(), ids);
        assert!(svc.db().with_pending_events(10).await.unwrap().is_empty());
        shutdown.cancel();
        firing_loop.abort();
        tasks.close();
        tasks.wait().await;
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

    #[tokio::test]
    async fn events_owed_while_the_broker_is_down_stay_in_the_outbox_in_order() {
        let producer = Arc::new(RecordingProducer::default());
        let (svc, mut rx) = service_with(SchedulerSettings::default(), producer.clone());
        producer.set_down(true);
        let job = svc.create(spec(-1)).await.unwrap();
        svc.fire_batch(vec![rx.recv().await.unwrap()], &CancellationToken::new())
            .await;
        let stored = svc.get(job.id).await.unwrap();
        assert_eq!(stored.status, JobStatus::Running);
        assert!(stored.pending.create && stored.pending.run, "{stored:?}");
        assert!(producer.events.lock().unwrap().is_empty());

        producer.set_down(false);
        let owing = svc.db().with_pending_events(10).await.unwrap();
        assert_eq!(owing.len(), 1);
        assert_eq!(svc.deliver(&owing[0]).await, Delivery::Delivered);
        let kinds: Vec<EventKind> = producer
            .events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(kinds, [EventKind::Create, EventKind::Run]);
        assert!(!svc.get(job.id).await.unwrap().pending.any());
    }

    #[tokio::test]
    async fn a_delivery_superseded_by_a_change_leaves_the_newer_events_owed() {
        let producer = Arc::new(RecordingProducer::default());
        let (svc, _rx) = service_with(SchedulerSettings::default(), producer.clone());
        producer.set_down(true);
        let created = svc.create(spec(60_000)).await.unwrap();
        svc.update(created.id, spec(70_000)).await.unwrap();
        producer.set_down(false);
        // Delivering the stale snapshot publishes it but must not clear the
        // update owed by the newer version.
        assert_eq!(svc.deliver(&created).await, Delivery::Superseded);
        let stored = svc.get(created.id).await.unwrap();
        assert!(stored.pending.create && stored.pending.update);
        assert_eq!(svc.deliver(&stored).await, Delivery::Delivered);
    }

    #[tokio::test]
    async fn stuck_runs_fail_or_retry_by_policy() {
        for (policy, expected) in [
            (RunTimeoutPolicy::Fail, JobStatus::Failed),
            (RunTimeoutPolicy::Retry, JobStatus::Scheduled),
        ] {
            let producer = Arc::new(RecordingProducer::default());
            let settings = SchedulerSettings {
                run_timeout: Duration::from_millis(50),
                run_timeout_policy: policy,
                ..SchedulerSettings::default()
            };
            let (svc, mut rx) = service_with(settings, producer.clone());
            let job = svc.create(spec(-1)).await.unwrap();
            let firing = rx.recv().await.unwrap();
            svc.fire_batch(vec![firing], &CancellationToken::new())
                .await;
            assert_eq!(svc.expire_stuck_runs().await.unwrap(), 0, "not yet stuck");
            tokio::time::sleep(Duration::from_millis(80)).await;
            assert_eq!(svc.expire_stuck_runs().await.unwrap(), 1);
            let after = svc.get(job.id).await.unwrap();
            assert_eq!(after.status, expected);
            assert!(producer.events.lock().unwrap().contains(&(
                EventKind::Update,
                job.id,
                expected
            )));
            if policy == RunTimeoutPolicy::Retry {
                assert_ne!(after.fire_token, firing.fire_token);
                let refired = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("the retried job fires again")
                    .expect("timer running");
                assert_eq!((refired.id, refired.fire_token), (job.id, after.fire_token));
            }
        }
    }
}
