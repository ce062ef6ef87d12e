//! Corrupt rows among the jobs of a PostgreSQL store, through the whole
//! service (in process, on the Kafka-protocol test broker): every
//! background duty goes on with the other jobs. The due jobs fire, the
//! events owed are relayed, the stuck run times out, ListJobs answers the
//! readable jobs, and `scheduler_store_errors_total{kind="corrupt"}` counts
//! the corrupt rows each scan met. Each corrupt row comes first in the
//! order of the scans that meet it, so that a scan that stopped at it would
//! miss every other job.
//!
//! The rows are written with the store before the service starts, and
//! corrupted behind its back (`job_type = 42`, a type no job has) with a
//! plain connection. The service runs on a clock the test moves.

mod common;
// The store contract's test jobs; this file uses their spec.
#[allow(dead_code)]
#[path = "store_contract/jobs.rs"]
mod jobs;

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};
use common::{EventReader, advance, metric_value, scrape_metrics, spawn_app_on_clock};
use jobs::spec;
use scheduler_service::{
    clock::{Clock, ManualClock},
    config::vars,
    domain::{Job, JobId, JobStatus, PendingEvents},
    grpc::proto,
    store::{JobDB, postgres::PgJobDB},
    telemetry::metrics,
};
use tokio_postgres::NoTls;

/// Longest wait for what must happen: a bound on a hang, not a timing
/// assertion.
const HANG: Duration = Duration::from_secs(90);

/// The run timeout the service is given (its default), in seconds.
const RUN_TIMEOUT_SECS: i64 = 600;

/// The jobs written to the store before the service starts.
struct Seeded {
    /// SCHEDULED, due a minute ago, owing nothing: they must fire.
    due: Vec<Job>,
    /// Due in a day, owing their create event since an hour ago: the relay
    /// must publish it.
    owing: Vec<Job>,
    /// RUNNING since just before the start: it must time out once the clock
    /// passes the run timeout.
    stuck: Job,
    /// Corrupted once stored: one due and owing its create event (met by
    /// the window loader and the relay), one RUNNING (met by the sweeper).
    corrupt: [Job; 2],
}

impl Seeded {
    /// The jobs, as of `t0`.
    fn new(t0: DateTime<Utc>) -> Self {
        let secs = chrono::Duration::seconds;
        let job = |name: &str, schedule_time: DateTime<Utc>, changed: DateTime<Utc>| Job {
            updated_at: changed,
            ..Job::new_scheduled(spec(name, schedule_time), changed)
        };
        let due = |name: &str, late: i64| Job {
            pending: PendingEvents::NONE,
            ..job(name, t0 - secs(late), t0 - secs(120))
        };
        let running = |name: &str, since: i64| Job {
            status: JobStatus::Running,
            pending: PendingEvents::NONE,
            ..job(name, t0 - secs(since), t0 - secs(since))
        };
        let owing =
            |name: &str, since: i64| job(name, t0 + chrono::Duration::days(1), t0 - secs(since));
        Seeded {
            due: vec![due("due 1", 60), due("due 2", 50), due("due 3", 40)],
            owing: vec![owing("owing 1", 3_000), owing("owing 2", 2_000)],
            stuck: running("stuck", 5),
            corrupt: [
                job("corrupt due", t0 - secs(90), t0 - secs(7_200)),
                running("corrupt running", 10),
            ],
        }
    }

    /// The jobs left readable.
    fn readable(&self) -> Vec<&Job> {
        self.due
            .iter()
            .chain(&self.owing)
            .chain([&self.stuck])
            .collect()
    }

    /// Every job, readable or not.
    fn all(&self) -> Vec<&Job> {
        let mut all = self.readable();
        all.extend(&self.corrupt);
        all
    }
}

