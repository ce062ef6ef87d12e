//! A job as a BSON document, and a document read back as a job (or why it
//! cannot be).

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};

use crate::{
    domain::{
        Job, JobSpec, JobStatus, JobType, PendingEvents, recurrence::Recurrence, retry::Attempts,
    },
    store::Unreadable,
};

pub(super) fn bson_time(time: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_chrono(time)
}

/// The outbox fields: one flag per owed event, and `outbox` (1 when any is
/// owed) for an index-friendly equality query.
pub(super) fn pending_fields(pending: PendingEvents) -> Document {
    doc! {
        "pendingCreate": pending.create,
        "pendingUpdate": pending.update,
        "pendingRun": pending.run,
        "pendingDeadLetter": pending.dead_letter,
        "pendingDelete": pending.delete,
        "outbox": i32::from(pending.any()),
    }
}

/// The fields of a job that a replace writes: all but `_id`.
pub(super) fn mutable_fields(job: &Job) -> Document {
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
        "attempts": Attempts::write(job.attempts.as_deref()),
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
            dead_letter: flag("pendingDeadLetter"),
            delete: flag("pendingDelete"),
        },
        trace_parent: document.get_str("traceParent").ok().map(str::to_owned),
        recurrence: match document.get_str("recurrence") {
            Ok(text) => Some(Box::new(
                Recurrence::from_stored(text).map_err(|e| corrupt(&e.to_string()))?,
            )),
            Err(_) => None,
        },
        client_key: document.get_str("clientKey").ok().map(str::to_owned),
        attempts: Attempts::read(document.get_str("attempts").ok())
            .map_err(|e| corrupt(&e.to_string()))?,
    })
}
