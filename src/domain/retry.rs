//! Retries of failed runs: the policy a job is retried under
//! ([`RetryPolicy`]), where a job is in its attempts ([`Attempts`]), and
//! what a job does with an executor's report ([`Job::take_report`]). A
//! recurring job retries the occurrence whose run failed, before its next
//! occurrence comes, or not at all.
//!
//! A failed attempt with attempts left schedules the next one after the
//! policy's backoff (the executor may ask for its own delay), under a new
//! fire token, in the same conditional write that stores the result: a
//! crash cannot lose the retry, and two replicas cannot both schedule it
//! (the second write finds the job changed). A job without a policy of its
//! own is retried under the service's default, read at each decision, so
//! that changing the configuration applies to jobs already stored.
//!
//! A job whose run fails for good (no attempt left, or a failure its
//! executor says is final) owes a dead-letter event, written with the
//! result like every owed event (the outbox in the job).
//!
//! The delays double (by the multiplier) from the first delay up to the
//! largest, computed by `backon`'s exponential builder, the crate the
//! service's other retry loops use; the jitter then takes a random share
//! of up to `jitter` off each delay, so that jobs failing together do not
//! retry together.

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Error, Field, Job, JobSpec, JobStatus, ResultStatus, new_fire_token,
    recurrence::{ResultDecision, Retry},
    report::RunReport,
};

/// Most attempts a policy may allow.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Longest delay before a retry (a policy's largest delay, an executor's
/// requested delay).
pub const RETRY_DELAY_MAX: TimeDelta = TimeDelta::days(7);

/// How a job's failed runs are retried: at most `max_attempts` runs in all,
/// the delays growing from `first_delay` by `multiplier` up to `max_delay`,
/// each shortened by a random share of at most `jitter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    first_delay: TimeDelta,
    max_delay: TimeDelta,
    /// The multiplier in thousandths (so that the policy compares exactly).
    multiplier_milli: u32,
    /// The jitter share in thousandths.
    jitter_milli: u32,
}

impl RetryPolicy {
    /// One attempt, no retry: a failed run ends the job, as in the article.
    /// Its other values are the service's defaults for a policy that
    /// allows retries (10 s doubling up to 1 h, a tenth of jitter).
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        first_delay: TimeDelta::seconds(10),
        max_delay: TimeDelta::hours(1),
        multiplier_milli: 2000,
        jitter_milli: 100,
    };

    /// A policy, each value checked: 1 to [`MAX_ATTEMPTS_LIMIT`] attempts;
    /// delays from 0 to [`RETRY_DELAY_MAX`], the largest at least the
    /// first; a multiplier from 1 to 10; a jitter share from 0 to 1.
    pub fn new(
        max_attempts: u32,
        first_delay_ms: i64,
        max_delay_ms: i64,
        multiplier: f64,
        jitter: f64,
    ) -> Result<Self, Error> {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(Error::invalid(
                Field::RetryMaxAttempts,
                format!("must be from 1 to {MAX_ATTEMPTS_LIMIT}, got {max_attempts}"),
            ));
        }
        let first_delay = delay(Field::RetryFirstDelay, first_delay_ms)?;
        let max_delay = delay(Field::RetryMaxDelay, max_delay_ms)?;
        if max_delay < first_delay {
            return Err(Error::invalid(
                Field::RetryMaxDelay,
                format!(
                    "must be at least the first delay ({first_delay_ms} ms), got {max_delay_ms} ms"
                ),
            ));
        }
        Ok(RetryPolicy {
            max_attempts,
            first_delay,
            max_delay,
            multiplier_milli: thousandths(Field::RetryMultiplier, multiplier, 1.0, 10.0)?,
            jitter_milli: thousandths(Field::RetryJitter, jitter, 0.0, 1.0)?,
        })
    }

    /// How many runs it allows in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before the first retry.
    pub fn first_delay(&self) -> TimeDelta {
        self.first_delay
    }

    /// The largest delay before a retry.
    pub fn max_delay(&self) -> TimeDelta {
        self.max_delay
    }

    /// What each delay is multiplied by for the next.
    pub fn multiplier(&self) -> f64 {
        f64::from(self.multiplier_milli) / 1000.0
    }

    /// The largest share of a delay the jitter takes off.
    pub fn jitter(&self) -> f64 {
        f64::from(self.jitter_milli) / 1000.0
    }

    /// The delay after failed attempt `failed` (from 1) before jitter.
    pub fn backoff(&self, failed: u32) -> TimeDelta {
        let (Ok(first), Ok(max)) = (self.first_delay.to_std(), self.max_delay.to_std()) else {
            return self.max_delay;
        };
        #[allow(clippy::cast_possible_truncation)]
        let factor = self.multiplier() as f32;
        ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(factor)
            .with_max_times(MAX_ATTEMPTS_LIMIT as usize)
            .build()
            .nth(failed.saturating_sub(1) as usize)
            .and_then(|d| TimeDelta::from_std(d).ok())
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// The delay after failed attempt `failed`, less the jitter's share of
    /// it for `draw` (uniform in [0, 1)).
    pub fn delay(&self, failed: u32, draw: f64) -> TimeDelta {
        let base = self.backoff(failed);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let cut = (base.num_milliseconds() as f64 * self.jitter() * draw.clamp(0.0, 1.0)) as i64;
        base - TimeDelta::milliseconds(cut)
    }
}

