//! Results: a RUNNING job takes the first result offered (`Stored`, next
//! version, its run event no longer owed); the same result again is a
//! `Duplicate`, the other result or a job in another state is `Ignored` with its status, an unknown id is
//! `UnknownJob`; only `Stored` changes the job.
//!
//! A result that names its firing (the fire token) is taken only by that
//! firing: a token that is not the job's is `Stale` whatever the job's
//! status (running a later firing, scheduled again, finished), and changes
//! nothing; the job's own token is judged as a result without one. A
//! result without a token goes to the job's current run, as before tokens.

use super::support::*;

cases!(
    store_result_outcomes,
    each_result_is_stored_on_its_own_job,
    a_result_naming_the_current_firing_is_stored_once,
    a_result_naming_another_firing_changes_nothing,
    a_result_of_a_retried_run_never_finishes_the_next_run,
);

async fn store_result_outcomes(db: &Store) {
    let at = now();
    assert_eq!(
        db.store_result(
            JobId::new(),
            &RunReport::of(ResultStatus::Succeeded, None),
            at
        )
        .await
        .expect("unknown"),
        ResultOutcome::UnknownJob
    );

    let scheduled = job("scheduled", at);
    db.insert(&scheduled).await.expect("insert");
    assert_eq!(
        db.store_result(
            scheduled.id,
            &RunReport::of(ResultStatus::Succeeded, None),
            at
        )
        .await
        .expect("not running"),
        ResultOutcome::Ignored(JobStatus::Scheduled)
    );
    assert_eq!(
        db.get(scheduled.id).await.expect("get"),
        Some(scheduled.clone())
    );

    let claimed = db
        .claim(scheduled.id, scheduled.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    let done_at = at + TimeDelta::seconds(2);
    assert_eq!(
        db.store_result(
            scheduled.id,
            &RunReport::of(ResultStatus::Failed, None),
            done_at
        )
        .await
        .expect("store"),
        ResultOutcome::Stored
    );
    // The run event reached the executor that reported: it is no longer
    // owed, even if its clear had not landed yet.
    let stored = Job {
        status: JobStatus::Failed,
        updated_at: done_at,
        version: claimed.version + 1,
        pending: PendingEvents {
            run: false,
            ..claimed.pending
        },
        ..claimed
    };
    assert_eq!(
        db.get(scheduled.id).await.expect("get"),
        Some(stored.clone())
    );
    // No longer a run that may be stuck.
    let later = done_at + TimeDelta::seconds(1);
    assert!(
        db.running_before(later)
            .await
            .expect("running")
            .all_readable()
            .is_empty()
    );

    assert_eq!(
        db.store_result(
            scheduled.id,
            &RunReport::of(ResultStatus::Failed, None),
            later
        )
        .await
        .expect("duplicate"),
        ResultOutcome::Duplicate
    );
    assert_eq!(
        db.store_result(
            scheduled.id,
            &RunReport::of(ResultStatus::Succeeded, None),
            later
        )
        .await
        .expect("other result"),
        ResultOutcome::Ignored(JobStatus::Failed)
    );
    assert_eq!(db.get(scheduled.id).await.expect("get"), Some(stored));
}

/// Success and failure, each on its own job among others: a result changes
/// its job and no other.
async fn each_result_is_stored_on_its_own_job(db: &Store) {
    let at = now();
    let jobs: Vec<Job> = (0..3).map(|i| job(&format!("run {i}"), at)).collect();
    db.insert_all(&jobs).await;
    let mut running = Vec::new();
    for job in &jobs {
        running.push(
            db.claim(job.id, job.fire_token, at)
                .await
                .expect("claim")
                .expect("claimed"),
        );
    }
    let done_at = at + TimeDelta::seconds(1);
    for (job, result) in running
        .iter()
        .zip([ResultStatus::Succeeded, ResultStatus::Failed])
    {
        assert_eq!(
            db.store_result(job.id, &RunReport::of(result, None), done_at)
                .await
                .expect("store"),
            ResultOutcome::Stored
        );
        assert_eq!(
            db.store_result(job.id, &RunReport::of(result, None), done_at)
                .await
                .expect("again"),
            ResultOutcome::Duplicate
        );
    }
    let succeeded = running[0].finished(ResultStatus::Succeeded, done_at);
    let failed = running[1].finished(ResultStatus::Failed, done_at);
    assert_eq!(db.get(jobs[0].id).await.expect("get"), Some(succeeded));
    assert_eq!(db.get(jobs[1].id).await.expect("get"), Some(failed));
    assert_eq!(
        db.get(jobs[2].id).await.expect("get").as_ref(),
        Some(&running[2])
    );
    assert_eq!(
        db.running_before(done_at)
            .await
            .expect("running")
            .all_readable(),
        [running[2].clone()]
    );
}

/// The job's own token: judged as a result without one (not running yet,
/// stored, then a duplicate or the other result ignored); once the job
/// holds a result, a token of another firing is stale.
async fn a_result_naming_the_current_firing_is_stored_once(db: &Store) {
    let at = now();
    let due = job("due", at);
    db.insert(&due).await.expect("insert");
    let token = Some(due.fire_token);
    assert_eq!(
        db.store_result(due.id, &RunReport::of(ResultStatus::Succeeded, token), at)
            .await
            .expect("not fired yet"),
        ResultOutcome::Ignored(JobStatus::Scheduled)
    );
    let running = db
        .claim(due.id, due.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    let done_at = at + TimeDelta::seconds(1);
    assert_eq!(
        db.store_result(
            due.id,
            &RunReport::of(ResultStatus::Succeeded, token),
            done_at
        )
        .await
        .expect("store"),
        ResultOutcome::Stored
    );
    let stored = running.finished(ResultStatus::Succeeded, done_at);
    assert_eq!(db.get(due.id).await.expect("get"), Some(stored.clone()));
    for (result, fire_token, outcome) in [
        (ResultStatus::Succeeded, token, ResultOutcome::Duplicate),
        (ResultStatus::Succeeded, None, ResultOutcome::Duplicate),
        (
            ResultStatus::Failed,
            token,
            ResultOutcome::Ignored(JobStatus::Succeeded),
        ),
        (
            ResultStatus::Succeeded,
            Some(due.fire_token ^ 1),
            ResultOutcome::Stale(JobStatus::Succeeded),
        ),
    ] {
        assert_eq!(
            db.store_result(due.id, &RunReport::of(result, fire_token), done_at)
                .await
                .expect("again"),
            outcome,
            "{result:?} of firing {fire_token:?}"
        );
    }
    assert_eq!(db.get(due.id).await.expect("get"), Some(stored));
    assert_eq!(
        db.store_result(
            JobId::new(),
            &RunReport::of(ResultStatus::Succeeded, token),
            done_at
        )
        .await
        .expect("unknown"),
        ResultOutcome::UnknownJob
    );
}

/// A token that is not the running job's is stale and leaves the job
/// RUNNING; a result without a token is then stored on that run.
async fn a_result_naming_another_firing_changes_nothing(db: &Store) {
    let at = now();
    let due = job("due", at);
    db.insert(&due).await.expect("insert");
    let running = db
        .claim(due.id, due.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(
        db.store_result(
            due.id,
            &RunReport::of(ResultStatus::Failed, Some(due.fire_token ^ 1)),
            at
        )
        .await
        .expect("stale"),
        ResultOutcome::Stale(JobStatus::Running)
    );
    assert_eq!(db.get(due.id).await.expect("get"), Some(running.clone()));
    assert_eq!(
        db.running_before(at + TimeDelta::seconds(1))
            .await
            .expect("running")
            .all_readable(),
        std::slice::from_ref(&running)
    );
    assert_eq!(
        db.store_result(due.id, &RunReport::of(ResultStatus::Failed, None), at)
            .await
            .expect("no token"),
        ResultOutcome::Stored
    );
    assert_eq!(
        db.get(due.id).await.expect("get"),
        Some(running.finished(ResultStatus::Failed, at))
    );
}

/// A run timed out and retried (scheduled again under a new token, then
/// claimed again): the first run's result is stale while the job waits and
/// while it runs again, and after the second run's result is in; the
/// second run's result is stored, and is a duplicate when it comes again.
async fn a_result_of_a_retried_run_never_finishes_the_next_run(db: &Store) {
    let at = now();
    let due = job("due", at);
    db.insert(&due).await.expect("insert");
    let first = db
        .claim(due.id, due.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    let retried = first.retried(at + TimeDelta::seconds(1));
    assert!(
        db.replace_if(&retried, first.version, &[])
            .await
            .expect("retry")
    );
    let (old, new) = (Some(first.fire_token), Some(retried.fire_token));
    let late = async |at| {
        db.store_result(due.id, &RunReport::of(ResultStatus::Failed, old), at)
            .await
            .expect("late result")
    };
    assert_eq!(late(at).await, ResultOutcome::Stale(JobStatus::Scheduled));
    let second = db
        .claim(due.id, retried.fire_token, at)
        .await
        .expect("claim again")
        .expect("claimed again");
    assert_eq!(late(at).await, ResultOutcome::Stale(JobStatus::Running));
    assert_eq!(db.get(due.id).await.expect("get"), Some(second.clone()));
    let done_at = at + TimeDelta::seconds(2);
    assert_eq!(
        db.store_result(
            due.id,
            &RunReport::of(ResultStatus::Succeeded, new),
            done_at
        )
        .await
        .expect("store"),
        ResultOutcome::Stored
    );
    assert_eq!(
        late(done_at).await,
        ResultOutcome::Stale(JobStatus::Succeeded)
    );
    assert_eq!(
        db.store_result(
            due.id,
            &RunReport::of(ResultStatus::Succeeded, new),
            done_at
        )
        .await
        .expect("again"),
        ResultOutcome::Duplicate
    );
    assert_eq!(
        db.get(due.id).await.expect("get"),
        Some(second.finished(ResultStatus::Succeeded, done_at))
    );
}
