//! Firing: from a due timer entry to a claimed job whose run event is
//! delivered. The one entry point is [`JobService::run_firing`], the loop
//! that takes the timer's firings in batches.
//!
//! A firing claims its job in the store (one conditional update on status
//! and fire token) before anything is published, so a stale timer entry, a
//! deleted job or another replica's firing never publishes twice. The claim
//! records the owed run event in the job (the outbox), and [`delivery`]
//! publishes it.
//!
//! Batching is what lets a store keep up when many jobs fall due together:
//! one statement (one commit) claims a batch, and one more clears its
//! outbox entries, instead of two per job. At most [`BATCHES_IN_FLIGHT`]
//! batches run at once, and each is sized from the backlog when it starts
//! ([`batch_size`]): the firings queued in the channel, spread over the
//! free batch slots (its own included), at least one and at most
//! `fire_concurrency / BATCHES_IN_FLIGHT` (and [`BATCH_MAX`]). A batch
//! never waits to fill: a lone job fires at once in a batch of one, and a
//! few due together go out in small batches side by side, for latency;
//! while the store is busy, the firings due meanwhile wait in the channel
//! and the next batches take them together, larger as the backlog grows,
//! for throughput. So `fire_concurrency` (`SCHEDULER_FIRE_CONCURRENCY`) is
//! only an upper bound on the firings in flight, not the size of every
//! batch.
//!
//! Why the backlog and a high bound rather than a size tuned per
//! deployment: under the old default bound of 64 a batch
//! (`SCHEDULER_FIRE_CONCURRENCY` 256), 10,000 jobs due within one second
//! reached a consumer with p99 47 ms, but 30,000 with 827 ms, the claims
//! falling behind; at 256 a batch (1,024), 466 ms for 30,000 but 73 ms for
//! 10,000 (BENCHMARKS.md, "Fire concurrency, re-measured"). Now the bound
//! is high by default (2,048 in flight, batches of up to 512) and a
//! burst's size sets the batches': a backlog shared among the free slots
//! goes out in parallel batches rather than whole in the first one, and a
//! light load keeps batches small.
//! Measured with these defaults (BENCHMARKS.md, "Bursts without tuning", a
//! shared 2-core machine): 10,000 jobs due within one second, median p99
//! 41 ms on the embedded store and 144 ms on PostgreSQL (48 ms in the least
//! loaded run); 30,000, 1.6 s on the embedded store and 585 ms to 1.6 s on
//! PostgreSQL (issue 19's targets are 50 and 150 ms). What limits a burst of
//! 30,000 is no longer the batch size: on PostgreSQL, the 4 slots with
//! batches at their bound of 512, each held about 100 ms (the claim about
//! 40 ms, then the publishes and the outbox clear); on the embedded store,
//! its single writer thread.
//!
//! [`delivery`]: super::delivery

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::sync::{Semaphore, mpsc::UnboundedReceiver};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{JobService, job_span};
use crate::{
    backoff::Backoff,
    config::MisfirePolicy,
    domain::{Job, JobId, JobStatus},
    store::StoreError,
    telemetry::metrics::FailReason,
    timer::{Firing, Timer},
};

/// What a late firing's check found (see [`JobService::skip_misfire`]).
enum Misfire {
    /// The one-shot job is now FAILED.
    Failed(Box<Job>),
    /// A recurring job: claimed, under its catch-up policy.
    Recurring,
    /// Deleted, changed or claimed meanwhile: nothing to do.
    Gone,
}

/// Firing batches in flight at once. Several, so that one batch's publishes
/// overlap the next one's claim, but fewer than the store's default pool of
/// 10 connections (`DATABASE_POOL_SIZE`), so that API calls and the relay
/// still get one.
const BATCHES_IN_FLIGHT: usize = 4;
/// The most firings claimed by one store call.
const BATCH_MAX: usize = 512;

