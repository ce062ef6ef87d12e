//! What only the PostgreSQL [`JobDB`] has to show, against a real server on
//! loopback, one fresh schema per test (dropped at its end): replicas racing
//! on `ensure_indexes`, row locks, NUL characters, an unreachable server and
//! one that never answers. The rules every store keeps are checked on
//! PostgreSQL by the store contract (`tests/store_contract`), a corrupt row
//! among them (area `corrupt`).
//!
//! Server: `TEST_POSTGRES_URI`, default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`.

// The store contract's test jobs; this file uses a few of them.
#[allow(dead_code)]
#[path = "store_contract/jobs.rs"]
mod jobs;

use std::time::Duration;

use chrono::Duration as TimeDelta;
use jobs::{job, now, page};
use scheduler_service::{
    domain::{Job, JobFilter, JobId, JobStatus, PendingEvents, ResultStatus, report::RunReport},
    store::{JobDB, StoreError, postgres::PgJobDB},
};
use tokio_postgres::NoTls;

const TIMEOUT: Duration = Duration::from_secs(10);

fn uri() -> String {
    std::env::var("TEST_POSTGRES_URI")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh schema, created by `ensure_indexes`, and a store on it.
struct Fixture {
    db: PgJobDB,
    schema: String,
}

impl Fixture {
    async fn new() -> Self {
        let schema = format!("test_{}", JobId::new().to_hex());
        let db = PgJobDB::connect(&uri(), &schema, TIMEOUT)
            .await
            .expect("connect");
        db.ensure_indexes().await.expect("ensure_indexes");
        Fixture { db, schema }
    }

    async fn drop_schema(self) {
        raw_client()
            .await
            .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .await
            .expect("drop schema");
    }
}

/// A plain connection, for looking behind the store's back.
async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&uri(), NoTls)
        .await
        .expect("raw connect");
    tokio::spawn(connection);
    client
}

