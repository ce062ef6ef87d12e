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
