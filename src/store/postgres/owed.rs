//! The run events one-shot claims owe, in a table of their own
//! (`owed_runs`: a job's id, the version its claim wrote, and when).
//!
//! Why a table: a claim that set the job's `pending_run` flag made the
//! outbox clear after the publish a second rewrite of the row, a new row
//! version with an entry in three of its indexes (the flags are in the
//! outbox index's condition, so no such update is HOT). Deleting a row of
//! this table instead writes 117 bytes of WAL against 616 and takes 0.57×
//! the time; with the claim's insert, a firing writes 0.77× the WAL
//! through the service (BENCHMARKS.md, "Owed runs in a table of their
//! own"): less for the disk and any standby to carry. It did not make
//! firings faster on the test machine, neither a burst of a second (its
//! claims, which the clears already wait for, bound it) nor a load of
//! 12,000 a second for five seconds.
//!
//! What a job owes is its flags OR a row here at its current version
//! ([`read_columns`]): any write that moves the job to a newer version
//! makes the row stale, and a stale row counts for nothing. So a replica
//! of an earlier release, which knows only the flags, cannot resurrect an
//! event by writing the job, and what it writes through the flags is read
//! and cleared as before. (What it cannot do is see a run owed here: during
//! a rolling upgrade, an event owed by a new replica that dies before
//! publishing it is published by another new replica, not by an old one.)
//! Every other event stays a flag; the relay reads both, and a clear
//! clears both. Writes of the job that rewrite its flags, and its
//! deletes, delete its row here too, so that rows do not outlive their use.

/// Name of the table of owed run events, inside the store's schema.
pub const OWED_RUNS_TABLE: &str = "owed_runs";

/// Whether the job of alias `j` owes a run event in `owed` (qualified) at
/// its current version.
pub(super) fn owed_at_version(owed: &str) -> String {
    format!("EXISTS (SELECT 1 FROM {owed} AS o WHERE o.id = j.id AND o.version = j.version)")
}

/// The columns of a job as they are read, the table aliased `j`: each
/// qualified, and `pending_run` set if its flag is or a row of `owed`
/// (qualified) is at the job's version.
pub(super) fn read_columns(owed: &str) -> String {
    with_pending_run(&format!(
        "(j.pending_run OR {}) AS pending_run",
        owed_at_version(owed)
    ))
}

/// [`super::sql::COLUMNS`] qualified by the alias `j`, with `pending_run`
/// read as `expression`.
fn with_pending_run(expression: &str) -> String {
    super::sql::qualified("j").replace("j.pending_run", expression)
}

/// The table, idempotent as the rest of the schema, keyed by job and
/// version: a claim writes a version no write of the job wrote before, so
/// its insert never meets a row (a stale one is at an older version), and
/// a plain insert is cheaper than one `ON CONFLICT` (1,091 against 1,215
/// bytes of WAL a claim, `benches/sql/outbox_clear.sql`). No other index:
/// the relay reads the table whole, sorted by `updated_at`, and it holds
/// the runs in flight (during a broker outage, every run fired since). No
/// foreign key: its check would lock the job row again on every claim; the
/// statements that delete a job delete its rows here.
pub(super) fn create_statement(owed: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {owed} (
            id         bytea          NOT NULL,
            version    bigint         NOT NULL,
            updated_at timestamptz(3) NOT NULL,
            PRIMARY KEY (id, version)
         );"
    )
}

/// The end of a claim statement, after `WITH` and any CTEs of its own:
/// `update` (of the jobs aliased `j`, without `RETURNING`) as the CTE
/// `claimed`, returning the claimed jobs, which owe their runs; and those
/// runs recorded in `owed` (qualified), written after the job rows were
/// (an unreferenced CTE runs last), so that every statement locks a job's
/// row before its owed run.
pub(super) fn claim_recording_runs(update: &str, owed: &str) -> String {
    format!(
        "claimed AS ({update} RETURNING {claimed}), \
         owed AS (INSERT INTO {owed} (id, version, updated_at) \
         SELECT id, version, updated_at FROM claimed) \
         SELECT * FROM claimed",
        claimed = with_pending_run("true AS pending_run"),
    )
}
