//! The calls that only recurring jobs answer (pause, resume, trigger,
//! preview), idempotent creation by client key, and re-arming a recurring
//! job after its run's result. The claims and results themselves are in
//! [`crate::domain::recurrence`] and the stores.

use std::iter;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use tracing::Span;

use super::{JobService, UPDATE_ATTEMPTS};
use crate::domain::{
    Error, Field, Job, JobId, JobSpec,
    recurrence::RecurrenceSpec,
    retry::RetryPolicy,
    schedule::{Occurrence, Timing},
};

/// The most occurrences a preview lists.
pub const PREVIEW_MAX: usize = 1000;

/// A schedule's next occurrences and the schedule in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulePreview {
    /// The schedule, its zone and bounds in English ([`Timing::describe`]).
    pub description: String,
    /// The occurrences, in time order.
    pub occurrences: Vec<Occurrence>,
}

impl SchedulePreview {
    fn of(timing: &Timing, occurrences: Vec<Occurrence>) -> SchedulePreview {
        SchedulePreview {
            description: timing.describe(),
            occurrences,
        }
    }
}

/// What a creation asks for: the article's fields, and the additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The article's fields (for a recurring job, `schedule_time` is not
    /// used: its first occurrence decides).
    pub spec: JobSpec,
    /// For a recurring job: its timing and policies.
    pub recurrence: Option<RecurrenceSpec>,
    /// The key that makes the creation idempotent.
    pub client_key: Option<String>,
    /// A one-shot job's own retry policy (`None`: the service's default).
    pub retry: Option<RetryPolicy>,
    /// When the request was read, if its adapter read the clock for it
    /// (the default anchor of an interval): the creation's time, so that
    /// an interval anchored at it has its first occurrence then. `None`:
    /// the service's clock when it creates the job.
    pub requested_at: Option<DateTime<Utc>>,
}

impl NewJob {
    /// A one-shot job without a client key: the article's CreateJob.
    pub fn one_shot(spec: JobSpec) -> Self {
        NewJob {
            spec,
            recurrence: None,
            client_key: None,
            retry: None,
            requested_at: None,
        }
    }

    /// Whether `job` is what this request would create: the same fields
    /// (the same due time for a one-shot job, the same timing and policies
    /// for a recurring one).
    fn made(&self, job: &Job) -> bool {
        let same_spec = job.spec.name == self.spec.name
            && job.spec.description == self.spec.description
            && job.spec.job_type == self.spec.job_type
            && job.spec.job_data == self.spec.job_data;
        same_spec
            && job.retry_policy() == self.retry
            && match (&self.recurrence, &job.recurrence) {
                (None, None) => job.spec.schedule_time == self.spec.schedule_time.trunc_subsecs(3),
                (Some(asked), Some(made)) => *asked == made.spec,
                _ => false,
            }
    }
}

impl JobService {
    /// The job an earlier creation with `new`'s client key made, if any: the
    /// same job when the content is the same, else [`Error::AlreadyExists`].
    pub(super) async fn created_with_key(&self, new: &NewJob) -> Result<Option<Job>, Error> {
        let Some(key) = &new.client_key else {
            return Ok(None);
        };
        match self.inner.db.get_by_client_key(key).await? {
            Some(job) if new.made(&job) => Ok(Some(job)),
            Some(job) => Err(Error::AlreadyExists(format!(
                "job {} was created with client_key {key:?} and other content",
                job.id
            ))),
            None => Ok(None),
        }
    }

    /// Pauses (`true`) or resumes a recurring job, with an update event. A
    /// paused job keeps its schedule and is not fired; on resume, the
    /// occurrences missed meanwhile follow its catch-up policy.
    #[tracing::instrument(skip_all, fields(job_id = %id, paused))]
    pub async fn set_paused(&self, id: JobId, paused: bool) -> Result<Job, Error> {
        self.change(id, |job, service| {
            job.with_paused(paused, service.clock().now_ms())
        })
        .await
    }

    /// Starts one extra run of a recurring job now, outside its schedule
    /// (its occurrences do not move); refused while a run is in flight.
    #[tracing::instrument(skip_all, fields(job_id = %id))]
    pub async fn trigger(&self, id: JobId) -> Result<Job, Error> {
        let job = self
            .change(id, |job, service| job.triggered(service.clock().now_ms()))
            .await?;
        self.inner.metrics.job_fired(0, job.attempt());
        Ok(job)
    }

    /// Writes `change(job)` over the job read, conditioned on its version,
    /// again on a fresh read when it changed meanwhile; arms the result and
    /// delivers the events it owes.
    pub(super) async fn change(
        &self,
        id: JobId,
        change: impl Fn(&Job, &JobService) -> Result<Job, Error>,
    ) -> Result<Job, Error> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(id).await?;
            let changed = change(&current, self)?;
            if self.write_if(&current, &changed, None).await? {
                self.arm(&changed);
                self.deliver(&[(&changed, Span::current())]).await;
                return Ok(changed);
            }
        }
        Err(Error::Aborted(id))
    }

    /// The next `count` occurrences of a stored job (from its next one; a
    /// one-shot job's only one while it is due), at most [`PREVIEW_MAX`],
    /// and its schedule in words.
    pub async fn preview_job(&self, id: JobId, count: usize) -> Result<SchedulePreview, Error> {
        check_count(count)?;
        let job = self.get(id).await?;
        let Some(rec) = &job.recurrence else {
            let due = Timing::once(job.spec.schedule_time);
            let occurrences = due.preview(job.spec.schedule_time, 1)?;
            return Ok(SchedulePreview::of(&due, occurrences));
        };
        let timing = &rec.spec.timing;
        let first = rec
            .next
            .and_then(|next| timing.next_after(next - TimeDelta::nanoseconds(1), rec.runs));
        let occurrences = first.map_or_else(Vec::new, |first| {
            iter::once(first)
                .chain(timing.occurrences(first.at, rec.runs + 1))
                .take(count)
                .collect()
        });
        Ok(SchedulePreview::of(timing, occurrences))
    }

    /// The first `count` occurrences of a timing not yet saved, as if it
    /// were created now, at most [`PREVIEW_MAX`], and the timing in words.
    pub fn preview(&self, timing: &Timing, count: usize) -> Result<SchedulePreview, Error> {
        check_count(count)?;
        let occurrences = timing.preview(self.clock().now_ms(), count)?;
        Ok(SchedulePreview::of(timing, occurrences))
    }
}

fn check_count(count: usize) -> Result<(), Error> {
    if (1..=PREVIEW_MAX).contains(&count) {
        Ok(())
    } else {
        Err(Error::invalid(
            Field::Count,
            format!("must be from 1 to {PREVIEW_MAX}, got {count}"),
        ))
    }
}
