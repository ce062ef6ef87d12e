//! The PostgreSQL [`JobDB`]: table `jobs` in a schema of its own, one row per
//! job, reached through a pool of `tokio-postgres` connections.
//!
//! Correctness across replicas rests on one guarantee: an `UPDATE ... WHERE`
//! on one row is atomic. Under READ COMMITTED (the default), a writer that
//! finds the row locked by another waits for that transaction to end, then
//! checks its `WHERE` clause again against the row as committed and skips the
//! row if it no longer matches. A conditional `UPDATE` is therefore a
//! compare-and-set: of any number of replicas claiming the same SCHEDULED job
//! with the same fire token, exactly one gets the row back from `RETURNING`;
//! the status, the owed run event (`pending_run`) and the version change in
//! that one statement. This is how the job queues trusted on PostgreSQL claim
//! work (they add `FOR UPDATE SKIP LOCKED` only to pick among many rows, which
//! a claim by id does not need).
//!
//! Every change is one such statement on one row. Besides it, `store_result`
//! reads the row only to tell why an update matched nothing; `list` reads the
//! count and the page in one snapshot; `ensure_indexes` runs its DDL under an
//! advisory lock, so that replicas starting together do not race on it.
//!
//! Every call is bounded by the timeout given to [`PgJobDB::connect`]: waiting
//! for a pooled connection, opening one, and its statements (on the server
//! too, through `statement_timeout`, which also bounds lock waits). A call
//! that times out reports [`StoreError::Unavailable`] and its connection is
//! closed, not reused. Its statement may still have been applied, as with any
//! database; the outbox (`pending_*`, written by the same statement as the
//! change) makes that safe.
//!
//! Times are kept at millisecond precision (`timestamptz(3)`, and truncated
//! before they are sent), the precision of [`crate::domain::now`], so that a
//! job read back equals the job written. PostgreSQL `text` cannot hold the NUL
//! character; a job whose strings contain one is refused with
//! [`StoreError::Other`].

use std::{error::Error as _, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use rustls::pki_types::CertificateDer;
use tokio::time::{Instant, error::Elapsed, timeout_at};
use tokio_postgres::{
    IsolationLevel, NoTls, Row, Socket,
    error::SqlState,
    tls::{MakeTlsConnect, TlsConnect},
    types::{FromSql, ToSql},
};

use super::{
    ClaimManyError, DueJob, JobDB, JobsPage, ResultOutcome, Scan, StoreError, Unreadable,
    pg_tls::{self, SslMode},
    refused_result,
};
use crate::domain::{
    Job, JobId, JobSpec, JobStatus, JobType, PageRequest, PendingEvents, ResultStatus,
};

/// Name of the table that holds the jobs, inside the store's schema.
pub const TABLE: &str = "jobs";

/// Connections each [`PgJobDB`] made by [`PgJobDB::connect`] keeps at most.
pub const DEFAULT_POOL_SIZE: usize = 10;

/// Longest schema name PostgreSQL keeps without truncating it (NAMEDATALEN - 1).
const SCHEMA_MAX_BYTES: usize = 63;

/// First key of the advisory lock that serialises [`JobDB::ensure_indexes`]
/// across replicas; the second is a hash of the schema name.
const DDL_LOCK_CLASS: i32 = 0x4a_6f_62_73; // "Jobs"

/// The columns of a job, in the order [`JobParams::as_params`] binds them.
const COLUMNS: &str = "id, name, description, schedule_time, created_at, updated_at, status, \
                       job_type, job_data, scheduled_key, version, pending_create, \
                       pending_update, pending_run, trace_parent";

/// Jobs in a PostgreSQL table; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgJobDB {
    pool: Pool,
    sql: Arc<Sql>,
    timeout: Duration,
}

