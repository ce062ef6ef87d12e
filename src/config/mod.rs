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
pub mod sslmode;
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
mod tests;
