//! The MongoDB [`JobDB`]: one document per job in the collection
//! `DATABASE_COLLECTION` names (default
//! [`DEFAULT_COLLECTION`](crate::config::database::DEFAULT_COLLECTION), `jobs`).
//!
//! Correctness on a real MongoDB rests on one guarantee: an update of a single
//! document is atomic, so a conditional `update_one` (filter on version, or
//! on status and fire token) is a compare-and-set. The outbox lives in the
//! job document itself (`pendingCreate`, `pendingUpdate`, `pendingRun`,
//! `outbox`), so it changes in the same atomic update as the job, with no
//! multi-document transaction. Only `insert`, `find`, `count`, `update_one`
//! and `delete_one` are used, so that MongoDB-protocol servers without
//! `findAndModify` work too. Every operation has a bounded timeout.
//!
//! Recurring jobs (a `recurrence` field) are left out of the one-shot
//! claim and result filters (`recurrence: null`); their claim and result
//! are a read and an `update_one` filtered on the version read, of what
//! the domain decided (`store::claim_recurring`). Client keys are
//! unique through a partial unique index on `clientKey`.

use std::{future::Future, time::Duration};

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Client, Collection, IndexModel,
    error::{
        Error as MongoError, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
        SYSTEM_OVERLOADED_ERROR, TRANSIENT_TRANSACTION_ERROR, WriteFailure,
    },
    options::{ClientOptions, IndexOptions},
};

use super::{
    DueJob, JobDB, JobsPage, ResultOutcome, Scan, StoreError, Unreadable, claim_recurring,
    refused_result, result_recurring,
};
use crate::domain::{
    Job, JobId, JobSpec, JobStatus, JobType, PageRequest, PendingEvents, ResultStatus,
    recurrence::Recurrence,
};

/// The unique index of client keys.
const CLIENT_KEY_INDEX: &str = "clientKey_unique";

/// Documents asked for in the first batch of a query (MongoDB still caps a
/// batch at 16 MiB and fetches the rest with `getMore`).
const FIRST_BATCH: u32 = 100_000;

/// Jobs in a MongoDB collection.
#[derive(Clone)]
pub struct MongoJobDB {
    jobs: Collection<Document>,
    timeout: Duration,
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
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        if max_pool_size.is_some() {
            options.max_pool_size = max_pool_size;
        }
        let client = Client::with_options(options).map_err(map_err)?;
        Ok(MongoJobDB {
            jobs: client.database(db_name).collection(collection),
            timeout,
        })
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, MongoError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result.map_err(map_err),
            Err(_) => Err(StoreError::Unavailable(format!(
                "database did not answer within {:?}",
                self.timeout
            ))),
        }
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
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "database did not answer within {:?}",
                        self.timeout
                    )));
                }
            }
        }
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
        let documents: Vec<Document> = self
            .read(|| async {
                // Ask for everything in the first batch: servers that keep
                // cursors per connection lose them when the pool sends the
                // follow-up `getMore` on another connection.
                let mut find = self
                    .jobs
                    .find(filter.clone())
                    .sort(sort.clone())
                    .batch_size(FIRST_BATCH);
                if let Some(limit) = limit {
                    find = find.limit(limit);
                }
                find.await?.try_collect().await
            })
            .await?;
        Ok(documents.iter().map(job_from_document).collect())
    }
}

/// How many times a read is tried when the server loses its cursor.
const READ_ATTEMPTS: u32 = 3;

/// Whether the server lost the cursor of a read (MongoDB's CursorNotFound,
/// code 43, or the same said in words by MongoDB-protocol servers).
fn cursor_lost(err: &MongoError) -> bool {
    matches!(&*err.kind, ErrorKind::Command(command) if command.code == 43)
        || err.to_string().to_lowercase().contains("cursor not found")
}

/// A driver error as a [`StoreError`]: [`StoreError::Unavailable`] when the
/// same call may succeed if it is tried again (see [`transient`]), so that
/// callers retry it (the run-result consumer, the firings) rather than give
/// up on it.
fn map_err(err: MongoError) -> StoreError {
    if transient(&err) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Other(err.to_string())
    }
}

/// Server error codes after which the same operation may succeed when it is
/// tried again: a replica set between primaries (a fail-over, a step-down),
/// a node shutting down, starting or unreachable, a write concern not
/// satisfied in time. The driver's own retryable codes, and
/// WriteConcernFailed.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Error labels by which the server or the driver says that an operation
/// may be tried again.
const TRANSIENT_LABELS: &[&str] = &[
    RETRYABLE_WRITE_ERROR,
    TRANSIENT_TRANSACTION_ERROR,
    RETRYABLE_ERROR,
    SYSTEM_OVERLOADED_ERROR,
];

