//! A cron schedule: an expression read as local wall-clock time in an IANA
//! time zone, and the daylight-saving policy that turns each local time it
//! matches into instants (the rules are in the docs of [`super`]).
//!
//! croner matches wall-clock times only (it is handed `NaiveDateTime`s, so
//! its own DST rules, which depend on the shape of the expression, never
//! apply); this module walks the time zone's transitions itself.

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::{CronExpression, DstPolicy, Occurrence, OccurrenceKind, Pass, SkippedTime};
use crate::domain::{Error, Excerpt, Field};

/// At most this many gaps in a row are skipped in one search before it
/// gives up (an expression that matches only skipped times, such as
/// `30 2 * 3 0#2` in New York under `skip`, never fires).
const MAX_SKIPPED_GAPS: usize = 1000;

/// A cron expression evaluated in a time zone under a DST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    /// What local times it fires at.
    pub expression: CronExpression,
    /// Where those local times are read.
    pub time_zone: Tz,
    /// What it does where the zone's clocks jump.
    pub dst: DstPolicy,
}

/// Parses an IANA time-zone name (`Europe/London`, `UTC`; exact case), the
/// error on [`Field::TimeZone`].
pub fn parse_time_zone(name: &str) -> Result<Tz, Error> {
    name.parse::<Tz>().map_err(|_| {
        Error::invalid(
            Field::TimeZone,
            format!(
                "{} is not an IANA time zone name (such as Europe/London or UTC)",
                Excerpt(name)
            ),
        )
    })
}

/// The local times a zone shows twice, where its clocks go back: wall
/// times in `start..end` occur first before the transition, then again
/// after it.
struct Overlap {
    start: NaiveDateTime,
    end: NaiveDateTime,
}

impl CronSchedule {
    /// The first occurrence strictly after `after`.
    pub(super) fn next_after(&self, after: DateTime<Utc>) -> Option<Occurrence> {
        let local = after.with_timezone(&self.time_zone);
        let wall = local.naive_local().with_nanosecond(0)?;
        match self.time_zone.from_local_datetime(&wall) {
            LocalResult::Ambiguous(earlier, later) => {
                let overlap = self.overlap(earlier, later)?;
                let on_first_pass = local.offset().fix() == earlier.offset().fix();
                self.search_overlap(wall, &overlap, on_first_pass)
            }
            _ => self.walk(wall),
        }
    }

    /// The first occurrence after the instant at `wall`, an instant that is
    /// not inside a repeated hour: matches in wall-clock order, each turned
    /// into its instant by the policy. A repeated time met here is met
    /// before either of its instants, so its first admitted instant is next.
    fn walk(&self, mut from: NaiveDateTime) -> Option<Occurrence> {
        for _ in 0..MAX_SKIPPED_GAPS {
            let wall = self.expression.next_wall_after(from)?;
            match self.time_zone.from_local_datetime(&wall) {
                LocalResult::Single(at) => return Some(Occurrence::regular(at.to_utc())),
                LocalResult::Ambiguous(earlier, later) => {
                    return Some(if self.dst.repeated.fires_first_pass() {
                        repeated(earlier, Pass::First)
                    } else {
                        repeated(later, Pass::Second)
                    });
                }
                LocalResult::None => {
                    let (after_gap, wall_after_gap) = self.after_gap(wall)?;
                    match self.dst.skipped {
                        SkippedTime::NextValid => {
                            return Some(Occurrence {
                                at: after_gap,
                                kind: OccurrenceKind::Shifted { wall },
                            });
                        }
                        SkippedTime::Skip => from = wall_after_gap - TimeDelta::seconds(1),
                    }
                }
            }
        }
        None
    }

    /// The first occurrence after the instant at `wall`, which is inside
    /// `overlap` (on its first pass or on its second). Every instant of the
    /// first pass comes before every instant of the second, so from the
    /// first pass the rest of the first pass is searched, then the whole
    /// second pass, then what follows the overlap.
    fn search_overlap(
        &self,
        wall: NaiveDateTime,
        overlap: &Overlap,
        on_first_pass: bool,
    ) -> Option<Occurrence> {
        let repeated = self.dst.repeated;
        let second_pass_from = if on_first_pass {
            overlap.start - TimeDelta::seconds(1)
        } else {
            wall
        };
        let passes = [
            (
                on_first_pass && repeated.fires_first_pass(),
                wall,
                Pass::First,
            ),
            (repeated.fires_second_pass(), second_pass_from, Pass::Second),
        ];
        passes
            .into_iter()
            .filter(|(fires, _, _)| *fires)
            .find_map(|(_, from, pass)| self.in_overlap(from, overlap, pass))
            .or_else(|| self.walk(overlap.end - TimeDelta::seconds(1)))
    }

