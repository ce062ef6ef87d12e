//! Recurring jobs: the claim that fires occurrence N stores occurrence N+1
//! and its new fire token in the same write, and keeps the job armed while
//! the run is in flight; a result returns the job to SCHEDULED for its next
//! occurrence (or to the outcome when none is left); a paused job is neither
//! armed nor claimed. One-shot jobs in the same batch are claimed as before.

use scheduler_service::domain::{
    recurrence::{CatchUp, CatchUpMode, Overlap, Recurrence, RecurrenceSpec},
    schedule::{Bounds, DEFAULT_MIN_INTERVAL, IntervalSchedule, Jitter, Schedule, Timing},
};

use super::support::*;

cases!(
    a_claim_fires_occurrence_n_and_stores_n_plus_1_in_the_same_write,
    a_result_returns_the_job_to_scheduled_for_its_next_occurrence,
    a_paused_job_is_neither_armed_nor_claimed_until_resumed,
    a_batch_claims_one_shot_and_recurring_jobs_alike,
);

/// A job every minute from half a minute ago (its first occurrence is due),
/// at most `max_runs` runs.
pub fn every_minute(name: &str, max_runs: Option<u64>) -> Job {
    let anchor = now() - TimeDelta::seconds(30);
    let interval = IntervalSchedule::new(TimeDelta::minutes(1), anchor, DEFAULT_MIN_INTERVAL)
        .expect("interval");
    let timing = Timing::new(
        Schedule::Interval(interval),
        Bounds::new(None, None, max_runs).expect("bounds"),
        Jitter::default(),
    )
    .expect("timing");
    let recurrence = RecurrenceSpec {
        timing,
        catch_up: CatchUp::new(CatchUpMode::Skip, TimeDelta::hours(1)).expect("catch-up"),
        overlap: Overlap::Skip,
    };
    Job::new_recurring(spec(name, anchor), recurrence, anchor).expect("recurring job")
}

pub fn state(job: &Job) -> &Recurrence {
    job.recurrence.as_ref().expect("a recurring job")
}

async fn a_claim_fires_occurrence_n_and_stores_n_plus_1_in_the_same_write(db: &Store) {
    let job = every_minute("every minute", None);
    db.insert(&job).await.expect("insert");
    let first = state(&job).next.expect("first occurrence");
    let at = now();
    let claimed = db
        .claim(job.id, job.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.status, JobStatus::Running);
    assert!(claimed.pending.run);
    assert_eq!(claimed.version, job.version + 1);
    let run = state(&claimed).run.clone().expect("a run in flight");
    assert_eq!((run.token, run.occurrence), (job.fire_token, first));
    let second = first + TimeDelta::minutes(1);
    assert_eq!(state(&claimed).next, Some(second));
    assert_eq!(claimed.spec.schedule_time, second);
    assert_ne!(claimed.fire_token, job.fire_token);
    assert_eq!(db.get(job.id).await.expect("get"), Some(claimed.clone()));

    // The occurrence's token is consumed, one by one or in a batch.
    assert_eq!(
        db.claim(job.id, job.fire_token, at).await.expect("again"),
        None
    );
    let batch = db
        .claim_many(&[(job.id, job.fire_token)], at)
        .await
        .expect("batch");
    assert!(batch.is_empty(), "{batch:?}");
    assert_eq!(db.get(job.id).await.expect("get"), Some(claimed.clone()));

    // Armed for N+1 while the run is in flight.
    let due = db
        .scheduled_before(second + TimeDelta::seconds(1))
        .await
        .expect("due")
        .all_readable();
    assert_eq!(due, [DueJob::from(&claimed)]);
}

