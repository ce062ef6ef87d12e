use super::*;
use super::{errors::commit_failed, writer::commit_group};
use crate::domain::now;
use crate::domain::{JobSpec, JobStatus, JobType, ResultStatus};

fn job(in_ms: i64) -> Job {
    Job::new_scheduled(
        JobSpec {
            name: format!("job in {in_ms}"),
            description: "d".into(),
            schedule_time: now() + chrono::Duration::milliseconds(in_ms),
            job_type: JobType::Sms,
            job_data: "{}".into(),
        },
        now(),
    )
}

/// A queued insert of `job` and the receiver of its answer.
fn queued_insert(
    job: Job,
) -> (
    Box<dyn QueuedWrite>,
    tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
) {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let op = move |txn: &redb::WriteTransaction| JobTables::new(txn).insert(&job);
    let write = Write {
        op,
        result: None,
        reply,
        on_commit: None,
    };
    (Box::new(write), answer)
}

#[test]
fn a_full_disk_and_passing_io_errors_are_unavailable_the_others_not() {
    use std::io::{Error, ErrorKind};
    let io = |err: Error| redb::StorageError::Io(err);
    let transient = [
        storage(io(ErrorKind::StorageFull.into())),
        // ENOSPC, as the operating system reports a full disk.
        storage(io(Error::from_raw_os_error(28))),
        storage(io(ErrorKind::QuotaExceeded.into())),
        storage(io(ErrorKind::OutOfMemory.into())),
        storage(io(ErrorKind::Interrupted.into())),
        storage(io(ErrorKind::WouldBlock.into())),
        storage(redb::StorageError::PreviousIo),
        commit_failed(redb::CommitError::Storage(
            io(ErrorKind::StorageFull.into()),
        )),
        storage(redb::TransactionError::Storage(io(
            ErrorKind::StorageFull.into()
        ))),
    ];
    for err in transient {
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
    let refused = [
        storage(io(ErrorKind::PermissionDenied.into())),
        storage(io(ErrorKind::InvalidData.into())),
        storage(redb::StorageError::Corrupted("bad page".into())),
        storage(redb::StorageError::DatabaseClosed),
        commit_failed(redb::CommitError::TransactionPoisoned),
    ];
    for err in refused {
        assert!(matches!(err, StoreError::Other(_)), "{err}");
    }
}

#[tokio::test]
async fn a_failed_write_in_a_group_fails_alone_and_the_others_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    let existing = job(1_000);
    db.insert(&existing).await.unwrap();
    let fresh: Vec<Job> = (0..3).map(|i| job(2_000 + i)).collect();
    // The duplicate sits mid-group: the writes before it were applied
    // when it failed, and must be rolled back and committed alone.
    let (mut group, mut answers) = (Vec::new(), Vec::new());
    for job in [&fresh[0], &existing, &fresh[1], &fresh[2]] {
        let (write, answer) = queued_insert(job.clone());
        group.push(write);
        answers.push(answer);
    }
    commit_group(&db.inner.db, group);
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer.await.unwrap());
    }
    assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
    assert!(results[1].is_err(), "the duplicate is refused");
    for job in &fresh {
        assert_eq!(db.get(job.id).await.unwrap().as_ref(), Some(job));
    }
    assert_eq!(db.get(existing.id).await.unwrap(), Some(existing));
    let listed = db
        .list(PageRequest::new(1, 10, 10).unwrap(), &JobFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.total, 4, "each job stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_all_committed_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<Job> = (0..200).map(job).collect();
    {
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        let inserts = jobs.iter().cloned().map(|job| {
            let db = db.clone();
            tokio::spawn(async move { db.insert(&job).await })
        });
        for insert in futures::future::join_all(inserts).await {
            insert.unwrap().unwrap();
        }
    }
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    for job in &jobs {
        assert_eq!(db.get(job.id).await.unwrap().as_ref(), Some(job));
    }
}

#[tokio::test]
async fn every_operation_keeps_the_indexes_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    let (late, early) = (job(5_000), job(1_000));
    db.insert(&late).await.unwrap();
    db.insert(&early).await.unwrap();
    assert!(db.insert(&early).await.is_err(), "duplicate id");
    assert_eq!(db.get(late.id).await.unwrap(), Some(late.clone()));

    let page = db
        .list(PageRequest::new(1, 10, 10).unwrap(), &JobFilter::default())
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        page.jobs,
        [early.clone(), late.clone()],
        "ordered by schedule time"
    );
    let due = db
        .scheduled_before(now() + chrono::Duration::seconds(2))
        .await
        .unwrap();
    assert_eq!(due, Scan::readable(vec![DueJob::from(&early)]));
    assert_eq!(db.with_pending_events(10).await.unwrap().found.len(), 2);

    let later = now() + chrono::Duration::seconds(1);
    claims_move_the_job_to_the_running_index(&db, &early, later).await;
    outbox_clears_at_its_version(&db, &early, &late).await;
    results_take_the_job_out_of_the_running_index(&db, &early, later).await;
    replace_and_delete_keep_the_indexes(&db, &late).await;
}

