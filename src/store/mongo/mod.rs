//! The MongoDB [`JobDB`]: one document per job in the collection
//! `DATABASE_COLLECTION` names (default
//! [`DEFAULT_COLLECTION`](crate::config::database::DEFAULT_COLLECTION), `jobs`).
//!
//! Correctness on a real MongoDB rests on one guarantee: an update of a single
//! document is atomic, so a conditional `update_one` (filter on version, or
//! on status and fire token) is a compare-and-set. The outbox lives in the
//! job document itself (`pendingCreate`, `pendingUpdate`, `pendingRun`,
//! `pendingDeadLetter`, `outbox`), so it changes in the same atomic update as the job, with no
//! multi-document transaction. Only `insert`, `find`, `count`, `update_one`
//! and `delete_one` are used, so that MongoDB-protocol servers without
//! `findAndModify` work too. Every operation has a bounded timeout.
//!
//! A claim and a result are a read and an `update_one` filtered on the
//! version read, of what the domain decided (`store::claim_read`,
//! `store::result_read`), so that the same update also owes the run's
//! start or end to the history (see [`runs`]). Client keys are unique
//! through a partial unique index on `clientKey`. The replicas sharing the
//! collection agree on who owns which shard through leases in two
//! collections beside it (see [`leases`]).

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use bson::{Bson, Document, doc, oid::ObjectId};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Client, Collection, Database, IndexModel,
    error::Error as MongoError,
    options::{ClientOptions, FindOptions, IndexOptions},
};
use tokio::sync::OnceCell;

use super::{
    DueJob, JobDB, JobsPage, RunRetention, RunsPage, Scan, ShardLeases, StoreError, claim_read,
    result_read,
};
use crate::domain::{
    Job, JobFilter, JobId, JobStatus, JobTally, JobType, PageRequest, PendingEvents, ScheduleKind,
    history::Run,
    report::{ResultOutcome, RunReport},
};

mod codec;
mod errors;
mod leases;
mod runs;
#[cfg(test)]
mod tests;

pub use leases::{LEASES_SUFFIX, REPLICAS_SUFFIX};
pub use runs::RUNS_SUFFIX;

use codec::{bson_time, mutable_fields, pending_fields};
pub use codec::{job_from_document, job_to_document};
use errors::{READ_ATTEMPTS, cursor_lost, duplicate_key, map_err};

/// The unique index of client keys.
const CLIENT_KEY_INDEX: &str = "clientKey_unique";

/// The share of a call's timeout the driver may spend finding a server.
const SELECTION_SHARE: f64 = 0.75;

/// Documents asked for in the first batch of a query (MongoDB still caps a
/// batch at 16 MiB and fetches the rest with `getMore`).
const FIRST_BATCH: u32 = 100_000;

/// How the server answers a query whose first batch held every document
/// it matched (found once, by [`MongoJobDB::batches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batches {
    /// It closes the cursor (MongoDB): a query follows its cursor, so that
    /// no answer is cut at one batch's 16 MiB.
    Cursor,
    /// It leaves the cursor open (polodb, which numbers cursors by how many
    /// are open, so that concurrent queries took each other's cursors and
    /// answered with another query's documents or "cursor not found"):
    /// every query asks for all its documents in one batch.
    One,
}

/// Jobs in a MongoDB collection.
#[derive(Clone)]
pub struct MongoJobDB {
    db: Database,
    jobs: Collection<Document>,
    /// The runs of the jobs (see [`runs`]).
    runs: Collection<Document>,
    /// The shard leases, one document per shard (see [`leases`]).
    leases: Collection<Document>,
    /// The replicas sharing the jobs, one document per replica.
    replicas: Collection<Document>,
    timeout: Duration,
    batches: Arc<OnceCell<Batches>>,
}

