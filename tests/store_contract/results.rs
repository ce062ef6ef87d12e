//! Results: a RUNNING job takes the first result offered (`Stored`, next
//! version); the same result again is a `Duplicate`, the other result or a
//! job in another state is `Ignored` with its status, an unknown id is
//! `UnknownJob`; only `Stored` changes the job.

use super::support::*;

cases!(store_result_outcomes, each_result_is_stored_on_its_own_job,);

async fn store_result_outcomes(db: &Store) {
    let at = now();
    assert_eq!(
        db.store_result(JobId::new(), ResultStatus::Succeeded, at)
            .await
            .expect("unknown"),
        ResultOutcome::UnknownJob
    );

    let scheduled = job("scheduled", at);
    db.insert(&scheduled).await.expect("insert");
    assert_eq!(
        db.store_result(scheduled.id, ResultStatus::Succeeded, at)
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
        db.store_result(scheduled.id, ResultStatus::Failed, done_at)
            .await
            .expect("store"),
        ResultOutcome::Stored
    );
    let stored = Job {
        status: JobStatus::Failed,
        updated_at: done_at,
        version: claimed.version + 1,
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
        db.store_result(scheduled.id, ResultStatus::Failed, later)
            .await
            .expect("duplicate"),
        ResultOutcome::Duplicate
    );
    assert_eq!(
        db.store_result(scheduled.id, ResultStatus::Succeeded, later)
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
            db.store_result(job.id, result, done_at)
                .await
                .expect("store"),
            ResultOutcome::Stored
        );
        assert_eq!(
            db.store_result(job.id, result, done_at)
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
