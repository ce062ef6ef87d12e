//! The time-window queries, by which jobs they answer: `scheduled_before`
//! the SCHEDULED jobs due strictly before the bound (what the timer arms),
//! with the fire token they carry; `running_before` the RUNNING jobs last
//! changed strictly before the cutoff (runs that may be stuck). The order of
//! `scheduled_before` is checked by the listing area; `running_before`
//! promises none.

use super::support::*;

cases!(
    scheduled_before_answers_scheduled_jobs_due_before_the_bound,
    scheduled_in_answers_the_due_jobs_of_the_shards_asked_only,
    running_before_answers_running_jobs_changed_before_the_cutoff,
);

/// The due jobs of shards {1, 3} of 4 (by the ids' counters), of all 4
/// shards, and of none, among jobs of every shard due before and after
/// the bound.
async fn scheduled_in_answers_the_due_jobs_of_the_shards_asked_only(db: &Store) {
    let t = now();
    let count = ShardCount::new(4).expect("a count");
    let with_counter = |counter: u32, due: DateTime<Utc>| {
        let [_, a, b, c] = counter.to_be_bytes();
        let random = JobId::new().bytes();
        let mut bytes = [0u8; 12];
        bytes[..9].copy_from_slice(&random[..9]);
        bytes[9..].copy_from_slice(&[a, b, c]);
        Job {
            id: JobId::from_bytes(bytes),
            ..job("sharded", due)
        }
    };
    let due: Vec<Job> = (0..12)
        .map(|i| with_counter(0x01_0000 * i + i, t - TimeDelta::seconds(1)))
        .collect();
    let later: Vec<Job> = (0..4)
        .map(|i| with_counter(0x10_0000 + i, t + TimeDelta::hours(1)))
        .collect();
    db.insert_all(&due).await;
    db.insert_all(&later).await;
    let id = |d: &DueJob| d.id;
    let asked = Shards::of(count, [1, 3]);
    let found = db
        .scheduled_in(t, &asked)
        .await
        .expect("due")
        .all_readable();
    let expected: Vec<DueJob> = due
        .iter()
        .filter(|job| asked.holds(&job.id))
        .map(DueJob::from)
        .collect();
    assert_eq!(
        expected.len(),
        6,
        "counters 1, 3, 5, ... (mod 4 over 3 bytes)"
    );
    assert_eq!(by_id(&found, id), by_id(&expected, id));
    let all = db.scheduled_in(t, &Shards::all(count)).await.expect("due");
    assert_eq!(all.all_readable().len(), due.len());
    let none = db.scheduled_in(t, &Shards::none(count)).await.expect("due");
    assert!(none.all_readable().is_empty());
}

async fn scheduled_before_answers_scheduled_jobs_due_before_the_bound(db: &Store) {
    let t = now();
    let late = job("late", t + TimeDelta::seconds(10));
    let early = job("early", t - TimeDelta::seconds(10));
    let at_until = job("at until", t + TimeDelta::seconds(5));
    let middle = job("middle", t);
    let not_scheduled: Vec<Job> = [
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Pending,
    ]
    .into_iter()
    .map(|status| job_in("not scheduled", status, t - TimeDelta::seconds(20)))
    .collect();
    db.insert_all(&[
        late.clone(),
        early.clone(),
        at_until.clone(),
        middle.clone(),
    ])
    .await;
    db.insert_all(&not_scheduled).await;

    let id = |d: &DueJob| d.id;
    let until = t + TimeDelta::seconds(5);
    let due = db
        .scheduled_before(until)
        .await
        .expect("due")
        .all_readable();
    assert_eq!(
        by_id(&due, id),
        by_id(&[DueJob::from(&early), DueJob::from(&middle)], id)
    );
    let due = db
        .scheduled_before(until + TimeDelta::seconds(60))
        .await
        .expect("due")
        .all_readable();
    let all: Vec<DueJob> = [&late, &early, &at_until, &middle]
        .into_iter()
        .map(DueJob::from)
        .collect();
    assert_eq!(by_id(&due, id), by_id(&all, id));
    assert!(
        db.scheduled_before(t - TimeDelta::minutes(1))
            .await
            .expect("due")
            .all_readable()
            .is_empty()
    );

    // Rescheduled: due at its new time, under its new token.
    let moved = late.rescheduled(spec("moved", t - TimeDelta::seconds(5)), now());
    assert!(
        db.replace_if(&moved, late.version, &[])
            .await
            .expect("replace")
    );
    let due = db
        .scheduled_before(until)
        .await
        .expect("due")
        .all_readable();
    assert_eq!(
        by_id(&due, id),
        by_id(
            &[
                DueJob::from(&early),
                DueJob::from(&middle),
                DueJob::from(&moved)
            ],
            id
        )
    );
}

async fn running_before_answers_running_jobs_changed_before_the_cutoff(db: &Store) {
    let t = now();
    let with = |name: &str, status: JobStatus, updated: i64| Job {
        status,
        updated_at: t + TimeDelta::seconds(updated),
        ..job(name, t)
    };
    let stuck_long = with("stuck long", JobStatus::Running, -60);
    let stuck = with("stuck", JobStatus::Running, -30);
    let fresh = with("fresh", JobStatus::Running, 0);
    let old_done = with("old done", JobStatus::Succeeded, -90);
    let old_failed = with("old failed", JobStatus::Failed, -90);
    let old_scheduled = with("old scheduled", JobStatus::Scheduled, -90);
    db.insert_all(&[
        stuck.clone(),
        fresh.clone(),
        old_done,
        stuck_long.clone(),
        old_scheduled,
        old_failed,
    ])
    .await;
    let id = |j: &Job| j.id;
    let running = db
        .running_before(t - TimeDelta::seconds(10))
        .await
        .expect("stuck")
        .all_readable();
    assert_eq!(
        by_id(&running, id),
        by_id(&[stuck_long.clone(), stuck.clone()], id)
    );
    let running = db
        .running_before(t)
        .await
        .expect("strictly before")
        .all_readable();
    assert_eq!(
        by_id(&running, id),
        by_id(&[stuck_long.clone(), stuck.clone()], id)
    );
    let running = db
        .running_before(t + TimeDelta::seconds(1))
        .await
        .expect("all")
        .all_readable();
    assert_eq!(by_id(&running, id), by_id(&[stuck_long, stuck, fresh], id));
}
