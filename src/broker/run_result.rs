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
mod tests {
    use super::*;

    fn parsed(json: &str) -> Result<RunResult, RunResultError> {
        parse_run_result(json.as_bytes())
    }

    fn status_of(json: &str) -> ResultStatus {
        parsed(json)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .report
            .status
    }

    #[test]
    fn both_result_spellings_are_accepted() {
        let id = JobId::new();
        let upper = format!(r#"{{"Id":"{id}","Status":4}}"#);
        let lower = format!(r#"{{"jobId":"{id}","status":5,"name":"job1","scheduledKey":1}}"#);
        assert_eq!(
            parsed(&upper),
            Ok(RunResult {
                id,
                report: RunReport::of(ResultStatus::Succeeded, None),
            })
        );
        assert_eq!(
            parsed(&lower),
            Ok(RunResult {
                id,
                report: RunReport::of(ResultStatus::Failed, Some(1)),
            })
        );
    }

    #[test]
    fn the_email_executors_echo_with_a_later_lower_case_status_is_a_result() {
        let id = JobId::new();
        let echoed = format!(
            r#"{{"Id": "{id}", "Status": 3, "JobData": "{{\"Subject\":\"s\"}}", "status": 4}}"#
        );
        assert_eq!(
            parsed(&echoed),
            Ok(RunResult {
                id,
                report: RunReport::of(ResultStatus::Succeeded, None),
            })
        );
    }

    #[test]
    fn keys_match_in_any_case_and_the_later_duplicate_wins() {
        let id = JobId::new();
        for key in ["Status", "status", "STATUS", "sTaTuS", "\u{17F}tatu\u{17F}"] {
            assert_eq!(
                status_of(&format!(r#"{{"Id":"{id}","{key}":5}}"#)),
                ResultStatus::Failed,
                "{key}"
            );
        }
        for key in ["Id", "id", "ID", "iD", "jobId", "jobid", "JOBID"] {
            assert_eq!(
                parsed(&format!(r#"{{"{key}":"{id}","Status":4}}"#)).map(|r| r.id),
                Ok(id),
                "{key}"
            );
        }
        // Escaped keys are compared after unescaping, as Go does.
        assert_eq!(
            status_of(&format!(r#"{{"Id":"{id}","St\u0061tus":5}}"#)),
            ResultStatus::Failed
        );
        assert_eq!(
            status_of(&format!(r#"{{"Id":"{id}","status":5,"STATUS":4}}"#)),
            ResultStatus::Succeeded
        );
        let other = JobId::new();
        assert_eq!(
            parsed(&format!(r#"{{"id":"{other}","Status":4,"ID":"{id}"}}"#)).map(|r| r.id),
            Ok(id)
        );
    }

    #[test]
    fn only_the_two_go_folds_outside_ascii_match() {
        let id = JobId::new();
        let key = "Scheduled\u{212A}ey";
        let kelvin = format!(r#"{{"Id":"{id}","Status":4,"{key}":7}}"#);
        assert_eq!(parsed(&kelvin).map(|r| r.report.fire_token), Ok(Some(7)));
        // Dotless i upper-cases to I, but Go's simple folding keeps them
        // apart; the full-folding ligature ﬆ is not `st` either.
        for key in ["\u{131}d", "\u{130}d"] {
            assert_eq!(
                parsed(&format!(r#"{{"{key}":"{id}","Status":4}}"#)),
                Err(RunResultError::Missing("Id")),
                "{key}"
            );
        }
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}","{}atus":4}}"#, '\u{FB06}')),
            Err(RunResultError::Missing("Status"))
        );
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}","Statu":4}}"#)),
            Err(RunResultError::Missing("Status"))
        );
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}","Statuss":4}}"#)),
            Err(RunResultError::Missing("Status"))
        );
    }

    #[test]
    fn no_two_tags_fold_alike_so_exact_matches_need_no_priority() {
        for a in Tag::ALL {
            for b in Tag::ALL {
                assert_eq!(folds_to_tag(a.name(), b.name()), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn id_wins_over_job_id_in_any_order_and_job_id_is_a_fallback() {
        let (id, other) = (JobId::new(), JobId::new());
        for json in [
            format!(r#"{{"jobId":"{other}","Id":"{id}","Status":4}}"#),
            format!(r#"{{"Id":"{id}","jobId":"{other}","Status":4}}"#),
            // Go never reads jobId, so a bad one does not spoil the message.
            format!(r#"{{"Id":"{id}","jobId":"bad","Status":4}}"#),
            format!(r#"{{"Id":"{id}","jobId":7,"Status":4}}"#),
            format!(r#"{{"jobId":"bad","jobId":"{id}","Status":4}}"#),
            format!(r#"{{"Id":null,"jobId":"{id}","Status":4}}"#),
        ] {
            assert_eq!(parsed(&json).map(|r| r.id), Ok(id), "{json}");
        }
        assert_eq!(
            parsed(&format!(r#"{{"jobId":"{id}","jobId":"bad","Status":4}}"#)),
            Err(RunResultError::InvalidId(r#""bad""#.into()))
        );
    }

    #[test]
    fn null_leaves_a_key_as_it_was() {
        let id = JobId::new();
        assert_eq!(
            status_of(&format!(r#"{{"Id":"{id}","Status":5,"status":null}}"#)),
            ResultStatus::Failed
        );
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}","Status":null}}"#)),
            Err(RunResultError::Missing("Status"))
        );
        assert_eq!(
            parsed(r#"{"Id":null,"Status":4}"#),
            Err(RunResultError::Missing("Id"))
        );
    }

    #[test]
    fn a_bad_value_spoils_the_message_even_when_a_later_one_is_good() {
        let id = JobId::new();
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}","Status":"4","status":4}}"#)),
            Err(RunResultError::WrongType {
                key: "Status",
                expected: "a 64-bit integer",
                got: "a string"
            })
        );
        assert_eq!(
            parsed(&format!(r#"{{"Id":"nope","id":"{id}","Status":4}}"#)),
            Err(RunResultError::InvalidId(r#""nope""#.into()))
        );
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}","Status":4.0}}"#)),
            Err(RunResultError::WrongType {
                key: "Status",
                expected: "a 64-bit integer",
                got: "a fraction or an out-of-range number"
            })
        );
        assert!(matches!(
            parsed(&format!(r#"{{"Id":{{"$oid":"{id}"}},"Status":4}}"#)),
            Err(RunResultError::WrongType { key: "Id", .. })
        ));
    }

    #[test]
    fn statuses_other_than_4_and_5_are_refused_after_the_last_key() {
        let id = JobId::new();
        for (json, status) in [
            (format!(r#"{{"Id":"{id}","Status":4,"status":3}}"#), 3),
            (format!(r#"{{"Id":"{id}","Status":0}}"#), 0),
            (format!(r#"{{"Id":"{id}","Status":-4}}"#), -4),
            (
                format!(r#"{{"Id":"{id}","Status":4294967300}}"#),
                4_294_967_300,
            ),
        ] {
            assert_eq!(
                parsed(&json),
                Err(RunResultError::NotAResult(status)),
                "{json}"
            );
        }
    }

    #[test]
    fn scheduled_key_is_an_optional_i64_in_any_case() {
        let id = JobId::new();
        let fire_token = |json: String| parsed(&json).map(|r| r.report.fire_token);
        assert_eq!(
            fire_token(format!(r#"{{"Id":"{id}","Status":4}}"#)),
            Ok(None)
        );
        assert_eq!(
            fire_token(format!(
                r#"{{"Id":"{id}","Status":4,"scheduledKey":6072375870331110000}}"#
            )),
            Ok(Some(6_072_375_870_331_110_000))
        );
        assert_eq!(
            fire_token(format!(
                r#"{{"Id":"{id}","Status":4,"ScheduledKey":1,"SCHEDULEDKEY":-9223372036854775808}}"#
            )),
            Ok(Some(i64::MIN))
        );
        assert_eq!(
            fire_token(format!(
                r#"{{"Id":"{id}","Status":4,"ScheduledKey":9223372036854775808}}"#
            )),
            Err(RunResultError::WrongType {
                key: "ScheduledKey",
                expected: "a 64-bit integer",
                got: "a fraction or an out-of-range number"
            })
        );
        assert!(matches!(
            fire_token(format!(r#"{{"Id":"{id}","Status":4,"ScheduledKey":"1"}}"#)),
            Err(RunResultError::WrongType {
                key: "ScheduledKey",
                ..
            })
        ));
    }

    #[test]
    fn poison_results_are_rejected_with_a_reason() {
        let id = JobId::new();
        assert_eq!(parse_run_result(b""), Err(RunResultError::Empty));
        for not_an_object in ["not json", "[1]", "4", r#""a string""#, "null", "{\"Id\":"] {
            assert!(
                matches!(parsed(not_an_object), Err(RunResultError::Malformed(_))),
                "{not_an_object}"
            );
        }
        assert_eq!(
            parsed(r#"{"Status":4}"#),
            Err(RunResultError::Missing("Id"))
        );
        assert_eq!(
            parsed(&format!(r#"{{"Id":"{id}"}}"#)),
            Err(RunResultError::Missing("Status"))
        );
        assert_eq!(
            parsed(r#"{"Id":"xyz","Status":4}"#),
            Err(RunResultError::InvalidId(r#""xyz""#.into()))
        );
        let huge = vec![b' '; RUN_RESULT_MAX_BYTES + 1];
        assert_eq!(
            parse_run_result(&huge),
            Err(RunResultError::TooLarge(RUN_RESULT_MAX_BYTES + 1))
        );
    }

    /// Found by the fuzz target `run_result` (its input is kept as
    /// fuzz/seeds/run_result/not-utf8-in-an-ignored-value.json): a byte that
    /// is not UTF-8 in the value of an ignored key. Go reads it as U+FFFD,
    /// and so the message is a result; here too, as ignored values are not
    /// read. A key that is not UTF-8, or a lone surrogate, is ignored too.
    #[test]
    fn bytes_that_are_not_utf8_outside_the_keys_read_do_not_spoil_the_message() {
        let id = JobId::new();
        let expected = Ok(RunResult {
            id,
            report: RunReport::of(ResultStatus::Succeeded, None),
        });
        let tail = format!(r#","Id":"{id}","Status":4}}"#);
        for head in [
            &b"{\"ScheduleTime\":\"\xff030-01-01T09:00:00Z\""[..],
            &b"{\"Na\xffme\":\"x\""[..],
            &br#"{"Name":"\ud800""#[..],
            &br#"{"\udc00":1"#[..],
        ] {
            let payload = [head, tail.as_bytes()].concat();
            assert_eq!(
                parse_run_result(&payload),
                expected,
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
        let bad_status = [
            format!(r#"{{"Id":"{id}","Status":""#).as_bytes(),
            b"\xff\"}",
        ]
        .concat();
        assert!(matches!(
            parse_run_result(&bad_status),
            Err(RunResultError::Malformed(_))
        ));
    }

    #[test]
    fn errors_repeat_no_more_than_an_excerpt_of_the_message() {
        let long = "x".repeat(60 * 1024);
        for json in [
            format!(r#"{{"Id":"{long}","Status":4}}"#),
            format!(r#"{{"Id":"{}","Status":"{long}"}}"#, JobId::new()),
            format!(r#""{long}""#),
            format!(r#"{{"{long}":1}}"#),
            format!(r#"{{"Id":"{long}"#),
        ] {
            let err = parsed(&json).unwrap_err().to_string();
            assert!(err.len() < 200, "{err}");
        }
    }

    #[test]
    fn the_optional_details_are_read_in_any_case_and_bounded() {
        let id = JobId::new();
        let json = format!(
            r#"{{"Id":"{id}","Status":5,"error":"SMTP 451","EXECUTOR":"mailer-2","final":true,"RetryAfterMs":30000}}"#
        );
        let report = parsed(&json).expect("a result").report;
        assert_eq!(report.error.as_deref(), Some("SMTP 451"));
        assert_eq!(report.executor.as_deref(), Some("mailer-2"));
        assert!(report.last_attempt);
        assert_eq!(report.retry_after, Some(chrono::TimeDelta::seconds(30)));
        let long = "x".repeat(crate::domain::report::ERROR_MAX_BYTES + 1);
        let oversized = format!(r#"{{"Id":"{id}","Status":5,"Error":"{long}"}}"#);
        assert!(matches!(
            parsed(&oversized),
            Err(RunResultError::OutOfBounds(_))
        ));
        let negative = format!(r#"{{"Id":"{id}","Status":5,"RetryAfterMs":-1}}"#);
        assert!(matches!(
            parsed(&negative),
            Err(RunResultError::OutOfBounds(_))
        ));
        let wrong = format!(r#"{{"Id":"{id}","Status":5,"Final":"yes"}}"#);
        assert!(matches!(
            parsed(&wrong),
            Err(RunResultError::WrongType { key: "Final", .. })
        ));
    }
}
