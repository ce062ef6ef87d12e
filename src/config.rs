//! Configuration, parsed once at start-up into typed settings.
//!
//! Sources, highest priority first: the process environment; `config/.env`
//! (or the file `CONFIG_ENV_FILE` names); the topics file (`TOPICS_FILE`,
//! default `config/.env.topics`). Secrets come from files named by `*_FILE`
//! variables (Docker secrets), trimmed of surrounding whitespace. A missing
//! or invalid setting is one [`ConfigError`] naming the variable.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rsa::{
    RsaPublicKey, pkcs1::DecodeRsaPublicKey, pkcs8::DecodePublicKey, traits::PublicKeyParts,
};

/// The names of every environment variable the service reads.
pub mod vars {
    /// File of extra variables, loaded if present (default `config/.env`).
    pub const CONFIG_ENV_FILE: &str = "CONFIG_ENV_FILE";
    /// `development` (default), `staging` or `production`.
    pub const ENVIRONMENT: &str = "ENVIRONMENT";
    /// Version string reported at start-up.
    pub const APP_VERSION: &str = "APP_VERSION";
    /// Log filter (`tracing` env-filter syntax); default `info`.
    pub const RUST_LOG: &str = "RUST_LOG";
    /// Address the gRPC server binds (default `0.0.0.0`).
    pub const SERVER_HOST: &str = "SERVER_HOST";
    /// Port of the gRPC server (default 9001; 0 picks a free port).
    pub const SERVER_PORT: &str = "SERVER_PORT";
    /// A whole database URI; overrides the parts below.
    pub const DATABASE_URI: &str = "DATABASE_URI";
    /// File holding the database user (Docker secret).
    pub const DATABASE_USER_FILE: &str = "DATABASE_USER_FILE";
    /// The database user, when not read from a file.
    pub const DATABASE_USER: &str = "DATABASE_USER";
    /// File holding the database password (Docker secret).
    pub const DATABASE_PASS_FILE: &str = "DATABASE_PASS_FILE";
    /// The database password, when not read from a file.
    pub const DATABASE_PASS: &str = "DATABASE_PASS";
    /// File holding the database name (Docker secret).
    pub const DATABASE_DB_NAME_FILE: &str = "DATABASE_DB_NAME_FILE";
    /// The database name, when not read from a file (default `jobs_db`).
    pub const DATABASE_DB_NAME: &str = "DATABASE_DB_NAME";
    /// URI scheme: `mongodb` (default) or `mongodb+srv`.
    pub const DATABASE_SCHEMA: &str = "DATABASE_SCHEMA";
    /// Alias of [`DATABASE_SCHEMA`].
    pub const DATABASE_SCHEME: &str = "DATABASE_SCHEME";
    /// Database host (default `127.0.0.1`).
    pub const DATABASE_HOST_NAME: &str = "DATABASE_HOST_NAME";
    /// Alias of [`DATABASE_HOST_NAME`].
    pub const DATABASE_DOMAIN: &str = "DATABASE_DOMAIN";
    /// Database port (default 27017).
    pub const DATABASE_PORT: &str = "DATABASE_PORT";
    /// Folder of the embedded store, used when no database is configured
    /// (default `./data`).
    pub const DATA_DIR: &str = "DATA_DIR";
    /// Memory the embedded store may keep as its page cache, in MiB (default
    /// 64); the operating system's file cache serves the rest.
    pub const DATA_CACHE_MB: &str = "DATA_CACHE_MB";
    /// MongoDB collection of the jobs (default `jobs`).
    pub const DATABASE_COLLECTION: &str = "DATABASE_COLLECTION";
    /// Bound on every database call and on connecting, in ms (default 5000).
    pub const DATABASE_TIMEOUT_MS: &str = "DATABASE_TIMEOUT_MS";
    /// Most connections to MongoDB or PostgreSQL open at once (default 10; a
    /// MongoDB URI's `maxPoolSize` is kept when this is not set).
    pub const DATABASE_POOL_SIZE: &str = "DATABASE_POOL_SIZE";
    /// Comma-separated Kafka bootstrap servers (default `127.0.0.1:9092`).
    pub const KAFKA_BROKERS: &str = "KAFKA_BROKERS";
    /// Compression of produced batches: none, gzip, lz4 (default), zstd, snappy.
    pub const KAFKA_COMPRESSION: &str = "KAFKA_COMPRESSION";
    /// Idempotent producer (default true); when false, one request in flight
    /// per connection keeps each partition in order.
    pub const KAFKA_ENABLE_IDEMPOTENCE: &str = "KAFKA_ENABLE_IDEMPOTENCE";
    /// How long a publish may wait for the broker's acknowledgement, in ms (default 10000).
    pub const KAFKA_MESSAGE_TIMEOUT_MS: &str = "KAFKA_MESSAGE_TIMEOUT_MS";
    /// Longest time the broker holds a fetch waiting for data, in ms (default 100).
    pub const KAFKA_FETCH_WAIT_MAX_MS: &str = "KAFKA_FETCH_WAIT_MAX_MS";
    /// The topics file (default `config/.env.topics`).
    pub const TOPICS_FILE: &str = "TOPICS_FILE";
    /// Topic of create events.
    pub const TOPIC_JOB_CREATE: &str = "TOPIC_JOB_CREATE";
    /// Partitions of the create topic.
    pub const TOPIC_JOB_CREATE_PARTITIONS: &str = "TOPIC_JOB_CREATE_PARTITIONS";
    /// Replicas of the create topic.
    pub const TOPIC_JOB_CREATE_REPLICAS: &str = "TOPIC_JOB_CREATE_REPLICAS";
    /// Topic of update events.
    pub const TOPIC_JOB_UPDATE: &str = "TOPIC_JOB_UPDATE";
    /// Partitions of the update topic.
    pub const TOPIC_JOB_UPDATE_PARTITIONS: &str = "TOPIC_JOB_UPDATE_PARTITIONS";
    /// Replicas of the update topic.
    pub const TOPIC_JOB_UPDATE_REPLICAS: &str = "TOPIC_JOB_UPDATE_REPLICAS";
    /// Topic of run events.
    pub const TOPIC_JOB_RUN: &str = "TOPIC_JOB_RUN";
    /// Partitions of the run topic.
    pub const TOPIC_JOB_RUN_PARTITIONS: &str = "TOPIC_JOB_RUN_PARTITIONS";
    /// Replicas of the run topic.
    pub const TOPIC_JOB_RUN_REPLICAS: &str = "TOPIC_JOB_RUN_REPLICAS";
    /// Topic of run results (consumed).
    pub const TOPIC_JOB_RUN_RESULT: &str = "TOPIC_JOB_RUN_RESULT";
    /// Consumer group of the run-result consumer.
    pub const TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID: &str =
        "TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID";
    /// Number of run-result consumers in the group (default 1).
    pub const TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT: &str =
        "TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT";
    /// Largest ListJobs page size (default 100).
    pub const LIST_MAX_PAGE_SIZE: &str = "LIST_MAX_PAGE_SIZE";
    /// How far ahead the timer holds jobs in memory, in seconds (default 60).
    pub const SCHEDULER_LOOK_AHEAD_SECS: &str = "SCHEDULER_LOOK_AHEAD_SECS";
    /// How many firings run at once (default 256).
    pub const SCHEDULER_FIRE_CONCURRENCY: &str = "SCHEDULER_FIRE_CONCURRENCY";
    /// What to do with a job whose time passed while no replica ran:
    /// `fire-now` (default) or `skip-if-late:<seconds>`.
    pub const SCHEDULER_MISFIRE_POLICY: &str = "SCHEDULER_MISFIRE_POLICY";
    /// How long a job may stay RUNNING without a result, in seconds (default 600).
    pub const SCHEDULER_RUN_TIMEOUT_SECS: &str = "SCHEDULER_RUN_TIMEOUT_SECS";
    /// What happens to a job past its run timeout: `fail` (default) or `retry`.
    pub const SCHEDULER_RUN_TIMEOUT_POLICY: &str = "SCHEDULER_RUN_TIMEOUT_POLICY";
    /// How often the outbox relay looks for unpublished events, in ms (default 1000).
    pub const OUTBOX_POLL_MS: &str = "OUTBOX_POLL_MS";
    /// How long shutdown waits for in-flight work, in seconds (default 10).
    pub const SHUTDOWN_GRACE_SECS: &str = "SHUTDOWN_GRACE_SECS";
    /// PEM file of the auth service's RSA public key: JobsService calls then
    /// need an RS256 JWT with `role: admin`. Required in production; without
    /// it elsewhere, calls are not authenticated.
    pub const AUTH_PUBLIC_KEY_FILE: &str = "AUTH_PUBLIC_KEY_FILE";
    /// Largest request message, in bytes (default 262144 = 256 KiB).
    pub const GRPC_MAX_MESSAGE_BYTES: &str = "GRPC_MAX_MESSAGE_BYTES";
    /// Longest a call may take, in ms (default 30000).
    pub const GRPC_REQUEST_TIMEOUT_MS: &str = "GRPC_REQUEST_TIMEOUT_MS";
    /// Most JobsService calls in flight at once (default 512).
    pub const GRPC_MAX_CONCURRENT_CALLS: &str = "GRPC_MAX_CONCURRENT_CALLS";
    /// PEM certificate chain of the gRPC server: TLS when set (with the key).
    pub const GRPC_TLS_CERT_FILE: &str = "GRPC_TLS_CERT_FILE";
    /// PEM private key of that certificate.
    pub const GRPC_TLS_KEY_FILE: &str = "GRPC_TLS_KEY_FILE";
    /// Port of the Prometheus endpoint `/metrics` (default 9464; 0 picks a
    /// free one).
    pub const METRICS_PORT: &str = "METRICS_PORT";
    /// OTLP/gRPC collector of the traces (e.g. `http://jaeger:4317`); unset:
    /// spans are not exported.
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// Service name on exported spans (default `scheduler-service`).
    pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

