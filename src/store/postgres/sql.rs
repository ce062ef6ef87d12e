//! The table, its indexes and every statement, written once for the
//! store's schema.

use super::{
    TABLE,
    leases::LeaseSql,
    owed::{self, OWED_RUNS_TABLE},
    runs::{self, RUNS_TABLE, RunSql},
};
use crate::domain::JobStatus;

/// Whether a job is paused (see [`FILTER`]), as a macro so that
/// [`FILTER`] and [`TALLY`] are built from it at compile time.
macro_rules! paused {
    () => {
        "COALESCE((recurrence::jsonb -> 'paused') = 'true'::jsonb, false)"
    };
}

/// The filter of a listing, on parameters $1 to $5 (see `count_where`).
/// Paused ($5) is the `paused` field of the stored recurrence (JSON in a
/// `text` column; a one-shot job's is NULL: not paused), compared as jsonb
/// so that a field that is not a boolean reads as not paused. (A
/// recurrence that is not JSON at all, written from outside the service,
/// fails the cast: only a listing filtered on paused meets it.)
const FILTER: &str = concat!(
    "($1::smallint IS NULL OR status = $1) \
     AND ($2::smallint IS NULL OR job_type = $2) \
     AND ($3::boolean IS NULL OR (recurrence IS NOT NULL) = $3) \
     AND ($4::text IS NULL OR strpos(lower(name), lower($4)) > 0) \
     AND ($5::boolean IS NULL OR ",
    paused!(),
    " = $5)"
);

/// The tally of the jobs in one scan (see `JobTally`): every job, each
/// status (1 to 5), each type (0, 1), the recurring and the paused ones.
const TALLY: &str = concat!(
    "count(*), \
     count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 2), \
     count(*) FILTER (WHERE status = 3), count(*) FILTER (WHERE status = 4), \
     count(*) FILTER (WHERE status = 5), \
     count(*) FILTER (WHERE job_type = 0), count(*) FILTER (WHERE job_type = 1), \
     count(*) FILTER (WHERE recurrence IS NOT NULL), \
     count(*) FILTER (WHERE ",
    paused!(),
    ")"
);

/// The columns of a job, in the order [`super::codec::JobParams::as_params`] binds them.
pub(super) const COLUMNS: &str = "id, name, description, schedule_time, created_at, updated_at, status, \
                       job_type, job_data, scheduled_key, version, pending_create, \
                       pending_update, pending_run, trace_parent, recurrence, armed, client_key, \
                       attempts, pending_dead_letter, pending_delete";

/// The claims' test that a job is still SCHEDULED, written `status + 0`
/// so that the planner cannot prove from it the condition of the loader's
/// partial index (`jobs_scheduled_schedule_time`, see
/// `scheduled_one_shot!`): a claim that could would, while the table
/// has no statistics yet (a burst of creations autovacuum has not
/// analyzed), take that index for cheaper than the primary key and scan
/// all of it for each id (the index is on `schedule_time, id`). Seen in
/// the 30,000-job bench: a batch claim of 2048 in 2.9 s instead of about
/// 60 ms.
const STILL_SCHEDULED: &str = "status + 0 = 2";

/// A one-shot job: the single-statement claim applies to these only; a
/// recurring job's claim, and every result, are a read and a conditional
/// write of what the domain decides (see [`crate::store::claim_read`]).
pub(super) const ONE_SHOT: &str = "recurrence IS NULL";

/// A SCHEDULED one-shot job, as a macro so that [`ARMABLE`] is built from
/// it at compile time; also the condition of the index the window loader
/// reads them through (`jobs_scheduled_schedule_time`).
macro_rules! scheduled_one_shot {
    () => {
        "(status = 2 AND recurrence IS NULL)"
    };
}

/// The jobs the timer should hold: SCHEDULED one-shot jobs, and recurring
/// jobs whose `armed` flag (written from `Job::is_armable` by every write
/// of a recurring job) is set.
pub(super) const ARMABLE: &str = concat!("(", scheduled_one_shot!(), " OR armed)");

