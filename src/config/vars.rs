//! The names of every environment variable the service reads.
//!
//! Configuration reads these and no others: a variable of another name, in
//! the environment or in a `.env` file, is ignored.

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
/// Port of the HTTP/JSON API (default 9080; 0 picks a free port).
pub const HTTP_PORT: &str = "HTTP_PORT";
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
/// PEM file of the certificate authorities that PostgreSQL's server
/// certificate must chain to (with `sslmode=require`, `verify-ca` or
/// `verify-full` in the URI); unset: Mozilla's roots.
pub const DATABASE_TLS_CA_FILE: &str = "DATABASE_TLS_CA_FILE";
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
/// How the Kafka client talks to the brokers: `plaintext` (default), `ssl`,
/// `sasl_plaintext` or `sasl_ssl`.
pub const KAFKA_SECURITY_PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
/// SASL mechanism (with `sasl_*`): `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
pub const KAFKA_SASL_MECHANISM: &str = "KAFKA_SASL_MECHANISM";
/// File holding the SASL user name (Docker secret).
pub const KAFKA_SASL_USERNAME_FILE: &str = "KAFKA_SASL_USERNAME_FILE";
/// The SASL user name, when not read from a file.
pub const KAFKA_SASL_USERNAME: &str = "KAFKA_SASL_USERNAME";
/// File holding the SASL password (Docker secret).
pub const KAFKA_SASL_PASSWORD_FILE: &str = "KAFKA_SASL_PASSWORD_FILE";
/// The SASL password, when not read from a file.
pub const KAFKA_SASL_PASSWORD: &str = "KAFKA_SASL_PASSWORD";
/// PEM file (or folder) of the CAs that the brokers' certificates must chain
/// to (with `ssl` or `sasl_ssl`); unset: the system's.
pub const KAFKA_SSL_CA_LOCATION: &str = "KAFKA_SSL_CA_LOCATION";
/// PEM client certificate, for brokers that ask for one (with the key).
pub const KAFKA_SSL_CERTIFICATE_LOCATION: &str = "KAFKA_SSL_CERTIFICATE_LOCATION";
/// PEM private key of that certificate.
pub const KAFKA_SSL_KEY_LOCATION: &str = "KAFKA_SSL_KEY_LOCATION";
/// File holding the password of an encrypted key (Docker secret).
pub const KAFKA_SSL_KEY_PASSWORD_FILE: &str = "KAFKA_SSL_KEY_PASSWORD_FILE";
/// The password of an encrypted key, when not read from a file.
pub const KAFKA_SSL_KEY_PASSWORD: &str = "KAFKA_SSL_KEY_PASSWORD";
/// Whether the broker's host name is checked against its certificate:
/// `https` (default) or `none`.
pub const KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM: &str =
    "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM";
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
/// Topic that run results go to when they cannot be stored, with the reason
/// in a header (default `topic-job-run-result-dead-letter`).
pub const TOPIC_JOB_RUN_RESULT_DEAD_LETTER: &str = "TOPIC_JOB_RUN_RESULT_DEAD_LETTER";
/// Topic of the dead-letter events of jobs whose run failed for good
/// (default `topic-job-dead-letter`).
pub const TOPIC_JOB_DEAD_LETTER: &str = "TOPIC_JOB_DEAD_LETTER";
/// Topic of the delete events of finished jobs removed by `JOB_RETENTION`
/// (default `topic-job-delete`).
pub const TOPIC_JOB_DELETE: &str = "TOPIC_JOB_DELETE";
/// Consumer group of the run-result consumer.
pub const TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID: &str = "TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID";
/// Number of run-result consumers in the group (default 1).
pub const TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT: &str =
    "TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT";