/// The indexes of the jobs table in `schema`, by name.
async fn index_names(schema: &str) -> Vec<String> {
    let rows = raw_client()
        .await
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs' \
             ORDER BY indexname",
            &[&schema],
        )
        .await
        .expect("pg_indexes");
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn ensure_indexes_is_idempotent_and_safe_when_replicas_race() {
    let schema = format!("test_{}", JobId::new().to_hex());
    let mut racers = Vec::new();
    for _ in 0..6 {
        let db = PgJobDB::connect(&uri(), &schema, TIMEOUT)
            .await
            .expect("connect");
        racers.push(tokio::spawn(async move { db.ensure_indexes().await }));
    }
    for racer in racers {
        racer.await.expect("join").expect("ensure_indexes");
    }
    let f = Fixture {
        db: PgJobDB::connect(&uri(), &schema, TIMEOUT)
            .await
            .expect("connect"),
        schema,
    };
    f.db.ensure_indexes().await.expect("again");
    let names = index_names(&f.schema).await;
    let expected = [
        "jobs_armed_schedule_time",
        "jobs_client_key",
        "jobs_finished_updated_at",
        "jobs_outbox_updated_at",
        "jobs_pkey",
        "jobs_running_updated_at",
        "jobs_schedule_time_id",
        "jobs_scheduled_schedule_time",
    ];
    assert_eq!(names, expected);
    // A table made before dead letters or before retention has an outbox
    // index without them, and one made before the loader's partial index
    // an index on every job's status; the next start replaces them.
    let old = format!(
        "CREATE INDEX jobs_status_schedule_time ON \"{schema}\".jobs \
         (status, schedule_time, id); \
         CREATE INDEX jobs_pending_updated_at ON \"{schema}\".jobs (updated_at, id) \
         WHERE pending_create OR pending_update OR pending_run; \
         CREATE INDEX jobs_owing_updated_at ON \"{schema}\".jobs (updated_at, id) \
         WHERE pending_create OR pending_update OR pending_run OR pending_dead_letter",
        schema = f.schema
    );
    raw_client()
        .await
        .batch_execute(&old)
        .await
        .expect("old indexes");
    f.db.ensure_indexes().await.expect("upgrade");
    let names = index_names(&f.schema).await;
    assert_eq!(
        names, expected,
        "the old outbox and status indexes are gone"
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn a_call_stuck_on_a_row_lock_gives_up_and_the_store_recovers() {
    let f = Fixture::new().await;
    let due = job("locked", now() - TimeDelta::seconds(1));
    f.db.insert(&due).await.expect("insert");
    let timeout = Duration::from_millis(400);
    let db = PgJobDB::connect_with(&uri(), &f.schema, timeout, 1, NoTls)
        .await
        .expect("connect");
    db.get(due.id).await.expect("open the pooled connection");

    // Another session holds the row.
    let mut holder = raw_client().await;
    let tx = holder.transaction().await.expect("begin");
    tx.execute(
        &format!(
            "SELECT 1 FROM \"{}\".jobs WHERE id = $1 FOR UPDATE",
            f.schema
        ),
        &[&due.id.bytes().as_slice()],
    )
    .await
    .expect("lock");
    // The lock is held until after the claim answers: only the store's
    // timeout can end the claim.
    assert_unavailable(
        unless_hung(db.claim(due.id, due.fire_token, now())).await,
        "claim",
    );
    tx.rollback().await.expect("release");

    // The server cancels the statement a little before the client gives up,
    // so the timed-out claim normally did not happen; if the client was
    // first, the abandoned statement may still go on now that the lock is
    // gone. Either way the job is claimed exactly once (version 1), and the
    // store works again (its only pooled connection was either healthy or
    // replaced).
    let claimed = db
        .claim(due.id, due.fire_token, now())
        .await
        .expect("claim after the lock is gone");
    let stored = unless_hung(async {
        loop {
            let stored = db.get(due.id).await.expect("get").expect("found");
            if stored.status == JobStatus::Running {
                return stored;
            }
            // Only the abandoned claim can make it RUNNING now.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(stored.version, 1, "claimed once");
    if let Some(claimed) = claimed {
        assert_eq!(claimed, stored);
    }
    f.drop_schema().await;
}

#[tokio::test]
async fn a_nul_character_is_refused_not_truncated() {
    let f = Fixture::new().await;
    let job = job("nul\0name", now());
    let err = f.db.insert(&job).await.expect_err("NUL");
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert_eq!(f.db.get(job.id).await.expect("get"), None);
    f.drop_schema().await;
}

/// Longest a call may take before the test calls it hung: far above the
/// store's timeouts here (at most 500 ms), so that a slow machine never
/// fails a test, while a store that ignores its timeout does.
const HANG: Duration = Duration::from_secs(60);

/// Awaits `call`; panics if it is still running after [`HANG`].
async fn unless_hung<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, call)
        .await
        .expect("the call hung: the store's timeout did not end it")
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: {result:?}"
    );
}

/// Every method of a store whose server cannot be reached reports
/// `Unavailable` (none hangs).
async fn every_call_is_unavailable(db: &PgJobDB) {
    unless_hung(every_call_is_unavailable_unbounded(db)).await;
}

async fn every_call_is_unavailable_unbounded(db: &PgJobDB) {
    let id = JobId::new();
    let t = now();
    let job = job("j", t);
    assert_unavailable(db.ensure_indexes().await, "ensure_indexes");
    assert_unavailable(db.insert(&job).await, "insert");
    assert_unavailable(db.get(id).await, "get");
    assert_unavailable(db.list(page(1, 10), &JobFilter::default()).await, "list");
    assert_unavailable(db.replace_if(&job, 0, &[]).await, "replace_if");
    assert_unavailable(db.delete(id).await, "delete");
    assert_unavailable(db.claim(id, 1, t).await, "claim");
    assert_unavailable(
        db.store_result(id, &RunReport::of(ResultStatus::Succeeded, None), t)
            .await,
        "store_result",
    );
    assert_unavailable(db.scheduled_before(t).await, "scheduled_before");
    assert_unavailable(db.with_pending_events(10).await, "with_pending_events");
    assert_unavailable(
        db.set_pending_if(id, 0, PendingEvents::NONE).await,
        "set_pending_if",
    );
    assert_unavailable(db.running_before(t).await, "running_before");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let timeout = Duration::from_millis(500);
    let db = PgJobDB::connect(
        "postgres://postgres:postgres@127.0.0.1:1/postgres",
        "test_unreachable",
        timeout,
    )
    .await
    .expect("connecting is lazy");
    assert_unavailable(unless_hung(db.get(JobId::new())).await, "get");
    every_call_is_unavailable(&db).await;
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_timeout() {
    // Accepts connections and then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(300);
    let db = PgJobDB::connect(
        &format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
        "test_silent",
        timeout,
    )
    .await
    .expect("connecting is lazy");
    // It waited for the server as long as the timeout allows, and says so
    // (not a refused or broken connection).
    let outcome = unless_hung(db.claim(JobId::new(), 1, now())).await;
    // (The pool's connection attempt or the call's own deadline, both
    // set to the timeout, whichever ends first.)
    let gave_up = |why: &str| {
        why == format!("database did not answer within {timeout:?}")
            || why.ends_with("Timeout occurred while creating a new object")
    };
    assert!(
        matches!(&outcome, Err(StoreError::Unavailable(why)) if gave_up(why)),
        "claim on a silent server: {outcome:?}"
    );
    every_call_is_unavailable(&db).await;
    silent.abort();
}

/// The row of job `id` in `schema` as its version, and the transaction
/// that wrote it (`xmin`): a new row version has a new one.
async fn row_writer(schema: &str, id: JobId) -> (i64, String) {
    let row = raw_client()
        .await
        .query_one(
            &format!("SELECT version, xmin::text FROM \"{schema}\".jobs WHERE id = $1"),
            &[&id.bytes().as_slice()],
        )
        .await
        .expect("job row");
    (row.get(0), row.get(1))
}

/// The owed runs of `schema`, as (id, version).
async fn owed_runs(schema: &str) -> Vec<(Vec<u8>, i64)> {
    let rows = raw_client()
        .await
        .query(
            &format!("SELECT id, version FROM \"{schema}\".owed_runs ORDER BY id"),
            &[],
        )
        .await
        .expect("owed runs");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Writes job `id` as a replica of a release before `owed_runs` does: a
/// newer version in `status`, its run owed by the flag (`run_owed`) or not,
/// changed an hour ago.
async fn as_an_earlier_release(f: &Fixture, id: JobId, status: JobStatus, run_owed: bool) {
    let written = raw_client()
        .await
        .execute(
            &format!(
                "UPDATE \"{}\".jobs SET version = version + 1, status = $2, \
                 pending_run = $3, updated_at = $4 WHERE id = $1",
                f.schema
            ),
            &[
                &id.bytes().as_slice(),
                &(status as i16),
                &run_owed,
                &(now() - TimeDelta::hours(1)),
            ],
        )
        .await
        .expect("an earlier release's write");
    assert_eq!(written, 1);
}

/// The jobs the outbox relay would read.
async fn relay_read(db: &PgJobDB) -> Vec<Job> {
    db.with_pending_events(10).await.expect("relay read").found
}

/// A SCHEDULED one-shot job, due a second ago, that owes nothing yet.
async fn settled_due_job(db: &PgJobDB, name: &str) -> Job {
    let job = Job {
        pending: PendingEvents::NONE,
        ..job(name, now() - TimeDelta::seconds(1))
    };
    db.insert(&job).await.expect("insert");
    job
}

#[tokio::test]
async fn a_fired_jobs_run_is_owed_in_a_table_and_its_clear_leaves_the_job_row_unwritten() {
    let f = Fixture::new().await;
    let job = settled_due_job(&f.db, "fired").await;
    let claimed =
        f.db.claim_many(&[(job.id, job.fire_token)], now())
            .await
            .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(claimed[0].pending.run, "the claim reports the run owed");
    let read = f.db.get(job.id).await.expect("get").expect("stored");
    assert!(read.pending.run, "a read sees the run owed");
    assert_eq!(
        owed_runs(&f.schema).await,
        vec![(job.id.bytes().to_vec(), read.version)]
    );
    let owing = relay_read(&f.db).await;
    assert_eq!(owing, vec![read.clone()], "the relay finds it");

    let before = row_writer(&f.schema, job.id).await;
    let cleared =
        f.db.clear_pending_many(&[(job.id, read.version)])
            .await
            .expect("clear");
    assert_eq!(cleared, vec![job.id]);
    assert_eq!(
        row_writer(&f.schema, job.id).await,
        before,
        "the clear deleted the owed run, not wrote the job again"
    );
    assert!(owed_runs(&f.schema).await.is_empty());
    let read = f.db.get(job.id).await.expect("get").expect("stored");
    assert_eq!(read.pending, PendingEvents::NONE);
    assert!(relay_read(&f.db).await.is_empty());
    f.drop_schema().await;
}

#[tokio::test]
async fn a_run_owed_at_an_older_version_counts_for_nothing() {
    // A replica of an earlier release knows only the flags: it writes a
    // fired job's result (a newer version, no run owed) over the owed run
    // a new replica's claim recorded. Its write stands.
    let f = Fixture::new().await;
    let job = settled_due_job(&f.db, "overwritten").await;
    f.db.claim_many(&[(job.id, job.fire_token)], now())
        .await
        .expect("claim");
    as_an_earlier_release(&f, job.id, JobStatus::Succeeded, false).await;
    let read = f.db.get(job.id).await.expect("get").expect("stored");
    assert_eq!(read.pending, PendingEvents::NONE, "{read:?}");
    assert!(relay_read(&f.db).await.is_empty());
    let retired =
        f.db.finished_before(now(), 10)
            .await
            .expect("retention")
            .found;
    assert_eq!(
        retired,
        vec![read],
        "a finished job owing nothing is retired"
    );
    // Its delete takes the stale owed run with it.
    assert!(f.db.delete(job.id).await.expect("delete"));
    assert!(owed_runs(&f.schema).await.is_empty());
    f.drop_schema().await;
}

#[tokio::test]
async fn a_run_owed_through_the_flag_by_an_older_replica_is_relayed_and_cleared() {
    let f = Fixture::new().await;
    let job = settled_due_job(&f.db, "flagged").await;
    // An earlier release's claim: the flag, no owed run.
    as_an_earlier_release(&f, job.id, JobStatus::Running, true).await;
    let owing = relay_read(&f.db).await;
    assert_eq!(owing.len(), 1);
    assert!(owing[0].pending.run);
    let cleared =
        f.db.clear_pending_many(&[(job.id, owing[0].version)])
            .await
            .expect("clear");
    assert_eq!(cleared, vec![job.id]);
    let read = f.db.get(job.id).await.expect("get").expect("stored");
    assert_eq!(read.pending, PendingEvents::NONE);
    f.drop_schema().await;
}
