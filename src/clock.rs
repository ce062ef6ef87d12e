//! Time, as the service sees it: one injectable [`Clock`] that the timer and
//! the service read, so that everything that depends on the time of day
//! (when a job is due, how late a firing is, whether a misfire is too late,
//! whether a run has timed out, which jobs fall in the look-ahead window)
//! can be driven by a test, including a clock that jumps forward and back.
//!
//! In production it is [`SystemClock`], the wall clock. The timer re-reads
//! it at least every second, so a jump of the system clock (an NTP step, a
//! suspended VM) is noticed within a second. [`ManualClock`] is set by
//! hand (tests, simulations) and wakes the timer at each change, so that
//! moving it fires what became due at once.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// A configured period as a span of the clock's time, saturating: a
/// period longer than chrono can hold counts as forever.
pub fn span(period: std::time::Duration) -> Duration {
    Duration::from_std(period).unwrap_or(Duration::MAX)
}

/// Called when a clock's time jumps.
pub type JumpHook = Arc<dyn Fn() + Send + Sync>;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time, as precise as the clock has it.
    fn now(&self) -> DateTime<Utc>;

    /// The current time at the precision the store keeps (milliseconds), so
    /// that a job read back equals the job written.
    fn now_ms(&self) -> DateTime<Utc> {
        self.now().trunc_subsecs(3)
    }

    /// Calls `hook` after every jump of this clock's time. A clock that
    /// cannot tell (the system clock) never calls it.
    fn on_jump(&self, hook: JumpHook) {
        drop(hook);
    }
}

/// The wall clock of the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to, forward or back; cheap to clone
/// (clones share the time).
#[derive(Clone)]
pub struct ManualClock {
    shared: Arc<Mutex<ManualTime>>,
}

struct ManualTime {
    now: DateTime<Utc>,
    hooks: Vec<JumpHook>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            shared: Arc::new(Mutex::new(ManualTime {
                now: start,
                hooks: Vec::new(),
            })),
        }
    }

    /// A clock showing the current wall-clock time, to the millisecond.
    pub fn at_wall_time() -> Self {
        ManualClock::new(Utc::now().trunc_subsecs(3))
    }

    fn lock(&self) -> MutexGuard<'_, ManualTime> {
        // Setting a time cannot leave it half-written: a poisoned lock is
        // still usable.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the time (earlier or later) and wakes whoever watches the clock
    /// (outside the clock's lock: a watcher reads the clock).
    pub fn set(&self, now: DateTime<Utc>) {
        self.jump(|_| now);
    }

    /// Moves the time by `by` (negative: back).
    pub fn advance(&self, by: Duration) {
        self.jump(|now| now + by);
    }

    fn jump(&self, to: impl FnOnce(DateTime<Utc>) -> DateTime<Utc>) {
        let hooks = {
            let mut time = self.lock();
            time.now = to(time.now);
            time.hooks.clone()
        };
        for hook in hooks {
            hook();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.lock().now
    }

    fn on_jump(&self, hook: JumpHook) {
        self.lock().hooks.push(hook);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_manual_clock_moves_both_ways_and_tells_its_watchers() {
        let start = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let clock = ManualClock::new(start);
        let jumps = Arc::new(AtomicUsize::new(0));
        let counted = jumps.clone();
        clock.on_jump(Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        clock.advance(Duration::hours(1));
        assert_eq!(clock.now(), start + Duration::hours(1));
        clock.clone().advance(Duration::hours(-2));
        assert_eq!(clock.now(), start - Duration::hours(1));
        assert_eq!(jumps.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn now_ms_keeps_milliseconds() {
        let clock = ManualClock::new(DateTime::from_timestamp_nanos(1_700_000_000_123_456_789));
        assert_eq!(clock.now_ms().timestamp_subsec_nanos(), 123_000_000);
        assert_eq!(clock.now().timestamp_subsec_nanos(), 123_456_789);
    }
}
