//! The stored text form of a [`Timing`] (`Display` and `FromStr`); the
//! form is described in the docs of [`super`].

use std::{fmt, str::FromStr};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use super::{
    Bounds, CronExpression, CronSchedule, DEFAULT_MIN_INTERVAL, DstPolicy, IntervalSchedule,
    Jitter, Schedule, Timing, parse_time_zone,
};
use crate::domain::{Error, Excerpt, Field};

/// A time as the text form and the error messages write it.
pub(super) fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.schedule() {
            Schedule::Once { at } => write!(f, "once at={}", rfc3339(*at))?,
            Schedule::Interval(interval) => write!(
                f,
                "interval every={}s anchor={}",
                interval.every().num_seconds(),
                rfc3339(interval.anchor())
            )?,
            Schedule::Cron(cron) => write!(
                f,
                "cron tz={} repeated={} skipped={}",
                cron.time_zone.name(),
                cron.dst.repeated,
                cron.dst.skipped
            )?,
        }
        let bounds = self.bounds();
        if let Some(start) = bounds.start() {
            write!(f, " start={}", rfc3339(start))?;
        }
        if let Some(end) = bounds.end() {
            write!(f, " end={}", rfc3339(end))?;
        }
        if let Some(max_runs) = bounds.max_runs() {
            write!(f, " max_runs={max_runs}")?;
        }
        let jitter = self.jitter().bound();
        if jitter > TimeDelta::zero() {
            write!(f, " jitter={}ms", jitter.num_milliseconds())?;
        }
        if let Schedule::Cron(cron) = self.schedule() {
            write!(f, " expr={}", cron.expression)?;
        }
        Ok(())
    }
}

impl FromStr for Timing {
    type Err = Error;

    /// Reads the text form. A value that breaks a rule is refused on its
    /// own field (an unknown zone on [`Field::TimeZone`]); a form that is
    /// not one (an unknown kind or key, a missing key) on
    /// [`Field::Schedule`]. The interval minimum is the floor
    /// ([`DEFAULT_MIN_INTERVAL`]), not the configured one, so that a stored
    /// job stays readable when the configuration changes.
    fn from_str(text: &str) -> Result<Self, Error> {
        let (kind, rest) = text.split_once(' ').unwrap_or((text, ""));
        let mut words = Words::read(rest)?;
        let schedule = match kind {
            "once" => Schedule::Once {
                at: time(Field::ScheduleTime, words.required("at")?)?,
            },
            "interval" => Schedule::Interval(IntervalSchedule::new(
                with_unit(
                    Field::Interval,
                    words.required("every")?,
                    "s",
                    TimeDelta::try_seconds,
                )?,
                time(Field::AnchorTime, words.required("anchor")?)?,
                DEFAULT_MIN_INTERVAL,
            )?),
            "cron" => Schedule::Cron(CronSchedule {
                expression: CronExpression::parse(words.required("expr")?)?,
                time_zone: parse_time_zone(words.take("tz").unwrap_or("UTC"))?,
                dst: DstPolicy {
                    repeated: words
                        .take("repeated")
                        .map(str::parse)
                        .transpose()?
                        .unwrap_or_default(),
                    skipped: words
                        .take("skipped")
                        .map(str::parse)
                        .transpose()?
                        .unwrap_or_default(),
                },
            }),
            other => {
                return Err(malformed(format!(
                    "{} is not a schedule kind; expected once, cron or interval",
                    Excerpt(other)
                )));
            }
        };
        let bounds = Bounds::new(
            words
                .take("start")
                .map(|v| time(Field::StartTime, v))
                .transpose()?,
            words
                .take("end")
                .map(|v| time(Field::EndTime, v))
                .transpose()?,
            words.take("max_runs").map(count).transpose()?,
        )?;
        let jitter = match words.take("jitter") {
            Some(value) => Jitter::new(with_unit(
                Field::Jitter,
                value,
                "ms",
                TimeDelta::try_milliseconds,
            )?)?,
            None => Jitter::default(),
        };
        words.finish()?;
        Timing::new(schedule, bounds, jitter)
    }
}

/// The `key=value` words of a text form, taken one by one.
struct Words<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Words<'a> {
    /// Splits `rest` into words; `expr=` takes the rest of the line.
    fn read(mut rest: &'a str) -> Result<Self, Error> {
        let mut words: Vec<(&str, &str)> = Vec::new();
        while !rest.is_empty() {
            let (word, tail) = match rest.strip_prefix("expr=") {
                Some(expression) => (("expr", expression), ""),
                None => {
                    let (word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    let pair = word.split_once('=').ok_or_else(|| {
                        malformed(format!("{} is not a key=value word", Excerpt(word)))
                    })?;
                    (pair, tail)
                }
            };
            if words.iter().any(|(key, _)| *key == word.0) {
                return Err(malformed(format!("{} is given twice", Excerpt(word.0))));
            }
            words.push(word);
            rest = tail;
        }
        Ok(Words(words))
    }

    fn take(&mut self, key: &str) -> Option<&'a str> {
        let at = self.0.iter().position(|(k, _)| *k == key)?;
        Some(self.0.remove(at).1)
    }

    fn required(&mut self, key: &str) -> Result<&'a str, Error> {
        self.take(key)
            .ok_or_else(|| malformed(format!("{key}= is missing")))
    }

    /// Refuses a word no key of the kind took.
    fn finish(self) -> Result<(), Error> {
        match self.0.first() {
            Some((key, _)) => Err(malformed(format!("{} is not a key here", Excerpt(key)))),
            None => Ok(()),
        }
    }
}

