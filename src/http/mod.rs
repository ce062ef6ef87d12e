//! The HTTP/JSON API: the same jobs, runs, results and events as gRPC, for
//! callers that do not speak gRPC (curl, webhooks, browsers).
//!
//! It is a transcoding of the gRPC services, in the process: each resource
//! checks the caller's token against the RPC it mirrors (the same roles),
//! converts its JSON to that RPC's message and runs the RPC's handler, so
//! that both faces share every rule, default and error message. Errors map
//! from the gRPC code through one table (`error`). The limits are gRPC's
//! settings: bodies over `GRPC_MAX_MESSAGE_BYTES` are 413, calls over
//! `GRPC_MAX_CONCURRENT_CALLS` are 429 at once (no queue), a call not
//! answered within `GRPC_REQUEST_TIMEOUT_MS` is 503; event streams count
//! against `GRPC_MAX_SUBSCRIBERS` with gRPC's. TLS uses the gRPC server's
//! certificate (`server`). The document is at `/openapi.json` (`openapi`).

mod error;
mod events;
mod extract;
mod jobs;
pub mod model;
pub mod openapi;
mod server;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tokio::sync::Semaphore;
use tonic::Code;

pub use error::ApiError;
pub use jobs::IDEMPOTENCY_KEY;
pub use server::HttpServer;

use crate::{
    config::SecuritySettings,
    grpc::{
        JobEventsGrpc, JobsGrpc,
        auth::{Authenticator, Caller},
    },
};

/// What the handlers share: the gRPC handlers they run, the token check
/// and the limits.
#[derive(Clone)]
pub struct Api {
    jobs: JobsGrpc,
    events: JobEventsGrpc,
    auth: Authenticator,
    permits: Arc<Semaphore>,
    timeout: Duration,
    /// Items on a page whose size a listing does not give.
    page_size: i64,
}

/// Items on a page whose size a listing does not give (at most the
/// service's largest page).
pub const DEFAULT_PAGE_SIZE: u64 = 20;

impl Api {
    /// The API over these handlers, with `security`'s token check and
    /// limits, and pages of at most `max_page_size` items.
    pub fn new(
        jobs: JobsGrpc,
        events: JobEventsGrpc,
        security: &SecuritySettings,
        max_page_size: u64,
    ) -> Api {
        Api {
            page_size: i64::try_from(DEFAULT_PAGE_SIZE.min(max_page_size)).unwrap_or(1),
            jobs,
            events,
            auth: Authenticator::from_key(security.auth_public_key.as_ref()),
            permits: Arc::new(Semaphore::new(security.max_concurrent_calls)),
            timeout: security.request_timeout,
        }
    }

    /// Checks the caller's token (the `Authorization` header) as gRPC
    /// checks a call of the method at `rpc`; the caller, when auth is on.
    fn authorize(&self, headers: &HeaderMap, rpc: &str) -> Result<Option<Caller>, ApiError> {
        self.auth.check(headers, rpc).map_err(ApiError::from)
    }

    /// The page and size a listing asks for, the defaults where it does not.
    fn page(&self, query: &model::PageQuery) -> (i64, i64) {
        (
            query.page.unwrap_or(1),
            query.size.unwrap_or(self.page_size),
        )
    }

    /// Every route, its limits, and the document.
    pub fn router(self, max_body_bytes: usize) -> Router {
        let api = Router::new()
            .route("/v1/jobs", get(jobs::list_jobs).post(jobs::create_job))
            .route(
                "/v1/jobs/{id}",
                get(jobs::get_job)
                    .put(jobs::update_job)
                    .delete(jobs::delete_job),
            )
            .route("/v1/jobs/{id}/pause", post(jobs::pause_job))
            .route("/v1/jobs/{id}/resume", post(jobs::resume_job))
            .route("/v1/jobs/{id}/trigger", post(jobs::trigger_job))
            .route("/v1/jobs/{id}/rerun", post(jobs::rerun_job))
            .route("/v1/jobs/{id}/runs", get(jobs::list_runs))
            .route("/v1/jobs/{id}/result", post(events::report_result))
            .route("/v1/preview", post(jobs::preview))
            .route("/v1/events", get(events::subscribe))
            .route("/v1/subscriptions/{name}/ack", post(events::ack))
            .route_layer(middleware::from_fn_with_state(self.clone(), limited))
            .layer(DefaultBodyLimit::max(max_body_bytes));
        Router::new()
            .route("/openapi.json", get(document))
            .merge(api)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self)
    }
}

/// Runs a call within the concurrency cap and the request timeout.
async fn limited(State(api): State<Api>, request: Request, next: Next) -> Response {
    let Ok(_permit) = api.permits.clone().try_acquire_owned() else {
        return ApiError::new(Code::ResourceExhausted, "too many calls in flight; retry")
            .into_response();
    };
    match tokio::time::timeout(api.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            Code::DeadlineExceeded,
            format!("not answered within {:?}", api.timeout),
        )
        .into_response(),
    }
}

/// The OpenAPI document.
async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document(),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such resource; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::new(Code::Unimplemented, "method not allowed on this resource")
    }
}
