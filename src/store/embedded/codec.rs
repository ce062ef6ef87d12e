//! The stored form of a job: JSON, keyed by the job id.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::errors::other;
use crate::{
    domain::{
        Job, JobFacets, JobId, JobSpec, JobStatus, JobType, PendingEvents, recurrence::Recurrence,
        retry::Attempts,
    },
    store::{StoreError, Unreadable},
};

/// The stored form of a job (the id is the key).
#[derive(Serialize, Deserialize)]
struct StoredJob {
    name: String,
    description: String,
    schedule_ms: i64,
    created_ms: i64,
    updated_ms: i64,
    status: i32,
    job_type: i32,
    job_data: String,
    fire_token: i64,
    version: i64,
    pending_create: bool,
    pending_update: bool,
    pending_run: bool,
    /// Absent in files written before dead letters.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pending_dead_letter: bool,
    /// Absent unless the job is being removed by its retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pending_delete: bool,
    /// Absent in files written before traces were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_parent: Option<String>,
    /// A recurring job's recurrence, in its stored form; absent for a
    /// one-shot job (and in files written before recurring jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recurrence: Option<String>,
    /// Absent unless the client chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
    /// The retry policy and attempts, in their stored form; absent while
    /// they are the default (and in files written before retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempts: Option<String>,
}

pub(super) fn time(ms: i64, id: JobId) -> Result<DateTime<Utc>, Unreadable> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Unreadable::job(id, format!("time {ms} out of range")))
}

pub(super) fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredJob {
        name: job.spec.name.clone(),
        description: job.spec.description.clone(),
        schedule_ms: job.spec.schedule_time.timestamp_millis(),
        created_ms: job.created_at.timestamp_millis(),
        updated_ms: job.updated_at.timestamp_millis(),
        status: job.status.as_i32(),
        job_type: job.spec.job_type.as_i32(),
        job_data: job.spec.job_data.clone(),
        fire_token: job.fire_token,
        version: job.version,
        pending_create: job.pending.create,
        pending_update: job.pending.update,
        pending_run: job.pending.run,
        pending_dead_letter: job.pending.dead_letter,
        pending_delete: job.pending.delete,
        trace_parent: job.trace_parent.clone(),
        recurrence: job.recurrence.as_deref().map(Recurrence::to_stored),
        client_key: job.client_key.clone(),
        attempts: Attempts::write(job.attempts.as_deref()),
    })
    .map_err(other)
}

pub(super) fn decode(id: JobId, bytes: &[u8]) -> Result<Job, Unreadable> {
    let stored: StoredJob =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::job(id, e.to_string()))?;
    let corrupt = |what: &str| Unreadable::job(id, format!("invalid {what}"));
    Ok(Job {
        id,
        spec: JobSpec {
            name: stored.name,
            description: stored.description,
            schedule_time: time(stored.schedule_ms, id)?,
            job_type: JobType::from_i32(stored.job_type).ok_or_else(|| corrupt("job type"))?,
            job_data: stored.job_data,
        },
        created_at: time(stored.created_ms, id)?,
        updated_at: time(stored.updated_ms, id)?,
        status: JobStatus::from_i32(stored.status).ok_or_else(|| corrupt("status"))?,
        fire_token: stored.fire_token,
        version: stored.version,
        pending: PendingEvents {
            create: stored.pending_create,
            update: stored.pending_update,
            run: stored.pending_run,
            dead_letter: stored.pending_dead_letter,
            delete: stored.pending_delete,
        },
        trace_parent: stored.trace_parent,
        recurrence: stored
            .recurrence
            .map(|text| Recurrence::from_stored(&text).map(Box::new))
            .transpose()
            .map_err(|e| Unreadable::job(id, e.to_string()))?,
        client_key: stored.client_key,
        attempts: Attempts::read(stored.attempts.as_deref())
            .map_err(|e| Unreadable::job(id, e.to_string()))?,
    })
}

/// The facets of a stored job (what filters and the tally look at),
/// without reading the rest: a listing filters every job it scans.
pub(super) fn decode_facets(id: JobId, bytes: &[u8]) -> Result<JobFacets<'_>, Unreadable> {
    #[derive(Deserialize)]
    struct Facets<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
        status: i32,
        job_type: i32,
        #[serde(default, borrow)]
        recurrence: Option<Cow<'a, str>>,
    }
    let stored: Facets<'_> =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::job(id, e.to_string()))?;
    let corrupt = |what: &str| Unreadable::job(id, format!("invalid {what}"));
    let paused = match &stored.recurrence {
        Some(text) => {
            Recurrence::paused_in_stored(text).map_err(|e| Unreadable::job(id, e.to_string()))?
        }
        None => false,
    };
    Ok(JobFacets {
        status: JobStatus::from_i32(stored.status).ok_or_else(|| corrupt("status"))?,
        job_type: JobType::from_i32(stored.job_type).ok_or_else(|| corrupt("job type"))?,
        recurring: stored.recurrence.is_some(),
        paused,
        name: stored.name,
    })
}

pub(super) fn id_of(bytes: &[u8]) -> Result<JobId, Unreadable> {
    <[u8; 12]>::try_from(bytes)
        .map(JobId::from_bytes)
        .map_err(|_| Unreadable::without_id(format!("job key of {} bytes", bytes.len())))
}
