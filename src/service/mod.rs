//! The scheduler's logic, written against the [`JobDB`] and [`JobsProducer`]
//! traits and the [`Timer`]: job CRUD and run results here, and one module
//! for each thing that happens to a job after the call that changed it:
//! - [`arming`]: which jobs the in-memory timer holds (the look-ahead window);
//! - [`firing`]: due timer entries claimed in the store, in batches;
//! - [`delivery`]: the events each change owes, published from the outbox;
//! - [`run_timeout`]: runs that never reported a result;
//! - [`retrying`]: failed runs retried or ended for good;
//! - [`retention`]: the run history kept within its bounds.
//!
//! Each job change that ends a run writes the run's record in the same
//! atomic step ([`JobService::write_if`], see [`crate::domain::history`]).
//!
//! The adapters (the gRPC handlers in [`crate::grpc`], the run-result
//! consumer in [`crate::consumer`]) call [`JobService`]; start-up runs its
//! background duties ([`JobService::run_firing`],
//! [`JobService::run_window_loader`], [`JobService::run_relay`],
//! [`JobService::run_timeout_sweeper`], [`JobService::run_retention`]).
//!
//! Three rules make it safe to run several replicas and to crash anywhere:
//! - The store is the source of truth and the timer a cache of it. A firing
//!   claims its job in the store (one conditional update on status and fire
//!   token) before anything is published, so a stale timer entry, a deleted
//!   job or another replica's firing never publishes twice.
//! - Every change records the event it owes in the same atomic write (the
//!   outbox inside the job). Delivery publishes owed events in order and then
//!   clears them only if the job did not change meanwhile, so an event is
//!   never lost; after a crash or broker outage the relay delivers it (at
//!   least once; the fire token, the events' `ScheduledKey`, lets consumers
//!   drop duplicates).
//! - Every write that depends on a read is conditional on the version read.

mod arming;
mod delivery;
mod firing;
mod outbox_clears;
mod ownership;
mod recurring;
mod retention;
mod retrying;
mod run_timeout;
#[cfg(test)]
mod testing;

use std::sync::{Arc, OnceLock, atomic::AtomicBool};

use chrono::{DateTime, Utc};

use tokio::sync::{Notify, watch};
use tracing::Span;

pub use delivery::Delivery;
pub use ownership::ShardKeeper;
pub use recurring::{NewJob, PREVIEW_MAX, SchedulePreview};
pub use retention::PRUNE_BATCH;

use crate::{
    broker::{
        EventKind, JobsProducer,
        hub::{EventHub, HubEvent},
    },
    clock::Clock,
    config::SchedulerSettings,
    domain::{
        Error, Job, JobFilter, JobId, JobSpec, JobStatus, JobTally, PageRequest, ResultStatus,
        history,
        recurrence::RecurrenceSpec,
        report::{ResultOutcome, RunReport},
        retry::{Attempts, RetryPolicy},
    },
    store::{JobDB, JobsPage, RunsPage, StoreError, Unreadable, runs_of},
    telemetry::{
        metrics::Metrics,
        propagation::{current_traceparent, exporting, set_parent_from_traceparent},
    },
    timer::Timer,
};

