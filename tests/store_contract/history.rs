//! The run history: a claimed job holds its run in flight, and the change
//! that ends the run (a result, a timeout) records it whole in the same
//! atomic step (a lost claim or a lost conditional write records nothing,
//! a claim made once is one run); `replace_if` records the runs it is
//! given only when it wins; a job's runs are listed newest first (the run
//! in flight first, `store::runs_of`), in pages, with their total;
//! deleting a job deletes its runs; pruning keeps the newest runs of each
//! job and removes old finished runs, in bounded batches. Retention of
//! finished jobs: `finished_before` finds the finished one-shot jobs that
//! owe nothing, oldest first; `delete_if` deletes a job with its runs only
//! at the version given.

use super::recurring::every_minute;
use super::support::*;

cases!(
    a_claim_starts_a_run_and_its_result_ends_it,
    a_batch_claim_puts_each_job_in_flight_once,
    a_lost_claim_or_write_records_nothing,
    retries_are_runs_of_their_own_listed_newest_first,
    concurrent_listings_answer_each_job_its_own_runs,
    listings_at_once_record_each_run_once,
    a_run_timeout_ends_the_run_timed_out,
    a_recurring_occurrence_is_a_run,
    deleting_a_job_deletes_its_runs,
    pruning_keeps_the_newest_and_removes_old_finished_runs_in_batches,
    finished_jobs_that_owe_nothing_are_found_oldest_first,
    delete_if_deletes_a_job_and_its_runs_only_at_its_version,
);

/// All of job `id`'s runs, newest first (none for an unknown job).
async fn runs_of(db: &Store, id: JobId) -> Vec<Run> {
    let listed = store::runs_of(&**db, id, page(1, 100)).await.expect("runs");
    let Some(listed) = listed else {
        return Vec::new();
    };
    assert_eq!(
        listed.total,
        listed.runs.len() as u64,
        "one page holds them all"
    );
    listed.runs
}

/// A one-shot job due at `due`, allowed `attempts` attempts, stored.
async fn stored(db: &Store, name: &str, due: DateTime<Utc>, attempts: u32) -> Job {
    let mut job = job(name, due);
    job.attempts = Attempts::fresh(Some(
        RetryPolicy::new(attempts, 1_000, 1_000, 1.0, 0.0).expect("policy"),
    ));
    db.insert(&job).await.expect("insert");
    job
}

fn failure(error: &str) -> RunReport {
    RunReport::of(ResultStatus::Failed, None)
        .with_details(Some(error.into()), Some("worker-7".into()), false, None)
        .expect("report")
}

/// `job` (RUNNING) after a failure at `at` with attempts left: written
/// with its run's end; the retry, SCHEDULED under a new token.
async fn fail(db: &Store, job: &Job, error: &str, at: DateTime<Utc>) -> Job {
    let report = failure(error);
    let retry = job
        .take_report(&report, &RetryPolicy::NONE, at)
        .expect("takes the report");
    let runs = history::changes(job, &retry, Some(&report), at);
    assert!(
        db.replace_if(&retry, job.version, &runs)
            .await
            .expect("write")
    );
    retry
}

async fn claimed(db: &Store, job: &Job, at: DateTime<Utc>) -> Job {
    db.claim(job.id, job.fire_token, at)
        .await
        .expect("claim")
        .expect("claimed")
}

async fn a_claim_starts_a_run_and_its_result_ends_it(db: &Store) {
    let due = now() - TimeDelta::seconds(3);
    let job = stored(db, "once", due, 1).await;
    assert!(runs_of(db, job.id).await.is_empty());
    let fired_at = now();
    let running = claimed(db, &job, fired_at).await;
    let started = Run {
        job_id: job.id,
        fire_token: running.fire_token,
        attempt: 1,
        cause: RunCause::Scheduled,
        due_at: due,
        fired_at,
        finished_at: None,
        outcome: RunOutcome::Running,
        error: None,
        executor: None,
    };
    assert_eq!(runs_of(db, job.id).await, std::slice::from_ref(&started));

    let done_at = fired_at + TimeDelta::seconds(2);
    let report = RunReport::of(ResultStatus::Succeeded, Some(running.fire_token))
        .with_details(None, Some("mailer-1".into()), false, None)
        .expect("report");
    let outcome = db
        .store_result(job.id, &report, done_at)
        .await
        .expect("result");
    assert_eq!(outcome, ResultOutcome::Stored);
    let ended = Run {
        finished_at: Some(done_at),
        outcome: RunOutcome::Succeeded,
        executor: Some("mailer-1".into()),
        ..started
    };
    assert_eq!(runs_of(db, job.id).await, std::slice::from_ref(&ended));

    // The same result again changes neither the job nor its run.
    let again = db.store_result(job.id, &report, done_at + TimeDelta::seconds(1));
    assert_eq!(again.await.expect("again"), ResultOutcome::Duplicate);
    assert_eq!(runs_of(db, job.id).await, [ended]);
}