    /// Every variable above, for checks that compare other files with the code.
    pub const ALL: &[&str] = &[
        CONFIG_ENV_FILE,
        ENVIRONMENT,
        APP_VERSION,
        RUST_LOG,
        SERVER_HOST,
        SERVER_PORT,
        DATABASE_URI,
        DATABASE_USER_FILE,
        DATABASE_USER,
        DATABASE_PASS_FILE,
        DATABASE_PASS,
        DATABASE_DB_NAME_FILE,
        DATABASE_DB_NAME,
        DATABASE_SCHEMA,
        DATABASE_SCHEME,
        DATABASE_HOST_NAME,
        DATABASE_DOMAIN,
        DATABASE_PORT,
        DATABASE_COLLECTION,
        DATA_DIR,
        DATA_CACHE_MB,
        DATABASE_TIMEOUT_MS,
        DATABASE_POOL_SIZE,
        KAFKA_BROKERS,
        KAFKA_COMPRESSION,
        KAFKA_ENABLE_IDEMPOTENCE,
        KAFKA_MESSAGE_TIMEOUT_MS,
        KAFKA_FETCH_WAIT_MAX_MS,
        TOPICS_FILE,
        TOPIC_JOB_CREATE,
        TOPIC_JOB_CREATE_PARTITIONS,
        TOPIC_JOB_CREATE_REPLICAS,
        TOPIC_JOB_UPDATE,
        TOPIC_JOB_UPDATE_PARTITIONS,
        TOPIC_JOB_UPDATE_REPLICAS,
        TOPIC_JOB_RUN,
        TOPIC_JOB_RUN_PARTITIONS,
        TOPIC_JOB_RUN_REPLICAS,
        TOPIC_JOB_RUN_RESULT,
        TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID,
        TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT,
        LIST_MAX_PAGE_SIZE,
        SCHEDULER_LOOK_AHEAD_SECS,
        SCHEDULER_FIRE_CONCURRENCY,
        SCHEDULER_MISFIRE_POLICY,
        SCHEDULER_RUN_TIMEOUT_SECS,
        SCHEDULER_RUN_TIMEOUT_POLICY,
        OUTBOX_POLL_MS,
        SHUTDOWN_GRACE_SECS,
        AUTH_PUBLIC_KEY_FILE,
        GRPC_MAX_MESSAGE_BYTES,
        GRPC_REQUEST_TIMEOUT_MS,
        GRPC_MAX_CONCURRENT_CALLS,
        GRPC_TLS_CERT_FILE,
        GRPC_TLS_KEY_FILE,
        METRICS_PORT,
        OTEL_EXPORTER_OTLP_ENDPOINT,
        OTEL_SERVICE_NAME,
    ];
}

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

/// The deployment environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// A developer's machine: human-readable logs.
    Development,
    /// A shared test deployment.
    Staging,
    /// Production: JSON logs, strict checks.
    Production,
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
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Authentication, request limits and TLS of the gRPC server.
    pub security: SecuritySettings,
    /// Metrics endpoint and trace export.
    pub observability: ObservabilitySettings,
}

/// The Prometheus endpoint and the OpenTelemetry trace export.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Bind port of `/metrics` (on the gRPC server's host); 0 picks a free one.
    pub metrics_port: u16,
    /// OTLP/gRPC endpoint the spans go to; `None`: not exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for ObservabilitySettings {
    fn default() -> Self {
        ObservabilitySettings {
            metrics_port: 9464,
            otlp_endpoint: None,
            service_name: "scheduler-service".to_owned(),
        }
    }
}