/// How long a run result that the store cannot take for a passing reason
/// is retried before it goes to the dead-letter topic, in seconds (default
/// 300).
pub const RUN_RESULT_RETRY_SECS: &str = "RUN_RESULT_RETRY_SECS";
/// Largest ListJobs page size (default 100).
pub const LIST_MAX_PAGE_SIZE: &str = "LIST_MAX_PAGE_SIZE";
/// How far ahead the timer holds jobs in memory, in seconds (default 60).
pub const SCHEDULER_LOOK_AHEAD_SECS: &str = "SCHEDULER_LOOK_AHEAD_SECS";
/// The most firings in flight at once (default 8192), from their claim to
/// the end of their publishes.
pub const SCHEDULER_FIRE_CONCURRENCY: &str = "SCHEDULER_FIRE_CONCURRENCY";
/// How many shards the jobs fall into, the same on every replica (default
/// 64, at most 1024).
pub const SCHEDULER_SHARDS: &str = "SCHEDULER_SHARDS";
/// How long a replica's shard leases last without renewal, in
/// milliseconds (default 5000, at least 500).
pub const SCHEDULER_SHARD_LEASE_MS: &str = "SCHEDULER_SHARD_LEASE_MS";
/// The replica's name in the shard leases (default `<host name>:<gRPC
/// port>`).
pub const SCHEDULER_REPLICA_ID: &str = "SCHEDULER_REPLICA_ID";
/// What to do with a job whose time passed while no replica ran:
/// `fire-now` (default) or `skip-if-late:<seconds>`.
pub const SCHEDULER_MISFIRE_POLICY: &str = "SCHEDULER_MISFIRE_POLICY";
/// The shortest interval a recurring job may have, in seconds (default 1;
/// less than 1 counts as 1).
pub const SCHEDULER_MIN_INTERVAL_SECS: &str = "SCHEDULER_MIN_INTERVAL_SECS";
/// How many runs a failed job gets in all under the default retry policy
/// (default 1: a failed run ends the job, as in the article; at most 100).
pub const SCHEDULER_RETRY_MAX_ATTEMPTS: &str = "SCHEDULER_RETRY_MAX_ATTEMPTS";
/// The default retry policy's first delay, in milliseconds (default 10000).
pub const SCHEDULER_RETRY_FIRST_DELAY_MS: &str = "SCHEDULER_RETRY_FIRST_DELAY_MS";
/// The default retry policy's largest delay, in milliseconds (default
/// 3600000).
pub const SCHEDULER_RETRY_MAX_DELAY_MS: &str = "SCHEDULER_RETRY_MAX_DELAY_MS";
/// What the default retry policy multiplies each delay by (default 2).
pub const SCHEDULER_RETRY_MULTIPLIER: &str = "SCHEDULER_RETRY_MULTIPLIER";
/// The largest share of a delay the default retry policy's jitter takes
/// off (default 0.1).
pub const SCHEDULER_RETRY_JITTER: &str = "SCHEDULER_RETRY_JITTER";
/// How many runs of each job are kept, and how long a finished run is:
/// `<count>,<age>` (default `100,30d`).
pub const RUNS_RETENTION: &str = "RUNS_RETENTION";
/// How long a finished one-shot job is kept, as an age (`30d`); unset
/// (the default): forever.
pub const JOB_RETENTION: &str = "JOB_RETENTION";
/// How often old runs and finished jobs are removed, in seconds (default 60).
pub const RETENTION_INTERVAL_SECS: &str = "RETENTION_INTERVAL_SECS";
/// How long a job may stay RUNNING without a result, in seconds (default 600).
pub const SCHEDULER_RUN_TIMEOUT_SECS: &str = "SCHEDULER_RUN_TIMEOUT_SECS";
/// What happens to a job past its run timeout: `fail` (default) or `retry`.
pub const SCHEDULER_RUN_TIMEOUT_POLICY: &str = "SCHEDULER_RUN_TIMEOUT_POLICY";
/// How often the outbox relay looks for unpublished events, in ms (default 1000).
pub const OUTBOX_POLL_MS: &str = "OUTBOX_POLL_MS";
/// How long shutdown waits for in-flight work, in seconds (default 10).
pub const SHUTDOWN_GRACE_SECS: &str = "SHUTDOWN_GRACE_SECS";
/// How much of the embedded store's event log is kept: `<count>,<age>`
/// (default `100000,7d`).
pub const EVENTS_RETENTION: &str = "EVENTS_RETENTION";
/// PEM file of the auth service's RSA public key: gRPC calls then need an
/// RS256 JWT with `role: admin` (or `executor`, for JobEvents' Subscribe and
/// ReportResult). Required in production; without it elsewhere, calls are
/// not authenticated.
pub const AUTH_PUBLIC_KEY_FILE: &str = "AUTH_PUBLIC_KEY_FILE";
/// Largest request message, in bytes (default 262144 = 256 KiB).
pub const GRPC_MAX_MESSAGE_BYTES: &str = "GRPC_MAX_MESSAGE_BYTES";
/// Longest a call may take, in ms (default 30000).
pub const GRPC_REQUEST_TIMEOUT_MS: &str = "GRPC_REQUEST_TIMEOUT_MS";
/// Most JobsService calls in flight at once (default 512).
pub const GRPC_MAX_CONCURRENT_CALLS: &str = "GRPC_MAX_CONCURRENT_CALLS";
/// Most `JobEvents.Subscribe` streams open at once (default 256).
pub const GRPC_MAX_SUBSCRIBERS: &str = "GRPC_MAX_SUBSCRIBERS";
/// How long a subscriber may take no event while events wait for it before
/// its stream is ended, in seconds (default 30).
pub const GRPC_SUBSCRIBER_STALL_SECS: &str = "GRPC_SUBSCRIBER_STALL_SECS";
/// Most HTTP/2 streams (calls) open at once on one connection (default 200).
pub const GRPC_MAX_STREAMS_PER_CONNECTION: &str = "GRPC_MAX_STREAMS_PER_CONNECTION";
/// How often the server pings each HTTP/2 connection, in seconds (default 60).
pub const GRPC_KEEPALIVE_INTERVAL_SECS: &str = "GRPC_KEEPALIVE_INTERVAL_SECS";
/// How long the server waits for a ping's answer before it closes the
/// connection, in seconds (default 20).
pub const GRPC_KEEPALIVE_TIMEOUT_SECS: &str = "GRPC_KEEPALIVE_TIMEOUT_SECS";
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

