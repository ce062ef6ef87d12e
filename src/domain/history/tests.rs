use chrono::TimeDelta;

use super::*;
use crate::domain::Error;
use crate::domain::{
    JobSpec, JobType, PendingEvents,
    recurrence::{CatchUp, CatchUpMode, DEFAULT_CATCH_UP_WINDOW, Overlap, RecurrenceSpec},
    retry::RetryPolicy,
    schedule::{Bounds, DEFAULT_MIN_INTERVAL, IntervalSchedule, Jitter, Schedule, Timing},
};

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

fn spec() -> JobSpec {
    JobSpec {
        name: "mail".into(),
        description: String::new(),
        schedule_time: at(0),
        job_type: JobType::Email,
        job_data: "{}".into(),
    }
}

/// A one-shot job due at 0, allowed three attempts.
fn one_shot() -> Job {
    let mut job = Job::new_scheduled(spec(), at(-10));
    job.attempts = crate::domain::retry::Attempts::fresh(Some(
        RetryPolicy::new(3, 1_000, 1_000, 1.0, 0.0).unwrap(),
    ));
    job
}

/// Every minute from 0.
fn every_minute() -> Job {
    let interval =
        IntervalSchedule::new(TimeDelta::minutes(1), at(0), DEFAULT_MIN_INTERVAL).unwrap();
    let timing = Timing::new(
        Schedule::Interval(interval),
        Bounds::new(None, None, None).unwrap(),
        Jitter::default(),
    )
    .unwrap();
    let recurrence = RecurrenceSpec {
        timing,
        catch_up: CatchUp::new(CatchUpMode::Each { max: 10 }, DEFAULT_CATCH_UP_WINDOW).unwrap(),
        overlap: Overlap::Run,
    };
    Job::new_recurring(spec(), recurrence, at(-10)).unwrap()
}

fn claim(job: &Job, now: DateTime<Utc>) -> (Job, Vec<Run>) {
    let mut claimed = job.claimed(job.fire_token, now).expect("claimable");
    let ended = changes(job, &claimed, None, now);
    claimed.pending = PendingEvents::NONE;
    (claimed, ended)
}

#[test]
fn a_claimed_job_holds_its_run_in_flight_and_a_claim_records_nothing() {
    let job = one_shot();
    assert_eq!(job.run_in_flight(), None);
    let (claimed, ended) = claim(&job, at(2));
    assert!(ended.is_empty(), "nothing ended");
    let run = claimed.run_in_flight().expect("in flight");
    assert_eq!(run.fire_token, claimed.fire_token);
    assert_eq!((run.attempt, run.cause), (1, RunCause::Scheduled));
    assert_eq!((run.outcome, run.finished_at), (RunOutcome::Running, None));
    assert_eq!(run.lateness(), TimeDelta::seconds(2));
}

#[test]
fn a_failure_records_the_run_whole_and_its_retry_is_a_run_of_its_own() {
    let (running, _) = claim(&one_shot(), at(0));
    let report = RunReport::of(ResultStatus::Failed, None)
        .with_details(
            Some("smtp down".into()),
            Some("mailer-1".into()),
            false,
            None,
        )
        .unwrap();
    let retry = running
        .take_report(&report, &RetryPolicy::NONE, at(1))
        .unwrap();
    let expected = Run {
        finished_at: Some(at(1)),
        outcome: RunOutcome::Failed,
        error: Some("smtp down".into()),
        executor: Some("mailer-1".into()),
        ..running.run_in_flight().unwrap()
    };
    assert_eq!(changes(&running, &retry, Some(&report), at(1)), [expected]);
    let (retrying, _) = claim(&retry, at(3));
    let run = retrying.run_in_flight().unwrap();
    assert_eq!((run.attempt, run.cause), (2, RunCause::Retry));
    assert_ne!(run.fire_token, running.fire_token);
}

