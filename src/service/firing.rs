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
//! batches claim at once, each in a claim slot ([`BatchPermits`]) that it
//! gives back as soon as its claim is answered, so that the next batch's
//! claim overlaps this one's publishes and outbox clear; at most
//! `fire_concurrency` firings are in flight, from their batch's start to
//! the end of their publishes (to the end of the outbox clear where the
//! clear is itself the delivery, on the embedded store). Each batch is
//! sized from the backlog when it starts ([`batch_size`]): the firings
//! queued in the channel, spread over the free claim slots (its own
//! included), at least one and at most `fire_concurrency /
//! BATCHES_IN_FLIGHT` (and [`BATCH_MAX`]). A batch
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
//! is high by default (8,192 in flight, batches of up to 2,048) and a
//! burst's size sets the batches': a backlog shared among the free slots
//! goes out in parallel batches rather than whole in the first one, and a
//! light load keeps batches small.
//!
//! Why 8,192: a firing holds its place in the bound until its delivery
//! ends (then its publish and outbox clear, 100 ms or more in a burst), so
//! the bound caps the firing rate at about bound ÷ delivery time. At 2,048
//! (batches of up to 512) a burst of 30,000 due within one second waited
//! for places: its claims started up to 250 to 740 ms late, p99 at the
//! consumer 482 ms on PostgreSQL and 552 ms on the embedded store
//! (medians of three); at 8,192 with batches of up to 2,048, claims start
//! within 60 to 180 ms and the p99 is 275 and 272 ms (BENCHMARKS.md,
//! "A higher firing bound"). Bursts of 10,000 never fill the bound: on
//! the embedded store they are as quick as before (p99 33 to 36 ms); on
//! PostgreSQL their spread is wider (39 to 231 ms, median 57 against 53),
//! a batch grown large in a hiccup taking longer to claim and deliver.
//! What still limited 30,000 in one second (issue 19's target is 150 ms)
//! was the machine's two cores, shared with PostgreSQL and the broker: on
//! PostgreSQL the server's CPU for the claims and outbox clears (two row
//! versions and seven index entries a firing). A place now ends with the
//! publishes and a firing's clear gives way to the claims under way
//! ([`super::outbox_clears`]), so a burst's claims have the server to
//! themselves until they pause. On the embedded store the clear is the
//! delivery to live subscribers and keeps its place; its single writer,
//! which commits each claim and each clear in turn, is the limit.
//!
//! [`delivery`]: super::delivery

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc::UnboundedReceiver};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{JobService, delivery::Deliverer, firing_span, job_span};
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
/// The most firings claimed by one store call (a quarter of the default
/// `fire_concurrency`).
const BATCH_MAX: usize = 2048;

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

/// What a batch holds of the firing loop's bounds (nothing for a batch
/// fired outside the loop):
/// - its claim slot, one of [`BATCHES_IN_FLIGHT`]: held while the batch's
///   claim is asked (and retried while the store fails), given back once
///   every firing is answered, so that the next batch's claim overlaps this
///   one's delivery (its publishes and its outbox clear);
/// - its firings' places in the `fire_concurrency` bound, each given back
///   once its firing's events are published (the outbox clear may wait for
///   the claims under way: see [`super::outbox_clears`]).
#[derive(Default)]
pub(crate) struct BatchPermits {
    slot: Option<OwnedSemaphorePermit>,
    places: Option<OwnedSemaphorePermit>,
}

impl BatchPermits {
    /// Gives the claim slot back.
    fn free_slot(&mut self) {
        self.slot.take();
    }

