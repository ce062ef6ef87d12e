//! The run history on MongoDB: a collection of runs beside the jobs
//! (`<collection>_runs`, one document per run, `_id` = job id and fire
//! token), filled through an outbox in the job document.
//!
//! MongoDB makes only a single document's update atomic (multi-document
//! transactions need a replica set, and MongoDB-protocol servers lack
//! them), so a job change cannot write a run document in the same step.
//! Instead the change pushes what it does to the history onto the job's
//! own `runLog` (and sets `owesRuns`), in the same conditional update as
//! the job. The log is then flushed into the runs collection, each entry
//! idempotently (a start inserted once, an end written over the run), and
//! removed from the job only if the job did not change meanwhile: before
//! a job's runs are listed, and by the pruning duty for every job that
//! owes some. A crash between the flush and the removal flushes the same
//! entries again, which changes nothing.

use bson::{Bson, Document, doc};
use futures::TryStreamExt;

use super::{
    MongoJobDB,
    codec::bson_time,
    errors::{duplicate_key, map_err},
};
use crate::{
    domain::{
        JobId, PageRequest,
        history::{Run, RunCause, RunChange, RunOutcome},
    },
    store::{RunRetention, RunsPage, StoreError, Unreadable, pruned, runs_page},
};

/// The suffix of the runs collection's name.
pub const RUNS_SUFFIX: &str = "_runs";

/// What a job update adds to make `changes` owed: merged into its update
/// document (`$push` one log entry, `$set` the flag the flush looks for).
pub(super) fn owe(update: &mut Document, changes: &[RunChange]) {
    let entries: Vec<Bson> = changes.iter().map(|c| Bson::Document(entry(c))).collect();
    update.insert("$push", doc! { "runLog": { "changes": entries } });
    if let Ok(set) = update.get_document_mut("$set") {
        set.insert("owesRuns", true);
    }
}

/// The `_id` of a run document.
fn run_id(job: JobId, fire_token: i64) -> String {
    format!("{}:{fire_token}", job.to_hex())
}

fn entry(change: &RunChange) -> Document {
    match change {
        RunChange::Started(run) => doc! {
            "start": run_document(run),
        },
        RunChange::Ended(end) => doc! {
            "end": {
                "fireToken": end.fire_token,
                "finishedAt": bson_time(end.finished_at),
                "outcome": i32::from(end.outcome.code()),
                "error": end.error.as_deref(),
                "executor": end.executor.as_deref(),
            },
        },
    }
}

fn run_document(run: &Run) -> Document {
    doc! {
        "_id": run_id(run.job_id, run.fire_token),
        "jobId": run.job_id,
        "fireToken": run.fire_token,
        "attempt": i64::from(run.attempt),
        "cause": i32::from(run.cause.code()),
        "dueAt": bson_time(run.due_at),
        "firedAt": bson_time(run.fired_at),
        "finishedAt": run.finished_at.map(bson_time),
        "outcome": i32::from(run.outcome.code()),
        "error": run.error.as_deref(),
        "executor": run.executor.as_deref(),
    }
}

/// A run document of job `job` read back, or why it is not one.
fn run_of(job: JobId, doc: &Document) -> Result<Run, Unreadable> {
    let bad = |what: &str| Unreadable::job(job, format!("run document: {what}"));
    let code = |field: &str| -> Result<i16, Unreadable> {
        doc.get_i32(field)
            .ok()
            .and_then(|c| i16::try_from(c).ok())
            .ok_or_else(|| bad(field))
    };
    let time = |field: &str| doc.get_datetime(field).map(|t| t.to_chrono());
    Ok(Run {
        job_id: job,
        fire_token: doc.get_i64("fireToken").map_err(|_| bad("fireToken"))?,
        attempt: doc
            .get_i64("attempt")
            .ok()
            .and_then(|a| u32::try_from(a).ok())
            .ok_or_else(|| bad("attempt"))?,
        cause: RunCause::from_code(code("cause")?).ok_or_else(|| bad("cause"))?,
        due_at: time("dueAt").map_err(|_| bad("dueAt"))?,
        fired_at: time("firedAt").map_err(|_| bad("firedAt"))?,
        finished_at: time("finishedAt").ok(),
        outcome: RunOutcome::from_code(code("outcome")?).ok_or_else(|| bad("outcome"))?,
        error: doc.get_str("error").ok().map(str::to_owned),
        executor: doc.get_str("executor").ok().map(str::to_owned),
    })
}

/// The end written by a log entry, as a `$set` on the run.
fn end_fields(end: &Document) -> Document {
    let mut set = doc! {};
    for field in ["finishedAt", "outcome", "error", "executor"] {
        set.insert(field, end.get(field).cloned().unwrap_or(Bson::Null));
    }
    set
}

