//! Configuration, parsed once at start-up into typed settings.
//!
//! The `config` crate (config-rs) layers the sources, highest priority
//! first: the process environment; `config/.env` (or the file
//! `CONFIG_ENV_FILE` names, which must then exist); the topics file
//! (`TOPICS_FILE`, default `config/.env.topics`, which must exist when
//! `TOPICS_FILE` is set). Only the variables of [`vars::ALL`] are read.
//! Values are trimmed, and a variable that is blank in the highest source
//! that sets it is unset. Secrets come from files named by `*_FILE`
//! variables (Docker secrets), trimmed of surrounding whitespace; such a file
//! wins over the plain variable.
//!
//! Each concern deserializes its variables into a serde struct whose fields
//! are the variables (lower-cased, as config-rs keys them) with their
//! defaults, then checks the rules across fields: [`server`], [`database`],
//! [`broker`] and [`kafka_security`], [`scheduler`], [`security`],
//! [`telemetry`], [`events`], [`history`], [`sharding`]. A missing or
//! invalid setting is one [`ConfigError`] naming the variable.

use std::{collections::HashMap, path::Path, time::Duration};

use ::config::{Map, Source, Value, ValueKind};
use serde::{Deserialize, de::DeserializeOwned};

pub mod broker;
pub mod database;
pub mod events;
pub mod history;
pub mod kafka_security;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod sharding;
pub mod telemetry;
mod value;
pub mod vars;

pub use broker::{KafkaSettings, TopicSettings, TopicSpec};
pub use database::{DatabaseKind, DatabaseSettings, redact_uri};
pub use events::EventSettings;
pub use history::HistorySettings;
pub use scheduler::{MisfirePolicy, RunTimeoutPolicy, SchedulerSettings};
pub use security::{AuthPublicKey, SecuritySettings, StreamSettings, TlsSettings};
pub use server::ServerSettings;
pub use sharding::ShardingSettings;
pub use telemetry::ObservabilitySettings;

/// The `.env` file read when `CONFIG_ENV_FILE` is not set (if it exists).
const DEFAULT_ENV_FILE: &str = "config/.env";

/// The topics file read when `TOPICS_FILE` is not set (if it exists).
const DEFAULT_TOPICS_FILE: &str = "config/.env.topics";

/// What a [`ConfigError`] names when config-rs gives no key (its merge of
/// the sources failed).
const MERGED_SOURCES: &str = "the merged sources";

/// A setting that is missing, unreadable or invalid.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {name}: {reason}")]
pub struct ConfigError {
    /// The variable (or file) at fault.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    fn new(name: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<::config::ConfigError> for ConfigError {
    /// Names the variable whose lower-cased key config-rs gives.
    fn from(err: ::config::ConfigError) -> Self {
        match err {
            ::config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => ConfigError::new(&key.to_ascii_uppercase(), error.to_string()),
            ::config::ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => ConfigError::new(
                &key.to_ascii_uppercase(),
                format!("expected {expected}, got {unexpected}"),
            ),
            other => ConfigError::new(MERGED_SOURCES, other.to_string()),
        }
    }
}

/// The deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Environment {
    /// A developer's machine: human-readable logs.
    #[default]
    Development,
    /// A shared test deployment.
    Staging,
    /// Production: JSON logs, strict checks.
    Production,
}

impl TryFrom<String> for Environment {
    type Error = String;

    /// `development` (or `dev`), `staging` (or `test`), `production` (or
    /// `prod`), in any case.
    fn try_from(text: String) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "staging" | "test" => Ok(Environment::Staging),
            "production" | "prod" => Ok(Environment::Production),
            other => Err(format!(
                "expected development, staging or production, got {other:?}"
            )),
        }
    }
}

/// All settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the service runs.
    pub environment: Environment,
    /// Version reported at start-up.
    pub app_version: String,
    /// The gRPC server.
    pub server: ServerSettings,
    /// The job store.
    pub database: DatabaseSettings,
    /// The Kafka client; none: events go to the in-process hub only.
    pub kafka: Option<KafkaSettings>,
    /// Topic names and shapes.
    pub topics: TopicSettings,
    /// The scheduling core.
    pub scheduler: SchedulerSettings,
    /// How replicas share the jobs.
    pub sharding: ShardingSettings,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Authentication, request limits and TLS of the gRPC server.
    pub security: SecuritySettings,
    /// Metrics endpoint and trace export.
    pub observability: ObservabilitySettings,
    /// The embedded store's event log.
    pub events: EventSettings,
}

/// The variables of the service as a whole.
#[derive(Deserialize)]
#[serde(default)]
struct AppVars {
    environment: Environment,
    app_version: String,
    #[serde(deserialize_with = "value::whole")]
    shutdown_grace_secs: u64,
}

impl Default for AppVars {
    fn default() -> Self {
        AppVars {
            environment: Environment::Development,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            shutdown_grace_secs: 10,
        }
    }
}

