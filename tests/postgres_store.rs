//! Tests of the PostgreSQL [`JobDB`] against a real server on loopback, one
//! fresh schema per test (dropped at its end).
//!
//! Server: `TEST_POSTGRES_URI`, default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Duration as TimeDelta, SubsecRound, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use scheduler_service::{
    domain::{Job, JobId, JobSpec, JobStatus, JobType, PageRequest, PendingEvents, ResultStatus},
    store::{DueJob, JobDB, ResultOutcome, StoreError, postgres::PgJobDB},
};
use tokio::sync::Barrier;
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

    /// Another store (its own connection pool) on the same schema.
    async fn replica(&self, pool_size: usize) -> PgJobDB {
        PgJobDB::connect_with(&uri(), &self.schema, TIMEOUT, pool_size, NoTls)
            .await
            .expect("connect replica")
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

/// The current time at the store's precision.
fn now() -> DateTime<Utc> {
    scheduler_service::domain::now()
}

fn spec(name: &str, schedule_time: DateTime<Utc>) -> JobSpec {
    JobSpec {
        name: name.to_owned(),
        description: format!("description of {name}"),
        schedule_time,
        job_type: JobType::Email,
        job_data: r#"{"to":"someone@example.com"}"#.to_owned(),
    }
}

fn job(name: &str, schedule_time: DateTime<Utc>) -> Job {
    Job::new_scheduled(spec(name, schedule_time), now())
}

async fn insert_all(db: &PgJobDB, jobs: &[Job]) {
    for job in jobs {
        db.insert(job).await.expect("insert");
    }
}

#[tokio::test]
async fn a_job_reads_back_equal_in_every_field() {
    let f = Fixture::new().await;
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
        },
        trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
    };
    f.db.insert(&job).await.expect("insert");
    assert_eq!(f.db.get(job.id).await.expect("get"), Some(job.clone()));
    for (status, pending) in [
        (JobStatus::Scheduled, PendingEvents::NONE),
        (
            JobStatus::Running,
            PendingEvents {
                create: true,
                update: false,
                run: false,
            },
        ),
        (JobStatus::Succeeded, PendingEvents::NONE),
    ] {
        let other = Job {
            id: JobId::new(),
            status,
            pending,
            fire_token: 0,
            ..job.clone()
        };
        f.db.insert(&other).await.expect("insert");
        assert_eq!(f.db.get(other.id).await.expect("get"), Some(other));
    }

    assert_eq!(f.db.get(JobId::new()).await.expect("get unknown"), None);
    let duplicate = f.db.insert(&job).await.expect_err("duplicate id");
    assert!(
        matches!(duplicate, StoreError::Other(ref m) if m.contains("duplicate")),
        "{duplicate:?}"
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn times_are_stored_to_the_millisecond() {
    let f = Fixture::new().await;
    let precise = DateTime::from_timestamp(1_800_000_000, 987_654_321).expect("valid time");
    let job = Job {
        created_at: precise,
        updated_at: precise,
        ..job("precise", precise)
    };
    f.db.insert(&job).await.expect("insert");
    let read = f.db.get(job.id).await.expect("get").expect("found");
    assert_eq!(read.spec.schedule_time, precise.trunc_subsecs(3));
    assert_eq!(read.created_at, precise.trunc_subsecs(3));
    assert_eq!(read.updated_at, precise.trunc_subsecs(3));
    f.drop_schema().await;
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

#[tokio::test]
async fn list_orders_by_schedule_time_then_id_and_pages() {
    let f = Fixture::new().await;
    let t = now();
    let empty =
        f.db.list(PageRequest::new(1, 10, 100).expect("page"))
            .await
            .expect("list");
    assert_eq!((empty.jobs.len(), empty.total), (0, 0));

    // Seven jobs, three of them at the same time (ordered by id among themselves).
    let mut jobs = Vec::new();
    for (i, offset) in [5, 1, 3, 3, 0, 3, 9].into_iter().enumerate() {
        jobs.push(job(&format!("job {i}"), t + TimeDelta::seconds(offset)));
    }
    insert_all(&f.db, &jobs).await;
    let mut expected = jobs.clone();
    expected.sort_by_key(|j| (j.spec.schedule_time, j.id));

    let mut seen = Vec::new();
    for page in 1..=3 {
        let listed =
            f.db.list(PageRequest::new(page, 3, 100).expect("page"))
                .await
                .expect("list");
        assert_eq!(listed.total, 7);
        assert_eq!(listed.jobs.len(), if page == 3 { 1 } else { 3 });
        seen.extend(listed.jobs);
    }
    assert_eq!(seen, expected);
    let beyond =
        f.db.list(PageRequest::new(4, 3, 100).expect("page"))
            .await
            .expect("list");
    assert_eq!((beyond.jobs.len(), beyond.total), (0, 7));
    let all =
        f.db.list(PageRequest::new(1, 100, 100).expect("page"))
            .await
            .expect("list");
    assert_eq!(all.jobs, expected);
    f.drop_schema().await;
}

#[tokio::test]
async fn replace_if_writes_every_field_only_at_the_expected_version() {
    let f = Fixture::new().await;
    let original = job("original", now());
    f.db.insert(&original).await.expect("insert");

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
    changed.pending = PendingEvents {
        create: false,
        update: true,
        run: true,
    };
    assert_eq!(changed.version, 1);

    // A stale version (what a racing writer read before) changes nothing.
    assert!(!f.db.replace_if(&changed, 5).await.expect("stale"));
    assert_eq!(
        f.db.get(original.id).await.expect("get"),
        Some(original.clone())
    );

    assert!(f.db.replace_if(&changed, 0).await.expect("current"));
    assert_eq!(
        f.db.get(original.id).await.expect("get"),
        Some(changed.clone())
    );

    // The same expectation again is now stale: only one writer wins.
    let loser = original.with_status(JobStatus::Failed, now());
    assert!(!f.db.replace_if(&loser, 0).await.expect("lost"));
    assert_eq!(f.db.get(original.id).await.expect("get"), Some(changed));

    let unknown = job("unknown", now());
    assert!(!f.db.replace_if(&unknown, 0).await.expect("unknown"));
    assert_eq!(f.db.get(unknown.id).await.expect("get"), None);
    f.drop_schema().await;
}

#[tokio::test]
async fn delete_tells_whether_the_job_existed() {
    let f = Fixture::new().await;
    let kept = job("kept", now());
    let gone = job("gone", now());
    insert_all(&f.db, &[kept.clone(), gone.clone()]).await;
    assert!(f.db.delete(gone.id).await.expect("delete"));
    assert!(!f.db.delete(gone.id).await.expect("delete again"));
    assert!(!f.db.delete(JobId::new()).await.expect("delete unknown"));
    assert_eq!(f.db.get(gone.id).await.expect("get"), None);
    assert_eq!(f.db.get(kept.id).await.expect("get"), Some(kept));
    f.drop_schema().await;
}

#[tokio::test]
async fn claim_needs_a_scheduled_job_with_the_fire_token() {
    let f = Fixture::new().await;
    let due = Job {
        pending: PendingEvents {
            create: true,
            update: true,
            run: false,
        },
        ..job("due", now() - TimeDelta::seconds(1))
    };
    f.db.insert(&due).await.expect("insert");
    let at = now() + TimeDelta::milliseconds(3);

    assert_eq!(
        f.db.claim(due.id, due.fire_token ^ 1, at)
            .await
            .expect("wrong key"),
        None
    );
    assert_eq!(
        f.db.claim(JobId::new(), due.fire_token, at)
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(f.db.get(due.id).await.expect("get"), Some(due.clone()));

    let claimed =
        f.db.claim(due.id, due.fire_token, at)
            .await
            .expect("claim")
            .expect("claimed");
    let expected = Job {
        status: JobStatus::Running,
        updated_at: at,
        version: due.version + 1,
        pending: PendingEvents {
            run: true,
            ..due.pending
        },
        ..due.clone()
    };
    assert_eq!(claimed, expected);
    assert_eq!(f.db.get(due.id).await.expect("get"), Some(expected.clone()));

    // RUNNING now: a second claim with the same token finds nothing to claim.
    assert_eq!(
        f.db.claim(due.id, due.fire_token, at).await.expect("again"),
        None
    );

    // Any other status is refused too.
    for status in [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Pending] {
        let other = Job {
            status,
            ..job("other", now())
        };
        f.db.insert(&other).await.expect("insert");
        assert_eq!(
            f.db.claim(other.id, other.fire_token, at)
                .await
                .expect("claim"),
            None,
            "{status:?}"
        );
    }
    f.drop_schema().await;
}

#[tokio::test]
async fn store_result_outcomes() {
    let f = Fixture::new().await;
    let at = now();
    assert_eq!(
        f.db.store_result(JobId::new(), ResultStatus::Succeeded, at)
            .await
            .expect("unknown"),
        ResultOutcome::UnknownJob
    );

    let scheduled = job("scheduled", at);
    f.db.insert(&scheduled).await.expect("insert");
    assert_eq!(
        f.db.store_result(scheduled.id, ResultStatus::Succeeded, at)
            .await
            .expect("not running"),
        ResultOutcome::Ignored(JobStatus::Scheduled)
    );
    assert_eq!(
        f.db.get(scheduled.id).await.expect("get"),
        Some(scheduled.clone())
    );

    let claimed =
        f.db.claim(scheduled.id, scheduled.fire_token, at)
            .await
            .expect("claim")
            .expect("claimed");
    let done_at = at + TimeDelta::seconds(2);
    assert_eq!(
        f.db.store_result(scheduled.id, ResultStatus::Failed, done_at)
            .await
            .expect("store"),
        ResultOutcome::Stored
    );
    let stored = Job {
        status: JobStatus::Failed,
        updated_at: done_at,
        version: claimed.version + 1,
        ..claimed
    };
    assert_eq!(
        f.db.get(scheduled.id).await.expect("get"),
        Some(stored.clone())
    );

    let later = done_at + TimeDelta::seconds(1);
    assert_eq!(
        f.db.store_result(scheduled.id, ResultStatus::Failed, later)
            .await
            .expect("duplicate"),
        ResultOutcome::Duplicate
    );
    assert_eq!(
        f.db.store_result(scheduled.id, ResultStatus::Succeeded, later)
            .await
            .expect("other result"),
        ResultOutcome::Ignored(JobStatus::Failed)
    );
    assert_eq!(f.db.get(scheduled.id).await.expect("get"), Some(stored));
    f.drop_schema().await;
}

#[tokio::test]
async fn the_outbox_lists_owing_jobs_and_clears_them_at_the_read_version() {
    let f = Fixture::new().await;
    let t = now();
    let owing = |name: &str, updated: i64, pending: PendingEvents| Job {
        updated_at: t + TimeDelta::seconds(updated),
        pending,
        ..job(name, t)
    };
    let create = PendingEvents {
        create: true,
        ..PendingEvents::NONE
    };
    let run = PendingEvents {
        run: true,
        ..PendingEvents::NONE
    };
    let update = PendingEvents {
        update: true,
        ..PendingEvents::NONE
    };
    let third = owing("third", 3, run);
    let first = owing("first", 1, create);
    let none = owing("none", 0, PendingEvents::NONE);
    let second = owing("second", 2, update);
    insert_all(
        &f.db,
        &[third.clone(), first.clone(), none.clone(), second.clone()],
    )
    .await;

    assert_eq!(
        f.db.with_pending_events(10).await.expect("outbox"),
        [first.clone(), second.clone(), third.clone()]
    );
    assert_eq!(
        f.db.with_pending_events(2).await.expect("outbox"),
        [first.clone(), second.clone()]
    );
    assert!(
        f.db.with_pending_events(0)
            .await
            .expect("outbox")
            .is_empty()
    );

    // A version that moved on since the read: the new change owes its own event.
    assert!(
        !f.db
            .set_pending_if(first.id, first.version + 1, PendingEvents::NONE)
            .await
            .expect("stale")
    );
    assert!(
        !f.db
            .set_pending_if(JobId::new(), 0, PendingEvents::NONE)
            .await
            .expect("unknown")
    );
    assert!(
        f.db.set_pending_if(first.id, first.version, PendingEvents::NONE)
            .await
            .expect("clear")
    );
    let cleared = f.db.get(first.id).await.expect("get").expect("found");
    assert_eq!(
        cleared,
        Job {
            pending: PendingEvents::NONE,
            ..first.clone()
        },
        "only the owed events change, not the version"
    );
    assert!(
        f.db.set_pending_if(second.id, second.version, run)
            .await
            .expect("set")
    );
    assert_eq!(
        f.db.with_pending_events(10).await.expect("outbox"),
        [
            Job {
                pending: run,
                ..second
            },
            third
        ]
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn scheduled_before_lists_due_scheduled_jobs_earliest_first() {
    let f = Fixture::new().await;
    let t = now();
    let late = job("late", t + TimeDelta::seconds(10));
    let early = job("early", t - TimeDelta::seconds(10));
    let at_until = job("at until", t + TimeDelta::seconds(5));
    let middle = job("middle", t);
    let running = Job {
        status: JobStatus::Running,
        ..job("running", t - TimeDelta::seconds(20))
    };
    let done = Job {
        status: JobStatus::Succeeded,
        ..job("done", t - TimeDelta::seconds(20))
    };
    insert_all(
        &f.db,
        &[
            late.clone(),
            early.clone(),
            at_until,
            middle.clone(),
            running,
            done,
        ],
    )
    .await;
    let until = t + TimeDelta::seconds(5);
    assert_eq!(
        f.db.scheduled_before(until).await.expect("due"),
        [DueJob::from(&early), DueJob::from(&middle)]
    );
    assert_eq!(
        f.db.scheduled_before(until + TimeDelta::seconds(60))
            .await
            .expect("due")
            .len(),
        4
    );
    assert!(
        f.db.scheduled_before(t - TimeDelta::minutes(1))
            .await
            .expect("due")
            .is_empty()
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn running_before_lists_running_jobs_changed_before_the_cutoff() {
    let f = Fixture::new().await;
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
    let old_scheduled = with("old scheduled", JobStatus::Scheduled, -90);
    insert_all(
        &f.db,
        &[
            stuck.clone(),
            fresh.clone(),
            old_done,
            stuck_long.clone(),
            old_scheduled,
        ],
    )
    .await;
    assert_eq!(
        f.db.running_before(t - TimeDelta::seconds(10))
            .await
            .expect("stuck"),
        [stuck_long, stuck]
    );
    assert_eq!(
        f.db.running_before(t).await.expect("strictly before").len(),
        2
    );
    assert_eq!(
        f.db.running_before(t + TimeDelta::seconds(1))
            .await
            .expect("all")
            .len(),
        3
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

/// The issue's requirement: several replicas, each with its own connection
/// pool, race to claim every due job; each job is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_claimers_claim_each_job_exactly_once() {
    const JOBS: usize = 200;
    const REPLICAS: usize = 8;
    const IN_FLIGHT: usize = 4;

    let f = Fixture::new().await;
    let past = now() - TimeDelta::seconds(1);
    let jobs: Vec<Job> = (0..JOBS).map(|i| job(&format!("due {i}"), past)).collect();
    insert_all(&f.db, &jobs).await;
    let due = Arc::new(f.db.scheduled_before(now()).await.expect("due"));
    assert_eq!(due.len(), JOBS);

    let start = Arc::new(Barrier::new(REPLICAS));
    let mut replicas = Vec::new();
    for replica in 0..REPLICAS {
        let db = f.replica(IN_FLIGHT).await;
        let due = Arc::clone(&due);
        let start = Arc::clone(&start);
        replicas.push(tokio::spawn(async move {
            // Open the pool's connections before the race starts.
            let warm: Vec<_> = stream::iter(0..IN_FLIGHT)
                .map(|_| db.get(JobId::new()))
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            drop(warm);
            start.wait().await;
            // Half the replicas walk the jobs forwards, half backwards, so that
            // they meet on the same rows from both sides.
            let order: Vec<DueJob> = if replica % 2 == 0 {
                due.iter().copied().collect()
            } else {
                due.iter().rev().copied().collect()
            };
            let db = &db;
            let claims: Vec<Option<Job>> = stream::iter(order)
                .map(|d| async move { db.claim(d.id, d.fire_token, now()).await })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
            Ok::<_, StoreError>(claims.into_iter().flatten().collect::<Vec<Job>>())
        }));
    }

    let mut claimed_by: HashMap<JobId, usize> = HashMap::new();
    let mut total = 0;
    for handle in replicas {
        let won = handle.await.expect("join").expect("claims");
        total += won.len();
        for job in won {
            assert_eq!(job.status, JobStatus::Running);
            assert!(job.pending.run);
            assert_eq!(job.version, 1);
            *claimed_by.entry(job.id).or_default() += 1;
        }
    }
    assert_eq!(total, JOBS, "successful claims");
    assert_eq!(claimed_by.len(), JOBS, "distinct jobs claimed");
    assert!(claimed_by.values().all(|&n| n == 1));
    for job in &jobs {
        assert_eq!(claimed_by.get(&job.id), Some(&1), "{}", job.spec.name);
    }
    assert!(f.db.scheduled_before(now()).await.expect("due").is_empty());
    let running =
        f.db.running_before(now() + TimeDelta::seconds(1))
            .await
            .expect("running");
    assert_eq!(running.len(), JOBS);
    assert!(running.iter().all(|j| j.version == 1 && j.pending.run));
    f.drop_schema().await;
}

/// The ids of `jobs`, sorted (batch calls answer in no particular order).
fn sorted_ids<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Vec<JobId> {
    let mut ids: Vec<JobId> = jobs.into_iter().map(|j| j.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn claim_many_claims_only_scheduled_jobs_with_their_fire_token() {
    let f = Fixture::new().await;
    let past = now() - TimeDelta::seconds(1);
    let due: Vec<Job> = (0..5).map(|i| job(&format!("due {i}"), past)).collect();
    let stale = job("stale key", past);
    let finished: Vec<Job> = [JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed]
        .into_iter()
        .map(|status| Job {
            status,
            ..job("not scheduled", past)
        })
        .collect();
    insert_all(&f.db, &due).await;
    insert_all(&f.db, std::slice::from_ref(&stale)).await;
    insert_all(&f.db, &finished).await;
    let at = now() + TimeDelta::milliseconds(3);

    assert!(f.db.claim_many(&[], at).await.expect("empty").is_empty());
    let mut batch: Vec<(JobId, i64)> = due.iter().map(|j| (j.id, j.fire_token)).collect();
    batch.push((stale.id, stale.fire_token ^ 1));
    batch.extend(finished.iter().map(|j| (j.id, j.fire_token)));
    batch.push((JobId::new(), 1));
    // Listed twice: claimed once.
    batch.push((due[0].id, due[0].fire_token));

    let claimed = f.db.claim_many(&batch, at).await.expect("claim_many");
    assert_eq!(sorted_ids(&claimed), sorted_ids(&due));
    for job in &claimed {
        let before = due.iter().find(|d| d.id == job.id).expect("a due job");
        let expected = Job {
            status: JobStatus::Running,
            updated_at: at,
            version: before.version + 1,
            pending: PendingEvents {
                run: true,
                ..before.pending
            },
            ..before.clone()
        };
        assert_eq!(job, &expected);
        assert_eq!(f.db.get(job.id).await.expect("get"), Some(expected));
    }
    // Left as they were.
    for other in finished.iter().chain([&stale]) {
        assert_eq!(f.db.get(other.id).await.expect("get").as_ref(), Some(other));
    }
    // Claimed already: a second batch claims nothing.
    assert!(f.db.claim_many(&batch, at).await.expect("again").is_empty());
    f.drop_schema().await;
}

#[tokio::test]
async fn clear_pending_many_clears_only_jobs_still_at_their_version() {
    let f = Fixture::new().await;
    let owing = PendingEvents {
        create: true,
        update: true,
        run: true,
    };
    let jobs: Vec<Job> = (0..4)
        .map(|i| Job {
            pending: owing,
            ..job(&format!("owing {i}"), now())
        })
        .collect();
    insert_all(&f.db, &jobs).await;

    assert!(
        f.db.clear_pending_many(&[])
            .await
            .expect("empty")
            .is_empty()
    );
    let mut batch: Vec<(JobId, i64)> = jobs[..3].iter().map(|j| (j.id, j.version)).collect();
    batch[2].1 += 1; // changed since the read
    batch.push((JobId::new(), 0));
    let mut cleared = f.db.clear_pending_many(&batch).await.expect("clear");
    cleared.sort();
    assert_eq!(cleared, sorted_ids(&jobs[..2]));
    for (i, job) in jobs.iter().enumerate() {
        let expected = if i < 2 {
            Job {
                pending: PendingEvents::NONE,
                ..job.clone()
            }
        } else {
            job.clone()
        };
        assert_eq!(
            f.db.get(job.id).await.expect("get"),
            Some(expected),
            "only the owed events change, not the version"
        );
    }
    f.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batch_claims_claim_each_job_exactly_once() {
    const JOBS: usize = 300;
    const BATCH: usize = 50;
    const REPLICAS: usize = 2;
    const ROUNDS: usize = 5;

    for round in 0..ROUNDS {
        let f = Fixture::new().await;
        let past = now() - TimeDelta::seconds(1);
        let jobs: Vec<Job> = (0..JOBS)
            .map(|i| job(&format!("due {round}.{i}"), past))
            .collect();
        insert_all(&f.db, &jobs).await;
        let due: Arc<Vec<(JobId, i64)>> =
            Arc::new(jobs.iter().map(|j| (j.id, j.fire_token)).collect());

        let start = Arc::new(Barrier::new(REPLICAS));
        let mut replicas = Vec::new();
        for replica in 0..REPLICAS {
            // Its own pool: another replica's connections.
            let db = f.replica(2).await;
            let due = Arc::clone(&due);
            let start = Arc::clone(&start);
            replicas.push(tokio::spawn(async move {
                db.get(JobId::new()).await?;
                start.wait().await;
                // The replicas cut the jobs into batches at different points
                // and in opposite orders, so that their batches overlap
                // partly and meet on the same rows from both sides.
                let order: Vec<(JobId, i64)> = if replica == 0 {
                    due.iter().copied().collect()
                } else {
                    due.iter().rev().copied().collect()
                };
                let offset = replica * BATCH / 2;
                let mut batches = vec![order[..offset].to_vec()];
                batches.extend(order[offset..].chunks(BATCH).map(<[_]>::to_vec));
                let db = &db;
                let claims: Vec<Vec<Job>> = stream::iter(batches)
                    .map(|batch| async move { db.claim_many(&batch, now()).await })
                    .buffer_unordered(2)
                    .try_collect()
                    .await
                    .map_err(|err| err.error)?;
                Ok::<_, StoreError>(claims.into_iter().flatten().collect::<Vec<Job>>())
            }));
        }

        let mut claimed_by: HashMap<JobId, usize> = HashMap::new();
        for handle in replicas {
            let won = handle.await.expect("join").expect("claims");
            for job in won {
                assert_eq!(job.status, JobStatus::Running);
                assert!(job.pending.run);
                assert_eq!(job.version, 1);
                *claimed_by.entry(job.id).or_default() += 1;
            }
        }
        for job in &jobs {
            assert_eq!(claimed_by.get(&job.id), Some(&1), "{}", job.spec.name);
        }
        assert_eq!(claimed_by.len(), JOBS);
        assert!(f.db.scheduled_before(now()).await.expect("due").is_empty());
        f.drop_schema().await;
    }
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
    assert_unavailable(
        db.list(PageRequest::new(1, 10, 100).expect("page")).await,
        "list",
    );
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