/// A job's shard before the modulo: its id's last three bytes (the
/// ObjectId's counter), as [`crate::domain::shard::ShardCount::of`] reads them.
const SHARD_OF_ID: &str = "(get_byte(id, 9) * 65536 + get_byte(id, 10) * 256 + get_byte(id, 11))";

/// The unique index of client keys: an insert that breaks it is
/// [`crate::store::StoreError::ClientKeyTaken`].
pub(super) const CLIENT_KEY_INDEX: &str = "jobs_client_key";

/// The condition of a finished one-shot job (what `JOB_RETENTION` removes).
pub(super) const FINISHED: &str = "(status IN (4, 5) AND recurrence IS NULL)";

/// The condition of a job whose flags say it owes events (the outbox;
/// a run may be owed in `owed_runs` too, see [`super::owed`]).
pub(super) const OWING: &str =
    "(pending_create OR pending_update OR pending_run OR pending_dead_letter OR pending_delete)";

/// The statements, written once for the store's schema.
pub(super) struct Sql {
    pub(super) schema: String,
    pub(super) create: String,
    pub(super) insert: String,
    pub(super) get: String,
    pub(super) count: String,
    pub(super) page: String,
    /// `count` of the jobs a filter admits ($1 status, $2 job type, $3
    /// recurring, $4 name text, $5 paused; each NULL when not filtered on).
    pub(super) count_where: String,
    /// The jobs counted by facet, in one scan (see [`TALLY`]).
    pub(super) tally: String,
    /// `page` of the jobs a filter admits ($6 offset, $7 limit).
    pub(super) page_where: String,
    pub(super) replace_if: String,
    pub(super) delete: String,
    pub(super) claim: String,
    pub(super) claim_many: String,
    /// The armable jobs due before $1, their flags as stored (arming
    /// needs none of them, and the owed runs are not read).
    pub(super) scheduled_before: String,
    /// `scheduled_before` of the jobs of some shards ($2 the shard count,
    /// $3 the shards: see [`SHARD_OF_ID`]).
    pub(super) scheduled_in: String,
    pub(super) with_pending_events: String,
    pub(super) set_pending_if: String,
    pub(super) clear_pending_many: String,
    pub(super) running_before: String,
    pub(super) by_client_key: String,
    pub(super) recurring_of: String,
    pub(super) replace_many_if: String,
    pub(super) armable_of: String,
    pub(super) runs: RunSql,
    pub(super) leases: LeaseSql,
    pub(super) finished_before: String,
    /// The job deleted at version $2, with its owed runs up to that
    /// version: the job's own, or stale ones (none is newer while it is
    /// at $2; if it moved on, all are stale).
    pub(super) delete_if: String,
}

