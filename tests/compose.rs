//! The docker-compose development environment, checked without a Docker
//! engine: `docker-compose.yml` (the scheduler, MongoDB, ZooKeeper, Kafka),
//! `docker-compose.override.yml` (mongo-express, zoonavigator, kafka-ui,
//! grpcui), `.env`, one folder per service and the root `Dockerfile`.
//!
//! `docker-compose` (Debian's package, v1.29) must be on PATH: the tests fail
//! without it. The last test also needs the servers that
//! `scripts/services.sh up` starts (a Kafka-protocol broker on
//! 127.0.0.1:9092 and a MongoDB-protocol server on 127.0.0.1:27017).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::ErrorKind,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use scheduler_service::{
    config::vars,
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
    store::mongo::COLLECTION,
};
use serde_yaml::{Mapping, Value};

const BASE: &str = "docker-compose.yml";
const OVERRIDE: &str = "docker-compose.override.yml";

/// `.env`: the host ports of the environment, exactly these.
const PORTS: &[(&str, u16)] = &[
    ("MONGODB_PORT", 27017),
    ("MONGO_EXPRESS_PORT", 8081),
    ("ZOOKEEPER_PORT", 2181),
    ("ZOOKEEPER_ADMIN_CONTAINER_PORT", 8078),
    ("ZOOKEEPER_ADMIN_PORT", 8078),
    ("ZOO_NAVIGATOR_PORT", 9000),
    ("KAFKA1_PORT", 9092),
    ("KAFKAUI_PORT", 8080),
    ("SCHEDULER_PORT", 9001),
    ("GRPCUI_PORT", 5000),
];

/// The services of `docker-compose.yml` and the host ports they publish.
const CORE: &[(&str, &[u16])] = &[
    ("scheduler-db-service", &[27017]),
    ("zk1", &[2181, 8078]),
    ("kafka1", &[9092]),
    ("scheduler-service", &[9001]),
];

/// The debugging tools of `docker-compose.override.yml` and their host ports.
const DEV_TOOLS: &[(&str, &[u16])] = &[
    ("mongo-express", &[8081]),
    ("zoo-navigator", &[9000]),
    ("kafka-ui", &[8080]),
    ("grpcui-service", &[5000]),
];

/// Each service folder and the image its Dockerfile starts from: repository
/// (after any registry or namespace) and the start of the tag.
const IMAGES: &[(&str, &str, &str)] = &[
    ("scheduler-db-service", "mongo", "7.0."),
    ("mongo-express-service", "mongo-express", "1."),
    ("zookeeper-service", "zookeeper", "3.8."),
    ("zoonavigator-service", "zoonavigator", "1."),
    ("kafka-service", "kafka", "3.4."),
    ("kafkaui-service", "kafka-ui", "v"),
    ("grpcui-service", "grpcui", "v"),
];

