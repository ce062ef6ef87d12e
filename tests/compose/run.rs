//! The service run with exactly the environment `docker-compose.yml` gives
//! it (what only exists inside the compose network replaced by its
//! host-side equivalent) against the test servers of `scripts/services.sh
//! up`: it starts, serves health, stores, reads and deletes a job, and
//! stops cleanly on SIGTERM as `docker stop` sends it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::TcpStream,
    path::Path,
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

use crate::compose_files::{BASE, environment, names, resolved_config, scalar, services};

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// The service's log so far.
fn service_log(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_runs_with_the_environment_docker_compose_gives_it() {
    let config = resolved_config(&[BASE]);
    let s = services(&config);

    // The broker as the host reaches it: kafka1's external listener.
    let external = environment(&s["kafka1"])["KAFKA_CFG_ADVERTISED_LISTENERS"]
        .split(',')
        .find_map(|l| l.strip_prefix("EXTERNAL://").map(str::to_owned))
        .expect("kafka1 advertises an EXTERNAL listener");
    assert_eq!(external, "127.0.0.1:9092");
    for (name, port) in [("MongoDB-protocol", 27017), ("Kafka-protocol", 9092)] {
        assert!(
            answers(port),
            "no {name} server on 127.0.0.1:{port}: run scripts/services.sh up first"
        );
    }

    let dir = tempfile::tempdir().expect("a temporary folder");
    let db_name = format!("compose_{}", bson::oid::ObjectId::new().to_hex());
    let db_name_file = dir.path().join("db_name.txt");
    fs::write(&db_name_file, format!("{db_name}\n")).expect("db name file");
    let port = free_port().expect("a free port");
    let env = host_environment(&config, &s, port, &external, &db_name_file);
    assert_eq!(env[vars::DATABASE_PORT], "27017");
    assert_eq!(env[vars::METRICS_PORT], "0", "compose sets no METRICS_PORT");

    let log_path = dir.path().join("service.log");
    let mut child = start_service(&env, dir.path(), &log_path, port).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("connects to the service");
    assert_serving(&channel).await;
    assert_a_job_is_stored_read_and_deleted(channel, &db_name, &log_path).await;
    assert_sigterm_stops_it(&mut child, port, &log_path).await;
}

/// Exactly the compose environment of the scheduler, with what only exists
/// inside the compose network replaced by its host-side equivalent.
fn host_environment(
    config: &Value,
    s: &BTreeMap<String, Value>,
    port: u16,
    external: &str,
    db_name_file: &Path,
) -> BTreeMap<String, String> {
    let service = &s["scheduler-service"];
    let compose_env = environment(service);
    let mounted: BTreeSet<String> = names(service.get("secrets")).into_iter().collect();
    let secret_file = |name: &str| -> String {
        assert!(mounted.contains(name), "secret {name} is not mounted");
        scalar(&config["secrets"][name]["file"])
    };
    let mut env = BTreeMap::new();
    for (name, value) in &compose_env {
        let value = match name.as_str() {
            n if n == vars::SERVER_PORT => port.to_string(),
            // Any free port: tests running side by side do not collide.
            n if n == vars::METRICS_PORT => "0".to_owned(),
            n if n == vars::DATABASE_HOST_NAME => {
                assert!(
                    s.contains_key(value),
                    "{n}={value} is not a compose service"
                );
                "127.0.0.1".to_owned()
            }
            n if n == vars::KAFKA_BROKERS => {
                assert!(value.starts_with("kafka1:"), "{n}={value} is not kafka1");
                external.to_owned()
            }
            n if n == vars::DATABASE_DB_NAME_FILE => {
                secret_file(value.strip_prefix("/run/secrets/").expect("a secret"));
                db_name_file.to_string_lossy().into_owned()
            }
            // The test servers speak the MongoDB protocol without
            // authentication: polodb 5.3 rejects the SCRAM handshake that
            // the driver starts when a user is set (startup then fails).
            // The secrets are checked to exist, and the variables are left
            // out; everything else is the compose environment.
            n if n == vars::DATABASE_USER_FILE || n == vars::DATABASE_PASS_FILE => {
                secret_file(value.strip_prefix("/run/secrets/").expect("a secret"));
                continue;
            }
            _ => match value.strip_prefix("/run/secrets/") {
                Some(secret) => secret_file(secret),
                None => value.clone(),
            },
        };
        if !compose_env[name].starts_with("/run/secrets/") {
            for other in s.keys() {
                assert!(
                    !value.contains(other.as_str()),
                    "{name}={value} still names the compose service {other}"
                );
            }
        }
        env.insert(name.clone(), value);
    }
    env
}

/// Starts the binary with exactly `env` in `dir`, its output in `log_path`,
/// and waits until it listens on `port`.
async fn start_service(
    env: &BTreeMap<String, String>,
    dir: &Path,
    log_path: &Path,
    port: u16,
) -> ChildProcess {
    let log = fs::File::create(log_path).expect("log file");
    let mut child = ChildProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_scheduler-service"))
            .env_clear()
            .envs(env)
            // No config/.env here: the compose environment alone configures it.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log),
    )
    .expect("starts scheduler-service");
    let log = || service_log(log_path);

    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(port) {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!(
                "scheduler-service exited ({status}) before listening:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "scheduler-service did not listen on {port} within 60 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

/// The health service that the container's checks and tools rely on.
async fn assert_serving(channel: &Channel) {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "proto.JobsService".into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

/// CreateJob, GetJob, the document in the jobs collection, DeleteJob.
async fn assert_a_job_is_stored_read_and_deleted(channel: Channel, db_name: &str, log_path: &Path) {
    let log = || service_log(log_path);
    let mut client = JobsServiceClient::new(channel);
    let due = chrono::Utc::now().timestamp() + 3600;
    let request = proto::CreateJobRequest {
        name: "compose-environment".into(),
        description: "created by tests/compose/run.rs".into(),
        schedule_time: Some(prost_types::Timestamp {
            seconds: due,
            nanos: 0,
        }),
        job_type: proto::JobType::Email as i32,
        job_data: r#"{"SourceAddress":"a@example.com","DestinationAddress":"b@example.com","Subject":"compose","Message":"hello"}"#.into(),
    };
    let id = match client.create_job(request.clone()).await {
        Ok(response) => response.into_inner().id,
        Err(status) => panic!("CreateJob failed: {status:?}\nservice log:\n{}", log()),
    };
    assert!(!id.is_empty(), "CreateJob returned no id");
    let job = client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .unwrap_or_else(|status| panic!("GetJob failed: {status:?}\nservice log:\n{}", log()))
        .into_inner();
    assert_eq!(job.id, id);
    assert_eq!(job.name, request.name);
    assert_eq!(job.description, request.description);
    assert_eq!(job.job_data, request.job_data);
    assert_eq!(job.job_type, request.job_type);
    assert_eq!(job.schedule_time.map(|t| t.seconds), Some(due));
    assert_eq!(job.status, proto::JobStatus::Scheduled as i32);

    // The job is a document of the jobs collection. (polodb keeps every
    // database in one namespace, so which database the name secret chose
    // cannot be observed here; on a real MongoDB the fresh name keeps runs
    // apart.)
    let oid = bson::oid::ObjectId::parse_str(&id).expect("the id is an ObjectId");
    let mongo = mongodb::Client::with_uri_str("mongodb://127.0.0.1:27017/")
        .await
        .expect("connects to the MongoDB-protocol server");
    let stored = mongo
        .database(db_name)
        .collection::<bson::Document>(DEFAULT_COLLECTION)
        .find_one(bson::doc! { "_id": oid })
        .await
        .expect("reads the job")
        .expect("the job is stored");
    assert_eq!(stored.get_str("name"), Ok(request.name.as_str()));

    // Leave nothing behind for later runs.
    client
        .delete_job(proto::DeleteJobRequest { id: id.clone() })
        .await
        .unwrap_or_else(|status| panic!("DeleteJob failed: {status:?}\nservice log:\n{}", log()));
    let gone = client
        .get_job(proto::GetJobRequest { id: id.clone() })
        .await
        .expect_err("the job is deleted");
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

/// SIGTERM (docker stop) ends it cleanly.
async fn assert_sigterm_stops_it(child: &mut ChildProcess, port: u16, log_path: &Path) {
    let log = || service_log(log_path);
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("runs kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "scheduler-service did not stop within 30 s of SIGTERM:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "scheduler-service exited with {status} after SIGTERM:\n{}",
        log()
    );
    assert!(!answers(port), "port {port} still answers after exit");
}
