//! PostgreSQL's failures as [`StoreError`]s: what trying again may cure is
//! [`StoreError::Unavailable`].

use std::error::Error as _;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Whether a server error means that the same statement may succeed when it
/// is tried again (the server cannot serve now, or this attempt lost a race),
/// rather than that the server refused this request.
pub(super) fn unavailable_state(code: &SqlState) -> bool {
    let transient = [
        SqlState::ADMIN_SHUTDOWN,            // 57P01
        SqlState::CRASH_SHUTDOWN,            // 57P02
        SqlState::CANNOT_CONNECT_NOW,        // 57P03: starting, or recovering
        SqlState::IDLE_SESSION_TIMEOUT,      // 57P05: the session was closed
        SqlState::QUERY_CANCELED,            // 57014: statement_timeout
        SqlState::LOCK_NOT_AVAILABLE,        // 55P03
        SqlState::T_R_SERIALIZATION_FAILURE, // 40001
        SqlState::T_R_DEADLOCK_DETECTED,     // 40P01
        SqlState::READ_ONLY_SQL_TRANSACTION, // 25006: a standby, before fail-over ends
    ];
    let class = code.code().get(..2).unwrap_or_default();
    class == "08" // connection exception
        || class == "53" // insufficient resources: disk full, out of memory, too many connections
        || transient.contains(code)
}

pub(super) fn map_err(err: tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let message = format!("{db} (SQLSTATE {})", db.code().code());
        return if unavailable_state(db.code()) {
            StoreError::Unavailable(message)
        } else {
            StoreError::Other(message)
        };
    }
    let message = match err.source() {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    // Without a server error, a closed connection or an I/O error anywhere in
    // the chain (refused, reset, connect timeout) means the server is out of reach.
    let mut cause = err.source();
    let mut io = false;
    while let Some(e) = cause {
        io |= e.is::<std::io::Error>();
        cause = e.source();
    }
    if err.is_closed() || io {
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

pub(super) fn map_pool_err(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(e) => map_err(e),
        PoolError::Timeout(_) | PoolError::Closed => {
            StoreError::Unavailable(format!("database connection pool: {err}"))
        }
        other => StoreError::Other(format!("database connection pool: {other}")),
    }
}
