//! The MongoDB [`JobDB`]: collection `jobs`, one document per job.
//!
//! Correctness on a real MongoDB rests on one guarantee: an update of a single
//! document is atomic, so a conditional `update_one` (filter on status and
//! fire token) is a compare-and-set. Only `insert`, `find`, `count`,
//! `update_one` and `delete_one` are used, so that MongoDB-protocol servers
//! without `findAndModify` work too. Every operation has a bounded timeout.

use std::{future::Future, time::Duration};

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::{
    Client, Collection, IndexModel,
    error::{Error as MongoError, ErrorKind},
    options::{ClientOptions, IndexOptions},
};

use super::{DueJob, JobDB, JobsPage, ResultOutcome, StoreError, result_outcome};
use crate::domain::{Job, JobId, JobSpec, JobStatus, JobType, PageRequest, ResultStatus};

/// Name of the collection that holds the jobs.
pub const COLLECTION: &str = "jobs";

/// Jobs in a MongoDB collection.
#[derive(Clone)]
pub struct MongoJobDB {
    jobs: Collection<Document>,
    timeout: Duration,
}

impl MongoJobDB {
    /// Connects to `uri` and uses database `db_name`. Connecting is lazy in the
    /// driver; this only parses the URI and sets the timeouts, so it succeeds
    /// while the server is down and calls fail fast until it is back.
    pub async fn connect(uri: &str, db_name: &str, timeout: Duration) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Other(format!("invalid database URI: {e}")))?;
        options.app_name = Some("scheduler-service".to_owned());
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        let client = Client::with_options(options).map_err(map_err)?;
        Ok(MongoJobDB {
            jobs: client.database(db_name).collection(COLLECTION),
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

    /// Runs a conditional `$set` and tells whether a document matched.
    async fn update_where(&self, filter: Document, set: Document) -> Result<bool, StoreError> {
        let result = self
            .bounded(
                self.jobs
                    .update_one(filter, doc! { "$set": set })
                    .into_future(),
            )
            .await?;
        Ok(result.matched_count == 1)
    }
}

fn map_err(err: MongoError) -> StoreError {
    match *err.kind {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. } => StoreError::Unavailable(err.to_string()),
        _ => StoreError::Other(err.to_string()),
    }
}

fn bson_time(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_chrono(time)
}

/// The fields of a job that a replace writes: all but `_id` and `createdAt`.
fn mutable_fields(job: &Job) -> Document {
    doc! {
        "name": &job.spec.name,
        "description": &job.spec.description,
        "scheduleTime": bson_time(job.spec.schedule_time),
        "updatedAt": bson_time(job.updated_at),
        "status": job.status.as_i32(),
        "jobType": job.spec.job_type.as_i32(),
        "jobData": &job.spec.job_data,
        "scheduledKey": job.scheduled_key,
    }
}

/// The stored form of a job.
pub fn job_to_document(job: &Job) -> Document {
    let mut document = doc! { "_id": job.id, "createdAt": bson_time(job.created_at) };
    document.extend(mutable_fields(job));
    document
}

/// Reads a stored document back as a job.
pub fn job_from_document(document: &Document) -> Result<Job, StoreError> {
    let corrupt = |what: &str| {
        let id = document
            .get("_id")
            .map(ToString::to_string)
            .unwrap_or_default();
        StoreError::Corrupt(format!("document {id}: {what}"))
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
        scheduled_key: int("scheduledKey")?,
    })
}

