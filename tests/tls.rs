//! TLS of the gRPC server, end to end, with certificates signed at test
//! time by a CA the test makes (rcgen): every call of every service through
//! a channel that trusts that CA, plaintext and other CAs refused; and the
//! binary as it ships, which stops with exit code 2 and one line naming the
//! variable for a bad certificate file or a certificate that is not valid
//! now, and warns of one that expires within a week. The service runs on
//! its embedded store: these tests need no database or broker server.

mod common;

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime},
};

use chrono::{DateTime, TimeDelta, TimeZone, Timelike, Utc};
use common::{TestAuth, create_request, unique};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use scheduler_service::{
    config::{Settings, vars},
    grpc::{
        proto::{self, jobs_service_client::JobsServiceClient},
        scheduler::v1::{
            EventKind, ReportResultRequest, SubscribeRequest, SubscribeResponse,
            job_events_client::JobEventsClient, subscribe_response::Item,
        },
    },
    startup::{Application, StartupError},
    telemetry::init_tracing,
};
use test_support::{ChildProcess, free_port, log_file};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    Request, Streaming,
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::{Channel, ClientTlsConfig},
};
use tonic_health::pb::health_check_response::ServingStatus;

/// Longest wait for anything that must happen: a bound on a hang only.
const HANG: Duration = Duration::from_secs(90);

/// A certificate authority made at test time, and the server certificates
/// it signs, written to PEM files in its own temporary folder.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The files (certificate, key) of a certificate for `localhost` valid
    /// from `not_before` to `not_after`: the values of GRPC_TLS_CERT_FILE
    /// and GRPC_TLS_KEY_FILE.
    fn server_files(
        &self,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
        params.not_before = SystemTime::from(not_before).into();
        params.not_after = SystemTime::from(not_after).into();
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let name = unique();
        let write = |suffix: &str, pem: String| {
            let path = self.dir.path().join(format!("{name}-{suffix}.pem"));
            std::fs::write(&path, pem).expect("PEM file");
            path.to_string_lossy().into_owned()
        };
        (write("cert", cert.pem()), write("key", key.serialize_pem()))
    }

    /// The files of a certificate valid from yesterday for a year.
    fn valid_server_files(&self) -> (String, String) {
        let now = Utc::now();
        self.server_files(now - TimeDelta::days(1), now + TimeDelta::days(365))
    }

    /// An HTTP client trusting only this CA, that resolves `localhost` to
    /// 127.0.0.1.
    fn http_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.issuer.pem().as_bytes()).expect("CA");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .resolve("localhost", ([127, 0, 0, 1], 0).into())
            .build()
            .expect("client")
    }

    /// A channel to the gRPC server on `port` over TLS, trusting only this
    /// CA, for the name `localhost` (it connects at the first call).
    fn channel(&self, port: u16) -> Channel {
        let tls = ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(self.issuer.pem()))
            .domain_name("localhost");
        Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .expect("URI")
            .tls_config(tls)
            .expect("client TLS")
            .connect_lazy()
    }
}

/// Sends `Bearer <token>` with every call.
fn bearer(token: &str) -> impl Interceptor + Clone + use<> {
    let value: MetadataValue<Ascii> = format!("Bearer {token}").parse().expect("ASCII");
    move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    }
}

/// The services that server reflection lists on a channel, through
/// tonic-reflection's module `v1` or `v1alpha` (the same messages in two
/// packages, so a macro rather than a function).
macro_rules! reflected_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let response = ServerReflectionClient::new($channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect(concat!("reflection ", stringify!($version)))
            .into_inner()
            .message()
            .await
            .expect("a reflection message")
            .expect("a reflection response");
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection response {other:?}"),
        }
    }};
}

/// Plaintext HTTP/2, even with a valid token, and TLS clients that trust
/// another CA reach nothing on `port`.
async fn assert_refused_without_tls_to_this_ca(port: u16, admin: impl Interceptor) {
    let plaintext = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("URI")
        .connect_lazy();
    JobsServiceClient::with_interceptor(plaintext, admin)
        .create_job(create_request("over plaintext", 60_000))
        .await
        .expect_err("no plaintext gRPC on a TLS port");
    tonic_health::pb::health_client::HealthClient::new(TestCa::new().channel(port))
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect_err("a certificate of an unknown CA is refused");
}

