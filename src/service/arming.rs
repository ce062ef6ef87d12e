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

use super::{JobService, log_unreadable};
use crate::{
    domain::{Error, Job},
    duties::every,
};

impl JobService {
    /// The end of the look-ahead window: jobs due before it are armed.
    fn horizon(&self) -> DateTime<Utc> {
        self.clock().now()
            + chrono::Duration::from_std(self.settings().look_ahead)
                .unwrap_or(chrono::Duration::MAX)
    }

    /// Arms a job the timer should hold ([`Job::is_armable`]: a SCHEDULED
    /// one-shot job, a recurring job's next occurrence) if it is due within
    /// the window, else disarms it (the loader arms it when the window
    /// reaches it).
    pub(super) fn arm(&self, job: &Job) {
        if job.is_armable() && job.spec.schedule_time < self.horizon() {
            self.inner
                .timer
                .arm(job.id, job.spec.schedule_time, job.fire_token);
        } else {
            self.inner.timer.cancel(&job.id);
        }
    }

    /// Arms every SCHEDULED job due within the look-ahead window that the
    /// timer does not hold yet. Returns how many the store listed. A stored
    /// job that cannot be read is logged and not armed; the others are.
    pub async fn load_window(&self) -> Result<usize, Error> {
        let due = self.inner.db.scheduled_before(self.horizon()).await?;
        log_unreadable("window loader", &due.unreadable);
        let count = due.found.len();
        for job in due.found {
            // Never override an arming made by create/update meanwhile: it is
            // at least as new as this snapshot.
            self.inner
                .timer
                .arm_if_vacant(job.id, job.schedule_time, job.fire_token);
        }
        Ok(count)
    }

    /// Loads the window every half window until shutdown.
    pub async fn run_window_loader(self, shutdown: CancellationToken) {
        let period = (self.settings().look_ahead / 2).max(Duration::from_millis(100));
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
