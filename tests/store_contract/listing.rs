//! Every order the trait promises: `list` by schedule time then id, in
//! pages, with the total; `scheduled_before` earliest first;
//! `with_pending_events` least recently changed first, cut at `limit`;
//! `running_before` longest stuck first.
//! Which jobs the queries answer, in whatever order, is checked by the areas
//! of those queries (windows, outbox).

use super::support::*;

cases!(
    list_orders_by_schedule_time_then_id_and_pages,
    scheduled_before_answers_earliest_first,
    the_outbox_answers_least_recently_changed_first_up_to_the_limit,
    running_before_answers_the_longest_stuck_first,
);

async fn running_before_answers_the_longest_stuck_first(db: &Store) {
    let t = now();
    let running = |name: &str, updated: i64| Job {
        status: JobStatus::Running,
        updated_at: t + TimeDelta::seconds(updated),
        ..job(name, t)
    };
    let jobs = [
        running("stuck", -30),
        running("stuck longest", -90),
        running("stuck long", -60),
    ];
    db.insert_all(&jobs).await;
    assert_eq!(
        db.running_before(t).await.expect("stuck").all_readable(),
        [jobs[1].clone(), jobs[2].clone(), jobs[0].clone()]
    );
}

async fn list_orders_by_schedule_time_then_id_and_pages(db: &Store) {
    let t = now();
    let empty = db
        .list(page(1, 10), &JobFilter::default())
        .await
        .expect("list");
    assert_eq!((empty.jobs.len(), empty.total), (0, 0));

    // Seven jobs, three of them at the same time (ordered by id among themselves).
    let mut jobs = Vec::new();
    for (i, offset) in [5, 1, 3, 3, 0, 3, 9].into_iter().enumerate() {
        jobs.push(job(&format!("job {i}"), t + TimeDelta::seconds(offset)));
    }
    db.insert_all(&jobs).await;
    let mut expected = jobs.clone();
    expected.sort_by_key(|j| (j.spec.schedule_time, j.id));

    let mut seen = Vec::new();
    for number in 1..=3 {
        let listed = db
            .list(page(number, 3), &JobFilter::default())
            .await
            .expect("list");
        assert_eq!(listed.total, 7);
        assert_eq!(listed.jobs.len(), if number == 3 { 1 } else { 3 });
        seen.extend(listed.jobs);
    }
    assert_eq!(seen, expected);
    let beyond = db
        .list(page(4, 3), &JobFilter::default())
        .await
        .expect("list");
    assert_eq!((beyond.jobs.len(), beyond.total), (0, 7));
    let all = db
        .list(page(1, 100), &JobFilter::default())
        .await
        .expect("list");
    assert_eq!(all.jobs, expected);

    // A job moved to another time moves in the list.
    let moved = expected[0].rescheduled(spec("moved", t + TimeDelta::seconds(20)), now());
    assert!(db.replace_if(&moved, 0, &[]).await.expect("replace"));
    let mut expected = expected[1..].to_vec();
    expected.push(moved);
    assert_eq!(
        db.list(page(1, 100), &JobFilter::default())
            .await
            .expect("list")
            .jobs,
        expected
    );
}

async fn scheduled_before_answers_earliest_first(db: &Store) {
    let t = now();
    let jobs: Vec<Job> = [4, -3, 2, -10, 0, 7, -1]
        .into_iter()
        .map(|offset| job(&format!("in {offset}"), t + TimeDelta::seconds(offset)))
        .collect();
    db.insert_all(&jobs).await;
    let mut expected: Vec<DueJob> = jobs.iter().map(DueJob::from).collect();
    expected.sort_by_key(|d| d.schedule_time);
    let until = t + TimeDelta::seconds(60);
    assert_eq!(
        db.scheduled_before(until)
            .await
            .expect("due")
            .all_readable(),
        expected
    );
}

async fn the_outbox_answers_least_recently_changed_first_up_to_the_limit(db: &Store) {
    let t = now();
    let owing = |name: &str, updated: i64| Job {
        updated_at: t + TimeDelta::seconds(updated),
        ..job(name, t)
    };
    let jobs: Vec<Job> = [3, 1, 5, 2, 4]
        .into_iter()
        .map(|updated| owing(&format!("changed at {updated}"), updated))
        .collect();
    db.insert_all(&jobs).await;
    let mut expected = jobs.clone();
    expected.sort_by_key(|j| j.updated_at);
    assert_eq!(
        db.with_pending_events(10)
            .await
            .expect("outbox")
            .all_readable(),
        expected
    );
    assert_eq!(
        db.with_pending_events(2)
            .await
            .expect("outbox")
            .all_readable(),
        expected[..2]
    );

    // A change moves the job to the back.
    let changed = expected[0].with_status(JobStatus::Failed, t + TimeDelta::seconds(9));
    assert!(db.replace_if(&changed, 0, &[]).await.expect("replace"));
    let mut expected = expected[1..].to_vec();
    expected.push(changed);
    assert_eq!(
        db.with_pending_events(10)
            .await
            .expect("outbox")
            .all_readable(),
        expected
    );
    assert_eq!(
        db.with_pending_events(3)
            .await
            .expect("outbox")
            .all_readable(),
        expected[..3]
    );
}