/// The smallest RSA key accepted, in bits (the largest is 4096).
pub const MIN_KEY_BITS: usize = 2048;

/// The auth service's RSA public key, parsed and checked.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthPublicKey {
    key: RsaPublicKey,
}

impl AuthPublicKey {
    /// Parses a PEM public key: `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo, what
    /// `openssl rsa -pubout` writes) or `BEGIN RSA PUBLIC KEY` (PKCS#1), of
    /// 2048 to 4096 bits. The error says what is wrong, for a `ConfigError`.
    pub fn from_pem(pem: &str) -> Result<AuthPublicKey, String> {
        let pem = pem.trim();
        if pem.contains("PRIVATE KEY-----") {
            return Err("holds a private key; give the auth service's public key \
                        (`openssl rsa -in private.pem -pubout`)"
                .to_owned());
        }
        if pem.contains("BEGIN CERTIFICATE-----") {
            return Err("holds a certificate; give the public key it contains \
                        (`openssl x509 -in cert.pem -pubkey -noout`)"
                .to_owned());
        }
        let key = if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| format!("not a PKCS#1 RSA key: {e}"))?
        } else if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
            RsaPublicKey::from_public_key_pem(pem)
                .map_err(|e| format!("not an RSA public key: {e}"))?
        } else {
            return Err("not a PEM public key (expected -----BEGIN PUBLIC KEY----- \
                 or -----BEGIN RSA PUBLIC KEY-----)"
                .to_owned());
        };
        let bits = key.n().bits();
        if bits < MIN_KEY_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_KEY_BITS} are required"
            ));
        }
        Ok(AuthPublicKey { key })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.n().bits()
    }

    /// The RSA key itself, for the token verifier.
    pub fn rsa_key(&self) -> &RsaPublicKey {
        &self.key
    }
}

impl fmt::Debug for AuthPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthPublicKey(RSA, {} bits)", self.bits())
    }
}

/// Authentication, request limits and TLS of the gRPC server.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// The auth service's public key; `None` turns authentication off
    /// (refused in production).
    pub auth_public_key: Option<AuthPublicKey>,
    /// Largest request message, in bytes.
    pub max_message_bytes: usize,
    /// Longest a call may take.
    pub request_timeout: Duration,
    /// Most JobsService calls in flight at once.
    pub max_concurrent_calls: usize,
    /// The server's certificate and key; `None` serves plaintext.
    pub tls: Option<TlsSettings>,
}

impl SecuritySettings {
    /// Default largest request message: 256 KiB, room for the largest valid
    /// job (64 KiB job data, 4 KiB description) several times over.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;
    /// Smallest accepted largest message: 72 KiB, so that every valid job fits.
    pub const MIN_MAX_MESSAGE_BYTES: usize = 72 * 1024;
    /// Largest accepted largest message: 16 MiB (tonic reserves a message's
    /// announced size before reading it).
    pub const MAX_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            auth_public_key: None,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: Duration::from_secs(30),
            max_concurrent_calls: 512,
            tls: None,
        }
    }
}

/// The gRPC server's TLS identity, read from its PEM files.
#[derive(Clone)]
pub struct TlsSettings {
    /// The certificate chain (PEM).
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
}

impl TlsSettings {
    /// The tonic server TLS configuration of this identity.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"***")
            .finish()
    }
}

/// The gRPC server's address.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Bind address.
    pub host: IpAddr,
    /// Bind port; 0 picks a free one (tests).
    pub port: u16,
}

/// The MongoDB collection of the jobs when `DATABASE_COLLECTION` is not set.
pub const DEFAULT_COLLECTION: &str = "jobs";

/// Which store implementation the settings select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// No database configured: the embedded store in `data_dir`.
    Embedded,
    /// `mongodb://` or `mongodb+srv://`.
    MongoDb,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

/// Where the jobs live.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// The store implementation: from the URI's scheme, or embedded when no
    /// database is configured.
    pub kind: DatabaseKind,
    /// Connection URI, credentials included (empty when embedded).
    pub uri: String,
    /// Folder of the embedded store.
    pub data_dir: PathBuf,
    /// Bound on the embedded store's page cache, in bytes.
    pub data_cache_bytes: usize,
    /// The namespace of the jobs: the MongoDB database, or the PostgreSQL
    /// schema (inside the database the URI names).
    pub db_name: String,
    /// The MongoDB collection of the jobs.
    pub collection: String,
    /// Bound on every call and on connecting.
    pub timeout: Duration,
    /// Most connections open at once (MongoDB and PostgreSQL); `None`: the
    /// store's default.
    pub pool_size: Option<u32>,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("kind", &self.kind)
            .field("data_dir", &self.data_dir)
            .field("data_cache_bytes", &self.data_cache_bytes)
            .field("uri", &redact_uri(&self.uri))
            .field("db_name", &self.db_name)
            .field("collection", &self.collection)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The URI with any `user:password@` replaced, for logs.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &uri[..scheme_end], &uri[at..])
        }
        _ => uri.to_owned(),
    }
}

/// The Kafka client.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Compression codec of produced batches.
    pub compression: String,
    /// Whether the producer is idempotent.
    pub idempotence: bool,
    /// How long a publish may wait for the acknowledgement.
    pub message_timeout: Duration,
    /// Longest time a fetch waits for data on the broker.
    pub fetch_wait_max: Duration,
}

/// A topic the service creates and produces to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replicas: i32,
}

/// Topic names and shapes, from the topics file.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    /// Create events.
    pub job_create: TopicSpec,
    /// Update events.
    pub job_update: TopicSpec,
    /// Run events.
    pub job_run: TopicSpec,
    /// Run results (consumed).
    pub job_run_result: String,
    /// Consumer group of the run-result consumer.
    pub consumer_group_id: String,
    /// Consumers in that group.
    pub consumer_workers: usize,
}

/// What to do with a job found due long after its time (the service was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisfirePolicy {
    /// Fire it at once, however late.
    FireNow,
    /// Fire it if it is at most this late; otherwise mark it FAILED (with an
    /// update event) without running it.
    SkipIfLaterThan(Duration),
}

/// What to do with a job RUNNING longer than the run timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTimeoutPolicy {
    /// Mark it FAILED, with an update event.
    Fail,
    /// Schedule it again at once (a new fire token), with an update event.
    Retry,
}