impl Sql {
    /// The statements for `schema`, which [`super::validate_schema`] accepted; it is
    /// quoted all the same, so that its case is kept.
    pub(super) fn new(schema: &str) -> Self {
        let quoted = format!("\"{schema}\"");
        let t = format!("{quoted}.{TABLE}");
        let owed = format!("{quoted}.{OWED_RUNS_TABLE}");
        let read = owed::read_columns(&owed);
        let running = JobStatus::Running as i16;
        let runs = format!("{quoted}.{RUNS_TABLE}");
        Sql {
            schema: schema.to_owned(),
            create: create_statements(&quoted, &t)
                + &owed::create_statement(&owed)
                + &LeaseSql::new(&quoted).create,
            runs: RunSql::new(&runs),
            leases: LeaseSql::new(&quoted),
            finished_before: format!(
                "SELECT {read} FROM {t} AS j WHERE {FINISHED} AND NOT {OWING} \
                 AND NOT {owed_now} AND updated_at < $1 ORDER BY updated_at, id LIMIT $2",
                owed_now = owed::owed_at_version(&owed)
            ),
            delete_if: format!(
                "WITH gone AS (DELETE FROM {owed} WHERE id = $1 AND version <= $2) \
                 DELETE FROM {t} WHERE id = $1 AND version = $2"
            ),
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20, $21)"
            ),
            get: format!("SELECT {read} FROM {t} AS j WHERE id = $1"),
            count: format!("SELECT count(*) FROM {t}"),
            count_where: format!("SELECT count(*) FROM {t} WHERE {FILTER}"),
            tally: format!("SELECT {TALLY} FROM {t}"),
            page_where: format!(
                "SELECT {read} FROM {t} AS j WHERE {FILTER} \
                 ORDER BY schedule_time, id OFFSET $6 LIMIT $7"
            ),
            page: format!(
                "SELECT {read} FROM {t} AS j ORDER BY schedule_time, id OFFSET $1 LIMIT $2"
            ),
            replace_if: replace_if_statement(&t, &owed),
            delete: format!(
                "WITH gone AS (DELETE FROM {owed} WHERE id = $1) DELETE FROM {t} WHERE id = $1"
            ),
            claim: format!(
                "WITH {}",
                owed::claim_recording_runs(
                    &format!(
                        "UPDATE {t} AS j SET status = {running}, \
                         version = version + 1, updated_at = $3 \
                         WHERE id = $1 AND {STILL_SCHEDULED} AND scheduled_key = $2 \
                         AND {ONE_SHOT}"
                    ),
                    &owed
                )
            ),
            claim_many: claim_many_statement(&t, &owed),
            scheduled_before: format!(
                "SELECT {COLUMNS} FROM {t} \
                 WHERE {ARMABLE} AND schedule_time < $1 \
                 ORDER BY schedule_time, id"
            ),
            scheduled_in: format!(
                "SELECT {COLUMNS} FROM {t} \
                 WHERE {ARMABLE} AND schedule_time < $1 AND {SHARD_OF_ID} % $2 = ANY($3) \
                 ORDER BY schedule_time, id"
            ),
            with_pending_events: with_pending_events_statement(&t, &owed, &read),
            set_pending_if: format!(
                "WITH gone AS (DELETE FROM {owed} WHERE id = $1 AND version = $2) \
                 UPDATE {t} SET pending_create = $3, pending_update = $4, pending_run = $5, \
                 pending_dead_letter = $6, pending_delete = $7 WHERE id = $1 AND version = $2"
            ),
            clear_pending_many: clear_pending_many_statement(&t, &owed),
            by_client_key: format!("SELECT {read} FROM {t} AS j WHERE client_key = $1"),
            recurring_of: recurring_of_statement(&t, &read),
            replace_many_if: replace_many_if_statement(&t),
            armable_of: format!(
                "SELECT id, schedule_time, scheduled_key FROM {t} \
                 WHERE id = ANY($1) AND {ARMABLE}"
            ),
            running_before: format!(
                "SELECT {read} FROM {t} AS j WHERE status = {running} AND updated_at < $1 \
                 ORDER BY updated_at, id"
            ),
        }
    }
}

/// One job written whole where its row is still at the version in $22;
/// the run it owed at that version, if any, is its flag from now on.
fn replace_if_statement(t: &str, owed: &str) -> String {
    format!(
        "WITH gone AS (DELETE FROM {owed} WHERE id = $1 AND version = $22) \
         UPDATE {t} SET name = $2, description = $3, schedule_time = $4, \
         created_at = $5, updated_at = $6, status = $7, job_type = $8, job_data = $9, \
         scheduled_key = $10, version = $11, pending_create = $12, \
         pending_update = $13, pending_run = $14, trace_parent = $15, \
         recurrence = $16, armed = $17, client_key = $18, attempts = $19, \
         pending_dead_letter = $20, pending_delete = $21 \
         WHERE id = $1 AND version = $22"
    )
}

