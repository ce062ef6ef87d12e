//! The in-memory timer: a cache of which scheduled jobs fire when.
//!
//! Armed jobs sit in [`queue::ArmedJobs`], ordered by due time and found by
//! id, so that arming, re-arming and cancelling are O(log n). One driver
//! thread owns the clock: it waits on a condition variable until the
//! earliest job is due, to the microsecond (tokio's timer rounds sleeps up
//! to whole milliseconds, which would make every firing about a millisecond
//! late), hands due jobs to the firing channel in batches without holding
//! the lock, and is woken early only when a new earliest job is armed. A job
//! is armed at most once: arming it again moves it, so an updated job never
//! fires at its old time.
//!
//! The timer does not decide whether a job *may* fire: each [`Firing`] carries
//! the fire token it was armed with, and the store's atomic claim rejects a
//! token that is no longer current.

mod queue;

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::domain::JobId;
use queue::ArmedJobs;

/// Most firings handed over per lock hold, so that a large backlog coming due
/// at once does not hold up arming and cancelling.
const BATCH: usize = 1024;
/// Shortest idle time in which the driver gives back memory after a burst:
/// shrinking is O(armed jobs), a few ms for a million, so it must never
/// delay a firing.
const SHRINK_WHEN_IDLE_FOR: Duration = Duration::from_millis(100);
/// Longest uninterrupted wait, so that a change of the wall clock is noticed.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// A job whose time has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    /// The job to fire.
    pub id: JobId,
    /// The fire token the job was armed with.
    pub fire_token: i64,
    /// When it was due, in Unix milliseconds.
    pub due_ms: i64,
}