/// Whether trying the same call again may succeed: a label says so, or the
/// error (or one it was caused by) is of a kind or code that does.
fn transient(err: &MongoError) -> bool {
    has_transient_label(err)
        || std::iter::successors(Some(err), |e| {
            std::error::Error::source(*e).and_then(|cause| cause.downcast_ref::<MongoError>())
        })
        .any(|e| transient_kind(&e.kind))
}

/// Whether the server or the driver labelled `err` as worth trying again.
fn has_transient_label(err: &MongoError) -> bool {
    TRANSIENT_LABELS
        .iter()
        .any(|label| err.contains_label(label))
}

/// Whether an error of this kind is one that trying again may cure.
fn transient_kind(kind: &ErrorKind) -> bool {
    match kind {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        // Wrong credentials make the store unusable until an operator fixes
        // them: a dependency failure, not a fault of the request.
        | ErrorKind::Authentication { .. } => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        // The write was applied on the primary, but not acknowledged as the
        // write concern asks (not replicated in time, or the primary stepped
        // down): every write of this store is conditional, so trying it
        // again is safe (it then finds the change made, or makes it).
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => false,
    }
}

/// Whether an insert failed on the unique index of client keys (a
/// duplicate key error, 11000, that names it).
fn client_key_taken(err: &MongoError) -> bool {
    matches!(&*err.kind, ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == 11000)
        && err.to_string().contains("clientKey")
}

fn bson_time(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_chrono(time)
}

/// The outbox fields: one flag per owed event, and `outbox` (1 when any is
/// owed) for an index-friendly equality query.
fn pending_fields(pending: PendingEvents) -> Document {
    doc! {
        "pendingCreate": pending.create,
        "pendingUpdate": pending.update,
        "pendingRun": pending.run,
        "outbox": i32::from(pending.any()),
    }
}

/// The fields of a job that a replace writes: all but `_id`.
fn mutable_fields(job: &Job) -> Document {
    let mut fields = doc! {
        "createdAt": bson_time(job.created_at),
        "name": &job.spec.name,
        "description": &job.spec.description,
        "scheduleTime": bson_time(job.spec.schedule_time),
        "updatedAt": bson_time(job.updated_at),
        "status": job.status.as_i32(),
        "jobType": job.spec.job_type.as_i32(),
        "jobData": &job.spec.job_data,
        "scheduledKey": job.fire_token,
        "version": job.version,
        "traceParent": job.trace_parent.as_deref(),
        "recurrence": job.recurrence.as_deref().map(Recurrence::to_stored),
        // Only read for recurring jobs (see `scheduled_before`).
        "armed": job.recurrence.is_some() && job.is_armable(),
        "clientKey": job.client_key.as_deref(),
    };
    fields.extend(pending_fields(job.pending));
    fields
}

/// The stored form of a job.
pub fn job_to_document(job: &Job) -> Document {
    let mut document = doc! { "_id": job.id };
    document.extend(mutable_fields(job));
    document
}

