//! The run history on PostgreSQL: the `job_runs` table (one row per run,
//! keyed by job and fire token, its rows deleted with their job by the
//! foreign key), its statements, and the writes of run changes inside the
//! transaction of the job change that makes them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::{Row, types::ToSql};

use super::{codec::ms, errors::map_err};
use crate::{
    domain::{
        JobId,
        history::{Run, RunCause, RunChange, RunEnd, RunOutcome},
    },
    store::{StoreError, Unreadable},
};

/// Name of the table of runs, inside the store's schema.
pub const RUNS_TABLE: &str = "job_runs";

/// The columns of a run, in the order [`run_from_row`] reads them.
const RUN_COLUMNS: &str = "job_id, fire_token, attempt, cause, due_at, fired_at, finished_at, \
                           outcome, error, executor";

/// The statements on the runs of the jobs table `jobs`.
pub(super) struct RunSql {
    pub(super) start: String,
    pub(super) end: String,
    pub(super) page: String,
    pub(super) count: String,
    pub(super) prune: String,
}

impl RunSql {
    /// The statements for the runs table `runs` (qualified).
    pub(super) fn new(runs: &str) -> Self {
        RunSql {
            // A start written twice (a retried write) is one run.
            start: format!(
                "INSERT INTO {runs} (job_id, fire_token, attempt, cause, due_at, fired_at, outcome) \
                 SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::integer[], $4::smallint[], \
                 $5::timestamptz[], $6::timestamptz[], $7::smallint[]) \
                 ON CONFLICT DO NOTHING"
            ),
            end: format!(
                "UPDATE {runs} AS r SET finished_at = e.finished_at, outcome = e.outcome, \
                 error = e.error, executor = e.executor \
                 FROM unnest($1::bytea[], $2::bigint[], $3::timestamptz[], $4::smallint[], \
                 $5::text[], $6::text[]) \
                 AS e(job_id, fire_token, finished_at, outcome, error, executor) \
                 WHERE r.job_id = e.job_id AND r.fire_token = e.fire_token"
            ),
            page: format!(
                "SELECT {RUN_COLUMNS} FROM {runs} WHERE job_id = $1 \
                 ORDER BY fired_at DESC, fire_token DESC OFFSET $2 LIMIT $3"
            ),
            count: format!("SELECT count(*) FROM {runs} WHERE job_id = $1"),
            // Ranked per job newest first; the batch is bounded by $3.
            prune: format!(
                "WITH ranked AS ( \
                     SELECT job_id, fire_token, fired_at, finished_at, row_number() OVER ( \
                         PARTITION BY job_id ORDER BY fired_at DESC, fire_token DESC) AS n \
                     FROM {runs}), \
                 doomed AS ( \
                     SELECT job_id, fire_token FROM ranked \
                     WHERE n > $1 OR (finished_at IS NOT NULL AND fired_at < $2) LIMIT $3) \
                 DELETE FROM {runs} AS r USING doomed \
                 WHERE r.job_id = doomed.job_id AND r.fire_token = doomed.fire_token"
            ),
        }
    }
}

/// The table of runs and its index, for `create_statements`.
pub(super) fn create_statement(runs: &str, jobs: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {runs} (
            job_id      bytea          NOT NULL REFERENCES {jobs} (id) ON DELETE CASCADE,
            fire_token  bigint         NOT NULL,
            attempt     integer        NOT NULL,
            cause       smallint       NOT NULL,
            due_at      timestamptz(3) NOT NULL,
            fired_at    timestamptz(3) NOT NULL,
            finished_at timestamptz(3),
            outcome     smallint       NOT NULL,
            error       text,
            executor    text,
            PRIMARY KEY (job_id, fire_token)
         );
         CREATE INDEX IF NOT EXISTS job_runs_newest
             ON {runs} (job_id, fired_at DESC, fire_token DESC);"
    )
}

