//! The run results executors send on `topic-job-run-result`, read the way
//! the Go scheduler of the article reads them, so that every executor
//! written for it works unchanged.
//!
//! The Go service decodes a result into its `models.Job` struct with
//! `encoding/json`, whose fields are tagged `json:"Id"`, `json:"Status"`
//! and `json:"ScheduledKey"` (among others this service ignores). Its rules,
//! kept here:
//!
//! - A key names a field when it equals the tag, or else when it equals it
//!   under Unicode simple case folding (`foldName` in `encoding/json`; the
//!   article's Go 1.19 `equalFoldRight` matches the same keys): ASCII
//!   letters in either case, and the two non-ASCII runes that fold to ASCII
//!   letters, U+212A KELVIN SIGN (`k`) and U+017F LATIN SMALL LETTER LONG S
//!   (`s`). So `Status`, `status` and `STATUS` are one key.
//! - When a key comes twice (in any spellings), the later value wins. The
//!   article's email executor echoes the run event with a lower-case
//!   `status` added at the end: `{"Id": "...", "Status": 3, ..., "status": 4}`
//!   is a result of 4.
//! - `null` leaves a field as it was (as if the key were absent).
//! - A value of the wrong type spoils the whole message, even when a later
//!   duplicate is good (Go reports the error after decoding the rest, and
//!   the Go consumer skips the message).
//! - Bytes that are not UTF-8, and lone surrogate escapes, in a key or in
//!   the value of a key not read here do not spoil the message (Go reads
//!   them as U+FFFD); in a value read here they do (as in Go, whose id and
//!   numbers cannot hold them).
//!
//! Beyond Go: `jobId` (same folding) is accepted for the id, as the
//! article's sample message spells it; it is read only when no `Id` key is
//! present, so that a message with `Id` means here what it means to Go
//! (but for a `jobId` value that is not UTF-8, which spoils the message
//! here and is ignored there). A status other than 4 (SUCCEEDED) or 5
//! (FAILED) is refused, where Go would store it. Beyond Go too, the
//! optional details of a report (same folding): `Error` (a string),
//! `Executor` (a string), `Final` (a boolean: retrying cannot cure the
//! failure) and `RetryAfterMs` (an integer), bounded as
//! [`RunReport::with_details`] bounds them. Other keys are ignored.
//!
//! The object is read in one pass, with a serde visitor that sees the keys
//! in document order.

use serde::{
    Deserialize, Deserializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
};
use serde_json::Value;

use crate::domain::{Excerpt, JobId, ResultStatus, report::RunReport};

/// Largest run-result message that is parsed; anything bigger is poison.
pub const RUN_RESULT_MAX_BYTES: usize = 64 * 1024;

/// An executor's report on a run, from `topic-job-run-result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The job that ran.
    pub id: JobId,
    /// How it went; its fire token is the `ScheduledKey` the executor
    /// echoed from the run event, if it sent one.
    pub report: RunReport,
}

/// Why a run-result message was skipped. No variant repeats more than an
/// [`Excerpt`] of what the message held.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RunResultError {
    /// The message has no payload.
    #[error("empty message")]
    Empty,
    /// The payload is larger than [`RUN_RESULT_MAX_BYTES`].
    #[error("message of {0} bytes exceeds the {RUN_RESULT_MAX_BYTES}-byte limit")]
    TooLarge(usize),
    /// The payload is not JSON, or not a JSON object.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A required key is absent (or only `null`).
    #[error("no {0} key")]
    Missing(&'static str),
    /// A key's value has the wrong JSON type.
    #[error("{key} must be {expected}, got {got}")]
    WrongType {
        /// The key, as the Go tag spells it.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        got: &'static str,
    },
    /// The id is not 24 hex digits; an [`Excerpt`] of it.
    #[error("invalid job id {0}")]
    InvalidId(String),
    /// The status is not SUCCEEDED (4) or FAILED (5).
    #[error("status {0} is not a result (expected 4 or 5)")]
    NotAResult(i64),
    /// A detail is out of its bounds (too long a text, a delay out of
    /// range).
    #[error("{0}")]
    OutOfBounds(String),
}

/// Parses a run-result message, `{"Id": "...", "Status": 4}` and every
/// spelling the Go service accepts (see the module documentation);
/// `ScheduledKey` is optional.
pub fn parse_run_result(payload: &[u8]) -> Result<RunResult, RunResultError> {
    if payload.is_empty() {
        return Err(RunResultError::Empty);
    }
    if payload.len() > RUN_RESULT_MAX_BYTES {
        return Err(RunResultError::TooLarge(payload.len()));
    }
    let fields: Fields =
        serde_json::from_slice(payload).map_err(|e| RunResultError::Malformed(e.to_string()))?;
    if let Some(err) = fields.error {
        return Err(err);
    }
    let id = match (fields.id, fields.job_id) {
        (Some(id), _) => id,
        (None, Some(job_id)) => job_id?,
        (None, None) => return Err(RunResultError::Missing(Tag::Id.name())),
    };
    let status = fields
        .status
        .ok_or(RunResultError::Missing(Tag::Status.name()))?;
    let status = i32::try_from(status)
        .ok()
        .and_then(ResultStatus::from_i32)
        .ok_or(RunResultError::NotAResult(status))?;
    let report = RunReport::of(status, fields.fire_token)
        .with_details(
            fields.error_text,
            fields.executor,
            fields.last_attempt.unwrap_or(false),
            fields.retry_after_ms,
        )
        .map_err(|e| RunResultError::OutOfBounds(e.to_string()))?;
    Ok(RunResult { id, report })
}

