use chrono::TimeDelta;

use super::*;
use crate::domain::{
    JobType,
    recurrence::{CatchUp, DEFAULT_CATCH_UP_WINDOW},
    schedule::{Bounds, DEFAULT_MIN_INTERVAL, IntervalSchedule, Jitter, Schedule, Timing},
};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

const T0: &str = "2024-01-01T00:00:00Z";

fn minutes(n: i64) -> DateTime<Utc> {
    at(T0) + TimeDelta::minutes(n)
}

/// Every minute from T0, created just before it.
fn job_with(mode: CatchUpMode, overlap: Overlap, max_runs: Option<u64>) -> Job {
    jittered_job_with(mode, overlap, max_runs, Jitter::default())
}

/// As [`job_with`], each occurrence delayed by up to `jitter`.
fn jittered_job_with(
    mode: CatchUpMode,
    overlap: Overlap,
    max_runs: Option<u64>,
    jitter: Jitter,
) -> Job {
    let interval =
        IntervalSchedule::new(TimeDelta::minutes(1), at(T0), DEFAULT_MIN_INTERVAL).unwrap();
    let timing = Timing::new(
        Schedule::Interval(interval),
        Bounds::new(None, None, max_runs).unwrap(),
        jitter,
    )
    .unwrap();
    let spec = JobSpec {
        name: "every minute".into(),
        description: String::new(),
        schedule_time: at(T0),
        job_type: JobType::Email,
        job_data: "{}".into(),
    };
    let recurrence = RecurrenceSpec {
        timing,
        catch_up: CatchUp::new(mode, DEFAULT_CATCH_UP_WINDOW).unwrap(),
        overlap,
    };
    Job::new_recurring(spec, recurrence, at(T0) - TimeDelta::seconds(1)).unwrap()
}

fn job() -> Job {
    job_with(CatchUpMode::Once, Overlap::Skip, None)
}

fn rec(job: &Job) -> &Recurrence {
    job.recurrence.as_ref().unwrap()
}

/// `job` claimed at `now` under its current token, its run event delivered.
fn fire(job: &Job, now: DateTime<Utc>) -> Job {
    let mut fired = job.claimed(job.fire_token, now).expect("claimable");
    fired.pending = PendingEvents::NONE;
    fired
}

fn finish(job: &Job, result: ResultStatus, now: DateTime<Utc>) -> Job {
    match job.take_result(result, None, now).unwrap() {
        ResultDecision::Take(job) => *job,
        other => panic!("not taken: {other:?}"),
    }
}

#[test]
fn a_claim_runs_occurrence_n_and_arms_n_plus_1_under_a_new_token() {
    let job = job();
    assert_eq!(job.spec.schedule_time, minutes(0));
    let claimed = job.claimed(job.fire_token, minutes(0)).unwrap();
    let state = rec(&claimed);
    assert_eq!(claimed.status, JobStatus::Running);
    assert!(claimed.pending.run);
    assert_eq!(claimed.version, job.version + 1);
    let run = state.run.as_ref().unwrap();
    assert_eq!((run.token, run.occurrence), (job.fire_token, minutes(0)));
    assert!(run.stands_for.is_empty());
    assert_eq!(state.next, Some(minutes(1)));
    assert_eq!(claimed.spec.schedule_time, minutes(1));
    assert_ne!(claimed.fire_token, job.fire_token);
    assert_eq!(state.runs, 1);
    // The consumed token claims nothing more; the job stays armed for N+1.
    assert_eq!(claimed.claimed(job.fire_token, minutes(0)), None);
    assert!(claimed.is_armable());
    // One-shot claims never take a recurring job's path and vice versa.
    assert!(
        job.recurrence.is_some() && Job::claimed(&job, job.fire_token ^ 1, minutes(0)).is_none()
    );
}

#[test]
fn a_result_returns_the_job_to_scheduled_and_names_its_run() {
    let fired = fire(&job(), minutes(0));
    let token = rec(&fired).run.as_ref().unwrap().token;
    assert_eq!(
        fired.take_result(ResultStatus::Failed, Some(token ^ 1), minutes(0)),
        Some(ResultDecision::Stale(JobStatus::Running))
    );
    let ResultDecision::Take(done) = fired
        .take_result(ResultStatus::Failed, Some(token), minutes(0))
        .unwrap()
    else {
        panic!("taken")
    };
    assert_eq!(done.status, JobStatus::Scheduled);
    let last = rec(&done).last.unwrap();
    assert_eq!((last.token, last.outcome), (token, ResultStatus::Failed));
    assert!(rec(&done).run.is_none() && done.is_armable());
    for token in [Some(token), None] {
        assert_eq!(
            done.take_result(ResultStatus::Failed, token, minutes(0)),
            Some(ResultDecision::Duplicate)
        );
    }
    assert_eq!(
        done.take_result(ResultStatus::Succeeded, Some(token), minutes(0)),
        Some(ResultDecision::Ignored(JobStatus::Scheduled))
    );
    assert_eq!(
        done.take_result(ResultStatus::Succeeded, Some(token ^ 1), minutes(0)),
        Some(ResultDecision::Stale(JobStatus::Scheduled))
    );
}