impl Firing {
    /// When it was due.
    pub fn due(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.due_ms).unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    /// The armed jobs.
    armed: ArmedJobs,
    /// Set at shutdown: the driver thread exits.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the maps half-updated in
        // a way that matters (each method is a few map operations), so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle to the timer; cheap to clone.
#[derive(Clone)]
pub struct Timer {
    shared: Arc<Shared>,
}

impl Timer {
    /// Starts the driver thread. Due jobs arrive on the returned channel; the
    /// driver stops when `shutdown` is cancelled or the receiver is dropped.
    /// Must be called inside a tokio runtime.
    pub fn start(shutdown: CancellationToken) -> (Timer, mpsc::UnboundedReceiver<Firing>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = shared.clone();
        if let Err(err) = std::thread::Builder::new()
            .name("scheduler-timer".to_owned())
            .spawn(move || drive(&driver, &tx))
        {
            // Without a thread nothing would ever fire: that is a bug-level
            // failure of the host, not something to limp on with.
            panic!("cannot start the timer thread: {err}");
        }
        let stopper = shared.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stopper.lock().stopped = true;
            stopper.wake.notify_one();
        });
        (Timer { shared }, rx)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Arms `id` to fire at `due` with fire token `fire_token`, replacing
    /// any earlier arming of the same job. A time in the past fires at once.
    pub fn arm(&self, id: JobId, due: DateTime<Utc>, fire_token: i64) {
        let earliest = self
            .state()
            .armed
            .arm(id, due.timestamp_millis(), fire_token);
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Arms many jobs under one lock (start-up and look-ahead loads).
    pub fn arm_many(&self, jobs: impl IntoIterator<Item = (JobId, DateTime<Utc>, i64)>) {
        let mut earliest = false;
        {
            let mut state = self.state();
            for (id, due, key) in jobs {
                earliest |= state.armed.arm(id, due.timestamp_millis(), key);
            }
        }
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Arms `id` only if it is not armed already: for retries, which must not
    /// override a newer arming made meanwhile.
    pub fn arm_if_vacant(&self, id: JobId, due: DateTime<Utc>, fire_token: i64) {
        let earliest = {
            let mut state = self.state();
            if state.armed.contains(&id) {
                return;
            }
            state.armed.arm(id, due.timestamp_millis(), fire_token)
        };
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Disarms `id`. Returns whether it was armed.
    pub fn cancel(&self, id: &JobId) -> bool {
        // Cancelling the earliest entry needs no wake-up: the driver finds the
        // entry gone when it wakes and simply plans again.
        self.state().armed.remove(id)
    }

    /// Whether `id` is armed.
    pub fn is_armed(&self, id: &JobId) -> bool {
        self.state().armed.contains(id)
    }

    /// How many jobs are armed.
    pub fn len(&self) -> usize {
        self.state().armed.len()
    }

    /// Whether no job is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Pops at most [`BATCH`] jobs due by `now_us` into `out`; returns when
/// the next job is due (Unix µs), if any is left.
fn pop_due(armed: &mut ArmedJobs, now_us: i64, out: &mut Vec<Firing>) -> Option<i64> {
    while let Some(due_ms) = armed.next_due_ms() {
        let due_us = due_ms.saturating_mul(1000);
        if due_us > now_us || out.len() >= BATCH {
            return Some(due_us);
        }
        if let Some(job) = armed.pop_first() {
            out.push(Firing {
                id: job.id,
                fire_token: job.fire_token,
                due_ms: job.due_ms,
            });
        }
    }
    None
}

/// The driver thread: waits for the earliest due time, hands due jobs over.
fn drive(shared: &Shared, fired: &mpsc::UnboundedSender<Firing>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut state = shared.lock();
    loop {
        if state.stopped {
            return;
        }
        let next_due_us = pop_due(&mut state.armed, Utc::now().timestamp_micros(), &mut batch);
        if !batch.is_empty() {
            // Hand over without the lock, then look again at once: more may
            // be due (a backlog larger than one batch).
            drop(state);
            for firing in batch.drain(..) {
                if fired.send(firing).is_err() {
                    return;
                }
            }
            state = shared.lock();
            continue;
        }
        let wait = next_due_us.map_or(MAX_WAIT, |due_us| {
            let wait_us = due_us.saturating_sub(Utc::now().timestamp_micros()).max(0);
            Duration::from_micros(wait_us.unsigned_abs()).min(MAX_WAIT)
        });
        if wait >= SHRINK_WHEN_IDLE_FOR {
            state.armed.shrink_if_sparse();
        }
        state = shared
            .wake
            .wait_timeout(state, wait)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as ChronoDuration;

    fn in_ms(ms: i64) -> DateTime<Utc> {
        Utc::now() + ChronoDuration::milliseconds(ms)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Firing>) -> Firing {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a firing within 5 s")
            .expect("timer running")
    }

    #[tokio::test]
    async fn fires_in_due_order_and_past_times_at_once() {
        let (timer, mut rx) = Timer::start(CancellationToken::new());
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        timer.arm(a, in_ms(120), 1);
        timer.arm(b, in_ms(40), 2);
        timer.arm(c, in_ms(-10_000), 3);
        assert_eq!(timer.len(), 3);
        let order: Vec<(JobId, i64)> = [
            next(&mut rx).await,
            next(&mut rx).await,
            next(&mut rx).await,
        ]
        .iter()
        .map(|f| (f.id, f.fire_token))
        .collect();
        assert_eq!(order, vec![(c, 3), (b, 2), (a, 1)]);
        assert!(timer.is_empty());
    }

    #[tokio::test]
    async fn rearming_moves_the_job_and_the_old_time_never_fires() {
        let (timer, mut rx) = Timer::start(CancellationToken::new());
        let id = JobId::new();
        let marker = JobId::new();
        timer.arm(id, in_ms(30), 1);
        timer.arm(id, in_ms(300), 2);
        timer.arm(marker, in_ms(150), 9);
        assert_eq!(timer.len(), 2);
        // The marker (due at 150 ms) must come before the moved job (300 ms);
        // had the old arming (30 ms) survived, `id` would come first.
        assert_eq!(next(&mut rx).await.id, marker);
        let moved = next(&mut rx).await;
        assert_eq!((moved.id, moved.fire_token), (id, 2));
    }

    #[tokio::test]
    async fn a_cancelled_job_never_fires() {
        let (timer, mut rx) = Timer::start(CancellationToken::new());
        let (gone, kept) = (JobId::new(), JobId::new());
        timer.arm(gone, in_ms(20), 1);
        timer.arm(kept, in_ms(80), 2);
        assert!(timer.cancel(&gone));
        assert!(!timer.cancel(&gone));
        assert_eq!(next(&mut rx).await.id, kept);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_earlier_job_armed_during_a_long_sleep_wakes_the_driver() {
        let (timer, mut rx) = Timer::start(CancellationToken::new());
        timer.arm(JobId::new(), in_ms(60_000), 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let soon = JobId::new();
        timer.arm(soon, in_ms(10), 2);
        assert_eq!(next(&mut rx).await.id, soon);
    }

    #[tokio::test]
    async fn arm_if_vacant_keeps_a_newer_arming() {
        let (timer, mut rx) = Timer::start(CancellationToken::new());
        let id = JobId::new();
        timer.arm(id, in_ms(50), 7);
        timer.arm_if_vacant(id, in_ms(10), 1);
        assert_eq!(next(&mut rx).await.fire_token, 7);
        timer.arm_if_vacant(id, in_ms(10), 8);
        assert_eq!(next(&mut rx).await.fire_token, 8);
    }

    #[tokio::test]
    async fn shutdown_stops_the_driver() {
        let shutdown = CancellationToken::new();
        let (timer, mut rx) = Timer::start(shutdown.clone());
        timer.arm(JobId::new(), in_ms(60_000), 1);
        shutdown.cancel();
        let closed = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(closed.expect("driver stops"), None);
    }
}
