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

fn claim(job: &Job, now: DateTime<Utc>) -> (Job, Vec<RunChange>) {
    let mut claimed = job.claimed(job.fire_token, now).expect("claimable");
    let changes = changes(job, &claimed, None, now);
    claimed.pending = PendingEvents::NONE;
    (claimed, changes)
}

fn started(changes: &[RunChange]) -> &Run {
    match changes {
        [RunChange::Started(run)] => run,
        other => panic!("not one start: {other:?}"),
    }
}

#[test]
fn a_claim_starts_a_run_with_its_token_attempt_and_lateness() {
    let job = one_shot();
    let (claimed, changes) = claim(&job, at(2));
    let run = started(&changes);
    assert_eq!(run.fire_token, claimed.fire_token);
    assert_eq!((run.attempt, run.cause), (1, RunCause::Scheduled));
    assert_eq!(run.outcome, RunOutcome::Running);
    assert_eq!(run.lateness(), TimeDelta::seconds(2));
    assert_eq!(run.finished_at, None);
}

#[test]
fn a_failure_ends_the_run_and_its_retry_starts_a_new_one_as_a_retry() {
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
    let ended = changes(&running, &retry, Some(&report), at(1));
    let expected = RunEnd {
        job_id: running.id,
        fire_token: running.fire_token,
        finished_at: at(1),
        outcome: RunOutcome::Failed,
        error: Some("smtp down".into()),
        executor: Some("mailer-1".into()),
    };
    assert_eq!(ended, [RunChange::Ended(expected)]);
    let (_, changes) = claim(&retry, at(3));
    let run = started(&changes);
    assert_eq!((run.attempt, run.cause), (2, RunCause::Retry));
    assert_ne!(run.fire_token, running.fire_token);
}

#[test]
fn a_run_gone_without_a_report_timed_out() {
    let (running, _) = claim(&one_shot(), at(0));
    let retried = running.retried(at(60));
    match changes(&running, &retried, None, at(60)).as_slice() {
        [RunChange::Ended(end)] => {
            assert_eq!(end.outcome, RunOutcome::TimedOut);
            assert_eq!(end.fire_token, running.fire_token);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn changes_without_a_run_starting_or_ending_write_nothing() {
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
    let (on_time, first) = claim(&job, at(1));
    assert_eq!(started(&first).cause, RunCause::Scheduled);
    assert_eq!(started(&first).due_at, at(0));
    // Occurrence 1:00 claimed at 5:00, with 2:00 to 5:00 due as well.
    let (_, late) = claim(&on_time, at(300));
    match late.as_slice() {
        [RunChange::Ended(end), RunChange::Started(run)] => {
            assert_eq!(end.outcome, RunOutcome::Superseded);
            assert_eq!(run.cause, RunCause::CatchUp);
        }
        other => panic!("{other:?}"),
    }

    let report = RunReport::of(ResultStatus::Succeeded, None);
    let done = match on_time.take_result(report.status, None, at(2)).unwrap() {
        crate::domain::recurrence::ResultDecision::Take(job) => *job,
        other => panic!("{other:?}"),
    };
    let triggered = done.triggered(at(10)).unwrap();
    let manual = changes(&done, &triggered, None, at(10));
    assert_eq!(started(&manual).cause, RunCause::Manual);
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