/// The tags of the keys a run result is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    /// Go's `Id`.
    Id,
    /// This service's alias of `Id`, read only when `Id` is absent.
    JobId,
    /// Go's `Status`.
    Status,
    /// Go's `ScheduledKey`.
    ScheduledKey,
    /// The error text.
    Error,
    /// The executor's name.
    Executor,
    /// A failure retrying cannot cure.
    Final,
    /// The delay asked for before a retry.
    RetryAfterMs,
}

impl Tag {
    const ALL: [Tag; 8] = [
        Tag::Id,
        Tag::JobId,
        Tag::Status,
        Tag::ScheduledKey,
        Tag::Error,
        Tag::Executor,
        Tag::Final,
        Tag::RetryAfterMs,
    ];

    /// The name as tagged (Go's struct tags, and `jobId`).
    fn name(self) -> &'static str {
        match self {
            Tag::Id => "Id",
            Tag::JobId => "jobId",
            Tag::Status => "Status",
            Tag::ScheduledKey => "ScheduledKey",
            Tag::Error => "Error",
            Tag::Executor => "Executor",
            Tag::Final => "Final",
            Tag::RetryAfterMs => "RetryAfterMs",
        }
    }

    /// The tag a JSON object key names, if any. Go looks for the exact tag
    /// first and then for a folded match; as no two of these tags fold
    /// alike (a unit test checks it), the folded match alone finds the same.
    fn of(name: &str) -> Option<Tag> {
        Tag::ALL
            .into_iter()
            .find(|tag| folds_to_tag(name, tag.name()))
    }
}

/// Whether `name` equals the ASCII `tag` under Go's `encoding/json` folding
/// (Unicode simple case folding): character by character, an ASCII letter
/// in either case, or one of the two non-ASCII runes whose fold set holds an
/// ASCII letter (U+212A KELVIN SIGN with `k`, U+017F LONG S with `s`).
fn folds_to_tag(name: &str, tag: &str) -> bool {
    let mut chars = name.chars();
    tag.chars().all(|t| {
        chars.next().is_some_and(|c| {
            c.eq_ignore_ascii_case(&t)
                || matches!(
                    (c, t.to_ascii_lowercase()),
                    ('\u{212A}', 'k') | ('\u{17F}', 's')
                )
        })
    }) && chars.next().is_none()
}

/// What the keys of a run-result object said, the later value of a key
/// replacing the earlier.
#[derive(Debug, Default)]
struct Fields {
    id: Option<JobId>,
    job_id: Option<Result<JobId, RunResultError>>,
    status: Option<i64>,
    fire_token: Option<i64>,
    error_text: Option<String>,
    executor: Option<String>,
    last_attempt: Option<bool>,
    retry_after_ms: Option<i64>,
    /// The first bad value: it spoils the message whatever follows.
    error: Option<RunResultError>,
}

impl Fields {
    /// Takes one value of the key `tag` names.
    fn take(&mut self, tag: Tag, value: &Value) {
        if value.is_null() {
            return;
        }
        let taken = match tag {
            Tag::Id => job_id(tag, value).map(|id| self.id = Some(id)),
            Tag::JobId => {
                self.job_id = Some(job_id(tag, value));
                Ok(())
            }
            Tag::Status => integer(tag, value).map(|n| self.status = Some(n)),
            Tag::ScheduledKey => integer(tag, value).map(|n| self.fire_token = Some(n)),
            Tag::Error => text(tag, value).map(|t| self.error_text = Some(t)),
            Tag::Executor => text(tag, value).map(|t| self.executor = Some(t)),
            Tag::Final => value
                .as_bool()
                .map(|b| self.last_attempt = Some(b))
                .ok_or_else(|| wrong_type(tag, "a boolean", value)),
            Tag::RetryAfterMs => integer(tag, value).map(|n| self.retry_after_ms = Some(n)),
        };
        if let Err(err) = taken {
            self.error.get_or_insert(err);
        }
    }
}

fn job_id(tag: Tag, value: &Value) -> Result<JobId, RunResultError> {
    let text = value
        .as_str()
        .ok_or_else(|| wrong_type(tag, "a string", value))?;
    JobId::parse_str(text).map_err(|_| RunResultError::InvalidId(Excerpt(text).to_string()))
}

fn text(tag: Tag, value: &Value) -> Result<String, RunResultError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| wrong_type(tag, "a string", value))
}

fn integer(tag: Tag, value: &Value) -> Result<i64, RunResultError> {
    value
        .as_i64()
        .ok_or_else(|| wrong_type(tag, "a 64-bit integer", value))
}

fn wrong_type(tag: Tag, expected: &'static str, value: &Value) -> RunResultError {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a fraction or an out-of-range number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    RunResultError::WrongType {
        key: tag.name(),
        expected,
        got,
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldsVisitor)
    }
}

/// Reads the object's keys in document order; any other JSON value is
/// refused without being repeated.
struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Fields, E> {
        Err(E::custom("expected a JSON object, got a string"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(KeyTag(tag)) = map.next_key()? {
            match tag {
                Some(tag) => fields.take(tag, &map.next_value::<Value>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// An object key, as the tag it names, if any. Read as bytes: a key that is
/// not UTF-8 names no tag and is ignored, as in Go (which reads a bad byte
/// as U+FFFD, and U+FFFD folds to no tag), instead of spoiling the message.
struct KeyTag(Option<Tag>);

impl<'de> Deserialize<'de> for KeyTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(KeyTagVisitor)
    }
}

struct KeyTagVisitor;

impl Visitor<'_> for KeyTagVisitor {
    type Value = KeyTag;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<KeyTag, E> {
        Ok(KeyTag(std::str::from_utf8(key).ok().and_then(Tag::of)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyTag, E> {
        Ok(KeyTag(Tag::of(key)))
    }
}

#[cfg(test)]
mod tests;