/// Claim: only with the current token, only once; the job leaves the due
/// index and enters the running one, owing its run event.
async fn claims_move_the_job_to_the_running_index(
    db: &EmbeddedJobDB,
    early: &Job,
    later: DateTime<Utc>,
) {
    assert_eq!(
        db.claim(early.id, early.fire_token + 1, now())
            .await
            .unwrap(),
        None
    );
    let claimed = db
        .claim(early.id, early.fire_token, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claimed.status, claimed.version), (JobStatus::Running, 1));
    assert!(claimed.pending.run && claimed.pending.create);
    assert_eq!(
        db.claim(early.id, early.fire_token, now()).await.unwrap(),
        None
    );
    assert!(
        db.scheduled_before(now() + chrono::Duration::seconds(2))
            .await
            .unwrap()
            .found
            .is_empty()
    );
    assert_eq!(
        db.running_before(later).await.unwrap(),
        Scan::readable(vec![claimed.clone()])
    );
}

/// The outbox entry clears only at the version it was read at.
async fn outbox_clears_at_its_version(db: &EmbeddedJobDB, early: &Job, late: &Job) {
    assert!(
        !db.set_pending_if(early.id, 0, PendingEvents::NONE)
            .await
            .unwrap()
    );
    assert!(
        db.set_pending_if(early.id, 1, PendingEvents::NONE)
            .await
            .unwrap()
    );
    assert_eq!(
        db.with_pending_events(10).await.unwrap(),
        Scan::readable(vec![late.clone()])
    );
}

/// Results: stored once, then duplicates and late ones; the job leaves the
/// running index.
async fn results_take_the_job_out_of_the_running_index(
    db: &EmbeddedJobDB,
    early: &Job,
    later: DateTime<Utc>,
) {
    assert_eq!(
        db.store_result(early.id, &RunReport::of(ResultStatus::Failed, None), now())
            .await
            .unwrap(),
        ResultOutcome::Stored
    );
    assert_eq!(
        db.store_result(early.id, &RunReport::of(ResultStatus::Failed, None), now())
            .await
            .unwrap(),
        ResultOutcome::Duplicate
    );
    assert_eq!(
        db.store_result(
            early.id,
            &RunReport::of(ResultStatus::Succeeded, None),
            now()
        )
        .await
        .unwrap(),
        ResultOutcome::Ignored(JobStatus::Failed)
    );
    assert_eq!(
        db.store_result(
            JobId::new(),
            &RunReport::of(ResultStatus::Failed, None),
            now()
        )
        .await
        .unwrap(),
        ResultOutcome::UnknownJob
    );
    assert!(db.running_before(later).await.unwrap().found.is_empty());
}

/// replace_if only at the expected version; delete removes every trace.
async fn replace_and_delete_keep_the_indexes(db: &EmbeddedJobDB, late: &Job) {
    let moved = late.rescheduled(late.spec.clone(), now());
    assert!(!db.replace_if(&moved, 7, &[]).await.unwrap());
    assert!(db.replace_if(&moved, 0, &[]).await.unwrap());
    assert!(db.delete(late.id).await.unwrap());
    assert!(!db.delete(late.id).await.unwrap());
    assert_eq!(
        db.list(PageRequest::new(1, 10, 10).unwrap(), &JobFilter::default())
            .await
            .unwrap()
            .jobs
            .len(),
        1
    );
    assert!(db.with_pending_events(10).await.unwrap().found.is_empty());
}

