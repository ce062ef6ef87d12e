//! Any bytes as a message on `topic-job-run-result`: the parser never
//! panics, accepts only JSON objects, and its errors stay short whatever the
//! message holds (a value is repeated only as an excerpt).

#![no_main]

use libfuzzer_sys::fuzz_target;
use scheduler_service::broker::parse_run_result;

/// Longest error message, in characters, that any message may cause.
const MAX_ERROR_CHARS: usize = 160;

fuzz_target!(|payload: &[u8]| {
    match parse_run_result(payload) {
        // Not `serde_json::Value`'s rules: like Go, the parser lets bytes
        // that are not UTF-8 through where it does not read.
        Ok(_) => {
            let object = payload.trim_ascii();
            assert!(
                object.starts_with(b"{") && object.ends_with(b"}"),
                "accepted something that is not an object"
            );
        }
        Err(err) => {
            let message = err.to_string();
            assert!(message.chars().count() <= MAX_ERROR_CHARS, "{message}");
        }
    }
});