/// `ms` as a retry delay on `field`: from 0 to [`RETRY_DELAY_MAX`]
/// (checked before it is a `TimeDelta`, which cannot hold `i64::MIN` ms).
pub(super) fn delay(field: Field, ms: i64) -> Result<TimeDelta, Error> {
    if !(0..=RETRY_DELAY_MAX.num_milliseconds()).contains(&ms) {
        return Err(Error::invalid(
            field,
            format!(
                "must be from 0 to {} ms, got {ms}",
                RETRY_DELAY_MAX.num_milliseconds()
            ),
        ));
    }
    Ok(TimeDelta::milliseconds(ms))
}

fn thousandths(field: Field, value: f64, min: f64, max: f64) -> Result<u32, Error> {
    if !(min..=max).contains(&value) {
        return Err(Error::invalid(
            field,
            format!("must be from {min} to {max}, got {value}"),
        ));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((value * 1000.0).round() as u32)
}

/// Where a job is in its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempts {
    /// The job's own policy; `None`: the service's default.
    pub policy: Option<RetryPolicy>,
    /// The attempt of the run in flight, or of the next or last one, from 1.
    pub attempt: u32,
    /// The error text of the last failed attempt, if its executor sent one.
    pub last_error: Option<String>,
    /// Whether an operator started these attempts (RerunJob) rather than
    /// the schedule: the run history records their first run as manual.
    pub manual: bool,
}

impl Default for Attempts {
    /// A job that has not failed yet, under the service's default policy.
    fn default() -> Self {
        Attempts {
            policy: None,
            attempt: 1,
            last_error: None,
            manual: false,
        }
    }
}

/// The stored form of [`Attempts`]: one JSON object, the same in every
/// store; absent while it is the default.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<StoredPolicy>,
    attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    manual: bool,
}

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    max_attempts: u32,
    first_delay_ms: i64,
    max_delay_ms: i64,
    multiplier: f64,
    jitter: f64,
}

impl Attempts {
    /// The stored form of a job's attempts, `None` for the default (so
    /// that stores written before retries read the same).
    pub fn write(attempts: Option<&Attempts>) -> Option<String> {
        let attempts = attempts.filter(|a| **a != Attempts::default())?;
        let stored = Stored {
            policy: attempts.policy.map(|p| StoredPolicy {
                max_attempts: p.max_attempts,
                first_delay_ms: p.first_delay.num_milliseconds(),
                max_delay_ms: p.max_delay.num_milliseconds(),
                multiplier: p.multiplier(),
                jitter: p.jitter(),
            }),
            attempt: attempts.attempt,
            last_error: attempts.last_error.clone(),
            manual: attempts.manual,
        };
        serde_json::to_string(&stored).ok()
    }

