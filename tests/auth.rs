//! Authentication, roles and request limits of the real service (start the
//! servers with `scripts/services.sh up`): tokens are made with RSA key
//! pairs generated at test time.

mod common;

use std::{collections::HashMap, sync::OnceLock, time::Duration};

use common::{
    AuthClient, TestApp, TestAuth, create_request, spawn_app, spawn_app_with_auth, test_settings,
    test_vars,
};
use scheduler_service::{
    config::{Settings, vars},
    grpc::{
        auth::LEEWAY_SECS,
        proto,
        scheduler::v1::{
            ReportResultRequest, SubscribeRequest, SubscribeResponse,
            job_events_client::JobEventsClient, subscribe_response::Item,
        },
    },
};
use serde_json::json;
use tonic::{Code, Request, Status, Streaming, service::Interceptor, transport::Channel};

/// The auth service of these tests (one key pair per test process).
fn auth() -> &'static TestAuth {
    static AUTH: OnceLock<TestAuth> = OnceLock::new();
    AUTH.get_or_init(TestAuth::new)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Unpadded base64url, to hand-craft tokens the libraries refuse to make.
fn b64(value: &serde_json::Value) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = value.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// A ListJobs call: reaches the store, harmless.
async fn list(client: &mut AuthClient) -> Result<proto::ListJobsResponse, Status> {
    client
        .list_jobs(proto::ListJobsRequest {
            page: 1,
            size: 10,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Asserts that `authorization` is refused with `code` on two methods, and
/// that the status message does not repeat the token.
async fn assert_refused(app: &TestApp, authorization: Option<&str>, code: Code) {
    let mut client = app.client_with(authorization);
    let listed = list(&mut client).await.expect_err("refused");
    let created = client
        .create_job(create_request("refused", 60_000))
        .await
        .expect_err("refused");
    for status in [listed, created] {
        assert_eq!(status.code(), code, "{authorization:?}: {status:?}");
        if let Some(authorization) = authorization {
            let token = authorization.trim_start_matches("Bearer ");
            for part in token.split('.').filter(|part| part.len() >= 8) {
                assert!(
                    !status.message().contains(part),
                    "the token leaked into {status:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn calls_without_a_valid_admin_token_are_refused() {
    let app = spawn_app_with_auth(auth(), &[]).await;
    // The service tolerates 30 s of clock skew: go a minute beyond it.
    let beyond_leeway = 60;

    assert_refused(&app, None, Code::Unauthenticated).await;
    assert_refused(&app, Some("garbage"), Code::Unauthenticated).await;
    assert_refused(&app, Some("Bearer not.a.jwt"), Code::Unauthenticated).await;
    let expired = auth().sign(&json!({"role": "admin", "exp": now() - beyond_leeway}));
    assert_refused(
        &app,
        Some(&format!("Bearer {expired}")),
        Code::Unauthenticated,
    )
    .await;
    let immature = auth().sign(&json!({
        "role": "admin", "exp": now() + 600, "nbf": now() + beyond_leeway,
    }));
    assert_refused(&app, Some(&immature), Code::Unauthenticated).await;

    let claims = json!({"sub": "mallory", "role": "admin", "exp": now() + 600});
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert_refused(&app, Some(&none), Code::Unauthenticated).await;
    // HS256 keyed with the public key's PEM bytes: the key-confusion attack.
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(auth().public_pem().as_bytes()),
    )
    .unwrap();
    assert_refused(
        &app,
        Some(&format!("Bearer {hs256}")),
        Code::Unauthenticated,
    )
    .await;
    let other = TestAuth::new().sign(&claims);
    assert_refused(&app, Some(&other), Code::Unauthenticated).await;

    let user = auth().token("user");
    assert_refused(
        &app,
        Some(&format!("Bearer {user}")),
        Code::PermissionDenied,
    )
    .await;
    let no_role = auth().sign(&json!({"exp": now() + 600}));
    assert_refused(&app, Some(&no_role), Code::PermissionDenied).await;

    // The unauthenticated calls reached no handler: nothing was stored.
    let mut admin = app.client_with(Some(&auth().token("admin")));
    assert_eq!(list(&mut admin).await.expect("admin lists").total_count, 0);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_token_is_accepted_as_bearer_or_bare() {
    let app = spawn_app_with_auth(auth(), &[]).await;
    let token = auth().token("ADMIN");

    let mut bearer = app.client_with(Some(&format!("Bearer {token}")));
    let id = bearer
        .create_job(create_request("admin job", 60_000))
        .await
        .expect("CreateJob with Bearer")
        .into_inner()
        .id;
    let mut bare = app.client_with(Some(&token));
    let job = bare
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .expect("GetJob with a bare token")
        .into_inner();
    assert_eq!(job.name, "admin job");
    assert_eq!(list(&mut bare).await.expect("ListJobs").total_count, 1);
    bare.delete_job(proto::DeleteJobRequest { id })
        .await
        .expect("DeleteJob");
    app.stop().await;
}

#[tokio::test]
async fn reflection_and_health_need_no_token() {
    let app = spawn_app_with_auth(auth(), &[]).await;

    assert_eq!(
        common::jobs_service_health(&app.channel).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let names = common::reflected_services(&app.channel).await;
    assert!(names.iter().any(|n| n == "proto.JobsService"), "{names:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_oversize_message_is_resource_exhausted_and_the_service_goes_on() {
    let app = spawn_app_with_auth(auth(), &[(vars::GRPC_MAX_MESSAGE_BYTES, "131072")]).await;
    let mut admin = app.client_with(Some(&auth().token("admin")));
    let huge = |bytes: usize| proto::CreateJobRequest {
        job_data: "x".repeat(bytes),
        ..create_request("huge", 60_000)
    };

    // Over the message limit: refused before decoding.
    for bytes in [200 * 1024, 4 * 1024 * 1024] {
        let status = admin.create_job(huge(bytes)).await.expect_err("too large");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");
    }
    // Under it but over job_data's own limit: a precise INVALID_ARGUMENT.
    let status = admin
        .create_job(huge(100 * 1024))
        .await
        .expect_err("job_data too large");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // Without a token, the size does not matter: UNAUTHENTICATED first.
    let status = app
        .client_with(None)
        .create_job(huge(200 * 1024))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The service still answers, on the same connection.
    admin
        .create_job(create_request("after", 60_000))
        .await
        .expect("a normal call after the oversize ones");
    assert_eq!(list(&mut admin).await.expect("ListJobs").total_count, 1);
    app.stop().await;
}

#[tokio::test]
async fn an_oversize_message_is_resource_exhausted_without_auth_too() {
    let mut app = spawn_app(&[]).await;
    let status = app
        .client
        .create_job(proto::CreateJobRequest {
            job_data: "x".repeat(300 * 1024),
            ..create_request("huge", 60_000)
        })
        .await
        .expect_err("over the default 256 KiB");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    app.client
        .create_job(create_request("after", 60_000))
        .await
        .expect("a normal call after");
    app.stop().await;
}

/// Accepts TCP connections and never answers: a store that hangs.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_call_over_the_request_timeout_is_cut_off() {
    // The store never answers and its own timeout is 10 s: only the
    // request timeout can end the call, and it says so (CANCELLED), where
    // the store's timeout would say UNAVAILABLE.
    let (port, hole) = black_hole().await;
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true");
    let app = spawn_app(&[
        (vars::DATABASE_URI, &uri),
        (vars::DATABASE_TIMEOUT_MS, "10000"),
        (vars::GRPC_REQUEST_TIMEOUT_MS, "300"),
    ])
    .await;
    let mut client = app.client_with(None);
    let status = tokio::time::timeout(Duration::from_secs(90), list(&mut client))
        .await
        .expect("the request timeout ends the call")
        .expect_err("cut off");
    // tonic answers an expired server timeout with CANCELLED.
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("still answering");
    app.stop().await;
    hole.abort();
}

#[test]
fn production_without_a_key_refuses_to_start() {
    let vars: HashMap<String, String> = test_vars(&[(vars::ENVIRONMENT, "production")])
        .into_iter()
        .collect();
    let err = Settings::from_lookup(|name| vars.get(name).cloned()).expect_err("refused");
    assert_eq!(err.name, vars::AUTH_PUBLIC_KEY_FILE, "{err}");
    assert!(err.to_string().contains("AUTH_PUBLIC_KEY_FILE"), "{err}");

    let key_file = auth().public_key_file();
    let settings = test_settings(&[
        (vars::ENVIRONMENT, "production"),
        (vars::AUTH_PUBLIC_KEY_FILE, &key_file),
    ]);
    assert!(settings.security.auth_public_key.is_some());
}

#[test]
fn an_invalid_key_file_stops_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pem");
    std::fs::write(
        &path,
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let path = path.to_string_lossy().into_owned();
    for file in [path.as_str(), "/nonexistent/auth.pem"] {
        let vars: HashMap<String, String> = test_vars(&[(vars::AUTH_PUBLIC_KEY_FILE, file)])
            .into_iter()
            .collect();
        let err = Settings::from_lookup(|name| vars.get(name).cloned()).expect_err(file);
        assert_eq!(err.name, vars::AUTH_PUBLIC_KEY_FILE, "{err}");
    }
}

/// A JobEvents client that sends `Bearer <token>` with every call.
fn events_client(
    channel: &Channel,
    token: &str,
) -> JobEventsClient<
    tonic::service::interceptor::InterceptedService<Channel, impl Interceptor + use<>>,
> {
    let value: tonic::metadata::MetadataValue<_> =
        format!("Bearer {token}").parse().expect("ASCII metadata");
    JobEventsClient::with_interceptor(channel.clone(), move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    })
}

/// The next message of an event stream, bounding only the hang.
async fn next_message(stream: &mut Streaming<SubscribeResponse>) -> Result<Item, Status> {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the stream answers within 20 s")?
        .and_then(|response| response.item)
        .ok_or_else(|| Status::internal("the stream ended without a status"))
}

/// Whether `result` is a refusal by the role rule.
fn denied<T: std::fmt::Debug>(result: &Result<T, Status>) -> bool {
    matches!(result, Err(status) if status.code() == Code::PermissionDenied)
}

#[tokio::test]
async fn each_role_calls_only_its_methods() {
    let app = spawn_app_with_auth(auth(), &[]).await;
    let admin = auth().token("admin");
    // (role, may read jobs, may change them, may subscribe, may report)
    for (role, may_read, may_change, may_subscribe, may_report) in [
        ("admin", true, true, true, true),
        ("Executor", false, false, true, true),
        ("executor", false, false, true, true),
        ("viewer", true, false, true, false),
        ("user", false, false, false, false),
        ("auditor", false, false, false, false),
    ] {
        let token = auth().token(role);
        let mut jobs = app.client_with(Some(&token));
        let listed = list(&mut jobs).await;
        let created = jobs.create_job(create_request(role, 60_000)).await;
        let mut events = events_client(&app.channel, &token);
        let subscribed = events.subscribe(SubscribeRequest::default()).await;
        // An unknown job: a caller let through reaches the handler (NOT_FOUND).
        let reported = events
            .report_result(ReportResultRequest {
                id: bson::oid::ObjectId::new().to_hex(),
                status: proto::JobStatus::Succeeded as i32,
                scheduled_key: None,
                ..Default::default()
            })
            .await;
        assert_eq!(listed.is_ok(), may_read, "{role} ListJobs: {listed:?}");
        assert_eq!(created.is_ok(), may_change, "{role} CreateJob: {created:?}");
        assert_eq!(denied(&listed), !may_read, "{role}: {listed:?}");
        assert_eq!(denied(&created), !may_change, "{role}: {created:?}");
        assert_eq!(
            denied(&subscribed),
            !may_subscribe,
            "{role}: {subscribed:?}"
        );
        assert_eq!(denied(&reported), !may_report, "{role}: {reported:?}");
        if may_report {
            assert_eq!(
                reported.expect_err("unknown job").code(),
                Code::NotFound,
                "{role}"
            );
        }
        if !may_subscribe {
            continue;
        }
        // The stream is live: a job created now arrives on it.
        let mut stream = subscribed.expect("subscribed").into_inner();
        let name = format!("seen by {role}");
        app.client_with(Some(&admin))
            .create_job(create_request(&name, 60_000))
            .await
            .expect("admin creates");
        loop {
            match next_message(&mut stream).await.expect("an event") {
                Item::Event(event) if event.job.as_ref().is_some_and(|j| j.name == name) => break,
                _ => continue,
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_subscribe_stream_ends_when_its_token_expires() {
    let app = spawn_app_with_auth(auth(), &[]).await;
    // Accepted within the leeway, and past it a few seconds from now.
    let leeway = i64::try_from(LEEWAY_SECS).unwrap();
    let token = auth().sign(&json!({"role": "executor", "exp": now() - leeway + 4}));
    let mut stream = events_client(&app.channel, &token)
        .subscribe(SubscribeRequest::default())
        .await
        .expect("accepted while valid")
        .into_inner();
    app.client_with(Some(&auth().token("admin")))
        .create_job(create_request("before expiry", 60_000))
        .await
        .expect("admin creates");
    let first = next_message(&mut stream).await.expect("an event first");
    assert!(matches!(first, Item::Event(_)), "{first:?}");
    let ended = loop {
        match next_message(&mut stream).await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert_eq!(ended.message(), "token expired");
    // A new stream needs a new token.
    let again = events_client(&app.channel, &token)
        .subscribe(SubscribeRequest::default())
        .await
        .expect_err("expired");
    assert_eq!(again.code(), Code::Unauthenticated, "{again:?}");
    app.stop().await;
}
