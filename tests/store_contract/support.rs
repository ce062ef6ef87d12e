//! What every area of the contract uses: the names it needs from the crate,
//! and builders of test jobs. The areas name the crate only through this
//! module, so that another host (a unit-test module inside `src/`) can
//! include them with `#[path]` and a `support` of its own.

pub use std::{collections::HashMap, sync::Arc};

pub use chrono::{DateTime, Duration as TimeDelta, SubsecRound, Utc};
pub use scheduler_service::{
    domain::{Job, JobId, JobSpec, JobStatus, JobType, PageRequest, PendingEvents, ResultStatus},
    store::{DueJob, JobDB, ResultOutcome, StoreError},
};

pub use super::stores::{Kind, Store};

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

/// Only the create event owed.
pub const CREATE: PendingEvents = PendingEvents {
    create: true,
    update: false,
    run: false,
};
/// Only the update event owed.
pub const UPDATE: PendingEvents = PendingEvents {
    create: false,
    update: true,
    run: false,
};
/// Only the run event owed.
pub const RUN: PendingEvents = PendingEvents {
    create: false,
    update: false,
    run: true,
};
/// Every event owed.
pub const ALL: PendingEvents = PendingEvents {
    create: true,
    update: true,
    run: true,
};

/// Stores each of `jobs`.
pub async fn insert_all(db: &dyn JobDB, jobs: &[Job]) {
    for job in jobs {
        db.insert(job).await.expect("insert");
    }
}

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
