//! The service's periodic duties, each a task that stops on shutdown:
//! running firings as the timer emits them, refilling the timer from the
//! store (the look-ahead window), relaying owed events (the outbox), and
//! expiring runs that never reported a result; and [`Duties`], which
//! watches that none of them stops before shutdown.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use tokio::{
    sync::Semaphore,
    task::{JoinError, JoinHandle},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    domain::now,
    service::{Delivery, JobService, RETRY_FIRST, RETRY_MAX},
    timer::Firing,
};

/// The running duties of a service, each named. A duty runs until shutdown;
/// one that ends before (it panicked, or what feeds it is gone, such as the
/// timer's thread) would leave the service answering calls but no longer
/// firing, relaying or reading results, with nothing to show for it. So the
/// service waits on [`Duties::first_stopped`] beside its server, and stops
/// with an error when a duty ends, for its supervisor to restart it.
#[derive(Default)]
pub struct Duties {
    running: FuturesUnordered<BoxFuture<'static, (&'static str, Result<(), JoinError>)>>,
}

impl Duties {
    /// Watches the task `handle` as the duty `name`.
    pub fn add(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.running
            .push(handle.map(move |ended| (name, ended)).boxed());
    }

    /// Resolves when a duty ends, with its name and whether it panicked
    /// (`Err`); never, while none does.
    pub async fn first_stopped(&mut self) -> (&'static str, Result<(), JoinError>) {
        match self.running.next().await {
            Some(stopped) => stopped,
            None => std::future::pending().await,
        }
    }

    /// Waits, at most `grace`, for every duty to end (after shutdown).
    /// Returns how many are still running.
    pub async fn join_all(mut self, grace: Duration) -> usize {
        let all_ended = async {
            while let Some((name, ended)) = self.running.next().await {
                if let Err(err) = ended {
                    tracing::error!(duty = name, error = %err, "background duty failed");
                }
            }
        };
        match tokio::time::timeout(grace, all_ended).await {
            Ok(()) => 0,
            Err(_) => self.running.len(),
        }
    }
}

/// Jobs read from the outbox per relay pass.
const RELAY_BATCH: usize = 500;
/// Jobs delivered at once by the relay (each job's own events stay in order).
const RELAY_CONCURRENCY: usize = 32;

/// Firing batches in flight at once. Several, so that one batch's publishes
/// overlap the next one's claim, but fewer than the store's default pool of
/// 10 connections (`DATABASE_POOL_SIZE`), so that API calls and the relay
/// still get one.
const FIRE_BATCHES_IN_FLIGHT: usize = 4;
/// The most firings claimed by one store call.
const FIRE_BATCH_MAX: usize = 512;

/// Runs firings as the timer emits them, in batches: each batch is every
/// firing queued when it starts (no waiting to fill it, so a lone job fires
/// at once), up to `fire_concurrency / FIRE_BATCHES_IN_FLIGHT` (at most
/// [`FIRE_BATCH_MAX`]), and at most [`FIRE_BATCHES_IN_FLIGHT`] batches run at
/// once. So at most `fire_concurrency` firings are in flight, and while the
/// store is busy, the firings due meanwhile wait in the channel and go into
/// the next batch together. Returns when the timer stops; in-flight batches
/// are tracked by `tasks`.
pub fn spawn_firing_loop(
    service: JobService,
    mut firings: tokio::sync::mpsc::UnboundedReceiver<Firing>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let concurrency = service.settings().fire_concurrency;
    let batch_max = (concurrency / FIRE_BATCHES_IN_FLIGHT).clamp(1, FIRE_BATCH_MAX);
    let slots = Arc::new(Semaphore::new(
        FIRE_BATCHES_IN_FLIGHT.min(concurrency).max(1),
    ));
    tokio::spawn(async move {
        loop {
            // Take a slot before reading: while every slot is busy, firings
            // accumulate in the channel for the next batch.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let Some(first) = firings.recv().await else {
                return;
            };
            let mut batch = Vec::with_capacity(batch_max.min(firings.len() + 1));
            batch.push(first);
            while batch.len() < batch_max {
                match firings.try_recv() {
                    Ok(firing) => batch.push(firing),
                    Err(_) => break,
                }
            }
            let service = service.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                service.fire_batch(batch, &shutdown).await;
                drop(slot);
            });
        }
    })
}