/// How many times an update is retried when the job changes under it.
const UPDATE_ATTEMPTS: usize = 3;

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
    /// Wakes the outbox relay for a pass at once: shards were just taken
    /// (see [`ownership`]).
    relay_now: Notify,
    /// Set while the broker is unreachable: see [`delivery`].
    broker_down: AtomicBool,
    /// The deliveries under way, which the relay leaves alone.
    in_flight: delivery::InFlight,
    /// The outbox clears of deliveries, grouped (see [`outbox_clears`]).
    outbox_clears: outbox_clears::OutboxClears,
    /// The shards this replica owns (see [`ownership`]).
    ownership: ownership::Ownership,
    /// Where result notices go (see [`JobService::notify_results_to`]).
    result_notices: OnceLock<EventHub>,
    /// Counts the jumps of the clock, so that the periodic duties look again
    /// at once (the window loader, the run-timeout sweeper).
    clock_jumps: Arc<watch::Sender<u64>>,
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
        // (A weak reference: the clock must not keep a dropped service alive.)
        let clock_jumps = Arc::new(watch::Sender::new(0u64));
        let jumps = Arc::downgrade(&clock_jumps);
        timer.clock().on_jump(Arc::new(move || {
            if let Some(jumps) = jumps.upgrade() {
                jumps.send_modify(|n| *n = n.wrapping_add(1));
            }
        }));
        JobService {
            inner: Arc::new(Inner {
                db,
                producer,
                timer,
                settings,
                metrics,
                relay_wake: Notify::new(),
                relay_now: Notify::new(),
                broker_down: AtomicBool::new(false),
                in_flight: delivery::InFlight::default(),
                outbox_clears: outbox_clears::OutboxClears::default(),
                ownership: ownership::Ownership::default(),
                result_notices: OnceLock::new(),
                clock_jumps,
            }),
        }
    }

    /// Changes each time the clock jumps.
    pub fn clock_jumps(&self) -> watch::Receiver<u64> {
        self.inner.clock_jumps.subscribe()
    }

    /// The settings of the scheduling core.
    pub fn settings(&self) -> &SchedulerSettings {
        &self.inner.settings
    }

    /// The shard leases of the replicas sharing the store, if it is shared.
    pub fn leases(&self) -> Option<Arc<dyn crate::store::ShardLeases>> {
        self.inner.db.leases()
    }

    /// The timer (for metrics and tests).
    pub fn timer(&self) -> &Timer {
        &self.inner.timer
    }

    /// The clock the service and its timer read.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        self.inner.timer.clock()
    }

    /// The instruments this service counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Stores a new SCHEDULED one-shot job, arms it and publishes its create
    /// event (the article's CreateJob); see [`JobService::create_job`].
    pub async fn create(&self, spec: JobSpec) -> Result<Job, Error> {
        self.create_job(NewJob::one_shot(spec)).await
    }

    /// Stores a new SCHEDULED job (one-shot, or recurring from its first
    /// occurrence), arms it and publishes its create event. The job is
    /// stored once this returns, even if the broker is down: its event is
    /// then published by the relay when the broker is back. A repeat of a
    /// creation with the same client key returns the job the first one
    /// made; with other content it is [`Error::AlreadyExists`].
    #[tracing::instrument(skip_all, fields(job_id))]
    pub async fn create_job(&self, new: NewJob) -> Result<Job, Error> {
        let spec = new.spec.clone().validated()?;
        if let Some(existing) = self.created_with_key(&new).await? {
            return Ok(existing);
        }
        let now = new.requested_at.unwrap_or_else(|| self.clock().now_ms());
        let job = match new.recurrence.clone() {
            Some(recurrence) => Job::new_recurring(spec, recurrence, now)?,
            None => Job::new_scheduled(spec, now),
        };
        let job = Job {
            // The job's firing, run and result join the trace of this call.
            trace_parent: current_traceparent(),
            client_key: new.client_key.clone(),
            attempts: Attempts::fresh(new.retry),
            ..job
        };
        Span::current().record("job_id", tracing::field::display(job.id));
        match self.inner.db.insert(&job).await {
            Err(StoreError::ClientKeyTaken(_)) => {
                // Another creation with this key won the race.
                return self
                    .created_with_key(&new)
                    .await?
                    .ok_or(Error::Aborted(job.id));
            }
            inserted => inserted?,
        }
        self.arm(&job);
        self.inner.metrics.job_created();
        tracing::info!(schedule_time = %job.spec.schedule_time, recurring = job.recurrence.is_some(), "job created");
        self.deliver(&[(&job, Span::current())]).await;
        Ok(job)
    }

    /// The job with this id.
    pub async fn get(&self, id: JobId) -> Result<Job, Error> {
        self.inner.db.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// One page of the jobs `filter` admits, ordered by schedule time then
    /// id. A stored job that cannot be read is logged and left out of the
    /// page (which then holds fewer jobs), rather than failing the whole
    /// listing.
    pub async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, Error> {
        let listed = self.inner.db.list(page, filter).await?;
        log_unreadable("list", &listed.unreadable);
        Ok(listed)
    }

    /// How many jobs there are, in all and by status, type, schedule kind
    /// and paused, in one pass over the store.
    pub async fn tally(&self) -> Result<JobTally, Error> {
        Ok(self.inner.db.tally().await?)
    }

    /// Replaces the client fields of a job and schedules it again, as a
    /// one-shot job (the article's UpdateJob); see [`JobService::update_job`].
    pub async fn update(&self, id: JobId, spec: JobSpec) -> Result<Job, Error> {
        self.update_job(id, spec, None, None, None).await
    }

    /// Replaces the client fields of a job and schedules it again: one-shot
    /// at `spec.schedule_time` without `recurrence`, recurring from its
    /// first occurrence with one (its run count starts again), under the
    /// retry policy `retry` (`None`: the default) with fresh attempts. A
    /// RUNNING job is refused; a finished one is scheduled anew. The change
    /// happens at `requested_at` when the adapter read the clock for the
    /// request (see [`NewJob::requested_at`]), else now.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn update_job(
        &self,
        id: JobId,
        spec: JobSpec,
        recurrence: Option<RecurrenceSpec>,
        retry: Option<RetryPolicy>,
        requested_at: Option<DateTime<Utc>>,
    ) -> Result<Job, Error> {
        let spec = spec.validated()?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(id).await?;
            current.check_not_retired()?;
            if current.status == JobStatus::Running {
                return Err(Error::FailedPrecondition(format!(
                    "job {id} is running; it can be updated once its result is in"
                )));
            }
            let now = requested_at.unwrap_or_else(|| self.clock().now_ms());
            let mut updated = Job {
                recurrence: None,
                attempts: Attempts::fresh(retry),
                ..current.rescheduled(spec.clone(), now)
            };
            if let Some(recurrence) = recurrence.clone() {
                updated = updated.with_recurrence(recurrence, now)?;
            }
            // What happens next to the job follows from this call.
            if let Some(trace_parent) = current_traceparent() {
                updated.trace_parent = Some(trace_parent);
            }
            if self.write_if(&current, &updated, None).await? {
                self.arm(&updated);
                tracing::info!(schedule_time = %updated.spec.schedule_time, "job updated");
                self.deliver(&[(&updated, Span::current())]).await;
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

    /// Stores an executor's result on a RUNNING job. A result that names
    /// the firing it reports on (`fire_token`, the run event's
    /// `ScheduledKey`) is stored only on that firing: a late result of an
    /// earlier firing is `Stale`, counted and logged, and changes nothing
    /// (see [`ResultOutcome`]).
    ///
    /// A FAILED report on a one-shot job schedules its next attempt when
    /// its retry policy leaves one (see [`retrying`]).
    #[tracing::instrument(skip_all, fields(job_id = %id, result = ?report.status, fire_token))]
    pub async fn record_result(
        &self,
        id: JobId,
        report: &RunReport,
    ) -> Result<ResultOutcome, Error> {
        if let Some(token) = report.fire_token {
            Span::current().record("fire_token", token);
        }
        let outcome = match report.status {
            ResultStatus::Succeeded => {
                let now = self.clock().now_ms();
                self.inner.db.store_result(id, report, now).await?
            }
            ResultStatus::Failed => self.take_failure(id, report).await?,
        };
        match outcome {
            ResultOutcome::Stored => {
                if report.status == ResultStatus::Succeeded {
                    self.inner.metrics.job_succeeded();
                }
                self.inner.metrics.result_consumed();
                tracing::info!("run result stored");
                self.after_result(id).await;
            }
            ResultOutcome::Duplicate => {
                self.inner.metrics.result_consumed();
                tracing::debug!("duplicate run result ignored");
            }
            ResultOutcome::Ignored(status) => {
                self.inner.metrics.result_skipped("not_running");
                tracing::warn!(?status, "run result for a job that is not running ignored");
            }
            ResultOutcome::Stale(status) => {
                self.inner.metrics.result_skipped("stale");
                tracing::warn!(
                    ?status,
                    "run result of an earlier firing ignored (the job was fired, retried or rescheduled since)"
                );
            }
            ResultOutcome::UnknownJob => {
                self.inner.metrics.result_skipped("unknown_job");
                tracing::warn!("run result for an unknown job ignored");
            }
        }
        Ok(outcome)
    }
}

impl JobService {
    /// Sends a notice of each result this replica stores to `hub`'s live
    /// subscribers (the web console's feed); set once, at start-up.
    pub fn notify_results_to(&self, hub: EventHub) {
        // (A second hub is ignored: there is one per process.)
        let _ = self.inner.result_notices.set(hub);
    }

    /// After a stored result: the notice to live subscribers, and the job
    /// armed again if it is recurring and the result released an occurrence
    /// held for it (overlap `keep-one`). A failure to read the job only
    /// loses the notice and delays the arming to the window loader's next
    /// pass.
    async fn after_result(&self, id: JobId) {
        let job = match self.inner.db.get(id).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(job_id = %id, error = %err, "cannot read the job after its result");
                return;
            }
        };
        if job.recurrence.is_some() {
            job_span("result", &job).in_scope(|| tracing::debug!("next occurrence armed"));
            self.arm(&job);
        }
        if let Some(hub) = self.inner.result_notices.get() {
            hub.send(HubEvent {
                sequence: 0,
                kind: EventKind::Result,
                job,
            });
        }
    }

    /// One page of job `id`'s runs, newest first, its run in flight
    /// first; `NotFound` for an unknown job.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn runs(&self, id: JobId, page: PageRequest) -> Result<RunsPage, Error> {
        runs_of(&*self.inner.db, id, page)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// Writes `after` over `before` (the job as read) if the job is still
    /// at `before`'s version, with the record of the run the change ends
    /// (as `report` says; without one, timed out or superseded), in the
    /// same atomic step; the change's time is `after.updated_at`, which
    /// every change sets. Returns whether it was written.
    pub(super) async fn write_if(
        &self,
        before: &Job,
        after: &Job,
        report: Option<&RunReport>,
    ) -> Result<bool, StoreError> {
        let runs = history::changes(before, after, report, after.updated_at);
        self.inner.db.replace_if(after, before.version, &runs).await
    }
}

