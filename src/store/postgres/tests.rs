use chrono::DateTime;
use tokio_postgres::error::SqlState;

use super::*;
use super::{codec::ms, errors::unavailable_state, sql::Sql};

#[test]
fn schema_names_are_plain_identifiers() {
    for good in [
        "jobs_db",
        "test_0123456789abcdef01234567",
        "A1",
        &"s".repeat(63),
    ] {
        assert!(validate_schema(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "jobs-db",
        "jobs db",
        "a\"b",
        "x;DROP",
        "pg_catalog",
        "PG_x",
        "é",
        &"s".repeat(64),
    ] {
        assert!(
            matches!(validate_schema(bad), Err(StoreError::Other(_))),
            "{bad}"
        );
    }
}

#[test]
fn statements_name_the_quoted_schema() {
    let sql = Sql::new("Jobs_1");
    assert!(sql.claim.contains("\"Jobs_1\".jobs"));
    assert!(sql.claim.contains("status = 3"));
    assert!(sql.claim.contains("status = 2 AND scheduled_key = $2"));
    assert!(sql.create.contains("WHERE status = 3"));
}

#[test]
fn sqlstates_that_trying_again_may_cure_are_unavailable() {
    for (code, transient) in [
        ("08000", true),  // connection exception
        ("08006", true),  // connection failure
        ("53100", true),  // disk full
        ("53200", true),  // out of memory
        ("53300", true),  // too many connections
        ("57P01", true),  // admin shutdown
        ("57P02", true),  // crash shutdown
        ("57P03", true),  // cannot connect now
        ("57014", true),  // query canceled (statement_timeout)
        ("55P03", true),  // lock not available
        ("40001", true),  // serialization failure
        ("40P01", true),  // deadlock detected
        ("25006", true),  // read-only transaction (a standby)
        ("57P04", false), // database dropped
        ("23505", false), // unique violation
        ("42P01", false), // undefined table
        ("22P02", false), // invalid text representation
        ("42501", false), // insufficient privilege
        ("XX000", false), // internal error
    ] {
        assert_eq!(
            unavailable_state(&SqlState::from_code(code)),
            transient,
            "{code}"
        );
    }
}

#[test]
fn times_are_kept_to_the_millisecond() {
    let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
    assert_eq!(ms(t).timestamp_subsec_nanos(), 123_000_000);
}

#[tokio::test]
async fn connecting_checks_the_uri_and_schema_but_not_the_server() {
    let timeout = Duration::from_millis(200);
    assert!(
        PgJobDB::connect("postgres://127.0.0.1:1/x", "ok", timeout)
            .await
            .is_ok()
    );
    assert!(matches!(
        PgJobDB::connect("postgres://127.0.0.1:1/x", "not-ok", timeout).await,
        Err(StoreError::Other(_))
    ));
    assert!(matches!(
        PgJobDB::connect("postgres://127.0.0.1:notaport/x", "ok", timeout).await,
        Err(StoreError::Other(_))
    ));
}
