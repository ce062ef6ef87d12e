//! The run history on PostgreSQL: the `job_runs` table (one row per ended
//! run, keyed by job and fire token, its rows deleted with their job by
//! the foreign key), its statements, and the write of the runs a job
//! change ends inside that change's transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::{Row, types::ToSql};

use super::{codec::ms, errors::map_err};
use crate::{
    domain::{
        JobId,
        history::{Run, RunCause, RunOutcome},
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
    pub(super) record: String,
    pub(super) page: String,
    pub(super) count: String,
    pub(super) prune: String,
}

impl RunSql {
    /// The statements for the runs table `runs` (qualified).
    pub(super) fn new(runs: &str) -> Self {
        RunSql {
            // A record written twice (a retried write) is one run.
            record: format!(
                "INSERT INTO {runs} ({RUN_COLUMNS}) \
                 SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::integer[], $4::smallint[], \
                 $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::smallint[], \
                 $9::text[], $10::text[]) \
                 ON CONFLICT DO NOTHING"
            ),
            page: format!(
                "SELECT {RUN_COLUMNS} FROM {runs} WHERE job_id = $1 \
                 ORDER BY fired_at DESC, fire_token DESC OFFSET $2 LIMIT $3"
            ),
            count: format!("SELECT count(*) FROM {runs} WHERE job_id = $1"),
            // Ranked per job newest first; the batch is bounded by $3.
            prune: format!(
                "WITH ranked AS ( \
                     SELECT job_id, fire_token, fired_at, row_number() OVER ( \
                         PARTITION BY job_id ORDER BY fired_at DESC, fire_token DESC) AS n \
                     FROM {runs}), \
                 doomed AS ( \
                     SELECT job_id, fire_token FROM ranked \
                     WHERE n > $1 OR fired_at < $2 LIMIT $3) \
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

/// Records the runs `ended` inside `tx`, in one statement.
pub(super) async fn record(
    tx: &Transaction<'_>,
    sql: &RunSql,
    ended: &[Run],
) -> Result<(), StoreError> {
    if ended.is_empty() {
        return Ok(());
    }
    let columns = RunColumns::new(ended);
    let statement = tx.prepare_cached(&sql.record).await.map_err(map_err)?;
    tx.execute(&statement, &columns.as_params())
        .await
        .map_err(map_err)?;
    Ok(())
}

/// The columns of runs, one array each, in the order of [`RUN_COLUMNS`].
struct RunColumns {
    job_ids: Vec<Vec<u8>>,
    tokens: Vec<i64>,
    attempts: Vec<i32>,
    causes: Vec<i16>,
    due: Vec<DateTime<Utc>>,
    fired: Vec<DateTime<Utc>>,
    finished: Vec<Option<DateTime<Utc>>>,
    outcomes: Vec<i16>,
    errors: Vec<Option<String>>,
    executors: Vec<Option<String>>,
}

impl RunColumns {
    fn new(runs: &[Run]) -> Self {
        RunColumns {
            job_ids: runs.iter().map(|r| r.job_id.bytes().to_vec()).collect(),
            tokens: runs.iter().map(|r| r.fire_token).collect(),
            attempts: runs
                .iter()
                .map(|r| i32::try_from(r.attempt).unwrap_or(i32::MAX))
                .collect(),
            causes: runs.iter().map(|r| r.cause.code()).collect(),
            due: runs.iter().map(|r| ms(r.due_at)).collect(),
            fired: runs.iter().map(|r| ms(r.fired_at)).collect(),
            finished: runs.iter().map(|r| r.finished_at.map(ms)).collect(),
            outcomes: runs.iter().map(|r| r.outcome.code()).collect(),
            errors: runs.iter().map(|r| r.error.clone()).collect(),
            executors: runs.iter().map(|r| r.executor.clone()).collect(),
        }
    }

    fn as_params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.job_ids,
            &self.tokens,
            &self.attempts,
            &self.causes,
            &self.due,
            &self.fired,
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