/// Every variable above: the only ones configuration reads, and the list
/// that checks compare other files with.
pub const ALL: &[&str] = &[
    CONFIG_ENV_FILE,
    ENVIRONMENT,
    APP_VERSION,
    RUST_LOG,
    SERVER_HOST,
    SERVER_PORT,
    HTTP_PORT,
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
    DATABASE_TLS_CA_FILE,
    DATABASE_POOL_SIZE,
    KAFKA_BROKERS,
    KAFKA_COMPRESSION,
    KAFKA_ENABLE_IDEMPOTENCE,
    KAFKA_MESSAGE_TIMEOUT_MS,
    KAFKA_FETCH_WAIT_MAX_MS,
    KAFKA_SECURITY_PROTOCOL,
    KAFKA_SASL_MECHANISM,
    KAFKA_SASL_USERNAME_FILE,
    KAFKA_SASL_USERNAME,
    KAFKA_SASL_PASSWORD_FILE,
    KAFKA_SASL_PASSWORD,
    KAFKA_SSL_CA_LOCATION,
    KAFKA_SSL_CERTIFICATE_LOCATION,
    KAFKA_SSL_KEY_LOCATION,
    KAFKA_SSL_KEY_PASSWORD_FILE,
    KAFKA_SSL_KEY_PASSWORD,
    KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM,
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
    TOPIC_JOB_RUN_RESULT_DEAD_LETTER,
    TOPIC_JOB_DEAD_LETTER,
    TOPIC_JOB_DELETE,
    TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID,
    TOPIC_JOB_RUN_RESULT_CONSUMER_WORKER_COUNT,
    RUN_RESULT_RETRY_SECS,
    LIST_MAX_PAGE_SIZE,
    SCHEDULER_LOOK_AHEAD_SECS,
    SCHEDULER_FIRE_CONCURRENCY,
    SCHEDULER_SHARDS,
    SCHEDULER_SHARD_LEASE_MS,
    SCHEDULER_REPLICA_ID,
    SCHEDULER_MISFIRE_POLICY,
    SCHEDULER_RUN_TIMEOUT_SECS,
    SCHEDULER_RUN_TIMEOUT_POLICY,
    SCHEDULER_MIN_INTERVAL_SECS,
    SCHEDULER_RETRY_MAX_ATTEMPTS,
    SCHEDULER_RETRY_FIRST_DELAY_MS,
    SCHEDULER_RETRY_MAX_DELAY_MS,
    SCHEDULER_RETRY_MULTIPLIER,
    SCHEDULER_RETRY_JITTER,
    RUNS_RETENTION,
    JOB_RETENTION,
    RETENTION_INTERVAL_SECS,
    OUTBOX_POLL_MS,
    SHUTDOWN_GRACE_SECS,
    EVENTS_RETENTION,
    AUTH_PUBLIC_KEY_FILE,
    GRPC_MAX_MESSAGE_BYTES,
    GRPC_REQUEST_TIMEOUT_MS,
    GRPC_MAX_CONCURRENT_CALLS,
    GRPC_MAX_SUBSCRIBERS,
    GRPC_SUBSCRIBER_STALL_SECS,
    GRPC_MAX_STREAMS_PER_CONNECTION,
    GRPC_KEEPALIVE_INTERVAL_SECS,
    GRPC_KEEPALIVE_TIMEOUT_SECS,
    GRPC_TLS_CERT_FILE,
    GRPC_TLS_KEY_FILE,
    METRICS_PORT,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_SERVICE_NAME,
];

/// Each alias with the name it stands for: `(name, alias)`. When both are
/// set, in any of the sources, the name wins.
pub const ALIASES: &[(&str, &str)] = &[
    (DATABASE_SCHEMA, DATABASE_SCHEME),
    (DATABASE_HOST_NAME, DATABASE_DOMAIN),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_listed_once() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn aliases_are_listed_variables() {
        for (name, alias) in ALIASES {
            assert!(ALL.contains(name) && ALL.contains(alias), "{name} {alias}");
        }
    }
}