fn malformed(reason: String) -> Error {
    Error::invalid(Field::Schedule, reason)
}

fn time(field: Field, value: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(value)
        .map(|time| time.to_utc())
        .map_err(|_| Error::invalid(field, format!("{} is not an RFC 3339 time", Excerpt(value))))
}

fn count(value: &str) -> Result<u64, Error> {
    value
        .parse()
        .map_err(|_| Error::invalid(Field::MaxRuns, format!("{} is not a count", Excerpt(value))))
}

/// A whole number of `unit`s (`90s`, `1500ms`) as a duration.
fn with_unit(
    field: Field,
    value: &str,
    unit: &str,
    from: fn(i64) -> Option<TimeDelta>,
) -> Result<TimeDelta, Error> {
    value
        .strip_suffix(unit)
        .and_then(|number| number.parse().ok())
        .and_then(from)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{} is not a whole number of {unit}", Excerpt(value)),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> (Field, String) {
        match text.parse::<Timing>() {
            Err(Error::InvalidArgument { field, reason }) => (field, reason),
            Ok(timing) => panic!("{text:?} read as {timing}"),
            Err(other) => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn each_kind_reads_back_as_written() {
        for text in [
            "once at=2030-01-01T09:00:00Z",
            "once at=2030-01-01T09:00:00.250Z jitter=1500ms",
            "interval every=90s anchor=2024-01-01T00:00:00.250Z",
            "interval every=3600s anchor=2024-01-01T00:00:00Z start=2024-02-01T00:00:00Z \
             end=2025-01-01T00:00:00Z max_runs=10 jitter=60000ms",
            "cron tz=UTC repeated=first skipped=next-valid expr=*/15 * * * *",
            "cron tz=Australia/Lord_Howe repeated=both skipped=skip max_runs=3 expr=0 30 1 * * SUN",
            "cron tz=America/New_York repeated=last skipped=next-valid start=2024-01-01T00:00:00Z \
             jitter=5ms expr=@daily",
        ] {
            let timing: Timing = text.parse().unwrap();
            assert_eq!(timing.to_string(), text);
            assert_eq!(timing.to_string().parse::<Timing>().unwrap(), timing);
        }
    }

    #[test]
    fn keys_may_come_in_any_order_and_the_zone_and_policies_default() {
        let timing: Timing = "cron max_runs=2 expr=0  9 * * mon".parse().unwrap();
        assert_eq!(
            timing.to_string(),
            "cron tz=UTC repeated=first skipped=next-valid max_runs=2 expr=0 9 * * MON"
        );
        let timing: Timing = "interval anchor=2024-01-01T01:00:00+01:00 every=60s"
            .parse()
            .unwrap();
        assert_eq!(
            timing.to_string(),
            "interval every=60s anchor=2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_bad_value_is_refused_on_its_field_and_a_bad_form_on_schedule() {
        for (text, field, reason) in [
            (
                "weekly at=2030-01-01T09:00:00Z",
                Field::Schedule,
                "\"weekly\" is not a schedule kind; expected once, cron or interval",
            ),
            ("once", Field::Schedule, "at= is missing"),
            (
                "once at=2030-01-01T09:00:00Z at=2030-01-01T09:00:00Z",
                Field::Schedule,
                "\"at\" is given twice",
            ),
            (
                "once at=2030-01-01T09:00:00Z tz=UTC",
                Field::Schedule,
                "\"tz\" is not a key here",
            ),
            ("once at", Field::Schedule, "\"at\" is not a key=value word"),
            (
                "once at=tomorrow",
                Field::ScheduleTime,
                "\"tomorrow\" is not an RFC 3339 time",
            ),
            (
                "cron tz=Europe/Paris_ expr=* * * * *",
                Field::TimeZone,
                "\"Europe/Paris_\" is not an IANA time zone name (such as Europe/London or UTC)",
            ),
            (
                "cron repeated=twice expr=* * * * *",
                Field::DstRepeated,
                "\"twice\" is not a policy; expected one of first, last, both",
            ),
            (
                "cron expr=61 * * * *",
                Field::CronExpression,
                "field 1 (minute) at character 1, \"61\": Number out of bounds; minute takes 0-59",
            ),
            (
                "interval every=90 anchor=2024-01-01T00:00:00Z",
                Field::Interval,
                "\"90\" is not a whole number of s",
            ),
            (
                "interval every=0s anchor=2024-01-01T00:00:00Z",
                Field::Interval,
                "must be at least 1s, got 0s",
            ),
            (
                "interval every=60s anchor=2024-01-01T00:00:00Z max_runs=-1",
                Field::MaxRuns,
                "\"-1\" is not a count",
            ),
            (
                "interval every=60s anchor=2024-01-01T00:00:00Z jitter=1s",
                Field::Jitter,
                "\"1s\" is not a whole number of ms",
            ),
            (
                "once at=2030-01-01T09:00:00Z max_runs=1",
                Field::MaxRuns,
                "applies only to recurring (cron and interval) schedules",
            ),
        ] {
            assert_eq!(field_of(text), (field, reason.to_owned()), "{text}");
        }
    }
}
