//! What is measured: the cases (an expression in a zone) and the subjects
//! that answer "the next occurrence after this instant" for them.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use scheduler_service::domain::schedule::{
    Bounds, CronExpression, CronSchedule, DstPolicy, Jitter, Schedule, Timing, parse_time_zone,
};

/// A cron expression (5 fields, or 6 with seconds) in a zone.
pub struct Case {
    pub expression: &'static str,
    pub zone: &'static str,
}

/// Every-quarter-hour, weekday, daily-in-the-gap, monthly and every-10-s
/// expressions; the zones have transitions (Lord Howe's are half an hour)
/// but UTC, where every subject must give the same answers.
pub const CASES: [Case; 5] = [
    Case {
        expression: "*/15 * * * *",
        zone: "UTC",
    },
    Case {
        expression: "0 9 * * MON-FRI",
        zone: "America/New_York",
    },
    Case {
        expression: "30 2 * * *",
        zone: "America/New_York",
    },
    Case {
        expression: "0 0 1 * *",
        zone: "Europe/London",
    },
    Case {
        expression: "*/10 * * * * *",
        zone: "Australia/Lord_Howe",
    },
];

/// Something that computes the next occurrence after an instant.
pub enum Subject {
    /// `Timing::next_after` (default DST policy).
    Schedule(Timing),
    /// The stored text form parsed, then `Timing::next_after`: the cost
    /// when the service keeps no parsed schedule in memory.
    ScheduleParsed(String),
    /// croner 3 as tokio-cron-scheduler 0.15 calls it:
    /// `find_next_occurrence(&now.with_timezone(&tz), false)` on a pattern
    /// parsed with seconds required.
    Peer(Box<croner3::Cron>, Tz),
    /// croner 4 with its own DST rules, on a `DateTime<Tz>`.
    Croner4(Box<croner::Cron>, Tz),
}

impl Subject {
    /// The subjects of `case`, ours first.
    pub fn all(case: &Case) -> Vec<(&'static str, Subject)> {
        let tz = parse_time_zone(case.zone).expect("zone");
        let cron = CronSchedule {
            expression: CronExpression::parse(case.expression).expect("expression"),
            time_zone: tz,
            dst: DstPolicy::default(),
        };
        let timing = Timing::new(Schedule::Cron(cron), Bounds::default(), Jitter::default())
            .expect("timing");
        let with_seconds = if case.expression.split_whitespace().count() == 5 {
            format!("0 {}", case.expression)
        } else {
            case.expression.to_owned()
        };
        let peer = croner3::parser::CronParser::builder()
            .seconds(croner3::parser::Seconds::Required)
            .build()
            .parse(&with_seconds)
            .expect("croner 3 parses it");
        let croner4 = croner::Cron::from_str(&with_seconds).expect("croner 4 parses it");
        let text = timing.to_string();
        vec![
            ("schedule", Subject::Schedule(timing)),
            ("schedule (parse + next)", Subject::ScheduleParsed(text)),
            (
                "croner 3, as tokio-cron-scheduler",
                Subject::Peer(Box::new(peer), tz),
            ),
            (
                "croner 4, its own DST rules",
                Subject::Croner4(Box::new(croner4), tz),
            ),
        ]
    }

    /// The next occurrence after `after`.
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Subject::Schedule(timing) => timing.next_after(after, 0).map(|o| o.at),
            Subject::ScheduleParsed(text) => {
                let timing = Timing::from_str(text).ok()?;
                timing.next_after(after, 0).map(|o| o.at)
            }
            Subject::Peer(cron, tz) => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.to_utc()),
            Subject::Croner4(cron, tz) => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.to_utc()),
        }
    }
}

/// `count` instants spread evenly over 2024, its DST transitions included,
/// each 1.237 s further from a whole step than the one before, so that they
/// land at every offset from the expressions' occurrences.
pub fn instants(count: usize) -> Vec<DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let year_ms = TimeDelta::days(366).num_milliseconds();
    let step_ms = year_ms / i64::try_from(count.max(1)).expect("count fits i64") + 1_237;
    (0..count)
        .map(|i| {
            let offset_ms = (step_ms * i64::try_from(i).expect("count fits i64")) % year_ms;
            start + TimeDelta::milliseconds(offset_ms)
        })
        .collect()
}
