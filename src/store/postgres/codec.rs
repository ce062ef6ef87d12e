//! A job as a row: its column values bound by reference, and a row read
//! back as a job (or why it cannot be).

use chrono::{DateTime, SubsecRound, Utc};
use tokio_postgres::{
    Row,
    types::{FromSql, ToSql},
};

#[cfg(doc)]
use super::sql::COLUMNS;
use crate::{
    domain::{
        Job, JobId, JobSpec, JobStatus, JobType, PendingEvents, recurrence::Recurrence,
        retry::Attempts,
    },
    store::{Scan, StoreError, Unreadable},
};

/// A time at the precision the store keeps.
pub(super) fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(3)
}

/// A job's column values, owned so that they can be bound by reference.
pub(super) struct JobParams<'a> {
    id: Vec<u8>,
    job: &'a Job,
    schedule_time: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    status: i16,
    job_type: i16,
    recurrence: Option<String>,
    armed: bool,
    attempts: Option<String>,
}

impl<'a> JobParams<'a> {
    pub(super) fn new(job: &'a Job) -> Self {
        JobParams {
            id: job.id.bytes().to_vec(),
            job,
            schedule_time: ms(job.spec.schedule_time),
            created_at: ms(job.created_at),
            updated_at: ms(job.updated_at),
            status: job.status as i16,
            job_type: job.spec.job_type as i16,
            recurrence: job.recurrence.as_ref().map(|r| r.to_stored()),
            // Only read for recurring jobs (see `sql::ARMED`).
            armed: job.recurrence.is_some() && job.is_armable(),
            attempts: Attempts::write(job.attempts.as_deref()),
        }
    }

    /// The values in the order of [`COLUMNS`] ($1 to $21).
    pub(super) fn as_params(&self) -> [&(dyn ToSql + Sync); 21] {
        [
            &self.id,
            &self.job.spec.name,
            &self.job.spec.description,
            &self.schedule_time,
            &self.created_at,
            &self.updated_at,
            &self.status,
            &self.job_type,
            &self.job.spec.job_data,
            &self.job.fire_token,
            &self.job.version,
            &self.job.pending.create,
            &self.job.pending.update,
            &self.job.pending.run,
            &self.job.trace_parent,
            &self.recurrence,
            &self.armed,
            &self.job.client_key,
            &self.attempts,
            &self.job.pending.dead_letter,
            &self.job.pending.delete,
        ]
    }
}

/// The column values of many jobs, one array per column, bound together
/// with the version each row must still be at (`Sql::replace_many_if`).
pub(super) struct JobColumns {
    ids: Vec<Vec<u8>>,
    names: Vec<String>,
    descriptions: Vec<String>,
    schedule_times: Vec<DateTime<Utc>>,
    created_ats: Vec<DateTime<Utc>>,
    updated_ats: Vec<DateTime<Utc>>,
    statuses: Vec<i16>,
    job_types: Vec<i16>,
    job_datas: Vec<String>,
    fire_tokens: Vec<i64>,
    versions: Vec<i64>,
    pending_creates: Vec<bool>,
    pending_updates: Vec<bool>,
    pending_runs: Vec<bool>,
    trace_parents: Vec<Option<String>>,
    recurrences: Vec<Option<String>>,
    armed: Vec<bool>,
    client_keys: Vec<Option<String>>,
    attempts: Vec<Option<String>>,
    pending_dead_letters: Vec<bool>,
    pending_deletes: Vec<bool>,
    expected: Vec<i64>,
}

impl JobColumns {
    /// The columns of `jobs`, each with the version its row must be at.
    pub(super) fn new(jobs: &[(Job, i64)]) -> Self {
        let params: Vec<JobParams<'_>> = jobs.iter().map(|(job, _)| JobParams::new(job)).collect();
        JobColumns {
            ids: params.iter().map(|p| p.id.clone()).collect(),
            names: params.iter().map(|p| p.job.spec.name.clone()).collect(),
            descriptions: params
                .iter()
                .map(|p| p.job.spec.description.clone())
                .collect(),
            schedule_times: params.iter().map(|p| p.schedule_time).collect(),
            created_ats: params.iter().map(|p| p.created_at).collect(),
            updated_ats: params.iter().map(|p| p.updated_at).collect(),
            statuses: params.iter().map(|p| p.status).collect(),
            job_types: params.iter().map(|p| p.job_type).collect(),
            job_datas: params.iter().map(|p| p.job.spec.job_data.clone()).collect(),
            fire_tokens: params.iter().map(|p| p.job.fire_token).collect(),
            versions: params.iter().map(|p| p.job.version).collect(),
            pending_creates: params.iter().map(|p| p.job.pending.create).collect(),
            pending_updates: params.iter().map(|p| p.job.pending.update).collect(),
            pending_runs: params.iter().map(|p| p.job.pending.run).collect(),
            trace_parents: params.iter().map(|p| p.job.trace_parent.clone()).collect(),
            recurrences: params.iter().map(|p| p.recurrence.clone()).collect(),
            armed: params.iter().map(|p| p.armed).collect(),
            client_keys: params.iter().map(|p| p.job.client_key.clone()).collect(),
            attempts: params.iter().map(|p| p.attempts.clone()).collect(),
            pending_dead_letters: params.iter().map(|p| p.job.pending.dead_letter).collect(),
            pending_deletes: params.iter().map(|p| p.job.pending.delete).collect(),
            expected: jobs.iter().map(|(_, version)| *version).collect(),
        }
    }

