//! Driver errors as store errors: which ones are worth trying again.

use mongodb::error::{
    Error as MongoError, ErrorKind, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
    SYSTEM_OVERLOADED_ERROR, TRANSIENT_TRANSACTION_ERROR, WriteFailure,
};

use crate::store::StoreError;

/// How many times a read is tried when the server loses its cursor.
pub(super) const READ_ATTEMPTS: u32 = 3;

/// Whether the server lost the cursor of a read (MongoDB's CursorNotFound,
/// code 43, or the same said in words by MongoDB-protocol servers).
pub(super) fn cursor_lost(err: &MongoError) -> bool {
    matches!(&*err.kind, ErrorKind::Command(command) if command.code == 43)
        || err.to_string().to_lowercase().contains("cursor not found")
}

/// A driver error as a [`StoreError`]: [`StoreError::Unavailable`] when the
/// same call may succeed if it is tried again (see [`transient`]), so that
/// callers retry it (the run-result consumer, the firings) rather than give
/// up on it.
pub(super) fn map_err(err: MongoError) -> StoreError {
    if transient(&err) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Other(err.to_string())
    }
}

/// Server error codes after which the same operation may succeed when it is
/// tried again: a replica set between primaries (a fail-over, a step-down),
/// a node shutting down, starting or unreachable, a write concern not
/// satisfied in time. The driver's own retryable codes, and
/// WriteConcernFailed.
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Error labels by which the server or the driver says that an operation
/// may be tried again.
const TRANSIENT_LABELS: &[&str] = &[
    RETRYABLE_WRITE_ERROR,
    TRANSIENT_TRANSACTION_ERROR,
    RETRYABLE_ERROR,
    SYSTEM_OVERLOADED_ERROR,
];

/// Whether trying the same call again may succeed: a label says so, or the
/// error (or one it was caused by) is of a kind or code that does.
pub(super) fn transient(err: &MongoError) -> bool {
    has_transient_label(err)
        || std::iter::successors(Some(err), |e| {
            std::error::Error::source(*e).and_then(|cause| cause.downcast_ref::<MongoError>())
        })
        .any(|e| transient_kind(&e.kind))
}

/// Whether the server or the driver labelled `err` as worth trying again.
pub(super) fn has_transient_label(err: &MongoError) -> bool {
    TRANSIENT_LABELS
        .iter()
        .any(|label| err.contains_label(label))
}

/// Whether an error of this kind is one that trying again may cure.
fn transient_kind(kind: &ErrorKind) -> bool {
    match kind {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        // Wrong credentials make the store unusable until an operator fixes
        // them: a dependency failure, not a fault of the request.
        | ErrorKind::Authentication { .. } => true,
        ErrorKind::Command(command) => TRANSIENT_CODES.contains(&command.code),
        // The write was applied on the primary, but not acknowledged as the
        // write concern asks (not replicated in time, or the primary stepped
        // down): every write of this store is conditional, so trying it
        // again is safe (it then finds the change made, or makes it).
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        _ => false,
    }
}

/// Whether an insert failed on the unique index of client keys (a
/// duplicate key error, 11000, that names it).
/// Whether a write found its document already there (a duplicate `_id` or
/// other unique key): MongoDB's code 11000, for one write or any of many,
/// or polodb's message.
pub(super) fn already_there(err: &MongoError) -> bool {
    match &*err.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::InsertMany(many) => many
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == 11000)),
        ErrorKind::Command(command) => command.message.contains("duplicate key"),
        _ => false,
    }
}

/// Whether an insert met a job with its client key (the unique index of
/// `clientKey`).
pub(super) fn duplicate_key(err: &MongoError) -> bool {
    already_there(err) && err.to_string().contains("clientKey")
}
