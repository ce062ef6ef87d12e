//! The one JSON shape of every refusal, and the one table from gRPC codes
//! to HTTP statuses.
//!
//! Every resource runs the RPC it mirrors, so its errors arrive as the
//! `tonic::Status` the gRPC table (`grpc::status`) made from the domain's
//! error: the code maps here to an HTTP status, the message is the same
//! text a gRPC client reads, and `field` is the field the status names
//! (`grpc::ERROR_FIELD`). Refusals of the HTTP layer itself (a body that
//! is not JSON, too large, a call over the limits) take the same shape.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::{Code, Status};
use utoipa::ToSchema;

use crate::grpc::ERROR_FIELD;

/// What a refused call answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// The kind of refusal: the gRPC code's name in snake case
    /// (`invalid_argument`, `not_found`, `unauthenticated`, ...).
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
    /// The field at fault, as the request spells it, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The HTTP status (not in the body).
    #[serde(skip)]
    #[schema(ignore)]
    pub status: StatusCode,
}

impl ApiError {
    /// A refusal with `code`'s status.
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code_name(code),
            message: message.into(),
            field: None,
            status: http_status(code),
        }
    }

    /// A refusal of invalid input naming its `field`.
    pub fn invalid(field: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field,
            ..ApiError::new(Code::InvalidArgument, message)
        }
    }

    /// A request body over the size limit (`GRPC_MAX_MESSAGE_BYTES`, as
    /// for gRPC messages).
    pub fn too_large_body() -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..ApiError::new(
                Code::ResourceExhausted,
                "request body larger than the service accepts (GRPC_MAX_MESSAGE_BYTES)",
            )
        }
    }
}

impl From<Status> for ApiError {
    fn from(status: Status) -> ApiError {
        let field = status
            .metadata()
            .get(ERROR_FIELD)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        ApiError {
            field,
            ..ApiError::new(status.code(), status.message())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, Json(self)).into_response();
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The HTTP status of a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC code's name in snake case.
fn code_name(code: Code) -> String {
    let name = format!("{code:?}");
    let mut snake = String::with_capacity(name.len() + 4);
    for (i, c) in name.char_indices() {
        if c.is_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Error, Field, JobId};

    #[test]
    fn each_domain_error_has_its_status_code_and_field() {
        let cases = [
            (
                Error::invalid(Field::JobData, "must not be empty"),
                400,
                "invalid_argument",
                Some("job_data"),
            ),
            (Error::NotFound(JobId::new()), 404, "not_found", None),
            (
                Error::FailedPrecondition("running".into()),
                412,
                "failed_precondition",
                None,
            ),
            (
                Error::AlreadyExists("key".into()),
                409,
                "already_exists",
                None,
            ),
            (Error::Aborted(JobId::new()), 409, "aborted", None),
            (
                Error::StoreUnavailable("down".into()),
                503,
                "unavailable",
                None,
            ),
            (Error::Internal("secret".into()), 500, "internal", None),
        ];
        for (err, status, code, field) in cases {
            let api = ApiError::from(Status::from(err));
            assert_eq!(api.status.as_u16(), status, "{code}");
            assert_eq!((api.code.as_str(), api.field.as_deref()), (code, field));
            assert!(!api.message.contains("secret"));
        }
        let over = ApiError::new(Code::ResourceExhausted, "too many calls");
        assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(code_name(Code::PermissionDenied), "permission_denied");
    }
}