/// Reads a stored document back as a job.
pub fn job_from_document(document: &Document) -> Result<Job, Unreadable> {
    let corrupt = |what: &str| match document.get_object_id("_id") {
        Ok(id) => Unreadable::job(id, what),
        Err(_) => {
            let id = document
                .get("_id")
                .map(ToString::to_string)
                .unwrap_or_default();
            Unreadable::without_id(format!("_id {id}: {what}"))
        }
    };
    let string = |key: &str| {
        document
            .get_str(key)
            .map(str::to_owned)
            .map_err(|_| corrupt(key))
    };
    let time = |key: &str| {
        document
            .get_datetime(key)
            .map(|t| t.to_chrono())
            .map_err(|_| corrupt(key))
    };
    let int = |key: &str| match document.get(key) {
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Int64(v)) => Ok(*v),
        _ => Err(corrupt(key)),
    };
    let small_int = |key: &str| int(key).and_then(|v| i32::try_from(v).map_err(|_| corrupt(key)));
    let flag = |key: &str| document.get_bool(key).unwrap_or(false);
    Ok(Job {
        id: document.get_object_id("_id").map_err(|_| corrupt("_id"))?,
        spec: JobSpec {
            name: string("name")?,
            description: document
                .get_str("description")
                .unwrap_or_default()
                .to_owned(),
            schedule_time: time("scheduleTime")?,
            job_type: JobType::from_i32(small_int("jobType")?).ok_or_else(|| corrupt("jobType"))?,
            job_data: string("jobData")?,
        },
        created_at: time("createdAt")?,
        updated_at: time("updatedAt")?,
        status: JobStatus::from_i32(small_int("status")?).ok_or_else(|| corrupt("status"))?,
        fire_token: int("scheduledKey")?,
        version: int("version")?,
        pending: PendingEvents {
            create: flag("pendingCreate"),
            update: flag("pendingUpdate"),
            run: flag("pendingRun"),
        },
        trace_parent: document.get_str("traceParent").ok().map(str::to_owned),
        recurrence: match document.get_str("recurrence") {
            Ok(text) => Some(Box::new(
                Recurrence::from_stored(text).map_err(|e| corrupt(&e.to_string()))?,
            )),
            Err(_) => None,
        },
        client_key: document.get_str("clientKey").ok().map(str::to_owned),
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
            (Ok(Err(err)), Some(key)) if client_key_taken(&err) => {
                Err(StoreError::ClientKeyTaken(key.clone()))
            }
            (Ok(result), _) => result.map(|_| ()).map_err(map_err),
            (Err(_), _) => Err(StoreError::Unavailable(format!(
                "database did not answer within {:?}",
                self.timeout
            ))),
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

    async fn list(&self, page: PageRequest) -> Result<JobsPage, StoreError> {
        let total = self
            .bounded(self.jobs.count_documents(doc! {}).into_future())
            .await?;
        let skip = page.offset();
        let page = if skip >= total {
            Scan::readable(Vec::new())
        } else {
            let documents: Vec<Document> = self
                .read(|| async {
                    self.jobs
                        .find(doc! {})
                        .sort(doc! { "scheduleTime": 1, "_id": 1 })
                        .skip(skip)
                        .limit(i64::try_from(page.size).unwrap_or(i64::MAX))
                        .batch_size(u32::try_from(page.size).unwrap_or(FIRST_BATCH))
                        .await?
                        .try_collect()
                        .await
                })
                .await?;
            documents.iter().map(job_from_document).collect()
        };
        Ok(JobsPage {
            jobs: page.found,
            unreadable: page.unreadable,
            total,
        })
    }

    async fn replace_if(&self, job: &Job, expected_version: i64) -> Result<bool, StoreError> {
        let filter = doc! { "_id": job.id, "version": expected_version };
        self.update_where(filter, doc! { "$set": mutable_fields(job) })
            .await
    }

    async fn delete(&self, id: JobId) -> Result<bool, StoreError> {
        let result = self
            .bounded(self.jobs.delete_one(doc! { "_id": id }).into_future())
            .await?;
        Ok(result.deleted_count == 1)
    }

    async fn claim(
        &self,
        id: JobId,
        fire_token: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let filter = doc! {
            "_id": id,
            "status": JobStatus::Scheduled.as_i32(),
            "scheduledKey": fire_token,
            // One-shot jobs only (a missing field matches null too).
            "recurrence": null,
        };
        let update = doc! {
            "$set": {
                "status": JobStatus::Running.as_i32(),
                "updatedAt": bson_time(now),
                "pendingRun": true,
                "outbox": 1,
            },
            "$inc": { "version": 1_i64 },
        };
        if !self.update_where(filter, update).await? {
            // A recurring job is claimed by a read and a conditional write.
            return match self.get(id).await? {
                Some(job) if job.recurrence.is_some() => {
                    claim_recurring(self, job, fire_token, now).await
                }
                _ => Ok(None),
            };
        }
        // Read back the job we now own. Its fields cannot change while it is
        // RUNNING (updates are refused), so this read sees what was claimed.
        self.get(id).await
    }

    async fn store_result(
        &self,
        id: JobId,
        result: ResultStatus,
        fire_token: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        let mut filter =
            doc! { "_id": id, "status": JobStatus::Running.as_i32(), "recurrence": null };
        // A result that names its firing matches only that firing.
        if let Some(token) = fire_token {
            filter.insert("scheduledKey", token);
        }
        let update = doc! {
            "$set": { "status": result.job_status().as_i32(), "updatedAt": bson_time(now) },
            "$inc": { "version": 1_i64 },
        };
        if self.update_where(filter, update).await? {
            return Ok(ResultOutcome::Stored);
        }
        Ok(match self.get(id).await? {
            None => ResultOutcome::UnknownJob,
            Some(job) if job.recurrence.is_some() => {
                result_recurring(self, job, result, fire_token, now)
                    .await?
                    .unwrap_or(ResultOutcome::UnknownJob)
            }
            Some(job) => refused_result(job.status, job.fire_token, result, fire_token),
        })
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

    async fn running_before(&self, cutoff: DateTime<Utc>) -> Result<Scan<Job>, StoreError> {
        let filter = doc! {
            "status": JobStatus::Running.as_i32(),
            "updatedAt": { "$lt": bson_time(cutoff) },
        };
        self.find_jobs(filter, doc! { "updatedAt": 1, "_id": 1 }, None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    fn job() -> Job {
        Job::new_scheduled(
            JobSpec {
                name: "mail".into(),
                description: "weekly".into(),
                schedule_time: now(),
                job_type: JobType::Sms,
                job_data: r#"{"to":"x"}"#.into(),
            },
            now(),
        )
    }

    #[test]
    fn document_round_trip_keeps_every_field() {
        let job = Job {
            status: JobStatus::Failed,
            version: 7,
            pending: PendingEvents {
                create: false,
                update: true,
                run: true,
            },
            trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..job()
        };
        let document = job_to_document(&job);
        for key in [
            "_id",
            "name",
            "description",
            "scheduleTime",
            "createdAt",
            "updatedAt",
            "status",
            "jobType",
            "jobData",
            "scheduledKey",
            "version",
            "pendingCreate",
            "pendingUpdate",
            "pendingRun",
            "traceParent",
        ] {
            assert!(document.contains_key(key), "missing {key}");
        }
        assert_eq!(document.get_i32("status").unwrap(), 5);
        assert_eq!(document.get_i32("jobType").unwrap(), 1);
        assert_eq!(document.get_i32("outbox").unwrap(), 1);
        assert_eq!(job_from_document(&document).unwrap(), job);
    }

    /// A server's command error with this code.
    fn command_error(code: i32, name: &str) -> MongoError {
        let command = bson::from_document(doc! { "code": code, "codeName": name, "errmsg": name })
            .expect("a command error");
        MongoError::from(ErrorKind::Command(command))
    }

    /// A write error, or a write-concern error, with this code and labels.
    fn write_failure(concern: bool, code: i32, labels: &[&str]) -> MongoError {
        let error = doc! { "code": code, "errmsg": "e", "errorLabels": labels };
        let failure = if concern {
            WriteFailure::WriteConcernError(bson::from_document(error).expect("wc error"))
        } else {
            WriteFailure::WriteError(bson::from_document(error).expect("write error"))
        };
        MongoError::from(ErrorKind::Write(failure))
    }

    #[test]
    fn fail_over_shutdown_and_network_errors_are_unavailable_the_others_not() {
        let transient = [
            command_error(10107, "NotWritablePrimary"),
            command_error(13435, "NotPrimaryNoSecondaryOk"),
            command_error(189, "PrimarySteppedDown"),
            command_error(91, "ShutdownInProgress"),
            command_error(11600, "InterruptedAtShutdown"),
            command_error(6, "HostUnreachable"),
            command_error(89, "NetworkTimeout"),
            write_failure(true, 64, &[]),
            write_failure(true, 100, &[]),
            MongoError::from(std::io::ErrorKind::ConnectionReset),
        ];
        for err in transient {
            assert!(
                matches!(map_err(err.clone()), StoreError::Unavailable(_)),
                "{err}"
            );
        }
        let refused = [
            command_error(11000, "DuplicateKey"),
            command_error(2, "BadValue"),
            command_error(13, "Unauthorized"),
            write_failure(false, 11000, &[]),
            write_failure(false, 10107, &[]),
            MongoError::custom("a fault of the caller"),
        ];
        for err in refused {
            assert!(
                matches!(map_err(err.clone()), StoreError::Other(_)),
                "{err}"
            );
        }
    }

    #[test]
    fn a_retryable_label_makes_an_error_transient() {
        let labelled = write_failure(true, 100, &[RETRYABLE_WRITE_ERROR]);
        assert!(has_transient_label(&labelled));
        assert!(!has_transient_label(&write_failure(true, 100, &[])));
        assert!(!has_transient_label(&write_failure(
            true,
            100,
            &["NoWritesPerformed"]
        )));
    }

    #[test]
    fn a_document_with_a_bad_field_is_reported_as_corrupt() {
        let job = job();
        let mut document = job_to_document(&job);
        document.insert("status", 42);
        let err = job_from_document(&document).unwrap_err();
        assert_eq!(err, Unreadable::job(job.id, "status"));
        document.insert("_id", "not an ObjectId");
        let err = job_from_document(&document).unwrap_err();
        assert_eq!(err.id, None, "{err}");
    }
}
