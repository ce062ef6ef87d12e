use super::*;

/// The settings from exactly these variables.
pub(super) fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn defaults_match_the_article() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.environment, Environment::Development);
    assert_eq!(s.server.port, 9001);
    assert_eq!(s.database.db_name, "jobs_db");
    let parts = settings(&[(vars::DATABASE_HOST_NAME, "127.0.0.1")]).unwrap();
    assert_eq!(parts.database.uri, "mongodb://127.0.0.1:27017/");
    assert_eq!(s.topics.job_create.name, "topic-job-create");
    assert_eq!(s.topics.job_update.name, "topic-job-update");
    assert_eq!(s.topics.job_run.name, "topic-job-run");
    assert_eq!(s.topics.job_run_result, "topic-job-run-result");
    assert_eq!(
        s.topics.consumer_group_id,
        "job-run-result-consumer-scheduler"
    );
    assert_eq!(s.topics.consumer_workers, 1);
}

#[test]
fn invalid_settings_name_the_variable() {
    let cases: &[(&str, &str)] = &[
        (vars::SERVER_PORT, "70000"),
        (vars::SERVER_PORT, "abc"),
        (vars::ENVIRONMENT, "moon"),
        (vars::DATABASE_SCHEMA, "mysql"),
        (vars::DATABASE_URI, "http://db/"),
        (vars::DATABASE_USER_FILE, "/nonexistent/user.txt"),
        (vars::KAFKA_COMPRESSION, "brotli"),
        (vars::KAFKA_ENABLE_IDEMPOTENCE, "maybe"),
        (vars::KAFKA_BROKERS, "a:1,,b:2"),
        (vars::TOPIC_JOB_RUN_PARTITIONS, "0"),
        (vars::TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT, "1000"),
        (vars::LIST_MAX_PAGE_SIZE, "-1"),
        (vars::SCHEDULER_MISFIRE_POLICY, "skip-if-late:soon"),
        (vars::SCHEDULER_RUN_TIMEOUT_POLICY, "ignore"),
    ];
    for (name, value) in cases {
        let err = settings(&[(name, value)]).expect_err(name);
        assert_eq!(err.name, *name, "{err}");
    }
    let user_only = settings(&[(vars::DATABASE_USER, "u")]).unwrap_err();
    assert_eq!(user_only.name, vars::DATABASE_PASS_FILE);
}

/// The settings from a process environment of exactly these variables.
fn from_process(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<&str, &str> = pairs.iter().copied().collect();
    Settings::from_process(|name| map.get(name).map(|v| (*v).to_owned()))
}

/// Writes a `.env` file and a topics file in a fresh directory (keep
/// it); returns it and the `.env` file's path. The `.env` file names the
/// topics file.
fn env_files(dotenv: &str, topics: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let topics_path = dir.path().join(".env.topics");
    std::fs::write(&topics_path, topics).unwrap();
    let topics_path = topics_path.to_string_lossy().into_owned();
    let dotenv_path = dir.path().join(".env");
    std::fs::write(
        &dotenv_path,
        format!("{}={topics_path}\n{dotenv}", vars::TOPICS_FILE),
    )
    .unwrap();
    (dir, dotenv_path.to_string_lossy().into_owned())
}

#[test]
fn the_environment_wins_over_the_env_file_which_wins_over_the_topics_file() {
    let (_dir, dotenv) = env_files(
        "SERVER_PORT=2\nMETRICS_PORT=2\n",
        "SERVER_PORT=3\nMETRICS_PORT=3\nOTEL_SERVICE_NAME=topics\nTOPIC_JOB_RUN=runs\n",
    );
    let s = from_process(&[(vars::CONFIG_ENV_FILE, &dotenv), (vars::SERVER_PORT, "1")]).unwrap();
    assert_eq!(s.server.port, 1);
    assert_eq!(s.observability.metrics_port, 2);
    assert_eq!(s.observability.service_name, "topics");
    assert_eq!(s.topics.job_run.name, "runs");
}

#[test]
fn a_blank_value_is_unset_and_hides_the_lower_sources() {
    let (_dir, dotenv) = env_files("SERVER_PORT=2\nMETRICS_PORT=\n", "METRICS_PORT=3\n");
    let s = from_process(&[
        (vars::CONFIG_ENV_FILE, &dotenv),
        (vars::SERVER_PORT, "  "),
        (vars::OTEL_SERVICE_NAME, " scheduler-eu\t"),
    ])
    .unwrap();
    assert_eq!(s.server.port, 9001);
    assert_eq!(s.observability.metrics_port, 9464);
    assert_eq!(s.observability.service_name, "scheduler-eu");
    let s = settings(&[(vars::SERVER_PORT, ""), (vars::KAFKA_BROKERS, " \n")]).unwrap();
    assert_eq!(s.server.port, 9001);
    assert!(s.kafka.is_none());
}