/// The outbox cleared for a batch of (id, version) pairs: the flags of
/// the rows that have any set, then the owed runs, each locked in id
/// order, as by every statement that writes many rows (claim_many,
/// replace_many_if): replicas clear and claim the same jobs in batches,
/// and two batches locking in different orders could deadlock; and the
/// job rows before the owed runs, as a claim locks them. A row without
/// flags set is only read (a fired job's usual case: its run is owed in
/// `owed_runs`), so the clear does not write it again. Each row is found
/// through its primary key, whatever the planner's statistics say (see
/// `claim_many_statement`). The ids of the jobs still at their version.
fn clear_pending_many_statement(t: &str, owed: &str) -> String {
    format!(
        "WITH f AS MATERIALIZED ( \
             SELECT * FROM unnest($1::bytea[], $2::bigint[]) AS f(id, version) ORDER BY id), \
         flagged AS MATERIALIZED ( \
             SELECT j.id AS flagged_id FROM f CROSS JOIN LATERAL ( \
                 SELECT j.id FROM {t} AS j \
                 WHERE j.id = f.id AND j.version = f.version AND {OWING} \
                 FOR UPDATE) AS j), \
         unflagged AS (UPDATE {t} AS j SET pending_create = false, pending_update = false, \
             pending_run = false, pending_dead_letter = false, pending_delete = false \
             WHERE j.id = ANY(ARRAY(SELECT flagged_id FROM flagged)) RETURNING j.id), \
         paid AS MATERIALIZED ( \
             SELECT o.id AS paid_id FROM f CROSS JOIN LATERAL ( \
                 SELECT o.id FROM {owed} AS o \
                 WHERE o.id = f.id AND o.version = f.version FOR UPDATE) AS o), \
         gone AS (DELETE FROM {owed} AS o \
             WHERE o.id = ANY(ARRAY(SELECT paid_id FROM paid)) RETURNING o.id) \
         SELECT id FROM unflagged UNION SELECT id FROM gone \
         UNION SELECT j.id FROM f CROSS JOIN LATERAL ( \
             SELECT j.id FROM {t} AS j WHERE j.id = f.id AND j.version = f.version \
             OFFSET 0) AS j"
    )
}

/// The jobs that owe events, least recently changed first, at most $1:
/// those whose flags say so (through the outbox index) and those with a
/// run owed at their version (`owed_runs`, read whole: see
/// [`owed::create_statement`]).
fn with_pending_events_statement(t: &str, owed: &str, read: &str) -> String {
    format!(
        "SELECT * FROM ( \
             (SELECT {read} FROM {t} AS j WHERE {OWING} ORDER BY updated_at, id LIMIT $1) \
             UNION \
             (SELECT {read} FROM {owed} AS p \
              JOIN {t} AS j ON j.id = p.id AND j.version = p.version \
              ORDER BY p.updated_at, p.id LIMIT $1)) AS owing \
         ORDER BY updated_at, id LIMIT $1"
    )
}

/// Each job of a batch written whole (the columns as arrays in the order
/// of [`COLUMNS`], $1 to $21) where its row is still at the version in
/// $22, the rows locked in id order first (see `clear_pending_many`); the
/// ids written.
fn replace_many_if_statement(t: &str) -> String {
    let types = [
        "bytea",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "smallint",
        "smallint",
        "text",
        "bigint",
        "bigint",
        "boolean",
        "boolean",
        "boolean",
        "text",
        "text",
        "boolean",
        "text",
        "text",
        "boolean",
        "boolean",
        "bigint",
    ];
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}[]", i + 1))
        .collect();
    let columns: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
    let sets: Vec<String> = columns[1..]
        .iter()
        .map(|column| format!("{column} = n.{column}"))
        .collect();
    format!(
        "WITH n AS (SELECT * FROM unnest({arrays}) AS n({COLUMNS}, expected)), \
         locked AS MATERIALIZED ( \
             SELECT j.id AS locked_id FROM {t} AS j \
             JOIN n ON j.id = n.id AND j.version = n.expected \
             ORDER BY j.id FOR UPDATE OF j) \
         UPDATE {t} AS j SET {sets} \
         FROM n JOIN locked ON n.id = locked.locked_id \
         WHERE j.id = n.id RETURNING j.id",
        sets = sets.join(", "),
        arrays = arrays.join(", "),
    )
}

/// The recurring jobs among a batch's firings that the batch claim left
/// out, still under the firing's token.
fn recurring_of_statement(t: &str, read: &str) -> String {
    format!(
        "SELECT {read} FROM {t} AS j \
         JOIN unnest($1::bytea[], $2::bigint[]) AS f(id, key) \
         ON j.id = f.id AND j.scheduled_key = f.key \
         WHERE j.recurrence IS NOT NULL"
    )
}

