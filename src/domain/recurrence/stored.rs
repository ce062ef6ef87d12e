//! The stored form of a [`Recurrence`]: one JSON object, the same in every
//! store (a `text` column, a string field, a JSON field), with the timing
//! in its own one-line text form (see [`crate::domain::schedule`]) and
//! times in Unix milliseconds.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{CatchUp, CatchUpMode, LastRun, Recurrence, RecurrenceSpec, Retry, Run};
use crate::domain::{Error, Field, ResultStatus, history::RunCause};

#[derive(Serialize, Deserialize)]
struct Stored {
    timing: String,
    catch_up: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catch_up_max: Option<u32>,
    catch_up_window_ms: i64,
    overlap: String,
    paused: bool,
    runs: u64,
    missed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_ms: Option<i64>,
    held: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<StoredRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<StoredLast>,
    /// Absent unless a retry is pending (and in jobs stored before retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<StoredRetry>,
}

#[derive(Serialize, Deserialize)]
struct StoredRetry {
    occurrence_ms: i64,
    at_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredRun {
    token: i64,
    occurrence_ms: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stands_for_ms: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_at_ms: Option<i64>,
    /// Absent in jobs stored before the run history (read as the
    /// occurrence, scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fired_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<i16>,
}

#[derive(Serialize, Deserialize)]
struct StoredLast {
    token: i64,
    occurrence_ms: i64,
    outcome: i32,
}

fn corrupt(reason: impl std::fmt::Display) -> Error {
    Error::invalid(Field::Recurrence, reason.to_string())
}

fn time(ms: i64) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format!("time {ms} out of range")))
}

impl Recurrence {
    /// The stored form.
    pub fn to_stored(&self) -> String {
        let (catch_up_max, catch_up) = match self.spec.catch_up.mode() {
            CatchUpMode::Each { max } => (Some(max), "each"),
            mode => (None, mode.as_str()),
        };
        let stored = Stored {
            timing: self.spec.timing.to_string(),
            catch_up: catch_up.to_owned(),
            catch_up_max,
            catch_up_window_ms: self.spec.catch_up.window().num_milliseconds(),
            overlap: self.spec.overlap.as_str().to_owned(),
            paused: self.paused,
            runs: self.runs,
            missed: self.missed,
            next_ms: self.next.map(|t| t.timestamp_millis()),
            held: self.held,
            run: self.run.as_ref().map(|run| StoredRun {
                token: run.token,
                occurrence_ms: run.occurrence.timestamp_millis(),
                stands_for_ms: run
                    .stands_for
                    .iter()
                    .map(|t| t.timestamp_millis())
                    .collect(),
                retry_at_ms: run.retry_at.map(|t| t.timestamp_millis()),
                fired_ms: Some(run.fired_at.timestamp_millis()),
                cause: Some(run.cause.code()),
            }),
            last: self.last.map(|last| StoredLast {
                token: last.token,
                occurrence_ms: last.occurrence.timestamp_millis(),
                outcome: last.outcome.job_status().as_i32(),
            }),
            retry: self.retry.map(|retry| StoredRetry {
                occurrence_ms: retry.occurrence.timestamp_millis(),
                at_ms: retry.at.timestamp_millis(),
            }),
        };
        // A struct of strings and numbers always serializes.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Whether the recurrence in this stored form is paused, without
    /// reading the rest (listings filter on it for every job they scan).
    pub fn paused_in_stored(text: &str) -> Result<bool, Error> {
        #[derive(Deserialize)]
        struct Paused {
            paused: bool,
        }
        Ok(serde_json::from_str::<Paused>(text)
            .map_err(corrupt)?
            .paused)
    }

    /// Reads the stored form back; an error on [`Field::Recurrence`] (or the
    /// timing's own field) says what is wrong.
    pub fn from_stored(text: &str) -> Result<Self, Error> {
        let stored: Stored = serde_json::from_str(text).map_err(corrupt)?;
        let mode = CatchUpMode::parse(&stored.catch_up, stored.catch_up_max.unwrap_or(1))?;
        let window = TimeDelta::try_milliseconds(stored.catch_up_window_ms)
            .ok_or_else(|| corrupt("catch-up window out of range"))?;
        let run = match stored.run {
            Some(run) => Some(Run {
                token: run.token,
                occurrence: time(run.occurrence_ms)?,
                stands_for: run
                    .stands_for_ms
                    .into_iter()
                    .map(time)
                    .collect::<Result<_, _>>()?,
                retry_at: run.retry_at_ms.map(time).transpose()?,
                fired_at: time(run.fired_ms.unwrap_or(run.occurrence_ms))?,
                cause: match run.cause {
                    Some(code) => RunCause::from_code(code)
                        .ok_or_else(|| corrupt(format!("run cause {code}")))?,
                    None => RunCause::Scheduled,
                },
            }),
            None => None,
        };
        let retry = match stored.retry {
            Some(retry) => Some(Retry {
                occurrence: time(retry.occurrence_ms)?,
                at: time(retry.at_ms)?,
            }),
            None => None,
        };
        let last = match stored.last {
            Some(last) => Some(LastRun {
                token: last.token,
                occurrence: time(last.occurrence_ms)?,
                outcome: ResultStatus::from_i32(last.outcome)
                    .ok_or_else(|| corrupt(format!("outcome {}", last.outcome)))?,
            }),
            None => None,
        };
        Ok(Recurrence {
            spec: RecurrenceSpec {
                timing: stored.timing.parse()?,
                catch_up: CatchUp::new(mode, window)?,
                overlap: stored.overlap.parse()?,
            },
            paused: stored.paused,
            runs: stored.runs,
            missed: stored.missed,
            next: stored.next_ms.map(time).transpose()?,
            held: stored.held,
            run,
            last,
            retry,
        })
    }
}