#[test]
fn catch_up_once_runs_once_for_every_missed_occurrence_and_lists_them() {
    // Due at 00:00, fired only at 00:05:30 (the service was down).
    let fired = fire(&job(), minutes(5) + TimeDelta::seconds(30));
    let state = rec(&fired);
    let run = state.run.as_ref().unwrap();
    assert_eq!(run.occurrence, minutes(5));
    assert_eq!(run.stands_for, (0..=5).map(minutes).collect::<Vec<_>>());
    assert_eq!((state.runs, state.missed), (1, 0));
    assert_eq!(state.next, Some(minutes(6)));
}

#[test]
fn catch_up_skip_runs_the_latest_only_and_counts_the_missed() {
    let fired = fire(
        &job_with(CatchUpMode::Skip, Overlap::Skip, None),
        minutes(5) + TimeDelta::seconds(30),
    );
    let state = rec(&fired);
    let run = state.run.as_ref().unwrap();
    assert_eq!((run.occurrence, run.stands_for.len()), (minutes(5), 0));
    assert_eq!((state.runs, state.missed), (1, 5));
    assert_eq!(state.next, Some(minutes(6)));
}

#[test]
fn catch_up_each_runs_the_latest_max_one_after_another() {
    let job = job_with(CatchUpMode::Each { max: 3 }, Overlap::Run, None);
    let now = minutes(5) + TimeDelta::seconds(30);
    let mut fired = Vec::new();
    let mut current = fire(&job, now);
    assert_eq!(rec(&current).missed, 3, "00:00 to 00:02 dropped");
    fired.push(rec(&current).run.as_ref().unwrap().occurrence);
    while rec(&current).next.is_some_and(|next| next <= now) {
        current = fire(&current, now);
        fired.push(rec(&current).run.as_ref().unwrap().occurrence);
    }
    assert_eq!(fired, [minutes(3), minutes(4), minutes(5)]);
    assert_eq!(rec(&current).next, Some(minutes(6)));
    assert_eq!(rec(&current).runs, 3);
}

#[test]
fn occurrences_older_than_the_window_never_run() {
    let mut job = job_with(CatchUpMode::Once, Overlap::Skip, None);
    let state = job.recurrence.as_mut().unwrap();
    state.spec.catch_up = CatchUp::new(CatchUpMode::Once, TimeDelta::minutes(2)).unwrap();
    let fired = fire(&job, minutes(10));
    let state = rec(&fired);
    let run = state.run.as_ref().unwrap();
    assert_eq!(run.stands_for, [minutes(8), minutes(9), minutes(10)]);
    assert_eq!(state.missed, 8);
    // All of them beyond the window: no run, the next one armed.
    let mut late = job_with(CatchUpMode::Once, Overlap::Skip, None);
    late.recurrence.as_mut().unwrap().spec.catch_up =
        CatchUp::new(CatchUpMode::Once, TimeDelta::seconds(10)).unwrap();
    let passed = late
        .claimed(late.fire_token, minutes(3) + TimeDelta::seconds(30))
        .unwrap();
    assert_eq!(passed.status, JobStatus::Scheduled);
    assert!(!passed.pending.run);
    assert_eq!(
        (rec(&passed).missed, rec(&passed).next),
        (4, Some(minutes(4)))
    );
}

#[test]
fn overlap_skip_passes_over_an_occurrence_due_during_a_run() {
    let running = fire(&job(), minutes(0));
    let passed = running.claimed(running.fire_token, minutes(1)).unwrap();
    assert_eq!(passed.status, JobStatus::Running);
    assert!(!passed.pending.run);
    let state = rec(&passed);
    assert_eq!(state.run, rec(&running).run, "the run in flight is kept");
    assert_eq!(
        (state.runs, state.missed, state.next),
        (1, 1, Some(minutes(2)))
    );
}

