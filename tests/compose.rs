//! The docker-compose development environment, checked without a Docker
//! engine: `docker-compose.yml` (the scheduler, MongoDB, ZooKeeper, Kafka),
//! `docker-compose.override.yml` (mongo-express, zoonavigator, kafka-ui,
//! grpcui, and the observability stack: Jaeger, Prometheus, Grafana), `.env`,
//! one folder per service and the root `Dockerfile`.
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
    config::{database::DEFAULT_COLLECTION, vars},
    grpc::proto::{self, jobs_service_client::JobsServiceClient},
    telemetry::metrics::{self, Metrics},
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
    ("SCHEDULER_METRICS_PORT", 9464),
    ("PROMETHEUS_PORT", 9090),
    ("GRAFANA_PORT", 3000),
    ("JAEGER_UI_PORT", 16686),
    ("JAEGER_OTLP_GRPC_PORT", 4317),
];

/// The services of `docker-compose.yml` and the host ports they publish.
const CORE: &[(&str, &[u16])] = &[
    ("scheduler-db-service", &[27017]),
    ("zk1", &[2181, 8078]),
    ("kafka1", &[9092]),
    ("scheduler-service", &[9001, 9464]),
];

/// The debugging tools of `docker-compose.override.yml` and their host ports.
const DEV_TOOLS: &[(&str, &[u16])] = &[
    ("mongo-express", &[8081]),
    ("zoo-navigator", &[9000]),
    ("kafka-ui", &[8080]),
    ("grpcui-service", &[5000]),
    ("jaeger", &[4317, 16686]),
    ("prometheus", &[9090]),
    ("grafana", &[3000]),
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
    ("prometheus-service", "prometheus", "v2."),
    ("grafana-service", "grafana", "11."),
    ("jaeger-service", "all-in-one", "1."),
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

/// The scheduler's settings for the observability stack: `/metrics` in
/// `docker-compose.yml` (it is part of the service), the OTLP endpoint in the
/// override (Jaeger only exists there).
const BASE_OBSERVABILITY_SETTINGS: &[&str] = &[vars::METRICS_PORT];
const OVERRIDE_SCHEDULER_SETTINGS: &[&str] = &[vars::OTEL_EXPORTER_OTLP_ENDPOINT];

/// The compose services of the observability stack (override only).
const PROMETHEUS: &str = "prometheus";
const GRAFANA: &str = "grafana";
const JAEGER: &str = "jaeger";
/// Where the Dockerfiles of `prometheus-service/` and `grafana-service/`
/// put the configuration (the images' default paths).
const PROMETHEUS_CONFIG: &str = "/etc/prometheus/prometheus.yml";
const GRAFANA_PROVISIONING: &str = "/etc/grafana/provisioning";
/// The Prometheus job that scrapes the scheduler.
const SCRAPE_JOB: &str = "scheduler-service";

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
    port_pairs(service)
        .into_iter()
        .map(|(published, _)| published)
        .collect()
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
/// A service without a build section must be one of `docker-compose.yml`
/// that the override only adds settings to.
fn build_dockerfiles(raw: &Value) -> Vec<(String, PathBuf)> {
    let base = services(&yaml_file(BASE));
    services(raw)
        .into_iter()
        .filter_map(|(name, service)| {
            let Some(build) = service.get("build") else {
                assert!(
                    base.get(&name).is_some_and(|s| s.get("build").is_some()),
                    "service {name} has no build section"
                );
                return None;
            };
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
            Some((name, dockerfile))
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
    assert_eq!(
        sorted(env.keys()),
        sorted(ARTICLE_SETTINGS.iter().chain(BASE_OBSERVABILITY_SETTINGS))
    );
    // What the override adds to the scheduler: the same rule.
    let raw_override = yaml_file(OVERRIDE);
    let added = environment(&services(&raw_override)["scheduler-service"]);
    for name in added.keys() {
        assert!(
            known.contains(name.as_str()),
            "{OVERRIDE}: scheduler-service sets {name}, which is not in \
             scheduler_service::config::vars::ALL"
        );
    }
    assert_eq!(sorted(added.keys()), sorted(OVERRIDE_SCHEDULER_SETTINGS));
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

/// (published, target) of each port a resolved service publishes.
fn port_pairs(service: &Value) -> Vec<(u16, u16)> {
    let number = |v: &Value| -> u16 {
        let text = scalar(v);
        text.parse()
            .unwrap_or_else(|_| panic!("port {text:?} is not a number"))
    };
    service
        .get("ports")
        .and_then(Value::as_sequence)
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    let target = p
                        .get("target")
                        .unwrap_or_else(|| panic!("port without a target: {p:?}"));
                    let published = p
                        .get("published")
                        .unwrap_or_else(|| panic!("port without a published port: {p:?}"));
                    (number(published), number(target))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (scheme, host, port) of an `http://host:port[/path]` URL; the port is
/// required.
fn url_parts(url: &str) -> (String, String, u16) {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{url:?} is not a URL"));
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url:?} names no port"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("{url:?}: port {port:?} is not a number"));
    (scheme.to_owned(), host.to_owned(), port)
}

/// The file or folder of `folder`'s build context that its Dockerfile
/// copies to `dest` in the image (a `COPY SRC DEST` line), checked to exist.
fn copied_to(folder: &str, dest: &str) -> PathBuf {
    let dockerfile = root().join(folder).join("Dockerfile");
    let source = instructions(&read(&dockerfile))
        .into_iter()
        .filter(|(k, _)| k == "COPY")
        .find_map(|(_, args)| {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            match words.as_slice() {
                [src, dst] if dst.trim_end_matches('/') == dest => Some((*src).to_owned()),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("{}: nothing is copied to {dest}", dockerfile.display()));
    let path = root().join(folder).join(source);
    assert!(
        path.exists(),
        "{}: copies {} to {dest}, which does not exist",
        dockerfile.display(),
        path.display()
    );
    path
}

/// The files of a folder whose names end in one of `extensions`, sorted.
fn files_in(folder: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    files.sort();
    files
}

/// Grafana's provisioned datasources (`provisioning/datasources/*.yml`):
/// uid → (type, url).
fn grafana_datasources() -> BTreeMap<String, (String, String)> {
    let provisioning = copied_to("grafana-service", GRAFANA_PROVISIONING);
    let files = files_in(&provisioning.join("datasources"), &["yml", "yaml"]);
    assert!(!files.is_empty(), "Grafana provisions no datasource");
    let mut out = BTreeMap::new();
    for file in files {
        let doc: Value = serde_yaml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
        let list = doc["datasources"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{}: no datasources list", file.display()));
        for ds in list {
            let field = |key: &str| -> String {
                ds.get(key)
                    .map(scalar)
                    .unwrap_or_else(|| panic!("{}: a datasource has no {key}", file.display()))
            };
            let uid = field("uid");
            assert!(!uid.is_empty(), "{}: empty datasource uid", file.display());
            let previous = out.insert(uid.clone(), (field("type"), field("url")));
            assert!(
                previous.is_none(),
                "datasource uid {uid} is provisioned twice"
            );
        }
    }
    out
}

/// The folder the dashboard provider loads, as the image path and as the
/// repository folder copied there.
fn grafana_dashboard_folder() -> (String, PathBuf) {
    let provisioning = copied_to("grafana-service", GRAFANA_PROVISIONING);
    let files = files_in(&provisioning.join("dashboards"), &["yml", "yaml"]);
    assert_eq!(files.len(), 1, "expected one dashboard provider file");
    let doc: Value = serde_yaml::from_str(&read(&files[0]))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", files[0].display()));
    let providers = doc["providers"].as_sequence().expect("a providers list");
    assert_eq!(providers.len(), 1, "expected one dashboard provider");
    let provider = &providers[0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    let path = scalar(&provider["options"]["path"]);
    let folder = copied_to("grafana-service", &path);
    assert!(folder.is_dir(), "{} is not a folder", folder.display());
    (path, folder)
}

/// The dashboards Grafana loads: file name → JSON.
fn grafana_dashboards() -> BTreeMap<String, serde_json::Value> {
    let (_, folder) = grafana_dashboard_folder();
    let files = files_in(&folder, &["json"]);
    assert!(!files.is_empty(), "{}: no dashboard JSON", folder.display());
    files
        .into_iter()
        .map(|file| {
            let json = serde_json::from_str(&read(&file))
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", file.display()));
            let name = file
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, json)
        })
        .collect()
}

/// Every panel of a dashboard, those inside rows included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for panel in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The metric names a PromQL expression selects: identifiers outside string
/// literals, label matchers and durations that name a `scheduler_*` or
/// `process_*` series. Also checks that brackets balance.
fn promql_metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut stack = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                assert!(i < chars.len(), "unterminated string in {expr:?}");
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = stack.pop();
                let expected = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                assert_eq!(open, Some(expected), "unbalanced {c:?} in {expr:?}");
            }
            c if c.is_ascii_digit() => {
                // a number or a duration (1m, 0.99)
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || chars[i + 1] == '.')
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len()
                    && (chars[i + 1].is_ascii_alphanumeric() || matches!(chars[i + 1], '_' | ':'))
                {
                    i += 1;
                }
                let word: String = chars[start..=i].iter().collect();
                // inside {...}: a label name, not a metric
                if stack.last() != Some(&'{')
                    && (word.starts_with("scheduler_") || word.starts_with("process_"))
                {
                    names.push(word);
                }
            }
            _ => {}
        }
        i += 1;
    }
    assert!(stack.is_empty(), "unclosed {stack:?} in {expr:?}");
    names
}

/// The values of `label="..."` matchers in a PromQL expression.
fn label_values(expr: &str, label: &str) -> Vec<String> {
    let needle = format!("{label}=\"");
    expr.match_indices(&needle)
        .filter(|(at, _)| {
            // a whole label name, not the end of a longer one
            !expr[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            let rest = &expr[at + needle.len()..];
            rest[..rest.find('"').expect("a closing quote")].to_owned()
        })
        .collect()
}

/// Whether an aggregation of the expression keeps the `le` label
/// (`by (..., le)`), as `histogram_quantile` needs.
fn groups_by_le(expr: &str) -> bool {
    expr.match_indices("by (").any(|(at, m)| {
        let rest = &expr[at + m.len()..];
        rest[..rest.find(')').unwrap_or(rest.len())]
            .split(',')
            .any(|label| label.trim() == "le")
    })
}

/// The job names of `prometheus.yml`, and the file parsed.
fn prometheus_config() -> (Vec<String>, Value) {
    let path = copied_to("prometheus-service", PROMETHEUS_CONFIG);
    let config: Value = serde_yaml::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("prometheus.yml: a scrape_configs list")
        .iter()
        .map(|job| scalar(&job["job_name"]))
        .collect();
    (jobs, config)
}

#[test]
fn prometheus_scrapes_the_scheduler_and_jaeger_receives_its_spans() {
    let base = services(&resolved_config(&[BASE]));
    let s = services(&resolved_config(&[BASE, OVERRIDE]));
    let env = |name: &str| environment(&s[name]);

    // Development tools: in the override only, each with a healthcheck.
    for tool in [PROMETHEUS, GRAFANA, JAEGER] {
        assert!(s.contains_key(tool), "{OVERRIDE} defines no {tool}");
        assert!(!base.contains_key(tool), "{tool} belongs in {OVERRIDE}");
        assert!(
            s[tool].get("healthcheck").is_some(),
            "{tool} has no healthcheck"
        );
        assert_eq!(s[tool]["restart"].as_str(), Some("unless-stopped"));
    }
    // Without the override there is no Jaeger to export to.
    assert!(
        !environment(&base["scheduler-service"]).contains_key(vars::OTEL_EXPORTER_OTLP_ENDPOINT),
        "{BASE} points the scheduler at an OTLP collector that only {OVERRIDE} defines"
    );

    // /metrics: listening on all interfaces, published to the host.
    let scheduler = env("scheduler-service");
    if let Some(host) = scheduler.get(vars::SERVER_HOST) {
        assert_eq!(host, "0.0.0.0", "other containers cannot reach /metrics");
    }
    let metrics_port: u16 = scheduler[vars::METRICS_PORT]
        .parse()
        .expect("METRICS_PORT is a number");
    assert!(
        port_pairs(&s["scheduler-service"]).contains(&(9464, metrics_port)),
        "the host does not reach /metrics on 9464"
    );

    // Prometheus scrapes that port of that service every 5 s.
    let (jobs, config) = prometheus_config();
    assert!(jobs.contains(&SCRAPE_JOB.to_owned()), "no job {SCRAPE_JOB}");
    let job = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .find(|job| scalar(&job["job_name"]) == SCRAPE_JOB)
        .expect("the scheduler's job");
    let interval = job
        .get("scrape_interval")
        .or_else(|| config["global"].get("scrape_interval"))
        .map(scalar);
    assert_eq!(interval.as_deref(), Some("5s"));
    assert_eq!(
        job.get("metrics_path")
            .map_or_else(|| "/metrics".to_owned(), scalar),
        "/metrics"
    );
    let targets: Vec<String> = job["static_configs"]
        .as_sequence()
        .expect("static_configs")
        .iter()
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| scalar(&t))
        .collect();
    assert_eq!(targets.len(), 1, "one scheduler target: {targets:?}");
    let (host, port) = targets[0]
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("target {} names no port", targets[0]));
    assert!(
        s.contains_key(host),
        "target host {host} is not a compose service"
    );
    assert_eq!(
        environment(&s[host])
            .get(vars::METRICS_PORT)
            .map(String::as_str),
        Some(port),
        "prometheus.yml scrapes {host}:{port}, but {host} serves /metrics on another port"
    );
    assert_eq!(host, "scheduler-service");
    assert_eq!(
        s[PROMETHEUS]["depends_on"]["scheduler-service"]["condition"].as_str(),
        Some("service_started")
    );

    // Spans go over OTLP/gRPC to the port Jaeger receives them on.
    let endpoint = &scheduler[vars::OTEL_EXPORTER_OTLP_ENDPOINT];
    let (scheme, host, port) = url_parts(endpoint);
    assert_eq!(scheme, "http", "{endpoint}: Jaeger's receiver is plaintext");
    assert_eq!(host, JAEGER, "{endpoint} is not the Jaeger service");
    let jaeger = env(JAEGER);
    assert_eq!(
        jaeger.get("COLLECTOR_OTLP_ENABLED").map(String::as_str),
        Some("true")
    );
    let otlp_grpc: u16 = jaeger
        .get("COLLECTOR_OTLP_GRPC_HOST_PORT")
        .map_or("4317", |hp| hp.rsplit(':').next().unwrap_or_default())
        .parse()
        .expect("COLLECTOR_OTLP_GRPC_HOST_PORT ends in a port");
    assert_eq!(
        port, otlp_grpc,
        "{endpoint}: Jaeger takes OTLP/gRPC on {otlp_grpc}"
    );
    let jaeger_ports = port_pairs(&s[JAEGER]);
    assert!(
        jaeger_ports.contains(&(4317, otlp_grpc)),
        "a scheduler on the host cannot send spans to 127.0.0.1:4317: {jaeger_ports:?}"
    );
    assert!(
        jaeger_ports.contains(&(16686, 16686)),
        "Jaeger's UI is not on the host's port 16686: {jaeger_ports:?}"
    );
    // The scheduler starts after Jaeger but does not wait for its health: a
    // tracing backend must never keep the scheduler down.
    assert_eq!(
        s["scheduler-service"]["depends_on"][JAEGER]["condition"].as_str(),
        Some("service_started")
    );
    for dependency in ["scheduler-db-service", "kafka1"] {
        assert_eq!(
            s["scheduler-service"]["depends_on"][dependency]["condition"].as_str(),
            Some("service_healthy"),
            "the override dropped the scheduler's dependency on {dependency}"
        );
    }

    // Grafana reads both through the compose network, on the ports the
    // servers listen on there.
    let datasources = grafana_datasources();
    let by_type = |kind: &str| -> (String, String) {
        let found: Vec<_> = datasources
            .iter()
            .filter(|(_, (t, _))| t == kind)
            .map(|(uid, (_, url))| (uid.clone(), url.clone()))
            .collect();
        assert_eq!(found.len(), 1, "expected one {kind} datasource: {found:?}");
        found[0].clone()
    };
    for (kind, service, port) in [("prometheus", PROMETHEUS, 9090), ("jaeger", JAEGER, 16686)] {
        let (uid, url) = by_type(kind);
        let (scheme, host, url_port) = url_parts(&url);
        assert_eq!(
            (scheme.as_str(), host.as_str(), url_port),
            ("http", service, port),
            "datasource {uid}: {url}"
        );
        assert!(
            port_pairs(&s[service])
                .iter()
                .any(|(_, target)| *target == port),
            "{service} does not publish its port {port}"
        );
        assert_eq!(
            s[GRAFANA]["depends_on"][service]["condition"].as_str(),
            Some("service_healthy"),
            "grafana must wait until {service} is healthy"
        );
    }
    assert!(
        port_pairs(&s[GRAFANA]).contains(&(3000, 3000)),
        "Grafana is not on the host's port 3000"
    );

    // The home dashboard is one the provider loads.
    let (path, folder) = grafana_dashboard_folder();
    let home = env(GRAFANA)
        .get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        .cloned()
        .expect("Grafana opens on the scheduler's dashboard");
    let file = home
        .strip_prefix(&format!("{path}/"))
        .unwrap_or_else(|| panic!("home dashboard {home} is not under {path}"));
    assert!(
        folder.join(file).is_file(),
        "home dashboard {home}: {} does not exist",
        folder.join(file).display()
    );
    assert!(grafana_dashboards().contains_key(file));
}

#[test]
fn the_dashboard_shows_every_metric_the_service_exports() {
    let datasources = grafana_datasources();
    let (jobs, _) = prometheus_config();
    // What the service renders with nothing recorded yet: the metrics
    // without labels, and the process collector's.
    let rendered = Metrics::new().render(0);
    let rendered_type = |name: &str| -> Option<String> {
        rendered.lines().find_map(|line| {
            let rest = line.strip_prefix("# TYPE ")?;
            let (n, kind) = rest.split_once(' ')?;
            (n == name).then(|| kind.trim().to_owned())
        })
    };
    let exported: BTreeSet<&str> = metrics::NAMES.iter().copied().collect();
    assert!(!exported.is_empty());

    let dashboards = grafana_dashboards();
    let mut shown = BTreeSet::new();
    for (file, dashboard) in &dashboards {
        assert!(
            dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{file}: no uid"
        );
        let mut ids = BTreeSet::new();
        let all = panels(dashboard);
        assert!(!all.is_empty(), "{file}: no panels");
        for panel in all {
            let title = panel["title"].as_str().unwrap_or_default();
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{file}: {title}: no id"));
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
            assert!(
                matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
                "{file}: {title}: gridPos {grid} is outside the 24 columns"
            );
            if panel["type"] == "row" {
                continue;
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: {title}: no query");
            let sources = std::iter::once(&panel["datasource"])
                .chain(targets.iter().map(|t| &t["datasource"]))
                .filter(|d| !d.is_null());
            for source in sources {
                let uid = source["uid"].as_str().unwrap_or_default();
                let (kind, _) = datasources.get(uid).unwrap_or_else(|| {
                    panic!("{file}: {title}: datasource uid {uid:?} is not provisioned")
                });
                assert_eq!(
                    source["type"].as_str(),
                    Some(kind.as_str()),
                    "{file}: {title}: datasource {uid} is a {kind}"
                );
            }
            for target in &targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{file}: {title}: empty query");
                for job in label_values(expr, "job") {
                    assert!(
                        jobs.contains(&job),
                        "{file}: {title}: job {job:?} is not scraped by prometheus.yml"
                    );
                }
                let names = promql_metric_names(expr);
                assert!(
                    !names.is_empty(),
                    "{file}: {title}: {expr} selects no metric"
                );
                for name in names {
                    if name.starts_with("process_") {
                        assert!(
                            rendered_type(&name).is_some(),
                            "{file}: {title}: {name} is not a process metric the service exports"
                        );
                        continue;
                    }
                    if exported.contains(name.as_str()) {
                        assert_ne!(
                            rendered_type(&name).as_deref(),
                            Some("histogram"),
                            "{file}: {title}: {name} is a histogram: select _bucket, _sum or _count"
                        );
                        shown.insert(name);
                        continue;
                    }
                    // A histogram's series: NAME_bucket, NAME_sum, NAME_count.
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix))
                        .filter(|base| exported.contains(base))
                        .unwrap_or_else(|| {
                            panic!(
                                "{file}: {title}: {name} is not in \
                                 scheduler_service::telemetry::metrics::NAMES"
                            )
                        });
                    assert!(
                        !base.ends_with("_total")
                            && rendered_type(base).is_none_or(|t| t == "histogram"),
                        "{file}: {title}: {name}: {base} is not a histogram"
                    );
                    if name.ends_with("_bucket") {
                        assert!(
                            expr.contains("histogram_quantile(") && groups_by_le(expr),
                            "{file}: {title}: {name} outside histogram_quantile by le"
                        );
                    }
                    shown.insert(base.to_owned());
                }
            }
        }
    }
    let missing: Vec<&str> = exported
        .iter()
        .copied()
        .filter(|name| !shown.contains(*name))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
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
    assert_eq!(env[vars::METRICS_PORT], "0", "compose sets no METRICS_PORT");

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
