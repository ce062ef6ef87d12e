//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! and types' annotations (utoipa), served at `/openapi.json`; a copy is
//! committed as `docs/openapi.json` and a test keeps the two equal.
//!
//! Every operation may be refused in the one error shape ([`ApiError`]):
//! [`Refusals`] adds those answers to each operation, in one place,
//! rather than in each handler's annotation.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, RefOr, ResponseBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{console, error::ApiError, events, jobs, model};

/// The refusals every operation may answer, by HTTP status.
const REFUSALS: [(&str, &str); 9] = [
    ("400", "Invalid input; `field` names the field at fault"),
    ("401", "No token, or a bad or expired one"),
    ("403", "The token's role may not do this"),
    ("404", "No such job or resource"),
    (
        "409",
        "Conflict: a client key in use, or a concurrent change",
    ),
    ("412", "The job's state does not allow it"),
    ("413", "Request body too large"),
    ("429", "Over the limits on concurrent calls or subscribers"),
    (
        "503",
        "A dependency is unavailable, or the call took too long",
    ),
];

/// Adds [`REFUSALS`] and the bearer token scheme to the document.
struct Refusals;

impl Modify for Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ApiError"));
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in REFUSALS {
                    let content = ContentBuilder::new().schema(Some(error.clone())).build();
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content("application/json", content)
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(RefOr::T(response));
                }
            }
        }
        if let Some(components) = openapi.components.as_mut() {
            let bearer = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build();
            components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        }
    }
}

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "scheduler-service HTTP API",
        description = "The HTTP/JSON face of proto.JobsService and scheduler.v1.JobEvents: \
            each resource runs the RPC it mirrors. Field names are the proto field names, \
            enums lower-case words, times RFC 3339. With auth on, send \
            `Authorization: Bearer <JWT>` (admin: everything; executor: events, results, acks; \
            viewer: every read).",
    ),
    paths(
        jobs::create_job, jobs::list_jobs, jobs::get_job, jobs::update_job, jobs::delete_job,
        jobs::pause_job, jobs::resume_job, jobs::trigger_job, jobs::rerun_job, jobs::list_runs,
        jobs::preview, jobs::count_jobs, events::subscribe, events::report_result, events::ack,
        console::session, console::firings,
    ),
    components(schemas(ApiError, model::Job, model::Lagged)),
    modifiers(&Refusals),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "Jobs, their schedules and runs (proto.JobsService)"),
        (name = "events", description = "Events and results (scheduler.v1.JobEvents)"),
        (name = "console", description = "What the web console needs beyond the jobs: \
            the caller, and the last hour of firings"),
    )
)]
pub struct ApiDoc;

/// The document as served: pretty JSON, so that the committed copy reads
/// well and diffs line by line.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"cannot write the document: {err}\"}}"))
}
