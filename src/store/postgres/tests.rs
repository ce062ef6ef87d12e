use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::*;
use super::{codec::ms, errors::unavailable_state, sql::Sql};
use crate::{domain::Job, store::JobDB};

#[test]
fn schema_names_are_plain_identifiers() {
    for good in [
        "jobs_db",
        "test_0123456789abcdef01234567",
        "A1",
        &"s".repeat(63),
    ] {
        assert!(validate_schema(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "jobs-db",
        "jobs db",
        "a\"b",
        "x;DROP",
        "pg_catalog",
        "PG_x",
        "é",
        &"s".repeat(64),
    ] {
        assert!(
            matches!(validate_schema(bad), Err(StoreError::Other(_))),
            "{bad}"
        );
    }
}

#[test]
fn statements_name_the_quoted_schema() {
    let sql = Sql::new("Jobs_1");
    assert!(sql.claim.contains("\"Jobs_1\".jobs"));
    assert!(sql.claim.contains("status = 3"));
    assert!(sql.claim.contains("status + 0 = 2 AND scheduled_key = $2"));
    assert!(sql.create.contains("WHERE status = 3"));
}

#[test]
fn sqlstates_that_trying_again_may_cure_are_unavailable() {
    for (code, transient) in [
        ("08000", true),  // connection exception
        ("08006", true),  // connection failure
        ("53100", true),  // disk full
        ("53200", true),  // out of memory
        ("53300", true),  // too many connections
        ("57P01", true),  // admin shutdown
        ("57P02", true),  // crash shutdown
        ("57P03", true),  // cannot connect now
        ("57014", true),  // query canceled (statement_timeout)
        ("55P03", true),  // lock not available
        ("40001", true),  // serialization failure
        ("40P01", true),  // deadlock detected
        ("25006", true),  // read-only transaction (a standby)
        ("57P04", false), // database dropped
        ("23505", false), // unique violation
        ("42P01", false), // undefined table
        ("22P02", false), // invalid text representation
        ("42501", false), // insufficient privilege
        ("XX000", false), // internal error
    ] {
        assert_eq!(
            unavailable_state(&SqlState::from_code(code)),
            transient,
            "{code}"
        );
    }
}

#[test]
fn times_are_kept_to_the_millisecond() {
    let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
    assert_eq!(ms(t).timestamp_subsec_nanos(), 123_000_000);
}

#[tokio::test]
async fn connecting_checks_the_uri_and_schema_but_not_the_server() {
    let timeout = Duration::from_millis(200);
    assert!(
        PgJobDB::connect("postgres://127.0.0.1:1/x", "ok", timeout)
            .await
            .is_ok()
    );
    assert!(matches!(
        PgJobDB::connect("postgres://127.0.0.1:1/x", "not-ok", timeout).await,
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        PgJobDB::connect("postgres://127.0.0.1:notaport/x", "ok", timeout).await,
        Err(StoreError::Other(_))
    ));
}

/// Held by each test here that uses the test server, so that they run one
/// at a time: a schema created by one (every test makes its own) resets
/// the plan cache of every connection (PostgreSQL does so on any change
/// to `pg_namespace`), and
/// `a_connections_statements_are_prepared_again_as_the_table_grows` reads
/// a cached plan made before its table grew.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A job every minute from 30 s ago: its first occurrence is due.
fn due_every_minute() -> Job {
    use crate::domain::{
        JobSpec, JobType,
        recurrence::{CatchUp, CatchUpMode, DEFAULT_CATCH_UP_WINDOW, Overlap, RecurrenceSpec},
        schedule::{Bounds, DEFAULT_MIN_INTERVAL, IntervalSchedule, Jitter, Schedule, Timing},
    };
    let anchor = ms(Utc::now()) - chrono::TimeDelta::seconds(30);
    let interval =
        IntervalSchedule::new(chrono::TimeDelta::minutes(1), anchor, DEFAULT_MIN_INTERVAL).unwrap();
    let timing = Timing::new(
        Schedule::Interval(interval),
        Bounds::new(None, None, None).unwrap(),
        Jitter::default(),
    )
    .unwrap();
    let spec = JobSpec {
        name: "every minute".into(),
        description: String::new(),
        schedule_time: anchor,
        job_type: JobType::Email,
        job_data: "{}".into(),
    };
    let recurrence = RecurrenceSpec {
        timing,
        catch_up: CatchUp::new(CatchUpMode::Once, DEFAULT_CATCH_UP_WINDOW).unwrap(),
        overlap: Overlap::Run,
    };
    Job::new_recurring(spec, recurrence, anchor).unwrap()
}

/// (On the test server, `test_support::postgres_uri`.) A batch's
/// recurring claim written in one statement retries a job that changed
/// between its read and the write under the same token (here a pause
/// undone), and leaves out one another claimer took.
#[tokio::test]
async fn a_batch_of_recurring_claims_retries_a_job_changed_under_it() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let schema = format!("unit_{}", test_support::unique());
    let db = PgJobDB::connect(
        &test_support::postgres_uri(),
        &schema,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    db.ensure_indexes().await.unwrap();
    let (changed, taken) = (due_every_minute(), due_every_minute());
    for job in [&changed, &taken] {
        db.insert(job).await.unwrap();
    }
    let now = ms(Utc::now());
    let resumed = changed.with_paused(false, now).unwrap();
    assert!(db.replace_if(&resumed, changed.version, &[]).await.unwrap());
    let other = db.claim(taken.id, taken.fire_token, now).await.unwrap();
    assert!(other.is_some(), "another claimer's");

    let firings = [
        (changed.id, changed.fire_token),
        (taken.id, taken.fire_token),
    ];
    let claimed = db
        .claim_each_recurring(
            Vec::new(),
            vec![changed.clone(), taken.clone()],
            &firings,
            now,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, changed.id);
    assert_eq!(claimed[0].version, resumed.version + 1);
    let stored = db.get(changed.id).await.unwrap().unwrap();
    assert_eq!(stored, claimed[0]);
    assert!(stored.pending.run);
    assert_ne!(stored.fire_token, changed.fire_token);
}

/// The name of `query`'s statement in the connection's cache (prepared
/// now if it is not there), after one call of it with no id, and the plan
/// PostgreSQL then holds for it.
async fn cached_plan(db: &PgJobDB, query: &str) -> (String, String) {
    let client = db.pool.get().await.unwrap();
    let statement = client.prepare_cached(query).await.unwrap();
    let none: Vec<Vec<u8>> = Vec::new();
    client.query(&statement, &[&none]).await.unwrap();
    let name: String = client
        .query_one(
            "SELECT name FROM pg_prepared_statements WHERE statement = $1",
            &[&query],
        )
        .await
        .unwrap()
        .get(0);
    let explain = format!("EXPLAIN EXECUTE {name}('{{}}')");
    let rows = client.query(explain.as_str(), &[]).await.unwrap();
    let plan: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    (name, plan.join("\n"))
}

/// A store of one pooled connection on a fresh schema, its table made,
/// and the table's quoted name.
async fn one_connection_store() -> (PgJobDB, String) {
    let schema = format!("unit_{}", test_support::unique());
    let uri = test_support::postgres_uri();
    let db = PgJobDB::connect_with(&uri, &schema, Duration::from_secs(10), 1, NoTls)
        .await
        .unwrap();
    db.ensure_indexes().await.unwrap();
    (db, format!("\"{schema}\".{TABLE}"))
}

/// An insert of generated jobs into `table`, each of `status` with the job
/// data `data` (an SQL expression), owing its create event if `owing`, to
/// be ended by `FROM generate_series(a, b) AS i`.
fn insert_generated(table: &str, status: i16, data: &str, owing: bool) -> String {
    format!(
        "INSERT INTO {table} (id, name, description, schedule_time, created_at,
             updated_at, status, job_type, job_data, scheduled_key, version,
             pending_create, pending_update, pending_run)
         SELECT substr(decode(md5(i::text), 'hex'), 1, 12), 'n', '', now(), now(),
             now(), {status}, 1, {data}, 1, 1, {owing}, false, false"
    )
}

/// (On the test server.) A connection's statements are prepared again
/// every `PLAN_REFRESH_USES` uses: a generic plan made on a table of 20
/// rows, a sequential scan, gives way to the primary key's index once the
/// table has grown (autovacuum kept off, so that nothing else refreshes
/// it), and the old statement is closed.
#[tokio::test]
async fn a_connections_statements_are_prepared_again_as_the_table_grows() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (db, table) = one_connection_store().await;
    let insert = insert_generated(&table, 1, "repeat('x', 100)", false);
    let client = db.pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false);
             {insert} FROM generate_series(1, 20) AS i;
             ANALYZE {table}"
        ))
        .await
        .unwrap();
    // Planned once the analyze is committed, generic from the first call.
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    drop(client);
    let query = format!("SELECT id FROM {table} WHERE id = ANY($1)");
    let (first, small) = cached_plan(&db, &query).await;
    assert!(small.contains("Seq Scan"), "{small}");
    let client = db.pool.get().await.unwrap();
    let grow = format!("{insert} FROM generate_series(21, 20000) AS i");
    client.batch_execute(&grow).await.unwrap();
    drop(client);
    let (same, stale) = cached_plan(&db, &query).await;
    assert_eq!(same, first);
    assert!(stale.contains("Seq Scan"), "{stale}");

    for _ in 0..PLAN_REFRESH_USES {
        drop(db.pool.get().await.unwrap());
    }
    let (again, fresh) = cached_plan(&db, &query).await;
    assert_ne!(again, first, "prepared again");
    assert!(!fresh.contains("Seq Scan"), "{fresh}");
    assert!(fresh.contains("jobs_pkey"), "{fresh}");
    let client = db.pool.get().await.unwrap();
    let left = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = $1",
            &[&first],
        )
        .await
        .unwrap();
    assert_eq!(left.get::<_, i64>(0), 0, "the old statement is closed");
}

