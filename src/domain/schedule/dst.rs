//! A cron schedule's daylight-saving policy: what it does at a local time
//! that occurs twice (the clocks go back) and at one that does not occur
//! (the clocks go forward). The rules and examples are in the docs of
//! [`super`]; the names here are the wire and storage names.

use std::{fmt, str::FromStr};

use crate::domain::{Error, Excerpt, Field};

/// What a cron schedule does at a local time that occurs twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RepeatedTime {
    /// `first` (the default): fire at the earlier instant only, so that
    /// every local time fires once, however often the clock shows it.
    #[default]
    First,
    /// `last`: fire at the later instant only.
    Last,
    /// `both`: fire at both instants, as the clock shows the time twice.
    Both,
}

/// What a cron schedule does at a local time that does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SkippedTime {
    /// `next-valid` (the default): fire once at the first instant after the
    /// gap, however many skipped times the expression matched, so that a
    /// daily job still runs on the day the clocks go forward.
    #[default]
    NextValid,
    /// `skip`: do not fire for a local time that does not exist.
    Skip,
}

/// Both halves of a cron schedule's daylight-saving policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DstPolicy {
    /// At a local time that occurs twice.
    pub repeated: RepeatedTime,
    /// At a local time that does not exist.
    pub skipped: SkippedTime,
}

impl RepeatedTime {
    const ALL: [RepeatedTime; 3] = [RepeatedTime::First, RepeatedTime::Last, RepeatedTime::Both];

    /// The policy's wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            RepeatedTime::First => "first",
            RepeatedTime::Last => "last",
            RepeatedTime::Both => "both",
        }
    }

    /// Whether the earlier instant of a repeated time fires.
    pub(super) fn fires_first_pass(self) -> bool {
        matches!(self, RepeatedTime::First | RepeatedTime::Both)
    }

    /// Whether the later instant of a repeated time fires.
    pub(super) fn fires_second_pass(self) -> bool {
        matches!(self, RepeatedTime::Last | RepeatedTime::Both)
    }
}

impl SkippedTime {
    const ALL: [SkippedTime; 2] = [SkippedTime::NextValid, SkippedTime::Skip];

    /// The policy's wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            SkippedTime::NextValid => "next-valid",
            SkippedTime::Skip => "skip",
        }
    }
}

/// The value of `all` named `name` (ASCII case ignored), or an error on
/// `field` that lists the names.
fn by_name<T: Copy>(
    field: Field,
    name: &str,
    all: &[T],
    as_str: fn(T) -> &'static str,
) -> Result<T, Error> {
    all.iter()
        .copied()
        .find(|value| as_str(*value).eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|value| as_str(*value)).collect();
            Error::invalid(
                field,
                format!(
                    "{} is not a policy; expected one of {}",
                    Excerpt(name),
                    names.join(", ")
                ),
            )
        })
}

impl FromStr for RepeatedTime {
    type Err = Error;

    /// `first`, `last` or `both`; an error on [`Field::DstRepeated`].
    fn from_str(name: &str) -> Result<Self, Error> {
        by_name(Field::DstRepeated, name, &Self::ALL, Self::as_str)
    }
}

impl FromStr for SkippedTime {
    type Err = Error;

    /// `next-valid` or `skip`; an error on [`Field::DstSkipped`].
    fn from_str(name: &str) -> Result<Self, Error> {
        by_name(Field::DstSkipped, name, &Self::ALL, Self::as_str)
    }
}

impl fmt::Display for RepeatedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SkippedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_ignore_ascii_case() {
        for policy in RepeatedTime::ALL {
            assert_eq!(policy.to_string().parse::<RepeatedTime>().unwrap(), policy);
        }
        for policy in SkippedTime::ALL {
            assert_eq!(policy.to_string().parse::<SkippedTime>().unwrap(), policy);
        }
        assert_eq!("BOTH".parse::<RepeatedTime>().unwrap(), RepeatedTime::Both);
        assert_eq!(
            "Next-Valid".parse::<SkippedTime>().unwrap(),
            SkippedTime::NextValid
        );
    }

    #[test]
    fn an_unknown_name_is_refused_on_its_field_with_the_names() {
        let err = "earliest".parse::<RepeatedTime>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dst_repeated: \"earliest\" is not a policy; expected one of first, last, both"
        );
        let err = "".parse::<SkippedTime>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid dst_skipped: \"\" is not a policy; expected one of next-valid, skip"
        );
    }

    #[test]
    fn the_defaults_are_first_and_next_valid() {
        let policy = DstPolicy::default();
        assert_eq!(policy.repeated, RepeatedTime::First);
        assert_eq!(policy.skipped, SkippedTime::NextValid);
    }
}
