use super::*;
use crate::domain::{JobType, PendingEvents};

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new(max_attempts, 10_000, 60_000, 2.0, 0.0).unwrap()
}

/// A one-shot job RUNNING under `policy` (`None`: the default's).
fn running(policy: Option<RetryPolicy>) -> Job {
    let spec = JobSpec {
        name: "mail".into(),
        description: String::new(),
        schedule_time: at(0),
        job_type: JobType::Email,
        job_data: "{}".into(),
    };
    let mut job = Job::new_scheduled(spec, at(-1_000));
    job.attempts = policy.map(|policy| {
        Box::new(Attempts {
            policy: Some(policy),
            ..Attempts::default()
        })
    });
    delivered(job.claimed(job.fire_token, at(0)).unwrap())
}

/// `job` with its owed events published.
fn delivered(mut job: Job) -> Job {
    job.pending = PendingEvents::NONE;
    job
}

fn failed(error: &str) -> RunReport {
    RunReport::of(ResultStatus::Failed, None)
        .with_details(Some(error.into()), None, false, None)
        .unwrap()
}

#[test]
fn delays_grow_by_the_multiplier_up_to_the_largest() {
    let p = RetryPolicy::new(10, 1_000, 10_000, 3.0, 0.0).unwrap();
    let delays: Vec<i64> = (1..=5).map(|n| p.backoff(n).num_milliseconds()).collect();
    assert_eq!(delays, [1_000, 3_000, 9_000, 10_000, 10_000]);
    let half = RetryPolicy::new(10, 1_000, 10_000, 1.5, 0.0).unwrap();
    assert_eq!(half.backoff(2).num_milliseconds(), 1_500);
}

#[test]
fn jitter_takes_at_most_its_share_off_a_delay() {
    let p = RetryPolicy::new(3, 10_000, 10_000, 2.0, 0.25).unwrap();
    assert_eq!(p.delay(1, 0.0).num_milliseconds(), 10_000);
    assert_eq!(p.delay(1, 0.5).num_milliseconds(), 8_750);
    assert_eq!(p.delay(1, 0.8).num_milliseconds(), 8_000);
    assert!(p.delay(1, 0.999_999) >= TimeDelta::milliseconds(7_500));
}

#[test]
fn a_policy_out_of_bounds_is_refused_naming_the_value() {
    let cases = [
        (RetryPolicy::new(0, 1, 1, 2.0, 0.0), Field::RetryMaxAttempts),
        (
            RetryPolicy::new(101, 1, 1, 2.0, 0.0),
            Field::RetryMaxAttempts,
        ),
        (RetryPolicy::new(3, -1, 1, 2.0, 0.0), Field::RetryFirstDelay),
        (
            RetryPolicy::new(3, 2_000, 1_000, 2.0, 0.0),
            Field::RetryMaxDelay,
        ),
        (
            RetryPolicy::new(3, 1, RETRY_DELAY_MAX.num_milliseconds() + 1, 2.0, 0.0),
            Field::RetryMaxDelay,
        ),
        (RetryPolicy::new(3, 1, 1, 0.5, 0.0), Field::RetryMultiplier),
        (
            RetryPolicy::new(3, 1, 1, f64::NAN, 0.0),
            Field::RetryMultiplier,
        ),
        (RetryPolicy::new(3, 1, 1, 2.0, 1.5), Field::RetryJitter),
    ];
    for (result, field) in cases {
        assert_eq!(result.unwrap_err().invalid_field(), field);
    }
}

#[test]
fn a_failure_with_attempts_left_is_scheduled_again_after_the_backoff() {
    let job = running(Some(policy(3)));
    let retry = job
        .take_report(&failed("SMTP 451"), &RetryPolicy::NONE, at(500))
        .unwrap();
    assert_eq!(retry.status, JobStatus::Scheduled);
    assert_eq!(retry.spec.schedule_time, at(10_500));
    assert_ne!(retry.fire_token, job.fire_token, "a new firing");
    assert_eq!(retry.version, job.version + 1);
    assert_eq!(retry.attempt(), 2);
    assert_eq!(retry.last_error(), Some("SMTP 451"));
    assert!(
        !retry.pending.any(),
        "the retry's run event comes when it fires"
    );
    // The second failure waits twice as long; the third is the last.
    let second = delivered(retry.claimed(retry.fire_token, at(10_500)).unwrap());
    let third = second
        .take_report(&failed("again"), &RetryPolicy::NONE, at(11_000))
        .unwrap();
    assert_eq!(third.spec.schedule_time, at(31_000));
    let last = delivered(third.claimed(third.fire_token, at(31_000)).unwrap());
    let end = last
        .take_report(&failed("still"), &RetryPolicy::NONE, at(32_000))
        .unwrap();
    assert_eq!(end.status, JobStatus::Failed);
    assert_eq!(end.attempt(), 3);
    assert_eq!(end.last_error(), Some("still"));
    assert!(!retry.pending.dead_letter && !third.pending.dead_letter);
    assert!(
        end.pending.dead_letter,
        "failed for good: a dead letter is owed"
    );
}