#[test]
fn overlap_keep_one_holds_the_occurrence_until_the_result() {
    let running = fire(
        &job_with(CatchUpMode::Once, Overlap::KeepOne, None),
        minutes(0),
    );
    let held = running.claimed(running.fire_token, minutes(1)).unwrap();
    assert!(rec(&held).held && !held.is_armable() && !held.pending.run);
    assert_eq!(held.fire_token, running.fire_token);
    assert_eq!(held.claimed(held.fire_token, minutes(1)), None);
    let done = finish(
        &held,
        ResultStatus::Succeeded,
        minutes(1) + TimeDelta::seconds(20),
    );
    assert!(done.is_armable());
    let next = fire(&done, minutes(1) + TimeDelta::seconds(20));
    assert_eq!(rec(&next).run.as_ref().unwrap().occurrence, minutes(1));
}

#[test]
fn overlap_run_fires_anyway_and_only_the_latest_run_takes_a_result() {
    let first = fire(&job_with(CatchUpMode::Once, Overlap::Run, None), minutes(0));
    let first_token = rec(&first).run.as_ref().unwrap().token;
    let second = fire(&first, minutes(1));
    assert_eq!(rec(&second).run.as_ref().unwrap().occurrence, minutes(1));
    assert_eq!(
        second.take_result(ResultStatus::Succeeded, Some(first_token), minutes(1)),
        Some(ResultDecision::Stale(JobStatus::Running))
    );
}

#[test]
fn max_runs_ends_the_schedule_with_the_last_outcome() {
    let job = job_with(CatchUpMode::Once, Overlap::Skip, Some(2));
    let once = finish(&fire(&job, minutes(0)), ResultStatus::Succeeded, minutes(0));
    let twice = fire(&once, minutes(1));
    assert_eq!(rec(&twice).next, None);
    assert!(!twice.is_armable());
    let done = finish(&twice, ResultStatus::Failed, minutes(1));
    assert_eq!(done.status, JobStatus::Failed);
    assert!(!done.is_armable());
}

#[test]
fn a_paused_job_is_not_claimed_and_catches_up_on_resume() {
    let job = job();
    let paused = job.with_paused(true, minutes(0)).unwrap();
    assert!(paused.pending.update && !paused.is_armable());
    assert_eq!(paused.claimed(paused.fire_token, minutes(0)), None);
    let resumed = paused.with_paused(false, minutes(3)).unwrap();
    let fired = fire(&resumed, minutes(3));
    assert_eq!(rec(&fired).run.as_ref().unwrap().stands_for.len(), 4);
}

#[test]
fn an_owed_run_event_defers_the_next_occurrence() {
    let job = job();
    let claimed = job.claimed(job.fire_token, minutes(0)).unwrap();
    assert!(claimed.pending.run);
    assert_eq!(claimed.claimed(claimed.fire_token, minutes(1)), None);
}

#[test]
fn a_trigger_runs_now_outside_the_schedule_once_at_a_time() {
    let job = job();
    let triggered = job.triggered(minutes(0) - TimeDelta::seconds(30)).unwrap();
    let state = rec(&triggered);
    assert_eq!(triggered.status, JobStatus::Running);
    assert_eq!((state.runs, state.next), (0, Some(minutes(0))));
    assert_eq!(triggered.fire_token, job.fire_token);
    assert!(matches!(
        triggered.triggered(minutes(0)),
        Err(Error::FailedPrecondition(_))
    ));
    let one_shot = Job::new_scheduled(job.spec.clone(), minutes(0));
    assert!(matches!(
        one_shot.triggered(minutes(0)),
        Err(Error::FailedPrecondition(_))
    ));
    assert!(
        one_shot
            .take_result(ResultStatus::Succeeded, None, minutes(0))
            .is_none()
    );
}

#[test]
fn the_stored_form_reads_back_the_same_recurrence() {
    let mut job = job_with(CatchUpMode::Each { max: 7 }, Overlap::KeepOne, Some(9));
    job = fire(&job, minutes(2));
    job = finish(&job, ResultStatus::Succeeded, minutes(2));
    job = fire(&job, minutes(9));
    let state = rec(&job);
    let text = state.to_stored();
    assert_eq!(&Recurrence::from_stored(&text).unwrap(), state);
    let err = Recurrence::from_stored("{}").unwrap_err();
    assert!(err.to_string().starts_with("invalid recurrence: "), "{err}");
}

