//! The one table from domain errors to gRPC status codes.

use tonic::{Code, Status, metadata::MetadataValue};

use crate::domain::Error;

/// The metadata entry of an INVALID_ARGUMENT status that names the field
/// at fault (as the request message spells it, e.g. `job_data`), so that
/// a client can point at it without parsing the message.
pub const ERROR_FIELD: &str = "error-field";

/// Maps a domain error to the status the client sees, so that handlers
/// answer any error with `?`. A client's mistake is never INTERNAL; internal
/// details are logged, not sent.
impl From<Error> for Status {
    fn from(err: Error) -> Status {
        to_status(err)
    }
}

fn to_status(err: Error) -> Status {
    let code = match &err {
        Error::InvalidArgument { .. } => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::Aborted(_) => Code::Aborted,
        Error::StoreUnavailable(_) | Error::BrokerUnavailable(_) => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %err, "internal error");
        return Status::internal("internal error; see the service log");
    }
    if code == Code::Unavailable {
        tracing::warn!(error = %err, "dependency unavailable");
    }
    let mut status = Status::new(code, err.to_string());
    if let Error::InvalidArgument { field, .. } = &err
        && let Ok(name) = MetadataValue::try_from(field.to_string())
    {
        status.metadata_mut().insert(ERROR_FIELD, name);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Field, JobId};

    #[test]
    fn each_error_has_its_code() {
        let id = JobId::new();
        let cases = [
            (
                Error::invalid(Field::Name, "must not be empty"),
                Code::InvalidArgument,
            ),
            (Error::NotFound(id), Code::NotFound),
            (
                Error::FailedPrecondition("running".into()),
                Code::FailedPrecondition,
            ),
            (Error::Aborted(id), Code::Aborted),
            (Error::AlreadyExists("key".into()), Code::AlreadyExists),
            (Error::StoreUnavailable("down".into()), Code::Unavailable),
            (Error::BrokerUnavailable("down".into()), Code::Unavailable),
            (Error::Internal("secret detail".into()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
        let invalid = Status::from(Error::invalid(Field::JobData, "must not be empty"));
        assert_eq!(invalid.message(), "invalid job_data: must not be empty");
        let field = invalid.metadata().get(ERROR_FIELD);
        assert_eq!(field.and_then(|v| v.to_str().ok()), Some("job_data"));
        let internal = Status::from(Error::Internal("secret detail".into()));
        assert!(!internal.message().contains("secret"));
    }
}
