//! The test servers (`scripts/services.sh up`: the Kafka-protocol broker,
//! the MongoDB-protocol server and PostgreSQL) and the fresh names that keep
//! one test's or one benchmark run's data apart from every other's on them.
//!
//! Addresses come from `TEST_MONGODB_URI`, `TEST_POSTGRES_URI` and
//! `TEST_KAFKA_BROKERS`, with the defaults of `scripts/services.sh`.

use scheduler_service::config::vars;

/// URI of the MongoDB-protocol test server.
pub fn mongodb_uri() -> String {
    std::env::var("TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/".to_owned())
}

/// URI of the PostgreSQL test server.
pub fn postgres_uri() -> String {
    std::env::var("TEST_POSTGRES_URI")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Bootstrap servers of the Kafka-protocol test broker.
pub fn kafka_brokers() -> String {
    std::env::var("TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A short unique suffix for database, topic and group names.
pub fn unique() -> String {
    bson::oid::ObjectId::new().to_hex()
}

/// The topic and consumer-group variables of one service instance, all
/// fresh: `{prefix}-job-create-{suffix}` … `{prefix}-group-{suffix}`.
pub fn topic_vars(prefix: &str, suffix: &str) -> [(&'static str, String); 8] {
    [
        (
            vars::TOPIC_JOB_CREATE,
            format!("{prefix}-job-create-{suffix}"),
        ),
        (
            vars::TOPIC_JOB_UPDATE,
            format!("{prefix}-job-update-{suffix}"),
        ),
        (vars::TOPIC_JOB_RUN, format!("{prefix}-job-run-{suffix}")),
        (
            vars::TOPIC_JOB_RUN_RESULT,
            format!("{prefix}-job-run-result-{suffix}"),
        ),
        (
            vars::TOPIC_JOB_RUN_RESULT_DEAD_LETTER,
            format!("{prefix}-job-run-result-dead-letter-{suffix}"),
        ),
        (
            vars::TOPIC_JOB_DEAD_LETTER,
            format!("{prefix}-job-dead-letter-{suffix}"),
        ),
        (
            vars::TOPIC_JOB_DELETE,
            format!("{prefix}-job-delete-{suffix}"),
        ),
        (
            vars::TOPIC_JOB_RUN_RESULT_CONSUMER_GROUP_ID,
            format!("{prefix}-group-{suffix}"),
        ),
    ]
}
