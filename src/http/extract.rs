//! The request parts the handlers take, refused in the API's own error
//! shape: a JSON body (a creation's too) (its field at fault named by its path, its size
//! bounded by the body limit) and query parameters.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Query, Request},
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    error::ApiError,
    model::{CreateJob, JobFields},
};

/// A JSON request body.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        parse(&bytes(request, state).await?).map(Body)
    }
}

/// A creation's body: the job's fields and its key, each parsed on its
/// own, so that a bad field is named by its path (serde's `flatten` loses
/// it).
impl<S: Send + Sync> FromRequest<S> for CreateJob {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes(request, state).await?;
        let job: JobFields = parse(&bytes)?;
        let ClientKey { client_key } = parse(&bytes)?;
        Ok(CreateJob { job, client_key })
    }
}

/// The key of a creation's body.
#[derive(Deserialize)]
struct ClientKey {
    #[serde(default)]
    client_key: Option<String>,
}

/// A request's body, within the body limit.
async fn bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large_body(),
            _ => ApiError::invalid(None, rejection.body_text()),
        })
}

/// `bytes` as a `T`, or a refusal naming the field at fault (its path in
/// the body, e.g. `recurrence.interval_seconds`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = err.path().to_string();
        let field = (path != ".").then_some(path);
        ApiError::invalid(field, format!("invalid JSON body: {}", err.inner()))
    })
}

/// Query parameters.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|rejection| ApiError::invalid(None, rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let body = br#"{"name":"n","job_type":"email","job_data":"{}",
                        "recurrence":{"interval_seconds":"often"}}"#;
        let err = parse::<JobFields>(body).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("recurrence.interval_seconds"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let err = parse::<JobFields>(br#"{"name":"n","job_type":"fax"}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("job_type"));
        assert!(err.message.contains("fax"), "{}", err.message);
        let err = parse::<JobFields>(b"not json").unwrap_err();
        assert_eq!((err.field, err.code.as_str()), (None, "invalid_argument"));
    }
}