/// Health and both versions of reflection answer on `channel`, with no token.
async fn assert_health_and_reflection(channel: &Channel) {
    assert_eq!(
        common::jobs_service_health(channel).await,
        ServingStatus::Serving
    );
    for names in [
        reflected_services!(v1, channel),
        reflected_services!(v1alpha, channel),
    ] {
        for service in ["proto.JobsService", "scheduler.v1.JobEvents"] {
            assert!(names.iter().any(|n| n == service), "{service}: {names:?}");
        }
    }
}

/// Reads `stream` until the run event of job `id`.
async fn wait_for_run(stream: &mut Streaming<SubscribeResponse>, id: &str) {
    loop {
        let message = tokio::time::timeout(HANG, stream.message())
            .await
            .expect("an event within 90 s")
            .expect("the stream goes on")
            .expect("the stream stays open");
        if let Some(Item::Event(event)) = message.item
            && event.kind == EventKind::Run as i32
            && event.job.is_some_and(|job| job.id == id)
        {
            return;
        }
    }
}

/// The service running in this process on the embedded store (no
/// database or broker server: the store plays no part in TLS).
struct TlsApp {
    port: u16,
    http_port: u16,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), StartupError>>,
    _data: tempfile::TempDir,
}

impl TlsApp {
    /// Serves TLS with a certificate of `ca`, taking tokens of `auth`.
    async fn start(ca: &TestCa, auth: &TestAuth) -> Self {
        let (cert_file, key_file) = ca.valid_server_files();
        let data = tempfile::tempdir().expect("temp dir");
        let vars: HashMap<&str, String> = [
            (vars::DATA_DIR, data.path().to_string_lossy().into_owned()),
            (vars::SERVER_HOST, "127.0.0.1".to_owned()),
            (vars::SERVER_PORT, "0".to_owned()),
            (vars::METRICS_PORT, "0".to_owned()),
            (vars::HTTP_PORT, "0".to_owned()),
            (vars::SHUTDOWN_GRACE_SECS, "2".to_owned()),
            (vars::GRPC_TLS_CERT_FILE, cert_file),
            (vars::GRPC_TLS_KEY_FILE, key_file),
            (vars::AUTH_PUBLIC_KEY_FILE, auth.public_key_file()),
        ]
        .into();
        let settings = Settings::from_lookup(|name| vars.get(name).cloned()).expect("settings");
        init_tracing(settings.environment);
        let app = Application::build(settings).await.expect("builds");
        TlsApp {
            port: app.port(),
            http_port: app.http_port(),
            shutdown: app.shutdown_token(),
            server: tokio::spawn(app.run_until_stopped()),
            _data: data,
        }
    }

    /// Stops the service and waits until it has.
    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = self.server.await.expect("the service's task");
        stopped.expect("stops cleanly");
    }
}

