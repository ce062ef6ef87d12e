//! The scheduling core: ListJobs page size, the timer's look-ahead, firing
//! concurrency, the misfire, run-timeout and default retry policies, the
//! outbox poll, and (from [`super::history`]) how much history is kept.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, history::HistorySettings, value, vars};
use crate::domain::{Error, Field, retry::RetryPolicy};

/// What to do with a job found due long after its time (the service was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum MisfirePolicy {
    /// Fire it at once, however late.
    FireNow,
    /// Fire it if it is at most this late; otherwise mark it FAILED (with an
    /// update event) without running it.
    SkipIfLaterThan(Duration),
}

/// What to do with a job RUNNING longer than the run timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum RunTimeoutPolicy {
    /// Mark it FAILED, with an update event.
    Fail,
    /// Schedule it again at once (a new fire token), with an update event.
    Retry,
}

impl TryFrom<String> for MisfirePolicy {
    type Error = String;

    /// `fire-now` or `skip-if-late:<seconds>`.
    fn try_from(text: String) -> Result<Self, String> {
        if text == "fire-now" {
            return Ok(MisfirePolicy::FireNow);
        }
        match text.strip_prefix("skip-if-late:").map(str::parse::<u64>) {
            Some(Ok(secs)) => Ok(MisfirePolicy::SkipIfLaterThan(Duration::from_secs(secs))),
            _ => Err(format!(
                "expected fire-now or skip-if-late:<seconds>, got {text:?}"
            )),
        }
    }
}

impl TryFrom<String> for RunTimeoutPolicy {
    type Error = String;

    /// `fail` or `retry`.
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "fail" => Ok(RunTimeoutPolicy::Fail),
            "retry" => Ok(RunTimeoutPolicy::Retry),
            other => Err(format!("expected fail or retry, got {other:?}")),
        }
    }
}

/// The scheduling core.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Largest ListJobs page.
    pub max_page_size: u64,
    /// How far ahead jobs are held in the in-memory timer.
    pub look_ahead: Duration,
    /// The most firings in flight at once, an upper bound: up to 4
    /// batches, each sized from the backlog (the firings queued when it
    /// starts, shared among the free batch slots) and at most a quarter of
    /// it (and 2048), see `JobService::run_firing`.
    pub fire_concurrency: usize,
    /// Late jobs after downtime.
    pub misfire: MisfirePolicy,
    /// How long a job may run without a result.
    pub run_timeout: Duration,
    /// What happens after that.
    pub run_timeout_policy: RunTimeoutPolicy,
    /// How often the outbox relay looks for unpublished events.
    pub outbox_poll: Duration,
    /// How long the relay leaves a just-changed job to the request that
    /// changed it (whose publish may still be in flight): the broker's
    /// acknowledgement timeout plus a second.
    pub relay_grace: Duration,
    /// The shortest interval a recurring job may have (at least 1 s).
    pub min_interval: Duration,
    /// How a failed one-shot job without a policy of its own is retried.
    pub retry: RetryPolicy,
    /// How much run history and how many finished jobs are kept.
    pub history: HistorySettings,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            max_page_size: 100,
            look_ahead: Duration::from_secs(60),
            fire_concurrency: 8192,
            misfire: MisfirePolicy::FireNow,
            run_timeout: Duration::from_secs(600),
            run_timeout_policy: RunTimeoutPolicy::Fail,
            outbox_poll: Duration::from_secs(1),
            relay_grace: Duration::from_secs(11),
            min_interval: Duration::from_secs(1),
            retry: RetryPolicy::NONE,
            history: HistorySettings::default(),
        }
    }
}

/// The scheduling core's variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct SchedulerVars {
    #[serde(deserialize_with = "value::positive")]
    list_max_page_size: u64,
    #[serde(deserialize_with = "value::seconds")]
    scheduler_look_ahead_secs: Duration,
    #[serde(deserialize_with = "value::positive")]
    scheduler_fire_concurrency: usize,
    scheduler_misfire_policy: MisfirePolicy,
    #[serde(deserialize_with = "value::seconds")]
    scheduler_run_timeout_secs: Duration,
    scheduler_run_timeout_policy: RunTimeoutPolicy,
    #[serde(deserialize_with = "value::millis")]
    outbox_poll_ms: Duration,
    #[serde(deserialize_with = "value::seconds")]
    scheduler_min_interval_secs: Duration,
    scheduler_retry_max_attempts: u32,
    scheduler_retry_first_delay_ms: i64,
    scheduler_retry_max_delay_ms: i64,
    scheduler_retry_multiplier: f64,
    scheduler_retry_jitter: f64,
}

