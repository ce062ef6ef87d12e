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
//! Each call is a span (continuing a W3C `traceparent`) and a sample of
//! the HTTP metrics. The web console is served at `/` (`console`).

mod console;
mod error;
mod events;
mod extract;
mod jobs;
pub mod model;
pub mod openapi;
mod server;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::header,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, delete, get, post, put},
};
use tokio::sync::Semaphore;
use tonic::Code;
use tracing::Instrument;

pub use error::ApiError;
pub use jobs::IDEMPOTENCY_KEY;
pub use server::HttpServer;

use crate::{
    config::SecuritySettings,
    grpc::{JobEventsGrpc, JobsGrpc, auth::Authenticator},
    telemetry::{
        metrics::Metrics,
        propagation::{HeaderExtractor, set_parent_from},
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
    metrics: Arc<Metrics>,
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
        metrics: Arc<Metrics>,
    ) -> Api {
        Api {
            metrics,
            page_size: i64::try_from(DEFAULT_PAGE_SIZE.min(max_page_size)).unwrap_or(1),
            jobs,
            events,
            auth: Authenticator::from_key(security.auth_public_key.as_ref()),
            permits: Arc::new(Semaphore::new(security.max_concurrent_calls)),
            timeout: security.request_timeout,
        }
    }

    /// The page and size a listing asks for, the defaults where it does not.
    fn page(&self, page: Option<i64>, size: Option<i64>) -> (i64, i64) {
        (page.unwrap_or(1), size.unwrap_or(self.page_size))
    }

    /// Every route, behind the token check of the RPC it mirrors and the
    /// limits; `/v1/session` behind the limits only (it checks the token
    /// itself); the document and the console's files open (as gRPC
    /// reflection is).
    pub fn router(self, max_body_bytes: usize) -> Router {
        let mut api = Router::new();
        for (path, rpc, route) in routes() {
            let guard = Guard {
                auth: self.auth.clone(),
                rpc,
            };
            api = api.route(
                path,
                route.route_layer(middleware::from_fn_with_state(guard, authorized)),
            );
        }
        let api = api
            .route("/v1/session", get(console::session))
            .route_layer(middleware::from_fn_with_state(self.clone(), limited))
            .layer(DefaultBodyLimit::max(max_body_bytes));
        let mut open = Router::new().route("/openapi.json", get(document));
        for (path, file) in console::files() {
            open = open.route(path, file);
        }
        open.merge(api)
            .route_layer(middleware::from_fn_with_state(self.clone(), observed))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self)
    }
}

/// Each resource (path and method) and the RPC it mirrors: what a
/// token's role is checked against, in one table.
#[rustfmt::skip]
fn routes() -> [(&'static str, &'static str, MethodRouter<Api>); 16] {
    [
        ("/v1/jobs", "/proto.JobsService/ListJobs", get(jobs::list_jobs)),
        ("/v1/jobs", "/proto.JobsService/CreateJob", post(jobs::create_job)),
        ("/v1/jobs/{id}", "/proto.JobsService/GetJob", get(jobs::get_job)),
        ("/v1/jobs/{id}", "/proto.JobsService/UpdateJob", put(jobs::update_job)),
        ("/v1/jobs/{id}", "/proto.JobsService/DeleteJob", delete(jobs::delete_job)),
        ("/v1/jobs/{id}/pause", "/proto.JobsService/PauseJob", post(jobs::pause_job)),
        ("/v1/jobs/{id}/resume", "/proto.JobsService/ResumeJob", post(jobs::resume_job)),
        ("/v1/jobs/{id}/trigger", "/proto.JobsService/TriggerJob", post(jobs::trigger_job)),
        ("/v1/jobs/{id}/rerun", "/proto.JobsService/RerunJob", post(jobs::rerun_job)),
        ("/v1/stats/jobs", "/proto.JobsService/CountJobs", get(jobs::count_jobs)),
        ("/v1/jobs/{id}/runs", "/proto.JobsService/ListJobRuns", get(jobs::list_runs)),
        ("/v1/preview", "/proto.JobsService/PreviewSchedule", post(jobs::preview)),
        ("/v1/jobs/{id}/result", "/scheduler.v1.JobEvents/ReportResult", post(events::report_result)),
        ("/v1/events", "/scheduler.v1.JobEvents/Subscribe", get(events::subscribe)),
        ("/v1/subscriptions/{name}/ack", "/scheduler.v1.JobEvents/Ack", post(events::ack)),
        // (Not an RPC: whoever may list jobs may read it.)
        ("/v1/stats/firings", "/proto.JobsService/ListJobs", get(console::firings)),
    ]
}

/// The token check of one resource.
#[derive(Clone)]
struct Guard {
    auth: Authenticator,
    rpc: &'static str,
}

/// Checks the caller's token (the `Authorization` header) as gRPC checks
/// a call of the guard's RPC, before the body is read; the handler finds
/// the caller in the request's extensions when auth is on.
async fn authorized(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    match guard.auth.check(request.headers(), guard.rpc) {
        Ok(caller) => {
            if let Some(caller) = caller {
                request.extensions_mut().insert(caller);
            }
            next.run(request).await
        }
        Err(status) => ApiError::from(status).into_response(),
    }
}

/// One span and one metric sample per call of a resource, by its route,
/// method and status. The span (`GET /v1/jobs/{id}`) continues the caller's
/// trace when the request carries W3C `traceparent`, as a gRPC call's does,
/// so that a job created over HTTP keeps that trace through its firing.
async fn observed(State(api): State<Api>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    set_parent_from(&span, &HeaderExtractor(request.headers()));
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    api.metrics
        .http_handled(&route, method.as_str(), status, started.elapsed());
    response
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