impl MongoJobDB {
    /// Writes the run log of job `id` into the runs collection and removes
    /// it from the job if the job did not change meanwhile.
    pub(super) async fn flush_runs(&self, id: JobId) -> Result<(), StoreError> {
        let Some(job) = self
            .bounded(self.jobs.find_one(doc! { "_id": id }).into_future())
            .await?
        else {
            return Ok(());
        };
        let Ok(log) = job.get_array("runLog") else {
            return Ok(());
        };
        for entry in log.iter().filter_map(Bson::as_document) {
            let changes = entry
                .get_array("changes")
                .map(|c| c.as_slice())
                .unwrap_or(&[]);
            for change in changes.iter().filter_map(Bson::as_document) {
                self.apply(id, change).await?;
            }
        }
        let version = job.get_i64("version").unwrap_or(-1);
        let filter = doc! { "_id": id, "version": version };
        let update = doc! { "$unset": { "runLog": "" }, "$set": { "owesRuns": false } };
        self.update_where(filter, update).await.map(|_| ())
    }

    /// Applies one logged change of job `id`'s history, idempotently.
    async fn apply(&self, id: JobId, change: &Document) -> Result<(), StoreError> {
        if let Ok(start) = change.get_document("start") {
            let inserted = tokio::time::timeout(
                self.timeout,
                self.runs.insert_one(start.clone()).into_future(),
            )
            .await;
            return match inserted {
                Ok(Err(err)) if duplicate_key(&err) => Ok(()),
                Ok(result) => result.map(|_| ()).map_err(map_err),
                Err(_) => Err(self.did_not_answer()),
            };
        }
        if let Ok(end) = change.get_document("end") {
            let token = end.get_i64("fireToken").unwrap_or_default();
            let filter = doc! { "_id": run_id(id, token) };
            let update = doc! { "$set": end_fields(end) };
            self.bounded(self.runs.update_one(filter, update).into_future())
                .await?;
        }
        Ok(())
    }

    /// Every run of job `id` (its log flushed first).
    async fn all_runs(&self, id: JobId) -> Result<Vec<Run>, StoreError> {
        self.flush_runs(id).await?;
        let documents: Vec<Document> = self
            .read(|| async {
                self.runs
                    .find(doc! { "jobId": id })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        Ok(documents
            .iter()
            .map(|d| run_of(id, d))
            .collect::<Result<_, _>>()?)
    }

    /// One page of job `id`'s runs, newest first (sorted here: some
    /// MongoDB-protocol servers ignore `sort`).
    pub(super) async fn runs_page(
        &self,
        id: JobId,
        page: PageRequest,
    ) -> Result<RunsPage, StoreError> {
        Ok(runs_page(self.all_runs(id).await?, page))
    }

    /// Deletes every run of job `id`.
    pub(super) async fn forget_runs(&self, id: JobId) -> Result<(), StoreError> {
        self.bounded(self.runs.delete_many(doc! { "jobId": id }).into_future())
            .await
            .map(|_| ())
    }

    /// Flushes the logs of at most `limit` jobs that owe runs, then removes
    /// at most `limit` runs that `retention` removes; the number removed.
    pub(super) async fn prune(&self, retention: RunRetention) -> Result<u64, StoreError> {
        let limit = i64::try_from(retention.limit).unwrap_or(i64::MAX);
        let owing: Vec<Document> = self
            .read(|| async {
                self.jobs
                    .find(doc! { "owesRuns": true })
                    .limit(limit)
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        for job in &owing {
            if let Ok(id) = job.get_object_id("_id") {
                self.flush_runs(id).await?;
            }
        }
        let doomed = self.doomed(&retention).await?;
        if doomed.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .bounded(
                self.runs
                    .delete_many(doc! { "_id": { "$in": doomed } })
                    .into_future(),
            )
            .await?;
        Ok(deleted.deleted_count)
    }

    /// The `_id`s of the runs `retention` removes, at most its limit: one
    /// read of every run.
    async fn doomed(&self, retention: &RunRetention) -> Result<Vec<String>, StoreError> {
        let documents: Vec<Document> = self
            .read(|| async { self.runs.find(doc! {}).await?.try_collect().await })
            .await?;
        let mut by_job: std::collections::HashMap<JobId, Vec<Run>> = Default::default();
        for document in &documents {
            let Ok(job) = document.get_object_id("jobId") else {
                continue;
            };
            // An unreadable run is left alone, as the scans of jobs do.
            if let Ok(run) = run_of(job, document) {
                by_job.entry(job).or_default().push(run);
            }
        }
        let mut doomed = Vec::new();
        for (_, runs) in by_job {
            doomed.extend(
                pruned(runs, retention)
                    .iter()
                    .map(|run| run_id(run.job_id, run.fire_token)),
            );
            if doomed.len() >= retention.limit {
                break;
            }
        }
        doomed.truncate(retention.limit);
        Ok(doomed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::history::RunEnd;

    #[test]
    fn an_end_entry_sets_every_field_of_the_end() {
        let end = RunEnd {
            job_id: JobId::new(),
            fire_token: 7,
            finished_at: chrono::Utc::now(),
            outcome: RunOutcome::Failed,
            error: Some("boom".into()),
            executor: None,
        };
        let entry = entry(&RunChange::Ended(end));
        let set = end_fields(entry.get_document("end").unwrap());
        assert_eq!(set.get_i32("outcome").unwrap(), 3);
        assert_eq!(set.get_str("error").unwrap(), "boom");
        assert_eq!(set.get("executor"), Some(&Bson::Null));
    }
}