/// Logs each document that a scan of the store (`scan`: the duty or call
/// that made it) could not read as a job, once per scan, at error level with
/// the job's id when that could be read. The scan went on with every other
/// job; the document stays as it is, and is met again by the next scan,
/// until someone repairs or removes it.
fn log_unreadable(scan: &'static str, unreadable: &[Unreadable]) {
    for document in unreadable {
        tracing::error!(
            scan,
            job_id = document.id.map(tracing::field::display),
            reason = %document.reason,
            "a stored job cannot be read; the scan went on without it"
        );
    }
}

/// A span for work on `job` outside any call (a firing, the relay, the
/// sweeper), joined to the trace of the call that last scheduled the job,
/// with the attempt it is at (each retry's firing is a span of its own).
fn job_span(name: &'static str, job: &Job) -> Span {
    let span = tracing::info_span!(
        "job",
        otel.name = name,
        job_id = %job.id,
        attempt = job.attempt()
    );
    set_parent_from_traceparent(&span, job.trace_parent.as_deref());
    span
}

/// [`job_span`] for a step made once per firing, but only while spans are
/// exported: the log layer formats every span's fields as it is made, and
/// in a burst of 30,000 firings a second making the firing path's spans
/// took 12.5 % of the service's CPU samples (perf; BENCHMARKS.md, "Firings
/// log in batches"). The step's log events name their job themselves.
fn firing_span(name: &'static str, job: &Job) -> Span {
    if exporting() {
        job_span(name, job)
    } else {
        Span::none()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::service::testing::TestService;

    /// An hourly interval anchored at the request's time (the default
    /// anchor), the service's clock `late_ms` past it.
    async fn hourly_from_the_request(late_ms: i64) -> (Job, chrono::DateTime<chrono::Utc>) {
        use crate::domain::{
            recurrence::{CatchUp, Overlap},
            schedule::{Bounds, IntervalSchedule, Jitter, Schedule, Timing},
        };
        let t = TestService::with_look_ahead(Duration::from_secs(10));
        let requested_at = t.clock.now_ms();
        let hour = chrono::TimeDelta::hours(1);
        let hourly = IntervalSchedule::new(hour, requested_at, chrono::TimeDelta::seconds(1));
        let timing = Timing::new(
            Schedule::Interval(hourly.unwrap()),
            Bounds::default(),
            Jitter::default(),
        );
        let recurrence = RecurrenceSpec {
            timing: timing.unwrap(),
            catch_up: CatchUp::default(),
            overlap: Overlap::default(),
        };
        t.advance_ms(late_ms);
        let new = NewJob {
            recurrence: Some(recurrence),
            requested_at: Some(requested_at),
            ..NewJob::one_shot(t.spec(0))
        };
        (t.svc.create_job(new).await.unwrap(), requested_at)
    }

    #[tokio::test]
    async fn an_interval_anchored_at_its_request_first_fires_then_however_long_creation_takes() {
        for late_ms in [0, 1, 250] {
            let (job, requested_at) = hourly_from_the_request(late_ms).await;
            assert_eq!(job.spec.schedule_time, requested_at, "{late_ms} ms late");
        }
    }

    #[tokio::test]
    async fn a_deleted_job_is_disarmed_and_gone() {
        let t = TestService::with_look_ahead(Duration::from_secs(10));
        let svc = &t.svc;
        let job = svc.create(t.spec(1_000)).await.unwrap();
        svc.delete(job.id).await.unwrap();
        assert!(!svc.timer().is_armed(&job.id));
        assert!(matches!(svc.delete(job.id).await, Err(Error::NotFound(_))));
        assert!(matches!(svc.get(job.id).await, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn the_firing_path_makes_no_span_while_spans_are_not_exported() {
        let t = TestService::with_look_ahead(Duration::from_secs(10));
        let job = t.svc.create(t.spec(1_000)).await.unwrap();
        assert!(!exporting(), "no test process exports spans");
        // A subscriber that records every span, as the log layer does.
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            assert!(!job_span("relay events", &job).is_none(), "spans are made");
            assert!(firing_span("fire job", &job).is_none());
        });
    }
}
