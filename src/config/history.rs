//! How much history is kept: the runs of each job, `RUNS_RETENTION`
//! (`<count>,<age>`, default `100,30d`: a job's newest 100 runs, and no
//! finished run older than 30 days), and finished one-shot jobs,
//! `JOB_RETENTION` (an age such as `30d`; unset, the default: kept
//! forever, as in the article). `RETENTION_INTERVAL_SECS` (default 60) is
//! how often the background duty removes what falls out, in bounded
//! batches.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, value, vars};

/// The default runs retention.
const DEFAULT_RUNS_RETENTION: &str = "100,30d";

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Runs kept per job, the newest.
    pub runs_per_job: u32,
    /// No finished run older than this is kept.
    pub run_max_age: Duration,
    /// Finished one-shot jobs older than this are removed with their runs;
    /// `None`: kept forever.
    pub job_retention: Option<Duration>,
    /// How often the retention duty runs.
    pub interval: Duration,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            runs_per_job: 100,
            run_max_age: Duration::from_secs(30 * 24 * 3600),
            job_retention: None,
            interval: Duration::from_secs(60),
        }
    }
}

/// The history's variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct HistoryVars {
    runs_retention: String,
    job_retention: Option<String>,
    #[serde(deserialize_with = "value::seconds")]
    retention_interval_secs: Duration,
}

impl Default for HistoryVars {
    fn default() -> Self {
        HistoryVars {
            runs_retention: DEFAULT_RUNS_RETENTION.to_owned(),
            job_retention: None,
            retention_interval_secs: HistorySettings::default().interval,
        }
    }
}

impl HistoryVars {
    /// The settings; a bad value names its variable.
    pub(super) fn into_settings(self) -> Result<HistorySettings, ConfigError> {
        let (count, run_max_age) =
            value::retention(&self.runs_retention, DEFAULT_RUNS_RETENTION)
                .map_err(|reason| ConfigError::new(vars::RUNS_RETENTION, reason))?;
        let runs_per_job = u32::try_from(count).map_err(|_| {
            ConfigError::new(vars::RUNS_RETENTION, format!("{count} runs is too many"))
        })?;
        let job_retention = self
            .job_retention
            .map(|text| value::age(&text))
            .transpose()
            .map_err(|reason| ConfigError::new(vars::JOB_RETENTION, reason))?;
        Ok(HistorySettings {
            runs_per_job,
            run_max_age,
            job_retention,
            interval: self.retention_interval_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{tests::settings, vars};
    use super::*;

    #[test]
    fn runs_and_jobs_are_kept_as_configured_and_a_bad_value_names_its_variable() {
        let default = settings(&[]).unwrap().scheduler.history;
        assert_eq!(default, HistorySettings::default());
        assert_eq!(default.job_retention, None, "finished jobs are kept");
        let set = settings(&[
            (vars::RUNS_RETENTION, "20,12h"),
            (vars::JOB_RETENTION, "7d"),
            (vars::RETENTION_INTERVAL_SECS, "5"),
        ])
        .unwrap()
        .scheduler
        .history;
        assert_eq!(set.runs_per_job, 20);
        assert_eq!(set.run_max_age, Duration::from_secs(12 * 3600));
        assert_eq!(set.job_retention, Some(Duration::from_secs(7 * 24 * 3600)));
        assert_eq!(set.interval, Duration::from_secs(5));
        for (name, bad) in [
            (vars::RUNS_RETENTION, "0,1d"),
            (vars::RUNS_RETENTION, "10"),
            (vars::RUNS_RETENTION, "99999999999,1d"),
            (vars::JOB_RETENTION, "7"),
            (vars::JOB_RETENTION, "0d"),
            (vars::RETENTION_INTERVAL_SECS, "0"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err();
            assert_eq!(err.name, name, "{bad}: {err}");
        }
    }
}
