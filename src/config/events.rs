//! The event log of the embedded store: how much of it is kept,
//! `EVENTS_RETENTION` (`<count>,<age>`, e.g. `100000,7d`). The oldest
//! events are removed once there are more than the count, or once they are
//! older than the age, whichever comes first.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, value, vars};

/// The default retention: 100,000 events, a week.
const DEFAULT_RETENTION: &str = "100000,7d";

/// How much of the event log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSettings {
    /// At most this many events.
    pub retention_events: u64,
    /// None older than this.
    pub retention_age: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            retention_events: 100_000,
            retention_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The event log's variables.
#[derive(Deserialize)]
#[serde(default)]
pub(super) struct EventVars {
    events_retention: String,
}

impl Default for EventVars {
    fn default() -> Self {
        EventVars {
            events_retention: DEFAULT_RETENTION.to_owned(),
        }
    }
}

impl EventVars {
    /// The settings; a bad retention names `EVENTS_RETENTION`.
    pub(super) fn into_settings(self) -> Result<EventSettings, ConfigError> {
        parse_retention(&self.events_retention)
            .map_err(|reason| ConfigError::new(vars::EVENTS_RETENTION, reason))
    }
}

/// `<count>,<age>`: a count of at least 1, and an age of at least 1 in
/// seconds (`s`), minutes (`m`), hours (`h`) or days (`d`).
fn parse_retention(text: &str) -> Result<EventSettings, String> {
    let form = || format!("expected <count>,<age> such as {DEFAULT_RETENTION}, got {text:?}");
    let (count, age) = text.split_once(',').ok_or_else(form)?;
    let retention_events: u64 = value::parse_whole(count.trim())?;
    let age = age.trim();
    let unit = match age.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 24 * 3600,
        _ => return Err(format!("{}: the age ends in s, m, h or d", form())),
    };
    let amount: u64 = value::parse_whole(&age[..age.len() - 1])?;
    if retention_events == 0 || amount == 0 {
        return Err(format!("{}: count and age must be at least 1", form()));
    }
    let seconds = amount.checked_mul(unit).ok_or_else(form)?;
    Ok(EventSettings {
        retention_events,
        retention_age: Duration::from_secs(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{tests::settings, vars};
    use super::*;

    #[test]
    fn the_retention_reads_a_count_and_an_age_and_a_bad_one_names_the_variable() {
        let default = settings(&[]).unwrap().events;
        assert_eq!(default, EventSettings::default());
        let set = settings(&[(vars::EVENTS_RETENTION, "500, 90m")]).unwrap();
        assert_eq!(set.events.retention_events, 500);
        assert_eq!(set.events.retention_age, Duration::from_secs(5400));
        for bad in [
            "500",
            "500,7",
            "0,7d",
            "500,0s",
            "x,7d",
            "500,7w",
            "1,99999999999999999d",
        ] {
            let err = settings(&[(vars::EVENTS_RETENTION, bad)]).unwrap_err();
            assert_eq!(err.name, vars::EVENTS_RETENTION, "{bad}: {err}");
        }
    }
}