#[test]
fn a_run_gone_without_a_report_timed_out() {
    let (running, _) = claim(&one_shot(), at(0));
    let retried = running.retried(at(60));
    let ended = changes(&running, &retried, None, at(60));
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].outcome, RunOutcome::TimedOut);
    assert_eq!(ended[0].fire_token, running.fire_token);
    assert_eq!(ended[0].fired_at, at(0));
}

#[test]
fn changes_without_a_run_ending_record_nothing() {
    let job = one_shot();
    let updated = job.rescheduled(spec(), at(1));
    assert!(changes(&job, &updated, None, at(1)).is_empty());
    let (running, _) = claim(&job, at(0));
    let mut delivered = running.clone();
    delivered.version += 1;
    assert!(changes(&running, &delivered, None, at(1)).is_empty());
}

#[test]
fn recurring_runs_are_scheduled_caught_up_or_manual() {
    let job = every_minute();
    let (on_time, _) = claim(&job, at(1));
    let first = on_time.run_in_flight().unwrap();
    assert_eq!(
        (first.cause, first.due_at, first.fired_at),
        (RunCause::Scheduled, at(0), at(1))
    );
    // Occurrence 1:00 claimed at 5:00, with 2:00 to 5:00 due as well: the
    // run in flight is superseded (overlap `run`).
    let (late, ended) = claim(&on_time, at(300));
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].fire_token, ended[0].outcome),
        (first.fire_token, RunOutcome::Superseded)
    );
    assert_eq!(late.run_in_flight().unwrap().cause, RunCause::CatchUp);

    let report = RunReport::of(ResultStatus::Succeeded, None);
    let done = match on_time.take_result(report.status, None, at(2)).unwrap() {
        crate::domain::recurrence::ResultDecision::Take(job) => *job,
        other => panic!("{other:?}"),
    };
    let triggered = done.triggered(at(10)).unwrap();
    assert_eq!(triggered.run_in_flight().unwrap().cause, RunCause::Manual);
}

#[test]
fn codes_and_names_round_trip() {
    for cause in RunCause::ALL {
        assert_eq!(RunCause::from_code(cause.code()), Some(cause));
    }
    for outcome in RunOutcome::ALL {
        assert_eq!(RunOutcome::from_code(outcome.code()), Some(outcome));
    }
    assert_eq!(RunOutcome::from_code(0), None);
    assert_eq!(RunCause::CatchUp.as_str(), "catch_up");
}

#[test]
fn only_a_finished_one_shot_job_owing_nothing_retires_and_then_takes_no_rerun() {
    let job = one_shot();
    assert!(job.retired(at(9)).is_none(), "scheduled");
    let (running, _) = claim(&job, at(0));
    assert!(running.retired(at(9)).is_none(), "running");
    let done = running.finished(ResultStatus::Succeeded, at(1));
    let retired = done.retired(at(9)).expect("finished, owing nothing");
    assert!(retired.pending.delete && retired.version == done.version + 1);
    assert!(retired.retired(at(10)).is_none(), "it owes its event");
    assert!(matches!(
        retired.rerun(at(10)),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(done.rerun(at(10)).is_ok());
    assert!(every_minute().retired(at(9)).is_none(), "recurring");
}

#[test]
fn a_rerun_is_recorded_as_manual_and_its_retry_as_a_retry() {
    let (running, _) = claim(&one_shot(), at(0));
    assert_eq!(running.run_in_flight().unwrap().cause, RunCause::Scheduled);
    let done = running.finished(ResultStatus::Succeeded, at(1));
    let rerun = done.rerun(at(10)).unwrap();
    let (again, _) = claim(&rerun, at(10));
    let record = again.run_in_flight().unwrap();
    assert_eq!((record.cause, record.attempt), (RunCause::Manual, 1));
    let failed = RunReport::of(ResultStatus::Failed, None);
    let retry = again
        .take_report(&failed, &RetryPolicy::NONE, at(11))
        .unwrap();
    let (retrying, _) = claim(&retry, retry.spec.schedule_time);
    let record = retrying.run_in_flight().unwrap();
    assert_eq!((record.cause, record.attempt), (RunCause::Retry, 2));
}
