//! A cron expression: parsed and checked by croner, normalised for storage,
//! and matched against local wall-clock times. Errors name the field and
//! the character where the expression goes wrong.

use std::{
    fmt,
    sync::{Arc, LazyLock},
};

use chrono::{DateTime, NaiveDateTime};
use croner::{
    Cron,
    errors::CronError,
    parser::{CronParser, Seconds, Year},
};

use crate::domain::{Error, Excerpt, Field};

/// Longest accepted expression, in bytes: the longest useful one (every
/// value of a field listed) is far shorter.
pub const CRON_EXPRESSION_MAX_BYTES: usize = 256;

/// The macros and the 5-field expressions they stand for (Vixie cron's,
/// without `@reboot`, which a scheduler of stored jobs has no use for).
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// The six fields of an expression with seconds: name and accepted values.
/// A 5-field expression is the last five.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, nW, LW"),
    ("month", "1-12 or JAN-DEC"),
    (
        "day-of-week",
        "0-7 or SUN-SAT (0 and 7 are Sunday), n#k, nL",
    ),
];

/// croner configured for this service: 5 or 6 fields (seconds first), no
/// year field, day-of-month and day-of-week combined with OR as in Vixie
/// cron (a `+` before day-of-week makes it AND).
static PARSER: LazyLock<CronParser> = LazyLock::new(|| {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
});

/// How many parsed expressions [`PARSED`] keeps.
const PARSED_MAX: u64 = 4096;

/// Parsed expressions by normalised text. Every read of a stored recurring
/// job parses its expression, and parsing is the costly part of that read
/// (14 µs and 5.7 KB in a release build, about 1 ms in a debug one:
/// croner's year field is a byte per year up to 5000, set one by one, and
/// the check that it can fire searches from 1970), while jobs share few
/// distinct expressions. A bounded cache (moka, already built for the
/// MongoDB driver) makes the read a lookup, and jobs with the same
/// expression share one parsed pattern.
static PARSED: LazyLock<moka::sync::Cache<String, Arc<Cron>>> =
    LazyLock::new(|| moka::sync::Cache::new(PARSED_MAX));

/// A valid cron expression that fires at least once, in its normalised text
/// form: the macro in lower case, or the fields in upper case separated by
/// one space (`*/15 9-17 * * MON-FRI`). Parsing the normalised form gives
/// the same expression.
#[derive(Debug, Clone)]
pub struct CronExpression {
    text: String,
    // Shared (see [`PARSED`]): croner's parsed pattern is large (its year
    // field holds a byte per year up to 5000 on the heap), and a
    // `Schedule` is otherwise small.
    cron: Arc<Cron>,
}

