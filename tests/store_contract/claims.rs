//! Claims, one by one and in batches: only a SCHEDULED job carrying the fire
//! token the caller holds is claimed, once; it becomes RUNNING at the next
//! version, owing its run event, and leaves the due window. A stale token,
//! another status, an unknown id or a second claim claims nothing and
//! changes nothing.

use super::support::*;

cases!(
    armable_of_answers_the_named_jobs_the_timer_should_hold,
    claim_needs_a_scheduled_job_with_the_fire_token,
    claim_many_claims_only_scheduled_jobs_with_their_fire_token,
);

/// `job` as a claim at `at` must leave it.
fn claimed(job: &Job, at: DateTime<Utc>) -> Job {
    Job {
        status: JobStatus::Running,
        updated_at: at,
        version: job.version + 1,
        pending: PendingEvents {
            run: true,
            ..job.pending
        },
        ..job.clone()
    }
}

async fn claim_needs_a_scheduled_job_with_the_fire_token(db: &Store) {
    let due = Job {
        pending: PendingEvents {
            create: true,
            update: true,
            ..PendingEvents::NONE
        },
        ..job("due", now() - TimeDelta::seconds(1))
    };
    db.insert(&due).await.expect("insert");
    let at = now() + TimeDelta::milliseconds(3);

    assert_eq!(
        db.claim(due.id, due.fire_token ^ 1, at)
            .await
            .expect("wrong key"),
        None
    );
    assert_eq!(
        db.claim(JobId::new(), due.fire_token, at)
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(db.get(due.id).await.expect("get"), Some(due.clone()));

    let won = db
        .claim(due.id, due.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed");
    let expected = claimed(&due, at);
    assert_eq!(won, expected);
    assert_eq!(db.get(due.id).await.expect("get"), Some(expected));
    assert!(
        db.scheduled_before(now())
            .await
            .expect("due")
            .all_readable()
            .is_empty()
    );

    // RUNNING now: a second claim with the same token finds nothing to claim.
    assert_eq!(
        db.claim(due.id, due.fire_token, at).await.expect("again"),
        None
    );

    // Any other status is refused too, and left as it was.
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Pending] {
        let other = job_in("other", status, now());
        db.insert(&other).await.expect("insert");
        assert_eq!(
            db.claim(other.id, other.fire_token, at)
                .await
                .expect("claim"),
            None,
            "{status:?}"
        );
        assert_eq!(db.get(other.id).await.expect("get"), Some(other));
    }
}

async fn armable_of_answers_the_named_jobs_the_timer_should_hold(db: &Store) {
    let past = now() - TimeDelta::seconds(1);
    let scheduled = job("scheduled", past);
    let running = job_in("running", JobStatus::Running, past);
    let other = job("not named", past);
    db.insert_all(&[scheduled.clone(), running.clone(), other])
        .await;
    let named = [scheduled.id, running.id, JobId::new()];
    assert_eq!(
        db.armable_of(&named).await.expect("armable_of"),
        [DueJob::from(&scheduled)]
    );
    assert!(db.armable_of(&[]).await.expect("none").is_empty());
}

async fn claim_many_claims_only_scheduled_jobs_with_their_fire_token(db: &Store) {
    let past = now() - TimeDelta::seconds(1);
    let due: Vec<Job> = (0..5).map(|i| job(&format!("due {i}"), past)).collect();
    let stale = Job {
        pending: PendingEvents::NONE,
        ..job("stale key", past)
    };
    let not_scheduled: Vec<Job> = [JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed]
        .into_iter()
        .map(|status| job_in("not scheduled", status, past))
        .collect();
    db.insert_all(&due).await;
    db.insert_all(std::slice::from_ref(&stale)).await;
    db.insert_all(&not_scheduled).await;
    let at = now() + TimeDelta::milliseconds(3);

    assert!(db.claim_many(&[], at).await.expect("empty").is_empty());
    let mut batch: Vec<(JobId, i64)> = due.iter().map(|j| (j.id, j.fire_token)).collect();
    batch.push((stale.id, stale.fire_token ^ 1));
    batch.extend(not_scheduled.iter().map(|j| (j.id, j.fire_token)));
    batch.push((JobId::new(), 7));
    // Listed twice: claimed once.
    batch.push((due[0].id, due[0].fire_token));

    let won = db.claim_many(&batch, at).await.expect("claim_many");
    assert_eq!(sorted_ids(&won), sorted_ids(&due));
    for job in &won {
        let before = due.iter().find(|d| d.id == job.id).expect("a due job");
        assert_eq!(job, &claimed(before, at));
        assert_eq!(Some(job.clone()), before.claimed(before.fire_token, at));
        assert_eq!(db.get(job.id).await.expect("get").as_ref(), Some(job));
    }
    // Left as they were; of them only the job with the stale key is still due.
    for other in not_scheduled.iter().chain([&stale]) {
        assert_eq!(db.get(other.id).await.expect("get").as_ref(), Some(other));
    }
    assert_eq!(
        db.scheduled_before(now())
            .await
            .expect("due")
            .all_readable(),
        [DueJob::from(&stale)]
    );
    // Claimed already: a second batch claims nothing.
    assert!(db.claim_many(&batch, at).await.expect("again").is_empty());
}
