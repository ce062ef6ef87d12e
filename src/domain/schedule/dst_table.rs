//! Table tests of cron schedules over real transitions, for every policy,
//! against occurrence lists worked out by hand. Times are written in the
//! zone's local time with its offset, so that each line shows the wall
//! clock and which side of a transition it is on.
//!
//! The transitions (2024):
//! - America/New_York: 03-10 02:00 EST → 03:00 EDT (02:00-02:59 do not
//!   exist); 11-03 02:00 EDT → 01:00 EST (01:00-01:59 occur twice).
//! - Europe/London: 03-31 01:00 GMT → 02:00 BST; 10-27 02:00 BST → 01:00 GMT.
//! - Australia/Lord_Howe (half an hour): 04-07 02:00 +11 → 01:30 +10:30
//!   (01:30-01:59 twice); 10-06 02:00 +10:30 → 02:30 +11 (02:00-02:29 do not
//!   exist).

use chrono::{DateTime, SecondsFormat, Utc};

use super::{
    Bounds, CronExpression, CronSchedule, DstPolicy, Jitter, Occurrence, OccurrenceKind, Pass,
    Schedule, Timing, parse_time_zone,
};

struct Case {
    zone: &'static str,
    expression: &'static str,
    /// `repeated skipped`, as the wire names them.
    policy: &'static str,
    /// The search starts strictly after this instant.
    after: &'static str,
    /// The occurrences that follow, in order: local time and kind.
    expected: &'static [&'static str],
}

const NEW_YORK: &str = "America/New_York";
const LONDON: &str = "Europe/London";
const LORD_HOWE: &str = "Australia/Lord_Howe";

#[rustfmt::skip]
const SPRING: &[Case] = &[
    // A daily time inside the gap.
    Case { zone: NEW_YORK, expression: "30 2 * * *", policy: "first next-valid", after: "2024-03-08T12:00:00-05:00", expected: &[
        "2024-03-09T02:30:00-05:00 regular",
        "2024-03-10T03:00:00-04:00 shifted from 02:30:00",
        "2024-03-11T02:30:00-04:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "30 2 * * *", policy: "first skip", after: "2024-03-08T12:00:00-05:00", expected: &[
        "2024-03-09T02:30:00-05:00 regular",
        "2024-03-11T02:30:00-04:00 regular",
        "2024-03-12T02:30:00-04:00 regular",
    ]},
    // Two times inside the gap fire once, at 03:00.
    Case { zone: NEW_YORK, expression: "10,40 * * * *", policy: "first next-valid", after: "2024-03-10T01:00:00-05:00", expected: &[
        "2024-03-10T01:10:00-05:00 regular",
        "2024-03-10T01:40:00-05:00 regular",
        "2024-03-10T03:00:00-04:00 shifted from 02:10:00",
        "2024-03-10T03:10:00-04:00 regular",
        "2024-03-10T03:40:00-04:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "10,40 * * * *", policy: "both skip", after: "2024-03-10T01:00:00-05:00", expected: &[
        "2024-03-10T01:10:00-05:00 regular",
        "2024-03-10T01:40:00-05:00 regular",
        "2024-03-10T03:10:00-04:00 regular",
        "2024-03-10T03:40:00-04:00 regular",
    ]},
    // 03:00 matches too: it fires once.
    Case { zone: NEW_YORK, expression: "*/30 * * * *", policy: "first next-valid", after: "2024-03-10T01:00:00-05:00", expected: &[
        "2024-03-10T01:30:00-05:00 regular",
        "2024-03-10T03:00:00-04:00 shifted from 02:00:00",
        "2024-03-10T03:30:00-04:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "*/30 * * * *", policy: "first skip", after: "2024-03-10T01:00:00-05:00", expected: &[
        "2024-03-10T01:30:00-05:00 regular",
        "2024-03-10T03:00:00-04:00 regular",
        "2024-03-10T03:30:00-04:00 regular",
    ]},
    Case { zone: LONDON, expression: "30 1 * * *", policy: "first next-valid", after: "2024-03-29T12:00:00+00:00", expected: &[
        "2024-03-30T01:30:00+00:00 regular",
        "2024-03-31T02:00:00+01:00 shifted from 01:30:00",
        "2024-04-01T01:30:00+01:00 regular",
    ]},
    Case { zone: LONDON, expression: "30 1 * * *", policy: "first skip", after: "2024-03-29T12:00:00+00:00", expected: &[
        "2024-03-30T01:30:00+00:00 regular",
        "2024-04-01T01:30:00+01:00 regular",
        "2024-04-02T01:30:00+01:00 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "15 2 * * *", policy: "first next-valid", after: "2024-10-04T12:00:00+10:30", expected: &[
        "2024-10-05T02:15:00+10:30 regular",
        "2024-10-06T02:30:00+11:00 shifted from 02:15:00",
        "2024-10-07T02:15:00+11:00 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "15 2 * * *", policy: "first skip", after: "2024-10-04T12:00:00+10:30", expected: &[
        "2024-10-05T02:15:00+10:30 regular",
        "2024-10-07T02:15:00+11:00 regular",
        "2024-10-08T02:15:00+11:00 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "5-55/10 * * * *", policy: "first next-valid", after: "2024-10-06T01:50:00+10:30", expected: &[
        "2024-10-06T01:55:00+10:30 regular",
        "2024-10-06T02:30:00+11:00 shifted from 02:05:00",
        "2024-10-06T02:35:00+11:00 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "5-55/10 * * * *", policy: "first skip", after: "2024-10-06T01:50:00+10:30", expected: &[
        "2024-10-06T01:55:00+10:30 regular",
        "2024-10-06T02:35:00+11:00 regular",
        "2024-10-06T02:45:00+11:00 regular",
    ]},
];

