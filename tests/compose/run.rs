//! The service binary run with the environment `docker-compose.yml` gives
//! it, what only exists inside the compose network replaced by its
//! host-side equivalent (the broker's external listener, 127.0.0.1 for the
//! database, free ports), against the test servers of `scripts/services.sh
//! up`: it starts, serves health, stores, reads and deletes a job, counts
//! it on `/metrics` at `METRICS_PORT`, and stops cleanly on SIGTERM as
//! `docker stop` sends it.
//!
//! The MongoDB-protocol test server is polodb, which has no users and keeps
//! every database in one namespace: this run leaves the credentials out
//! and cannot tell which database the service chose. What the credentials
//! and the database name do is checked in `database` (the URI and database
//! the settings resolve to, and a real login on PostgreSQL or on a real
//! MongoDB); the helpers here start the service for those runs too.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use scheduler_service::{
    config::{database::DEFAULT_COLLECTION, vars},
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
};
use serde_yaml::Value;
use test_support::{ChildProcess, free_port};
use tonic::transport::Channel;

use crate::{
    compose_files::{BASE, environment, resolved_config, services},
    settings::container_environment,
};

/// The MongoDB-protocol test server, where compose's database port is.
const POLODB_URI: &str = "mongodb://127.0.0.1:27017/";

/// Whether something accepts connections on 127.0.0.1:`port`.
fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_runs_with_the_compose_environment_without_credentials_on_polodb() {
    let config = resolved_config(&[BASE]);
    let mut env = host_environment(&config);
    assert_eq!(
        env[vars::DATABASE_PORT],
        "27017",
        "compose's database port is not the test server's"
    );
    // polodb 5.3 rejects the SCRAM handshake that the driver starts when a
    // user is set (startup then fails): the credentials compose gives are
    // left out here, and logging in with them is checked in `database`.
    for name in [vars::DATABASE_USER_FILE, vars::DATABASE_PASS_FILE] {
        assert!(env.remove(name).is_some(), "compose sets no {name}");
    }
    let db_name = fs::read_to_string(&env[vars::DATABASE_DB_NAME_FILE])
        .expect("the database name secret")
        .trim()
        .to_owned();

    let service = Service::start(&env).await;
    let channel = service.channel().await;
    service.assert_serving(&channel).await;
    let (id, request) = service.create_job(&channel).await;
    let _leftover = PolodbJob { id: id.clone() };
    let mut client = JobsServiceClient::new(channel);
    let job = client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .unwrap_or_else(|status| service.fail(&format!("GetJob failed: {status:?}")))
        .into_inner();
    assert_eq!(job.id, id);
    assert_eq!(job.name, request.name);
    assert_eq!(job.description, request.description);
    assert_eq!(job.job_data, request.job_data);
    assert_eq!(job.job_type, request.job_type);
    assert_eq!(
        job.schedule_time.map(|t| t.seconds),
        request.schedule_time.map(|t| t.seconds)
    );
    assert_eq!(job.status, proto::JobStatus::Scheduled as i32);

    // The job is a document of the jobs collection. polodb ignores the
    // database name (any name finds it), so this reads the collection only.
    let oid = bson::oid::ObjectId::parse_str(&id).expect("the id is an ObjectId");
    let mongo = mongodb::Client::with_uri_str(POLODB_URI)
        .await
        .expect("connects to the MongoDB-protocol server");
    let stored = mongo
        .database(&db_name)
        .collection::<bson::Document>(DEFAULT_COLLECTION)
        .find_one(bson::doc! { "_id": oid })
        .await
        .expect("reads the job")
        .expect("the job is stored");
    assert_eq!(stored.get_str("name"), Ok(request.name.as_str()));

    // /metrics is served at the METRICS_PORT the service was given.
    let metrics = service.scrape_metrics();
    assert!(
        metrics
            .lines()
            .any(|line| line == "scheduler_jobs_created_total 1"),
        "/metrics on {} does not count the job:\n{metrics}",
        service.metrics_port
    );

    // Leave nothing behind for later runs.
    client
        .delete_job(proto::DeleteJobRequest { id: id.clone() })
        .await
        .unwrap_or_else(|status| service.fail(&format!("DeleteJob failed: {status:?}")));
    let gone = client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .expect_err("the job is deleted");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    service.assert_sigterm_stops_it().await;
}

/// A job of the test that the service may not have deleted (the test
/// failed first): removed from the MongoDB-protocol server when this is
/// dropped, so that no later run meets it.
struct PolodbJob {
    id: String,
}

impl Drop for PolodbJob {
    fn drop(&mut self) {
        let Ok(oid) = bson::oid::ObjectId::parse_str(&self.id) else {
            return;
        };
        on_own_runtime(async move {
            mongodb::Client::with_uri_str(POLODB_URI)
                .await?
                .database("any: polodb ignores database names")
                .collection::<bson::Document>(DEFAULT_COLLECTION)
                .delete_one(bson::doc! { "_id": oid })
                .await
                .map(drop)
        });
    }
}

/// Runs a clean-up to its end on a runtime of its own (a `Drop` may run
/// on the test's runtime, or while a failed test unwinds); a failure is
/// reported, not raised.
pub fn on_own_runtime<E: std::fmt::Display>(
    cleanup: impl Future<Output = Result<(), E>> + Send + 'static,
) {
    let done = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(cleanup)
            .map_err(|e| e.to_string())
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("clean-up failed: {e}"),
        Err(_) => eprintln!("clean-up panicked"),
    }
}

