//! The one exponential backoff of the service: how long to wait before
//! retrying a call to the store or the broker that failed, and before the
//! next pass of a background duty that failed.
//!
//! Every retry loop (claims, misfires, the outbox relay, the run-result
//! consumer, the window loader, the run-timeout sweeper, topic creation at
//! start-up) waits through a [`Backoff`], so that an outage costs each of
//! them a few calls a second at first and one every [`RETRY_MAX`] at most,
//! and a recovered dependency is used again at once (a success resets the
//! delay). The delays come from `backon`'s exponential builder: they double
//! from the first delay up to the largest, without jitter.

use std::{iter::Peekable, time::Duration};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// First delay of a retry.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Largest delay between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// Delays that double from a first one up to a largest one, forever.
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: Peekable<ExponentialBackoff>,
    max: Duration,
}

impl Default for Backoff {
    /// From [`RETRY_FIRST`] to [`RETRY_MAX`].
    fn default() -> Self {
        Backoff::new(RETRY_FIRST, RETRY_MAX)
    }
}

impl Backoff {
    /// Delays from `first`, doubling, never above `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build().peekable(),
            max,
        }
    }

    /// The delay the next [`Backoff::next_delay`] returns.
    pub fn current(&mut self) -> Duration {
        self.delays.peek().copied().unwrap_or(self.max)
    }

    /// The delay to wait now; the one after it is twice as long (up to the
    /// largest).
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build().peekable();
    }

    /// Sleeps the next delay. False if `shutdown` came first: the retry
    /// must not happen.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(backoff: &mut Backoff, n: usize) -> Vec<u128> {
        (0..n).map(|_| backoff.next_delay().as_millis()).collect()
    }

    #[test]
    fn delays_double_up_to_the_largest_and_restart_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        assert_eq!(backoff.current().as_millis(), 100);
        assert_eq!(millis(&mut backoff, 5), [100, 200, 400, 700, 700]);
        backoff.reset();
        assert_eq!(millis(&mut backoff, 2), [100, 200]);
        assert_eq!(backoff.current().as_millis(), 400);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_cut_short_by_shutdown() {
        let mut backoff = Backoff::default();
        let shutdown = CancellationToken::new();
        assert!(backoff.wait(&shutdown).await);
        shutdown.cancel();
        assert!(!backoff.wait(&shutdown).await);
    }
}