/// A plain connection to the PostgreSQL test server.
async fn raw_postgres() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&common::postgres_uri(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Writes `seeded` into `schema` with the store, then corrupts its corrupt
/// jobs behind the store's back.
async fn seed(schema: &str, seeded: &Seeded) {
    let db = PgJobDB::connect(&common::postgres_uri(), schema, HANG)
        .await
        .expect("connect the store");
    db.ensure_indexes().await.expect("ensure_indexes");
    for job in seeded.all() {
        db.insert(job).await.expect("insert");
    }
    let client = raw_postgres().await;
    for job in &seeded.corrupt {
        let changed = client
            .execute(
                &format!("UPDATE \"{schema}\".jobs SET job_type = 42 WHERE id = $1"),
                &[&job.id.bytes().as_slice()],
            )
            .await
            .expect("corrupt the row");
        assert_eq!(changed, 1);
    }
}

/// The ids of `jobs`, as the wire spells them.
fn hex_ids<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> HashSet<String> {
    jobs.into_iter().map(|job| job.id.to_hex()).collect()
}

/// Reads `reader` until it has an event of each of `jobs`; returns the jobs
/// of every event read.
async fn read_events_of(reader: &EventReader, jobs: &HashSet<String>) -> HashSet<String> {
    let mut seen = HashSet::new();
    while !jobs.is_subset(&seen) {
        let event = reader
            .next(HANG)
            .await
            .unwrap_or_else(|| panic!("no event for {:?} (saw {seen:?})", jobs.difference(&seen)));
        seen.insert(event.key);
    }
    seen
}

/// How many corrupt documents the store's `operation` met, as scraped.
async fn corrupt_met(metrics_port: u16, operation: &str) -> f64 {
    metric_value(
        &scrape_metrics(metrics_port).await,
        metrics::STORE_ERRORS,
        &[("operation", operation), ("kind", "corrupt")],
    )
}

#[tokio::test]
async fn corrupt_rows_stop_no_background_duty_on_postgres() {
    let clock = ManualClock::at_wall_time();
    let seeded = Seeded::new(clock.now());
    let schema = format!("corrupt_{}", JobId::new().to_hex());
    seed(&schema, &seeded).await;
    let uri = common::postgres_uri();
    let run_timeout = RUN_TIMEOUT_SECS.to_string();
    let overrides = [
        (vars::DATABASE_URI, uri.as_str()),
        (vars::DATABASE_DB_NAME, schema.as_str()),
        (vars::SCHEDULER_RUN_TIMEOUT_SECS, run_timeout.as_str()),
    ];
    let mut app = spawn_app_on_clock(&overrides, &clock).await;
    let topics = &app.settings.topics;
    let runs = EventReader::new(&topics.job_run.name);
    let creates = EventReader::new(&topics.job_create.name);
    let updates = EventReader::new(&topics.job_update.name);

    // The window loader armed the due jobs past the corrupt one: they fire.
    let mut fired = read_events_of(&runs, &hex_ids(&seeded.due)).await;
    assert!(corrupt_met(app.metrics_port, "scheduled_in").await >= 1.0);
    // The relay published what the readable jobs owe, past the corrupt one.
    let created = read_events_of(&creates, &hex_ids(&seeded.owing)).await;
    assert_eq!(created, hex_ids(&seeded.owing), "only what was owed");
    assert!(corrupt_met(app.metrics_port, "with_pending_events").await >= 1.0);

    // ListJobs answers the readable jobs; the total counts every row.
    let listed = app
        .client
        .list_jobs(proto::ListJobsRequest {
            page: 1,
            size: 20,
            ..Default::default()
        })
        .await
        .expect("ListJobs")
        .into_inner();
    assert_eq!(listed.total_count, 8);
    let listed_ids: HashSet<String> = listed.jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(listed_ids, hex_ids(seeded.readable()));
    assert_eq!(corrupt_met(app.metrics_port, "list").await, 2.0);

    // Past the run timeout, the sweeper fails the stuck run behind the
    // corrupt one, with an update event.
    advance(&clock, (RUN_TIMEOUT_SECS + 1) * 1_000);
    let stuck = hex_ids([&seeded.stuck]);
    read_events_of(&updates, &stuck).await;
    let timed_out = common::wait_for_status(
        &mut app.client,
        &seeded.stuck.id.to_hex(),
        proto::JobStatus::Failed,
        HANG,
    )
    .await;
    assert_eq!(timed_out, proto::JobStatus::Failed);
    assert!(corrupt_met(app.metrics_port, "running_before").await >= 1.0);

    // Once the service stopped, no corrupt job ever fired.
    app.stop().await;
    fired.extend(runs.rest().await.into_iter().map(|event| event.key));
    assert_eq!(fired, hex_ids(&seeded.due), "runs");
    raw_postgres()
        .await
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop the schema");
}