    /// The first match after `from` that is inside `overlap`, at its
    /// instant of `pass`.
    fn in_overlap(&self, from: NaiveDateTime, overlap: &Overlap, pass: Pass) -> Option<Occurrence> {
        let wall = self
            .expression
            .next_wall_after(from)
            .filter(|wall| *wall < overlap.end)?;
        match (self.time_zone.from_local_datetime(&wall), pass) {
            (LocalResult::Ambiguous(earlier, _), Pass::First) => Some(repeated(earlier, pass)),
            (LocalResult::Ambiguous(_, later), Pass::Second) => Some(repeated(later, pass)),
            _ => None,
        }
    }

    /// The overlap that shows the wall time whose two instants are
    /// `earlier` and `later`: the transition is the first second after
    /// `earlier` with another offset (bisected: about 12 steps for an hour).
    fn overlap(&self, earlier: DateTime<Tz>, later: DateTime<Tz>) -> Option<Overlap> {
        let before = earlier.offset().fix();
        let transition = first_second(earlier.timestamp(), later.timestamp(), |second| {
            self.offset_at(second) != Some(before)
        });
        let start = DateTime::from_timestamp(transition, 0)?
            .with_timezone(&self.time_zone)
            .naive_local();
        Some(Overlap {
            start,
            end: start + (later - earlier),
        })
    }

    /// The first instant after the gap that `wall` (a time that does not
    /// exist) is in, and its wall time: the first second whose wall time is
    /// past `wall`, bisected over a day either side (no offset is a day).
    fn after_gap(&self, wall: NaiveDateTime) -> Option<(DateTime<Utc>, NaiveDateTime)> {
        let day = TimeDelta::days(1).num_seconds();
        let around = wall.and_utc().timestamp();
        let first = first_second(around - day, around + day, |second| {
            self.wall_at(second).is_none_or(|shown| shown > wall)
        });
        let at = DateTime::from_timestamp(first, 0)?;
        Some((at, self.wall_at(first)?))
    }

    fn offset_at(&self, second: i64) -> Option<chrono::FixedOffset> {
        let at = DateTime::from_timestamp(second, 0)?;
        Some(
            self.time_zone
                .offset_from_utc_datetime(&at.naive_utc())
                .fix(),
        )
    }

    fn wall_at(&self, second: i64) -> Option<NaiveDateTime> {
        let at = DateTime::from_timestamp(second, 0)?;
        Some(at.with_timezone(&self.time_zone).naive_local())
    }
}

fn repeated(at: DateTime<Tz>, pass: Pass) -> Occurrence {
    Occurrence {
        at: at.to_utc(),
        kind: OccurrenceKind::Repeated(pass),
    }
}

/// The first second in `lo + 1..=hi` where `changed` holds, for a
/// predicate that is false at `lo`, true at `hi`, and changes once between.
fn first_second(mut lo: i64, mut hi: i64, changed: impl Fn(i64) -> bool) -> i64 {
    while hi - lo > 1 {
        let middle = lo + (hi - lo) / 2;
        if changed(middle) {
            hi = middle;
        } else {
            lo = middle;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_is_an_exact_iana_name() {
        assert_eq!(
            parse_time_zone("Europe/London").unwrap(),
            Tz::Europe__London
        );
        assert_eq!(parse_time_zone("UTC").unwrap(), Tz::UTC);
        assert_eq!(parse_time_zone("US/Eastern").unwrap().name(), "US/Eastern");
        let err = parse_time_zone("Mars/Olympus_Mons").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid time_zone: \"Mars/Olympus_Mons\" is not an IANA time zone name (such as Europe/London or UTC)"
        );
        assert!(parse_time_zone("").is_err());
    }
}
