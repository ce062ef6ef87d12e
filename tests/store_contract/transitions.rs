//! The service's own transitions, as the service makes them: a misfire (a
//! SCHEDULED job too late to run becomes FAILED) and a run timeout (a
//! RUNNING job without a result becomes FAILED, or SCHEDULED again under a
//! new fire token) are each a `replace_if` of `Job::with_status` or
//! `Job::retried` at the version read. The change wins only if nothing
//! changed the job since the read (a claim, an update, a result), and then
//! owes its update event, moves the job in or out of the windows, and makes
//! the old fire token useless.

use super::support::*;

cases!(
    a_misfire_fails_the_job_only_if_nothing_changed_it_since_the_read,
    a_stuck_run_fails_or_is_retried_unless_its_result_came_first,
);

async fn a_misfire_fails_the_job_only_if_nothing_changed_it_since_the_read(db: &Store) {
    let past = now() - TimeDelta::minutes(5);
    let late = job("late", past);
    let claimed_first = job("claimed first", past);
    let updated_first = job("updated first", past);
    db.insert_all(&[late.clone(), claimed_first.clone(), updated_first.clone()])
        .await;
    let at = now();

    let read = db.get(late.id).await.expect("get").expect("found");
    let failed = read.with_status(JobStatus::Failed, at);
    assert!(
        db.replace_if(&failed, read.version, &[])
            .await
            .expect("misfire")
    );
    assert_eq!(db.get(late.id).await.expect("get"), Some(failed.clone()));
    assert_eq!(
        (failed.version, failed.pending),
        (
            1,
            PendingEvents {
                update: true,
                ..CREATE
            }
        )
    );
    // Nothing left to fire: out of the window, its token claims nothing.
    assert!(
        !db.scheduled_before(now())
            .await
            .expect("due")
            .all_readable()
            .iter()
            .any(|d| d.id == late.id)
    );
    assert_eq!(
        db.claim(late.id, late.fire_token, now())
            .await
            .expect("claim"),
        None
    );
    assert!(
        db.with_pending_events(10)
            .await
            .expect("outbox")
            .all_readable()
            .contains(&failed),
        "the update event is owed"
    );
    assert_eq!(
        db.store_result(
            late.id,
            &RunReport::of(ResultStatus::Succeeded, None),
            now()
        )
        .await
        .expect("result"),
        ResultOutcome::Ignored(JobStatus::Failed)
    );

    // A claim won since the read: the job runs, the misfire loses.
    let read = db.get(claimed_first.id).await.expect("get").expect("found");
    let running = db
        .claim(claimed_first.id, claimed_first.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    let failed = read.with_status(JobStatus::Failed, at);
    assert!(
        !db.replace_if(&failed, read.version, &[])
            .await
            .expect("misfire")
    );
    assert_eq!(db.get(claimed_first.id).await.expect("get"), Some(running));

    // An update won since the read: the job is due again, the misfire loses.
    let read = db.get(updated_first.id).await.expect("get").expect("found");
    let moved = read.rescheduled(spec("moved", at + TimeDelta::hours(1)), at);
    assert!(
        db.replace_if(&moved, read.version, &[])
            .await
            .expect("update")
    );
    let failed = read.with_status(JobStatus::Failed, at);
    assert!(
        !db.replace_if(&failed, read.version, &[])
            .await
            .expect("misfire")
    );
    assert_eq!(db.get(updated_first.id).await.expect("get"), Some(moved));
}

async fn a_stuck_run_fails_or_is_retried_unless_its_result_came_first(db: &Store) {
    let t = now();
    let long_ago = t - TimeDelta::minutes(1);
    let jobs: Vec<Job> = ["failed", "retried", "reported"]
        .into_iter()
        .map(|name| job(name, long_ago))
        .collect();
    db.insert_all(&jobs).await;
    for job in &jobs {
        db.claim(job.id, job.fire_token, long_ago)
            .await
            .expect("claim")
            .expect("claimed");
    }
    let cutoff = t - TimeDelta::seconds(30);
    let mut stuck = db
        .running_before(cutoff)
        .await
        .expect("stuck")
        .all_readable();
    stuck.sort_by_key(|j| jobs.iter().position(|k| k.id == j.id));
    assert_eq!(sorted_ids(&stuck), sorted_ids(&jobs));
    let [to_fail, to_retry, reported] = &stuck[..] else {
        panic!("three stuck runs: {stuck:?}");
    };

    // Policy "fail".
    let failed = to_fail.with_status(JobStatus::Failed, t);
    assert!(
        db.replace_if(&failed, to_fail.version, &[])
            .await
            .expect("fail")
    );
    assert_eq!(db.get(failed.id).await.expect("get"), Some(failed.clone()));
    assert!(failed.pending.update);
    assert_eq!(
        db.store_result(
            failed.id,
            &RunReport::of(ResultStatus::Succeeded, None),
            now()
        )
        .await
        .expect("late result"),
        ResultOutcome::Ignored(JobStatus::Failed)
    );

    // Policy "retry": due again under a new token; the old one claims nothing.
    let retried = to_retry.retried(t);
    assert_ne!(retried.fire_token, to_retry.fire_token);
    assert!(
        db.replace_if(&retried, to_retry.version, &[])
            .await
            .expect("retry")
    );
    assert_eq!(
        db.get(retried.id).await.expect("get"),
        Some(retried.clone())
    );
    assert_eq!(
        db.scheduled_before(now() + TimeDelta::seconds(1))
            .await
            .expect("due")
            .all_readable(),
        [DueJob::from(&retried)]
    );
    assert_eq!(
        db.claim(retried.id, to_retry.fire_token, now())
            .await
            .expect("old token"),
        None
    );
    let again = db
        .claim(retried.id, retried.fire_token, now())
        .await
        .expect("new token")
        .expect("claimed again");
    assert_eq!(
        (again.status, again.version),
        (JobStatus::Running, retried.version + 1)
    );

    // The result arrived after the read: it wins, the retry loses.
    assert_eq!(
        db.store_result(
            reported.id,
            &RunReport::of(ResultStatus::Succeeded, None),
            now()
        )
        .await
        .expect("result"),
        ResultOutcome::Stored
    );
    assert!(
        !db.replace_if(&reported.retried(t), reported.version, &[])
            .await
            .expect("retry")
    );
    let stored = db.get(reported.id).await.expect("get").expect("found");
    assert_eq!(
        (stored.status, stored.fire_token),
        (JobStatus::Succeeded, reported.fire_token)
    );

    // None of them is a stuck run any more.
    assert!(
        db.running_before(cutoff)
            .await
            .expect("stuck")
            .all_readable()
            .is_empty()
    );
}