#[test]
fn the_env_file_and_the_topics_file_are_required_only_when_named() {
    let err = from_process(&[(vars::CONFIG_ENV_FILE, "/nonexistent/.env")]).unwrap_err();
    assert_eq!(err.name, vars::CONFIG_ENV_FILE, "{err}");
    let (_dir, dotenv) = env_files("", "");
    let err = from_process(&[
        (vars::CONFIG_ENV_FILE, &dotenv),
        (vars::TOPICS_FILE, "/nonexistent/.env.topics"),
    ])
    .unwrap_err();
    assert_eq!(err.name, vars::TOPICS_FILE, "{err}");
    let absent = read_env_file(Path::new("/nonexistent/.env"), vars::CONFIG_ENV_FILE, false);
    assert!(absent.unwrap().is_empty());
}

#[test]
fn only_the_listed_variables_are_read() {
    let (_dir, dotenv) = env_files("server_port=2\nSERVER_PORT_X=3\n", "");
    let s = from_process(&[(vars::CONFIG_ENV_FILE, &dotenv)]).unwrap();
    assert_eq!(s.server.port, 9001);
    let asked = std::sync::Mutex::new(Vec::new());
    Settings::from_lookup(|name| {
        asked.lock().unwrap().push(name.to_owned());
        None
    })
    .unwrap();
    let asked = asked.into_inner().unwrap();
    assert!(
        asked.iter().all(|name| vars::ALL.contains(&name.as_str())),
        "{asked:?}"
    );
}

#[test]
fn an_alias_stands_for_its_name_and_the_name_wins() {
    let alias = settings(&[(vars::DATABASE_SCHEME, "postgres")]).unwrap();
    assert_eq!(alias.database.uri, "postgres://127.0.0.1:5432/postgres");
    let both = settings(&[
        (vars::DATABASE_SCHEMA, "mongodb"),
        (vars::DATABASE_SCHEME, "postgres"),
        (vars::DATABASE_HOST_NAME, "db"),
        (vars::DATABASE_DOMAIN, "other"),
    ])
    .unwrap();
    assert_eq!(both.database.uri, "mongodb://db:27017/");
    // The name wins from a lower source too.
    let (_dir, dotenv) = env_files("DATABASE_SCHEMA=mongodb\n", "");
    let s = from_process(&[
        (vars::CONFIG_ENV_FILE, &dotenv),
        (vars::DATABASE_SCHEME, "postgres"),
    ])
    .unwrap();
    assert_eq!(s.database.kind, DatabaseKind::MongoDb);
    // A bad scheme under the alias names the variable it stands for.
    let err = settings(&[(vars::DATABASE_SCHEME, "mysql")]).unwrap_err();
    assert_eq!(err.name, vars::DATABASE_SCHEMA, "{err}");
}

#[test]
fn a_secret_file_wins_over_the_plain_variable() {
    let dir = tempfile::tempdir().unwrap();
    let user_file = dir.path().join("user");
    std::fs::write(&user_file, "from-file\n").unwrap();
    let s = settings(&[
        (vars::DATABASE_USER_FILE, &user_file.to_string_lossy()),
        (vars::DATABASE_USER, "plain"),
        (vars::DATABASE_PASS, "p"),
    ])
    .unwrap();
    assert_eq!(
        s.database.uri,
        "mongodb://from%2Dfile:p@127.0.0.1:27017/?authSource=admin"
    );
}

#[test]
fn numbers_and_flags_are_read_strictly_and_errors_name_the_variable() {
    for (name, value) in [
        (vars::SERVER_PORT, "yes"),
        (vars::SHUTDOWN_GRACE_SECS, "off"),
        (vars::OUTBOX_POLL_MS, "true"),
        (vars::KAFKA_ENABLE_IDEMPOTENCE, "on"),
        (vars::DATABASE_POOL_SIZE, "1.5"),
    ] {
        let err = settings(&[(name, value)]).expect_err(value);
        assert_eq!(err.name, name, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("configuration error in {name}: "))
        );
        assert!(err.reason.contains(value), "{err}");
    }
    let err = settings(&[(vars::LIST_MAX_PAGE_SIZE, "0")]).unwrap_err();
    assert_eq!(err.name, vars::LIST_MAX_PAGE_SIZE);
    assert!(err.reason.contains("at least 1"), "{err}");
    let s = settings(&[
        (vars::KAFKA_BROKERS, "k:9092"),
        (vars::KAFKA_ENABLE_IDEMPOTENCE, "No"),
    ])
    .unwrap();
    assert_eq!(s.kafka.map(|k| k.idempotence), Some(false));
}