impl Settings {
    /// Reads the settings from the process environment and the files it names.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_process(|name| std::env::var(name).ok())
    }

    /// Builds the settings from a lookup of variable values (tests use a
    /// map): the one source, without `.env` files.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        Settings::from_merged(&Merged::merge(vec![source_vars(lookup)])?)
    }

    /// The settings from a process environment (the real one, or a test's)
    /// over the `.env` file and the topics file.
    fn from_process(env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let env_file = env(vars::CONFIG_ENV_FILE);
        let dotenv = read_env_file(
            Path::new(env_file.as_deref().unwrap_or(DEFAULT_ENV_FILE)),
            vars::CONFIG_ENV_FILE,
            env_file.is_some(),
        )?;
        let process = source_vars(env);
        let topics_file =
            Merged::merge(vec![dotenv.clone(), process.clone()])?.get(vars::TOPICS_FILE);
        let topics = read_env_file(
            Path::new(topics_file.as_deref().unwrap_or(DEFAULT_TOPICS_FILE)),
            vars::TOPICS_FILE,
            topics_file.is_some(),
        )?;
        Settings::from_merged(&Merged::merge(vec![topics, dotenv, process])?)
    }

    /// Each concern's settings, from its variables.
    fn from_merged(merged: &Merged) -> Result<Settings, ConfigError> {
        let app: AppVars = merged.parse()?;
        let kafka: broker::KafkaVars = merged.parse()?;
        // The relay leaves a just-changed job to its request for as long as
        // that request's publish may wait for the broker, and a second more.
        let relay_grace = kafka.message_timeout() + Duration::from_secs(1);
        Ok(Settings {
            environment: app.environment,
            app_version: app.app_version,
            server: merged.parse::<server::ServerVars>()?.into_settings(),
            database: merged.parse::<database::DatabaseVars>()?.into_settings()?,
            kafka: kafka.into_settings(
                merged
                    .parse::<kafka_security::KafkaSecurityVars>()?
                    .into_settings()?,
            )?,
            topics: merged.parse::<broker::TopicVars>()?.into_settings()?,
            scheduler: merged.parse::<scheduler::SchedulerVars>()?.into_settings(
                relay_grace,
                merged.parse::<history::HistoryVars>()?.into_settings()?,
            )?,
            sharding: merged.parse::<sharding::ShardingVars>()?.into_settings()?,
            shutdown_grace: Duration::from_secs(app.shutdown_grace_secs),
            security: merged
                .parse::<security::SecurityVars>()?
                .into_settings(app.environment)?,
            observability: merged
                .parse::<telemetry::TelemetryVars>()?
                .into_settings()?,
            events: merged.parse::<events::EventVars>()?.into_settings()?,
        })
    }
}

/// The variables of every source, merged by config-rs: lower-cased names
/// to values.
struct Merged(Map<String, Value>);

impl Merged {
    /// Merges sources of variables, lowest priority first. Then a variable
    /// that is blank (in the highest source that sets it) is dropped, unset,
    /// and so is an alias whose name is set.
    fn merge(sources: Vec<HashMap<String, String>>) -> Result<Merged, ConfigError> {
        let builder = sources
            .into_iter()
            .fold(::config::Config::builder(), |builder, source| {
                builder.add_source(
                    ::config::Environment::default()
                        .source(Some(source))
                        .try_parsing(false),
                )
            });
        let mut merged = builder.build()?.collect()?;
        merged
            .retain(|_, value| !matches!(&value.kind, ValueKind::String(text) if text.is_empty()));
        for (name, alias) in vars::ALIASES {
            if merged.contains_key(&key(name)) {
                merged.remove(&key(alias));
            }
        }
        Ok(Merged(merged))
    }

    /// The value of the variable `name`, if set.
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(&key(name)).map(Value::to_string)
    }

    /// Deserializes one concern's variables.
    fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Ok(Value::new(None, ValueKind::Table(self.0.clone())).try_deserialize()?)
    }
}

/// config-rs's key of the variable `name`.
fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// One source's variables: those of [`vars::ALL`] that `lookup` finds,
/// trimmed.
fn source_vars(lookup: impl Fn(&str) -> Option<String>) -> HashMap<String, String> {
    vars::ALL
        .iter()
        .filter_map(|name| lookup(name).map(|value| ((*name).to_owned(), value.trim().to_owned())))
        .collect()
}

/// The variables of a `.env` file, which the variable `name` gave (or
/// would have); a missing file has none unless it is `required`.
fn read_env_file(
    path: &Path,
    name: &str,
    required: bool,
) -> Result<HashMap<String, String>, ConfigError> {
    let entries: HashMap<String, String> = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter
            .map(|item| {
                item.map_err(|e| ConfigError::new(name, format!("{}: {e}", path.display())))
            })
            .collect::<Result<_, _>>()?,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            HashMap::new()
        }
        Err(e) => return Err(ConfigError::new(name, format!("{}: {e}", path.display()))),
    };
    Ok(source_vars(|name| entries.get(name).cloned()))
}

#[cfg(test)]
mod tests {
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
        let s =
            from_process(&[(vars::CONFIG_ENV_FILE, &dotenv), (vars::SERVER_PORT, "1")]).unwrap();
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
}