#[async_trait]
impl JobDB for MongoJobDB {
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let due = IndexModel::builder()
            .keys(doc! { "status": 1, "scheduleTime": 1 })
            .options(
                IndexOptions::builder()
                    .name("status_scheduleTime".to_owned())
                    .build(),
            )
            .build();
        let listing = IndexModel::builder()
            .keys(doc! { "scheduleTime": 1, "_id": 1 })
            .options(
                IndexOptions::builder()
                    .name("scheduleTime_id".to_owned())
                    .build(),
            )
            .build();
        self.bounded(self.jobs.create_indexes([due, listing]).into_future())
            .await
            .map(|_| ())
    }

    async fn insert(&self, job: &Job) -> Result<(), StoreError> {
        self.bounded(self.jobs.insert_one(job_to_document(job)).into_future())
            .await
            .map(|_| ())
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let found = self
            .bounded(self.jobs.find_one(doc! { "_id": id }).into_future())
            .await?;
        found.as_ref().map(job_from_document).transpose()
    }

    async fn list(&self, page: PageRequest) -> Result<JobsPage, StoreError> {
        let total = self
            .bounded(self.jobs.count_documents(doc! {}).into_future())
            .await?;
        let skip = page.offset();
        let limit = i64::try_from(page.size).unwrap_or(i64::MAX);
        let documents: Vec<Document> = if skip >= total {
            Vec::new()
        } else {
            self.bounded(async {
                self.jobs
                    .find(doc! {})
                    .sort(doc! { "scheduleTime": 1, "_id": 1 })
                    .skip(skip)
                    .limit(limit)
                    .await?
                    .try_collect()
                    .await
            })
            .await?
        };
        Ok(JobsPage {
            jobs: documents
                .iter()
                .map(job_from_document)
                .collect::<Result<_, _>>()?,
            total,
        })
    }

    async fn replace_if(&self, job: &Job, expected: &Job) -> Result<bool, StoreError> {
        let filter = doc! {
            "_id": job.id,
            "status": expected.status.as_i32(),
            "scheduledKey": expected.scheduled_key,
        };
        self.update_where(filter, mutable_fields(job)).await
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
        scheduled_key: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let filter = doc! {
            "_id": id,
            "status": JobStatus::Scheduled.as_i32(),
            "scheduledKey": scheduled_key,
        };
        let set = doc! { "status": JobStatus::Running.as_i32(), "updatedAt": bson_time(now) };
        if !self.update_where(filter, set).await? {
            return Ok(None);
        }
        // Read back the job we now own. Its fields cannot change while it is
        // RUNNING (updates are refused), so this read sees what was claimed.
        self.get(id).await
    }

    async fn store_result(
        &self,
        id: JobId,
        result: ResultStatus,
        now: DateTime<Utc>,
    ) -> Result<ResultOutcome, StoreError> {
        let filter = doc! { "_id": id, "status": JobStatus::Running.as_i32() };
        let set = doc! { "status": result.job_status().as_i32(), "updatedAt": bson_time(now) };
        if self.update_where(filter, set).await? {
            return Ok(ResultOutcome::Stored);
        }
        Ok(match self.get(id).await? {
            None => ResultOutcome::UnknownJob,
            Some(job) => result_outcome(job.status, result),
        })
    }

    async fn scheduled_before(&self, until: DateTime<Utc>) -> Result<Vec<DueJob>, StoreError> {
        let filter = doc! {
            "status": JobStatus::Scheduled.as_i32(),
            "scheduleTime": { "$lt": bson_time(until) },
        };
        let documents: Vec<Document> = self
            .bounded(async {
                self.jobs
                    .find(filter)
                    .sort(doc! { "scheduleTime": 1, "_id": 1 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        documents
            .iter()
            .map(|d| job_from_document(d).map(|job| DueJob::from(&job)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    #[test]
    fn document_round_trip_keeps_every_field() {
        let job = Job {
            status: JobStatus::Failed,
            ..Job::new_scheduled(
                JobSpec {
                    name: "mail".into(),
                    description: "weekly".into(),
                    schedule_time: now(),
                    job_type: JobType::Sms,
                    job_data: r#"{"to":"x"}"#.into(),
                },
                now(),
            )
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
        ] {
            assert!(document.contains_key(key), "missing {key}");
        }
        assert_eq!(document.get_i32("status").unwrap(), 5);
        assert_eq!(document.get_i32("jobType").unwrap(), 1);
        assert_eq!(job_from_document(&document).unwrap(), job);
    }

    #[test]
    fn a_document_with_a_bad_field_is_reported_as_corrupt() {
        let mut document = job_to_document(&Job::new_scheduled(
            JobSpec {
                name: "n".into(),
                description: String::new(),
                schedule_time: now(),
                job_type: JobType::Email,
                job_data: "d".into(),
            },
            now(),
        ));
        document.insert("status", 42);
        let err = job_from_document(&document).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(ref m) if m.contains("status")),
            "{err}"
        );
    }
}