impl PgJobDB {
    /// Uses the PostgreSQL server at `uri` (`postgres://user:pass@host:port/db`)
    /// and keeps the jobs in schema `schema` (letters, digits and `_`), without
    /// TLS and with [`DEFAULT_POOL_SIZE`] connections at most.
    ///
    /// Connecting is lazy: this only parses the URI and builds the pool, so it
    /// succeeds while the server is down and calls fail within `timeout` with
    /// [`StoreError::Unavailable`] until it is back. An invalid URI or schema
    /// name is [`StoreError::Other`].
    pub async fn connect(uri: &str, schema: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::connect_with(uri, schema, timeout, DEFAULT_POOL_SIZE, NoTls).await
    }

    /// Like [`PgJobDB::connect_with`], with TLS as the URI's `sslmode` asks
    /// (libpq's five modes, see [`super::pg_tls`]; no TLS without one),
    /// checking certificates against `cas`, or Mozilla's roots when `None`.
    pub async fn connect_tls(
        uri: &str,
        schema: &str,
        timeout: Duration,
        pool_size: usize,
        cas: Option<&[CertificateDer<'static>]>,
    ) -> Result<Self, StoreError> {
        let mode = SslMode::of_uri(uri)
            .map_err(|e| StoreError::Other(format!("invalid database URI: {e}")))?
            .unwrap_or(SslMode::Disable);
        let tls = pg_tls::connector(mode, cas)?;
        Self::connect_with(
            &pg_tls::driver_uri(uri, mode),
            schema,
            timeout,
            pool_size,
            tls,
        )
        .await
    }

    /// Like [`PgJobDB::connect`], with the pool size and the TLS connector
    /// (`NoTls`, or for instance a `postgres-native-tls` or
    /// `tokio-postgres-rustls` connector) chosen by the caller.
    pub async fn connect_with<T>(
        uri: &str,
        schema: &str,
        timeout: Duration,
        pool_size: usize,
        tls: T,
    ) -> Result<Self, StoreError>
    where
        T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
        T::Stream: Sync + Send,
        T::TlsConnect: Sync + Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        validate_schema(schema)?;
        let mut config: tokio_postgres::Config = uri
            .parse()
            .map_err(|e| StoreError::Other(format!("invalid database URI: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("scheduler-service");
        }
        config.connect_timeout(timeout);
        // The server gives up on a statement (or a lock wait) a little before
        // the client stops waiting for it, so that a call that times out has
        // most likely changed nothing, and its connection is not left busy.
        let statement_timeout = format!(
            "-c statement_timeout={}",
            (timeout.as_millis() * 9 / 10).clamp(1, i32::MAX as u128)
        );
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {statement_timeout}"),
            _ => statement_timeout,
        };
        config.options(options);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::Other(format!("database pool: {e}")))?;
        Ok(PgJobDB {
            pool,
            sql: Arc::new(Sql::new(schema)),
            timeout,
        })
    }

    /// The schema the jobs live in.
    pub fn schema(&self) -> &str {
        &self.sql.schema
    }

    /// A pooled connection for one call, and the time the call must be done by.
    async fn begin(&self) -> Result<(Object, Instant), StoreError> {
        let now = Instant::now();
        let deadline = now
            .checked_add(self.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 60 * 60));
        match timeout_at(deadline, self.pool.get()).await {
            Ok(client) => Ok((client.map_err(map_pool_err)?, deadline)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The result of a call's work on `client`. A connection whose work did
    /// not finish in time is closed rather than put back in the pool: it may
    /// be stuck on a server that stopped answering.
    fn finish<T>(
        &self,
        client: Object,
        outcome: Result<Result<T, StoreError>, Elapsed>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok(result) => result,
            Err(_) => {
                drop(Object::take(client));
                Err(self.timed_out())
            }
        }
    }

    fn timed_out(&self) -> StoreError {
        StoreError::Unavailable(format!("database did not answer within {:?}", self.timeout))
    }

    /// Runs one statement and returns the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let (client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let statement = client.prepare_cached(sql).await.map_err(map_err)?;
            client.execute(&statement, params).await.map_err(map_err)
        })
        .await;
        self.finish(client, outcome)
    }

    /// Runs one query and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let (client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let statement = client.prepare_cached(sql).await.map_err(map_err)?;
            client.query(&statement, params).await.map_err(map_err)
        })
        .await;
        self.finish(client, outcome)
    }

    /// Runs one query that returns at most one row.
    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let (client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let statement = client.prepare_cached(sql).await.map_err(map_err)?;
            client.query_opt(&statement, params).await.map_err(map_err)
        })
        .await;
        self.finish(client, outcome)
    }
}

