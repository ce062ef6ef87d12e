//! Replacing a job: `replace_if` writes every field of the job given (the
//! id aside), and only while the stored job is still at the version the
//! caller read; a stale version or an unknown id writes nothing. The
//! service's own uses of it (updates, misfires, run timeouts) are in the
//! transitions area.

use super::support::*;

cases!(replace_if_writes_every_field_only_at_the_expected_version);

async fn replace_if_writes_every_field_only_at_the_expected_version(db: &Store) {
    let original = job("original", now());
    db.insert(&original).await.expect("insert");

    let mut changed = original.rescheduled(
        JobSpec {
            name: "changed".to_owned(),
            description: String::new(),
            schedule_time: now() + TimeDelta::hours(1),
            job_type: JobType::Sms,
            job_data: "{}".to_owned(),
        },
        now() + TimeDelta::seconds(1),
    );
    changed.created_at = original.created_at - TimeDelta::seconds(10);
    changed.pending = ALL;
    changed.trace_parent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    assert_eq!(changed.version, 1);

    // A stale version (what a racing writer read before) changes nothing.
    assert!(!db.replace_if(&changed, 5, &[]).await.expect("stale"));
    assert_eq!(
        db.get(original.id).await.expect("get"),
        Some(original.clone())
    );

    assert!(db.replace_if(&changed, 0, &[]).await.expect("current"));
    assert_eq!(
        db.get(original.id).await.expect("get"),
        Some(changed.clone())
    );

    // The same expectation again is now stale: only one writer wins.
    let loser = original.with_status(JobStatus::Failed, now());
    assert!(!db.replace_if(&loser, 0, &[]).await.expect("lost"));
    assert_eq!(
        db.get(original.id).await.expect("get"),
        Some(changed.clone())
    );

    // A field can also be emptied.
    let cleared = Job {
        trace_parent: None,
        pending: PendingEvents::NONE,
        version: 2,
        ..changed
    };
    assert!(db.replace_if(&cleared, 1, &[]).await.expect("current"));
    assert_eq!(db.get(original.id).await.expect("get"), Some(cleared));

    let unknown = job("unknown", now());
    assert!(!db.replace_if(&unknown, 0, &[]).await.expect("unknown"));
    assert_eq!(db.get(unknown.id).await.expect("get"), None);
}