/// The scheduler's compose environment as it would run on this host: each
/// secret is the host file compose mounts, the gRPC and metrics ports are
/// free ones (tests running side by side do not collide), the database is
/// on 127.0.0.1 and the broker is kafka1's external listener. Everything
/// else is compose's, and nothing names a compose service any more.
pub fn host_environment(config: &Value) -> BTreeMap<String, String> {
    let s = services(config);
    let service = &s["scheduler-service"];
    let compose = environment(service);
    assert!(
        compose.contains_key(vars::METRICS_PORT),
        "compose sets no METRICS_PORT: Prometheus scrapes the code's default then"
    );
    // The broker as the host reaches it: kafka1's external listener.
    let external = environment(&s["kafka1"])["KAFKA_CFG_ADVERTISED_LISTENERS"]
        .split(',')
        .find_map(|l| l.strip_prefix("EXTERNAL://").map(str::to_owned))
        .expect("kafka1 advertises an EXTERNAL listener");
    assert_eq!(external, "127.0.0.1:9092");
    let free = || free_port().expect("a free port").to_string();
    let mut env = container_environment(config, service);
    for (name, value) in &mut env {
        let compose_value = &compose[name];
        match name.as_str() {
            n if [vars::SERVER_PORT, vars::METRICS_PORT, vars::HTTP_PORT].contains(&n) => {
                *value = free()
            }
            n if n == vars::DATABASE_HOST_NAME => {
                assert!(
                    s.contains_key(value.as_str()),
                    "{n}={value} is not a compose service"
                );
                *value = "127.0.0.1".to_owned();
            }
            n if n == vars::KAFKA_BROKERS => {
                assert!(value.starts_with("kafka1:"), "{n}={value} is not kafka1");
                value.clone_from(&external);
            }
            _ => {}
        }
        if !compose_value.starts_with("/run/secrets/") {
            for other in s.keys() {
                assert!(
                    !value.contains(other.as_str()),
                    "{name}={value} still names the compose service {other}"
                );
            }
        }
    }
    env
}

/// The service binary started with exactly some variables, in a folder of
/// its own (no `config/.env` there), its output in a log file.
pub struct Service {
    child: ChildProcess,
    pub port: u16,
    pub metrics_port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the binary with exactly `env` (which gives its gRPC and
    /// metrics ports) and waits until it listens; fails if it exits first.
    pub async fn start(env: &BTreeMap<String, String>) -> Service {
        for name in [
            vars::DATABASE_HOST_NAME,
            vars::KAFKA_BROKERS,
            vars::SERVER_PORT,
        ] {
            assert!(env.contains_key(name), "no {name} in {env:?}");
        }
        let port: u16 = env[vars::SERVER_PORT].parse().expect("a gRPC port");
        let metrics_port: u16 = env[vars::METRICS_PORT].parse().expect("a metrics port");
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log_path = dir.path().join("service.log");
        let log = fs::File::create(&log_path).expect("log file");
        let child = ChildProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_scheduler-service"))
                .env_clear()
                .envs(env)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log),
        )
        .expect("starts scheduler-service");
        let mut service = Service {
            child,
            port,
            metrics_port,
            log_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answers(port) {
            if let Some(status) = service.child.try_wait().expect("child status") {
                service.fail(&format!("exited ({status}) before listening"));
            }
            if Instant::now() >= deadline {
                service.fail(&format!("did not listen on {port} within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        service
    }

    /// Fails the test with `what` and the service's log so far.
    pub fn fail(&self, what: &str) -> ! {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        panic!("scheduler-service: {what}\nservice log:\n{log}")
    }

    /// A gRPC channel to it.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.port))
            .expect("valid URI")
            .connect()
            .await
            .unwrap_or_else(|e| self.fail(&format!("cannot connect: {e}")))
    }

    /// The health service that the container's checks and tools rely on
    /// says it serves.
    pub async fn assert_serving(&self, channel: &Channel) {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "proto.JobsService".into(),
            })
            .await
            .unwrap_or_else(|status| self.fail(&format!("health check failed: {status:?}")))
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    /// CreateJob of a job due in an hour: its id and the request.
    pub async fn create_job(&self, channel: &Channel) -> (String, proto::CreateJobRequest) {
        let request = proto::CreateJobRequest {
            name: "compose-environment".into(),
            description: "created by tests/compose".into(),
            schedule_time: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 3600,
                nanos: 0,
            }),
            job_type: proto::JobType::Email as i32,
            job_data: r#"{"SourceAddress":"a@example.com","DestinationAddress":"b@example.com","Subject":"compose","Message":"hello"}"#.into(),
            ..Default::default()
        };
        let id = JobsServiceClient::new(channel.clone())
            .create_job(request.clone())
            .await
            .unwrap_or_else(|status| self.fail(&format!("CreateJob failed: {status:?}")))
            .into_inner()
            .id;
        assert!(!id.is_empty(), "CreateJob returned no id");
        (id, request)
    }

    /// The body of `GET /metrics` on its metrics port.
    pub fn scrape_metrics(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port))
            .unwrap_or_else(|e| self.fail(&format!("no /metrics on {}: {e}", self.metrics_port)));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("sends the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("reads the response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        assert!(head.starts_with("HTTP/1.0 200"), "/metrics answers {head}");
        body.to_owned()
    }

    /// SIGTERM (docker stop) ends it cleanly and frees its port.
    pub async fn assert_sigterm_stops_it(mut self) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("runs kill");
        assert!(killed.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                break status;
            }
            if Instant::now() >= deadline {
                self.fail("did not stop within 90 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !status.success() {
            self.fail(&format!("exited with {status} after SIGTERM"));
        }
        assert!(
            !answers(self.port),
            "port {} still answers after exit",
            self.port
        );
    }
}