    /// The arrays in the order of [`COLUMNS`], then the expected versions
    /// ($1 to $22).
    pub(super) fn as_params(&self) -> [&(dyn ToSql + Sync); 22] {
        [
            &self.ids,
            &self.names,
            &self.descriptions,
            &self.schedule_times,
            &self.created_ats,
            &self.updated_ats,
            &self.statuses,
            &self.job_types,
            &self.job_datas,
            &self.fire_tokens,
            &self.versions,
            &self.pending_creates,
            &self.pending_updates,
            &self.pending_runs,
            &self.trace_parents,
            &self.recurrences,
            &self.armed,
            &self.client_keys,
            &self.attempts,
            &self.pending_dead_letters,
            &self.pending_deletes,
            &self.expected,
        ]
    }
}

/// `(id, number)` pairs (a firing's fire token, a job's version) as the
/// two arrays a batch statement binds: `$1::bytea[]` and `$2::bigint[]`.
pub(super) struct IdArrays {
    bytes: Vec<[u8; 12]>,
    /// The numbers, in the order of the ids.
    pub(super) numbers: Vec<i64>,
}

impl IdArrays {
    pub(super) fn new(pairs: &[(JobId, i64)]) -> Self {
        let (bytes, numbers) = pairs.iter().map(|(id, n)| (id.bytes(), *n)).unzip();
        IdArrays { bytes, numbers }
    }

    /// The ids, as the statement binds them.
    pub(super) fn ids(&self) -> Vec<&[u8]> {
        self.bytes.iter().map(|b| b.as_slice()).collect()
    }
}

/// The id of a row, or why it is not one.
pub(super) fn id_from_row(row: &Row) -> Result<JobId, Unreadable> {
    let bytes: &[u8] = row
        .try_get("id")
        .map_err(|e| Unreadable::without_id(format!("id: {e}")))?;
    let bytes = <[u8; 12]>::try_from(bytes)
        .map_err(|_| Unreadable::without_id(format!("id of {} bytes, not 12", bytes.len())))?;
    Ok(JobId::from_bytes(bytes))
}

/// One column of the row of job `id`, or why it cannot be read.
pub(super) fn column<'r, T: FromSql<'r>>(
    row: &'r Row,
    id: JobId,
    name: &str,
) -> Result<T, Unreadable> {
    row.try_get(name)
        .map_err(|e| Unreadable::job(id, format!("{name}: {e}")))
}

/// Reads a row of [`COLUMNS`] back as a job.
pub(super) fn job_from_row(row: &Row) -> Result<Job, Unreadable> {
    let id = id_from_row(row)?;
    let status: i16 = column(row, id, "status")?;
    let job_type: i16 = column(row, id, "job_type")?;
    Ok(Job {
        id,
        spec: JobSpec {
            name: column(row, id, "name")?,
            description: column(row, id, "description")?,
            schedule_time: column(row, id, "schedule_time")?,
            job_type: JobType::from_i32(job_type.into())
                .ok_or_else(|| Unreadable::job(id, format!("job_type {job_type}")))?,
            job_data: column(row, id, "job_data")?,
        },
        created_at: column(row, id, "created_at")?,
        updated_at: column(row, id, "updated_at")?,
        status: JobStatus::from_i32(status.into())
            .ok_or_else(|| Unreadable::job(id, format!("status {status}")))?,
        fire_token: column(row, id, "scheduled_key")?,
        version: column(row, id, "version")?,
        pending: PendingEvents {
            create: column(row, id, "pending_create")?,
            update: column(row, id, "pending_update")?,
            run: column(row, id, "pending_run")?,
            dead_letter: column(row, id, "pending_dead_letter")?,
            delete: column(row, id, "pending_delete")?,
        },
        trace_parent: column(row, id, "trace_parent")?,
        recurrence: column::<Option<String>>(row, id, "recurrence")?
            .map(|text| Recurrence::from_stored(&text).map(Box::new))
            .transpose()
            .map_err(|e| Unreadable::job(id, e.to_string()))?,
        client_key: column(row, id, "client_key")?,
        attempts: Attempts::read(column::<Option<&str>>(row, id, "attempts")?)
            .map_err(|e| Unreadable::job(id, e.to_string()))?,
    })
}

/// Rows of [`COLUMNS`] that must all be jobs (the rows a claim changed).
pub(super) fn jobs_from_rows(rows: &[Row]) -> Result<Vec<Job>, StoreError> {
    rows.iter()
        .map(|row| job_from_row(row).map_err(StoreError::from))
        .collect()
}

/// Rows of [`COLUMNS`] met by a scan: the jobs, and each row that is not one.
pub(super) fn scan_rows(rows: &[Row]) -> Scan<Job> {
    rows.iter().map(job_from_row).collect()
}
