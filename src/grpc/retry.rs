//! Retry policies on the wire: a `RetryPolicy` message read against the
//! service's default (each unset field takes the default's value), and a
//! job's policy and attempts written into its `Job` message.

use crate::{
    domain::{
        Error, Field, Job,
        retry::{MAX_ATTEMPTS_LIMIT, RetryPolicy},
    },
    grpc::proto,
};

/// The policy a request's `retry_policy` asks for, its unset fields taken
/// from `default`; `None` when the request has none.
pub fn policy_of(
    wire: Option<proto::RetryPolicy>,
    default: &RetryPolicy,
) -> Result<Option<RetryPolicy>, Error> {
    let Some(wire) = wire else {
        return Ok(None);
    };
    let max_attempts = match wire.max_attempts {
        None => default.max_attempts(),
        Some(n) => u32::try_from(n).map_err(|_| {
            Error::invalid(
                Field::RetryMaxAttempts,
                format!("must be from 1 to {MAX_ATTEMPTS_LIMIT}, got {n}"),
            )
        })?,
    };
    RetryPolicy::new(
        max_attempts,
        wire.first_delay_ms
            .unwrap_or_else(|| default.first_delay().num_milliseconds()),
        wire.max_delay_ms
            .unwrap_or_else(|| default.max_delay().num_milliseconds()),
        wire.multiplier.unwrap_or_else(|| default.multiplier()),
        wire.jitter.unwrap_or_else(|| default.jitter()),
    )
    .map(Some)
}

/// A policy as the wire shows it, every field set.
pub fn policy_message(policy: &RetryPolicy) -> proto::RetryPolicy {
    proto::RetryPolicy {
        max_attempts: i32::try_from(policy.max_attempts()).ok(),
        first_delay_ms: Some(policy.first_delay().num_milliseconds()),
        max_delay_ms: Some(policy.max_delay().num_milliseconds()),
        multiplier: Some(policy.multiplier()),
        jitter: Some(policy.jitter()),
    }
}

/// Writes `job`'s policy and attempts into its message.
pub fn add_attempts(wire: &mut proto::Job, job: &Job) {
    wire.retry_policy = job.retry_policy().as_ref().map(policy_message);
    wire.attempt = i32::try_from(job.attempt()).unwrap_or(i32::MAX);
    wire.last_error = job.last_error().unwrap_or_default().to_owned();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_take_the_default_and_bad_ones_name_themselves() {
        let default = RetryPolicy::new(3, 10_000, 3_600_000, 2.0, 0.1).unwrap();
        assert_eq!(policy_of(None, &default).unwrap(), None);
        let asked = proto::RetryPolicy {
            max_attempts: Some(5),
            first_delay_ms: Some(500),
            ..Default::default()
        };
        let policy = policy_of(Some(asked), &default).unwrap().unwrap();
        assert_eq!(
            policy,
            RetryPolicy::new(5, 500, 3_600_000, 2.0, 0.1).unwrap()
        );
        assert_eq!(
            policy_of(Some(policy_message(&policy)), &RetryPolicy::NONE).unwrap(),
            Some(policy),
            "a policy read back from its message is the same"
        );
        for (bad, field) in [
            (
                proto::RetryPolicy {
                    max_attempts: Some(-1),
                    ..Default::default()
                },
                Field::RetryMaxAttempts,
            ),
            (
                proto::RetryPolicy {
                    max_attempts: Some(0),
                    ..Default::default()
                },
                Field::RetryMaxAttempts,
            ),
            (
                proto::RetryPolicy {
                    max_delay_ms: Some(1),
                    ..Default::default()
                },
                Field::RetryMaxDelay,
            ),
            (
                proto::RetryPolicy {
                    jitter: Some(-0.5),
                    ..Default::default()
                },
                Field::RetryJitter,
            ),
        ] {
            match policy_of(Some(bad), &default) {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected {field}, got {other:?}"),
            }
        }
    }
}