impl CronExpression {
    /// Parses an expression as a client sends it: 5 fields (minute hour
    /// day-of-month month day-of-week), 6 (second first) or a macro
    /// (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`,
    /// `@annually`). Errors are on [`Field::CronExpression`] and name the
    /// field and character that is wrong, and why; an expression that can
    /// never fire (`0 0 30 2 *`) is refused.
    pub fn parse(given: &str) -> Result<Self, Error> {
        if given.len() > CRON_EXPRESSION_MAX_BYTES {
            return Err(invalid(format!(
                "is {} bytes, at most {CRON_EXPRESSION_MAX_BYTES} are accepted",
                given.len()
            )));
        }
        let words = words(given);
        match words.as_slice() {
            [] => Err(invalid("must not be empty")),
            [(_, word)] if word.starts_with('@') => Self::from_macro(word),
            _ => Self::from_fields(&words),
        }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The expression in English words (croner's), such as `At 09:00, on
    /// Monday, Tuesday, Wednesday, Thursday, and Friday.`
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first local wall-clock time after `wall` (whole seconds) that
    /// the expression matches; `None` past croner's search limit (the year
    /// 5000).
    pub(super) fn next_wall_after(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron.find_next_occurrence(&wall, false).ok()
    }

    fn from_macro(word: &str) -> Result<Self, Error> {
        let name = word.to_ascii_lowercase();
        let (_, expansion) = MACROS
            .iter()
            .find(|(known, _)| *known == name)
            .ok_or_else(|| {
                let known: Vec<&str> = MACROS.iter().map(|(known, _)| *known).collect();
                invalid(format!(
                    "{} is not a macro; expected one of {}",
                    Excerpt(word),
                    known.join(", ")
                ))
            })?;
        let cron = Self::from_fields(&words(expansion))?.cron;
        Ok(CronExpression { text: name, cron })
    }

    fn from_fields(words: &[(usize, &str)]) -> Result<Self, Error> {
        if !(5..=6).contains(&words.len()) {
            return Err(invalid(format!(
                "has {} fields; expected 5 (minute hour day-of-month month day-of-week) \
                 or 6 (second first)",
                words.len()
            )));
        }
        let text = words
            .iter()
            .map(|(_, word)| word.to_uppercase())
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(cron) = PARSED.get(&text) {
            return Ok(CronExpression { text, cron });
        }
        let cron = PARSER.parse(&text).map_err(|err| locate(words, &err))?;
        // Without a year field an expression repeats within 400 years, and
        // croner searches until the year 5000: no match from 1970 on means
        // none ever.
        let epoch = DateTime::UNIX_EPOCH.naive_utc();
        if cron.find_next_occurrence(&epoch, true).is_err() {
            return Err(invalid(format!(
                "{} can never fire: no date matches it (as February 30)",
                Excerpt(&text)
            )));
        }
        let cron = Arc::new(cron);
        PARSED.insert(text.clone(), cron.clone());
        Ok(CronExpression { text, cron })
    }
}

impl PartialEq for CronExpression {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpression {}

impl fmt::Display for CronExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::invalid(Field::CronExpression, reason)
}

/// The whitespace-separated words of `text`, each with the 1-based
/// character position it starts at.
fn words(text: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let mut start: Option<(usize, usize)> = None;
    for (position, (byte, c)) in text.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((at, from))) => {
                words.push((at, &text[from..byte]));
                start = None;
            }
            (false, None) => start = Some((position + 1, byte)),
            _ => {}
        }
    }
    if let Some((at, from)) = start {
        words.push((at, &text[from..]));
    }
    words
}

/// croner's error for the whole expression, pinned to the first field
/// that fails alone and, in it, the first comma-separated item that fails
/// alone: `field 2 (hour) at character 3, "25": Number out of bounds; hour
/// takes 0-23`.
fn locate(words: &[(usize, &str)], err: &CronError) -> Error {
    let first = FIELDS.len() - words.len();
    for (index, (at, word)) in words.iter().enumerate() {
        let field = first + index;
        if let Err(err) = probe(field, word) {
            let (at, item) = items(*at, word)
                .find(|(_, item)| probe(field, item).is_err())
                .unwrap_or((*at, word));
            let (name, values) = FIELDS[field];
            return invalid(format!(
                "field {} ({name}) at character {at}, {}: {}; {name} takes {values}",
                index + 1,
                Excerpt(item),
                reason(&err)
            ));
        }
    }
    invalid(reason(err))
}

/// Parses `value` as field `field` of an expression whose other fields are
/// `*`.
fn probe(field: usize, value: &str) -> Result<Cron, CronError> {
    let mut fields = ["*"; 6];
    fields[field] = value;
    PARSER.parse(&fields.join(" "))
}

/// The comma-separated items of a field that starts at character `at`,
/// each with the character it starts at.
fn items(at: usize, field: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut next = at;
    field.split(',').map(move |item| {
        let start = next;
        next += item.chars().count() + 1;
        (start, item)
    })
}

