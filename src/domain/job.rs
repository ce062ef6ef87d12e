//! The job model and its validation rules.

use chrono::{DateTime, SubsecRound, Utc};

use super::{Error, Field, recurrence::Recurrence, retry::Attempts};

/// The current time at the precision the store keeps (milliseconds), so that a
/// job read back equals the job written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A job's identity: a MongoDB ObjectId, shown to clients as 24 hex digits.
pub type JobId = bson::oid::ObjectId;

/// Longest accepted job name, in bytes.
pub const NAME_MAX_BYTES: usize = 256;
/// Longest accepted description, in bytes.
pub const DESCRIPTION_MAX_BYTES: usize = 4 * 1024;
/// Largest accepted job data (the executor's payload), in bytes.
pub const JOB_DATA_MAX_BYTES: usize = 64 * 1024;

/// Where a job is in its life. The numbers are the wire contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Not set; never stored by this service.
    Unknown = 0,
    /// Accepted but not yet scheduled; kept for wire compatibility.
    Pending = 1,
    /// Waiting for its schedule time.
    Scheduled = 2,
    /// Fired: the run event was (or is being) published; waiting for a result.
    Running = 3,
    /// An executor reported success.
    Succeeded = 4,
    /// An executor reported failure.
    Failed = 5,
}

impl JobStatus {
    /// The wire and storage number of this status.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The status with this number, if any.
    pub fn from_i32(value: i32) -> Option<Self> {
        Some(match value {
            0 => JobStatus::Unknown,
            1 => JobStatus::Pending,
            2 => JobStatus::Scheduled,
            3 => JobStatus::Running,
            4 => JobStatus::Succeeded,
            5 => JobStatus::Failed,
            _ => return None,
        })
    }
}

/// The outcome an executor reports for a run: the two final statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    /// The run succeeded.
    Succeeded,
    /// The run failed.
    Failed,
}

impl ResultStatus {
    /// The status a job takes when this result is stored.
    pub fn job_status(self) -> JobStatus {
        match self {
            ResultStatus::Succeeded => JobStatus::Succeeded,
            ResultStatus::Failed => JobStatus::Failed,
        }
    }

    /// The result with this status number; only 4 and 5 are results.
    pub fn from_i32(value: i32) -> Option<Self> {
        match JobStatus::from_i32(value)? {
            JobStatus::Succeeded => Some(ResultStatus::Succeeded),
            JobStatus::Failed => Some(ResultStatus::Failed),
            _ => None,
        }
    }
}

/// What kind of executor runs the job. The numbers are the wire contract's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobType {
    /// Sent by the email executor.
    Email = 0,
    /// Sent by the SMS executor.
    Sms = 1,
}

impl JobType {
    /// The wire and storage number of this type.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The type with this number, if any.
    pub fn from_i32(value: i32) -> Option<Self> {
        match value {
            0 => Some(JobType::Email),
            1 => Some(JobType::Sms),
            _ => None,
        }
    }
}

/// The fields a client chooses, validated: what CreateJob and UpdateJob carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Human-readable name; not empty, no control character.
    pub name: String,
    /// Free text; may be empty; no control character but tab and line breaks.
    pub description: String,
    /// When the job is due. A time in the past means "now".
    pub schedule_time: DateTime<Utc>,
    /// Which executor runs it.
    pub job_type: JobType,
    /// The executor's payload (for email, a JSON document); not empty, no NUL.
    pub job_data: String,
}

