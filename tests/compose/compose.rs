//! The compose files themselves: `.env` sets exactly the environment's
//! ports, `docker-compose config` accepts the service alone and with the
//! development tools and publishes the expected ports, containers reach one
//! another by service name, every file the compose files name exists, and
//! the scheduler is configured only through settings the code reads.

use std::collections::{BTreeMap, BTreeSet};

use scheduler_service::config::vars;
use serde_yaml::Value;

use crate::{
    compose_files::{
        BASE, OVERRIDE, dotenv, environment, mapping, names, published_ports, read,
        resolved_config, root, scalar, services, sorted, yaml_file,
    },
    dockerfile::build_dockerfiles,
};

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
    ("SCHEDULER_HTTP_PORT", 9080),
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
    ("scheduler-service", &[9001, 9080, 9464]),
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
/// The HTTP/JSON API's port, published beside gRPC's.
const BASE_HTTP_SETTINGS: &[&str] = &[vars::HTTP_PORT];
const OVERRIDE_SCHEDULER_SETTINGS: &[&str] = &[vars::OTEL_EXPORTER_OTLP_ENDPOINT];

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

    let s = services(&full);
    assert_services_reach_one_another(&s);
    assert_scheduler_waits_for_its_dependencies(&s);
}

/// Containers reach one another by service name, on the ports the servers
/// listen on inside the network.
fn assert_services_reach_one_another(s: &BTreeMap<String, Value>) {
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
}

/// The scheduler starts once its database and broker are healthy, and comes
/// back after a crash.
fn assert_scheduler_waits_for_its_dependencies(s: &BTreeMap<String, Value>) {
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
        sorted(
            ARTICLE_SETTINGS
                .iter()
                .chain(BASE_OBSERVABILITY_SETTINGS)
                .chain(BASE_HTTP_SETTINGS)
        )
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
