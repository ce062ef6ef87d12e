//! A stored job that cannot be read back (corrupted from outside the
//! store's API: see `Store::corrupt`), among readable ones. Every scan
//! (`scheduled_before`, `with_pending_events`, `running_before`, `list`)
//! answers the readable jobs and reports the corrupt one, once, with its
//! id; `get` of the corrupt job is `StoreError::Corrupt`. The corrupt job
//! sits between readable ones in the scan's order, so that a scan that
//! stopped at it would miss the jobs after it.

use super::support::*;

cases!(
    scheduled_before_answers_the_readable_jobs_and_reports_the_corrupt_one,
    the_outbox_answers_the_readable_jobs_and_reports_the_corrupt_one,
    running_before_answers_the_readable_jobs_and_reports_the_corrupt_one,
    list_answers_the_readable_jobs_and_reports_the_corrupt_one,
    get_of_the_corrupt_job_is_corrupt,
);

/// Stores `jobs` and corrupts the middle one; returns the other two.
async fn with_middle_corrupt(db: &mut Store, jobs: [Job; 3]) -> (Job, [Job; 2]) {
    db.insert_all(&jobs).await;
    let [first, middle, last] = jobs;
    db.corrupt(middle.id).await;
    (middle, [first, last])
}

/// `unreadable` reports the job `corrupt`, and nothing else.
fn reports_only(unreadable: &[Unreadable], corrupt: &Job) {
    let ids: Vec<Option<JobId>> = unreadable.iter().map(|u| u.id).collect();
    assert_eq!(ids, [Some(corrupt.id)], "{unreadable:?}");
}

async fn scheduled_before_answers_the_readable_jobs_and_reports_the_corrupt_one(db: &mut Store) {
    let t = now();
    let due = |name: &str, in_s: i64| job(name, t + TimeDelta::seconds(in_s));
    let (corrupt, readable) = with_middle_corrupt(
        db,
        [due("first", -30), due("corrupt", -20), due("last", -10)],
    )
    .await;
    let scan = db.scheduled_before(t).await.expect("due");
    let id = |d: &DueJob| d.id;
    let expected: Vec<DueJob> = readable.iter().map(DueJob::from).collect();
    assert_eq!(by_id(&scan.found, id), by_id(&expected, id));
    reports_only(&scan.unreadable, &corrupt);
}

async fn the_outbox_answers_the_readable_jobs_and_reports_the_corrupt_one(db: &mut Store) {
    let t = now();
    let owing = |name: &str, changed_s: i64| Job {
        pending: ALL,
        updated_at: t + TimeDelta::seconds(changed_s),
        ..job(name, t + TimeDelta::hours(1))
    };
    let (corrupt, readable) = with_middle_corrupt(
        db,
        [
            owing("first", -30),
            owing("corrupt", -20),
            owing("last", -10),
        ],
    )
    .await;
    let scan = db.with_pending_events(10).await.expect("outbox");
    assert_eq!(by_id(&scan.found, |j| j.id), by_id(&readable, |j| j.id));
    reports_only(&scan.unreadable, &corrupt);
}

async fn running_before_answers_the_readable_jobs_and_reports_the_corrupt_one(db: &mut Store) {
    let t = now();
    let stuck = |name: &str, changed_s: i64| Job {
        status: JobStatus::Running,
        pending: PendingEvents::NONE,
        updated_at: t + TimeDelta::seconds(changed_s),
        ..job(name, t - TimeDelta::hours(1))
    };
    let (corrupt, readable) = with_middle_corrupt(
        db,
        [
            stuck("first", -90),
            stuck("corrupt", -60),
            stuck("last", -30),
        ],
    )
    .await;
    let scan = db.running_before(t).await.expect("stuck");
    assert_eq!(by_id(&scan.found, |j| j.id), by_id(&readable, |j| j.id));
    reports_only(&scan.unreadable, &corrupt);
}

async fn list_answers_the_readable_jobs_and_reports_the_corrupt_one(db: &mut Store) {
    let t = now();
    let at = |name: &str, in_s: i64| job(name, t + TimeDelta::seconds(in_s));
    let (corrupt, readable) =
        with_middle_corrupt(db, [at("first", 10), at("corrupt", 20), at("last", 30)]).await;
    let all = db
        .list(page(1, 10), &JobFilter::default())
        .await
        .expect("list");
    assert_eq!(all.total, 3, "the total counts every stored job");
    assert_eq!(by_id(&all.jobs, |j| j.id), by_id(&readable, |j| j.id));
    reports_only(&all.unreadable, &corrupt);

    // In pages of two, the corrupt job takes a place on its page, which
    // then holds one job fewer. (The pages are read in the store's order:
    // polodb ignores `sort`, so which page that is is not checked.)
    let (mut found, mut unreadable) = (Vec::new(), Vec::new());
    for (number, places) in [(1, 2), (2, 1)] {
        let listed = db
            .list(page(number, 2), &JobFilter::default())
            .await
            .expect("list");
        assert_eq!(listed.total, 3);
        assert_eq!(listed.jobs.len() + listed.unreadable.len(), places);
        found.extend(listed.jobs);
        unreadable.extend(listed.unreadable);
    }
    assert_eq!(by_id(&found, |j| j.id), by_id(&readable, |j| j.id));
    reports_only(&unreadable, &corrupt);
}

async fn get_of_the_corrupt_job_is_corrupt(db: &mut Store) {
    let t = now();
    let (corrupt, readable) =
        with_middle_corrupt(db, [job("first", t), job("corrupt", t), job("last", t)]).await;
    match db.get(corrupt.id).await {
        Err(StoreError::Corrupt(unreadable)) => {
            assert_eq!(unreadable.id, Some(corrupt.id), "{unreadable}");
        }
        other => panic!("get of the corrupt job: {other:?}"),
    }
    for job in readable {
        assert_eq!(db.get(job.id).await.expect("get"), Some(job));
    }
}