/// Checks that `schema` can be used as an identifier as it is: 1 to 63
/// letters, digits or `_`, not starting with `pg_` (reserved by PostgreSQL).
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let valid = !schema.is_empty()
        && schema.len() <= SCHEMA_MAX_BYTES
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !schema.to_ascii_lowercase().starts_with("pg_");
    if valid {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "invalid schema name {schema:?}: use 1 to {SCHEMA_MAX_BYTES} letters, digits or '_', \
             not starting with 'pg_'"
        )))
    }
}

/// The condition of a job that owes events (the outbox).
const OWING: &str = "(pending_create OR pending_update OR pending_run)";

/// The statements, written once for the store's schema.
struct Sql {
    schema: String,
    create: String,
    insert: String,
    get: String,
    count: String,
    page: String,
    replace_if: String,
    delete: String,
    claim: String,
    claim_many: String,
    store_result: String,
    status_of: String,
    scheduled_before: String,
    with_pending_events: String,
    set_pending_if: String,
    clear_pending_many: String,
    running_before: String,
}

impl Sql {
    /// The statements for `schema`, which [`validate_schema`] accepted; it is
    /// quoted all the same, so that its case is kept.
    fn new(schema: &str) -> Self {
        let quoted = format!("\"{schema}\"");
        let t = format!("{quoted}.{TABLE}");
        let scheduled = JobStatus::Scheduled as i16;
        let running = JobStatus::Running as i16;
        let owing = OWING;
        Sql {
            schema: schema.to_owned(),
            create: create_statements(&t),
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ),
            get: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1"),
            count: format!("SELECT count(*) FROM {t}"),
            page: format!(
                "SELECT {COLUMNS} FROM {t} ORDER BY schedule_time, id OFFSET $1 LIMIT $2"
            ),
            replace_if: format!(
                "UPDATE {t} SET name = $2, description = $3, schedule_time = $4, \
                 created_at = $5, updated_at = $6, status = $7, job_type = $8, job_data = $9, \
                 scheduled_key = $10, version = $11, pending_create = $12, \
                 pending_update = $13, pending_run = $14, trace_parent = $15 \
                 WHERE id = $1 AND version = $16"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            claim: format!(
                "UPDATE {t} SET status = {running}, pending_run = true, \
                 version = version + 1, updated_at = $3 \
                 WHERE id = $1 AND status = {scheduled} AND scheduled_key = $2 \
                 RETURNING {COLUMNS}"
            ),
            claim_many: claim_many_statement(&t),
            // A result that names its firing ($4) matches only that firing.
            store_result: format!(
                "UPDATE {t} SET status = $2, version = version + 1, updated_at = $3 \
                 WHERE id = $1 AND status = {running} \
                 AND ($4::bigint IS NULL OR scheduled_key = $4)"
            ),
            status_of: format!("SELECT status, scheduled_key FROM {t} WHERE id = $1"),
            scheduled_before: format!(
                "SELECT {COLUMNS} FROM {t} \
                 WHERE status = {scheduled} AND schedule_time < $1 \
                 ORDER BY schedule_time, id"
            ),
            with_pending_events: format!(
                "SELECT {COLUMNS} FROM {t} WHERE {owing} ORDER BY updated_at, id LIMIT $1"
            ),
            set_pending_if: format!(
                "UPDATE {t} SET pending_create = $3, pending_update = $4, pending_run = $5 \
                 WHERE id = $1 AND version = $2"
            ),
            // No lock-ordering step here, unlike claim_many: the service
            // clears only jobs it has just claimed, which no other batch
            // statement touches, and single-row statements hold one row lock
            // at a time, so no lock cycle can form.
            clear_pending_many: format!(
                "UPDATE {t} AS j SET pending_create = false, pending_update = false, \
                 pending_run = false \
                 FROM unnest($1::bytea[], $2::bigint[]) AS f(id, version) \
                 WHERE j.id = f.id AND j.version = f.version \
                 RETURNING j.id"
            ),
            running_before: format!(
                "SELECT {COLUMNS} FROM {t} WHERE status = {running} AND updated_at < $1 \
                 ORDER BY updated_at, id"
            ),
        }
    }
}