impl MongoJobDB {
    /// Connects to `uri` and keeps the jobs in `db_name`.`collection`, with at
    /// most `max_pool_size` connections (`None`: the URI's `maxPoolSize`, or
    /// the driver's default of 10).
    /// Connecting is lazy in the
    /// driver; this only parses the URI and sets the timeouts, so it succeeds
    /// while the server is down and calls fail fast until it is back.
    pub async fn connect(
        uri: &str,
        db_name: &str,
        collection: &str,
        timeout: Duration,
        max_pool_size: Option<u32>,
    ) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Other(format!("invalid database URI: {e}")))?;
        options.app_name = Some("scheduler-service".to_owned());
        // The driver gives up on finding a server before the call's own
        // timeout ends it, so that its error, which says why (a refused
        // certificate, a failed handshake), is what the caller sees rather
        // than "did not answer".
        options.server_selection_timeout = Some(timeout.mul_f64(SELECTION_SHARE));
        options.connect_timeout = Some(timeout.mul_f64(SELECTION_SHARE));
        if max_pool_size.is_some() {
            options.max_pool_size = max_pool_size;
        }
        let client = Client::with_options(options).map_err(map_err)?;
        let db = client.database(db_name);
        Ok(MongoJobDB {
            jobs: db.collection(collection),
            runs: db.collection(&format!("{collection}{RUNS_SUFFIX}")),
            leases: db.collection(&format!("{collection}{LEASES_SUFFIX}")),
            replicas: db.collection(&format!("{collection}{REPLICAS_SUFFIX}")),
            db,
            timeout,
            batches: Arc::default(),
        })
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, MongoError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(self.did_not_answer()),
        }
    }

    /// A call the database did not answer within the timeout.
    fn did_not_answer(&self) -> StoreError {
        StoreError::Unavailable(format!("database did not answer within {:?}", self.timeout))
    }

    /// Runs a read (a `find` and its cursor), bounded like every call, again
    /// if the server lost the cursor between the batches: a read is
    /// idempotent, and a cursor can be lost under load (a timeout on
    /// MongoDB, a follow-up on another connection on some MongoDB-protocol
    /// servers).
    async fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, MongoError>>,
    {
        let mut attempts = 1;
        loop {
            match tokio::time::timeout(self.timeout, read()).await {
                Ok(Err(err)) if attempts < READ_ATTEMPTS && cursor_lost(&err) => {
                    tracing::debug!(error = %err, "cursor lost; reading again");
                    attempts += 1;
                }
                Ok(result) => return result.map_err(map_err),
                Err(_) => return Err(self.did_not_answer()),
            }
        }
    }

    /// The documents of `collection` that `filter` matches, as `options`
    /// shape them, all of them read (see [`Self::read`]) in as few batches
    /// as the server allows (see [`Batches`]).
    async fn find_all(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        mut options: FindOptions,
    ) -> Result<Vec<Document>, StoreError> {
        match self.batches().await? {
            Batches::Cursor => {
                options.batch_size = options.batch_size.or(Some(FIRST_BATCH));
            }
            // A negative limit asks for a single batch.
            Batches::One => options.limit = Some(-options.limit.unwrap_or(i64::MAX).abs()),
        }
        self.read(|| async {
            let find = collection.find(filter.clone());
            find.with_options(options.clone())
                .await?
                .try_collect()
                .await
        })
        .await
    }

    /// How the server answers a query that its first batch completes, asked
    /// once with a query that matches nothing; a cursor it leaves open is
    /// closed again.
    async fn batches(&self) -> Result<Batches, StoreError> {
        let probe = async {
            let find = doc! { "find": self.jobs.name(), "filter": { "_id": ObjectId::new() } };
            let reply = self
                .bounded(self.db.run_command(find).into_future())
                .await?;
            let cursor = reply.get_document("cursor").ok();
            let id = cursor.and_then(|c| c.get_i64("id").ok()).unwrap_or(0);
            if id == 0 {
                return Ok(Batches::Cursor);
            }
            let kill = doc! { "killCursors": self.jobs.name(), "cursors": [id] };
            // Best effort: an open cursor only costs the server its memory.
            let _ = self.bounded(self.db.run_command(kill).into_future()).await;
            Ok(Batches::One)
        };
        self.batches.get_or_try_init(|| probe).await.copied()
    }

    /// Runs a conditional update and tells whether a document matched.
    async fn update_where(&self, filter: Document, update: Document) -> Result<bool, StoreError> {
        let result = self
            .bounded(self.jobs.update_one(filter, update).into_future())
            .await?;
        // MongoDB reports the match in `matched_count` (and 0 modified for a
        // no-op); some MongoDB-protocol servers report only `modified_count`.
        Ok(result.matched_count == 1 || result.modified_count == 1)
    }

    /// The jobs matching `filter`, in `sort` order, at most `limit`
    /// documents, for the background scans: a document that is not a valid
    /// job is reported, so that one bad document cannot stop the timer or
    /// the outbox.
    async fn find_jobs(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> Result<Scan<Job>, StoreError> {
        let options = FindOptions::builder().sort(sort).limit(limit).build();
        let documents = self.find_all(&self.jobs, filter, options).await?;
        Ok(documents.iter().map(job_from_document).collect())
    }
}

