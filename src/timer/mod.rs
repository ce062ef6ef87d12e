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
    collections::HashSet,
    sync::{Arc, Condvar, Mutex, MutexGuard, Weak},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::{Clock, SystemClock},
    domain::JobId,
};
use queue::ArmedJobs;

/// Most firings handed over per lock hold, so that a large backlog coming due
/// at once does not hold up arming and cancelling.
const BATCH: usize = 1024;
/// Shortest idle time in which the driver gives back memory after a burst:
/// shrinking is O(armed jobs), a few ms for a million, so it must never
/// delay a firing.
const SHRINK_WHEN_IDLE_FOR: Duration = Duration::from_millis(100);
/// Longest uninterrupted wait, so that a jump of the system clock (which
/// does not say when it jumps) is noticed within it.
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
    /// Jobs handed to the firing channel whose claim has not been answered
    /// yet ([`Timer::settle`]): not armed, but not vacant either, so that
    /// the window loader does not arm again a job whose firing is on its
    /// way (it would be claimed twice: once in vain).
    handed_over: HashSet<JobId, foldhash::fast::RandomState>,
    /// Set at shutdown: the driver thread exits.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    clock: Arc<dyn Clock>,
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
    /// Starts the driver thread on the system clock. Due jobs arrive on the
    /// returned channel; the driver stops when `shutdown` is cancelled or the
    /// receiver is dropped. Must be called inside a tokio runtime.
    pub fn start(shutdown: CancellationToken) -> (Timer, mpsc::UnboundedReceiver<Firing>) {
        Timer::start_with(Arc::new(SystemClock), shutdown)
    }

    /// Starts the driver thread on `clock`; as [`Timer::start`] otherwise.
    pub fn start_with(
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> (Timer, mpsc::UnboundedReceiver<Firing>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            clock: clock.clone(),
        });
        // A jump of the clock may make jobs due: the driver looks again. (A
        // weak reference: the clock must not keep a stopped timer alive.)
        let watched: Weak<Shared> = Arc::downgrade(&shared);
        clock.on_jump(Arc::new(move || {
            if let Some(shared) = watched.upgrade() {
                // Under the lock, so that the wake-up cannot fall between
                // the driver's reading of the clock and its wait.
                let _state = shared.lock();
                shared.wake.notify_one();
            }
        }));
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

    /// The clock the timer runs on (and the service reads).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
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

    /// Arms `id` only if it is neither armed nor handed over for firing
    /// and not yet settled: for the window loader, which must not override
    /// a newer arming made meanwhile, nor arm again a job on its way to its
    /// claim.
    pub fn arm_if_vacant(&self, id: JobId, due: DateTime<Utc>, fire_token: i64) {
        let earliest = {
            let mut state = self.state();
            if state.armed.contains(&id) || state.handed_over.contains(&id) {
                return;
            }
            state.armed.arm(id, due.timestamp_millis(), fire_token)
        };
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// The firings of `ids` were answered by the store (claimed, lost or
    /// given up): their jobs are vacant again for [`Timer::arm_if_vacant`].
    pub fn settle(&self, ids: impl IntoIterator<Item = JobId>) {
        let mut state = self.state();
        for id in ids {
            state.handed_over.remove(&id);
        }
    }

    /// Disarms `id`. Returns whether it was armed.
    pub fn cancel(&self, id: &JobId) -> bool {
        // Cancelling the earliest entry needs no wake-up: the driver finds the
        // entry gone when it wakes and simply plans again.
        self.state().armed.remove(id)
    }

    /// Disarms every job `keep` refuses (the jobs of shards this replica
    /// no longer owns); returns how many.
    pub fn retain(&self, keep: impl FnMut(&JobId) -> bool) -> usize {
        // A removed earliest entry needs no wake-up, as for `cancel`.
        self.state().armed.retain(keep)
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

/// Pops at most [`BATCH`] jobs due by `now_us` into `out`, each marked as
/// handed over; returns when the next job is due (Unix µs), if any is
/// left.
fn pop_due(state: &mut State, now_us: i64, out: &mut Vec<Firing>) -> Option<i64> {
    let State {
        armed, handed_over, ..
    } = state;
    while let Some(due_ms) = armed.next_due_ms() {
        let due_us = due_ms.saturating_mul(1000);
        if due_us > now_us || out.len() >= BATCH {
            return Some(due_us);
        }
        if let Some(job) = armed.pop_first() {
            handed_over.insert(job.id);
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
        let next_due_us = pop_due(
            &mut state,
            shared.clock.now().timestamp_micros(),
            &mut batch,
        );
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
            let wait_us = due_us
                .saturating_sub(shared.clock.now().timestamp_micros())
                .max(0);
            Duration::from_micros(wait_us.unsigned_abs()).min(MAX_WAIT)
        });
        if wait >= SHRINK_WHEN_IDLE_FOR {
            state.armed.shrink_if_sparse();
            if state.handed_over.is_empty() {
                state.handed_over.shrink_to_fit();
            }
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
    use crate::clock::ManualClock;
    use chrono::Duration as ChronoDuration;

    /// A timer on a clock that moves only when the test moves it: what is
    /// due is decided by the clock, never by how fast the test runs.
    fn start() -> (Timer, mpsc::UnboundedReceiver<Firing>, ManualClock) {
        let clock = ManualClock::at_wall_time();
        let (timer, rx) = Timer::start_with(Arc::new(clock.clone()), CancellationToken::new());
        (timer, rx, clock)
    }

    fn at(clock: &ManualClock, ms: i64) -> DateTime<Utc> {
        clock.now() + ChronoDuration::milliseconds(ms)
    }

    fn advance(clock: &ManualClock, ms: i64) {
        clock.advance(ChronoDuration::milliseconds(ms));
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Firing>) -> Firing {
        // A bound on a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a firing")
            .expect("timer running")
    }

    #[tokio::test]
    async fn fires_in_due_order_and_past_times_at_once() {
        let (timer, mut rx, clock) = start();
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        timer.arm(a, at(&clock, 120), 1);
        timer.arm(b, at(&clock, 40), 2);
        assert_eq!(timer.len(), 2);
        timer.arm(c, at(&clock, -10_000), 3);
        let first = next(&mut rx).await;
        assert_eq!((first.id, first.fire_token), (c, 3));
        assert!(timer.is_armed(&a) && timer.is_armed(&b));
        advance(&clock, 40);
        let second = next(&mut rx).await;
        assert_eq!((second.id, second.fire_token), (b, 2));
        assert!(timer.is_armed(&a), "not due yet");
        advance(&clock, 80);
        let third = next(&mut rx).await;
        assert_eq!((third.id, third.fire_token), (a, 1));
        assert_eq!(third.due_ms, first.due_ms + 10_120);
        assert!(timer.is_empty());
    }

    #[tokio::test]
    async fn rearming_moves_the_job_and_the_old_time_never_fires() {
        let (timer, mut rx, clock) = start();
        let id = JobId::new();
        let marker = JobId::new();
        timer.arm(id, at(&clock, 30), 1);
        timer.arm(id, at(&clock, 300), 2);
        timer.arm(marker, at(&clock, 150), 9);
        assert_eq!(timer.len(), 2);
        // Past the old time and the marker's: only the marker is due; had
        // the old arming survived, `id` would come first.
        advance(&clock, 150);
        assert_eq!(next(&mut rx).await.id, marker);
        assert!(timer.is_armed(&id));
        advance(&clock, 150);
        let moved = next(&mut rx).await;
        assert_eq!((moved.id, moved.fire_token), (id, 2));
    }

    #[tokio::test]
    async fn a_cancelled_job_never_fires() {
        let (timer, mut rx, clock) = start();
        let (gone, kept) = (JobId::new(), JobId::new());
        timer.arm(gone, at(&clock, 20), 1);
        timer.arm(kept, at(&clock, 80), 2);
        assert!(timer.cancel(&gone));
        assert!(!timer.cancel(&gone));
        advance(&clock, 80);
        // `gone` was due first: it would have come before `kept`.
        assert_eq!(next(&mut rx).await.id, kept);
        assert!(timer.is_empty());
    }

    #[tokio::test]
    async fn an_earlier_job_armed_while_the_driver_waits_fires_first() {
        let (timer, mut rx, clock) = start();
        let later = JobId::new();
        timer.arm(later, at(&clock, 60_000), 1);
        // Let the driver start waiting for the later job.
        tokio::task::yield_now().await;
        let soon = JobId::new();
        timer.arm(soon, at(&clock, 10), 2);
        advance(&clock, 60_000);
        assert_eq!(next(&mut rx).await.id, soon);
        assert_eq!(next(&mut rx).await.id, later);
    }

    #[tokio::test]
    async fn arm_if_vacant_keeps_a_newer_arming() {
        let (timer, mut rx, clock) = start();
        let id = JobId::new();
        timer.arm(id, at(&clock, 50), 7);
        timer.arm_if_vacant(id, at(&clock, 10), 1);
        advance(&clock, 50);
        assert_eq!(next(&mut rx).await.fire_token, 7);
        // Its claim answered, the job is vacant again.
        timer.settle([id]);
        timer.arm_if_vacant(id, at(&clock, 10), 8);
        advance(&clock, 10);
        assert_eq!(next(&mut rx).await.fire_token, 8);
    }

    #[tokio::test]
    async fn retain_disarms_exactly_the_jobs_refused() {
        let (timer, mut rx, clock) = start();
        let ids: Vec<JobId> = (0..6).map(|_| JobId::new()).collect();
        // None due yet: the driver (a thread of its own) would hand a due
        // job over before `retain` sees it.
        for (i, id) in ids.iter().enumerate() {
            timer.arm(*id, at(&clock, 10 * (i as i64 + 1)), 0);
        }
        let kept: Vec<JobId> = ids.iter().copied().skip(1).step_by(2).collect();
        assert_eq!(timer.retain(|id| kept.contains(id)), 3);
        assert_eq!(timer.len(), 3);
        advance(&clock, 100);
        for id in &kept {
            assert_eq!(next(&mut rx).await.id, *id, "in due order, none other");
        }
        assert!(timer.is_empty());
    }

    #[tokio::test]
    async fn a_job_handed_over_is_not_vacant_until_settled() {
        let (timer, mut rx, clock) = start();
        let id = JobId::new();
        timer.arm(id, at(&clock, 0), 1);
        assert_eq!(next(&mut rx).await.id, id);
        // On its way to its claim: the loader's snapshot does not arm it.
        timer.arm_if_vacant(id, at(&clock, 0), 1);
        assert!(!timer.is_armed(&id));
        // An update arms it all the same (a new token).
        timer.arm(id, at(&clock, 50), 2);
        assert!(timer.cancel(&id));
        timer.settle([id]);
        timer.arm_if_vacant(id, at(&clock, 0), 3);
        assert_eq!(next(&mut rx).await.fire_token, 3, "vacant once settled");
    }

    #[tokio::test]
    async fn a_clock_that_jumps_forward_fires_what_became_due_in_order() {
        let (timer, mut rx, clock) = start();
        let ids: Vec<JobId> = (0..5).map(|_| JobId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            timer.arm(*id, at(&clock, 3_600_000 * (i as i64 + 1)), 0);
        }
        // Five hours pass at once (a suspended VM, an NTP step): all fire,
        // earliest first.
        advance(&clock, 5 * 3_600_000);
        for id in &ids {
            assert_eq!(next(&mut rx).await.id, *id);
        }
    }

    #[tokio::test]
    async fn a_clock_that_jumps_back_fires_nothing_early() {
        let (timer, mut rx, clock) = start();
        let id = JobId::new();
        let due = at(&clock, 10_000);
        timer.arm(id, due, 1);
        advance(&clock, -3_600_000);
        // An hour back: still armed, and it fires when the clock reaches
        // its time again, not before.
        let marker = JobId::new();
        timer.arm(marker, at(&clock, 0), 2);
        assert_eq!(next(&mut rx).await.id, marker);
        assert!(timer.is_armed(&id));
        clock.set(due - ChronoDuration::milliseconds(1));
        let early = JobId::new();
        timer.arm(early, at(&clock, 0), 3);
        assert_eq!(next(&mut rx).await.id, early);
        assert!(timer.is_armed(&id));
        clock.set(due);
        let fired = next(&mut rx).await;
        assert_eq!((fired.id, fired.due_ms), (id, due.timestamp_millis()));
    }

    #[tokio::test]
    async fn shutdown_stops_the_driver() {
        let shutdown = CancellationToken::new();
        let (timer, mut rx) = Timer::start(shutdown.clone());
        timer.arm(JobId::new(), Utc::now() + ChronoDuration::seconds(60), 1);
        shutdown.cancel();
        let closed = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
        assert_eq!(closed.expect("driver stops"), None);
    }
}