/// The table and its indexes (each statement idempotent, so that every
/// start and every replica may run them).
fn create_statements(t: &str) -> String {
    let running = JobStatus::Running as i16;
    let owing = OWING;
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (
            id             bytea          PRIMARY KEY CHECK (octet_length(id) = 12),
            name           text           NOT NULL,
            description    text           NOT NULL,
            schedule_time  timestamptz(3) NOT NULL,
            created_at     timestamptz(3) NOT NULL,
            updated_at     timestamptz(3) NOT NULL,
            status         smallint       NOT NULL,
            job_type       smallint       NOT NULL,
            job_data       text           NOT NULL,
            scheduled_key  bigint         NOT NULL,
            version        bigint         NOT NULL,
            pending_create boolean        NOT NULL,
            pending_update boolean        NOT NULL,
            pending_run    boolean        NOT NULL,
            trace_parent   text
         );
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS trace_parent text;
         CREATE INDEX IF NOT EXISTS jobs_status_schedule_time
             ON {t} (status, schedule_time, id);
         CREATE INDEX IF NOT EXISTS jobs_schedule_time_id
             ON {t} (schedule_time, id);
         CREATE INDEX IF NOT EXISTS jobs_pending_updated_at
             ON {t} (updated_at, id) WHERE {owing};
         CREATE INDEX IF NOT EXISTS jobs_running_updated_at
             ON {t} (updated_at, id) WHERE status = {running};"
    )
}

/// The batch claim, one statement for the whole batch: one commit instead of one
/// per job. The rows are locked in id order first, so that two
/// replicas claiming overlapping batches cannot deadlock (an
/// UPDATE ... FROM locks in whatever order its plan meets the
/// rows). Under READ COMMITTED a row locked by another claimer is
/// waited for and its WHERE clause checked again against the
/// committed row, exactly as for the single claim, so each job is
/// still claimed once; a job listed twice is claimed once.
fn claim_many_statement(t: &str) -> String {
    let scheduled = JobStatus::Scheduled as i16;
    let running = JobStatus::Running as i16;
    format!(
        "WITH due AS MATERIALIZED ( \
             SELECT j.id AS due_id FROM {t} AS j \
             JOIN unnest($1::bytea[], $2::bigint[]) AS f(id, key) \
               ON j.id = f.id AND j.scheduled_key = f.key \
             WHERE j.status = {scheduled} \
             ORDER BY j.id FOR UPDATE OF j) \
         UPDATE {t} AS j SET status = {running}, pending_run = true, \
         version = j.version + 1, updated_at = $3 \
         FROM due WHERE j.id = due.due_id \
         RETURNING {returning}",
        returning = qualified("j")
    )
}