#[tokio::test]
async fn jobs_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let kept = Job {
        trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        ..job(60_000)
    };
    {
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        db.insert(&kept).await.unwrap();
    }
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    assert_eq!(db.get(kept.id).await.unwrap(), Some(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_win_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    let jobs: Vec<Job> = (0..50).map(|_| job(0)).collect();
    for job in &jobs {
        db.insert(job).await.unwrap();
    }
    let claimers = (0..8).map(|_| {
        let (db, jobs) = (db.clone(), jobs.clone());
        tokio::spawn(async move {
            let mut won = 0;
            for job in &jobs {
                won += usize::from(
                    db.claim(job.id, job.fire_token, now())
                        .await
                        .unwrap()
                        .is_some(),
                );
            }
            won
        })
    });
    let won: usize = futures::future::join_all(claimers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(won, jobs.len());
}

#[tokio::test]
async fn a_file_from_before_retention_has_its_finished_jobs_indexed_once_opened() {
    let dir = tempfile::tempdir().unwrap();
    let done = Job {
        status: JobStatus::Succeeded,
        pending: PendingEvents::NONE,
        updated_at: now() - chrono::Duration::seconds(1),
        ..job(-60_000)
    };
    {
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        db.insert(&done).await.unwrap();
    }
    // As a file written before the index: no entry, no mark.
    {
        let db = Database::create(dir.path().join("jobs.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(FINISHED).unwrap();
        txn.delete_table(tables::UPGRADES).unwrap();
        txn.commit().unwrap();
    }
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    let found = db.finished_before(now(), 10).await.unwrap();
    assert_eq!(found.found, [done]);
}

#[test]
fn the_facets_read_alone_are_those_of_the_whole_job() {
    use crate::domain::{JobFacets, recurrence::RecurrenceSpec};
    let mut email = job(60_000);
    email.spec.job_type = JobType::Email;
    email.spec.name = "a \"quoted\" name".into();
    let recurring = |paused: bool| {
        let job = job(60_000)
            .with_recurrence(RecurrenceSpec::every_minute(), now())
            .expect("recurring");
        job.with_paused(paused, now()).expect("pausable")
    };
    for job in [job(60_000), email, recurring(false), recurring(true)] {
        let bytes = codec::encode(&job).expect("encoded");
        let facets = codec::decode_facets(job.id, &bytes).expect("facets");
        assert_eq!(facets, JobFacets::of(&job), "{job:?}");
    }
}

/// A job as an older version stored it: JSON, with the fields added later
/// absent.
fn stored_as_json(job: &Job) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": job.spec.name,
        "description": job.spec.description,
        "schedule_ms": job.spec.schedule_time.timestamp_millis(),
        "created_ms": job.created_at.timestamp_millis(),
        "updated_ms": job.updated_at.timestamp_millis(),
        "status": job.status.as_i32(),
        "job_type": job.spec.job_type.as_i32(),
        "job_data": job.spec.job_data,
        "fire_token": job.fire_token,
        "version": job.version,
        "pending_create": job.pending.create,
        "pending_update": job.pending.update,
        "pending_run": job.pending.run,
    }))
    .expect("JSON")
}

#[test]
fn jobs_stored_as_json_read_as_they_were_and_are_written_binary_and_smaller() {
    let mut quoted = job(60_000);
    quoted.spec.name = "a \"quoted\" name".into();
    quoted.spec.job_data = r#"{"To":"a@example.com","Subject":"s"}"#.into();
    for job in [job(60_000), quoted] {
        let json = stored_as_json(&job);
        assert_eq!(codec::decode(job.id, &json).expect("read"), job);
        assert_eq!(
            codec::decode_facets(job.id, &json).expect("facets"),
            crate::domain::JobFacets::of(&job)
        );
        let binary = codec::encode(&job).expect("encoded");
        assert_eq!(binary.first(), Some(&codec::BINARY));
        assert!(
            binary.len() * 2 < json.len(),
            "{} vs {}",
            binary.len(),
            json.len()
        );
        assert_eq!(codec::decode(job.id, &binary).expect("read"), job);
    }
}

#[tokio::test]
async fn a_job_stored_as_json_by_an_older_version_is_claimed_and_rewritten_binary() {
    let dir = tempfile::tempdir().unwrap();
    let due = job(-1_000);
    {
        let db = EmbeddedJobDB::open(dir.path()).unwrap();
        db.insert(&due).await.unwrap();
    }
    {
        let db = Database::create(dir.path().join("jobs.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let json = stored_as_json(&due);
        txn.open_table(JOBS)
            .unwrap()
            .insert(due.id.bytes().as_slice(), json.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let db = EmbeddedJobDB::open(dir.path()).unwrap();
    assert_eq!(db.get(due.id).await.unwrap(), Some(due.clone()));
    let claimed = db.claim(due.id, due.fire_token, now()).await.unwrap();
    assert_eq!(claimed.map(|job| job.status), Some(JobStatus::Running));
    let stored = db
        .blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            let bytes = jobs.get(due.id.bytes().as_slice()).map_err(storage)?;
            Ok(bytes.map(|bytes| bytes.value().first().copied()))
        })
        .await
        .unwrap();
    assert_eq!(
        stored,
        Some(Some(codec::BINARY)),
        "rewritten in the binary form"
    );
}