/// The table and its indexes in `schema` (quoted), each statement
/// idempotent, so that every start and every replica may run them. The
/// outbox index of tables made before dead letters and retention
/// (`jobs_pending_updated_at`, `jobs_owing_updated_at`, whose conditions
/// leave `pending_dead_letter` or `pending_delete` out) is replaced, and
/// so is the index on every job's status (`jobs_status_schedule_time`):
/// the window loader needs only the SCHEDULED one-shot jobs', and an index
/// of every row took an entry from each claim and each outbox clear (two
/// of a firing's nine; BENCHMARKS.md, "The loader's index").
pub(super) fn create_statements(schema: &str, t: &str) -> String {
    let running = JobStatus::Running as i16;
    let owing = OWING;
    let scheduled = scheduled_one_shot!();
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
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS recurrence text;
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS armed boolean NOT NULL DEFAULT false;
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS client_key text;
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS attempts text;
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS pending_dead_letter boolean NOT NULL DEFAULT false;
         ALTER TABLE {t} ADD COLUMN IF NOT EXISTS pending_delete boolean NOT NULL DEFAULT false;
         CREATE UNIQUE INDEX IF NOT EXISTS {CLIENT_KEY_INDEX}
             ON {t} (client_key) WHERE client_key IS NOT NULL;
         CREATE INDEX IF NOT EXISTS jobs_armed_schedule_time
             ON {t} (schedule_time, id) WHERE armed;
         CREATE INDEX IF NOT EXISTS jobs_scheduled_schedule_time
             ON {t} (schedule_time, id) WHERE {scheduled};
         DROP INDEX IF EXISTS {schema}.jobs_status_schedule_time;
         CREATE INDEX IF NOT EXISTS jobs_schedule_time_id
             ON {t} (schedule_time, id);
         CREATE INDEX IF NOT EXISTS jobs_outbox_updated_at
             ON {t} (updated_at, id) WHERE {owing};
         DROP INDEX IF EXISTS {schema}.jobs_pending_updated_at;
         DROP INDEX IF EXISTS {schema}.jobs_owing_updated_at;
         CREATE INDEX IF NOT EXISTS jobs_finished_updated_at
             ON {t} (updated_at, id) WHERE {FINISHED};
         CREATE INDEX IF NOT EXISTS jobs_running_updated_at
             ON {t} (updated_at, id) WHERE status = {running};
         {runs}",
        runs = runs::create_statement(&format!("{schema}.{RUNS_TABLE}"), t)
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
///
/// Each row is found through the primary key, one lookup per firing (the
/// LATERAL subquery with its lock cannot be flattened into a join, and
/// `= ANY(ARRAY(...))` is an index condition), whatever the planner's
/// statistics say. Written as a join of the table with the batch, the
/// statement was planned from statistics, and a burst of jobs created
/// just before it fired (a table autovacuum had not analyzed yet) made
/// the planner take the SCHEDULED jobs for a handful and scan all of them
/// per batch, or per firing: 110 ms for a batch of 64 among 10,000
/// scheduled jobs, against 1 ms this way.
pub(super) fn claim_many_statement(t: &str, owed: &str) -> String {
    let running = JobStatus::Running as i16;
    format!(
        "WITH due AS MATERIALIZED ( \
             SELECT j.id AS due_id \
             FROM (SELECT * FROM unnest($1::bytea[], $2::bigint[]) AS f(id, key) \
                   ORDER BY f.id) AS f \
             CROSS JOIN LATERAL ( \
                 SELECT j.id FROM {t} AS j \
                 WHERE j.id = f.id AND j.scheduled_key = f.key \
                   AND j.{STILL_SCHEDULED} AND j.{ONE_SHOT} \
                 FOR UPDATE) AS j), \
         {claimed}",
        claimed = owed::claim_recording_runs(
            &format!(
                "UPDATE {t} AS j SET status = {running}, \
                 version = j.version + 1, updated_at = $3 \
                 WHERE j.id = ANY(ARRAY(SELECT due_id FROM due))"
            ),
            owed
        ),
    )
}

/// [`COLUMNS`], each qualified by the table alias `alias` (for statements
/// that join the table with another relation that has an `id` too).
pub(super) fn qualified(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