/// [`COLUMNS`], each qualified by the table alias `alias` (for statements
/// that join the table with another relation that has an `id` too).
fn qualified(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a server error means that the same statement may succeed when it
/// is tried again (the server cannot serve now, or this attempt lost a race),
/// rather than that the server refused this request.
fn unavailable_state(code: &SqlState) -> bool {
    let transient = [
        SqlState::ADMIN_SHUTDOWN,            // 57P01
        SqlState::CRASH_SHUTDOWN,            // 57P02
        SqlState::CANNOT_CONNECT_NOW,        // 57P03: starting, or recovering
        SqlState::IDLE_SESSION_TIMEOUT,      // 57P05: the session was closed
        SqlState::QUERY_CANCELED,            // 57014: statement_timeout
        SqlState::LOCK_NOT_AVAILABLE,        // 55P03
        SqlState::T_R_SERIALIZATION_FAILURE, // 40001
        SqlState::T_R_DEADLOCK_DETECTED,     // 40P01
        SqlState::READ_ONLY_SQL_TRANSACTION, // 25006: a standby, before fail-over ends
    ];
    let class = code.code().get(..2).unwrap_or_default();
    class == "08" // connection exception
        || class == "53" // insufficient resources: disk full, out of memory, too many connections
        || transient.contains(code)
}

fn map_err(err: tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let message = format!("{db} (SQLSTATE {})", db.code().code());
        return if unavailable_state(db.code()) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Other(message)
        };
    }
    let message = match err.source() {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    // Without a server error, a closed connection or an I/O error anywhere in
    // the chain (refused, reset, connect timeout) means the server is out of reach.
    let mut cause = err.source();
    let mut io = false;
    while let Some(e) = cause {
        io |= e.is::<std::io::Error>();
        cause = e.source();
    }
    if err.is_closed() || io {
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

fn map_pool_err(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => map_err(e),
        PoolError::Timeout(_) | PoolError::Closed => {
            StoreError::Unavailable(format!("database connection pool: {err}"))
        }
        other => StoreError::Other(format!("database connection pool: {other}")),
    }
}

/// A time at the precision the store keeps.
fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(3)
}

/// A job's column values, owned so that they can be bound by reference.
struct JobParams<'a> {
    id: Vec<u8>,
    job: &'a Job,
    schedule_time: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    status: i16,
    job_type: i16,
}

impl<'a> JobParams<'a> {
    fn new(job: &'a Job) -> Self {
        JobParams {
            id: job.id.bytes().to_vec(),
            job,
            schedule_time: ms(job.spec.schedule_time),
            created_at: ms(job.created_at),
            updated_at: ms(job.updated_at),
            status: job.status as i16,
            job_type: job.spec.job_type as i16,
        }
    }

    /// The values in the order of [`COLUMNS`] ($1 to $15).
    fn as_params(&self) -> [&(dyn ToSql + Sync); 15] {
        [
            &self.id,
            &self.job.spec.name,
            &self.job.spec.description,
            &self.schedule_time,
            &self.created_at,
            &self.updated_at,
            &self.status,
            &self.job_type,
            &self.job.spec.job_data,
            &self.job.fire_token,
            &self.job.version,
            &self.job.pending.create,
            &self.job.pending.update,
            &self.job.pending.run,
            &self.job.trace_parent,
        ]
    }
}

/// The id of a row, or why it is not one.
fn id_from_row(row: &Row) -> Result<JobId, Unreadable> {
    let bytes: &[u8] = row
        .try_get("id")
        .map_err(|e| Unreadable::without_id(format!("id: {e}")))?;
    let bytes = <[u8; 12]>::try_from(bytes)
        .map_err(|_| Unreadable::without_id(format!("id of {} bytes, not 12", bytes.len())))?;
    Ok(JobId::from_bytes(bytes))
}

/// One column of the row of job `id`, or why it cannot be read.
fn column<'r, T: FromSql<'r>>(row: &'r Row, id: JobId, name: &str) -> Result<T, Unreadable> {
    row.try_get(name)
        .map_err(|e| Unreadable::job(id, format!("{name}: {e}")))
}

