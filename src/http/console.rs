//! The web console: its files, served at `/`, and the two resources it
//! needs beyond the jobs API (who the caller is, and the last hour of
//! firings).
//!
//! The console is plain HTML, CSS and JavaScript in `console/`, with no
//! build step: the files are compiled into the binary (`include_str!`),
//! so the service serves them with nothing to install, and the page runs
//! on the HTTP API as any client does (the token, kept in the browser's
//! session storage, goes in `Authorization`). The files are open (they
//! hold no data); everything they show comes through the API's checks.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};

use super::{
    Api,
    error::ApiError,
    model::{FiringMinute, Firings, Session},
};
use crate::grpc::auth::ADMIN_ROLE;

/// The page, its script and its style sheet, by path.
const FILES: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "/console/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "/console/app.css",
        "text/css; charset=utf-8",
        include_str!("../../console/app.css"),
    ),
];

/// What the page may load and call: its own files and the API, nothing
/// inline, nothing from elsewhere, and it may not be framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The console's files: each path and the handler that serves it.
pub fn files() -> impl Iterator<Item = (&'static str, axum::routing::MethodRouter<Api>)> {
    FILES.into_iter().map(|(path, content_type, body)| {
        let serve = move || async move { file(content_type, body) };
        (path, axum::routing::get(serve))
    })
}

/// One file, with headers that keep the page to itself and let a new
/// version of the service be picked up at once.
fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Who the caller is: whether a token is needed and, with one, its role
/// and subject (any valid token may ask; without auth every caller is
/// an admin).
#[utoipa::path(get, path = "/v1/session", tag = "console",
    responses((status = 200, description = "The caller", body = Session)))]
pub async fn session(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<Session>, ApiError> {
    let caller = api.auth.authenticate(&headers)?;
    Ok(Json(Session {
        auth_required: api.auth.is_enabled(),
        role: caller
            .as_ref()
            .map_or(ADMIN_ROLE, |caller| caller.role.claim())
            .to_owned(),
        subject: caller.and_then(|caller| caller.subject),
    }))
}

/// This replica's firings of the last hour, by minute: how many, how
/// late, how their runs ended (readable by whoever may list jobs).
#[utoipa::path(get, path = "/v1/stats/firings", tag = "console",
    responses((status = 200, description = "The last hour, by minute", body = Firings)))]
pub async fn firings(State(api): State<Api>) -> Json<Firings> {
    let minutes = api.metrics.last_hour().into_iter();
    Json(Firings {
        minutes: minutes.map(FiringMinute::from).collect(),
    })
}
