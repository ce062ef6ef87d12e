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
//! the status and the version change, and the run event it owes is recorded
//! (a row of `owed_runs`, see [`owed`]), in that one statement. This is how
//! the job queues trusted on PostgreSQL claim work (they add `FOR UPDATE SKIP
//! LOCKED` only to pick among many rows, which a claim by id does not need).
//!
//! Recurring jobs are left out of the single-statement claim and result
//! (`recurrence IS NULL`), so that a one-shot claim stays one statement: a
//! recurring job's claim or result is a read of the row and an `UPDATE ...
//! WHERE version = <read>` of what the domain decided (the run, occurrence
//! N+1 and its fire token together), tried again on a newer read when it
//! lost (`store::claim_read`). A batch claim finds the
//! recurring jobs among the firings it did not claim with one more query.
//! The timer arms rows where `(status = SCHEDULED AND recurrence IS NULL)
//! OR armed`; `armed` is written from `Job::is_armable` by every write of a
//! recurring job.
//!
//! Every change is one such statement on one row (and its owed run). Besides
//! it, `store_result` reads the row only to tell why an update matched
//! nothing; `list` reads the count and the page in one snapshot;
//! `ensure_indexes` runs its DDL under an advisory lock, so that replicas
//! starting together do not race on it.
//!
//! Every call is bounded by the timeout given to [`PgJobDB::connect`]: waiting
//! for a pooled connection, opening one, and its statements (on the server
//! too, through `statement_timeout`, which also bounds lock waits). A call
//! that times out reports [`StoreError::Unavailable`] and its connection is
//! closed, not reused. Its statement may still have been applied, as with any
//! database; the outbox (the `pending_*` flags and `owed_runs`, written by
//! the same statement as the change) makes that safe.
//!
//! Times are kept at millisecond precision (`timestamptz(3)`, and truncated
//! before they are sent), the precision of [`crate::domain::now`], so that a
//! job read back equals the job written. PostgreSQL `text` cannot hold the NUL
//! character; a job whose strings contain one is refused with
//! [`StoreError::Other`].

mod codec;
mod errors;
mod leases;
mod owed;
mod runs;
mod sql;
mod store;
#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{
    Hook, Manager, ManagerConfig, Metrics, Object, Pool, RecyclingMethod, Runtime,
};
use rustls::pki_types::CertificateDer;
use tokio::time::{Instant, error::Elapsed, timeout_at};
use tokio_postgres::{
    NoTls, Row, Socket,
    tls::{MakeTlsConnect, TlsConnect},
    types::ToSql,
};

#[cfg(doc)]
use super::JobDB;
use super::{StoreError, pg_tls};
use crate::config::sslmode::SslMode;
use errors::{map_err, map_pool_err};
use sql::Sql;

/// Name of the table that holds the jobs, inside the store's schema.
pub const TABLE: &str = "jobs";
pub use leases::{LEASES_TABLE, REPLICAS_TABLE};
pub use owed::OWED_RUNS_TABLE;
pub use runs::RUNS_TABLE;

/// Connections each [`PgJobDB`] made by [`PgJobDB::connect`] keeps at most.
pub const DEFAULT_POOL_SIZE: usize = 10;

/// Longest schema name PostgreSQL keeps without truncating it (NAMEDATALEN - 1).
const SCHEMA_MAX_BYTES: usize = 63;

/// First key of the advisory lock that serialises [`JobDB::ensure_indexes`]
/// across replicas; the second is a hash of the schema name.
const DDL_LOCK_CLASS: i32 = 0x4a_6f_62_73; // "Jobs"

/// Uses of a pooled connection between two refreshes of its prepared
/// statements (see [`refresh_plans`]).
const PLAN_REFRESH_USES: usize = 512;

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
            .post_recycle(Hook::sync_fn(|client, metrics| {
                refresh_plans(client, metrics);
                Ok(())
            }))
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

    /// Runs `work` in one transaction, committed if it succeeds (rolled
    /// back when it fails or the call times out).
    async fn in_transaction<T>(
        &self,
        work: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (mut client, deadline) = self.begin().await?;
        let outcome = timeout_at(deadline, async {
            let tx = client.transaction().await.map_err(map_err)?;
            let value = work(&tx).await?;
            tx.commit().await.map_err(map_err)?;
            Ok(value)
        })
        .await;
        self.finish(client, outcome)
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

/// Forgets `client`'s prepared statements every [`PLAN_REFRESH_USES`]
/// uses: each is prepared again on its next call and planned against the
/// table as it is then. PostgreSQL keeps a statement's generic plan until
/// the table's statistics change, and one made while the jobs table was
/// nearly empty scans it whole: the outbox clear of a batch (`id =
/// ANY(...)` over the locked rows) became a sequential scan comparing each
/// row with every id, 40 to 280 ms a call on 10,000 jobs instead of about
/// 8 ms (BENCHMARKS.md, "Stale plans"), until autovacuum's next analyze,
/// up to a minute later. A table grows by about a row a call, so a
/// statement prepared again every few hundred uses never meets a table
/// many times larger than the one its plan was made for. (`DISCARD PLANS`
/// alone keeps a statement's cost history from the small table and plans
/// each call afresh from then on, which made claims slower.)
fn refresh_plans(client: &deadpool_postgres::ClientWrapper, metrics: &Metrics) {
    if metrics.recycle_count % PLAN_REFRESH_USES == PLAN_REFRESH_USES - 1 {
        // Dropped statements are closed on the server in the background.
        client.statement_cache.clear();
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
