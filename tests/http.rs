//! The HTTP/JSON API through a real HTTP client (reqwest), against the
//! service on the test servers (the MongoDB-protocol server and the
//! Kafka-protocol broker) or in embedded mode: every resource, the one
//! error shape, idempotent creation, the SSE event stream closing the loop
//! with a result, tokens and roles, the body limit, and the OpenAPI
//! document against its committed copy.

mod common;

use std::time::Duration;

use common::{TestApp, TestAuth, embedded::spawn_embedded, spawn_app, spawn_app_with_auth};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use scheduler_service::config::vars;
use serde_json::{Value, json};

/// Longest wait for anything that must happen: a bound on a hang only.
const HANG: Duration = Duration::from_secs(60);

/// The committed copy of the OpenAPI document.
const OPENAPI_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

/// A client of one instance's HTTP API, sending `token` if given.
struct Http {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Http {
    fn of(app: &TestApp) -> Http {
        Http {
            base: format!("http://127.0.0.1:{}", app.http_port),
            client: reqwest::Client::new(),
            token: None,
        }
    }

    fn with_token(&self, token: &str) -> Http {
        Http {
            base: self.base.clone(),
            client: self.client.clone(),
            token: Some(token.to_owned()),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `body` (if any) and reads the status and the JSON answer.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{status}: not JSON ({err}): {text}"));
        (status, json)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Creates `body`; the job's id.
    async fn create(&self, body: Value) -> String {
        let (status, created) = self.post("/v1/jobs", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().expect("an id").to_owned()
    }
}

/// A one-shot email job due at `at` (RFC 3339).
fn email(name: &str, at: &str) -> Value {
    json!({
        "name": name,
        "description": format!("{name} description"),
        "schedule_time": at,
        "job_type": "email",
        "job_data": "{\"to\":\"a@example.com\"}",
    })
}

fn in_an_hour() -> String {
    (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339()
}

/// Asserts an error answer: its status, code and field.
fn refused(answer: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["field"].as_str(), field, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn jobs_are_created_read_listed_updated_and_deleted() {
    let app = spawn_app(&[]).await;
    let http = Http::of(&app);
    let at = in_an_hour();
    let response = http
        .request(Method::POST, "/v1/jobs")
        .json(&email("report", &at))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().expect("ASCII");
    let location = location.to_owned();
    let id = response.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    assert_eq!(location, format!("/v1/jobs/{id}"));

    let (status, job) = http.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&job["id"], &job["name"], &job["status"], &job["job_type"]),
        (
            &json!(id),
            &json!("report"),
            &json!("scheduled"),
            &json!("email")
        )
    );
    let due: chrono::DateTime<chrono::Utc> = job["schedule_time"]
        .as_str()
        .expect("a time")
        .parse()
        .expect("RFC 3339");
    assert_eq!(
        due.timestamp_millis(),
        at.parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .timestamp_millis()
    );

    let (status, page) = http.get("/v1/jobs?page=1&size=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&page["total_count"], &page["page"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(page["jobs"][0]["id"], id);

    let mut changed = email("renamed", &in_an_hour());
    changed["job_type"] = json!("sms");
    let (status, done) = http.call(Method::PUT, &location, Some(changed)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (_, job) = http.get(&location).await;
    assert_eq!(
        (&job["name"], &job["job_type"]),
        (&json!("renamed"), &json!("sms"))
    );

    let (status, _) = http.call(Method::DELETE, &location, None).await;
    assert_eq!(status, StatusCode::OK);
    refused(
        &http.get(&location).await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_in_one_shape_naming_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let http = Http::of(&app);
    let mut empty_data = email("x", &in_an_hour());
    empty_data["job_data"] = json!("");
    let cases = [
        (empty_data, "job_data"),
        (
            json!({"name": "x", "job_type": "fax", "job_data": "{}"}),
            "job_type",
        ),
        (
            json!({"name": "x", "job_type": "email", "job_data": "{}",
                   "recurrence": {"interval_seconds": "often"}}),
            "recurrence.interval_seconds",
        ),
        (
            json!({"name": "x", "job_type": "email", "job_data": "{}",
                   "recurrence": {"cron_expression": "61 * * * *"}}),
            "cron_expression",
        ),
    ];
    for (body, field) in cases {
        let answer = http.post("/v1/jobs", body).await;
        refused(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            Some(field),
        );
    }
    let not_json = http
        .request(Method::POST, "/v1/jobs")
        .body("not json")
        .send()
        .await
        .expect("an answer");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let bad_id = http.get("/v1/jobs/nope").await;
    refused(
        &bad_id,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("id"),
    );
    let bad_kind = http.get("/v1/jobs?schedule_kind=weekly").await;
    refused(
        &bad_kind,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("schedule_kind"),
    );
    let bad_status = http.get("/v1/jobs?status=late").await;
    refused(
        &bad_status,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        None,
    );
    let bad_page = http.get("/v1/jobs?page=first").await;
    refused(&bad_page, StatusCode::BAD_REQUEST, "invalid_argument", None);
    let bad_paused = http.get("/v1/jobs?paused=maybe").await;
    refused(
        &bad_paused,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        None,
    );
    let unknown = http.get("/v2/things").await;
    refused(&unknown, StatusCode::NOT_FOUND, "not_found", None);
    let wrong_method = http.call(Method::PATCH, "/v1/jobs", None).await;
    assert_eq!(wrong_method.0, StatusCode::METHOD_NOT_ALLOWED);
    let not_found = http.get("/v1/jobs/6b0d4764cdd46504f556f794").await;
    refused(&not_found, StatusCode::NOT_FOUND, "not_found", None);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_makes_creation_idempotent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let http = Http::of(&app);
    let body = email("once", &in_an_hour());
    let create = || {
        http.request(Method::POST, "/v1/jobs")
            .header("Idempotency-Key", "order-42")
            .json(&body)
            .send()
    };
    let first: Value = create().await.expect("answer").json().await.expect("JSON");
    let again: Value = create().await.expect("answer").json().await.expect("JSON");
    assert_eq!(first["id"], again["id"]);
    let (_, job) = http
        .get(&format!("/v1/jobs/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(job["client_key"], "order-42");
    let (_, page) = http.get("/v1/jobs").await;
    assert_eq!(page["total_count"], 1);

    let mut other = body.clone();
    other["client_key"] = json!("order-43");
    let response = http
        .request(Method::POST, "/v1/jobs")
        .header("Idempotency-Key", "order-42")
        .json(&other)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refusal: Value = response.json().await.expect("JSON");
    assert_eq!(refusal["field"], "client_key");
    app.stop().await;
}

#[tokio::test]
async fn recurring_jobs_are_paused_resumed_triggered_previewed_and_their_runs_listed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let http = Http::of(&app);
    let id = http
        .create(json!({
            "name": "nightly", "job_type": "email", "job_data": "{}",
            "recurrence": {"cron_expression": "0 3 * * *", "time_zone": "Europe/Paris"},
        }))
        .await;
    let job = format!("/v1/jobs/{id}");
    let (_, paused) = http.post(&format!("{job}/pause"), json!({})).await;
    assert_eq!(paused["paused"], true, "{paused}");
    let (_, resumed) = http.post(&format!("{job}/resume"), json!({})).await;
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["recurrence"]["time_zone"], "Europe/Paris");

    let (status, preview) = http
        .post("/v1/preview", json!({"id": id, "count": 3}))
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    let times: Vec<&str> = preview["occurrences"]
        .as_array()
        .expect("occurrences")
        .iter()
        .map(|o| o["time"].as_str().expect("a time"))
        .collect();
    assert_eq!(times.len(), 3);
    assert!(
        times
            .iter()
            .all(|t| t.contains("T01:00:00") || t.contains("T02:00:00")),
        "{times:?}"
    );
    assert_eq!(preview["description"], "At 03:00, in Europe/Paris");

    let (status, triggered) = http.post(&format!("{job}/trigger"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{triggered}");
    let runs = wait_for(HANG, async || {
        let (_, runs) = http.get(&format!("{job}/runs")).await;
        (runs["total_count"] == 1).then_some(runs)
    })
    .await;
    assert_eq!(runs["runs"][0]["cause"], "manual", "{runs}");
    assert_eq!(runs["runs"][0]["outcome"], "running", "{runs}");

    // A one-shot job that has not finished cannot be rerun.
    let one_shot = http.create(email("later", &in_an_hour())).await;
    // Filters: each admits its jobs, and the total counts them.
    for (query, expected) in [
        ("schedule_kind=recurring", &id),
        ("schedule_kind=once&job_type=email", &one_shot),
        ("name_contains=NIGHT", &id),
        ("status=scheduled&name_contains=ate", &one_shot),
        // Resumed: no job is paused yet.
        ("paused=false&schedule_kind=recurring", &id),
    ] {
        let (status, page) = http.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            (&page["total_count"], &page["jobs"][0]["id"]),
            (&json!(1), &json!(expected)),
            "{query}"
        );
    }
    // Paused again: `paused` reaches the store, alone and with another filter.
    let (_, paused) = http.post(&format!("{job}/pause"), json!({})).await;
    assert_eq!(paused["paused"], true, "{paused}");
    for (query, expected) in [
        ("paused=true", &id),
        ("paused=false", &one_shot),
        ("paused=true&name_contains=night", &id),
    ] {
        let (status, page) = http.get(&format!("/v1/jobs?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            (&page["total_count"], &page["jobs"][0]["id"]),
            (&json!(1), &json!(expected)),
            "{query}"
        );
    }
    let (_, none) = http.get("/v1/jobs?paused=true&schedule_kind=once").await;
    assert_eq!(
        (&none["total_count"], &none["jobs"]),
        (&json!(0), &json!([])),
        "{none}"
    );
    let rerun = http
        .post(&format!("/v1/jobs/{one_shot}/rerun"), json!({}))
        .await;
    refused(
        &rerun,
        StatusCode::PRECONDITION_FAILED,
        "failed_precondition",
        None,
    );
    app.stop().await;
}

/// Polls `check` until it gives a value, for at most `bound`.
async fn wait_for<T>(bound: Duration, check: impl AsyncFn() -> Option<T>) -> T {
    tokio::time::timeout(bound, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the condition came about")
}

/// The SSE events of a response, as (event name, data) pairs.
struct EventStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    buffer: String,
}

impl EventStream {
    async fn open(http: &Http, query: &str) -> EventStream {
        let response = http
            .request(Method::GET, &format!("/v1/events{query}"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(str::to_owned)
                };
                if let (Some(event), Some(data)) = (field("event: "), field("data: ")) {
                    return (event, serde_json::from_str(&data).expect("JSON data"));
                }
                continue;
            }
            let chunk = tokio::time::timeout(HANG, self.body.next()).await;
            let chunk = chunk
                .expect("an event in time")
                .expect("open")
                .expect("bytes");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test]
async fn events_stream_as_sse_and_a_result_over_http_closes_the_loop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let http = Http::of(&app);
    let mut events = EventStream::open(&http, "?kinds=create,run,result&job_types=email").await;
    let sms = email("text", &in_an_hour());
    let mut sms = sms;
    sms["job_type"] = json!("sms");
    http.create(sms).await;
    let id = http
        .create(email("now", &chrono::Utc::now().to_rfc3339()))
        .await;
    let (kind, created) = events.next().await;
    assert_eq!(
        (kind.as_str(), &created["job"]["id"]),
        ("create", &json!(id))
    );
    let (kind, run) = events.next().await;
    assert_eq!(
        (kind.as_str(), &run["job"]["id"]),
        ("run", &json!(id)),
        "{run}"
    );
    let key = run["scheduled_key"].as_i64().expect("a fire token");

    let result = json!({"status": "succeeded", "scheduled_key": key, "executor": "curl"});
    let (status, outcome) = http.post(&format!("/v1/jobs/{id}/result"), result).await;
    assert_eq!(
        (status, &outcome["outcome"]),
        (StatusCode::OK, &json!("stored"))
    );
    let (_, job) = http.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["status"], "succeeded");
    let (_, runs) = http.get(&format!("/v1/jobs/{id}/runs")).await;
    assert_eq!(
        (&runs["runs"][0]["outcome"], &runs["runs"][0]["executor"]),
        (&json!("succeeded"), &json!("curl"))
    );
    // The stored result is noticed on the stream, the job as it left it.
    let (kind, noticed) = events.next().await;
    assert_eq!(
        (
            kind.as_str(),
            &noticed["job"]["id"],
            &noticed["job"]["status"]
        ),
        ("result", &json!(id), &json!("succeeded")),
        "{noticed}"
    );
    let stale = json!({"status": "failed", "scheduled_key": key + 1});
    let (_, outcome) = http.post(&format!("/v1/jobs/{id}/result"), stale).await;
    assert_eq!(outcome["outcome"], "stale");
    // A refused result is not: the next event is a later job's creation.
    let later = http.create(email("later", &in_an_hour())).await;
    let (kind, next) = events.next().await;
    assert_eq!(
        (kind.as_str(), &next["job"]["id"]),
        ("create", &json!(later))
    );
    let bad_kind = http.get("/v1/events?kinds=explode").await;
    refused(
        &bad_kind,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        Some("kinds"),
    );
    app.stop().await;
}

#[tokio::test]
async fn tokens_and_roles_are_checked_as_for_grpc() {
    let auth = TestAuth::new();
    let app = spawn_app_with_auth(&auth, &[]).await;
    let http = Http::of(&app);
    refused(
        &http.get("/v1/jobs").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
    let forged = http.with_token("not.a.token");
    refused(
        &forged.get("/v1/jobs").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
    let executor = http.with_token(&auth.token("executor"));
    let answer = executor.get("/v1/jobs").await;
    refused(&answer, StatusCode::FORBIDDEN, "permission_denied", None);
    let response = executor
        .request(Method::GET, "/v1/events")
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an executor may subscribe"
    );
    let admin = http.with_token(&auth.token("admin"));
    let id = admin.create(email("guarded", &in_an_hour())).await;
    let (status, _) = admin.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    // The document is public, as gRPC reflection is.
    let (status, _) = http.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_session_names_the_callers_role_and_the_firings_are_for_readers() {
    let auth = TestAuth::new();
    let app = spawn_app_with_auth(&auth, &[]).await;
    let http = Http::of(&app);
    refused(
        &http.get("/v1/session").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        None,
    );
    for role in ["admin", "viewer", "executor"] {
        let (status, session) = http.with_token(&auth.token(role)).get("/v1/session").await;
        assert_eq!(status, StatusCode::OK, "{session}");
        assert_eq!(
            session,
            json!({"auth_required": true, "role": role, "subject": "tester"})
        );
    }
    let viewer = http.with_token(&auth.token("viewer"));
    let (status, firings) = viewer.get("/v1/stats/firings").await;
    assert_eq!(status, StatusCode::OK, "{firings}");
    assert_eq!(firings["minutes"].as_array().map(Vec::len), Some(60));
    let admin = http.with_token(&auth.token("admin"));
    admin.create(email("counted", &in_an_hour())).await;
    let (status, counts) = viewer.get("/v1/stats/jobs").await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(
        counts,
        json!({
            "total": 1, "recurring": 0, "paused": 0,
            "by_status": {"pending": 0, "scheduled": 1, "running": 0, "succeeded": 0, "failed": 0},
            "by_type": {"email": 1, "sms": 0},
        })
    );
    refused(
        &viewer
            .post("/v1/jobs", email("by a viewer", &in_an_hour()))
            .await,
        StatusCode::FORBIDDEN,
        "permission_denied",
        None,
    );
    let executor = http.with_token(&auth.token("executor"));
    refused(
        &executor.get("/v1/stats/firings").await,
        StatusCode::FORBIDDEN,
        "permission_denied",
        None,
    );
    app.stop().await;
}

#[tokio::test]
async fn the_firings_of_the_last_minute_count_a_job_fired_now_and_its_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let http = Http::of(&app);
    let (_, session) = http.get("/v1/session").await;
    assert_eq!(session, json!({"auth_required": false, "role": "admin"}));
    let now = chrono::Utc::now().to_rfc3339();
    let id = http.create(email("now", &now)).await;
    let fired = |firings: &Value| -> u64 {
        let minutes = firings["minutes"].as_array().expect("minutes");
        minutes
            .iter()
            .map(|m| m["fired"].as_u64().unwrap_or(0))
            .sum()
    };
    let started = tokio::time::Instant::now();
    let firings = loop {
        let (_, firings) = http.get("/v1/stats/firings").await;
        if fired(&firings) == 1 {
            break firings;
        }
        assert!(started.elapsed() < HANG, "never fired: {firings}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let minute = firings["minutes"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["fired"] == 1))
        .expect("the minute it fired in");
    assert!(minute["lateness_p50_ms"].is_u64(), "{minute}");
    assert_eq!(minute["lateness_p50_ms"], minute["lateness_max_ms"]);
    let result = json!({"status": "failed", "error": "no route"});
    let (status, _) = http.post(&format!("/v1/jobs/{id}/result"), result).await;
    assert_eq!(status, StatusCode::OK);
    let (_, firings) = http.get("/v1/stats/firings").await;
    let failed: u64 = firings["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .map(|m| m["failed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(failed, 1, "{firings}");
    app.stop().await;
}

#[tokio::test]
async fn the_console_is_served_at_the_root_and_kept_to_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let http = Http::of(&app);
    for (path, content_type, needle) in [
        ("/", "text/html", "/console/app.js"),
        ("/console/app.js", "text/javascript", "/v1/jobs"),
        ("/console/app.css", "text/css", ":root"),
    ] {
        let response = http
            .request(Method::GET, path)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .is_ok_and(|t| t.starts_with(content_type)),
            "{path}: {headers:?}"
        );
        let policy = headers["content-security-policy"].to_str().expect("ASCII");
        assert!(
            policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.expect("a body");
        assert!(body.contains(needle), "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_message_limit_is_413() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[(vars::GRPC_MAX_MESSAGE_BYTES, "73728")]).await;
    let http = Http::of(&app);
    let mut big = email("big", &in_an_hour());
    big["job_data"] = json!("x".repeat(80 * 1024));
    let answer = http.post("/v1/jobs", big).await;
    refused(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "resource_exhausted",
        None,
    );
    let (_, page) = http.get("/v1/jobs").await;
    assert_eq!(page["total_count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_copy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = spawn_embedded(dir.path(), &[]).await;
    let served = reqwest::get(format!("http://127.0.0.1:{}/openapi.json", app.http_port))
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a body");
    let document: Value = serde_json::from_str(&served).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}/runs",
        "/v1/events",
        "/v1/preview",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is documented");
    }
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(OPENAPI_FILE, &served).expect("write the copy");
    }
    let committed = std::fs::read_to_string(OPENAPI_FILE).unwrap_or_default();
    assert!(
        committed == served,
        "docs/openapi.json differs from the served document; if the change is meant, \
         run `UPDATE_OPENAPI=1 cargo test --test http the_served_openapi` and commit it"
    );
    app.stop().await;
}

/// A request whose body comes only as the test sends it: the call holds
/// its place among the calls in flight until the body ends.
fn trickled(http: &Http) -> (tokio::sync::mpsc::Sender<Vec<u8>>, reqwest::RequestBuilder) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let chunks = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let request = http
        .request(Method::POST, "/v1/jobs")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks));
    (tx, request)
}

#[tokio::test]
async fn calls_over_the_limit_are_429_and_calls_over_the_timeout_503() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = [
        (vars::GRPC_MAX_CONCURRENT_CALLS, "1"),
        (vars::GRPC_REQUEST_TIMEOUT_MS, "1500"),
    ];
    let app = spawn_embedded(dir.path(), &limits).await;
    let http = Http::of(&app);
    // While a slow call holds the one place, another is refused at once.
    // (The slow call itself is refused if it came while a probe held the
    // place: it is started again then.)
    let (body, slow, refusal) = loop {
        let (body, request) = trickled(&http);
        body.send(b"{\"name\":".to_vec())
            .await
            .expect("the first bytes");
        let slow = tokio::spawn(request.send());
        let refusal = wait_for(HANG, async || {
            let answer = http.get("/v1/jobs").await;
            let over = answer.0 == StatusCode::TOO_MANY_REQUESTS;
            (over || slow.is_finished()).then_some(over.then_some(answer))
        })
        .await;
        if let Some(refusal) = refusal {
            break (body, slow, refusal);
        }
    };
    refused(
        &refusal,
        StatusCode::TOO_MANY_REQUESTS,
        "resource_exhausted",
        None,
    );
    // The slow call never ends its body: the timeout answers it.
    let slow = slow.await.expect("the task").expect("an answer");
    assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(slow.headers().contains_key("retry-after"));
    let slow: Value = slow.json().await.expect("JSON");
    assert_eq!(slow["code"], "deadline_exceeded", "{slow}");
    drop(body);
    let (status, _) = http.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::OK, "the place is free again");
    app.stop().await;
}
