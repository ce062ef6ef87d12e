//! redb's failures as [`StoreError`]s: transient ones (a full disk) are
//! [`StoreError::Unavailable`], so that callers retry.

use crate::store::StoreError;

pub(super) fn other(err: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("embedded store: {err}"))
}

/// A failure of redb or of its file as a [`StoreError`]:
/// [`StoreError::Unavailable`] when trying again may succeed (see
/// [`transient`]), so that callers retry the call instead of giving up on
/// it (a run result is not dropped while the disk is full).
pub(super) fn storage(err: impl Into<redb::Error>) -> StoreError {
    classified("embedded store", err.into())
}

/// As [`storage`], for the commit of a group of writes.
pub(super) fn commit_failed(err: impl Into<redb::Error>) -> StoreError {
    classified("embedded store: commit failed", err.into())
}

pub(super) fn classified(context: &str, err: redb::Error) -> StoreError {
    let message = format!("{context}: {err}");
    if transient(&err) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Other(message)
    }
}

/// Whether trying again may cure `err`: an I/O error that passes (the disk
/// or a quota full, ENOSPC and EDQUOT; memory short; a call interrupted or
/// that would block), and redb's refusal of every use of the file after
/// such an error (`PreviousIo`), which lasts until the store is opened
/// again: a restart, once the disk has room. A corrupted file, a closed
/// database or a misuse of redb is not cured by trying again.
pub(super) fn transient(err: &redb::Error) -> bool {
    use std::io::ErrorKind;
    match err {
        redb::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::StorageFull
                | ErrorKind::QuotaExceeded
                | ErrorKind::OutOfMemory
                | ErrorKind::Interrupted
                | ErrorKind::WouldBlock
        ),
        redb::Error::PreviousIo => true,
        _ => false,
    }
}