/// The scheduling core.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Largest ListJobs page.
    pub max_page_size: u64,
    /// How far ahead jobs are held in the in-memory timer.
    pub look_ahead: Duration,
    /// How many firings run at once: up to 4 batches of a quarter of it
    /// each (at most 512 per batch), see `background::spawn_firing_loop`.
    pub fire_concurrency: usize,
    /// Late jobs after downtime.
    pub misfire: MisfirePolicy,
    /// How long a job may run without a result.
    pub run_timeout: Duration,
    /// What happens after that.
    pub run_timeout_policy: RunTimeoutPolicy,
    /// How often the outbox relay looks for unpublished events.
    pub outbox_poll: Duration,
    /// How long the relay leaves a just-changed job to the request that
    /// changed it (whose publish may still be in flight): the broker's
    /// acknowledgement timeout plus a second.
    pub relay_grace: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            max_page_size: 100,
            look_ahead: Duration::from_secs(60),
            fire_concurrency: 256,
            misfire: MisfirePolicy::FireNow,
            run_timeout: Duration::from_secs(600),
            run_timeout_policy: RunTimeoutPolicy::Fail,
            outbox_poll: Duration::from_secs(1),
            relay_grace: Duration::from_secs(11),
        }
    }
}

/// Reads variables from the environment, then the `.env` file, then the
/// topics file.
struct Sources {
    dotenv: HashMap<String, String>,
    topics: HashMap<String, String>,
}

impl Sources {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .or_else(|| self.topics.get(name).cloned())
            .filter(|v| !v.trim().is_empty())
    }
}

fn read_env_file(
    path: &Path,
    name: &str,
    required: bool,
) -> Result<HashMap<String, String>, ConfigError> {
    match dotenvy::from_path_iter(path) {
        Ok(iter) => iter
            .map(|item| {
                item.map_err(|e| ConfigError::new(name, format!("{}: {e}", path.display())))
            })
            .collect(),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(HashMap::new())
        }
        Err(e) => Err(ConfigError::new(name, format!("{}: {e}", path.display()))),
    }
}