/// The size of the next batch: the firings `queued` when it starts spread
/// over the `free_slots` (its own included), so that a backlog is shared
/// by the batches that can run now instead of going whole into the first;
/// at least 1, at most `max`. A lone firing makes a batch of one (fired at
/// once); a burst, batches as large as the store's round trips call for.
pub(crate) fn batch_size(queued: usize, free_slots: usize, max: usize) -> usize {
    queued.div_ceil(free_slots.max(1)).clamp(1, max.max(1))
}

/// `first` and the firings queued after it, `size` in all at most (fewer
/// if fewer are queued: a batch never waits to fill).
fn take_batch(first: Firing, firings: &mut UnboundedReceiver<Firing>, size: usize) -> Vec<Firing> {
    let mut batch = Vec::with_capacity(size);
    batch.push(first);
    while batch.len() < size {
        match firings.try_recv() {
            Ok(firing) => batch.push(firing),
            Err(_) => break,
        }
    }
    batch
}

/// Settles a batch's firings in the timer when dropped, however its task
/// ends (done, given up at shutdown, or a panic), so that no job stays
/// handed over, unarmable by the loader, for good.
struct Settle {
    timer: Timer,
    ids: Vec<JobId>,
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.timer.settle(self.ids.drain(..));
    }
}

impl JobService {
    /// Fires the timer's firings in batches until the timer stops. In-flight
    /// batches are tracked by `in_flight`, for shutdown to wait on them.
    pub async fn run_firing(
        self,
        mut firings: UnboundedReceiver<Firing>,
        in_flight: TaskTracker,
        shutdown: CancellationToken,
    ) {
        let concurrency = self.settings().fire_concurrency;
        let batch_max = (concurrency / BATCHES_IN_FLIGHT).clamp(1, BATCH_MAX);
        let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT.min(concurrency).max(1)));
        loop {
            // Take a slot before reading: while every slot is busy, firings
            // accumulate in the channel for the next batch.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let Some(first) = firings.recv().await else {
                return;
            };
            let size = batch_size(firings.len() + 1, slots.available_permits() + 1, batch_max);
            let batch = take_batch(first, &mut firings, size);
            let service = self.clone();
            let shutdown = shutdown.clone();
            let settle = Settle {
                timer: self.inner.timer.clone(),
                ids: batch.iter().map(|f| f.id).collect(),
            };
            in_flight.spawn(async move {
                service.fire_batch(batch, &shutdown).await;
                drop((settle, slot));
            });
        }
    }

    /// Fires a batch of due jobs. Each job too late under the misfire policy
    /// is skipped on its own; the others are claimed in the store in one call
    /// and their events delivered.
    #[tracing::instrument(skip_all, fields(jobs = firings.len()))]
    pub(crate) async fn fire_batch(&self, firings: Vec<Firing>, shutdown: &CancellationToken) {
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
            self.claim(to_claim, shutdown)
        );
    }

    /// How late `firing` is, if the misfire policy says it must not run.
    fn too_late(&self, firing: &Firing) -> Option<Duration> {
        let MisfirePolicy::SkipIfLaterThan(limit) = self.settings().misfire else {
            return None;
        };
        let late = (self.clock().now() - firing.due())
            .to_std()
            .unwrap_or_default();
        (late > limit).then_some(late)
    }

    /// Claims the jobs of `firings` in one store call and delivers those
    /// claimed. Claims that fail are retried with backoff until they succeed
    /// or shutdown, leaving out jobs armed again meanwhile (updated, or
    /// re-armed by the loader: their new arming fires them); the jobs claimed
    /// meanwhile (a store that claims job by job can fail part of a batch)
    /// are delivered at once.
    async fn claim(&self, mut firings: Vec<Firing>, shutdown: &CancellationToken) {
        let mut backoff = Backoff::default();
        while !firings.is_empty() {
            let tokens: Vec<(JobId, i64)> = firings.iter().map(|f| (f.id, f.fire_token)).collect();
            self.inner.metrics.claims_asked(tokens.len());
            let (claimed, failed) = match self
                .inner
                .db
                .claim_many(&tokens, self.clock().now_ms())
                .await
            {
                Ok(claimed) => (claimed, Vec::new()),
                Err(err) => {
                    tracing::warn!(error = %err.error, failed = err.failed.len(), jobs = firings.len(), retry_in = ?backoff.current(), "claims failed, retrying them");
                    (err.claimed, err.failed)
                }
            };
            let failed: HashSet<(JobId, i64)> = failed.into_iter().collect();
            let (retry, answered): (Vec<Firing>, Vec<Firing>) = firings
                .into_iter()
                .partition(|f| failed.contains(&(f.id, f.fire_token)));
            // Answered: vacant again for the loader (after a lost claim,
            // `rearm_if_stale` may arm the job under its newer token).
            self.inner.timer.settle(answered.iter().map(|f| f.id));
            self.after_claim(answered, claimed).await;
            firings = retry;
            if firings.is_empty() || !backoff.wait(shutdown).await {
                return;
            }
            firings.retain(|f| !self.inner.timer.is_armed(&f.id));
        }
    }

    /// Counts and delivers the jobs a claim of `answered` returned. What the
    /// store did not claim was lost (deleted, updated, fired by another
    /// replica); what it claimed was asked for, under the same fire token.
    async fn after_claim(&self, answered: Vec<Firing>, claimed: Vec<Job>) {
        let mut asked: HashMap<(JobId, i64), Firing> = answered
            .into_iter()
            .map(|f| ((f.id, f.fire_token), f))
            .collect();
        let now_ms = self.clock().now().timestamp_millis();
        // A recurring job's claim arms its next occurrence, once its run
        // event is delivered (an occurrence is not claimed while the event
        // of the previous one is owed); only a claim that started a run
        // (owes its event) fired.
        let recurring: Vec<Job> = claimed
            .iter()
            .filter(|job| job.recurrence.is_some())
            .cloned()
            .collect();
        let (fired, advanced): (Vec<Job>, Vec<Job>) =
            claimed.into_iter().partition(|job| job.pending.run);
        for job in advanced {
            asked.remove(&(job.id, job.firing_key()));
            job_span("occurrence passed", &job)
                .in_scope(|| tracing::info!("occurrence passed without a run (catch-up, overlap)"));
        }
        let fired: Vec<(Job, tracing::Span)> = fired
            .into_iter()
            .map(|job| {
                let due_ms = asked
                    .remove(&(job.id, job.firing_key()))
                    .map_or(now_ms, |f| f.due_ms);
                let lateness_ms = now_ms - due_ms;
                self.inner.metrics.job_fired(lateness_ms);
                let span = job_span("fire job", &job);
                span.in_scope(|| tracing::info!(lateness_ms, "job fired"));
                (job, span)
            })
            .collect();
        let lost: Vec<Firing> = asked.into_values().collect();
        let ((), _) = futures::join!(self.rearm_if_stale(lost), self.deliver(&fired));
        for job in &recurring {
            self.arm_held(job);
        }
    }

    /// Marks a job that is too late under the misfire policy as FAILED
    /// instead of running it (only if it is still SCHEDULED under this
    /// token), retrying with backoff while the store fails. A recurring job
    /// is claimed instead: its catch-up policy decides about late
    /// occurrences.
    async fn skip_misfire(&self, firing: Firing, late: Duration, shutdown: &CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            match self.fail_misfired(firing).await {
                Ok(Misfire::Recurring) => return self.claim(vec![firing], shutdown).await,
                Ok(Misfire::Failed(failed)) => {
                    self.inner.metrics.job_failed(FailReason::Misfire);
                    let span = job_span("misfire", &failed);
                    span.in_scope(|| {
                        tracing::warn!(late = ?late, "misfire: job too late, marked FAILED");
                    });
                    self.deliver(&[(*failed, span)]).await;
                    return;
                }
                Ok(Misfire::Gone) => return,
                Err(err) => {
                    tracing::warn!(job_id = %firing.id, error = %err, retry_in = ?backoff.current(), "misfire handling failed, retrying");
                    if !backoff.wait(shutdown).await || self.inner.timer.is_armed(&firing.id) {
                        return;
                    }
                }
            }
        }
    }

    /// The job of `firing` moved to FAILED, if it is a one-shot job still
    /// SCHEDULED under the firing's token and nothing changed it meanwhile.
    async fn fail_misfired(&self, firing: Firing) -> Result<Misfire, StoreError> {
        let Some(job) = self.inner.db.get(firing.id).await? else {
            return Ok(Misfire::Gone);
        };
        if job.recurrence.is_some() {
            return Ok(Misfire::Recurring);
        }
        if job.status != JobStatus::Scheduled || job.fire_token != firing.fire_token {
            return Ok(Misfire::Gone);
        }
        let failed = job.with_status(JobStatus::Failed, self.clock().now_ms());
        let written = self.write_if(&job, &failed, None).await?;
        Ok(if written {
            Misfire::Failed(Box::new(failed))
        } else {
            Misfire::Gone
        })
    }

    /// After lost claims: each job still due under a newer fire token that
    /// the timer does not hold (two updates raced to arm it; another
    /// replica claimed a recurring job's occurrence and armed the next) is
    /// armed under its current token, so that it is not left unarmed (if
    /// this replica holds it: see [`super::ownership`]). One
    /// store read for the whole batch.
    async fn rearm_if_stale(&self, lost: Vec<Firing>) {
        if lost.is_empty() {
            return;
        }
        let ids: Vec<JobId> = lost.iter().map(|f| f.id).collect();
        let Ok(due) = self.inner.db.armable_of(&ids).await else {
            return;
        };
        let lost_tokens: HashMap<JobId, i64> = lost.iter().map(|f| (f.id, f.fire_token)).collect();
        let now = self.clock().now();
        for job in due {
            if lost_tokens.get(&job.id) != Some(&job.fire_token) && self.holds(&job.id, now) {
                self.inner
                    .timer
                    .arm_if_vacant(job.id, job.schedule_time, job.fire_token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{
        broker::EventKind,
        clock::Clock,
        config::SchedulerSettings,
        domain::{Error, ResultStatus, report::RunReport},
        service::testing::{RecordingProducer, TestService},
        store::{ResultOutcome, memory::MemoryJobDB},
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
        svc.fire_batch(vec![firing], &shutdown).await;
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
        svc.fire_batch(vec![firing], &shutdown).await;
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
        svc.fire_batch(vec![stale], &CancellationToken::new()).await;
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
        t.svc.fire_batch(batch, &CancellationToken::new()).await;

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
        svc.fire_batch(batch, &CancellationToken::new()).await;

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
        t.svc.fire_batch(due, &CancellationToken::new()).await;
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
                svc.fire_batch(due, &CancellationToken::new()).await;
            } else {
                for firing in due {
                    svc.fire_batch(vec![firing], &CancellationToken::new())
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
            .fire_batch(vec![firing], &CancellationToken::new())
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
        let shutdown = CancellationToken::new();
        let in_flight = TaskTracker::new();
        let firing_loop = tokio::spawn(svc.clone().run_firing(
            t.firings,
            in_flight.clone(),
            shutdown.clone(),
        ));
        let mut ids = HashSet::new();
        for _ in 0..JOBS {
            ids.insert(svc.create(spec.clone()).await.unwrap().id);
        }
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
        in_flight.close();
        in_flight.wait().await;
        assert!(
            svc.inner
                .db
                .with_pending_events(10)
                .await
                .unwrap()
                .found
                .is_empty()
        );
        shutdown.cancel();
        firing_loop.abort();
    }
}
