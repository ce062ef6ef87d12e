//! Which jobs a listing shows: the filters of ListJobs (and of the HTTP
//! API's `GET /v1/jobs`). Every filter set must match; none set shows
//! every job. [`JobFilter::admits`] is the rule; the stores that query a
//! server say the same in their query language, and the store contract
//! suite holds them to it.

use super::{Error, Field, Job, JobStatus, JobType, job::NAME_MAX_BYTES};

/// One-shot or recurring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// Fires once, at its schedule time.
    Once,
    /// Fires on a recurrence.
    Recurring,
}

impl std::str::FromStr for ScheduleKind {
    type Err = Error;

    /// `once` or `recurring`.
    fn from_str(word: &str) -> Result<Self, Error> {
        match word {
            "once" => Ok(ScheduleKind::Once),
            "recurring" => Ok(ScheduleKind::Recurring),
            other => Err(Error::invalid(
                Field::ScheduleKind,
                format!("must be once or recurring, got {}", super::Excerpt(other)),
            )),
        }
    }
}

/// Which jobs a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Only one-shot or only recurring jobs.
    pub kind: Option<ScheduleKind>,
    /// `true`: only paused recurring jobs; `false`: only jobs not paused
    /// (one-shot jobs included).
    pub paused: Option<bool>,
    /// Only jobs whose name contains this text, ignoring case (of ASCII
    /// letters; a store on a server may fold other letters too).
    name: Option<String>,
}

impl JobFilter {
    /// A filter on these fields; a `name` longer than any name, or with a
    /// control character, is refused.
    pub fn new(
        status: Option<JobStatus>,
        job_type: Option<JobType>,
        kind: Option<ScheduleKind>,
        paused: Option<bool>,
        name: Option<String>,
    ) -> Result<JobFilter, Error> {
        let name = name.filter(|name| !name.is_empty());
        if let Some(name) = &name {
            if name.len() > NAME_MAX_BYTES {
                let reason = format!("a name filter is at most {NAME_MAX_BYTES} bytes");
                return Err(Error::invalid(Field::NameContains, reason));
            }
            if name.chars().any(char::is_control) {
                return Err(Error::invalid(
                    Field::NameContains,
                    "a name filter has no control characters",
                ));
            }
        }
        Ok(JobFilter {
            name,
            ..JobFilter::facet(status, job_type, kind, paused)
        })
    }

    /// A filter on these facets, without a name (what a tally counts by).
    pub fn facet(
        status: Option<JobStatus>,
        job_type: Option<JobType>,
        kind: Option<ScheduleKind>,
        paused: Option<bool>,
    ) -> JobFilter {
        JobFilter {
            status,
            job_type,
            kind,
            paused,
            name: None,
        }
    }

    /// The text a name must contain, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == JobFilter::default()
    }

    /// Whether `job` passes every filter set.
    pub fn admits(&self, job: &Job) -> bool {
        self.admits_facets(&JobFacets::of(job))
    }

    /// Whether a job with these facets passes every filter set: the rule
    /// (a store that reads only the facets of each job it scans uses it
    /// directly).
    pub fn admits_facets(&self, job: &JobFacets<'_>) -> bool {
        let kind = if job.recurring {
            ScheduleKind::Recurring
        } else {
            ScheduleKind::Once
        };
        self.status.is_none_or(|status| status == job.status)
            && self
                .job_type
                .is_none_or(|job_type| job_type == job.job_type)
            && self.kind.is_none_or(|wanted| wanted == kind)
            && self.paused.is_none_or(|wanted| wanted == job.paused)
            && self.name.as_deref().is_none_or(|name| {
                job.name
                    .to_ascii_lowercase()
                    .contains(&name.to_ascii_lowercase())
            })
    }
}

/// What the filters (and the tally) look at in a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacets<'a> {
    /// Its status.
    pub status: JobStatus,
    /// Its type.
    pub job_type: JobType,
    /// Whether it recurs.
    pub recurring: bool,
    /// Whether it is a paused recurring job.
    pub paused: bool,
    /// Its name.
    pub name: std::borrow::Cow<'a, str>,
}

impl<'a> JobFacets<'a> {
    /// The facets of `job`.
    pub fn of(job: &'a Job) -> JobFacets<'a> {
        JobFacets {
            status: job.status,
            job_type: job.spec.job_type,
            recurring: job.recurrence.is_some(),
            paused: job.recurrence.as_ref().is_some_and(|r| r.paused),
            name: std::borrow::Cow::Borrowed(&job.spec.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, Utc};

    use super::*;
    use crate::domain::{JobSpec, recurrence::RecurrenceSpec};

    fn spec(name: &str) -> JobSpec {
        JobSpec {
            name: name.into(),
            description: String::new(),
            schedule_time: Utc::now() + TimeDelta::hours(1),
            job_type: JobType::Email,
            job_data: "{}".into(),
        }
    }

    fn every_minute(name: &str) -> Job {
        Job::new_recurring(spec(name), RecurrenceSpec::every_minute(), Utc::now())
            .expect("recurring job")
    }

    fn paused(paused: Option<bool>, kind: Option<ScheduleKind>) -> JobFilter {
        JobFilter::new(None, None, kind, paused, None).expect("a valid filter")
    }

    #[test]
    fn paused_admits_paused_recurring_jobs_and_its_negation_every_other() {
        let once = Job::new_scheduled(spec("once"), Utc::now());
        let active = every_minute("active");
        let held = every_minute("held")
            .with_paused(true, Utc::now())
            .expect("pausable");
        let admitted = |filter: &JobFilter| {
            [&once, &active, &held]
                .into_iter()
                .filter(|job| filter.admits(job))
                .map(|job| job.spec.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(admitted(&paused(None, None)), ["once", "active", "held"]);
        assert_eq!(admitted(&paused(Some(true), None)), ["held"]);
        assert_eq!(admitted(&paused(Some(false), None)), ["once", "active"]);
        let recurring = Some(ScheduleKind::Recurring);
        assert_eq!(admitted(&paused(Some(false), recurring)), ["active"]);
        assert!(admitted(&paused(Some(true), Some(ScheduleKind::Once))).is_empty());
        assert!(!paused(Some(false), None).is_empty());
    }
}
