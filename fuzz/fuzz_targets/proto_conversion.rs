//! Any bytes as a CreateJobRequest or UpdateJobRequest, decoded as tonic
//! decodes them and converted to the domain as the handlers convert them:
//! nothing panics, a request that converts obeys every rule of a stored job
//! and reads back as it was sent, and one that does not gets a short
//! INVALID_ARGUMENT.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use scheduler_service::{
    domain::{
        DESCRIPTION_MAX_BYTES, Error, JOB_DATA_MAX_BYTES, Job, JobId, JobSpec, NAME_MAX_BYTES, now,
    },
    grpc::proto,
};

/// Longest error message, in characters, that any request may cause.
const MAX_ERROR_CHARS: usize = 160;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = proto::CreateJobRequest::decode(data) {
        match JobSpec::try_from(request) {
            Ok(spec) => check_spec(&spec),
            Err(err) => check_error(&err),
        }
    }
    if let Ok(request) = proto::UpdateJobRequest::decode(data) {
        let sent_id = request.id.clone();
        match <(JobId, JobSpec)>::try_from(request) {
            Ok((id, spec)) => {
                assert!(id.to_hex().eq_ignore_ascii_case(&sent_id), "{sent_id:?}");
                check_spec(&spec);
            }
            Err(err) => check_error(&err),
        }
    }
});

fn check_spec(spec: &JobSpec) {
    assert!(!spec.name.trim().is_empty());
    assert!(spec.name.len() <= NAME_MAX_BYTES);
    assert!(!spec.name.chars().any(char::is_control), "{:?}", spec.name);
    assert!(spec.description.len() <= DESCRIPTION_MAX_BYTES);
    assert!(
        !spec
            .description
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        "{:?}",
        spec.description
    );
    assert!(!spec.job_data.trim().is_empty());
    assert!(spec.job_data.len() <= JOB_DATA_MAX_BYTES);
    assert!(!spec.job_data.contains('\0'));
    assert_eq!(spec.schedule_time.timestamp_subsec_nanos() % 1_000_000, 0);
    // The stored job reads back as the client sent it.
    let wire = proto::Job::from(Job::new_scheduled(spec.clone(), now()));
    assert_eq!(wire.name, spec.name);
    assert_eq!(wire.description, spec.description);
    assert_eq!(wire.job_data, spec.job_data);
    assert_eq!(wire.job_type, spec.job_type.as_i32());
    let time = wire.schedule_time.expect("a schedule time");
    assert_eq!(time.seconds, spec.schedule_time.timestamp());
    assert_eq!(
        i64::from(time.nanos),
        i64::from(spec.schedule_time.timestamp_subsec_nanos())
    );
}

fn check_error(err: &Error) {
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.chars().count() <= MAX_ERROR_CHARS, "{message}");
}