#[tokio::test]
async fn every_call_is_served_over_tls_and_plaintext_is_refused() {
    let (ca, auth) = (TestCa::new(), TestAuth::new());
    let app = TlsApp::start(&ca, &auth).await;
    let port = app.port;
    let channel = ca.channel(port);
    let admin = bearer(&auth.token("admin"));
    assert_refused_without_tls_to_this_ca(port, admin.clone()).await;
    assert_health_and_reflection(&channel).await;

    let mut jobs = JobsServiceClient::with_interceptor(channel.clone(), admin);
    let executor = bearer(&auth.token("executor"));
    let mut events = JobEventsClient::with_interceptor(channel, executor);
    let mut stream = events
        .subscribe(SubscribeRequest::default())
        .await
        .expect("Subscribe over TLS")
        .into_inner();
    let list = proto::ListJobsRequest {
        page: 1,
        size: 10,
        ..Default::default()
    };
    let listed = jobs
        .list_jobs(list.clone())
        .await
        .expect("ListJobs over TLS");
    assert_eq!(
        listed.into_inner().total_count,
        0,
        "plaintext created nothing"
    );
    let kept = jobs.create_job(create_request("kept", 600_000)).await;
    let kept = kept.expect("CreateJob over TLS").into_inner().id;
    let renamed = create_request("renamed over TLS", 600_000);
    jobs.update_job(proto::UpdateJobRequest {
        id: kept.clone(),
        name: renamed.name,
        description: renamed.description,
        schedule_time: renamed.schedule_time,
        job_type: renamed.job_type,
        job_data: renamed.job_data,
        ..Default::default()
    })
    .await
    .expect("UpdateJob over TLS");
    let job = jobs
        .get_job(proto::GetJobRequest { id: kept.clone() })
        .await;
    assert_eq!(
        job.expect("GetJob over TLS").into_inner().name,
        "renamed over TLS"
    );

    // A job due now fires; its run event comes down the stream.
    let fired = jobs.create_job(create_request("fired", 100)).await;
    let fired = fired.expect("CreateJob over TLS").into_inner().id;
    wait_for_run(&mut stream, &fired).await;
    let reported = events
        .report_result(ReportResultRequest {
            id: fired.clone(),
            status: proto::JobStatus::Succeeded as i32,
            scheduled_key: None,
            ..Default::default()
        })
        .await;
    assert_eq!(
        reported
            .expect("ReportResult over TLS")
            .into_inner()
            .outcome,
        "stored"
    );
    let job = jobs
        .get_job(proto::GetJobRequest { id: fired.clone() })
        .await;
    let status = job.expect("GetJob over TLS").into_inner().status();
    assert_eq!(status, proto::JobStatus::Succeeded);

    for id in [kept, fired] {
        let deleted = jobs.delete_job(proto::DeleteJobRequest { id }).await;
        deleted.expect("DeleteJob over TLS");
    }
    let listed = jobs.list_jobs(list).await.expect("ListJobs over TLS");
    assert_eq!(listed.into_inner().total_count, 0);
    app.stop().await;
}

/// The service binary, with only `env` (and a free port) for variables, in
/// `dir` (no `.env` file there, and the embedded store's data under it);
/// its standard error goes to `dir/service.log`.
fn start_binary(dir: &Path, env: &[(&str, &str)]) -> (ChildProcess, u16) {
    let port = free_port().expect("a free port");
    let child = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_scheduler-service"))
            .env_clear()
            .envs(env.iter().copied())
            .env(vars::SERVER_HOST, "127.0.0.1")
            .env(vars::SERVER_PORT, port.to_string())
            .env(vars::METRICS_PORT, "0")
            .env(vars::HTTP_PORT, "0")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir, "service")),
    )
    .expect("the service binary starts");
    (child, port)
}