impl JobSpec {
    /// Checks the rules every stored job obeys and returns the spec unchanged
    /// when they hold, or an error naming the first field that breaks one.
    pub fn validated(self) -> Result<Self, Error> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid(Field::Name, "must not be empty"));
        }
        check_len(Field::Name, &self.name, NAME_MAX_BYTES)?;
        check_chars(Field::Name, &self.name, Refused::Controls)?;
        check_len(Field::Description, &self.description, DESCRIPTION_MAX_BYTES)?;
        check_chars(
            Field::Description,
            &self.description,
            Refused::ControlsButTabsAndLineBreaks,
        )?;
        if self.job_data.trim().is_empty() {
            return Err(Error::invalid(Field::JobData, "must not be empty"));
        }
        check_len(Field::JobData, &self.job_data, JOB_DATA_MAX_BYTES)?;
        check_chars(Field::JobData, &self.job_data, Refused::Nul)?;
        Ok(self)
    }
}

/// Which characters a text field refuses. Control characters are Unicode
/// category Cc (U+0000-U+001F and U+007F-U+009F): invisible in listings and
/// logs, and NUL cannot be stored at all in PostgreSQL's `text`, so that a
/// job one store keeps is a job every store keeps.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// Every control character (`name`).
    Controls,
    /// Every control character but tab, line feed and carriage return
    /// (`description`: a description may run over several lines).
    ControlsButTabsAndLineBreaks,
    /// NUL only (`job_data`: the executor's payload is passed on as it is,
    /// except for what no store can keep).
    Nul,
}

impl Refused {
    fn refuses(self, c: char) -> bool {
        match self {
            Refused::Controls => c.is_control(),
            Refused::ControlsButTabsAndLineBreaks => {
                c.is_control() && !matches!(c, '\t' | '\n' | '\r')
            }
            Refused::Nul => c == '\0',
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refused::Controls => "control characters are not accepted",
            Refused::ControlsButTabsAndLineBreaks => {
                "control characters other than tab, line feed and carriage return are not accepted"
            }
            Refused::Nul => "NUL cannot be stored",
        }
    }
}

/// The first character of `value` that `rule` refuses, named by its code
/// point and byte offset (the value itself is not repeated).
fn check_chars(field: Field, value: &str, rule: Refused) -> Result<(), Error> {
    match value.char_indices().find(|(_, c)| rule.refuses(*c)) {
        Some((at, c)) => Err(Error::invalid(
            field,
            format!(
                "contains U+{:04X} at byte {at}: {}",
                u32::from(c),
                rule.reason()
            ),
        )),
        None => Ok(()),
    }
}

pub(super) fn check_len(field: Field, value: &str, max: usize) -> Result<(), Error> {
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, at most {max} are accepted", value.len()),
        ));
    }
    Ok(())
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its identity.
    pub id: JobId,
    /// The fields the client chose.
    pub spec: JobSpec,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed (fields or status).
    pub updated_at: DateTime<Utc>,
    /// Where it is in its life.
    pub status: JobStatus,
    /// The fire token: a fresh random number each time the job is (re)scheduled.
    /// A timer entry carries the key it was armed with, and a firing only claims
    /// the job if the key still matches, so a stale timer can never fire a job
    /// that was updated since. Consumers use (id, key) to drop duplicate runs.
    pub fire_token: i64,
    /// Incremented by every change, so that a conditional write ("only if
    /// still at version v") detects any change made since the read.
    pub version: i64,
    /// Events decided but not yet acknowledged by the broker: the outbox,
    /// stored in the job itself so that it changes atomically with the job.
    pub pending: PendingEvents,
    /// The W3C `traceparent` of the call that last scheduled it (when traces
    /// are exported), so that its firing, run and result join that trace.
    pub trace_parent: Option<String>,
    /// Its recurrence, for a recurring job; `None` for a one-shot job (every
    /// job an article client creates).
    pub recurrence: Option<Box<Recurrence>>,
    /// The key a client chose to make its creation idempotent, unique
    /// among the jobs (see [`ClientKey`]).
    pub client_key: Option<String>,
    /// Its retry policy and where it is in its attempts; `None` while it
    /// has not failed and follows the service's default policy (most jobs:
    /// a pointer's room, see [`Attempts`]).
    pub attempts: Option<Box<Attempts>>,
}