/// Reads a row of [`COLUMNS`] back as a job.
fn job_from_row(row: &Row) -> Result<Job, Unreadable> {
    let id = id_from_row(row)?;
    let status: i16 = column(row, id, "status")?;
    let job_type: i16 = column(row, id, "job_type")?;
    Ok(Job {
        id,
        spec: JobSpec {
            name: column(row, id, "name")?,
            description: column(row, id, "description")?,
            schedule_time: column(row, id, "schedule_time")?,
            job_type: JobType::from_i32(job_type.into())
                .ok_or_else(|| Unreadable::job(id, format!("job_type {job_type}")))?,
            job_data: column(row, id, "job_data")?,
        },
        created_at: column(row, id, "created_at")?,
        updated_at: column(row, id, "updated_at")?,
        status: JobStatus::from_i32(status.into())
            .ok_or_else(|| Unreadable::job(id, format!("status {status}")))?,
        fire_token: column(row, id, "scheduled_key")?,
        version: column(row, id, "version")?,
        pending: PendingEvents {
            create: column(row, id, "pending_create")?,
            update: column(row, id, "pending_update")?,
            run: column(row, id, "pending_run")?,
        },
        trace_parent: column(row, id, "trace_parent")?,
    })
}

/// Rows of [`COLUMNS`] that must all be jobs (the rows a claim changed).
fn jobs_from_rows(rows: &[Row]) -> Result<Vec<Job>, StoreError> {
    rows.iter()
        .map(|row| job_from_row(row).map_err(StoreError::from))
        .collect()
}

/// Rows of [`COLUMNS`] met by a scan: the jobs, and each row that is not one.
fn scan_rows(rows: &[Row]) -> Scan<Job> {
    rows.iter().map(job_from_row).collect()
}

