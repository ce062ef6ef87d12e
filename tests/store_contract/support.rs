//! What every area of the contract uses: the names it needs from the crate,
//! the stores, and the test jobs. The areas name the crate only through
//! this module, so that another host (a unit-test module inside `src/`) can
//! include them with `#[path]` and a `support` of its own.

pub use std::{collections::HashMap, sync::Arc};

pub use chrono::{DateTime, Duration as TimeDelta, SubsecRound, Utc};
pub use scheduler_service::{
    domain::{Job, JobId, JobSpec, JobStatus, JobType, PendingEvents, ResultStatus},
    store::{DueJob, JobDB, ResultOutcome, StoreError},
};

pub use super::{
    jobs::*,
    stores::{Kind, Store},
};
