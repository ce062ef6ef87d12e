//! Arming: which jobs the in-memory timer holds. The store is the source of
//! truth and the timer a cache of the SCHEDULED jobs due within the
//! look-ahead window (`SCHEDULER_LOOK_AHEAD_SECS`): each change arms or
//! disarms its job at once ([`JobService::arm`]), and the window loader
//! ([`JobService::run_window_loader`]) refills the timer from the store
//! every half window, so that jobs beyond the window, the jobs of a
//! restarted service and the jobs another replica created are armed in time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::JobService;
use crate::clock::span;
use crate::{
    domain::{Error, Job},
    duties::every,
};

impl JobService {
    /// The end of the look-ahead window: jobs due before it are armed.
    pub(super) fn horizon(&self) -> DateTime<Utc> {
        self.clock().now() + span(self.settings().look_ahead)
    }

    /// Arms a job this replica changed (created, updated, retried) if the
    /// timer should hold it ([`Job::is_armable`]: a SCHEDULED one-shot job,
    /// a recurring job's next occurrence) and it is due within the window,
    /// else disarms it (the loader arms it when the window reaches it). A
    /// job of a shard another replica owns is armed only when it is due
    /// before that replica's loader sees it (see [`super::ownership`]).
    pub(super) fn arm(&self, job: &Job) {
        self.borrow_if_foreign(job);
        self.arm_held(job);
    }

    /// As [`JobService::arm`], for a job this replica did not change but
    /// fired (a recurring job's next occurrence): armed only if it holds
    /// it.
    pub(super) fn arm_held(&self, job: &Job) {
        let now = self.clock().now();
        if job.is_armable() && job.spec.schedule_time < self.horizon() && self.holds(&job.id, now) {
            self.inner
                .timer
                .arm(job.id, job.spec.schedule_time, job.fire_token);
        } else {
            self.inner.timer.cancel(&job.id);
        }
    }

    /// Arms every SCHEDULED job of the shards this replica owns due within
    /// the look-ahead window that the timer does not hold yet. Returns how
    /// many the store listed. A stored job that cannot be read is logged
    /// and not armed; the others are.
    pub async fn load_window(&self) -> Result<usize, Error> {
        self.end_borrowings(self.clock().now());
        // Never overrides an arming made by create/update meanwhile: it is
        // at least as new as this snapshot.
        self.load_shards(&self.owned_shards()).await
    }

    /// How often the loader runs: every half window, so that a job is armed
    /// at least half a window before it is due.
    pub(super) fn loader_period(&self) -> Duration {
        (self.settings().look_ahead / 2).max(Duration::from_millis(100))
    }

    /// Loads the window every half window until shutdown.
    pub async fn run_window_loader(self, shutdown: CancellationToken) {
        let period = self.loader_period();
        let jumps = self.clock_jumps();
        every("window loader", period, shutdown, jumps, move || {
            let service = self.clone();
            async move {
                let count = service.load_window().await.map_err(|e| e.to_string())?;
                tracing::debug!(count, armed = service.timer().len(), "window loaded");
                Ok(())
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::TestService;

    #[tokio::test]
    async fn jobs_beyond_the_window_are_armed_only_when_it_reaches_them() {
        let t = TestService::with_look_ahead(Duration::from_secs(10));
        let svc = &t.svc;
        let near = svc.create(t.spec(1_000)).await.unwrap();
        let far = svc.create(t.spec(60_000)).await.unwrap();
        assert!(svc.timer().is_armed(&near.id));
        assert!(!svc.timer().is_armed(&far.id));
        // Moving the far job into the window arms it; moving it out disarms it.
        svc.update(far.id, t.spec(2_000)).await.unwrap();
        assert!(svc.timer().is_armed(&far.id));
        svc.update(far.id, t.spec(60_000)).await.unwrap();
        assert!(!svc.timer().is_armed(&far.id));
        // The window moves with the clock: 55 s later the loader arms it.
        assert_eq!(svc.load_window().await.unwrap(), 1, "the near job");
        assert!(!svc.timer().is_armed(&far.id));
        t.advance_ms(55_000);
        assert_eq!(svc.load_window().await.unwrap(), 2);
        assert!(svc.timer().is_armed(&far.id));
    }

    #[tokio::test]
    async fn the_loader_arms_what_the_timer_lost() {
        let t = TestService::with_look_ahead(Duration::from_secs(10));
        let svc = &t.svc;
        let job = svc.create(t.spec(5_000)).await.unwrap();
        svc.timer().cancel(&job.id);
        assert_eq!(svc.load_window().await.unwrap(), 1);
        assert!(svc.timer().is_armed(&job.id));
    }
}