async fn a_result_returns_the_job_to_scheduled_for_its_next_occurrence(db: &Store) {
    let job = every_minute("every minute", None);
    db.insert(&job).await.expect("insert");
    let at = now();
    let claimed = db
        .claim(job.id, job.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    let token = job.fire_token;
    assert_eq!(
        db.store_result(
            job.id,
            &RunReport::of(ResultStatus::Succeeded, Some(token ^ 1)),
            at
        )
        .await
        .expect("stale"),
        ResultOutcome::Stale(JobStatus::Running)
    );
    assert_eq!(
        db.store_result(
            job.id,
            &RunReport::of(ResultStatus::Succeeded, Some(token)),
            at
        )
        .await
        .expect("result"),
        ResultOutcome::Stored
    );
    let done = db.get(job.id).await.expect("get").expect("job");
    assert_eq!(done.status, JobStatus::Scheduled);
    assert_eq!(done.version, claimed.version + 1);
    assert_eq!(done.fire_token, claimed.fire_token, "still armed for N+1");
    let last = state(&done).last.expect("last run");
    assert_eq!((last.token, last.outcome), (token, ResultStatus::Succeeded));
    assert!(state(&done).run.is_none());
    assert_eq!(
        db.store_result(
            job.id,
            &RunReport::of(ResultStatus::Succeeded, Some(token)),
            at
        )
        .await
        .expect("again"),
        ResultOutcome::Duplicate
    );

    // Its last run: the job takes the run's outcome and leaves the window.
    let once = every_minute("once only", Some(1));
    db.insert(&once).await.expect("insert");
    let fired = db
        .claim(once.id, once.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(state(&fired).next, None);
    assert_eq!(
        db.store_result(once.id, &RunReport::of(ResultStatus::Failed, None), at)
            .await
            .expect("result"),
        ResultOutcome::Stored
    );
    let ended = db.get(once.id).await.expect("get").expect("job");
    assert_eq!(ended.status, JobStatus::Failed);
    let due = db
        .scheduled_before(now() + TimeDelta::days(1))
        .await
        .expect("due")
        .all_readable();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [job.id]);
}

async fn a_paused_job_is_neither_armed_nor_claimed_until_resumed(db: &Store) {
    let job = every_minute("paused", None);
    db.insert(&job).await.expect("insert");
    let paused = job.with_paused(true, now()).expect("pause");
    assert!(
        db.replace_if(&paused, job.version, &[])
            .await
            .expect("write")
    );
    let horizon = now() + TimeDelta::days(1);
    let due = db
        .scheduled_before(horizon)
        .await
        .expect("due")
        .all_readable();
    assert!(due.is_empty(), "{due:?}");
    assert_eq!(
        db.claim(job.id, job.fire_token, now())
            .await
            .expect("claim"),
        None
    );
    assert_eq!(db.get(job.id).await.expect("get"), Some(paused.clone()));

    let resumed = paused.with_paused(false, now()).expect("resume");
    assert!(
        db.replace_if(&resumed, paused.version, &[])
            .await
            .expect("write")
    );
    let due = db
        .scheduled_before(horizon)
        .await
        .expect("due")
        .all_readable();
    assert_eq!(due, [DueJob::from(&resumed)]);
    assert!(
        db.claim(job.id, job.fire_token, now())
            .await
            .expect("claim")
            .is_some()
    );
}

async fn a_batch_claims_one_shot_and_recurring_jobs_alike(db: &Store) {
    let one_shot = job("one-shot", now() - TimeDelta::seconds(1));
    let recurring = every_minute("recurring", None);
    db.insert_all(&[one_shot.clone(), recurring.clone()]).await;
    let at = now();
    let claimed = db
        .claim_many(
            &[
                (one_shot.id, one_shot.fire_token),
                (recurring.id, recurring.fire_token),
            ],
            at,
        )
        .await
        .expect("batch");
    let claimed = by_id(&claimed, |j| j.id);
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    for job in &claimed {
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(db.get(job.id).await.expect("get").as_ref(), Some(job));
    }
    let one = claimed
        .iter()
        .find(|j| j.id == one_shot.id)
        .expect("one-shot");
    assert_eq!(
        one.fire_token, one_shot.fire_token,
        "one-shot claims keep their token"
    );
    assert!(one.recurrence.is_none());
    let rec = claimed
        .iter()
        .find(|j| j.id == recurring.id)
        .expect("recurring");
    assert_ne!(rec.fire_token, recurring.fire_token);
}
