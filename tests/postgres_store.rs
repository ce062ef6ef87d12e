//! What only the PostgreSQL [`JobDB`] has to show, against a real server on
//! loopback, one fresh schema per test (dropped at its end): replicas racing
//! on `ensure_indexes`, row locks, a corrupt row, NUL characters, an
//! unreachable server and one that never answers. The rules every store
//! keeps are checked on PostgreSQL by the store contract
//! (`tests/store_contract`).
//!
//! Server: `TEST_POSTGRES_URI`, default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`.

// The store contract's test jobs; this file uses a few of them.
#[allow(dead_code)]
#[path = "store_contract/jobs.rs"]
mod jobs;

use std::time::{Duration, Instant};

use chrono::Duration as TimeDelta;
use jobs::{job, now, page};
use scheduler_service::{
    domain::{Job, JobId, JobStatus, PendingEvents, ResultStatus},
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
    let rows = raw_client()
        .await
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs' \
             ORDER BY indexname",
            &[&f.schema],
        )
        .await
        .expect("pg_indexes");
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names,
        [
            "jobs_pending_updated_at",
            "jobs_pkey",
            "jobs_running_updated_at",
            "jobs_schedule_time_id",
            "jobs_status_schedule_time",
        ]
    );
    f.drop_schema().await;
}

/// PostgreSQL answers stuck runs longest stuck first (its index order). The
/// trait promises no order here, so the store contract checks only which
/// jobs `running_before` answers.
#[tokio::test]
async fn running_before_answers_the_longest_stuck_first() {
    let f = Fixture::new().await;
    let t = now();
    let running = |name: &str, updated: i64| Job {
        status: JobStatus::Running,
        updated_at: t + TimeDelta::seconds(updated),
        ..job(name, t)
    };
    let stuck = running("stuck", -30);
    let stuck_long = running("stuck long", -60);
    f.db.insert(&stuck).await.expect("insert");
    f.db.insert(&stuck_long).await.expect("insert");
    assert_eq!(
        f.db.running_before(t).await.expect("stuck"),
        [stuck_long, stuck]
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn a_row_that_is_not_a_job_is_reported_as_corrupt() {
    let f = Fixture::new().await;
    let job = job("tampered", now());
    f.db.insert(&job).await.expect("insert");
    raw_client()
        .await
        .execute(
            &format!("UPDATE \"{}\".jobs SET status = 42 WHERE id = $1", f.schema),
            &[&job.id.bytes().as_slice()],
        )
        .await
        .expect("tamper");
    let err = f.db.get(job.id).await.expect_err("corrupt");
    assert!(
        matches!(err, StoreError::Corrupt(ref m) if m.contains("status")),
        "{err:?}"
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn a_call_stuck_on_a_row_lock_gives_up_in_time_and_the_store_recovers() {
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
    let started = Instant::now();
    assert_unavailable(db.claim(due.id, due.fire_token, now()).await, "claim");
    let elapsed = started.elapsed();
    assert!(elapsed < timeout + Duration::from_secs(1), "{elapsed:?}");
    tx.rollback().await.expect("release");

    // The server cancels the statement a little before the client gives up,
    // so the claim normally did not happen; if the client was first, the
    // abandoned statement may have gone on once the lock was released. Either
    // way the job is claimed once, and the store works again (its only pooled
    // connection was either healthy or replaced).
    tokio::time::sleep(timeout).await;
    let timed_out_claim_applied =
        f.db.get(due.id).await.expect("get").expect("found").status == JobStatus::Running;
    let claimed = db
        .claim(due.id, due.fire_token, now())
        .await
        .expect("claim after the lock is gone");
    assert_eq!(claimed.is_some(), !timed_out_claim_applied);
    let stored = db.get(due.id).await.expect("get").expect("found");
    assert_eq!((stored.status, stored.version), (JobStatus::Running, 1));
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

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: {result:?}"
    );
}

/// Every method of a store whose server cannot be reached reports
/// `Unavailable`, each within the timeout.
async fn every_call_is_unavailable(db: &PgJobDB, timeout: Duration) {
    let id = JobId::new();
    let t = now();
    let job = job("j", t);
    let bound = timeout + Duration::from_secs(1);
    let started = Instant::now();
    assert_unavailable(db.ensure_indexes().await, "ensure_indexes");
    assert_unavailable(db.insert(&job).await, "insert");
    assert_unavailable(db.get(id).await, "get");
    assert_unavailable(db.list(page(1, 10)).await, "list");
    assert_unavailable(db.replace_if(&job, 0).await, "replace_if");
    assert_unavailable(db.delete(id).await, "delete");
    assert_unavailable(db.claim(id, 1, t).await, "claim");
    assert_unavailable(
        db.store_result(id, ResultStatus::Succeeded, t).await,
        "store_result",
    );
    assert_unavailable(db.scheduled_before(t).await, "scheduled_before");
    assert_unavailable(db.with_pending_events(10).await, "with_pending_events");
    assert_unavailable(
        db.set_pending_if(id, 0, PendingEvents::NONE).await,
        "set_pending_if",
    );
    assert_unavailable(db.running_before(t).await, "running_before");
    assert!(
        started.elapsed() < bound * 12,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    let timeout = Duration::from_millis(500);
    let db = PgJobDB::connect(
        "postgres://postgres:postgres@127.0.0.1:1/postgres",
        "test_unreachable",
        timeout,
    )
    .await
    .expect("connecting is lazy");
    let started = Instant::now();
    assert_unavailable(db.get(JobId::new()).await, "get");
    assert!(started.elapsed() < timeout + Duration::from_secs(1));
    every_call_is_unavailable(&db, timeout).await;
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
    let started = Instant::now();
    assert_unavailable(
        db.claim(JobId::new(), 1, now()).await,
        "claim on a silent server",
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "{elapsed:?}"
    );
    every_call_is_unavailable(&db, timeout).await;
    silent.abort();
}
