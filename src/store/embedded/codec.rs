//! The stored form of a job, keyed by the job id: compact binary
//! (`postcard`), or JSON in files written before it.

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

/// The first byte of a job stored in [`BINARY`] form. A job stored as JSON
/// (files written before it) starts with `{`; both are read, and every
/// write stores the binary form.
pub(super) const BINARY: u8 = 1;

/// The stored form of a job (the id is the key): `postcard` after the
/// [`BINARY`] byte, or JSON in files written before it. The binary form is
/// under half the size of the JSON one (no field names, integers as
/// varints), and a write transaction copies every b-tree page it touches:
/// the smaller the jobs, the fewer pages a batch of claims copies and
/// syncs. Its fields are positional, so new ones go at the end (with a
/// default, for the jobs stored without them).
#[derive(Serialize, Deserialize)]
struct StoredJob<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    description: Cow<'a, str>,
    schedule_ms: i64,
    created_ms: i64,
    updated_ms: i64,
    status: i32,
    job_type: i32,
    #[serde(borrow)]
    job_data: Cow<'a, str>,
    fire_token: i64,
    version: i64,
    pending_create: bool,
    pending_update: bool,
    pending_run: bool,
    /// Absent in JSON written before dead letters.
    #[serde(default)]
    pending_dead_letter: bool,
    /// Absent in JSON unless the job is being removed by its retention.
    #[serde(default)]
    pending_delete: bool,
    /// Absent in JSON written before traces were kept, or without one.
    #[serde(default, borrow)]
    trace_parent: Option<Cow<'a, str>>,
    /// A recurring job's recurrence, in its stored form; absent for a
    /// one-shot job (and in JSON written before recurring jobs).
    #[serde(default, borrow)]
    recurrence: Option<Cow<'a, str>>,
    /// Absent unless the client chose one.
    #[serde(default, borrow)]
    client_key: Option<Cow<'a, str>>,
    /// The retry policy and attempts, in their stored form; absent while
    /// they are the default (and in JSON written before retries).
    #[serde(default)]
    attempts: Option<String>,
}

impl<'a> StoredJob<'a> {
    /// Reads either stored form.
    fn read(id: JobId, bytes: &'a [u8]) -> Result<Self, Unreadable> {
        let unreadable = |e: &dyn std::fmt::Display| Unreadable::job(id, e.to_string());
        match bytes.split_first() {
            Some((&BINARY, rest)) => postcard::from_bytes(rest).map_err(|e| unreadable(&e)),
            _ => serde_json::from_slice(bytes).map_err(|e| unreadable(&e)),
        }
    }
}

pub(super) fn time(ms: i64, id: JobId) -> Result<DateTime<Utc>, Unreadable> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Unreadable::job(id, format!("time {ms} out of range")))
}

pub(super) fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
    let stored = StoredJob {
        name: Cow::Borrowed(&job.spec.name),
        description: Cow::Borrowed(&job.spec.description),
        schedule_ms: job.spec.schedule_time.timestamp_millis(),
        created_ms: job.created_at.timestamp_millis(),
        updated_ms: job.updated_at.timestamp_millis(),
        status: job.status.as_i32(),
        job_type: job.spec.job_type.as_i32(),
        job_data: Cow::Borrowed(&job.spec.job_data),
        fire_token: job.fire_token,
        version: job.version,
        pending_create: job.pending.create,
        pending_update: job.pending.update,
        pending_run: job.pending.run,
        pending_dead_letter: job.pending.dead_letter,
        pending_delete: job.pending.delete,
        trace_parent: job.trace_parent.as_deref().map(Cow::Borrowed),
        recurrence: job.recurrence.as_deref().map(|r| Cow::Owned(r.to_stored())),
        client_key: job.client_key.as_deref().map(Cow::Borrowed),
        attempts: Attempts::write(job.attempts.as_deref()),
    };
    postcard::to_extend(&stored, vec![BINARY]).map_err(other)
}

pub(super) fn decode(id: JobId, bytes: &[u8]) -> Result<Job, Unreadable> {
    let stored = StoredJob::read(id, bytes)?;
    let corrupt = |what: &str| Unreadable::job(id, format!("invalid {what}"));
    Ok(Job {
        id,
        spec: JobSpec {
            name: stored.name.into_owned(),
            description: stored.description.into_owned(),
            schedule_time: time(stored.schedule_ms, id)?,
            job_type: JobType::from_i32(stored.job_type).ok_or_else(|| corrupt("job type"))?,
            job_data: stored.job_data.into_owned(),
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
        trace_parent: stored.trace_parent.map(Cow::into_owned),
        recurrence: stored
            .recurrence
            .map(|text| Recurrence::from_stored(&text).map(Box::new))
            .transpose()
            .map_err(|e| Unreadable::job(id, e.to_string()))?,
        client_key: stored.client_key.map(Cow::into_owned),
        attempts: Attempts::read(stored.attempts.as_deref())
            .map_err(|e| Unreadable::job(id, e.to_string()))?,
    })
}

/// The facets of a stored job (what filters and the tally look at), its
/// strings borrowed from `bytes`: a listing filters every job it scans.
pub(super) fn decode_facets(id: JobId, bytes: &[u8]) -> Result<JobFacets<'_>, Unreadable> {
    let stored = StoredJob::read(id, bytes)?;
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