/// The scheduler's settings that the article's compose file sets.
const ARTICLE_SETTINGS: &[&str] = &[
    vars::ENVIRONMENT,
    vars::SERVER_PORT,
    vars::DATABASE_USER_FILE,
    vars::DATABASE_PASS_FILE,
    vars::DATABASE_DB_NAME_FILE,
    vars::DATABASE_SCHEMA,
    vars::DATABASE_HOST_NAME,
    vars::DATABASE_PORT,
    vars::KAFKA_BROKERS,
    vars::TOPICS_FILE,
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml_file(name: &str) -> Value {
    let path = root().join(name);
    serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// `.env` as written: name → value, in file order.
fn dotenv() -> Vec<(String, String)> {
    read(&root().join(".env"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!(".env: not NAME=VALUE: {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// Runs `docker-compose -f FILE... ARGS` in the repository, with the
/// variables of `.env` removed from its environment so that `.env` alone
/// decides them.
fn docker_compose(files: &[&str], args: &[&str]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(root());
    for (name, _) in dotenv() {
        cmd.env_remove(name);
    }
    for name in [
        "DOCKER_HOST_IP",
        "COMPOSE_FILE",
        "COMPOSE_PROFILES",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PATH_SEPARATOR",
    ] {
        cmd.env_remove(name);
    }
    for file in files {
        cmd.args(["-f", file]);
    }
    cmd.args(args);
    match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "docker-compose is not on PATH: these checks run it \
             (install it: apt-get install docker-compose)"
        ),
        Err(e) => panic!("cannot run docker-compose: {e}"),
    }
}

/// `docker-compose config` of these files: checks that it accepts them with
/// `.env` and warns about nothing (an unset variable is only a warning),
/// and returns the resolved configuration.
fn resolved_config(files: &[&str]) -> Value {
    let output = docker_compose(files, &["config"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "docker-compose {files:?} config failed ({}):\n{stderr}",
        output.status
    );
    assert!(
        !stderr.contains("WARN") && !stderr.contains("not set"),
        "docker-compose {files:?} config warns:\n{stderr}"
    );
    serde_yaml::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("docker-compose config printed invalid YAML: {e}"))
}

fn mapping<'a>(value: &'a Value, key: &str) -> &'a Mapping {
    value
        .get(key)
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("no mapping {key:?} in {value:?}"))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn services(config: &Value) -> BTreeMap<String, Value> {
    mapping(config, "services")
        .iter()
        .map(|(k, v)| (scalar(k), v.clone()))
        .collect()
}

/// A service's environment, in either compose form (mapping or list).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    scalar(k),
                    if v.is_null() {
                        String::new()
                    } else {
                        scalar(v)
                    },
                )
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

/// Names a list of strings or of `{source: name}` mappings (secrets).
fn names(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_sequence)
        .map(|items| {
            items
                .iter()
                .map(|item| match item.get("source") {
                    Some(source) => scalar(source),
                    None => scalar(item),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Host ports published by a resolved service (`published:` of each port).
fn published_ports(service: &Value) -> Vec<u16> {
    service
        .get("ports")
        .and_then(Value::as_sequence)
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    let published = match p.get("published") {
                        Some(v) => scalar(v),
                        None => {
                            let short = scalar(p);
                            let parts: Vec<&str> = short.split(':').collect();
                            parts[parts.len() - 2].to_owned()
                        }
                    };
                    published
                        .parse()
                        .unwrap_or_else(|_| panic!("published port {published:?} is not a number"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sorted(names: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

/// One `FROM` of a Dockerfile.
struct FromLine {
    image: String,
    alias: Option<String>,
}

/// The instructions of a Dockerfile (continuation lines joined), as
/// (keyword in upper case, arguments).
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

fn froms(dockerfile: &str) -> Vec<FromLine> {
    instructions(dockerfile)
        .into_iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, args)| {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let alias = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                _ => panic!("unexpected FROM {args:?}"),
            };
            FromLine {
                image: words[0].to_owned(),
                alias,
            }
        })
        .collect()
}

/// (repository, tag) of an image reference; a digest counts as its tag.
fn split_image(image: &str) -> (String, Option<String>) {
    if let Some((name, digest)) = image.split_once('@') {
        return (
            name.rsplit('/').next().unwrap_or(name).to_owned(),
            Some(digest.to_owned()),
        );
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((repo, tag)) => (repo.to_owned(), Some(tag.to_owned())),
        None => (last.to_owned(), None),
    }
}

/// Every `FROM` that is not an earlier stage names a pinned image: a tag
/// other than `latest`, or a digest.
fn assert_pinned(path: &Path) -> Vec<FromLine> {
    let text = read(path);
    let froms = froms(&text);
    assert!(!froms.is_empty(), "{}: no FROM", path.display());
    let mut stages = BTreeSet::new();
    for from in &froms {
        if !stages.contains(&from.image) && from.image != "scratch" {
            let (_, tag) = split_image(&from.image);
            match tag.as_deref() {
                None => panic!("{}: FROM {} has no tag", path.display(), from.image),
                Some("latest") => panic!("{}: FROM {} is not pinned", path.display(), from.image),
                Some(tag) => assert!(
                    tag.starts_with("sha256:") || tag.chars().any(|c| c.is_ascii_digit()),
                    "{}: FROM {} names no version",
                    path.display(),
                    from.image
                ),
            }
        }
        if let Some(alias) = &from.alias {
            stages.insert(alias.clone());
        }
    }
    froms
}

/// The service folders that docker-compose builds, with their Dockerfiles.
fn build_dockerfiles(raw: &Value) -> Vec<(String, PathBuf)> {
    services(raw)
        .into_iter()
        .map(|(name, service)| {
            let build = service
                .get("build")
                .unwrap_or_else(|| panic!("service {name} has no build section"));
            let (context, dockerfile) = match build {
                Value::String(context) => (context.clone(), "Dockerfile".to_owned()),
                build => (
                    scalar(build.get("context").expect("build context")),
                    build
                        .get("dockerfile")
                        .map_or_else(|| "Dockerfile".to_owned(), scalar),
                ),
            };
            let context = root().join(context);
            assert!(
                context.is_dir(),
                "service {name}: build context {} is not a folder",
                context.display()
            );
            let dockerfile = context.join(dockerfile);
            assert!(
                dockerfile.is_file(),
                "service {name}: {} does not exist",
                dockerfile.display()
            );
            (name, dockerfile)
        })
        .collect()
}

#[test]
fn env_file_sets_exactly_the_ports_of_the_environment() {
    let expected: Vec<(String, String)> = PORTS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string()))
        .collect();
    assert_eq!(dotenv(), expected);
}

#[test]
fn docker_compose_accepts_the_service_alone_and_with_the_dev_tools() {
    let expect = |services: &[(&str, &[u16])]| -> BTreeMap<String, Vec<u16>> {
        services
            .iter()
            .map(|(name, ports)| ((*name).to_owned(), ports.to_vec()))
            .collect()
    };
    let ports = |config: &Value| -> BTreeMap<String, Vec<u16>> {
        services(config)
            .into_iter()
            .map(|(name, service)| {
                let mut ports = published_ports(&service);
                ports.sort_unstable();
                (name, ports)
            })
            .collect()
    };

    let alone = resolved_config(&[BASE]);
    assert_eq!(ports(&alone), expect(CORE));

    let full = resolved_config(&[BASE, OVERRIDE]);
    let all: Vec<(&str, &[u16])> = CORE.iter().chain(DEV_TOOLS).copied().collect();
    assert_eq!(ports(&full), expect(&all));

    // A plain `docker-compose config` reads the override by itself.
    let plain = resolved_config(&[]);
    assert_eq!(ports(&plain), expect(&all));

    // Containers reach one another by service name, on the ports the
    // servers listen on inside the network.
    let s = services(&full);
    let env = |name: &str| environment(&s[name]);
    let kafka = env("kafka1");
    let advertised = &kafka["KAFKA_CFG_ADVERTISED_LISTENERS"];
    let scheduler = env("scheduler-service");
    let brokers = &scheduler[vars::KAFKA_BROKERS];
    assert!(
        advertised.contains(&format!("INTERNAL://{brokers}")) && brokers.starts_with("kafka1:"),
        "KAFKA_BROKERS {brokers} is not kafka1's internal listener ({advertised})"
    );
    assert!(
        advertised.contains("EXTERNAL://127.0.0.1:9092"),
        "the host cannot reach kafka1 at 127.0.0.1:9092: {advertised}"
    );
    assert_eq!(
        &env("kafka-ui")["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"],
        brokers
    );
    assert_eq!(scheduler[vars::DATABASE_HOST_NAME], "scheduler-db-service");
    assert_eq!(scheduler[vars::DATABASE_PORT], "27017");
    assert_eq!(scheduler[vars::SERVER_PORT], "9001");
    assert_eq!(env("zoo-navigator")["CONNECTION_LOCALZK_CONN"], "zk1:2181");
    let grpcui: Vec<String> = s["grpcui-service"]["command"]
        .as_sequence()
        .expect("grpcui command is a list")
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(
        grpcui,
        ["-port", "5000", "-plaintext", "scheduler-service:9001"]
    );
    let mongo_express = env("mongo-express");
    let user = read(&root().join("scheduler-db-service/user.txt"));
    let pass = read(&root().join("scheduler-db-service/pass.txt"));
    assert!(
        mongo_express["ME_CONFIG_MONGODB_URL"].starts_with(&format!(
            "mongodb://{}:{}@scheduler-db-service:27017/",
            user.trim(),
            pass.trim()
        )),
        "mongo-express does not log in as the database's root user"
    );

    // The scheduler starts once its database and broker are healthy, and
    // comes back after a crash.
    let scheduler = &s["scheduler-service"];
    for dependency in ["scheduler-db-service", "kafka1"] {
        assert_eq!(
            scheduler["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "scheduler-service must wait until {dependency} is healthy"
        );
        assert!(
            s[dependency].get("healthcheck").is_some(),
            "{dependency} has no healthcheck"
        );
    }
    assert_eq!(scheduler["restart"].as_str(), Some("unless-stopped"));
}

#[test]
fn every_build_context_dockerfile_env_file_and_secret_exists() {
    for file in [BASE, OVERRIDE] {
        let raw = yaml_file(file);
        let built = build_dockerfiles(&raw);
        assert!(!built.is_empty(), "{file}: no services");
        for (name, service) in services(&raw) {
            for env_file in names(service.get("env_file")) {
                assert!(
                    root().join(&env_file).is_file(),
                    "{file}: service {name}: env_file {env_file} does not exist"
                );
            }
        }
    }

    let raw = yaml_file(BASE);
    let secrets = mapping(&raw, "secrets");
    assert!(!secrets.is_empty());
    let mut defined = BTreeSet::new();
    for (name, secret) in secrets {
        let name = scalar(name);
        let file = root().join(scalar(&secret["file"]));
        let content = read(&file);
        assert!(
            !content.trim().is_empty(),
            "secret {name}: {} is empty",
            file.display()
        );
        defined.insert(name);
    }
    for (name, service) in services(&raw) {
        let mounted: BTreeSet<String> = names(service.get("secrets")).into_iter().collect();
        for secret in &mounted {
            assert!(
                defined.contains(secret),
                "service {name} uses undefined secret {secret}"
            );
        }
        // Every /run/secrets/X that a service reads is mounted into it.
        for (var, value) in environment(&service) {
            if let Some(secret) = value.strip_prefix("/run/secrets/") {
                assert!(
                    mounted.contains(secret),
                    "service {name}: {var} reads secret {secret}, which it does not mount"
                );
            }
        }
    }
    // The article's secret values: the database's root user and name.
    let db = root().join("scheduler-db-service");
    assert_eq!(read(&db.join("user.txt")).trim(), "admin");
    assert_eq!(read(&db.join("pass.txt")).trim(), "password");
    assert_eq!(read(&db.join("db_name.txt")).trim(), "jobs_db");
}

#[test]
fn the_scheduler_is_configured_only_through_settings_the_code_reads() {
    let raw = yaml_file(BASE);
    let s = services(&raw);
    let env = environment(&s["scheduler-service"]);
    let known: BTreeSet<&str> = vars::ALL.iter().copied().collect();
    for name in env.keys() {
        assert!(
            known.contains(name.as_str()),
            "scheduler-service sets {name}, which is not in scheduler_service::config::vars::ALL"
        );
    }
    assert_eq!(sorted(env.keys()), sorted(ARTICLE_SETTINGS));
    // The credentials, the database name and the topics are Docker secrets.
    for (var, secret) in [
        (vars::DATABASE_USER_FILE, "scheduler-db-user"),
        (vars::DATABASE_PASS_FILE, "scheduler-db-pass"),
        (vars::DATABASE_DB_NAME_FILE, "scheduler-db-dbname"),
        (vars::TOPICS_FILE, "scheduler-topics"),
    ] {
        assert_eq!(env[var], format!("/run/secrets/{secret}"));
    }
    assert_eq!(
        scalar(&raw["secrets"]["scheduler-topics"]["file"]),
        "config/.env.topics"
    );
    assert_eq!(env[vars::DATABASE_SCHEMA], "mongodb");
    // The database container creates the root user that the scheduler uses.
    let db = environment(&s["scheduler-db-service"]);
    assert_eq!(
        db["MONGO_INITDB_ROOT_USERNAME_FILE"],
        env[vars::DATABASE_USER_FILE]
    );
    assert_eq!(
        db["MONGO_INITDB_ROOT_PASSWORD_FILE"],
        env[vars::DATABASE_PASS_FILE]
    );
}

#[test]
fn images_are_pinned_and_the_service_image_runs_as_a_non_root_user() {
    let mut dockerfiles = vec![root().join("Dockerfile")];
    for file in [BASE, OVERRIDE] {
        let raw = yaml_file(file);
        for (name, service) in services(&raw) {
            if let Some(image) = service.get("image") {
                let image = scalar(image);
                let (_, tag) = split_image(&image);
                assert!(
                    tag.is_some() && tag.as_deref() != Some("latest"),
                    "{file}: service {name}: image {image} is not pinned"
                );
            }
        }
        dockerfiles.extend(build_dockerfiles(&raw).into_iter().map(|(_, path)| path));
    }
    for path in &dockerfiles {
        assert_pinned(path);
    }

    // Each service folder starts from the article's image.
    for (folder, repository, tag_prefix) in IMAGES {
        let path = root().join(folder).join("Dockerfile");
        assert!(
            dockerfiles.contains(&path),
            "{folder} is not built by docker-compose"
        );
        let froms = assert_pinned(&path);
        let (repo, tag) = split_image(&froms.last().expect("a FROM").image);
        let tag = tag.unwrap_or_default();
        assert!(
            repo == *repository && tag.starts_with(tag_prefix),
            "{}: expected {repository}:{tag_prefix}*, found {repo}:{tag}",
            path.display()
        );
    }

    // No `latest` image anywhere.
    for path in dockerfiles
        .iter()
        .chain(&[root().join(BASE), root().join(OVERRIDE)])
    {
        let text = read(path);
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(
                !line.contains(":latest"),
                "{}: uses a latest image: {line}",
                path.display()
            );
        }
    }

    // The service's image: a multi-stage build whose last stage runs the
    // binary as a non-root user.
    let dockerfile = read(&root().join("Dockerfile"));
    let steps = instructions(&dockerfile);
    let last_from = steps
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("a FROM");
    assert!(
        steps[..last_from].iter().any(|(k, _)| k == "FROM"),
        "Dockerfile: not a multi-stage build"
    );
    let user = steps[last_from..]
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, user)| user.clone())
        .expect("Dockerfile: the final stage sets no USER (it would run as root)");
    let who = user.split(':').next().unwrap_or_default();
    assert!(
        who != "root" && who != "0",
        "Dockerfile: the final stage runs as {user}"
    );
    assert!(
        steps[last_from..]
            .iter()
            .any(|(k, args)| k == "COPY" && args.contains("--from=")),
        "Dockerfile: the final stage does not copy the binary from a build stage"
    );

    // The build context leaves out local build output, state and history.
    let ignored: BTreeSet<String> = read(&root().join(".dockerignore"))
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .collect();
    for entry in ["target", ".services", "data", ".git"] {
        assert!(
            ignored.contains(entry),
            ".dockerignore does not list {entry}"
        );
    }
}

/// A child process that is killed if the test ends early.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_runs_with_the_environment_docker_compose_gives_it() {
    let config = resolved_config(&[BASE]);
    let s = services(&config);
    let service = &s["scheduler-service"];
    let compose_env = environment(service);
    let mounted: BTreeSet<String> = names(service.get("secrets")).into_iter().collect();
    let secret_file = |name: &str| -> String {
        assert!(mounted.contains(name), "secret {name} is not mounted");
        scalar(&config["secrets"][name]["file"])
    };

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
    let port = free_port();

    // Exactly the compose environment, with what only exists inside the
    // compose network replaced by its host-side equivalent.
    let mut env = BTreeMap::new();
    for (name, value) in &compose_env {
        let value = match name.as_str() {
            n if n == vars::SERVER_PORT => port.to_string(),
            n if n == vars::DATABASE_HOST_NAME => {
                assert!(
                    s.contains_key(value),
                    "{n}={value} is not a compose service"
                );
                "127.0.0.1".to_owned()
            }
            n if n == vars::KAFKA_BROKERS => {
                assert!(value.starts_with("kafka1:"), "{n}={value} is not kafka1");
                external.clone()
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
    assert_eq!(env[vars::DATABASE_PORT], "27017");

    let log_path = dir.path().join("service.log");
    let log = fs::File::create(&log_path).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_scheduler-service"))
        .env_clear()
        .envs(&env)
        // No config/.env here: the compose environment alone configures it.
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("starts scheduler-service");
    let mut child = Running(child);
    let log = || fs::read_to_string(&log_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers(port) {
        if let Some(status) = child.0.try_wait().expect("child status") {
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

    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("connects to the service");

    // The health service that the container's checks and tools rely on.
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

    let mut client = JobsServiceClient::new(channel);
    let due = chrono::Utc::now().timestamp() + 3600;
    let request = proto::CreateJobRequest {
        name: "compose-environment".into(),
        description: "created by tests/compose.rs".into(),
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
        .database(&db_name)
        .collection::<bson::Document>(COLLECTION)
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

    // SIGTERM (docker stop) ends it cleanly.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("runs kill");
    assert!(killed.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("child status") {
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