    /// The places of `answered` firings, taken out for their delivery.
    fn places_of(&mut self, answered: usize) -> Option<OwnedSemaphorePermit> {
        self.places
            .as_mut()
            .and_then(|places| places.split(answered))
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
        let concurrency = self.settings().fire_concurrency.max(1);
        let batch_max = (concurrency / BATCHES_IN_FLIGHT).clamp(1, BATCH_MAX);
        let claim_slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT.min(concurrency)));
        let in_flight_bound = Arc::new(Semaphore::new(concurrency));
        loop {
            // Take a claim slot before reading: while every slot is busy,
            // firings accumulate in the channel for the next batch.
            let Ok(slot) = claim_slots.clone().acquire_owned().await else {
                return;
            };
            let Some(first) = firings.recv().await else {
                return;
            };
            let size = batch_size(
                firings.len() + 1,
                claim_slots.available_permits() + 1,
                batch_max,
            );
            // The channel only grows meanwhile, so the batch takes `size`.
            let Ok(held) = in_flight_bound
                .clone()
                .acquire_many_owned(u32::try_from(size).unwrap_or(u32::MAX))
                .await
            else {
                return;
            };
            let batch = take_batch(first, &mut firings, size);
            let service = self.clone();
            let shutdown = shutdown.clone();
            let settle = Settle {
                timer: self.inner.timer.clone(),
                ids: batch.iter().map(|f| f.id).collect(),
            };
            let permits = BatchPermits {
                slot: Some(slot),
                places: Some(held),
            };
            in_flight.spawn(async move {
                service.fire_batch(batch, permits, &shutdown).await;
                drop(settle);
            });
        }
    }

    /// Fires a batch of due jobs. Each job too late under the misfire policy
    /// is skipped on its own; the others are claimed in the store in one call
    /// and their events delivered.
    #[tracing::instrument(skip_all, fields(jobs = firings.len()))]
    pub(crate) async fn fire_batch(
        &self,
        firings: Vec<Firing>,
        permits: BatchPermits,
        shutdown: &CancellationToken,
    ) {
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
            self.claim(to_claim, permits, shutdown)
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
    /// are delivered at once. The claim slot is given back once every firing
    /// is answered, before the delivery; each answered firing's place goes
    /// with its delivery.
    async fn claim(
        &self,
        mut firings: Vec<Firing>,
        mut permits: BatchPermits,
        shutdown: &CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        while !firings.is_empty() {
            let tokens: Vec<(JobId, i64)> = firings.iter().map(|f| (f.id, f.fire_token)).collect();
            self.inner.metrics.claims_asked(tokens.len());
            let now = self.clock().now_ms();
            let oldest_due = firings.iter().map(|f| f.due_ms).min().unwrap_or(i64::MAX);
            let late_ms = now.timestamp_millis().saturating_sub(oldest_due);
            let claiming = self.inner.outbox_clears.claiming_late(late_ms);
            let answer = self.inner.db.claim_many(&tokens, now).await;
            drop(claiming);
            let (claimed, failed) = match answer {
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
            if retry.is_empty() {
                permits.free_slot();
            }
            let places = permits.places_of(answered.len());
            self.after_claim(answered, claimed, places).await;
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
    async fn after_claim(
        &self,
        answered: Vec<Firing>,
        claimed: Vec<Job>,
        places: Option<OwnedSemaphorePermit>,
    ) {
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
            asked.remove(&(job.id, job.current_fire_token()));
            job_span("occurrence passed", &job)
                .in_scope(|| tracing::info!("occurrence passed without a run (catch-up, overlap)"));
        }
        let mut latest_ms = None;
        let fired: Vec<(Job, tracing::Span)> = fired
            .into_iter()
            .map(|job| {
                let due_ms = asked
                    .remove(&(job.id, job.current_fire_token()))
                    .map_or(now_ms, |f| f.due_ms);
                let lateness_ms = now_ms - due_ms;
                latest_ms = latest_ms.max(Some(lateness_ms));
                self.inner.metrics.job_fired(lateness_ms, job.attempt());
                let span = firing_span("fire job", &job);
                span.in_scope(|| tracing::debug!(job_id = %job.id, lateness_ms, "job fired"));
                (job, span)
            })
            .collect();
        if let Some(max_lateness_ms) = latest_ms {
            tracing::info!(jobs = fired.len(), max_lateness_ms, "jobs fired");
        }
        let lost: Vec<Firing> = asked.into_values().collect();
        let ((), _) = futures::join!(
            self.rearm_if_stale(lost),
            self.deliver_for(&fired, Deliverer::Firing(places))
        );
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
                Ok(Misfire::Recurring) => {
                    return self
                        .claim(vec![firing], BatchPermits::default(), shutdown)
                        .await;
                }
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
mod tests;
