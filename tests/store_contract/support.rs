//! What every area of the contract uses: the names it needs from the crate,
//! the stores, and the test jobs. The areas name the crate only through
//! this module, so that another host (a unit-test module inside `src/`) can
//! include them with `#[path]` and a `support` of its own.

pub use std::{collections::HashMap, sync::Arc};

pub use chrono::{DateTime, Duration as TimeDelta, SubsecRound, Utc};
pub use scheduler_service::{
    domain::{
        Job, JobFilter, JobId, JobSpec, JobStatus, JobTally, JobType, PendingEvents, ResultStatus,
        ScheduleKind,
        history::{self, Run, RunCause, RunOutcome},
        report::{ResultOutcome, RunReport},
        retry::{Attempts, RetryPolicy},
        shard::{ShardCount, Shards},
    },
    store::{
        self, DueJob, JobDB, JobsPage, RunRetention, Scan, ShardLeases, StoreError, Unreadable,
        leases::Renewal,
    },
};

pub use super::{
    jobs::*,
    stores::{Kind, Store},
};

/// The jobs of a scan that must have read every document it met: every
/// area but `corrupt` stores only readable jobs.
pub trait AllReadable<T> {
    /// The jobs found; fails the case if any document was unreadable.
    fn all_readable(self) -> Vec<T>;
}

impl<T> AllReadable<T> for Scan<T> {
    fn all_readable(self) -> Vec<T> {
        assert!(
            self.unreadable.is_empty(),
            "unreadable documents: {:?}",
            self.unreadable
        );
        self.found
    }
}