/// Longest accepted client key, in bytes.
pub const CLIENT_KEY_MAX_BYTES: usize = 128;

/// A validated client key: 1 to [`CLIENT_KEY_MAX_BYTES`] bytes, no control
/// character. A CreateJob repeated with the same key returns the job the
/// first one created, across restarts and replicas.
pub struct ClientKey;

impl ClientKey {
    /// `key` if it obeys the rules, else an error on [`Field::ClientKey`].
    pub fn validated(key: String) -> Result<String, Error> {
        if key.is_empty() {
            return Err(Error::invalid(
                Field::ClientKey,
                "must not be empty when set",
            ));
        }
        check_len(Field::ClientKey, &key, CLIENT_KEY_MAX_BYTES)?;
        check_chars(Field::ClientKey, &key, Refused::Controls)?;
        Ok(key)
    }
}

/// Which of a job's events still have to be published. They are published in
/// the order create, update, run, which is the order of a job's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PendingEvents {
    /// A create event is owed.
    pub create: bool,
    /// An update event is owed.
    pub update: bool,
    /// A run event is owed.
    pub run: bool,
    /// A dead-letter event is owed (the job's run failed for good).
    pub dead_letter: bool,
    /// The job is being removed by `JOB_RETENTION` (see
    /// [`Job::retired`]): its delete event is owed, and once it is
    /// published the job is deleted instead of its outbox cleared.
    pub delete: bool,
}

impl PendingEvents {
    /// Nothing owed.
    pub const NONE: PendingEvents = PendingEvents {
        create: false,
        update: false,
        run: false,
        dead_letter: false,
        delete: false,
    };

    /// Whether any event is owed.
    pub fn any(self) -> bool {
        self.create || self.update || self.run || self.dead_letter || self.delete
    }
}

impl Job {
    /// A new job, SCHEDULED, created now, owing its create event.
    pub fn new_scheduled(spec: JobSpec, now: DateTime<Utc>) -> Self {
        Job {
            id: JobId::new(),
            spec,
            created_at: now,
            updated_at: now,
            status: JobStatus::Scheduled,
            fire_token: new_fire_token(),
            version: 0,
            pending: PendingEvents {
                create: true,
                ..PendingEvents::NONE
            },
            trace_parent: None,
            recurrence: None,
            client_key: None,
            attempts: None,
        }
    }

    /// The fire token of the job's current firing, its events'
    /// `ScheduledKey`: a recurring job's run in flight's token (the token
    /// its claim consumed) when it has one, else the job's fire token.
    pub fn current_fire_token(&self) -> i64 {
        self.recurrence
            .as_ref()
            .and_then(|rec| rec.run.as_ref())
            .map_or(self.fire_token, |run| run.token)
    }

    /// When the current firing was due: a recurring job's run in flight's
    /// occurrence plus its jitter (for a triggered run, about when it was
    /// triggered; for a retry, when the retry was due), else the schedule
    /// time.
    pub fn firing_due(&self) -> DateTime<Utc> {
        self.recurrence
            .as_ref()
            .and_then(|rec| {
                let run = rec.run.as_ref()?;
                let jitter = rec.spec.timing.jitter().delay(&self.id, run.occurrence);
                Some(run.retry_at.unwrap_or(run.occurrence + jitter))
            })
            .unwrap_or(self.spec.schedule_time)
    }

    /// Whether the timer should hold this job: a one-shot job while
    /// SCHEDULED; a recurring job while it has an occurrence to fire
    /// (SCHEDULED, or RUNNING with the next occurrence armed), not paused
    /// and not held for its run's end.
    pub fn is_armable(&self) -> bool {
        match &self.recurrence {
            None => self.status == JobStatus::Scheduled,
            Some(rec) => {
                rec.is_armable() && matches!(self.status, JobStatus::Scheduled | JobStatus::Running)
            }
        }
    }