/// The query of a listing's filter.
fn filter_document(filter: &JobFilter) -> Document {
    let mut query = doc! {};
    if let Some(status) = filter.status {
        query.insert("status", status.as_i32());
    }
    if let Some(job_type) = filter.job_type {
        query.insert("jobType", job_type.as_i32());
    }
    // A recurring job's `recurrence` is a string, a one-shot job's null (or
    // missing, which `$in` and `$nin` take as null). (polodb answers `$ne`
    // and `$gt` against null as MongoDB does not; both agree on these.)
    let kind = filter.kind.map(|kind| match kind {
        ScheduleKind::Recurring => doc! { "$nin": [null] },
        ScheduleKind::Once => doc! { "$in": [null] },
    });
    // Paused: the string holds `"paused":true` (see `PAUSED`); a regular
    // expression in `$in` or `$nin` matches the string on both servers,
    // and `$nin` admits a one-shot job's null or missing field on both
    // (polodb's `$not` of a `$regex` skips a missing field).
    let paused = filter.paused.map(|paused| {
        let operator = if paused { "$in" } else { "$nin" };
        doc! { operator: [regex(PAUSED)] }
    });
    match (kind, paused) {
        (Some(kind), Some(paused)) => query.insert(
            "$and",
            vec![doc! { "recurrence": kind }, doc! { "recurrence": paused }],
        ),
        (Some(only), None) | (None, Some(only)) => query.insert("recurrence", only),
        (None, None) => None,
    };
    if let Some(name) = filter.name() {
        query.insert("name", doc! { "$regex": regex(&ascii_caseless(name)) });
    }
    query
}

/// The stored recurrence (`Recurrence::to_stored`, compact JSON) of a
/// paused job: its top-level `paused` field true. `"paused":` cannot occur
/// inside a string value, where every quote is escaped, and no nested
/// object has a `paused` field.
const PAUSED: &str = r#"[{,]"paused":true[,}]"#;

/// A regular expression matching `text` literally, ignoring the case of
/// ASCII letters as `JobFilter::admits` does (each letter as a class, not
/// the `i` option, which polodb does not take).
fn ascii_caseless(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 4);
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            pattern.extend(['[', c.to_ascii_lowercase(), c.to_ascii_uppercase(), ']']);
        } else {
            pattern.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
    }
    pattern
}

/// A BSON regular expression, unanchored (polodb matches it against the
/// value's JSON form, quotes included).
fn regex(pattern: &str) -> Bson {
    Bson::RegularExpression(bson::Regex {
        pattern: pattern.to_owned(),
        options: String::new(),
    })
}

