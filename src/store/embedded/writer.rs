//! The group-commit writer: one thread applies every write queued while the
//! previous commit ran, in order, in one transaction, and answers each only
//! once that transaction is durable.

use std::sync::mpsc;

use redb::Database;

use super::errors::commit_failed;
use crate::store::StoreError;

/// Most writes committed together.
pub(super) const MAX_GROUP: usize = 256;

/// A write waiting for the writer thread.
pub(super) trait QueuedWrite: Send {
    /// Applies the write to `txn`; false if it failed, and then the write
    /// must be dropped with the whole transaction (so it may be applied
    /// again, alone). Its error is kept for its answer.
    fn apply(&mut self, txn: &redb::WriteTransaction) -> bool;

    /// Answers the caller: the applied result if the commit succeeded.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

/// A write and the caller waiting for its result.
pub(super) struct Write<T, F> {
    pub(super) op: F,
    pub(super) result: Option<Result<T, StoreError>>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
    /// Run on the writer thread once the write is committed, before the
    /// caller is answered: commits' hooks run in the order of the commits.
    pub(super) on_commit: Option<OnCommit<T>>,
}

/// What a write does with its result once committed.
pub(super) type OnCommit<T> = Box<dyn FnOnce(&mut T) + Send>;

impl<T, F> QueuedWrite for Write<T, F>
where
    T: Send,
    F: FnMut(&redb::WriteTransaction) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, txn: &redb::WriteTransaction) -> bool {
        let result = (self.op)(txn);
        let applied = result.is_ok();
        self.result = Some(result);
        applied
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (committed, self.result) {
            (Ok(()), Some(mut result)) => {
                if let (Ok(value), Some(hook)) = (&mut result, self.on_commit) {
                    hook(value);
                }
                result
            }
            (Ok(()), None) => Err(StoreError::Other("write never applied".into())),
            (Err(err), _) => Err(err),
        };
        // The caller may have gone (a cancelled call): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

/// The writer thread: takes the writes queued, commits them as one group.
pub(super) fn run_writer(db: &Database, queue: &mpsc::Receiver<Box<dyn QueuedWrite>>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

/// Commits `group` in one transaction; if one write fails, the transaction
/// is dropped and each write is committed alone, so that one failure never
/// fails or half-applies the others.
pub(super) fn commit_group(db: &Database, mut group: Vec<Box<dyn QueuedWrite>>) {
    if group.len() > 1 {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(err) => {
                let err = commit_failed(err);
                return group.into_iter().for_each(|w| w.finish(Err(err.clone())));
            }
        };
        if group.iter_mut().all(|write| write.apply(&txn)) {
            let committed = txn.commit().map_err(commit_failed);
            return group.into_iter().for_each(|w| w.finish(committed.clone()));
        }
        if let Err(err) = txn.abort() {
            tracing::warn!(error = %err, "cannot abort a failed write group");
        }
    }
    for mut write in group {
        let committed = db.begin_write().map_err(commit_failed).and_then(|txn| {
            if write.apply(&txn) {
                txn.commit().map_err(commit_failed)
            } else {
                // The write's own error is its answer; nothing is kept.
                txn.abort().map_err(commit_failed)
            }
        });
        write.finish(committed);
    }
}