    /// This job with its client fields replaced and scheduled again (a new
    /// fire token, the next version, its attempts afresh under its policy),
    /// owing an update event.
    pub fn rescheduled(&self, spec: JobSpec, now: DateTime<Utc>) -> Self {
        Job {
            spec,
            attempts: Attempts::fresh(self.retry_policy()),
            updated_at: now,
            status: JobStatus::Scheduled,
            fire_token: new_fire_token(),
            version: self.version + 1,
            pending: PendingEvents {
                update: true,
                ..self.pending
            },
            ..self.clone()
        }
    }

    /// This job claimed for firing, if it is SCHEDULED under `fire_token`:
    /// RUNNING, at the next version, owing its run event. The stores that
    /// compute claims in memory (in-memory, embedded) apply this; a
    /// recurring job's claim also advances it to its next occurrence (see
    /// `Job::claimed_occurrence`).
    pub fn claimed(&self, fire_token: i64, now: DateTime<Utc>) -> Option<Self> {
        if self.recurrence.is_some() {
            return self.claimed_occurrence(fire_token, now);
        }
        (self.status == JobStatus::Scheduled && self.fire_token == fire_token).then(|| Job {
            status: JobStatus::Running,
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                run: true,
                ..self.pending
            },
            ..self.clone()
        })
    }

    /// This job holding an executor's result, at the next version (the
    /// caller checks that it was RUNNING). Its run event reached the
    /// executor that reported: still owed only because its clear had not
    /// landed, it must not go out again for a finished job.
    pub fn finished(&self, result: ResultStatus, now: DateTime<Utc>) -> Self {
        Job {
            status: result.job_status(),
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                run: false,
                ..self.pending
            },
            ..self.clone()
        }
    }

    /// This job scheduled again under a new fire token, keeping its fields
    /// (a timed-out run retried), owing an update event.
    pub fn retried(&self, now: DateTime<Utc>) -> Self {
        Job {
            fire_token: new_fire_token(),
            ..self.with_status(JobStatus::Scheduled, now)
        }
    }

    /// This job moved to `status` by the service itself (a misfire skipped, a
    /// run timed out), owing an update event that says so.
    pub fn with_status(&self, status: JobStatus, now: DateTime<Utc>) -> Self {
        Job {
            status,
            updated_at: now,
            version: self.version + 1,
            pending: PendingEvents {
                update: true,
                ..self.pending
            },
            ..self.clone()
        }
    }
}

/// A fresh fire token: random, positive, so that it reads well in JSON and logs.
pub fn new_fire_token() -> i64 {
    rand::random::<i64>() & i64::MAX
}

/// A validated request for one page of the job list (pages are 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The page number, from 1.
    pub page: u64,
    /// Jobs per page, from 1 to the configured maximum.
    pub size: u64,
}

impl PageRequest {
    /// Validates a page request. `page` and `size` must be at least 1; `size`
    /// must not exceed `max_size`.
    pub fn new(page: i64, size: i64, max_size: u64) -> Result<Self, Error> {
        let page = u64::try_from(page)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| {
                Error::invalid(Field::Page, format!("must be at least 1, got {page}"))
            })?;
        let size = u64::try_from(size)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| {
                Error::invalid(Field::Size, format!("must be at least 1, got {size}"))
            })?;
        if size > max_size {
            return Err(Error::invalid(
                Field::Size,
                format!("must be at most {max_size}, got {size}"),
            ));
        }
        Ok(PageRequest { page, size })
    }

    /// How many jobs come before this page.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.size)
    }

    /// Number of pages needed for `total` jobs.
    pub fn total_pages(&self, total: u64) -> u64 {
        total.div_ceil(self.size)
    }

    /// Whether jobs remain after this page.
    pub fn has_more(&self, total: u64) -> bool {
        self.page.saturating_mul(self.size) < total
    }
}

#[cfg(test)]
mod tests;