/// Waits until `child` exits (its status) or serves on `port` (`None`).
async fn exited_or_serving(child: &mut ChildProcess, port: u16) -> Option<ExitStatus> {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return Some(status);
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return None;
        }
        assert!(Instant::now() < deadline, "neither exited nor served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the binary with these TLS files and asserts that it stops before
/// serving, with exit code 2 and one line on standard error that names
/// `variable` and contains `needle`.
async fn assert_refused(cert_file: &str, key_file: &str, variable: &str, needle: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, port) = start_binary(
        dir.path(),
        &[
            (vars::GRPC_TLS_CERT_FILE, cert_file),
            (vars::GRPC_TLS_KEY_FILE, key_file),
        ],
    );
    let status = exited_or_serving(&mut child, port).await;
    let stderr = std::fs::read_to_string(dir.path().join("service.log")).expect("its log");
    let status = status.unwrap_or_else(|| panic!("served with {cert_file}, {key_file}: {stderr}"));
    assert_eq!(status.code(), Some(2), "{status}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(variable), "{variable}: {stderr}");
    assert!(lines[0].contains(needle), "{needle}: {stderr}");
}

#[tokio::test]
async fn a_bad_certificate_file_stops_the_binary_naming_the_variable() {
    let ca = TestCa::new();
    let (cert, key) = ca.valid_server_files();
    let (_, other_key) = ca.valid_server_files();
    let garbage = ca.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("file");
    let garbage = garbage.to_string_lossy().into_owned();
    let (cert_var, key_var) = (vars::GRPC_TLS_CERT_FILE, vars::GRPC_TLS_KEY_FILE);
    for (cert, key, variable, needle) in [
        (
            "/nonexistent/cert.pem",
            key.as_str(),
            cert_var,
            "cannot read",
        ),
        (
            garbage.as_str(),
            key.as_str(),
            cert_var,
            "no PEM certificate",
        ),
        (key.as_str(), cert.as_str(), cert_var, "no PEM certificate"),
        (
            cert.as_str(),
            garbage.as_str(),
            key_var,
            "no PEM private key",
        ),
        (
            cert.as_str(),
            "/nonexistent/key.pem",
            key_var,
            "cannot read",
        ),
        (cert.as_str(), other_key.as_str(), cert_var, "TLS identity"),
    ] {
        assert_refused(cert, key, variable, needle).await;
    }
}

#[tokio::test]
async fn a_certificate_not_valid_now_stops_the_binary_with_its_date() {
    let ca = TestCa::new();
    let at = |year| Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let (expired, expired_key) = ca.server_files(at(2019), at(2020));
    let (future, future_key) = ca.server_files(at(2099), at(2100));
    let cert_var = vars::GRPC_TLS_CERT_FILE;
    let expired_on = "expired on 2020-01-01 00:00:00 UTC";
    assert_refused(&expired, &expired_key, cert_var, expired_on).await;
    let not_before = "not valid before 2099-01-01 00:00:00 UTC";
    assert_refused(&future, &future_key, cert_var, not_before).await;
}

#[tokio::test]
async fn a_certificate_that_expires_within_a_week_is_served_with_a_warning() {
    let ca = TestCa::new();
    let now = Utc::now();
    let not_after = (now + TimeDelta::days(2))
        .with_nanosecond(0)
        .expect("whole seconds");
    let (cert, key) = ca.server_files(now - TimeDelta::days(1), not_after);
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, port) = start_binary(
        dir.path(),
        &[
            // JSON logs, and no auth key needed.
            (vars::ENVIRONMENT, "staging"),
            (vars::GRPC_TLS_CERT_FILE, &cert),
            (vars::GRPC_TLS_KEY_FILE, &key),
        ],
    );
    let log = dir.path().join("service.log");
    let read_log = || std::fs::read_to_string(&log).expect("its log");
    if let Some(status) = exited_or_serving(&mut child, port).await {
        panic!("exited with {status}: {}", read_log());
    }
    assert_eq!(
        common::jobs_service_health(&ca.channel(port)).await,
        ServingStatus::Serving
    );
    let status = tokio::task::spawn_blocking(move || child.terminate(HANG))
        .await
        .expect("the wait for its exit")
        .expect("its exit status");
    assert!(status.success(), "{status}: {}", read_log());
    let log = read_log();
    let warnings: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| {
            line["level"] == "WARN" && line["variable"] == vars::GRPC_TLS_CERT_FILE
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {log}");
    let warning = &warnings[0];
    assert_eq!(warning["not_after"], not_after.to_string(), "{warning}");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(message.contains("expires within a week"), "{warning}");
}

#[tokio::test]
async fn the_http_api_is_served_over_tls_with_the_same_certificate() {
    let (ca, auth) = (TestCa::new(), TestAuth::new());
    let app = TlsApp::start(&ca, &auth).await;
    let url = format!("https://localhost:{}/v1/jobs", app.http_port);
    let admin = auth.token("admin");
    let client = ca.http_client();
    let created = client
        .post(&url)
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "name": "over https", "job_type": "email", "job_data": "{}",
            "schedule_time": (Utc::now() + TimeDelta::hours(1)).to_rfc3339(),
        }))
        .send()
        .await
        .expect("HTTPS answers");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    assert_eq!(
        created.version(),
        reqwest::Version::HTTP_2,
        "ALPN offers h2"
    );
    let listed = client.get(&url).bearer_auth(&admin).send().await;
    let listed: serde_json::Value = listed.expect("HTTPS").json().await.expect("JSON");
    assert_eq!(listed["jobs"][0]["name"], "over https");
    let refused = client.get(&url).send().await.expect("HTTPS answers");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    let plaintext = format!("http://127.0.0.1:{}/v1/jobs", app.http_port);
    let answer = reqwest::Client::new()
        .get(&plaintext)
        .bearer_auth(&admin)
        .send()
        .await;
    assert!(
        answer.is_err(),
        "no plaintext HTTP on a TLS port: {answer:?}"
    );
    let strangers = TestCa::new().http_client().get(&url).send().await;
    assert!(
        strangers.is_err(),
        "a client trusting another CA gets nothing"
    );
    app.stop().await;
}
