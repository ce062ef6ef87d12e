//! Shard leases: the port through which replicas sharing a store agree on
//! who owns which shard (see [`crate::domain::shard`] for what a shard is,
//! and `crate::service::ownership` for the policy that drives it).
//!
//! A store that several replicas share keeps one lease per shard (its
//! owner and until when) and one membership per live replica (until
//! when), and changes them with the same kind of conditional writes as
//! claims: a lease is taken only while it is free or expired, renewed and
//! released only by its owner. PostgreSQL keeps them in two tables of its
//! schema (`store::postgres`), MongoDB in two collections named after the
//! jobs collection (`store::mongo`), and the memory store, shared by
//! replicas in one process, in [`MemoryLeases`]. The embedded store is
//! open in one process only, so it has no leases: that replica owns every
//! shard.
//!
//! Times are the replicas' clocks (`now`, `until`), as for every other
//! time the service writes. A replica whose clock runs ahead takes expired
//! leases early, so that two replicas arm a shard's jobs for the skew's
//! length: the claims, conditional on the fire token, still fire each job
//! once.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::StoreError;
use crate::domain::shard::{Shard, ShardCount};

/// What a renewal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The shards the replica still holds (now renewed), in order.
    pub held: Vec<Shard>,
    /// How many replicas are live (their membership not expired), this one
    /// included.
    pub replicas: usize,
}

/// The shard leases and memberships of the replicas sharing a store.
/// Replicas are named by their `SCHEDULER_REPLICA_ID`.
#[async_trait]
pub trait ShardLeases: Send + Sync + 'static {
    /// Makes one lease per shard of `count`, free, if there are none; if
    /// there are leases for another count, replaces them only when none is
    /// held by a live replica (every replica stopped), and otherwise
    /// refuses with [`StoreError::ShardCount`]: replicas that disagree on
    /// the count would each miss jobs the other thinks its own.
    async fn prepare(&self, count: ShardCount, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Renews `me`'s membership and every lease it still holds until
    /// `until`; answers those leases and how many replicas are live at
    /// `now`. A lease another replica took (after it expired) is not
    /// renewed.
    async fn renew(
        &self,
        me: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Renewal, StoreError>;

    /// Takes, for `me` until `until`, at most `max` of the leases that are
    /// free or expired at `now`; answers the shards taken. Two replicas
    /// racing for a lease never both take it.
    async fn acquire(
        &self,
        me: &str,
        max: usize,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Shard>, StoreError>;

    /// Frees the leases of `shards` that `me` holds.
    async fn release(&self, me: &str, shards: &[Shard]) -> Result<(), StoreError>;

    /// Frees every lease `me` holds and ends its membership (at shutdown).
    async fn leave(&self, me: &str) -> Result<(), StoreError>;
}

/// A lease: its owner and until when, or free.
#[derive(Debug, Clone, Default)]
struct Lease {
    owner: Option<String>,
    until: DateTime<Utc>,
}

impl Lease {
    fn is_free(&self, now: DateTime<Utc>) -> bool {
        self.owner.is_none() || self.until <= now
    }
}

#[derive(Debug, Default)]
struct LeaseTable {
    leases: Vec<Lease>,
    members: HashMap<String, DateTime<Utc>>,
}

/// The leases in memory, for replicas in one process sharing a
/// [`super::memory::MemoryJobDB`]: the reference of the rules above.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    table: Mutex<LeaseTable>,
}

#[async_trait]
impl ShardLeases for MemoryLeases {
    async fn prepare(&self, count: ShardCount, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut table = self.table.lock().await;
        let stored = table.leases.len();
        if stored == usize::from(count.get()) {
            return Ok(());
        }
        if stored > 0 && table.leases.iter().any(|lease| !lease.is_free(now)) {
            return Err(StoreError::ShardCount {
                stored: u16::try_from(stored).unwrap_or(u16::MAX),
                configured: count.get(),
            });
        }
        table.leases = vec![Lease::default(); usize::from(count.get())];
        Ok(())
    }

    async fn renew(
        &self,
        me: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Renewal, StoreError> {
        let mut table = self.table.lock().await;
        table.members.insert(me.to_owned(), until);
        let mut held = Vec::new();
        for (shard, lease) in table.leases.iter_mut().enumerate() {
            if lease.owner.as_deref() == Some(me) {
                lease.until = until;
                held.extend(Shard::try_from(shard).ok());
            }
        }
        let replicas = table.members.values().filter(|&&t| t > now).count();
        Ok(Renewal { held, replicas })
    }

    async fn acquire(
        &self,
        me: &str,
        max: usize,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Shard>, StoreError> {
        let mut table = self.table.lock().await;
        let mut taken = Vec::new();
        for (shard, lease) in table.leases.iter_mut().enumerate() {
            if taken.len() >= max {
                break;
            }
            if lease.is_free(now) {
                *lease = Lease {
                    owner: Some(me.to_owned()),
                    until,
                };
                taken.extend(Shard::try_from(shard).ok());
            }
        }
        Ok(taken)
    }

    async fn release(&self, me: &str, shards: &[Shard]) -> Result<(), StoreError> {
        let mut table = self.table.lock().await;
        for &shard in shards {
            if let Some(lease) = table.leases.get_mut(usize::from(shard))
                && lease.owner.as_deref() == Some(me)
            {
                *lease = Lease::default();
            }
        }
        Ok(())
    }

    async fn leave(&self, me: &str) -> Result<(), StoreError> {
        let mut table = self.table.lock().await;
        table.members.remove(me);
        for lease in &mut table.leases {
            if lease.owner.as_deref() == Some(me) {
                *lease = Lease::default();
            }
        }
        Ok(())
    }
}
