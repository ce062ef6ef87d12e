use super::*;
use crate::{
    domain::{JobSpec, JobStatus, now},
    store::JobDB,
};

fn job(job_type: JobType) -> Job {
    Job::new_scheduled(
        JobSpec {
            name: "logged".into(),
            description: String::new(),
            schedule_time: now(),
            job_type,
            job_data: "{}".into(),
        },
        now(),
    )
}

/// A store with `jobs` created, then each claimed, and every outbox
/// entry cleared: a create and a run event per job, in the log.
async fn logged(dir: &std::path::Path, jobs: &[Job]) -> EmbeddedJobDB {
    let db = EmbeddedJobDB::open(dir).unwrap();
    for job in jobs {
        db.insert(job).await.unwrap();
        db.claim(job.id, job.fire_token, now()).await.unwrap();
    }
    let at: Vec<(JobId, i64)> = jobs.iter().map(|job| (job.id, 1)).collect();
    assert_eq!(db.clear_pending_many(&at).await.unwrap().len(), jobs.len());
    db
}

#[tokio::test]
async fn clearing_the_outbox_logs_each_owed_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (job(JobType::Email), job(JobType::Sms));
    let db = logged(dir.path(), &[a.clone(), b.clone()]).await;
    // Cleared again at the same version (a call and the relay racing):
    // nothing is owed any more, so nothing more is logged.
    db.clear_pending_many(&[(a.id, 1)]).await.unwrap();
    let events = db.read_from(1, 10).await.unwrap();
    let seen: Vec<(u64, EventKind, JobId)> = events
        .iter()
        .map(|e| (e.sequence, e.kind, e.job.id))
        .collect();
    assert_eq!(
        seen,
        [
            (1, EventKind::Create, a.id),
            (2, EventKind::Run, a.id),
            (3, EventKind::Create, b.id),
            (4, EventKind::Run, b.id)
        ]
    );
    assert_eq!(events[1].job.status, JobStatus::Running);
    assert_eq!(db.read_at(vec![4, 2, 9]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn acks_out_of_order_move_the_position_past_filtered_events() {
    let dir = tempfile::tempdir().unwrap();
    let db = logged(dir.path(), &[job(JobType::Email), job(JobType::Email)]).await;
    let runs = EventFilter {
        kinds: [EventKind::Run].into(),
        ..EventFilter::default()
    };
    assert_eq!(db.subscribe("x", &runs).await.unwrap().position, 0);
    assert_eq!(db.ack("x", 4).await.unwrap(), AckOutcome::Acked);
    // Event 1, a create, is passed over; 2 is still owed.
    let start = db.subscribe("x", &runs).await.unwrap();
    assert_eq!((start.position, start.acked), (1, vec![4]));
    // Acking 2 passes over 3 (a create, which the filter leaves out) and 4.
    assert_eq!(db.ack("x", 2).await.unwrap(), AckOutcome::Acked);
    assert_eq!(db.ack("x", 4).await.unwrap(), AckOutcome::Duplicate);
    assert_eq!(
        db.ack("x", 5).await.unwrap(),
        AckOutcome::Beyond { last: 4 }
    );
    let start = db.subscribe("x", &runs).await.unwrap();
    assert_eq!((start.position, start.acked), (4, vec![]));
    // Other names keep their own positions.
    assert_eq!(db.subscribe("y", &runs).await.unwrap().position, 0);
}

#[tokio::test]
async fn the_retention_counts_what_each_name_missed_and_numbers_go_on_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = [job(JobType::Email), job(JobType::Sms), job(JobType::Email)];
    {
        let db = logged(dir.path(), &jobs).await;
        let everything = EventFilter::default();
        db.subscribe("all", &everything).await.unwrap();
        db.ack("all", 1).await.unwrap();
        db.ack("all", 3).await.unwrap();
        let sms = EventFilter {
            job_types: [JobType::Sms].into(),
            ..EventFilter::default()
        };
        db.subscribe("sms", &sms).await.unwrap();
        assert_eq!(db.trim(2, Duration::from_secs(3600)).await.unwrap(), 4);
        assert_eq!(db.trim(2, Duration::from_secs(3600)).await.unwrap(), 0);
        // Of 1..=4, "all" had acked 1 and 3; "sms" admits only 3 and 4.
        assert_eq!(db.take_missed("all").await.unwrap(), 2);
        assert_eq!(db.take_missed("all").await.unwrap(), 0);
        assert_eq!(db.take_missed("sms").await.unwrap(), 2);
        assert_eq!(db.subscribe("all", &everything).await.unwrap().position, 4);
        // Age: both kept events were logged before this cutoff.
        let removed = db.write(|txn| trim_in(txn, 100, i64::MAX)).await.unwrap();
        assert_eq!(removed, 2);
    }
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    let more = job(JobType::Email);
    db.insert(&more).await.unwrap();
    db.clear_pending_many(&[(more.id, 0)]).await.unwrap();
    let events = db.read_from(1, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].sequence, 7, "numbers are never given twice");
}
