//! How many jobs there are by status, type, schedule kind and paused: the
//! counts of the web console's overview, in one pass over the store
//! instead of one filtered listing each (on the embedded store, each of
//! those reads every job). [`JobTally::add`] is the rule, on the facets of
//! [`super::JobFilter`]; the stores that query a server say the same in
//! their query language, and the store contract suite holds them to it.

use super::{Job, JobFacets, JobStatus, JobType};

/// Jobs in all and by facet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTally {
    /// Every job.
    pub total: u64,
    /// PENDING jobs (kept for wire compatibility; never stored here).
    pub pending: u64,
    /// SCHEDULED jobs.
    pub scheduled: u64,
    /// RUNNING jobs.
    pub running: u64,
    /// SUCCEEDED jobs.
    pub succeeded: u64,
    /// FAILED jobs.
    pub failed: u64,
    /// Email jobs.
    pub email: u64,
    /// SMS jobs.
    pub sms: u64,
    /// Recurring jobs.
    pub recurring: u64,
    /// Paused recurring jobs.
    pub paused: u64,
}

impl JobTally {
    /// Counts `job`.
    pub fn add(&mut self, job: &Job) {
        self.add_facets(&JobFacets::of(job));
    }

    /// Counts a job with these facets.
    pub fn add_facets(&mut self, job: &JobFacets<'_>) {
        self.total += 1;
        match job.status {
            JobStatus::Unknown => {}
            JobStatus::Pending => self.pending += 1,
            JobStatus::Scheduled => self.scheduled += 1,
            JobStatus::Running => self.running += 1,
            JobStatus::Succeeded => self.succeeded += 1,
            JobStatus::Failed => self.failed += 1,
        }
        match job.job_type {
            JobType::Email => self.email += 1,
            JobType::Sms => self.sms += 1,
        }
        self.recurring += u64::from(job.recurring);
        self.paused += u64::from(job.paused);
    }

    /// The tally of `jobs`.
    pub fn of<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> JobTally {
        let mut tally = JobTally::default();
        for job in jobs {
            tally.add(job);
        }
        tally
    }
}