impl Settings {
    /// Reads the settings from the process environment and the files it names.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let env_file = std::env::var(vars::CONFIG_ENV_FILE).ok();
        let dotenv = read_env_file(
            Path::new(env_file.as_deref().unwrap_or("config/.env")),
            vars::CONFIG_ENV_FILE,
            env_file.is_some(),
        )?;
        let mut sources = Sources {
            dotenv,
            topics: HashMap::new(),
        };
        let topics_file = sources.get(vars::TOPICS_FILE);
        sources.topics = read_env_file(
            &PathBuf::from(topics_file.as_deref().unwrap_or("config/.env.topics")),
            vars::TOPICS_FILE,
            topics_file.is_some(),
        )?;
        Settings::from_lookup(|name| sources.get(name))
    }

    /// Builds the settings from a lookup of variable values (tests use a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let parsed = |name: &str, default: u64| -> Result<u64, ConfigError> {
            var(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| {
                    ConfigError::new(name, format!("expected a whole number, got {v:?}"))
                })
            })
        };
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match parsed(name, default)? {
                0 => Err(ConfigError::new(name, "must be at least 1")),
                n => Ok(n),
            }
        };
        let secret = |file_var: &str, plain_var: &str| -> Result<Option<String>, ConfigError> {
            match var(file_var) {
                Some(path) => std::fs::read_to_string(&path)
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|e| ConfigError::new(file_var, format!("cannot read {path}: {e}"))),
                None => Ok(var(plain_var)),
            }
        };
        let topic = |name_var: &str, partitions_var: &str, replicas_var: &str, default: &str| {
            let count = |v: &str| {
                i32::try_from(positive(v, 1)?).map_err(|_| ConfigError::new(v, "is too large"))
            };
            Ok::<_, ConfigError>(TopicSpec {
                name: var(name_var).unwrap_or_else(|| default.to_owned()),
                partitions: count(partitions_var)?,
                replicas: count(replicas_var)?,
            })
        };

        let environment = match var(vars::ENVIRONMENT)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("development" | "dev") => Environment::Development,
            Some("staging" | "test") => Environment::Staging,
            Some("production" | "prod") => Environment::Production,
            Some(other) => {
                return Err(ConfigError::new(
                    vars::ENVIRONMENT,
                    format!("expected development, staging or production, got {other:?}"),
                ));
            }
        };

        let port = |name: &str, default: u16| -> Result<u16, ConfigError> {
            u16::try_from(parsed(name, u64::from(default))?)
                .map_err(|_| ConfigError::new(name, "must be a port number (0-65535)"))
        };
        let host = match var(vars::SERVER_HOST) {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(vars::SERVER_HOST, format!("not an IP address: {v:?}"))
            })?,
        };

        let db_name = secret(vars::DATABASE_DB_NAME_FILE, vars::DATABASE_DB_NAME)?
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "jobs_db".to_owned());
        // A database is configured by a URI or by any of its connection
        // parts; with none, the jobs live in the embedded store.
        let database_configured = [
            vars::DATABASE_URI,
            vars::DATABASE_SCHEMA,
            vars::DATABASE_SCHEME,
            vars::DATABASE_HOST_NAME,
            vars::DATABASE_DOMAIN,
            vars::DATABASE_PORT,
            vars::DATABASE_USER,
            vars::DATABASE_USER_FILE,
            vars::DATABASE_PASS,
            vars::DATABASE_PASS_FILE,
        ]
        .iter()
        .any(|name| var(name).is_some());
        let uri = match var(vars::DATABASE_URI) {
            Some(uri) => uri,
            None if !database_configured => String::new(),
            None => {
                let scheme = var(vars::DATABASE_SCHEMA)
                    .or_else(|| var(vars::DATABASE_SCHEME))
                    .unwrap_or_else(|| "mongodb".to_owned());
                let default_port = match scheme.as_str() {
                    "mongodb" | "mongodb+srv" => 27017,
                    "postgres" | "postgresql" => 5432,
                    _ => {
                        return Err(ConfigError::new(
                            vars::DATABASE_SCHEMA,
                            format!(
                                "expected mongodb, mongodb+srv, postgres or postgresql, got {scheme:?}"
                            ),
                        ));
                    }
                };
                let host = var(vars::DATABASE_HOST_NAME)
                    .or_else(|| var(vars::DATABASE_DOMAIN))
                    .unwrap_or_else(|| "127.0.0.1".to_owned());
                let address = if scheme == "mongodb+srv" {
                    host
                } else {
                    format!("{host}:{}", port(vars::DATABASE_PORT, default_port)?)
                };
                let user = secret(vars::DATABASE_USER_FILE, vars::DATABASE_USER)?;
                let pass = secret(vars::DATABASE_PASS_FILE, vars::DATABASE_PASS)?;
                match (user, pass) {
                    (Some(user), Some(pass)) => {
                        let credentials = format!(
                            "{}:{}",
                            utf8_percent_encode(&user, NON_ALPHANUMERIC),
                            utf8_percent_encode(&pass, NON_ALPHANUMERIC)
                        );
                        if default_port == 5432 {
                            format!("{scheme}://{credentials}@{address}/postgres")
                        } else {
                            format!("{scheme}://{credentials}@{address}/?authSource=admin")
                        }
                    }
                    (None, None) if default_port == 5432 => {
                        format!("{scheme}://{address}/postgres")
                    }
                    (None, None) => format!("{scheme}://{address}/"),
                    (Some(_), None) => {
                        return Err(ConfigError::new(
                            vars::DATABASE_PASS_FILE,
                            "a user is set but no password",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::new(
                            vars::DATABASE_USER_FILE,
                            "a password is set but no user",
                        ));
                    }
                }
            }
        };

        let kind = match uri.split_once("://").map(|(scheme, _)| scheme) {
            _ if !database_configured => DatabaseKind::Embedded,
            Some("mongodb" | "mongodb+srv") => DatabaseKind::MongoDb,
            Some("postgres" | "postgresql") => DatabaseKind::Postgres,
            _ => {
                return Err(ConfigError::new(
                    vars::DATABASE_URI,
                    "expected a mongodb://, mongodb+srv://, postgres:// or postgresql:// URI",
                ));
            }
        };
        if kind == DatabaseKind::Postgres
            && !db_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::new(
                vars::DATABASE_DB_NAME,
                format!("a PostgreSQL schema name must be letters, digits and _, got {db_name:?}"),
            ));
        }

        let compression = var(vars::KAFKA_COMPRESSION)
            .unwrap_or_else(|| "lz4".to_owned())
            .to_ascii_lowercase();
        if !matches!(
            compression.as_str(),
            "none" | "gzip" | "lz4" | "zstd" | "snappy"
        ) {
            return Err(ConfigError::new(
                vars::KAFKA_COMPRESSION,
                format!("expected none, gzip, lz4, zstd or snappy, got {compression:?}"),
            ));
        }
        // No brokers configured: events go to the in-process hub only.
        let brokers = var(vars::KAFKA_BROKERS);
        if let Some(brokers) = &brokers
            && brokers.split(',').any(|b| b.trim().is_empty())
        {
            return Err(ConfigError::new(
                vars::KAFKA_BROKERS,
                format!("empty entry in {brokers:?}"),
            ));
        }

        let consumer_workers = positive(vars::TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT, 1)?;
        if consumer_workers > 64 {
            return Err(ConfigError::new(
                vars::TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT,
                "must be at most 64",
            ));
        }

        let misfire = match var(vars::SCHEDULER_MISFIRE_POLICY).as_deref() {
            None | Some("fire-now") => MisfirePolicy::FireNow,
            Some(other) => match other.strip_prefix("skip-if-late:").map(str::parse::<u64>) {
                Some(Ok(secs)) => MisfirePolicy::SkipIfLaterThan(Duration::from_secs(secs)),
                _ => {
                    return Err(ConfigError::new(
                        vars::SCHEDULER_MISFIRE_POLICY,
                        format!("expected fire-now or skip-if-late:<seconds>, got {other:?}"),
                    ));
                }
            },
        };
        let run_timeout_policy = match var(vars::SCHEDULER_RUN_TIMEOUT_POLICY).as_deref() {
            None | Some("fail") => RunTimeoutPolicy::Fail,
            Some("retry") => RunTimeoutPolicy::Retry,
            Some(other) => {
                return Err(ConfigError::new(
                    vars::SCHEDULER_RUN_TIMEOUT_POLICY,
                    format!("expected fail or retry, got {other:?}"),
                ));
            }
        };

        let idempotence = match var(vars::KAFKA_ENABLE_IDEMPOTENCE)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    vars::KAFKA_ENABLE_IDEMPOTENCE,
                    format!("expected true or false, got {other:?}"),
                ));
            }
        };
        let fetch_wait_max = Duration::from_millis(positive(vars::KAFKA_FETCH_WAIT_MAX_MS, 100)?);
        let message_timeout =
            Duration::from_millis(positive(vars::KAFKA_MESSAGE_TIMEOUT_MS, 10_000)?);

        let read_file = |file_var: &str| -> Result<Option<Vec<u8>>, ConfigError> {
            var(file_var)
                .map(|path| {
                    std::fs::read(&path)
                        .map_err(|e| ConfigError::new(file_var, format!("cannot read {path}: {e}")))
                })
                .transpose()
        };
        let auth_public_key = match read_file(vars::AUTH_PUBLIC_KEY_FILE)? {
            Some(pem) => {
                let pem = String::from_utf8(pem).map_err(|_| {
                    ConfigError::new(vars::AUTH_PUBLIC_KEY_FILE, "the key file is not PEM text")
                })?;
                Some(
                    AuthPublicKey::from_pem(&pem)
                        .map_err(|reason| ConfigError::new(vars::AUTH_PUBLIC_KEY_FILE, reason))?,
                )
            }
            None if environment == Environment::Production => {
                return Err(ConfigError::new(
                    vars::AUTH_PUBLIC_KEY_FILE,
                    "required when ENVIRONMENT=production: the PEM file of the auth \
                     service's RSA public key (without it JobsService calls are not authenticated)",
                ));
            }
            None => None,
        };
        let max_message_bytes = usize::try_from(parsed(
            vars::GRPC_MAX_MESSAGE_BYTES,
            SecuritySettings::DEFAULT_MAX_MESSAGE_BYTES as u64,
        )?)
        .unwrap_or(usize::MAX);
        if !(SecuritySettings::MIN_MAX_MESSAGE_BYTES..=SecuritySettings::MAX_MAX_MESSAGE_BYTES)
            .contains(&max_message_bytes)
        {
            return Err(ConfigError::new(
                vars::GRPC_MAX_MESSAGE_BYTES,
                format!(
                    "must be {} to {} bytes, got {max_message_bytes}",
                    SecuritySettings::MIN_MAX_MESSAGE_BYTES,
                    SecuritySettings::MAX_MAX_MESSAGE_BYTES
                ),
            ));
        }
        let max_concurrent_calls =
            usize::try_from(positive(vars::GRPC_MAX_CONCURRENT_CALLS, 512)?).unwrap_or(usize::MAX);
        if max_concurrent_calls > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                vars::GRPC_MAX_CONCURRENT_CALLS,
                "is too large",
            ));
        }
        let tls = match (
            read_file(vars::GRPC_TLS_CERT_FILE)?,
            read_file(vars::GRPC_TLS_KEY_FILE)?,
        ) {
            (None, None) => None,
            (Some(cert_pem), Some(key_pem)) => {
                let tls = TlsSettings { cert_pem, key_pem };
                check_tls(&tls)?;
                Some(tls)
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    vars::GRPC_TLS_KEY_FILE,
                    "GRPC_TLS_CERT_FILE is set but not the key file: set both or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    vars::GRPC_TLS_CERT_FILE,
                    "GRPC_TLS_KEY_FILE is set but not the certificate file: set both or neither",
                ));
            }
        };
        let otlp_endpoint = var(vars::OTEL_EXPORTER_OTLP_ENDPOINT)
            .map(|endpoint| match endpoint.parse::<tonic::transport::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) => Ok(endpoint),
                _ => Err(ConfigError::new(
                    vars::OTEL_EXPORTER_OTLP_ENDPOINT,
                    format!("expected an http:// or https:// URL, got {endpoint:?}"),
                )),
            })
            .transpose()?;
        Ok(Settings {
            environment,
            app_version: var(vars::APP_VERSION)
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            server: ServerSettings {
                host,
                port: port(vars::SERVER_PORT, 9001)?,
            },
            database: DatabaseSettings {
                kind,
                uri,
                data_dir: PathBuf::from(var(vars::DATA_DIR).unwrap_or_else(|| "data".to_owned())),
                data_cache_bytes: usize::try_from(positive(vars::DATA_CACHE_MB, 64)?)
                    .ok()
                    .and_then(|mb| mb.checked_mul(1 << 20))
                    .ok_or_else(|| ConfigError::new(vars::DATA_CACHE_MB, "is too large"))?,
                db_name,
                collection: var(vars::DATABASE_COLLECTION)
                    .unwrap_or_else(|| DEFAULT_COLLECTION.to_owned()),
                timeout: Duration::from_millis(positive(vars::DATABASE_TIMEOUT_MS, 5000)?),
                pool_size: var(vars::DATABASE_POOL_SIZE)
                    .map(|_| {
                        let size = positive(vars::DATABASE_POOL_SIZE, 0)?;
                        u32::try_from(size).map_err(|_| {
                            ConfigError::new(vars::DATABASE_POOL_SIZE, "must be at most 4294967295")
                        })
                    })
                    .transpose()?,
            },
            kafka: brokers.map(|brokers| KafkaSettings {
                brokers,
                compression,
                idempotence,
                message_timeout,
                fetch_wait_max,
            }),
            topics: TopicSettings {
                job_create: topic(
                    vars::TOPIC_JOB_CREATE,
                    vars::TOPIC_JOB_CREATE_PARTITIONS,
                    vars::TOPIC_JOB_CREATE_REPLICAS,
                    "topic-job-create",
                )?,
                job_update: topic(
                    vars::TOPIC_JOB_UPDATE,
                    vars::TOPIC_JOB_UPDATE_PARTITIONS,
                    vars::TOPIC_JOB_UPDATE_REPLICAS,
                    "topic-job-update",
                )?,
                job_run: topic(
                    vars::TOPIC_JOB_RUN,
                    vars::TOPIC_JOB_RUN_PARTITIONS,
                    vars::TOPIC_JOB_RUN_REPLICAS,
                    "topic-job-run",
                )?,
                job_run_result: var(vars::TOPIC_JOB_RUN_RESULT)
                    .unwrap_or_else(|| "topic-job-run-result".to_owned()),
                consumer_group_id: var(vars::TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID)
                    .unwrap_or_else(|| "job-run-result-consumer-scheduler".to_owned()),
                consumer_workers: usize::try_from(consumer_workers).unwrap_or(1),
            },
            scheduler: SchedulerSettings {
                max_page_size: positive(vars::LIST_MAX_PAGE_SIZE, 100)?,
                look_ahead: Duration::from_secs(positive(vars::SCHEDULER_LOOK_AHEAD_SECS, 60)?),
                fire_concurrency: usize::try_from(positive(vars::SCHEDULER_FIRE_CONCURRENCY, 256)?)
                    .unwrap_or(256),
                misfire,
                run_timeout: Duration::from_secs(positive(vars::SCHEDULER_RUN_TIMEOUT_SECS, 600)?),
                run_timeout_policy,
                outbox_poll: Duration::from_millis(positive(vars::OUTBOX_POLL_MS, 1000)?),
                relay_grace: message_timeout + Duration::from_secs(1),
            },
            shutdown_grace: Duration::from_secs(parsed(vars::SHUTDOWN_GRACE_SECS, 10)?),
            security: SecuritySettings {
                auth_public_key,
                max_message_bytes,
                request_timeout: Duration::from_millis(positive(
                    vars::GRPC_REQUEST_TIMEOUT_MS,
                    30_000,
                )?),
                max_concurrent_calls,
                tls,
            },
            observability: ObservabilitySettings {
                metrics_port: port(vars::METRICS_PORT, 9464)?,
                otlp_endpoint,
                service_name: var(vars::OTEL_SERVICE_NAME)
                    .unwrap_or_else(|| "scheduler-service".to_owned()),
            },
        })
    }
}