/// croner's message without its prefix and closing full stop.
fn reason(err: &CronError) -> String {
    match err {
        CronError::ComponentError(message) | CronError::InvalidPattern(message) => {
            message.trim_end_matches('.').to_owned()
        }
        CronError::IllegalCharacters(_) => "a character this field does not take".to_owned(),
        other => other.to_string().trim_end_matches('.').to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(given: &str) -> String {
        match CronExpression::parse(given) {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, Field::CronExpression);
                reason
            }
            Ok(expression) => panic!("{given:?}: accepted as {expression}"),
            Err(other) => panic!("{given:?}: expected an invalid argument, got {other:?}"),
        }
    }

    fn wall(text: &str) -> NaiveDateTime {
        text.parse().unwrap()
    }

    #[test]
    fn five_and_six_fields_and_macros_are_accepted_and_normalised() {
        for (given, normalised) in [
            ("*/15 * * * *", "*/15 * * * *"),
            ("  0   9 *\t* mon-fri ", "0 9 * * MON-FRI"),
            ("30 0 9 * * *", "30 0 9 * * *"),
            ("0 0 L * *", "0 0 L * *"),
            ("0 12 * * 5#2", "0 12 * * 5#2"),
            ("@Daily", "@daily"),
            ("@hourly", "@hourly"),
        ] {
            let expression = CronExpression::parse(given).unwrap();
            assert_eq!(expression.as_str(), normalised, "{given:?}");
            assert_eq!(CronExpression::parse(normalised).unwrap(), expression);
        }
    }

    #[test]
    fn five_fields_match_on_whole_minutes_and_six_on_seconds() {
        let every_quarter = CronExpression::parse("*/15 * * * *").unwrap();
        assert_eq!(
            every_quarter.next_wall_after(wall("2024-01-01T10:07:31")),
            Some(wall("2024-01-01T10:15:00"))
        );
        let seconds = CronExpression::parse("*/20 * * * * *").unwrap();
        assert_eq!(
            seconds.next_wall_after(wall("2024-01-01T10:07:40")),
            Some(wall("2024-01-01T10:08:00"))
        );
        let weekly = CronExpression::parse("@weekly").unwrap();
        // 2024-01-01 is a Monday; the next midnight of a Sunday is the 7th.
        assert_eq!(
            weekly.next_wall_after(wall("2024-01-01T00:00:00")),
            Some(wall("2024-01-07T00:00:00"))
        );
    }

    #[test]
    fn an_error_names_the_field_the_character_and_the_reason() {
        assert_eq!(
            error("0 25 * * *"),
            "field 2 (hour) at character 3, \"25\": Number out of bounds; hour takes 0-23"
        );
        assert_eq!(
            error("0 0 9 * 1,13 *"),
            "field 5 (month) at character 11, \"13\": Number out of bounds; month takes 1-12 or JAN-DEC"
        );
        assert_eq!(
            error("*/0 * * * *"),
            "field 1 (minute) at character 1, \"*/0\": Step cannot be zero; minute takes 0-59"
        );
        assert!(
            error("0 9 * * MON-XYZ")
                .starts_with("field 5 (day-of-week) at character 9, \"MON-XYZ\": "),
            "{}",
            error("0 9 * * MON-XYZ")
        );
        assert!(
            error("0 9 ? * 1#6").starts_with("field 5 (day-of-week) at character 9, \"1#6\": "),
            "{}",
            error("0 9 ? * 1#6")
        );
    }

    #[test]
    fn a_wrong_number_of_fields_an_unknown_macro_or_nothing_is_refused() {
        assert_eq!(
            error("* * * *"),
            "has 4 fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (second first)"
        );
        assert!(error("0 0 0 1 1 * 2030").starts_with("has 7 fields"));
        assert_eq!(
            error("@reboot"),
            "\"@reboot\" is not a macro; expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
        );
        assert_eq!(error(" \t"), "must not be empty");
        assert!(error(&"1,".repeat(200)).ends_with("at most 256 are accepted"));
    }

    #[test]
    fn an_expression_that_can_never_fire_is_refused() {
        for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"] {
            assert!(
                error(never).ends_with("can never fire: no date matches it (as February 30)"),
                "{never}"
            );
        }
        // February 29 fires, every fourth year.
        let leap = CronExpression::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            leap.next_wall_after(wall("2025-01-01T00:00:00")),
            Some(wall("2028-02-29T00:00:00"))
        );
    }
}