/// Runs `duty` every `period` until shutdown; after a failure, retries
/// sooner with exponential backoff (never later than `period`).
fn spawn_periodic<F, Fut>(
    name: &'static str,
    period: Duration,
    shutdown: CancellationToken,
    mut duty: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    tokio::spawn(async move {
        let mut retry = RETRY_FIRST;
        loop {
            let wait = match duty().await {
                Ok(()) => {
                    retry = RETRY_FIRST;
                    period
                }
                Err(err) => {
                    tracing::warn!(duty = name, error = %err, retry_in = ?retry.min(period), "background duty failed");
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

/// Refills the timer from the store every half window, so that jobs beyond
/// the window, jobs of a restarted service and jobs another replica created
/// are armed in time.
pub fn spawn_window_loader(service: JobService, shutdown: CancellationToken) -> JoinHandle<()> {
    let period = (service.settings().look_ahead / 2).max(Duration::from_millis(100));
    spawn_periodic("window loader", period, shutdown, move || {
        let service = service.clone();
        async move {
            let count = service.load_window().await.map_err(|e| e.to_string())?;
            tracing::debug!(count, armed = service.timer().len(), "window loaded");
            Ok(())
        }
    })
}

/// Expires runs older than the run timeout, checking a few times per timeout.
pub fn spawn_stuck_run_sweeper(service: JobService, shutdown: CancellationToken) -> JoinHandle<()> {
    let period = (service.settings().run_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    spawn_periodic("stuck-run sweeper", period, shutdown, move || {
        let service = service.clone();
        async move {
            service
                .expire_stuck_runs()
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    })
}

/// Publishes the events the outbox holds: every `outbox_poll`, and at once
/// when a delivery failed. A pass stops at the first failure (the broker is
/// likely down) and the next one backs off.
pub fn spawn_outbox_relay(service: JobService, shutdown: CancellationToken) -> JoinHandle<()> {
    let poll = service.settings().outbox_poll;
    tokio::spawn(async move {
        let mut wait = Duration::ZERO;
        let mut backoff = RETRY_FIRST;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = service.relay_woken() => {
                    // A request just failed to publish: give the broker the
                    // current backoff before trying again.
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
            wait = match relay_pass(&service).await {
                Ok(()) => {
                    backoff = RETRY_FIRST;
                    poll
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "outbox relay pass failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    wait
                }
            };
        }
    })
}

async fn relay_pass(service: &JobService) -> Result<(), String> {
    let owing = service
        .db()
        .with_pending_events(RELAY_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    // Leave alone jobs changed so recently that the request which changed
    // them may still be publishing: relaying them too would duplicate events.
    let grace =
        chrono::Duration::from_std(service.settings().relay_grace).unwrap_or(chrono::Duration::MAX);
    let settled = now() - grace;
    let ready: Vec<_> = owing
        .into_iter()
        .filter(|j| j.updated_at <= settled)
        .collect();
    if ready.is_empty() {
        return Ok(());
    }
    let deliveries: Vec<Delivery> = futures::stream::iter(ready)
        .map(|job| {
            let service = service.clone();
            async move { service.relay(&job).await }
        })
        .buffer_unordered(RELAY_CONCURRENCY)
        .collect()
        .await;
    let deferred = deliveries
        .iter()
        .filter(|d| **d == Delivery::Deferred)
        .count();
    tracing::info!(
        relayed = deliveries.len() - deferred,
        deferred,
        "outbox relay pass"
    );
    if deferred > 0 {
        return Err(format!("{deferred} jobs' events still owed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_duty_that_panics_is_reported_by_name() {
        let mut duties = Duties::default();
        let shutdown = CancellationToken::new();
        let waiting = shutdown.clone();
        duties.add(
            "steady",
            tokio::spawn(async move { waiting.cancelled().await }),
        );
        duties.add(
            "broken",
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("duty failed");
            }),
        );
        let (name, ended) = duties.first_stopped().await;
        assert_eq!(name, "broken");
        assert!(ended.is_err_and(|err| err.is_panic()));
        // The steady duty stops at shutdown, within the grace period.
        shutdown.cancel();
        assert_eq!(duties.join_all(Duration::from_secs(5)).await, 0);
    }

    #[tokio::test]
    async fn duties_that_ignore_shutdown_are_counted_after_the_grace_period() {
        let mut duties = Duties::default();
        duties.add("stuck", tokio::spawn(std::future::pending()));
        duties.add("quick", tokio::spawn(async {}));
        assert_eq!(duties.join_all(Duration::from_millis(50)).await, 1);
    }

    #[tokio::test]
    async fn no_duty_means_none_ever_stops() {
        let mut none = Duties::default();
        let waited = tokio::time::timeout(Duration::from_millis(50), none.first_stopped()).await;
        assert!(waited.is_err());
    }
}