/// Checks that the certificate and key make a TLS identity, naming the file
/// at fault when it can tell.
fn check_tls(tls: &TlsSettings) -> Result<(), ConfigError> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    if !text(&tls.cert_pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::new(
            vars::GRPC_TLS_CERT_FILE,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    if !text(&tls.key_pem).contains("PRIVATE KEY-----") {
        return Err(ConfigError::new(
            vars::GRPC_TLS_KEY_FILE,
            "no PEM private key (-----BEGIN ... PRIVATE KEY-----) in the file",
        ));
    }
    tonic::transport::Server::builder()
        .tls_config(tls.server_config())
        .map(|_| ())
        .map_err(|e| {
            ConfigError::new(
                vars::GRPC_TLS_CERT_FILE,
                format!("the certificate and GRPC_TLS_KEY_FILE do not make a TLS identity: {e}"),
            )
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{io::Write, sync::OnceLock};

    use rsa::{
        RsaPrivateKey,
        pkcs1::EncodeRsaPublicKey,
        pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding},
        rand_core::OsRng,
    };

    use super::*;

    /// A key pair made once per test process: its private key (PKCS#8 PEM)
    /// and public key (SubjectPublicKeyInfo PEM).
    pub(crate) struct Pair {
        pub(crate) private_pem: String,
        pub(crate) public_pem: String,
        pub(crate) key: RsaPrivateKey,
    }

    pub(crate) fn make_pair() -> Pair {
        let key = RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key");
        Pair {
            private_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            public_pem: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            key,
        }
    }

    pub(crate) fn pair() -> &'static Pair {
        static PAIR: OnceLock<Pair> = OnceLock::new();
        PAIR.get_or_init(make_pair)
    }

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
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
    fn database_uri_is_built_from_docker_secrets_with_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &str| {
            let path = dir.path().join(name);
            std::fs::File::create(&path)
                .unwrap()
                .write_all(content.as_bytes())
                .unwrap();
            path.to_string_lossy().into_owned()
        };
        let (user, pass, db) = (
            write("user", "admin\n"),
            write("pass", "p@ss:w/rd\n"),
            write("db", "jobs_db\n"),
        );
        let s = settings(&[
            (vars::DATABASE_USER_FILE, &user),
            (vars::DATABASE_PASS_FILE, &pass),
            (vars::DATABASE_DB_NAME_FILE, &db),
            (vars::DATABASE_SCHEME, "mongodb"),
            (vars::DATABASE_DOMAIN, "scheduler-db-service"),
            (vars::DATABASE_PORT, "27018"),
        ])
        .unwrap();
        assert_eq!(
            s.database.uri,
            "mongodb://admin:p%40ss%3Aw%2Frd@scheduler-db-service:27018/?authSource=admin"
        );
        assert_eq!(s.database.db_name, "jobs_db");
        let shown = format!("{:?}", s.database);
        assert!(
            !shown.contains("p%40ss"),
            "password leaked into Debug: {shown}"
        );
    }

    #[test]
    fn with_no_database_or_broker_configured_everything_is_embedded() {
        let s = settings(&[(vars::DATA_DIR, "/var/lib/scheduler")]).unwrap();
        assert_eq!(s.database.kind, DatabaseKind::Embedded);
        assert_eq!(s.database.data_dir, PathBuf::from("/var/lib/scheduler"));
        assert!(s.kafka.is_none());
        let s = settings(&[(vars::KAFKA_BROKERS, "k:9092")]).unwrap();
        assert_eq!(s.kafka.map(|k| k.brokers).as_deref(), Some("k:9092"));
    }

    #[test]
    fn the_uri_scheme_selects_the_store() {
        let mongo = settings(&[(vars::DATABASE_SCHEMA, "mongodb")]).unwrap();
        assert_eq!(mongo.database.kind, DatabaseKind::MongoDb);
        let pg = settings(&[(vars::DATABASE_URI, "postgres://u:p@db:5432/jobs")]).unwrap();
        assert_eq!(pg.database.kind, DatabaseKind::Postgres);
        let parts = settings(&[
            (vars::DATABASE_SCHEMA, "postgresql"),
            (vars::DATABASE_USER, "u"),
            (vars::DATABASE_PASS, "p"),
        ])
        .unwrap();
        assert_eq!(parts.database.kind, DatabaseKind::Postgres);
        assert_eq!(
            parts.database.uri,
            "postgresql://u:p@127.0.0.1:5432/postgres"
        );
        let bad_schema = settings(&[
            (vars::DATABASE_URI, "postgres://db/x"),
            (vars::DATABASE_DB_NAME, "jobs-db"),
        ]);
        assert_eq!(bad_schema.unwrap_err().name, vars::DATABASE_DB_NAME);
    }

    #[test]
    fn a_whole_uri_wins_over_the_parts() {
        let s = settings(&[
            (vars::DATABASE_URI, "mongodb://db:1/"),
            (vars::DATABASE_HOST_NAME, "x"),
        ])
        .unwrap();
        assert_eq!(s.database.uri, "mongodb://db:1/");
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

    #[test]
    fn topics_come_from_the_lookup() {
        let s = settings(&[
            (vars::TOPIC_JOB_RUN, "runs"),
            (vars::TOPIC_JOB_RUN_PARTITIONS, "6"),
            (vars::TOPIC_JOB_RUN_REPLICAS, "3"),
            (vars::TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT, "4"),
        ])
        .unwrap();
        assert_eq!(
            s.topics.job_run,
            TopicSpec {
                name: "runs".into(),
                partitions: 6,
                replicas: 3
            }
        );
        assert_eq!(s.topics.consumer_workers, 4);
    }

    #[test]
    fn policies_parse() {
        let s = settings(&[
            (vars::SCHEDULER_MISFIRE_POLICY, "skip-if-late:30"),
            (vars::SCHEDULER_RUN_TIMEOUT_POLICY, "retry"),
        ])
        .unwrap();
        assert_eq!(
            s.scheduler.misfire,
            MisfirePolicy::SkipIfLaterThan(Duration::from_secs(30))
        );
        assert_eq!(s.scheduler.run_timeout_policy, RunTimeoutPolicy::Retry);
        let defaults = settings(&[]).unwrap().scheduler;
        assert_eq!(defaults.misfire, MisfirePolicy::FireNow);
        assert_eq!(defaults.run_timeout_policy, RunTimeoutPolicy::Fail);
    }

    /// Writes `content` to a fresh file; returns the directory (keep it) and path.
    fn file(content: &[u8]) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.pem");
        std::fs::write(&path, content).unwrap();
        (dir, path.to_string_lossy().into_owned())
    }

    /// A CA-signed certificate for localhost and its key, both PEM.
    pub(crate) fn localhost_cert() -> (String, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn security_defaults_are_open_and_bounded() {
        let s = settings(&[]).unwrap().security;
        assert!(s.auth_public_key.is_none());
        assert_eq!(s.max_message_bytes, 256 * 1024);
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!(s.max_concurrent_calls, 512);
        assert!(s.tls.is_none());
        let d = SecuritySettings::default();
        assert_eq!(
            (
                d.max_message_bytes,
                d.request_timeout,
                d.max_concurrent_calls
            ),
            (
                s.max_message_bytes,
                s.request_timeout,
                s.max_concurrent_calls
            )
        );
    }

    #[test]
    fn production_refuses_to_start_without_an_auth_key() {
        let err = settings(&[(vars::ENVIRONMENT, "production")]).unwrap_err();
        assert_eq!(err.name, vars::AUTH_PUBLIC_KEY_FILE);
        assert!(err.reason.contains("production"), "{err}");
        // Elsewhere, no key means no authentication.
        for env in ["development", "staging"] {
            let s = settings(&[(vars::ENVIRONMENT, env)]).unwrap();
            assert!(s.security.auth_public_key.is_none());
        }
        let (_dir, key) = file(pair().public_pem.as_bytes());
        let s = settings(&[
            (vars::ENVIRONMENT, "production"),
            (vars::AUTH_PUBLIC_KEY_FILE, &key),
        ])
        .unwrap();
        assert_eq!(s.security.auth_public_key.unwrap().bits(), 2048);
    }

    #[test]
    fn a_bad_auth_key_file_names_the_variable() {
        let pair = pair();
        let (_d1, private) = file(pair.private_pem.as_bytes());
        let (_d2, garbage) = file(b"not a key");
        let (_d3, binary) = file(&[0xff, 0xfe, 0x00]);
        for (path, needle) in [
            ("/nonexistent/auth.pem", "cannot read"),
            (private.as_str(), "private key"),
            (garbage.as_str(), "not a PEM"),
            (binary.as_str(), "not PEM text"),
        ] {
            let err = settings(&[(vars::AUTH_PUBLIC_KEY_FILE, path)]).unwrap_err();
            assert_eq!(err.name, vars::AUTH_PUBLIC_KEY_FILE, "{err}");
            assert!(err.reason.contains(needle), "{err}");
        }
    }

    #[test]
    fn observability_settings_parse_and_a_bad_endpoint_names_the_variable() {
        let defaults = settings(&[]).unwrap().observability;
        assert_eq!(defaults.metrics_port, 9464);
        assert_eq!(defaults.otlp_endpoint, None);
        assert_eq!(defaults.service_name, "scheduler-service");
        let s = settings(&[
            (vars::METRICS_PORT, "0"),
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://jaeger:4317"),
            (vars::OTEL_SERVICE_NAME, "scheduler-eu"),
        ])
        .unwrap()
        .observability;
        assert_eq!(s.metrics_port, 0);
        assert_eq!(s.otlp_endpoint.as_deref(), Some("http://jaeger:4317"));
        assert_eq!(s.service_name, "scheduler-eu");
        for (name, value) in [
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "jaeger:4317"),
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "ftp://jaeger:4317"),
            (vars::OTEL_EXPORTER_OTLP_ENDPOINT, "http://"),
            (vars::METRICS_PORT, "70000"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}: {err}");
        }
    }

    #[test]
    fn request_limits_parse_and_are_bounded() {
        let s = settings(&[
            (vars::GRPC_MAX_MESSAGE_BYTES, "1048576"),
            (vars::GRPC_REQUEST_TIMEOUT_MS, "2500"),
            (vars::GRPC_MAX_CONCURRENT_CALLS, "8"),
        ])
        .unwrap()
        .security;
        assert_eq!(s.max_message_bytes, 1 << 20);
        assert_eq!(s.request_timeout, Duration::from_millis(2500));
        assert_eq!(s.max_concurrent_calls, 8);
        for (name, value) in [
            (vars::GRPC_MAX_MESSAGE_BYTES, "1024"),
            (vars::GRPC_MAX_MESSAGE_BYTES, "1000000000"),
            (vars::GRPC_MAX_MESSAGE_BYTES, "big"),
            (vars::GRPC_REQUEST_TIMEOUT_MS, "0"),
            (vars::GRPC_MAX_CONCURRENT_CALLS, "0"),
            (vars::GRPC_MAX_CONCURRENT_CALLS, "-3"),
        ] {
            let err = settings(&[(name, value)]).expect_err(value);
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn the_embedded_cache_is_in_mib_and_positive() {
        let default = settings(&[]).unwrap().database.data_cache_bytes;
        assert_eq!(default, 64 << 20);
        let set = settings(&[(vars::DATA_CACHE_MB, "8")]).unwrap();
        assert_eq!(set.database.data_cache_bytes, 8 << 20);
        for value in ["0", "lots", "18446744073709551615"] {
            let err = settings(&[(vars::DATA_CACHE_MB, value)]).expect_err(value);
            assert_eq!(err.name, vars::DATA_CACHE_MB, "{err}");
        }
    }

    #[test]
    fn pool_size_is_optional_and_positive() {
        assert_eq!(settings(&[]).unwrap().database.pool_size, None);
        let set = settings(&[(vars::DATABASE_POOL_SIZE, "32")]).unwrap();
        assert_eq!(set.database.pool_size, Some(32));
        for value in ["0", "-1", "many", "4294967296"] {
            let err = settings(&[(vars::DATABASE_POOL_SIZE, value)]).expect_err(value);
            assert_eq!(err.name, vars::DATABASE_POOL_SIZE, "{err}");
        }
    }

    #[test]
    fn tls_needs_both_files_and_a_matching_pair() {
        let (cert, key) = localhost_cert();
        let (_d1, cert_file) = file(cert.as_bytes());
        let (_d2, key_file) = file(key.as_bytes());
        let s = settings(&[
            (vars::GRPC_TLS_CERT_FILE, &cert_file),
            (vars::GRPC_TLS_KEY_FILE, &key_file),
        ])
        .unwrap();
        let tls = s.security.tls.expect("TLS on");
        assert_eq!(tls.cert_pem, cert.as_bytes());
        assert!(!format!("{tls:?}").contains("PRIVATE"), "{tls:?}");

        let only_cert = settings(&[(vars::GRPC_TLS_CERT_FILE, &cert_file)]).unwrap_err();
        assert_eq!(only_cert.name, vars::GRPC_TLS_KEY_FILE);
        let only_key = settings(&[(vars::GRPC_TLS_KEY_FILE, &key_file)]).unwrap_err();
        assert_eq!(only_key.name, vars::GRPC_TLS_CERT_FILE);

        let (_d3, other_key) = file(localhost_cert().1.as_bytes());
        let (_d4, garbage) = file(b"garbage");
        let cases = [
            (
                cert_file.as_str(),
                "/nonexistent/key.pem",
                vars::GRPC_TLS_KEY_FILE,
            ),
            (
                garbage.as_str(),
                key_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                cert_file.as_str(),
                garbage.as_str(),
                vars::GRPC_TLS_KEY_FILE,
            ),
            (
                key_file.as_str(),
                cert_file.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
            (
                cert_file.as_str(),
                other_key.as_str(),
                vars::GRPC_TLS_CERT_FILE,
            ),
        ];
        for (cert, key, name) in cases {
            let err = settings(&[
                (vars::GRPC_TLS_CERT_FILE, cert),
                (vars::GRPC_TLS_KEY_FILE, key),
            ])
            .expect_err(name);
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn every_variable_is_listed_once() {
        let mut names = vars::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), vars::ALL.len());
    }

    #[test]
    fn redaction_hides_credentials_only() {
        assert_eq!(
            redact_uri("mongodb://u:p@h:1/?x=y"),
            "mongodb://***@h:1/?x=y"
        );
        assert_eq!(redact_uri("mongodb://h:1/"), "mongodb://h:1/");
    }

    #[test]
    fn public_keys_parse_in_both_pem_forms_and_bad_ones_say_why() {
        let pair = pair();
        let spki = AuthPublicKey::from_pem(&format!("\n{}\n\n", pair.public_pem)).unwrap();
        assert_eq!(spki.bits(), 2048);
        let pkcs1 = pair
            .key
            .to_public_key()
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(AuthPublicKey::from_pem(&pkcs1).unwrap(), spki);
        assert!(format!("{spki:?}").contains("2048 bits"));

        let err = AuthPublicKey::from_pem(&pair.private_pem).unwrap_err();
        assert!(err.contains("private key"), "{err}");
        let err = AuthPublicKey::from_pem("hello").unwrap_err();
        assert!(err.contains("not a PEM"), "{err}");
        let err =
            AuthPublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .unwrap_err();
        assert!(err.contains("not an RSA public key"), "{err}");
        let err =
            AuthPublicKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")
                .unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        let small = RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        let small = small
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let err = AuthPublicKey::from_pem(&small).unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
    }
}
