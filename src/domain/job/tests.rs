use super::*;

fn spec() -> JobSpec {
    JobSpec {
        name: "job".into(),
        description: String::new(),
        schedule_time: Utc::now(),
        job_type: JobType::Email,
        job_data: "{}".into(),
    }
}

#[test]
fn valid_spec_passes() {
    let spec = spec();
    assert_eq!(spec.clone().validated().unwrap(), spec);
}

#[test]
fn blank_name_and_job_data_are_rejected() {
    let blank_name = JobSpec {
        name: "  ".into(),
        ..spec()
    };
    assert_eq!(
        blank_name.validated().unwrap_err().invalid_field(),
        Field::Name
    );
    let empty_data = JobSpec {
        job_data: String::new(),
        ..spec()
    };
    assert_eq!(
        empty_data.validated().unwrap_err().invalid_field(),
        Field::JobData
    );
}

#[test]
fn oversize_fields_are_rejected_at_the_limit_plus_one() {
    let ok = JobSpec {
        job_data: "x".repeat(JOB_DATA_MAX_BYTES),
        ..spec()
    };
    assert!(ok.validated().is_ok());
    let big = JobSpec {
        job_data: "x".repeat(JOB_DATA_MAX_BYTES + 1),
        ..spec()
    };
    assert_eq!(big.validated().unwrap_err().invalid_field(), Field::JobData);
    let long_name = JobSpec {
        name: "n".repeat(NAME_MAX_BYTES + 1),
        ..spec()
    };
    assert_eq!(
        long_name.validated().unwrap_err().invalid_field(),
        Field::Name
    );
    let long_desc = JobSpec {
        description: "d".repeat(DESCRIPTION_MAX_BYTES + 1),
        ..spec()
    };
    assert_eq!(
        long_desc.validated().unwrap_err().invalid_field(),
        Field::Description
    );
}

#[test]
fn control_characters_are_refused_in_the_name() {
    for bad in [
        "a\0b",
        "tab\there",
        "line\nbreak",
        "cr\r",
        "esc\u{1b}[31m",
        "del\u{7f}",
        "c1\u{85}",
    ] {
        let spec = JobSpec {
            name: bad.into(),
            ..spec()
        };
        let message = spec.validated().unwrap_err().to_string();
        assert!(
            message.starts_with("invalid name: contains U+"),
            "{message}"
        );
        assert!(
            message.ends_with("control characters are not accepted"),
            "{message}"
        );
    }
    let err = JobSpec {
        name: "ab\0".into(),
        ..spec()
    }
    .validated()
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid name: contains U+0000 at byte 2: control characters are not accepted"
    );
    // Other characters, however unusual, are names.
    let unicode = JobSpec {
        name: "Grüße ✉ \u{200b}\u{a0}名前".into(),
        ..spec()
    };
    assert!(unicode.validated().is_ok());
}

#[test]
fn a_description_may_have_line_breaks_and_tabs_but_no_other_control() {
    let multi_line = JobSpec {
        description: "first line\r\nsecond\tline\n".into(),
        ..spec()
    };
    assert!(multi_line.validated().is_ok());
    for bad in [
        "\0",
        "bell\u{7}",
        "vt\u{b}",
        "ff\u{c}",
        "esc\u{1b}",
        "\u{9f}",
    ] {
        let spec = JobSpec {
            description: bad.into(),
            ..spec()
        };
        assert_eq!(
            spec.validated().unwrap_err().invalid_field(),
            Field::Description,
            "{bad:?}"
        );
    }
}

#[test]
fn job_data_refuses_only_nul() {
    let controls = JobSpec {
        job_data: "{\"m\":\"a\u{1b}b\u{7}\tc\n\"}".into(),
        ..spec()
    };
    assert!(controls.validated().is_ok());
    let nul = JobSpec {
        job_data: "{\"m\":\"a\0\"}".into(),
        ..spec()
    };
    let err = nul.validated().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid job_data: contains U+0000 at byte 7: NUL cannot be stored"
    );
}

#[test]
fn status_and_type_numbers_round_trip() {
    for n in 0..=5 {
        assert_eq!(JobStatus::from_i32(n).unwrap().as_i32(), n);
    }
    assert_eq!(JobStatus::from_i32(6), None);
    assert_eq!(JobType::from_i32(1), Some(JobType::Sms));
    assert_eq!(JobType::from_i32(2), None);
    assert_eq!(ResultStatus::from_i32(4), Some(ResultStatus::Succeeded));
    assert_eq!(ResultStatus::from_i32(5), Some(ResultStatus::Failed));
    assert_eq!(ResultStatus::from_i32(3), None);
}

#[test]
fn rescheduling_keeps_identity_and_changes_the_fire_token() {
    let now = Utc::now();
    let job = Job {
        status: JobStatus::Succeeded,
        ..Job::new_scheduled(spec(), now)
    };
    let later = now + chrono::Duration::seconds(5);
    let moved = job.rescheduled(
        JobSpec {
            name: "renamed".into(),
            ..spec()
        },
        later,
    );
    assert_eq!(moved.id, job.id);
    assert_eq!(moved.created_at, job.created_at);
    assert_eq!(moved.updated_at, later);
    assert_eq!(moved.status, JobStatus::Scheduled);
    assert_ne!(moved.fire_token, job.fire_token);
    assert!(moved.fire_token >= 0);
    assert_eq!(moved.version, job.version + 1);
    assert!(moved.pending.create && moved.pending.update && !moved.pending.run);
}

#[test]
fn pagination_is_one_based_and_bounded() {
    assert_eq!(
        PageRequest::new(0, 10, 100).unwrap_err().invalid_field(),
        Field::Page
    );
    assert_eq!(
        PageRequest::new(1, 0, 100).unwrap_err().invalid_field(),
        Field::Size
    );
    assert_eq!(
        PageRequest::new(1, -3, 100).unwrap_err().invalid_field(),
        Field::Size
    );
    assert_eq!(
        PageRequest::new(1, 101, 100).unwrap_err().invalid_field(),
        Field::Size
    );
    let p = PageRequest::new(3, 10, 100).unwrap();
    assert_eq!(p.offset(), 20);
    assert_eq!(p.total_pages(25), 3);
    assert_eq!(p.total_pages(30), 3);
    assert_eq!(p.total_pages(0), 0);
    assert!(!p.has_more(30));
    assert!(p.has_more(31));
    let huge = PageRequest::new(i64::MAX, 100, 100).unwrap();
    assert!(!huge.has_more(10));
}
