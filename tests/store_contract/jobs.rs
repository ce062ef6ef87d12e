//! Test jobs for the store tests, and helpers to store and compare them:
//! used by the store contract (through `support`) and by
//! `tests/postgres_store.rs` and `tests/corrupt.rs`, which include this file.

use chrono::{DateTime, Utc};
use scheduler_service::domain::{
    Job, JobId, JobSpec, JobStatus, JobType, PageRequest, PendingEvents,
};

/// The current time at the stores' precision (milliseconds).
pub fn now() -> DateTime<Utc> {
    scheduler_service::domain::now()
}

/// A page of the job list (sizes up to 100).
pub fn page(page: i64, size: i64) -> PageRequest {
    PageRequest::new(page, size, 100).expect("a valid page")
}

/// The fields a client chooses, named `name`, due at `schedule_time`.
pub fn spec(name: &str, schedule_time: DateTime<Utc>) -> JobSpec {
    JobSpec {
        name: name.to_owned(),
        description: format!("description of {name}"),
        schedule_time,
        job_type: JobType::Email,
        job_data: r#"{"to":"someone@example.com"}"#.to_owned(),
    }
}

/// A new SCHEDULED job created now, due at `schedule_time`, owing its create event.
pub fn job(name: &str, schedule_time: DateTime<Utc>) -> Job {
    Job::new_scheduled(spec(name, schedule_time), now())
}

/// A job like [`job`] with the given status.
pub fn job_in(name: &str, status: JobStatus, schedule_time: DateTime<Utc>) -> Job {
    Job {
        status,
        ..job(name, schedule_time)
    }
}

/// What a job owes: its create, update, run and dead-letter events.
const fn owing(create: bool, update: bool, run: bool, dead_letter: bool) -> PendingEvents {
    PendingEvents {
        create,
        update,
        run,
        dead_letter,
        delete: false,
    }
}

/// Only the create event owed.
pub const CREATE: PendingEvents = owing(true, false, false, false);
/// Only the update event owed.
pub const UPDATE: PendingEvents = owing(false, true, false, false);
/// Only the run event owed.
pub const RUN: PendingEvents = owing(false, false, true, false);
/// Only the dead-letter event owed.
pub const DEAD_LETTER: PendingEvents = owing(false, false, false, true);
/// Every event owed (a retired job's delete event too).
pub const ALL: PendingEvents = PendingEvents {
    delete: true,
    ..owing(true, true, true, true)
};

/// The ids of `jobs`, sorted: for answers in no particular order.
pub fn sorted_ids<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Vec<JobId> {
    let mut ids: Vec<JobId> = jobs.into_iter().map(|j| j.id).collect();
    ids.sort();
    ids
}

/// `jobs` sorted by id: to compare an answer whose order is not the rule
/// under test.
pub fn by_id<T: Clone>(jobs: &[T], id: impl Fn(&T) -> JobId) -> Vec<T> {
    let mut sorted = jobs.to_vec();
    sorted.sort_by_key(|j| id(j));
    sorted
}
