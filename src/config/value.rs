//! How one variable's text becomes a value: the serde helpers of the
//! settings structs, and the files that `*_FILE` variables name.
//!
//! Numbers and flags are read strictly from their text. config-rs alone
//! would also read `true`, `on` or `yes` as the number 1 (and `off` as
//! `false`), so that `SERVER_PORT=yes` would start a server on port 1
//! instead of stopping start-up.

use std::{num::ParseIntError, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, de::Error as _};

use super::ConfigError;

/// A whole number from its decimal text; the error says what was found.
pub(super) fn parse_whole<T: FromStr<Err = ParseIntError>>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|e| format!("expected a whole number, got {text:?} ({e})"))
}

/// `<count>,<age>` (`example` is shown when the form is wrong): a count
/// of at least 1, and an age (see [`age`]).
pub(super) fn retention(text: &str, example: &str) -> Result<(u64, Duration), String> {
    let form = || format!("expected <count>,<age> such as {example}, got {text:?}");
    let (count, age_text) = text.split_once(',').ok_or_else(form)?;
    let count: u64 = parse_whole(count.trim())?;
    if count == 0 {
        return Err(format!("{}: the count must be at least 1", form()));
    }
    Ok((
        count,
        age(age_text).map_err(|e| format!("{}: {e}", form()))?,
    ))
}

/// An age of at least 1 in seconds (`s`), minutes (`m`), hours (`h`) or
/// days (`d`): `90m`, `7d`.
pub(super) fn age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 24 * 3600,
        _ => return Err(format!("an age ends in s, m, h or d, got {text:?}")),
    };
    let amount: u64 = parse_whole(&text[..text.len() - 1])?;
    if amount == 0 {
        return Err(format!("an age is at least 1, got {text:?}"));
    }
    amount
        .checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long an age"))
}

/// Deserializes a whole number (0 allowed).
pub(super) fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ParseIntError>,
{
    let text = String::deserialize(deserializer)?;
    parse_whole(&text).map_err(D::Error::custom)
}

/// Deserializes a whole number of at least 1.
pub(super) fn positive<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ParseIntError> + PartialOrd + From<u8>,
{
    let number: T = whole(deserializer)?;
    if number < T::from(1) {
        return Err(D::Error::custom("must be at least 1"));
    }
    Ok(number)
}

/// Deserializes an optional whole number of at least 1 (the field's default
/// is `None`).
pub(super) fn some_positive<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ParseIntError> + PartialOrd + From<u8>,
{
    positive(deserializer).map(Some)
}

/// Deserializes a duration given in milliseconds, at least 1.
pub(super) fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    positive(deserializer).map(Duration::from_millis)
}

/// Deserializes a duration given in seconds, at least 1.
pub(super) fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    positive(deserializer).map(Duration::from_secs)
}

/// Deserializes `true`, `1` or `yes`, or `false`, `0` or `no`, in any case.
pub(super) fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(D::Error::custom(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

/// The bytes of the file at `path`, which the variable `name` gave.
pub(super) fn read_file(name: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(name, format!("cannot read {path}: {e}")))
}

/// A secret: the trimmed text of the file that the variable `file_name`
/// gives as `file` (a Docker secret), which wins over the `plain` variable.
pub(super) fn secret(
    file_name: &str,
    file: Option<&str>,
    plain: Option<String>,
) -> Result<Option<String>, ConfigError> {
    let Some(path) = file else {
        return Ok(plain);
    };
    let text = String::from_utf8(read_file(file_name, path)?)
        .map_err(|_| ConfigError::new(file_name, format!("cannot read {path}: not UTF-8 text")))?;
    Ok(Some(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_read_strictly() {
        assert_eq!(parse_whole::<u16>("9001"), Ok(9001));
        for text in ["yes", "true", "on", "1.5", "-1", "70000", "0x10"] {
            let err = parse_whole::<u16>(text).expect_err(text);
            assert!(err.contains("expected a whole number"), "{err}");
        }
    }

    #[test]
    fn a_secret_file_wins_over_the_plain_variable_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user");
        std::fs::write(&path, "  admin\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        let from_file = secret("USER_FILE", Some(&path), Some("plain".to_owned())).unwrap();
        assert_eq!(from_file.as_deref(), Some("admin"));
        let plain = secret("USER_FILE", None, Some("plain".to_owned())).unwrap();
        assert_eq!(plain.as_deref(), Some("plain"));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let err = secret("USER_FILE", Some(&path), None).unwrap_err();
        assert_eq!(err.name, "USER_FILE");
        assert!(err.reason.contains("cannot read"), "{err}");
    }
}
