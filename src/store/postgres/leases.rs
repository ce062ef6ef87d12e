//! The shard leases on PostgreSQL (see [`crate::store::leases`]): table
//! `shard_leases`, one row per shard (its owner and until when), and
//! `scheduler_replicas`, one row per replica (until when it counts as
//! live), in the store's schema, made by `ensure_indexes`.
//!
//! Each call is one statement (or, for [`ShardLeases::prepare`], one
//! transaction under an advisory lock). A lease is taken by an `UPDATE`
//! of rows picked `FOR UPDATE SKIP LOCKED` whose condition (free or
//! expired) is checked again on the row as committed, so that two
//! replicas racing never both take it; renewing and releasing match the
//! owner.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{PgJobDB, errors::map_err};
use crate::{
    domain::shard::{Shard, ShardCount},
    store::{
        StoreError,
        leases::{Renewal, ShardLeases},
    },
};

/// Name of the table of shard leases, inside the store's schema.
pub const LEASES_TABLE: &str = "shard_leases";
/// Name of the table of live replicas, inside the store's schema.
pub const REPLICAS_TABLE: &str = "scheduler_replicas";

/// First key of the advisory lock that serialises `prepare` across
/// replicas; the second is a hash of the schema name.
const LEASES_LOCK_CLASS: i32 = 0x5368_7264; // "Shrd"

/// The statements on the leases of one schema.
pub(super) struct LeaseSql {
    pub(super) create: String,
    tally: String,
    clear: String,
    fill: String,
    renew: String,
    acquire: String,
    release: String,
    leave: String,
}

impl LeaseSql {
    /// The statements for the schema `quoted` (already quoted).
    pub(super) fn new(quoted: &str) -> Self {
        let leases = format!("{quoted}.{LEASES_TABLE}");
        let replicas = format!("{quoted}.{REPLICAS_TABLE}");
        let free = "(owner IS NULL OR expires_at <= $3)";
        LeaseSql {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {leases} (
                    shard      smallint       PRIMARY KEY,
                    owner      text,
                    expires_at timestamptz(3) NOT NULL DEFAULT 'epoch'
                 );
                 CREATE TABLE IF NOT EXISTS {replicas} (
                    replica    text           PRIMARY KEY,
                    expires_at timestamptz(3) NOT NULL
                 );"
            ),
            tally: format!(
                "SELECT count(*), count(*) FILTER (WHERE owner IS NOT NULL AND expires_at > $1) \
                 FROM {leases}"
            ),
            clear: format!("DELETE FROM {leases}"),
            fill: format!("INSERT INTO {leases} (shard) SELECT generate_series(0, $1::int - 1)"),
            // The replica's own row is written by the same statement, so the
            // count sees the others only (one snapshot) and adds it. Rows of
            // replicas gone for a day are removed on the way.
            renew: format!(
                "WITH me AS ( \
                     INSERT INTO {replicas} (replica, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (replica) DO UPDATE SET expires_at = $2), \
                 gone AS ( \
                     DELETE FROM {replicas} WHERE expires_at < $3::timestamptz - interval '1 day'), \
                 held AS ( \
                     UPDATE {leases} SET expires_at = $2 WHERE owner = $1 RETURNING shard) \
                 SELECT ARRAY(SELECT shard FROM held ORDER BY shard), \
                     (SELECT count(*) FROM {replicas} WHERE expires_at > $3 AND replica <> $1)"
            ),
            acquire: format!(
                "UPDATE {leases} SET owner = $1, expires_at = $2 \
                 WHERE {free} AND shard IN ( \
                     SELECT shard FROM {leases} WHERE {free} \
                     ORDER BY shard LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING shard"
            ),
            release: format!(
                "UPDATE {leases} SET owner = NULL, expires_at = 'epoch' \
                 WHERE owner = $1 AND shard = ANY($2)"
            ),
            leave: format!(
                "WITH gone AS (DELETE FROM {replicas} WHERE replica = $1) \
                 UPDATE {leases} SET owner = NULL, expires_at = 'epoch' WHERE owner = $1"
            ),
        }
    }
}

#[async_trait]
impl ShardLeases for PgJobDB {
    async fn prepare(&self, count: ShardCount, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = &self.sql.leases;
        let configured = i32::from(count.get());
        self.in_transaction(async |tx| {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LEASES_LOCK_CLASS, &self.sql.schema],
            )
            .await
            .map_err(map_err)?;
            let row = tx.query_one(&sql.tally, &[&now]).await.map_err(map_err)?;
            let stored: i64 = row.try_get(0).map_err(map_err)?;
            let live: i64 = row.try_get(1).map_err(map_err)?;
            if stored == i64::from(configured) {
                return Ok(());
            }
            if stored > 0 && live > 0 {
                return Err(StoreError::ShardCount {
                    stored: u16::try_from(stored).unwrap_or(u16::MAX),
                    configured: count.get(),
                });
            }
            tx.execute(&sql.clear, &[]).await.map_err(map_err)?;
            tx.execute(&sql.fill, &[&configured])
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn renew(
        &self,
        me: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Renewal, StoreError> {
        let row = self
            .query_opt(&self.sql.leases.renew, &[&me, &until, &now])
            .await?
            .ok_or_else(|| StoreError::Other("renewal answered no row".to_owned()))?;
        let held: Vec<i16> = row.try_get(0).map_err(map_err)?;
        let others: i64 = row.try_get(1).map_err(map_err)?;
        Ok(Renewal {
            held: shards(held),
            replicas: usize::try_from(others).unwrap_or(0) + 1,
        })
    }

    async fn acquire(
        &self,
        me: &str,
        max: usize,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Shard>, StoreError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .query(&self.sql.leases.acquire, &[&me, &until, &now, &max])
            .await?;
        let taken = rows
            .iter()
            .map(|row| row.try_get::<_, i16>(0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        let mut taken = shards(taken);
        taken.sort_unstable();
        Ok(taken)
    }

    async fn release(&self, me: &str, shards: &[Shard]) -> Result<(), StoreError> {
        let shards: Vec<i16> = shards
            .iter()
            .filter_map(|&s| i16::try_from(s).ok())
            .collect();
        self.execute(&self.sql.leases.release, &[&me, &shards])
            .await
            .map(drop)
    }

    async fn leave(&self, me: &str) -> Result<(), StoreError> {
        self.execute(&self.sql.leases.leave, &[&me]).await.map(drop)
    }
}

/// Shard numbers as read (never negative: they are below the count).
fn shards(numbers: Vec<i16>) -> Vec<Shard> {
    numbers
        .into_iter()
        .filter_map(|n| Shard::try_from(n).ok())
        .collect()
}