async fn a_batch_claim_puts_each_job_in_flight_once(db: &Store) {
    let at = now();
    let jobs = [
        stored(db, "a", at, 1).await,
        stored(db, "b", at, 1).await,
        stored(db, "c", at, 1).await,
    ];
    // (A firing named twice is claimed once: the area `claims`, on the
    // stores whose conditional writes are atomic.)
    let firings: Vec<(JobId, i64)> = jobs.iter().map(|j| (j.id, j.fire_token)).collect();
    let won = db.claim_many(&firings, at).await.expect("claim_many");
    assert_eq!(won.len(), 3);
    for job in &jobs {
        let runs = runs_of(db, job.id).await;
        assert_eq!(runs.len(), 1, "{}", job.spec.name);
        assert_eq!(runs[0].fire_token, job.fire_token);
        assert_eq!(runs[0].outcome, RunOutcome::Running);
    }
}

async fn a_lost_claim_or_write_records_nothing(db: &Store) {
    let at = now();
    let job = stored(db, "lost", at, 3).await;
    let stale = db
        .claim(job.id, job.fire_token ^ 1, at)
        .await
        .expect("claim");
    assert!(stale.is_none());
    assert!(runs_of(db, job.id).await.is_empty());

    let running = claimed(db, &job, at).await;
    assert!(
        db.claim(job.id, job.fire_token, at)
            .await
            .expect("again")
            .is_none()
    );
    assert_eq!(runs_of(db, job.id).await.len(), 1);

    // A write that loses its version check records none of its runs.
    let report = failure("lost");
    let retry = running
        .take_report(&report, &RetryPolicy::NONE, at)
        .expect("takes it");
    let runs = history::changes(&running, &retry, Some(&report), at);
    let lost = db.replace_if(&retry, running.version - 1, &runs).await;
    assert!(!lost.expect("write"));
    assert_eq!(runs_of(db, job.id).await[0].outcome, RunOutcome::Running);
}

async fn retries_are_runs_of_their_own_listed_newest_first(db: &Store) {
    let start = now() - TimeDelta::minutes(10);
    let mut job = stored(db, "flaky", start, 5).await;
    let mut tokens = Vec::new();
    for n in 0..4 {
        let at = start + TimeDelta::seconds(10 * n);
        let running = claimed(db, &job, at).await;
        tokens.push(running.fire_token);
        job = fail(
            db,
            &running,
            &format!("failure {n}"),
            at + TimeDelta::seconds(1),
        )
        .await;
    }
    let runs = runs_of(db, job.id).await;
    let listed: Vec<(i64, u32, RunCause, RunOutcome)> = runs
        .iter()
        .map(|r| (r.fire_token, r.attempt, r.cause, r.outcome))
        .collect();
    let expected: Vec<(i64, u32, RunCause, RunOutcome)> = (0..4)
        .rev()
        .map(|n| {
            let cause = if n == 0 {
                RunCause::Scheduled
            } else {
                RunCause::Retry
            };
            (tokens[n], n as u32 + 1, cause, RunOutcome::Failed)
        })
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(runs[0].error.as_deref(), Some("failure 3"));
    assert_eq!(runs[3].executor.as_deref(), Some("worker-7"));

    let second = store::runs_of(&**db, job.id, page(2, 3)).await;
    let second = second.expect("page 2").expect("a job");
    assert_eq!(second.total, 4);
    assert_eq!(second.runs, runs[3..]);
}

/// Replicas listing the runs of different jobs at once each get their
/// job's runs and nothing else (polodb numbers its cursors so that
/// concurrent queries collided, answering one with another's documents or
/// with "cursor not found").
async fn concurrent_listings_answer_each_job_its_own_runs(db: &Store) {
    const JOBS: usize = 8;
    const ROUNDS: usize = 8;
    let at = now() - TimeDelta::minutes(5);
    let mut expected = HashMap::new();
    for n in 0..JOBS {
        let job = stored(db, &format!("job {n}"), at, 3).await;
        let running = claimed(db, &job, at).await;
        fail(db, &running, &format!("failure {n}"), at).await;
        expected.insert(job.id, runs_of(db, job.id).await);
    }
    let replicas = [db.replica(4).await, db.replica(4).await];
    let listings = (0..ROUNDS).flat_map(|_| {
        expected
            .iter()
            .zip(replicas.iter().cycle())
            .map(|((id, _), replica)| async move {
                let jobs = replica
                    .list(page(1, 100), &JobFilter::default())
                    .await
                    .expect("list");
                let listed = store::runs_of(&**replica, *id, page(1, 100)).await;
                (jobs, *id, listed.expect("runs").expect("a job").runs)
            })
    });
    let mut ids: Vec<JobId> = expected.keys().copied().collect();
    ids.sort();
    for (jobs, id, runs) in futures::future::join_all(listings).await {
        let mut listed: Vec<JobId> = jobs.jobs.iter().map(|job| job.id).collect();
        listed.sort();
        assert_eq!((jobs.total, listed), (JOBS as u64, ids.clone()));
        assert_eq!(runs, expected[&id], "the runs of {id}");
    }
}