#[test]
fn the_environment_takes_short_names_in_any_case() {
    for (text, environment) in [
        ("dev", Environment::Development),
        ("TEST", Environment::Staging),
        ("Staging", Environment::Staging),
        ("PROD", Environment::Production),
    ] {
        assert_eq!(Environment::try_from(text.to_owned()), Ok(environment));
    }
}

#[test]
fn every_other_variable_reaches_its_setting() {
    let s = settings(&[
        (vars::APP_VERSION, "1.2.3"),
        (vars::DATABASE_URI, "mongodb://db:1/"),
        (vars::DATABASE_DB_NAME, "jobs_eu"),
        (vars::DATABASE_COLLECTION, "jobs_v2"),
        (vars::DATABASE_TIMEOUT_MS, "750"),
        (vars::KAFKA_BROKERS, "k1:9092,k2:9092"),
        (vars::KAFKA_COMPRESSION, "ZSTD"),
        (vars::KAFKA_ENABLE_IDEMPOTENCE, "false"),
        (vars::KAFKA_MESSAGE_TIMEOUT_MS, "4000"),
        (vars::KAFKA_FETCH_WAIT_MAX_MS, "20"),
        (vars::TOPIC_JOB_CREATE, "creates"),
        (vars::TOPIC_JOB_CREATE_PARTITIONS, "2"),
        (vars::TOPIC_JOB_CREATE_REPLICAS, "3"),
        (vars::TOPIC_JOB_UPDATE, "updates"),
        (vars::TOPIC_JOB_UPDATE_PARTITIONS, "4"),
        (vars::TOPIC_JOB_UPDATE_REPLICAS, "5"),
        (vars::TOPIC_JOB_RUN_RESULT, "results"),
        (vars::TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID, "group"),
        (vars::LIST_MAX_PAGE_SIZE, "50"),
        (vars::SCHEDULER_LOOK_AHEAD_SECS, "30"),
        (vars::SCHEDULER_FIRE_CONCURRENCY, "64"),
        (vars::SCHEDULER_RUN_TIMEOUT_SECS, "120"),
        (vars::OUTBOX_POLL_MS, "250"),
        (vars::SHUTDOWN_GRACE_SECS, "0"),
    ])
    .unwrap();
    assert_eq!(s.app_version, "1.2.3");
    let db = &s.database;
    assert_eq!(
        (db.kind, db.uri.as_str()),
        (DatabaseKind::MongoDb, "mongodb://db:1/")
    );
    assert_eq!(
        (db.db_name.as_str(), db.collection.as_str()),
        ("jobs_eu", "jobs_v2")
    );
    assert_eq!(db.timeout, Duration::from_millis(750));
    let kafka = s.kafka.expect("brokers set");
    assert_eq!(kafka.brokers, "k1:9092,k2:9092");
    assert_eq!(kafka.compression, "zstd");
    assert!(!kafka.idempotence);
    assert_eq!(kafka.message_timeout, Duration::from_secs(4));
    assert_eq!(kafka.fetch_wait_max, Duration::from_millis(20));
    let spec = |name: &str, partitions, replicas| TopicSpec {
        name: name.to_owned(),
        partitions,
        replicas,
    };
    assert_eq!(s.topics.job_create, spec("creates", 2, 3));
    assert_eq!(s.topics.job_update, spec("updates", 4, 5));
    assert_eq!(s.topics.job_run_result, "results");
    assert_eq!(s.topics.consumer_group_id, "group");
    let scheduler = &s.scheduler;
    assert_eq!(scheduler.max_page_size, 50);
    assert_eq!(scheduler.look_ahead, Duration::from_secs(30));
    assert_eq!(scheduler.fire_concurrency, 64);
    assert_eq!(scheduler.run_timeout, Duration::from_secs(120));
    assert_eq!(scheduler.outbox_poll, Duration::from_millis(250));
    // The relay grace follows the broker's acknowledgement timeout.
    assert_eq!(scheduler.relay_grace, Duration::from_secs(5));
    assert_eq!(s.shutdown_grace, Duration::ZERO);
}