#[async_trait]
impl JobDB for PgJobDB {
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let (mut client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let tx = client.transaction().await.map_err(map_err)?;
            // Every start meets the table and indexes already made; the
            // server's "already exists, skipping" notices are no news.
            tx.batch_execute("SET LOCAL client_min_messages = warning")
                .await
                .map_err(map_err)?;
            // Two replicas starting together would otherwise race on the
            // catalogs, and one of them could fail a CREATE ... IF NOT EXISTS.
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&DDL_LOCK_CLASS, &self.sql.schema],
            )
            .await
            .map_err(map_err)?;
            // Checked first, so that a user without CREATE on the database can
            // use a schema an administrator made.
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    &[&self.sql.schema],
                )
                .await
                .map_err(map_err)?
                .try_get(0)
                .map_err(map_err)?;
            if !exists {
                tx.batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                    self.sql.schema
                ))
                .await
                .map_err(map_err)?;
            }
            tx.batch_execute(&self.sql.create).await.map_err(map_err)?;
            tx.commit().await.map_err(map_err)
        })
        .await;
        self.finish(client, outcome)
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let values = JobParams::new(job);
        let (client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let statement = client
                .prepare_cached(&self.sql.insert)
                .await
                .map_err(map_err)?;
            match client.execute(&statement, &values.as_params()).await {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    Err(StoreError::Other(format!("duplicate id {}", job.id)))
                }
                Err(e) => Err(map_err(e)),
            }
        })
        .await;
        self.finish(client, outcome)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = self
            .query_opt(&self.sql.get, &[&id.bytes().as_slice()])
            .await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    async fn list(&self, page: PageRequest) -> Result<JobsPage, StoreError> {
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let limit = i64::try_from(page.size).unwrap_or(i64::MAX);
        let (mut client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            // One snapshot for both reads, so that the total and the page agree.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(map_err)?;
            let count = tx.prepare_cached(&self.sql.count).await.map_err(map_err)?;
            let total: i64 = tx
                .query_one(&count, &[])
                .await
                .map_err(map_err)?
                .try_get(0)
                .map_err(map_err)?;
            let rows = if offset >= total {
                Vec::new()
            } else {
                let page = tx.prepare_cached(&self.sql.page).await.map_err(map_err)?;
                tx.query(&page, &[&offset, &limit]).await.map_err(map_err)?
            };
            tx.commit().await.map_err(map_err)?;
            Ok((total, rows))
        })
        .await;
        let (total, rows) = self.finish(client, outcome)?;
        let page = scan_rows(&rows);
        Ok(JobsPage {
            jobs: page.found,
            unreadable: page.unreadable,
            total: u64::try_from(total)
                .map_err(|_| StoreError::Other(format!("negative count {total}")))?,
        })
    }

    async fn replace_if(&self, job: &Job, expected_version: i64) -> Result<bool, StoreError> {
        let values = JobParams::new(job);
        let mut params: Vec<&(dyn ToSql + Sync)> = values.as_params().to_vec();
        params.push(&expected_version);
        Ok(self.execute(&self.sql.replace_if, &params).await? == 1)
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let deleted = self
            .execute(&self.sql.delete, &[&id.bytes().as_slice()])
            .await?;
        Ok(deleted == 1)
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let row = self
            .query_opt(
                &self.sql.claim,
                &[&id.bytes().as_slice(), &fire_token, &ms(now)],
            )
            .await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    async fn claim_many(
        &self,
        firings: &[(JobId, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, ClaimManyError> {
        if firings.is_empty() {
            return Ok(Vec::new());
        }
        let (bytes, keys): (Vec<[u8; 12]>, Vec<i64>) =
            firings.iter().map(|(id, key)| (id.bytes(), *key)).unzip();
        let ids: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        // One statement: it claims all of the batch or none of it.
        self.query(&self.sql.claim_many, &[&ids, &keys, &ms(now)])
            .await
            .and_then(|rows| jobs_from_rows(&rows))
            .map_err(|err| ClaimManyError::whole(firings, err))
    }

    async fn store_result(
        &self,
        id: JobId,
        result: ResultStatus,
        fire_token: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        let bytes = id.bytes();
        let status = result.job_status() as i16;
        let stored = self
            .execute(
                &self.sql.store_result,
                &[&bytes.as_slice(), &status, &ms(now), &fire_token],
            )
            .await?;
        if stored == 1 {
            return Ok(ResultOutcome::Stored);
        }
        // Nothing changed; read the job only to tell why.
        let Some(row) = self
            .query_opt(&self.sql.status_of, &[&bytes.as_slice()])
            .await?
        else {
            return Ok(ResultOutcome::UnknownJob);
        };
        let current: i16 = column(&row, id, "status")?;
        let current = JobStatus::from_i32(current.into())
            .ok_or_else(|| Unreadable::job(id, format!("status {current}")))?;
        let current_token: i64 = column(&row, id, "scheduled_key")?;
        Ok(refused_result(current, current_token, result, fire_token))
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        // Whole rows, not only the three columns a due job needs: a row that
        // is not a job is reported here rather than armed, and its claim
        // would fail to read it (with the whole batch it was claimed in).
        let rows = self.query(&self.sql.scheduled_before, &[&until]).await?;
        Ok(scan_rows(&rows).map(|job| DueJob::from(&job)))
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(&self.sql.with_pending_events, &[&limit]).await?;
        Ok(scan_rows(&rows))
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        let set = self
            .execute(
                &self.sql.set_pending_if,
                &[
                    &id.bytes().as_slice(),
                    &version,
                    &remaining.create,
                    &remaining.update,
                    &remaining.run,
                ],
            )
            .await?;
        Ok(set == 1)
    }

    async fn clear_pending_many(&self, jobs: &[(JobId, i64)]) -> Result<Vec<JobId>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (bytes, versions): (Vec<[u8; 12]>, Vec<i64>) = jobs
            .iter()
            .map(|(id, version)| (id.bytes(), *version))
            .unzip();
        let ids: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        let rows = self
            .query(&self.sql.clear_pending_many, &[&ids, &versions])
            .await?;
        Ok(rows.iter().map(id_from_row).collect::<Result<_, _>>()?)
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let rows = self.query(&self.sql.running_before, &[&cutoff]).await?;
        Ok(scan_rows(&rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(sql.claim.contains("status = 2 AND scheduled_key = $2"));
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
}