    /// The attempts of a job not yet run under `policy` (`None`: the
    /// service's default).
    pub fn fresh(policy: Option<RetryPolicy>) -> Option<Box<Attempts>> {
        attempts(policy, 1, None)
    }

    /// Reads a job's attempts from their stored form (`None`, or the
    /// default: `None`).
    pub fn read(text: Option<&str>) -> Result<Option<Box<Attempts>>, Error> {
        let Some(text) = text else {
            return Ok(None);
        };
        let stored: Stored = serde_json::from_str(text)
            .map_err(|e| Error::invalid(Field::Attempts, format!("stored form: {e}")))?;
        let policy = stored
            .policy
            .map(|p| {
                RetryPolicy::new(
                    p.max_attempts,
                    p.first_delay_ms,
                    p.max_delay_ms,
                    p.multiplier,
                    p.jitter,
                )
            })
            .transpose()?;
        let attempts = Attempts {
            policy,
            attempt: stored.attempt.max(1),
            last_error: stored.last_error,
            manual: stored.manual,
        };
        Ok((attempts != Attempts::default()).then(|| Box::new(attempts)))
    }
}

impl Job {
    /// The attempt of its run in flight, or of its next or last one, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempts.as_ref().map_or(1, |a| a.attempt)
    }

    /// The error text of its last failed attempt, if its executor sent one.
    pub fn last_error(&self) -> Option<&str> {
        self.attempts.as_ref().and_then(|a| a.last_error.as_deref())
    }

    /// Its own retry policy, if it has one.
    pub fn retry_policy(&self) -> Option<RetryPolicy> {
        self.attempts.as_ref().and_then(|a| a.policy)
    }

    /// This finished one-shot job scheduled to run again now, with fresh
    /// attempts under its policy (marked manual), owing an update event. Refused for a job
    /// that has not finished, and for a recurring job (which TriggerJob
    /// runs outside its schedule).
    pub fn rerun(&self, now: DateTime<Utc>) -> Result<Job, Error> {
        self.check_not_retired()?;
        if self.recurrence.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "job {} is recurring: TriggerJob runs it once outside its schedule",
                self.id
            )));
        }
        if !matches!(self.status, JobStatus::Succeeded | JobStatus::Failed) {
            return Err(Error::FailedPrecondition(format!(
                "job {} is {:?}: only a SUCCEEDED or FAILED job can be rerun",
                self.id, self.status
            )));
        }
        let spec = JobSpec {
            schedule_time: now,
            ..self.spec.clone()
        };
        let mut job = self.rescheduled(spec, now);
        let fresh = job.attempts.take().map_or_else(Attempts::default, |a| *a);
        job.attempts = Some(Box::new(Attempts {
            manual: true,
            ..fresh
        }));
        Ok(job)
    }

    /// The attempts of a recurring job's run of a new occurrence: attempt
    /// 1 under its policy, its last error kept for GetJob.
    pub(crate) fn first_attempt(&self) -> Option<Box<Attempts>> {
        attempts(self.retry_policy(), 1, self.last_error().map(str::to_owned))
    }

    /// What this job becomes when it takes `report`, or why it does not
    /// (it is not RUNNING the firing the report names: see
    /// [`ResultDecision`]). A success finishes the run. After a failure
    /// with attempts left under its policy (or `default`), not said to be
    /// final, the run is retried after the backoff (or the delay the
    /// executor asked for) under a new fire token, at the next attempt: a
    /// one-shot job is SCHEDULED again; a recurring job's occurrence waits
    /// as a pending retry ([`Retry`]) if the retry comes before its next
    /// occurrence's fire time, so that a retry never delays or skips the
    /// next occurrence (a run still going when it comes meets the overlap
    /// policy). Otherwise the failed run ends its attempts: the job owes a
    /// dead-letter event (a one-shot job is FAILED; a recurring job goes on
    /// with its next occurrence). The error text is kept either way.
    pub fn take_report(
        &self,
        report: &RunReport,
        default: &RetryPolicy,
        now: DateTime<Utc>,
    ) -> Result<Job, ResultDecision> {
        let taken = self.result_taken(report.status, report.fire_token, now)?;
        Ok(self.after_attempt(taken, report, default, now))
    }

    /// This job holding `result` of the firing `fire_token` names (`None`:
    /// its run in flight), before any retry: a recurring job as
    /// [`Job::take_result`] decides, a one-shot job finished while it is
    /// RUNNING under that firing; or why it refuses it.
    pub fn result_taken(
        &self,
        result: ResultStatus,
        fire_token: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Job, ResultDecision> {
        if self.recurrence.is_some() {
            return match self.take_result(result, fire_token, now) {
                Some(ResultDecision::Take(taken)) => Ok(*taken),
                Some(refused) => Err(refused),
                None => Err(ResultDecision::Ignored(self.status)),
            };
        }
        let takes = self.status == JobStatus::Running
            && fire_token.is_none_or(|token| token == self.fire_token);
        if !takes {
            return Err(ResultDecision::refusal(
                self.status,
                self.fire_token,
                result,
                fire_token,
            ));
        }
        Ok(self.finished(result, now))
    }

    /// `taken` (this job having taken `report`) with the attempt's end
    /// applied: its retry, or the end of its attempts (see
    /// [`Job::take_report`]).
    fn after_attempt(
        &self,
        taken: Job,
        report: &RunReport,
        default: &RetryPolicy,
        now: DateTime<Utc>,
    ) -> Job {
        let own = self.retry_policy();
        let policy = own.unwrap_or(*default);
        let attempt = self.attempt();
        let last_error = report
            .error
            .clone()
            .or(self.last_error().map(str::to_owned));
        let failed = report.status == ResultStatus::Failed;
        let delay = report
            .retry_after
            .unwrap_or_else(|| policy.delay(attempt, rand::random()));
        let retry_at = now + delay;
        let retry = failed
            && !report.last_attempt
            && attempt < policy.max_attempts()
            && self.retry_fits(&taken, retry_at);
        if !retry {
            let mut ended = taken;
            ended.attempts = attempts(own, attempt, last_error);
            ended.pending.dead_letter |= failed;
            return ended;
        }
        let recurrence = taken.recurrence.clone().map(|mut rec| {
            let occurrence = self.recurrence.as_ref().and_then(|r| r.run.as_ref());
            rec.retry = occurrence.map(|run| Retry {
                occurrence: run.occurrence,
                at: retry_at,
            });
            rec
        });
        Job {
            spec: JobSpec {
                schedule_time: retry_at,
                ..taken.spec.clone()
            },
            status: JobStatus::Scheduled,
            fire_token: new_fire_token(),
            attempts: attempts(own, attempt + 1, last_error),
            recurrence,
            ..taken
        }
    }

    /// Whether a retry at `retry_at` fits: always for a one-shot job; for
    /// a recurring job (`taken`, its run ended), before the fire time of
    /// its next occurrence, if it has one.
    fn retry_fits(&self, taken: &Job, retry_at: DateTime<Utc>) -> bool {
        match &taken.recurrence {
            None => true,
            Some(rec) => rec.next.is_none() || retry_at < taken.spec.schedule_time,
        }
    }
}

/// A job's attempts, `None` when they are the default.
fn attempts(
    policy: Option<RetryPolicy>,
    attempt: u32,
    last_error: Option<String>,
) -> Option<Box<Attempts>> {
    let attempts = Attempts {
        policy,
        attempt,
        last_error,
        manual: false,
    };
    (attempts != Attempts::default()).then(|| Box::new(attempts))
}

#[cfg(test)]
mod tests;