/// (On the test server.) The claims and the outbox clear find each job
/// through the primary key in a table of 20,000 SCHEDULED jobs owing their
/// create events that nothing has analyzed yet (as after a burst of
/// creations; autovacuum kept off here). With no statistics the planner
/// takes a partial index that holds them all (the loader's, the outbox's)
/// for the cheapest, and a statement whose condition implied the index's
/// would scan all of it for each id (a claim did with `status = 2`).
#[tokio::test]
async fn claims_and_clears_keep_to_the_primary_key_in_a_table_never_analyzed() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let (db, table) = one_connection_store().await;
    let insert = insert_generated(&table, 2, "'{}'", true);
    let client = db.pool.get().await.unwrap();
    client
        .batch_execute(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false);
             {insert} FROM generate_series(1, 20000) AS i;
             SET plan_cache_mode = force_generic_plan"
        ))
        .await
        .unwrap();
    let sql = &db.sql;
    for (name, statement, types, arguments) in [
        (
            "claim_many",
            &sql.claim_many,
            "bytea[], bigint[], timestamptz",
            "'{}', '{}', now()",
        ),
        (
            "claim",
            &sql.claim,
            "bytea, bigint, timestamptz",
            "'\\x00', 1, now()",
        ),
        (
            "clear_pending_many",
            &sql.clear_pending_many,
            "bytea[], bigint[]",
            "'{}', '{}'",
        ),
    ] {
        client
            .batch_execute(&format!("PREPARE {name}({types}) AS {statement}"))
            .await
            .unwrap();
        let rows = client
            .query(&format!("EXPLAIN EXECUTE {name}({arguments})"), &[])
            .await
            .unwrap();
        let plan: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        let plan = plan.join("\n");
        assert!(plan.contains("jobs_pkey"), "{name}: {plan}");
        for partial in ["jobs_scheduled_schedule_time", "jobs_outbox_updated_at"] {
            assert!(!plan.contains(partial), "{name}: {plan}");
        }
    }
}
