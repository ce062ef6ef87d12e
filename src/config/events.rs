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

/// `<count>,<age>` (see [`value::retention`]).
fn parse_retention(text: &str) -> Result<EventSettings, String> {
    let (retention_events, retention_age) = value::retention(text, DEFAULT_RETENTION)?;
    Ok(EventSettings {
        retention_events,
        retention_age,
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