impl Default for SchedulerVars {
    fn default() -> Self {
        let defaults = SchedulerSettings::default();
        SchedulerVars {
            list_max_page_size: defaults.max_page_size,
            scheduler_look_ahead_secs: defaults.look_ahead,
            scheduler_fire_concurrency: defaults.fire_concurrency,
            scheduler_misfire_policy: defaults.misfire,
            scheduler_run_timeout_secs: defaults.run_timeout,
            scheduler_run_timeout_policy: defaults.run_timeout_policy,
            outbox_poll_ms: defaults.outbox_poll,
            scheduler_min_interval_secs: defaults.min_interval,
            scheduler_retry_max_attempts: defaults.retry.max_attempts(),
            scheduler_retry_first_delay_ms: defaults.retry.first_delay().num_milliseconds(),
            scheduler_retry_max_delay_ms: defaults.retry.max_delay().num_milliseconds(),
            scheduler_retry_multiplier: defaults.retry.multiplier(),
            scheduler_retry_jitter: defaults.retry.jitter(),
        }
    }
}

impl SchedulerVars {
    /// The scheduling core's settings, with the relay grace that the
    /// broker's acknowledgement timeout gives.
    pub(super) fn into_settings(
        self,
        relay_grace: Duration,
        history: HistorySettings,
    ) -> Result<SchedulerSettings, ConfigError> {
        let retry = self.retry_policy()?;
        Ok(SchedulerSettings {
            max_page_size: self.list_max_page_size,
            look_ahead: self.scheduler_look_ahead_secs,
            fire_concurrency: self.scheduler_fire_concurrency,
            misfire: self.scheduler_misfire_policy,
            run_timeout: self.scheduler_run_timeout_secs,
            run_timeout_policy: self.scheduler_run_timeout_policy,
            outbox_poll: self.outbox_poll_ms,
            relay_grace,
            min_interval: self.scheduler_min_interval_secs,
            retry,
            history,
        })
    }

    /// The default retry policy; a value out of bounds names its variable.
    fn retry_policy(&self) -> Result<RetryPolicy, ConfigError> {
        RetryPolicy::new(
            self.scheduler_retry_max_attempts,
            self.scheduler_retry_first_delay_ms,
            self.scheduler_retry_max_delay_ms,
            self.scheduler_retry_multiplier,
            self.scheduler_retry_jitter,
        )
        .map_err(|err| match err {
            Error::InvalidArgument { field, reason } => {
                let name = match field {
                    Field::RetryFirstDelay => vars::SCHEDULER_RETRY_FIRST_DELAY_MS,
                    Field::RetryMaxDelay => vars::SCHEDULER_RETRY_MAX_DELAY_MS,
                    Field::RetryMultiplier => vars::SCHEDULER_RETRY_MULTIPLIER,
                    Field::RetryJitter => vars::SCHEDULER_RETRY_JITTER,
                    _ => vars::SCHEDULER_RETRY_MAX_ATTEMPTS,
                };
                ConfigError::new(name, reason)
            }
            other => ConfigError::new(vars::SCHEDULER_RETRY_MAX_ATTEMPTS, other.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::settings, vars};
    use super::*;

    #[test]
    fn policies_parse() {
        let s = settings(&[
            (vars::SCHEDULER_MISFIRE_POLICY, "skip-if-late:30"),
            (vars::SCHEDULER_RUN_TIMEOUT_POLICY, "retry"),
        ])
        .unwrap();
        assert_eq!(
            s.scheduler.misfire,
            MisfirePolicy::SkipIfLaterThan(Duration::from_secs(30))
        );
        assert_eq!(s.scheduler.run_timeout_policy, RunTimeoutPolicy::Retry);
        let defaults = settings(&[]).unwrap().scheduler;
        assert_eq!(defaults.misfire, MisfirePolicy::FireNow);
        assert_eq!(defaults.run_timeout_policy, RunTimeoutPolicy::Fail);
    }

    #[test]
    fn the_default_retry_policy_is_read_and_checked_per_variable() {
        let defaults = settings(&[]).unwrap().scheduler.retry;
        assert_eq!(defaults.max_attempts(), 1, "no retry, as in the article");
        assert!((defaults.jitter() - 0.1).abs() < 1e-9);
        let s = settings(&[
            (vars::SCHEDULER_RETRY_MAX_ATTEMPTS, "5"),
            (vars::SCHEDULER_RETRY_FIRST_DELAY_MS, "250"),
            (vars::SCHEDULER_RETRY_MAX_DELAY_MS, "60000"),
            (vars::SCHEDULER_RETRY_MULTIPLIER, "1.5"),
            (vars::SCHEDULER_RETRY_JITTER, "0"),
        ])
        .unwrap()
        .scheduler
        .retry;
        assert_eq!(s, RetryPolicy::new(5, 250, 60_000, 1.5, 0.0).unwrap());
        for (name, value) in [
            (vars::SCHEDULER_RETRY_MAX_ATTEMPTS, "0"),
            (vars::SCHEDULER_RETRY_MAX_ATTEMPTS, "many"),
            (vars::SCHEDULER_RETRY_FIRST_DELAY_MS, "-5"),
            (vars::SCHEDULER_RETRY_MAX_DELAY_MS, "5"),
            (vars::SCHEDULER_RETRY_MULTIPLIER, "0.5"),
            (vars::SCHEDULER_RETRY_JITTER, "2"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}: {err}");
        }
    }
}