/// Listings of one job's runs at once, on several replicas, each see every
/// run once (on MongoDB, each may copy the job's run log into the runs
/// collection: a copy again finds the runs already there).
async fn listings_at_once_record_each_run_once(db: &Store) {
    let at = now() - TimeDelta::minutes(5);
    let mut job = stored(db, "flaky", at, 4).await;
    for n in 0..3 {
        let running = claimed(db, &job, at + TimeDelta::seconds(n)).await;
        job = fail(
            db,
            &running,
            &format!("failure {n}"),
            at + TimeDelta::seconds(n),
        )
        .await;
    }
    let replicas = [db.replica(2).await, db.replica(2).await];
    let listings = (0..6).map(|n| {
        let replica = &replicas[n % 2];
        async move { store::runs_of(&**replica, job.id, page(1, 100)).await }
    });
    for listed in futures::future::join_all(listings).await {
        let runs = listed.expect("runs").expect("a job").runs;
        let attempts: Vec<u32> = runs.iter().map(|run| run.attempt).collect();
        assert_eq!(attempts, [3, 2, 1], "each run once, newest first");
    }
    assert_eq!(runs_of(db, job.id).await.len(), 3);
}

async fn a_run_timeout_ends_the_run_timed_out(db: &Store) {
    let at = now();
    let job = stored(db, "stuck", at, 1).await;
    let running = claimed(db, &job, at).await;
    let later = at + TimeDelta::minutes(5);
    let retried = running.retried(later);
    let runs = history::changes(&running, &retried, None, later);
    assert!(
        db.replace_if(&retried, running.version, &runs)
            .await
            .expect("write")
    );
    let listed = runs_of(db, job.id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].outcome, RunOutcome::TimedOut);
    assert_eq!(listed[0].finished_at, Some(later));
}

async fn a_recurring_occurrence_is_a_run(db: &Store) {
    let job = every_minute("recurring history", None);
    db.insert(&job).await.expect("insert");
    let at = now();
    let running = claimed(db, &job, at).await;
    let runs = runs_of(db, job.id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].fire_token, job.fire_token);
    assert_eq!(runs[0].due_at, job.spec.schedule_time);
    assert_ne!(
        running.fire_token, job.fire_token,
        "the next occurrence's token"
    );

    let report = RunReport::of(ResultStatus::Failed, Some(job.fire_token));
    let outcome = db.store_result(job.id, &report, at).await.expect("result");
    assert_eq!(outcome, ResultOutcome::Stored);
    assert_eq!(runs_of(db, job.id).await[0].outcome, RunOutcome::Failed);
}

async fn deleting_a_job_deletes_its_runs(db: &Store) {
    let at = now();
    let gone = stored(db, "gone", at, 1).await;
    let kept = stored(db, "kept", at, 1).await;
    claimed(db, &gone, at).await;
    claimed(db, &kept, at).await;
    assert!(db.delete(gone.id).await.expect("delete"));
    assert!(runs_of(db, gone.id).await.is_empty());
    assert_eq!(runs_of(db, kept.id).await.len(), 1);
}

