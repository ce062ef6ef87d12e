//! The service's background duties: tasks that run from start-up to
//! shutdown (the firing loop, the window loader, the outbox relay, the
//! run-timeout sweeper, the run-result consumers, the metrics endpoint),
//! watched so that none stops unnoticed, and [`every`], the loop of the
//! periodic ones.
//!
//! A duty that ends before shutdown (it panicked, or what feeds it is gone,
//! such as the timer's thread) would leave the service answering calls but
//! no longer firing, relaying or reading results, with nothing to show for
//! it. So the service waits on [`Duties::first_stopped`] beside its server,
//! and stops with an error when a duty ends, for its supervisor to restart
//! it.

use std::{collections::HashMap, future::Future, time::Duration};

use tokio::{
    sync::watch,
    task::{self, JoinError, JoinSet},
};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// The running duties, each named.
#[derive(Default)]
pub struct Duties {
    running: JoinSet<()>,
    names: HashMap<task::Id, &'static str>,
}

impl Duties {
    /// Runs `duty` as a task named `name`.
    pub fn spawn(&mut self, name: &'static str, duty: impl Future<Output = ()> + Send + 'static) {
        let id = self.running.spawn(duty).id();
        self.names.insert(id, name);
    }

    /// Resolves when a duty ends, with its name and whether it panicked
    /// (`Err`); never, while none does.
    pub async fn first_stopped(&mut self) -> (&'static str, Result<(), JoinError>) {
        match self.running.join_next_with_id().await {
            Some(Ok((id, ()))) => (self.name(id), Ok(())),
            Some(Err(err)) => (self.name(err.id()), Err(err)),
            None => std::future::pending().await,
        }
    }

    /// Waits, at most `grace`, for every duty to end (after shutdown); the
    /// ones still running then are aborted. Returns how many that was.
    pub async fn join_all(mut self, grace: Duration) -> usize {
        let all_ended = async {
            while let Some(ended) = self.running.join_next().await {
                if let Err(err) = ended {
                    let name = self.names.get(&err.id()).copied().unwrap_or("unknown");
                    tracing::error!(duty = name, error = %err, "background duty failed");
                }
            }
        };
        match tokio::time::timeout(grace, all_ended).await {
            Ok(()) => 0,
            Err(_) => self.running.len(),
        }
    }

    fn name(&self, id: task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unknown")
    }
}

/// Runs `pass` every `period` until shutdown, and at once when `jumps`
/// changes (the clock jumped: what is due may have changed); after a
/// failure, tries again sooner, backing off (never later than `period`).
pub async fn every<F, Fut>(
    name: &'static str,
    period: Duration,
    shutdown: CancellationToken,
    mut jumps: watch::Receiver<u64>,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::default();
    loop {
        let wait = match pass().await {
            Ok(()) => {
                backoff.reset();
                period
            }
            Err(err) => {
                let wait = backoff.next_delay().min(period);
                tracing::warn!(duty = name, error = %err, retry_in = ?wait, "background duty failed");
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            // (An error means nobody can jump the clock any more.)
            Ok(()) = jumps.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn a_duty_that_panics_is_reported_by_name() {
        let mut duties = Duties::default();
        let shutdown = CancellationToken::new();
        let waiting = shutdown.clone();
        duties.spawn("steady", async move { waiting.cancelled().await });
        duties.spawn("broken", async {
            tokio::task::yield_now().await;
            panic!("duty failed");
        });
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
        duties.spawn("stuck", std::future::pending());
        duties.spawn("quick", async {});
        assert_eq!(duties.join_all(Duration::from_millis(50)).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_duty_means_none_ever_stops() {
        let mut none = Duties::default();
        let waited = tokio::time::timeout(Duration::from_secs(3600), none.first_stopped()).await;
        assert!(waited.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_periodic_duty_retries_a_failed_pass_sooner_and_runs_when_the_clock_jumps() {
        let passes = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counted = passes.clone();
        let (jumps, jumped) = watch::channel(0);
        let duty = tokio::spawn(every(
            "test",
            Duration::from_secs(60),
            shutdown.clone(),
            jumped,
            move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err("down".to_owned())
                    } else {
                        Ok(())
                    }
                }
            },
        ));
        // Three failures back off 0.1 + 0.2 + 0.4 s; then the period.
        tokio::time::sleep(Duration::from_millis(750)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 5);
        // A jump of the clock runs a pass at once.
        jumps.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 6);
        shutdown.cancel();
        duty.await.expect("the duty stops at shutdown");
    }
}
