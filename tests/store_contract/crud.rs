//! Create, read, delete: a job reads back equal in every field, whatever
//! its status and owed events; an id is stored once; `delete` tells whether
//! the job existed, and leaves nothing of it to fire or to publish. The
//! update, `replace_if`, has an area of its own (replace).

use super::support::*;

cases!(
    a_job_reads_back_equal_in_every_field,
    delete_tells_whether_the_job_existed,
);

async fn a_job_reads_back_equal_in_every_field(db: &Store) {
    let t = now();
    let job = Job {
        id: JobId::new(),
        spec: JobSpec {
            name: "nightly report ✓".to_owned(),
            description: "with 'quotes' and \"double\" quotes; DROP TABLE jobs".to_owned(),
            schedule_time: t + TimeDelta::milliseconds(1_234),
            job_type: JobType::Sms,
            job_data: "x".repeat(64 * 1024),
        },
        created_at: t - TimeDelta::days(3),
        updated_at: t - TimeDelta::milliseconds(7),
        status: JobStatus::Failed,
        fire_token: i64::MAX,
        version: 41,
        pending: PendingEvents {
            create: false,
            update: true,
            run: true,
            dead_letter: true,
            delete: true,
        },
        trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        recurrence: None,
        client_key: None,
        attempts: Some(Box::new(Attempts {
            policy: Some(RetryPolicy::new(7, 1_500, 90_000, 2.5, 0.2).expect("a policy")),
            attempt: 4,
            last_error: Some("SMTP 451 ✗ 'try later'".to_owned()),
            manual: true,
        })),
    };
    db.insert(&job).await.expect("insert");
    assert_eq!(db.get(job.id).await.expect("get"), Some(job.clone()));
    for (status, pending) in [
        (JobStatus::Scheduled, PendingEvents::NONE),
        (JobStatus::Running, CREATE),
        (JobStatus::Succeeded, PendingEvents::NONE),
        (JobStatus::Pending, ALL),
    ] {
        let other = Job {
            id: JobId::new(),
            status,
            pending,
            fire_token: 0,
            trace_parent: None,
            attempts: None,
            ..job.clone()
        };
        db.insert(&other).await.expect("insert");
        assert_eq!(db.get(other.id).await.expect("get"), Some(other));
    }

    assert_eq!(db.get(JobId::new()).await.expect("get unknown"), None);
    let duplicate = db.insert(&job).await.expect_err("duplicate id");
    assert!(
        matches!(duplicate, StoreError::Other(ref m) if m.contains("duplicate")),
        "{duplicate:?}"
    );
    assert_eq!(db.get(job.id).await.expect("get"), Some(job));
}

async fn delete_tells_whether_the_job_existed(db: &Store) {
    let kept = job("kept", now());
    let gone = job("gone", now());
    db.insert_all(&[kept.clone(), gone.clone()]).await;
    assert!(db.delete(gone.id).await.expect("delete"));
    assert!(!db.delete(gone.id).await.expect("delete again"));
    assert!(!db.delete(JobId::new()).await.expect("delete unknown"));
    assert_eq!(db.get(gone.id).await.expect("get"), None);
    assert_eq!(db.get(kept.id).await.expect("get"), Some(kept.clone()));
    // Nothing of it is left to fire or to publish.
    let due = db
        .scheduled_before(now() + TimeDelta::hours(1))
        .await
        .expect("due")
        .all_readable();
    assert_eq!(due, [DueJob::from(&kept)]);
    let owing = db
        .with_pending_events(10)
        .await
        .expect("outbox")
        .all_readable();
    assert_eq!(owing, [kept]);
}