async fn pruning_keeps_the_newest_and_removes_old_finished_runs_in_batches(db: &Store) {
    let start = now() - TimeDelta::hours(2);
    // Five finished runs, a minute apart, two hours ago.
    let mut many = stored(db, "many", start, 10).await;
    for n in 0..5 {
        let at = start + TimeDelta::minutes(n);
        let running = claimed(db, &many, at).await;
        many = fail(db, &running, "again", at).await;
    }
    // One old run still running, and one recent finished run.
    let old = stored(db, "old", start, 10).await;
    let old = claimed(db, &old, start).await;
    let recent = stored(db, "recent", now(), 10).await;
    let recent = claimed(db, &recent, now()).await;
    fail(db, &recent, "recent", now()).await;

    let retention = RunRetention {
        per_job: 3,
        fired_before: start + TimeDelta::seconds(150),
        limit: 1,
    };
    let mut removed = Vec::new();
    loop {
        let n = db.prune_runs(retention).await.expect("prune");
        assert!(n <= 1, "a batch is bounded by the limit");
        if n == 0 {
            break;
        }
        removed.push(n);
        assert!(removed.len() <= 10, "pruning never ends");
    }
    // Of `many`: two beyond the newest three, and one more fired before
    // the cutoff (minute 2); minutes 3 and 4 stay.
    assert_eq!(removed.len(), 3);
    let kept: Vec<DateTime<Utc>> = runs_of(db, many.id)
        .await
        .iter()
        .map(|r| r.fired_at)
        .collect();
    assert_eq!(
        kept,
        [start + TimeDelta::minutes(4), start + TimeDelta::minutes(3)]
    );
    assert_eq!(runs_of(db, old.id).await.len(), 1, "a running run is kept");
    assert_eq!(runs_of(db, recent.id).await.len(), 1);
}

/// A one-shot job stored as `status`, last changed `ago` before `at`,
/// owing `pending`.
async fn finished(
    db: &Store,
    name: &str,
    status: JobStatus,
    at: DateTime<Utc>,
    ago: TimeDelta,
    pending: PendingEvents,
) -> Job {
    let job = Job {
        status,
        updated_at: at - ago,
        pending,
        ..job(name, at - TimeDelta::hours(1))
    };
    db.insert(&job).await.expect("insert");
    job
}

/// The finished jobs `finished_before(at, limit)` finds, all readable.
async fn finished_found(db: &Store, at: DateTime<Utc>, limit: usize) -> Vec<Job> {
    db.finished_before(at, limit)
        .await
        .expect("scan")
        .all_readable()
}

async fn finished_jobs_that_owe_nothing_are_found_oldest_first(db: &Store) {
    let at = now();
    let none = PendingEvents::NONE;
    let minutes = TimeDelta::minutes;
    let failed = finished(db, "failed", JobStatus::Failed, at, minutes(10), none).await;
    let succeeded = finished(db, "ok", JobStatus::Succeeded, at, minutes(5), none).await;
    finished(db, "recent", JobStatus::Succeeded, at, -minutes(1), none).await;
    let owes = finished(db, "owing", JobStatus::Succeeded, at, minutes(3), UPDATE).await;
    finished(db, "waiting", JobStatus::Scheduled, at, minutes(20), none).await;
    finished(db, "running", JobStatus::Running, at, minutes(20), none).await;
    let retired = finished(db, "retired", JobStatus::Failed, at, minutes(30), none).await;
    let next = retired.retired(at).expect("a finished job retires");
    assert!(
        db.replace_if(&next, retired.version, &[])
            .await
            .expect("retire")
    );

    let ids: Vec<JobId> = finished_found(db, at, 10)
        .await
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, [failed.id, succeeded.id], "oldest first, nothing owed");
    let first = finished_found(db, at, 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, failed.id);

    // The retired job owes its delete event to the outbox.
    let owing = db
        .with_pending_events(10)
        .await
        .expect("outbox")
        .all_readable();
    let retired_owing = owing.iter().find(|j| j.id == retired.id).expect("owed");
    assert!(retired_owing.pending.delete);

    // Once its event is delivered, the job that owed it is found (last: it
    // changed last the most recently), owing nothing.
    assert!(
        db.set_pending_if(owes.id, owes.version, PendingEvents::NONE)
            .await
            .expect("clear")
    );
    let found = finished_found(db, at, 10).await;
    let ids: Vec<JobId> = found.iter().map(|j| j.id).collect();
    assert_eq!(ids, [failed.id, succeeded.id, owes.id]);
    assert_eq!(found[2].pending, PendingEvents::NONE);
}

async fn delete_if_deletes_a_job_and_its_runs_only_at_its_version(db: &Store) {
    let at = now();
    let job = stored(db, "expiring", at, 1).await;
    let running = claimed(db, &job, at).await;
    let report = RunReport::of(ResultStatus::Succeeded, None);
    let done = db.store_result(job.id, &report, at).await.expect("result");
    assert_eq!(done, ResultOutcome::Stored);
    let version = running.version + 1;
    assert!(
        !db.delete_if(job.id, version - 1)
            .await
            .expect("stale version")
    );
    assert_eq!(runs_of(db, job.id).await.len(), 1, "nothing deleted");
    assert!(db.delete_if(job.id, version).await.expect("delete"));
    assert_eq!(db.get(job.id).await.expect("get"), None);
    assert!(
        runs_of(db, job.id).await.is_empty(),
        "its runs went with it"
    );
    assert!(!db.delete_if(job.id, version).await.expect("gone"));
}