#[test]
fn a_run_was_due_at_its_occurrence_plus_its_jitter() {
    let jitter = Jitter::new(TimeDelta::seconds(30)).unwrap();
    let job = jittered_job_with(CatchUpMode::Once, Overlap::Skip, None, jitter);
    let fire_time = job.spec.schedule_time;
    assert!(fire_time >= minutes(0) && fire_time < minutes(0) + TimeDelta::seconds(30));
    assert_eq!(
        job.firing_due(),
        fire_time,
        "before the claim: its schedule time"
    );
    let claimed = job.claimed(job.fire_token, fire_time).unwrap();
    assert_eq!(rec(&claimed).run.as_ref().unwrap().occurrence, minutes(0));
    assert_eq!(claimed.firing_due(), fire_time);
    assert_ne!(
        claimed.spec.schedule_time, fire_time,
        "the next occurrence's"
    );
}

/// `job` (every minute) under a policy of `attempts` runs, 10 s apart.
fn retrying(attempts: u32) -> Job {
    use crate::domain::retry::{Attempts, RetryPolicy};
    let mut job = job();
    job.attempts = Attempts::fresh(Some(
        RetryPolicy::new(attempts, 10_000, 10_000, 1.0, 0.0).unwrap(),
    ));
    job
}

fn failure() -> crate::domain::report::RunReport {
    crate::domain::report::RunReport::of(ResultStatus::Failed, None)
}

fn report_failure(job: &Job, now: DateTime<Utc>) -> Job {
    let default = crate::domain::retry::RetryPolicy::NONE;
    let mut taken = job.take_report(&failure(), &default, now).unwrap();
    taken.pending = PendingEvents::NONE;
    taken
}

#[test]
fn a_failed_occurrence_is_retried_before_the_next_and_the_next_stays_in_place() {
    let first = fire(&retrying(3), minutes(0));
    let next_fire = first.spec.schedule_time;
    let failed = report_failure(&first, minutes(0) + TimeDelta::seconds(5));
    let retry = rec(&failed).retry.expect("a retry pending");
    assert_eq!(retry.occurrence, minutes(0));
    assert_eq!(retry.at, minutes(0) + TimeDelta::seconds(15));
    assert_eq!(failed.spec.schedule_time, retry.at, "armed for the retry");
    assert_eq!((failed.status, failed.attempt()), (JobStatus::Scheduled, 2));
    assert_ne!(failed.fire_token, first.fire_token);
    assert!(failed.is_armable());

    let again = fire(&failed, retry.at);
    let run = rec(&again).run.clone().expect("the retry runs");
    assert_eq!((run.occurrence, run.retry_at), (minutes(0), Some(retry.at)));
    assert_eq!(again.firing_due(), retry.at);
    assert_eq!(
        again.spec.schedule_time, next_fire,
        "the next occurrence again"
    );
    assert_eq!(rec(&again).retry, None);
    assert_eq!(
        rec(&again).runs,
        rec(&first).runs,
        "a retry is no run of the schedule"
    );

    // The next occurrence starts at attempt 1.
    let done = finish(
        &again,
        ResultStatus::Succeeded,
        minutes(0) + TimeDelta::seconds(20),
    );
    let next = fire(&done, minutes(1));
    assert_eq!(next.attempt(), 1);
}

#[test]
fn a_retry_that_would_reach_the_next_occurrence_is_not_made() {
    let first = fire(&retrying(3), minutes(0));
    // Failed at 0:55: a retry at 1:05 would come after the next occurrence.
    let failed = report_failure(&first, minutes(0) + TimeDelta::seconds(55));
    assert_eq!(rec(&failed).retry, None);
    assert_eq!(failed.spec.schedule_time, first.spec.schedule_time);
    let owed = first
        .take_report(
            &failure(),
            &crate::domain::retry::RetryPolicy::NONE,
            minutes(1),
        )
        .unwrap();
    assert!(owed.pending.dead_letter, "the occurrence failed for good");
}

#[test]
fn no_trigger_while_a_retry_is_pending_and_the_stored_form_keeps_it() {
    let failed = report_failure(&fire(&retrying(3), minutes(0)), minutes(0));
    assert!(matches!(
        failed.triggered(minutes(0)),
        Err(Error::FailedPrecondition(_))
    ));
    let state = rec(&failed);
    assert_eq!(&Recurrence::from_stored(&state.to_stored()).unwrap(), state);
    let running = fire(&failed, minutes(0) + TimeDelta::seconds(10));
    let state = rec(&running);
    assert_eq!(&Recurrence::from_stored(&state.to_stored()).unwrap(), state);
}