#[rustfmt::skip]
const AUTUMN: &[Case] = &[
    // A daily time inside the repeated hour.
    Case { zone: NEW_YORK, expression: "30 1 * * *", policy: "first next-valid", after: "2024-11-01T12:00:00-04:00", expected: &[
        "2024-11-02T01:30:00-04:00 regular",
        "2024-11-03T01:30:00-04:00 first",
        "2024-11-04T01:30:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "30 1 * * *", policy: "last next-valid", after: "2024-11-01T12:00:00-04:00", expected: &[
        "2024-11-02T01:30:00-04:00 regular",
        "2024-11-03T01:30:00-05:00 second",
        "2024-11-04T01:30:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "30 1 * * *", policy: "both next-valid", after: "2024-11-01T12:00:00-04:00", expected: &[
        "2024-11-02T01:30:00-04:00 regular",
        "2024-11-03T01:30:00-04:00 first",
        "2024-11-03T01:30:00-05:00 second",
        "2024-11-04T01:30:00-05:00 regular",
    ]},
    // Hourly: the hour 01 once under first and last, twice under both.
    Case { zone: NEW_YORK, expression: "0 * * * *", policy: "first next-valid", after: "2024-11-02T23:30:00-04:00", expected: &[
        "2024-11-03T00:00:00-04:00 regular",
        "2024-11-03T01:00:00-04:00 first",
        "2024-11-03T02:00:00-05:00 regular",
        "2024-11-03T03:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "0 * * * *", policy: "last next-valid", after: "2024-11-02T23:30:00-04:00", expected: &[
        "2024-11-03T00:00:00-04:00 regular",
        "2024-11-03T01:00:00-05:00 second",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "0 * * * *", policy: "both next-valid", after: "2024-11-02T23:30:00-04:00", expected: &[
        "2024-11-03T00:00:00-04:00 regular",
        "2024-11-03T01:00:00-04:00 first",
        "2024-11-03T01:00:00-05:00 second",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    // Every quarter hour: 4 runs in the repeated hour, or 8 under both.
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "first next-valid", after: "2024-11-03T00:50:00-04:00", expected: &[
        "2024-11-03T01:00:00-04:00 first",
        "2024-11-03T01:15:00-04:00 first",
        "2024-11-03T01:30:00-04:00 first",
        "2024-11-03T01:45:00-04:00 first",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "last next-valid", after: "2024-11-03T00:50:00-04:00", expected: &[
        "2024-11-03T01:00:00-05:00 second",
        "2024-11-03T01:15:00-05:00 second",
        "2024-11-03T01:30:00-05:00 second",
        "2024-11-03T01:45:00-05:00 second",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "both next-valid", after: "2024-11-03T00:50:00-04:00", expected: &[
        "2024-11-03T01:00:00-04:00 first",
        "2024-11-03T01:15:00-04:00 first",
        "2024-11-03T01:30:00-04:00 first",
        "2024-11-03T01:45:00-04:00 first",
        "2024-11-03T01:00:00-05:00 second",
        "2024-11-03T01:15:00-05:00 second",
        "2024-11-03T01:30:00-05:00 second",
        "2024-11-03T01:45:00-05:00 second",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: LONDON, expression: "30 1 * * *", policy: "first next-valid", after: "2024-10-25T12:00:00+01:00", expected: &[
        "2024-10-26T01:30:00+01:00 regular",
        "2024-10-27T01:30:00+01:00 first",
        "2024-10-28T01:30:00+00:00 regular",
    ]},
    Case { zone: LONDON, expression: "30 1 * * *", policy: "last next-valid", after: "2024-10-25T12:00:00+01:00", expected: &[
        "2024-10-26T01:30:00+01:00 regular",
        "2024-10-27T01:30:00+00:00 second",
        "2024-10-28T01:30:00+00:00 regular",
    ]},
    Case { zone: LONDON, expression: "30 1 * * *", policy: "both next-valid", after: "2024-10-25T12:00:00+01:00", expected: &[
        "2024-10-26T01:30:00+01:00 regular",
        "2024-10-27T01:30:00+01:00 first",
        "2024-10-27T01:30:00+00:00 second",
        "2024-10-28T01:30:00+00:00 regular",
    ]},
    Case { zone: LONDON, expression: "*/30 * * * *", policy: "first next-valid", after: "2024-10-27T00:40:00+01:00", expected: &[
        "2024-10-27T01:00:00+01:00 first",
        "2024-10-27T01:30:00+01:00 first",
        "2024-10-27T02:00:00+00:00 regular",
    ]},
    Case { zone: LONDON, expression: "*/30 * * * *", policy: "last next-valid", after: "2024-10-27T00:40:00+01:00", expected: &[
        "2024-10-27T01:00:00+00:00 second",
        "2024-10-27T01:30:00+00:00 second",
        "2024-10-27T02:00:00+00:00 regular",
    ]},
    Case { zone: LONDON, expression: "*/30 * * * *", policy: "both next-valid", after: "2024-10-27T00:40:00+01:00", expected: &[
        "2024-10-27T01:00:00+01:00 first",
        "2024-10-27T01:30:00+01:00 first",
        "2024-10-27T01:00:00+00:00 second",
        "2024-10-27T01:30:00+00:00 second",
        "2024-10-27T02:00:00+00:00 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "45 1 * * *", policy: "first next-valid", after: "2024-04-05T12:00:00+11:00", expected: &[
        "2024-04-06T01:45:00+11:00 regular",
        "2024-04-07T01:45:00+11:00 first",
        "2024-04-08T01:45:00+10:30 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "45 1 * * *", policy: "last next-valid", after: "2024-04-05T12:00:00+11:00", expected: &[
        "2024-04-06T01:45:00+11:00 regular",
        "2024-04-07T01:45:00+10:30 second",
        "2024-04-08T01:45:00+10:30 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "45 1 * * *", policy: "both next-valid", after: "2024-04-05T12:00:00+11:00", expected: &[
        "2024-04-06T01:45:00+11:00 regular",
        "2024-04-07T01:45:00+11:00 first",
        "2024-04-07T01:45:00+10:30 second",
        "2024-04-08T01:45:00+10:30 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "*/15 * * * *", policy: "first next-valid", after: "2024-04-07T01:20:00+11:00", expected: &[
        "2024-04-07T01:30:00+11:00 first",
        "2024-04-07T01:45:00+11:00 first",
        "2024-04-07T02:00:00+10:30 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "*/15 * * * *", policy: "last next-valid", after: "2024-04-07T01:20:00+11:00", expected: &[
        "2024-04-07T01:30:00+10:30 second",
        "2024-04-07T01:45:00+10:30 second",
        "2024-04-07T02:00:00+10:30 regular",
    ]},
    Case { zone: LORD_HOWE, expression: "*/15 * * * *", policy: "both next-valid", after: "2024-04-07T01:20:00+11:00", expected: &[
        "2024-04-07T01:30:00+11:00 first",
        "2024-04-07T01:45:00+11:00 first",
        "2024-04-07T01:30:00+10:30 second",
        "2024-04-07T01:45:00+10:30 second",
        "2024-04-07T02:00:00+10:30 regular",
    ]},
];

/// Searches that start inside the repeated hour, on either pass.
#[rustfmt::skip]
const INSIDE_THE_REPEATED_HOUR: &[Case] = &[
    // On the first pass, after its last quarter: the second pass is next.
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "first next-valid", after: "2024-11-03T01:50:00-04:00", expected: &[
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "last next-valid", after: "2024-11-03T01:50:00-04:00", expected: &[
        "2024-11-03T01:00:00-05:00 second",
    ]},
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "both next-valid", after: "2024-11-03T01:50:00-04:00", expected: &[
        "2024-11-03T01:00:00-05:00 second",
        "2024-11-03T01:15:00-05:00 second",
    ]},
    // On the second pass.
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "first next-valid", after: "2024-11-03T01:40:00-05:00", expected: &[
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "last next-valid", after: "2024-11-03T01:40:00-05:00", expected: &[
        "2024-11-03T01:45:00-05:00 second",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "both next-valid", after: "2024-11-03T01:40:00-05:00", expected: &[
        "2024-11-03T01:45:00-05:00 second",
        "2024-11-03T02:00:00-05:00 regular",
    ]},
    // A daily time, from the first pass after it.
    Case { zone: NEW_YORK, expression: "30 1 * * *", policy: "first next-valid", after: "2024-11-03T01:40:00-04:00", expected: &[
        "2024-11-04T01:30:00-05:00 regular",
    ]},
    Case { zone: NEW_YORK, expression: "30 1 * * *", policy: "last next-valid", after: "2024-11-03T01:40:00-04:00", expected: &[
        "2024-11-03T01:30:00-05:00 second",
        "2024-11-04T01:30:00-05:00 regular",
    ]},
    // The very instant the clocks go back (06:00Z): the second pass starts.
    Case { zone: NEW_YORK, expression: "*/15 * * * *", policy: "both next-valid", after: "2024-11-03T01:00:00-05:00", expected: &[
        "2024-11-03T01:15:00-05:00 second",
    ]},
    Case { zone: LORD_HOWE, expression: "*/15 * * * *", policy: "both next-valid", after: "2024-04-07T01:59:59.500+11:00", expected: &[
        "2024-04-07T01:30:00+10:30 second",
    ]},
];

fn timing(case: &Case) -> Timing {
    let (repeated, skipped) = case.policy.split_once(' ').unwrap();
    let cron = CronSchedule {
        expression: CronExpression::parse(case.expression).unwrap(),
        time_zone: parse_time_zone(case.zone).unwrap(),
        dst: DstPolicy {
            repeated: repeated.parse().unwrap(),
            skipped: skipped.parse().unwrap(),
        },
    };
    Timing::new(Schedule::Cron(cron), Bounds::default(), Jitter::default()).unwrap()
}

/// An occurrence as the table writes it.
fn line(occurrence: &Occurrence, zone: &str) -> String {
    let tz = parse_time_zone(zone).unwrap();
    let local = occurrence
        .at
        .with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false);
    let kind = match occurrence.kind {
        OccurrenceKind::Regular => "regular".to_owned(),
        OccurrenceKind::Repeated(Pass::First) => "first".to_owned(),
        OccurrenceKind::Repeated(Pass::Second) => "second".to_owned(),
        OccurrenceKind::Shifted { wall } => format!("shifted from {}", wall.time()),
    };
    format!("{local} {kind}")
}

fn check(cases: &[Case]) {
    for case in cases {
        let after: DateTime<Utc> = case.after.parse().unwrap();
        let got: Vec<String> = timing(case)
            .occurrences(after, 0)
            .take(case.expected.len())
            .map(|occurrence| line(&occurrence, case.zone))
            .collect();
        assert_eq!(
            got, case.expected,
            "{} {:?} {} after {}",
            case.zone, case.expression, case.policy, case.after
        );
    }
}

#[test]
fn a_time_the_clocks_skip_fires_once_after_the_gap_or_not_at_all() {
    check(SPRING);
}

#[test]
fn a_time_the_clocks_repeat_fires_on_the_first_the_last_or_both() {
    check(AUTUMN);
}

#[test]
fn a_search_from_inside_the_repeated_hour_keeps_the_order_of_instants() {
    check(INSIDE_THE_REPEATED_HOUR);
}

#[test]
fn a_daily_job_fires_once_a_day_all_year_under_the_defaults() {
    // Every day of 2024 in New York, transition days included: 366 days,
    // 366 firings, one a day, at 02:30 local or (on 03-10) at 03:00.
    let case = Case {
        zone: NEW_YORK,
        expression: "30 2 * * *",
        policy: "first next-valid",
        after: "2023-12-31T12:00:00-05:00",
        expected: &[],
    };
    let tz = parse_time_zone(NEW_YORK).unwrap();
    let timing = timing(&case);
    let days: Vec<_> = timing
        .occurrences(case.after.parse().unwrap(), 0)
        .take_while(|o| o.at < "2025-01-01T05:00:00Z".parse::<DateTime<Utc>>().unwrap())
        .map(|o| o.at.with_timezone(&tz).date_naive())
        .collect();
    assert_eq!(days.len(), 366);
    assert!(
        days.windows(2)
            .all(|pair| pair[1] == pair[0].succ_opt().unwrap())
    );
}
