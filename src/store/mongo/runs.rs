//! The run history on MongoDB: a collection of ended runs beside the
//! jobs (`<collection>_runs`, one document per run, `_id` = job id and
//! fire token), filled through an outbox in the job document.
//!
//! MongoDB makes only a single document's update atomic (multi-document
//! transactions need a replica set, and MongoDB-protocol servers lack
//! them), so a job change cannot write a run document in the same step.
//! Instead the change that ends a run pushes its record onto the job's own
//! `runLog` (and sets `owesRuns`), in the same conditional update as the
//! job. The log is then flushed into the runs collection (each record
//! inserted once: a duplicate `_id` means it is there) and removed from
//! the job only if the job did not change meanwhile: before a job's runs
//! are listed, and by the retention duty for every job that owes some. A
//! crash between the flush and the removal flushes the same records
//! again, which changes nothing.

use bson::{Bson, Document, doc};
use mongodb::options::FindOptions;

use super::{
    MongoJobDB,
    codec::bson_time,
    errors::{already_there, map_err},
};
use crate::{
    domain::{
        JobId,
        history::{Run, RunCause, RunOutcome},
    },
    store::{RunRetention, RunsPage, StoreError, Unreadable, pruned, runs_page},
};

/// The suffix of the runs collection's name.
pub const RUNS_SUFFIX: &str = "_runs";

/// What a job update adds to owe the records of the runs it ends: merged
/// into its update document (`$push` one log entry, `$set` the flag the
/// flush looks for).
pub(super) fn owe(update: &mut Document, ended: &[Run]) {
    let records: Vec<Bson> = ended
        .iter()
        .map(|r| Bson::Document(run_document(r)))
        .collect();
    update.insert("$push", doc! { "runLog": { "runs": records } });
    if let Ok(set) = update.get_document_mut("$set") {
        set.insert("owesRuns", true);
    }
}

/// The `_id` of a run document.
fn run_id(job: JobId, fire_token: i64) -> String {
    format!("{}:{fire_token}", job.to_hex())
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
        let records: Vec<Document> = log
            .iter()
            .filter_map(Bson::as_document)
            .flat_map(|entry| entry.get_array("runs").map(|r| r.as_slice()).unwrap_or(&[]))
            .filter_map(Bson::as_document)
            .cloned()
            .collect();
        self.insert_runs(&records).await?;
        let version = job.get_i64("version").unwrap_or(-1);
        let filter = doc! { "_id": id, "version": version };
        let update = doc! { "$unset": { "runLog": "" }, "$set": { "owesRuns": false } };
        self.update_where(filter, update).await.map(|_| ())
    }

    /// Inserts run records, in one call; records already there (a flush
    /// again, or a listing on another replica flushing at once) are kept.
    /// When some were there, each is inserted on its own, so that no
    /// server stops at the first (MongoDB inserts the others; polodb may not).
    async fn insert_runs(&self, records: &[Document]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let many = self.runs.insert_many(records).ordered(false).into_future();
        match tokio::time::timeout(self.timeout, many).await {
            Ok(Err(err)) if already_there(&err) => {
                for record in records {
                    self.insert_run(record).await?;
                }
                Ok(())
            }
            Ok(result) => result.map(|_| ()).map_err(map_err),
            Err(_) => Err(self.did_not_answer()),
        }
    }

    /// Inserts one run record; one already there is kept.
    async fn insert_run(&self, record: &Document) -> Result<(), StoreError> {
        let inserted = tokio::time::timeout(
            self.timeout,
            self.runs.insert_one(record.clone()).into_future(),
        )
        .await;
        match inserted {
            Ok(Err(err)) if already_there(&err) => Ok(()),
            Ok(result) => result.map(|_| ()).map_err(map_err),
            Err(_) => Err(self.did_not_answer()),
        }
    }

    /// Every run of job `id` (its log flushed first).
    async fn all_runs(&self, id: JobId) -> Result<Vec<Run>, StoreError> {
        self.flush_runs(id).await?;
        let documents = self
            .find_all(&self.runs, doc! { "jobId": id }, FindOptions::default())
            .await?;
        Ok(documents
            .iter()
            .map(|d| run_of(id, d))
            .collect::<Result<_, _>>()?)
    }

    /// Job `id`'s runs from the `offset`-th newest, at most `limit`
    /// (sorted here: some MongoDB-protocol servers ignore `sort`).
    pub(super) async fn runs_page(
        &self,
        id: JobId,
        offset: u64,
        limit: u64,
    ) -> Result<RunsPage, StoreError> {
        Ok(runs_page(self.all_runs(id).await?, offset, limit))
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
        let options = FindOptions::builder().limit(limit).build();
        let owing = self
            .find_all(&self.jobs, doc! { "owesRuns": true }, options)
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
        let documents = self
            .find_all(&self.runs, doc! {}, FindOptions::default())
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

    #[test]
    fn a_run_reads_back_from_its_document() {
        let run = Run {
            job_id: JobId::new(),
            fire_token: 7,
            attempt: 2,
            cause: RunCause::Retry,
            due_at: chrono::DateTime::from_timestamp_millis(1_000).unwrap(),
            fired_at: chrono::DateTime::from_timestamp_millis(1_250).unwrap(),
            finished_at: chrono::DateTime::from_timestamp_millis(2_000),
            outcome: RunOutcome::Failed,
            error: Some("boom".into()),
            executor: None,
        };
        let document = run_document(&run);
        assert_eq!(document.get_str("_id").unwrap(), run_id(run.job_id, 7));
        assert_eq!(run_of(run.job_id, &document).unwrap(), run);
    }
}