#[test]
fn the_default_policy_applies_to_a_job_without_its_own() {
    let job = running(None);
    let ended = job
        .take_report(&failed("x"), &RetryPolicy::NONE, at(1))
        .unwrap();
    assert_eq!(ended.status, JobStatus::Failed, "one attempt by default");
    let retried = job.take_report(&failed("x"), &policy(2), at(1)).unwrap();
    assert_eq!(retried.status, JobStatus::Scheduled);
    assert_eq!(retried.retry_policy(), None, "the default is not copied in");
}

#[test]
fn a_final_failure_and_a_requested_delay_are_obeyed() {
    let job = running(Some(policy(5)));
    let final_report = RunReport::of(ResultStatus::Failed, None)
        .with_details(None, None, true, None)
        .unwrap();
    let ended = job
        .take_report(&final_report, &RetryPolicy::NONE, at(1))
        .unwrap();
    assert_eq!(ended.status, JobStatus::Failed);
    let later = RunReport::of(ResultStatus::Failed, None)
        .with_details(None, None, false, Some(90_000))
        .unwrap();
    let retry = job.take_report(&later, &RetryPolicy::NONE, at(1)).unwrap();
    assert_eq!(retry.spec.schedule_time, at(90_001));
}

#[test]
fn only_the_running_firing_takes_a_report() {
    let job = running(Some(policy(3)));
    let other = RunReport::of(ResultStatus::Succeeded, Some(job.fire_token ^ 1));
    assert_eq!(
        job.take_report(&other, &RetryPolicy::NONE, at(1)),
        Err(ResultDecision::Stale(JobStatus::Running))
    );
    let mine = RunReport::of(ResultStatus::Succeeded, Some(job.fire_token));
    let done = job.take_report(&mine, &RetryPolicy::NONE, at(1)).unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(!done.pending.dead_letter);
    assert_eq!(
        done.take_report(&mine, &RetryPolicy::NONE, at(2)),
        Err(ResultDecision::Duplicate)
    );
}

#[test]
fn a_finished_job_reruns_now_with_fresh_attempts_and_others_are_refused() {
    let job = running(Some(policy(2)));
    assert!(
        matches!(job.rerun(at(1)), Err(Error::FailedPrecondition(_))),
        "running"
    );
    let retry = job
        .take_report(&failed("x"), &RetryPolicy::NONE, at(1))
        .unwrap();
    let last = delivered(retry.claimed(retry.fire_token, at(10_001)).unwrap());
    let failed_job = last
        .take_report(&failed("y"), &RetryPolicy::NONE, at(10_002))
        .unwrap();
    assert_eq!(
        (failed_job.status, failed_job.attempt()),
        (JobStatus::Failed, 2)
    );
    let rerun = failed_job.rerun(at(20_000)).unwrap();
    assert_eq!(rerun.status, JobStatus::Scheduled);
    assert_eq!(rerun.spec.schedule_time, at(20_000));
    assert_ne!(rerun.fire_token, failed_job.fire_token);
    assert_eq!((rerun.attempt(), rerun.last_error()), (1, None));
    assert_eq!(rerun.retry_policy(), Some(policy(2)), "the policy stays");
    assert!(rerun.pending.update, "its update event says it runs again");
}

#[test]
fn attempts_round_trip_through_their_stored_form() {
    assert_eq!(Attempts::write(Some(&Attempts::default())), None);
    assert_eq!(Attempts::read(None).unwrap(), None);
    assert_eq!(Attempts::read(Some("{\"attempt\": 1}")).unwrap(), None);
    let attempts = Attempts {
        policy: Some(RetryPolicy::new(4, 250, 9_000, 1.5, 0.1).unwrap()),
        attempt: 3,
        last_error: Some("timeout".into()),
        manual: true,
    };
    let text = Attempts::write(Some(&attempts)).unwrap();
    assert_eq!(
        Attempts::read(Some(&text)).unwrap().as_deref(),
        Some(&attempts)
    );
    let err = Attempts::read(Some("{\"attempt\": \"x\"}")).unwrap_err();
    assert_eq!(err.invalid_field(), Field::Attempts);
}