fn index(name: &str, keys: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

#[async_trait]
impl JobDB for MongoJobDB {
    fn leases(&self) -> Option<Arc<dyn ShardLeases>> {
        Some(Arc::new(self.clone()))
    }

    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let indexes = [
            // The timer's window query: SCHEDULED jobs by due time; also stuck runs.
            index(
                "status_scheduleTime",
                doc! { "status": 1, "scheduleTime": 1 },
            ),
            // ListJobs order.
            index("scheduleTime_id", doc! { "scheduleTime": 1, "_id": 1 }),
            // The outbox relay's query.
            index("outbox_updatedAt", doc! { "outbox": 1, "updatedAt": 1 }),
            // The timer's window query for recurring jobs.
            index("armed_scheduleTime", doc! { "armed": 1, "scheduleTime": 1 }),
            // The retention's query of finished jobs.
            index("status_updatedAt", doc! { "status": 1, "updatedAt": 1 }),
            // The history flush's query.
            index("owesRuns", doc! { "owesRuns": 1 }),
            // Idempotent creation: one job per client key.
            IndexModel::builder()
                .keys(doc! { "clientKey": 1 })
                .options(
                    IndexOptions::builder()
                        .name(CLIENT_KEY_INDEX.to_owned())
                        .unique(true)
                        .partial_filter_expression(doc! { "clientKey": { "$type": "string" } })
                        .build(),
                )
                .build(),
        ];
        self.bounded(self.jobs.create_indexes(indexes).into_future())
            .await?;
        let newest = index("jobId_firedAt", doc! { "jobId": 1, "firedAt": -1 });
        self.bounded(self.runs.create_index(newest).into_future())
            .await
            .map(|_| ())
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        let inserted = tokio::time::timeout(
            self.timeout,
            self.jobs.insert_one(job_to_document(job)).into_future(),
        )
        .await;
        match (inserted, &job.client_key) {
            (Ok(Err(err)), Some(key)) if duplicate_key(&err) => {
                Err(StoreError::ClientKeyTaken(key.clone()))
            }
            (Ok(result), _) => result.map(|_| ()).map_err(map_err),
            (Err(_), _) => Err(self.did_not_answer()),
        }
    }

    async fn get_by_client_key(&self, key: &str) -> Result<Option<Job>, StoreError> {
        let found = self
            .bounded(self.jobs.find_one(doc! { "clientKey": key }).into_future())
            .await?;
        Ok(found.as_ref().map(job_from_document).transpose()?)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let found = self
            .bounded(self.jobs.find_one(doc! { "_id": id }).into_future())
            .await?;
        Ok(found.as_ref().map(job_from_document).transpose()?)
    }

    async fn list(&self, page: PageRequest, filter: &JobFilter) -> Result<JobsPage, StoreError> {
        let filter = filter_document(filter);
        let total = self
            .bounded(self.jobs.count_documents(filter.clone()).into_future())
            .await?;
        let skip = page.offset();
        let page = if skip >= total {
            Scan::readable(Vec::new())
        } else {
            let options = FindOptions::builder()
                .sort(doc! { "scheduleTime": 1, "_id": 1 })
                .skip(skip)
                .limit(i64::try_from(page.size).unwrap_or(i64::MAX))
                .build();
            let documents = self.find_all(&self.jobs, filter, options).await?;
            documents.iter().map(job_from_document).collect()
        };
        Ok(JobsPage {
            jobs: page.found,
            unreadable: page.unreadable,
            total,
        })
    }

    async fn tally(&self) -> Result<JobTally, StoreError> {
        // One count per facet, each the filter of a listing on it, one
        // after the other (polodb mixes up concurrent cursors); MongoDB
        // answers each from its indexes or a collection scan.
        let count = async |status, job_type, kind, paused| {
            let filter = JobFilter::facet(status, job_type, kind, paused);
            let counted = self.jobs.count_documents(filter_document(&filter));
            self.bounded(counted.into_future()).await
        };
        let status = async |status| count(Some(status), None, None, None).await;
        let job_type = async |job_type| count(None, Some(job_type), None, None).await;
        Ok(JobTally {
            total: count(None, None, None, None).await?,
            pending: status(JobStatus::Pending).await?,
            scheduled: status(JobStatus::Scheduled).await?,
            running: status(JobStatus::Running).await?,
            succeeded: status(JobStatus::Succeeded).await?,
            failed: status(JobStatus::Failed).await?,
            email: job_type(JobType::Email).await?,
            sms: job_type(JobType::Sms).await?,
            recurring: count(None, None, Some(ScheduleKind::Recurring), None).await?,
            paused: count(None, None, None, Some(true)).await?,
        })
    }

    async fn replace_if(
        &self,
        job: &Job,
        expected_version: i64,
        ended: &[Run],
    ) -> Result<bool, StoreError> {
        let filter = doc! { "_id": job.id, "version": expected_version };
        let mut update = doc! { "$set": mutable_fields(job) };
        if !ended.is_empty() {
            runs::owe(&mut update, ended);
        }
        self.update_where(filter, update).await
    }

    /// The job first, then its runs: a crash between the two leaves runs
    /// without a job, which the retention's age limit removes.
    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let result = self
            .bounded(self.jobs.delete_one(doc! { "_id": id }).into_future())
            .await?;
        self.forget_runs(id).await?;
        Ok(result.deleted_count == 1)
    }

    async fn runs(&self, id: JobId, offset: u64, limit: u64) -> Result<RunsPage, StoreError> {
        self.runs_page(id, offset, limit).await
    }

    async fn prune_runs(&self, retention: RunRetention) -> Result<u64, StoreError> {
        self.prune(retention).await
    }

    /// A read and a conditional write of what the domain decides (a run
    /// it ends is owed in the same update, see [`runs`]).
    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        match self.get(id).await? {
            Some(job) => claim_read(self, job, fire_token, now).await,
            None => Ok(None),
        }
    }

    /// A read and a conditional write, as for the claim.
    async fn store_result(
        &self,
        id: JobId,
        report: &RunReport,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        match self.get(id).await? {
            Some(job) => result_read(self, job, report, now).await,
            None => Ok(ResultOutcome::UnknownJob),
        }
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Scan<DueJob>, StoreError> {
        // SCHEDULED one-shot jobs, and recurring jobs whose `armed` flag
        // (written from `Job::is_armable`) is set: two indexed queries
        // (MongoDB-protocol servers without `$or` answer them too), merged.
        let before = doc! { "$lt": bson_time(until) };
        let order = doc! { "scheduleTime": 1, "_id": 1 };
        let one_shot = doc! {
            "status": JobStatus::Scheduled.as_i32(),
            "recurrence": null,
            "scheduleTime": before.clone(),
        };
        let mut jobs = self.find_jobs(one_shot, order.clone(), None).await?;
        let recurring = doc! { "armed": true, "scheduleTime": before };
        let armed = self.find_jobs(recurring, order, None).await?;
        jobs.found.extend(armed.found);
        jobs.unreadable.extend(armed.unreadable);
        jobs.found
            .sort_by_key(|job| (job.spec.schedule_time, job.id));
        Ok(jobs.map(|job| DueJob::from(&job)))
    }

    async fn with_pending_events(&self, limit: usize) -> Result<Scan<Job>, StoreError> {
        if limit == 0 {
            // MongoDB reads a limit of 0 as no limit at all.
            return Ok(Scan::readable(Vec::new()));
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.find_jobs(
            doc! { "outbox": 1 },
            doc! { "updatedAt": 1, "_id": 1 },
            Some(limit),
        )
        .await
    }

    async fn set_pending_if(
        &self,
        id: JobId,
        version: i64,
        remaining: PendingEvents,
    ) -> Result<bool, StoreError> {
        let filter = doc! { "_id": id, "version": version };
        self.update_where(filter, doc! { "$set": pending_fields(remaining) })
            .await
    }

    async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Scan<Job>, StoreError> {
        if limit == 0 {
            return Ok(Scan::readable(Vec::new()));
        }
        let finished = [JobStatus::Succeeded.as_i32(), JobStatus::Failed.as_i32()];
        let filter = doc! {
            "status": { "$in": finished.to_vec() },
            "recurrence": null,
            "outbox": 0,
            "updatedAt": { "$lt": bson_time(cutoff) },
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let order = doc! { "updatedAt": 1, "_id": 1 };
        self.find_jobs(filter, order, Some(limit)).await
    }

    /// The job first, then its runs (see `delete`).
    async fn delete_if(&self, id: JobId, version: i64) -> Result<bool, StoreError> {
        let filter = doc! { "_id": id, "version": version };
        let result = self
            .bounded(self.jobs.delete_one(filter).into_future())
            .await?;
        if result.deleted_count == 1 {
            self.forget_runs(id).await?;
        }
        Ok(result.deleted_count == 1)
    }

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let filter = doc! {
            "status": JobStatus::Running.as_i32(),
            "updatedAt": { "$lt": bson_time(cutoff) },
        };
        self.find_jobs(filter, doc! { "updatedAt": 1, "_id": 1 }, None)
            .await
    }
}