/// Writes `changes` inside `tx`: the starts in one statement, then the
/// ends in another.
pub(super) async fn record(
    tx: &Transaction<'_>,
    sql: &RunSql,
    changes: &[RunChange],
) -> Result<(), StoreError> {
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for change in changes {
        match change {
            RunChange::Started(run) => starts.push(run),
            RunChange::Ended(end) => ends.push(end),
        }
    }
    if !starts.is_empty() {
        let c = StartColumns::new(&starts);
        execute(tx, &sql.start, &c.as_params()).await?;
    }
    if !ends.is_empty() {
        let c = EndColumns::new(&ends);
        execute(tx, &sql.end, &c.as_params()).await?;
    }
    Ok(())
}

async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = tx.prepare_cached(sql).await.map_err(map_err)?;
    tx.execute(&statement, params).await.map_err(map_err)
}

/// The columns of started runs, one array each.
struct StartColumns {
    job_ids: Vec<Vec<u8>>,
    tokens: Vec<i64>,
    attempts: Vec<i32>,
    causes: Vec<i16>,
    due: Vec<DateTime<Utc>>,
    fired: Vec<DateTime<Utc>>,
    outcomes: Vec<i16>,
}

impl StartColumns {
    fn new(runs: &[&Run]) -> Self {
        StartColumns {
            job_ids: runs.iter().map(|r| r.job_id.bytes().to_vec()).collect(),
            tokens: runs.iter().map(|r| r.fire_token).collect(),
            attempts: runs
                .iter()
                .map(|r| i32::try_from(r.attempt).unwrap_or(i32::MAX))
                .collect(),
            causes: runs.iter().map(|r| r.cause.code()).collect(),
            due: runs.iter().map(|r| ms(r.due_at)).collect(),
            fired: runs.iter().map(|r| ms(r.fired_at)).collect(),
            outcomes: runs.iter().map(|r| r.outcome.code()).collect(),
        }
    }

    fn as_params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.job_ids,
            &self.tokens,
            &self.attempts,
            &self.causes,
            &self.due,
            &self.fired,
            &self.outcomes,
        ]
    }
}

/// The columns of ended runs, one array each.
struct EndColumns {
    job_ids: Vec<Vec<u8>>,
    tokens: Vec<i64>,
    finished: Vec<DateTime<Utc>>,
    outcomes: Vec<i16>,
    errors: Vec<Option<String>>,
    executors: Vec<Option<String>>,
}

impl EndColumns {
    fn new(ends: &[&RunEnd]) -> Self {
        EndColumns {
            job_ids: ends.iter().map(|e| e.job_id.bytes().to_vec()).collect(),
            tokens: ends.iter().map(|e| e.fire_token).collect(),
            finished: ends.iter().map(|e| ms(e.finished_at)).collect(),
            outcomes: ends.iter().map(|e| e.outcome.code()).collect(),
            errors: ends.iter().map(|e| e.error.clone()).collect(),
            executors: ends.iter().map(|e| e.executor.clone()).collect(),
        }
    }

    fn as_params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.job_ids,
            &self.tokens,
            &self.finished,
            &self.outcomes,
            &self.errors,
            &self.executors,
        ]
    }
}

/// A row of the runs table of job `id`, or why it is not a run.
pub(super) fn run_from_row(id: JobId, row: &Row) -> Result<Run, StoreError> {
    let get = |e: tokio_postgres::Error| Unreadable::job(id, format!("run row: {e}"));
    let cause: i16 = row.try_get("cause").map_err(get)?;
    let outcome: i16 = row.try_get("outcome").map_err(get)?;
    let attempt: i32 = row.try_get("attempt").map_err(get)?;
    let code = |what: &str, code: i16| Unreadable::job(id, format!("run row: {what} {code}"));
    Ok(Run {
        job_id: id,
        fire_token: row.try_get("fire_token").map_err(get)?,
        attempt: u32::try_from(attempt).unwrap_or(1),
        cause: RunCause::from_code(cause).ok_or_else(|| code("cause", cause))?,
        due_at: row.try_get("due_at").map_err(get)?,
        fired_at: row.try_get("fired_at").map_err(get)?,
        finished_at: row.try_get("finished_at").map_err(get)?,
        outcome: RunOutcome::from_code(outcome).ok_or_else(|| code("outcome", outcome))?,
        error: row.try_get("error").map_err(get)?,
        executor: row.try_get("executor").map_err(get)?,
    })
}
