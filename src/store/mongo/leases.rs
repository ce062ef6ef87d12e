//! The shard leases on MongoDB (see [`crate::store::leases`]): two
//! collections named after the jobs collection, so that every deployment
//! (and every test's collection) has its own:
//! - `<collection>_shard_leases`, one document per shard,
//!   `{_id: shard, owner, expiresAt}`: the owner's replica name and until
//!   when, or a null owner and the epoch when free;
//! - `<collection>_replicas`, one document per replica,
//!   `{_id: replica, expiresAt}`: until when it counts as live.
//!
//! Both are read by `_id` or whole (at most
//! [`MAX_SHARDS`](crate::domain::shard::MAX_SHARDS) leases, and a document
//! per replica), so they need no index.
//!
//! Without a replica set's transactions MongoDB makes only an update of
//! one document atomic, so every write stands on its own:
//! - a lease is taken by an `update_one` whose filter is its shard and
//!   "free or expired" (`owner: null` or `expiresAt <= now`), under an
//!   `$and` (polodb matches nothing when an `_id` equality sits beside an
//!   `$or`): a compare-and-set, so of two replicas racing for it exactly
//!   one matches, and the other goes on to the next free lease (the
//!   leases one call wants are tried at once, each its own update);
//! - renewing and releasing filter on the owner, so they never touch a
//!   lease another replica took meanwhile;
//! - a membership is an upsert of the replica's own document, which only
//!   that replica writes (those expired for a day are deleted on the way,
//!   by a filter on their expiry);
//! - [`ShardLeases::prepare`] writes the leases of a new count only where
//!   they are free (deleting those beyond the count, freeing and inserting
//!   the others, a duplicate `_id` meaning it is there), then reads them
//!   again and refuses the count if they are not exactly its leases: a
//!   lease taken meanwhile by a replica of the stored count survives, and
//!   the refusal follows. Two replicas started at the same moment with
//!   different counts can still both pass: nothing stores the count
//!   itself, only its leases.
//!
//! MongoDB-protocol servers without some of this: polodb (the test
//! server) ignores `upsert` (a membership the update did not find is then
//! inserted, the form that works on both) and `sort` (the shards are
//! sorted here), reports no `n`, only `nModified` (every document it
//! matched: it rewrites each), and its `$ne` misses documents (the live
//! replicas are counted here). Its conditional updates are not atomic across
//! connections: there two replicas racing can both take a lease, as their
//! claims can both win a job.

use std::collections::BTreeSet;

use async_trait::async_trait;
use bson::{Bson, Document, doc};
use chrono::{DateTime, TimeDelta, Utc};
use mongodb::{Collection, options::FindOptions};

use super::{
    MongoJobDB,
    codec::bson_time,
    errors::{already_there, map_err},
};
use crate::{
    domain::shard::{Shard, ShardCount},
    store::{
        StoreError,
        leases::{Renewal, ShardLeases},
    },
};

/// The suffix of the shard leases collection's name.
pub const LEASES_SUFFIX: &str = "_shard_leases";
/// The suffix of the replicas collection's name.
pub const REPLICAS_SUFFIX: &str = "_replicas";

/// How long after its membership expired a replica's document is removed.
const GONE_AFTER: TimeDelta = TimeDelta::days(1);

/// A lease as read.
struct Lease {
    shard: Shard,
    owner: Option<String>,
    expires_at: DateTime<Utc>,
}

impl Lease {
    /// A lease document read back; `None` for one that is not a lease (its
    /// `_id` not a shard number), which the leases ignore.
    fn from_document(document: &Document) -> Option<Lease> {
        let shard = match document.get("_id")? {
            Bson::Int32(n) => Shard::try_from(*n).ok()?,
            Bson::Int64(n) => Shard::try_from(*n).ok()?,
            _ => return None,
        };
        Some(Lease {
            shard,
            owner: document.get_str("owner").ok().map(str::to_owned),
            // One without a readable expiry counts as expired.
            expires_at: document
                .get_datetime("expiresAt")
                .map(|t| t.to_chrono())
                .unwrap_or(DateTime::UNIX_EPOCH),
        })
    }

    /// Held by a replica, and not expired at `now`.
    fn is_held(&self, now: DateTime<Utc>) -> bool {
        self.owner.is_some() && self.expires_at > now
    }
}

/// A shard's `_id`.
fn shard_id(shard: Shard) -> i32 {
    i32::from(shard)
}

/// The filter of the leases free or expired at `now`.
fn free_at(now: DateTime<Utc>) -> Bson {
    Bson::Array(vec![
        Bson::Document(doc! { "owner": null }),
        Bson::Document(doc! { "expiresAt": { "$lte": bson_time(now) } }),
    ])
}

/// The fields of a free lease.
fn free_lease() -> Document {
    doc! { "owner": null, "expiresAt": bson_time(DateTime::UNIX_EPOCH) }
}

/// Whether an update matched a document (polodb reports only the
/// documents it modified, which it counts as matched).
fn matched(result: &mongodb::results::UpdateResult) -> bool {
    result.matched_count > 0 || result.modified_count > 0
}

impl MongoJobDB {
    /// Every lease stored, in shard order.
    async fn stored_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let options = FindOptions::builder().sort(doc! { "_id": 1 }).build();
        let documents = self.find_all(&self.leases, doc! {}, options).await?;
        let mut leases: Vec<Lease> = documents.iter().filter_map(Lease::from_document).collect();
        leases.sort_unstable_by_key(|lease| lease.shard);
        Ok(leases)
    }

    /// Updates every document of `collection` that `filter` matches.
    async fn update_all(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        update: Document,
    ) -> Result<(), StoreError> {
        self.bounded(collection.update_many(filter, update).into_future())
            .await
            .map(drop)
    }

    /// Inserts the free lease of each of `shards`, in one call; when some
    /// were there already (a replica preparing at the same time), each is
    /// inserted on its own, one already there kept.
    async fn insert_free(&self, shards: &[Shard]) -> Result<(), StoreError> {
        let lease = |shard: Shard| {
            let mut lease = doc! { "_id": shard_id(shard) };
            lease.extend(free_lease());
            lease
        };
        if shards.is_empty() {
            return Ok(());
        }
        let leases: Vec<Document> = shards.iter().copied().map(lease).collect();
        let many = self.leases.insert_many(leases).ordered(false).into_future();
        match tokio::time::timeout(self.timeout, many).await {
            Ok(Err(err)) if already_there(&err) => {}
            Ok(result) => return result.map(drop).map_err(map_err),
            Err(_) => return Err(self.did_not_answer()),
        }
        for &shard in shards {
            let inserted = self.leases.insert_one(lease(shard)).into_future();
            match tokio::time::timeout(self.timeout, inserted).await {
                Ok(Err(err)) if already_there(&err) => {}
                Ok(result) => result.map(drop).map_err(map_err)?,
                Err(_) => return Err(self.did_not_answer()),
            }
        }
        Ok(())
    }

    /// Takes the lease of `shard` for `me` until `until` if it is free or
    /// expired at `now` (the compare-and-set); whether it did.
    async fn take(
        &self,
        shard: Shard,
        me: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let filter = doc! { "$and": [{ "_id": shard_id(shard) }, { "$or": free_at(now) }] };
        let take = doc! { "$set": { "owner": me, "expiresAt": bson_time(until) } };
        let update = self.leases.update_one(filter, take);
        Ok(matched(&self.bounded(update.into_future()).await?))
    }

    /// Makes `me` a member until `until`: an upsert of its document, and on
    /// a server that ignores `upsert` (one that neither matched nor
    /// inserted) an insert; a document there by then is updated again.
    async fn keep_membership(&self, me: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let filter = doc! { "_id": me };
        let update = doc! { "$set": { "expiresAt": bson_time(until) } };
        let upsert = self
            .replicas
            .update_one(filter.clone(), update.clone())
            .upsert(true);
        let result = self.bounded(upsert.into_future()).await?;
        if matched(&result) || result.upserted_id.is_some() {
            return Ok(());
        }
        let member = doc! { "_id": me, "expiresAt": bson_time(until) };
        let inserted = self.replicas.insert_one(member).into_future();
        match tokio::time::timeout(self.timeout, inserted).await {
            Ok(Err(err)) if already_there(&err) => {
                let again = self.replicas.update_one(filter, update);
                self.bounded(again.into_future()).await.map(drop)
            }
            Ok(result) => result.map(drop).map_err(map_err),
            Err(_) => Err(self.did_not_answer()),
        }
    }
}

#[async_trait]
impl ShardLeases for MongoJobDB {
    async fn prepare(&self, count: ShardCount, now: DateTime<Utc>) -> Result<(), StoreError> {
        let wanted: BTreeSet<Shard> = (0..count.get()).collect();
        let shards = |leases: &[Lease]| leases.iter().map(|l| l.shard).collect::<BTreeSet<_>>();
        let refusal = |stored: usize| StoreError::ShardCount {
            stored: u16::try_from(stored).unwrap_or(u16::MAX),
            configured: count.get(),
        };
        let stored = self.stored_leases().await?;
        if shards(&stored) == wanted {
            return Ok(());
        }
        if stored.iter().any(|lease| lease.is_held(now)) {
            return Err(refusal(stored.len()));
        }
        // Every lease free or expired: the leases of `count`, each write
        // only on leases still free, so that one taken meanwhile stays.
        let configured = i32::from(count.get());
        let free = free_at(now);
        let beyond = doc! { "_id": { "$gte": configured }, "$or": free.clone() };
        self.bounded(self.leases.delete_many(beyond).into_future())
            .await?;
        let within = doc! { "_id": { "$lt": configured }, "$or": free };
        self.update_all(&self.leases, within, doc! { "$set": free_lease() })
            .await?;
        let missing: Vec<Shard> = wanted.difference(&shards(&stored)).copied().collect();
        self.insert_free(&missing).await?;
        let stored = self.stored_leases().await?;
        if shards(&stored) == wanted {
            Ok(())
        } else {
            Err(refusal(stored.len()))
        }
    }

    async fn renew(
        &self,
        me: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Renewal, StoreError> {
        self.keep_membership(me, until).await?;
        let gone = doc! { "expiresAt": { "$lt": bson_time(now - GONE_AFTER) } };
        self.bounded(self.replicas.delete_many(gone).into_future())
            .await?;
        // Every lease `me` still owns, expired or not (as long as no other
        // replica took it), is renewed; then those it owns are read.
        let mine = doc! { "owner": me };
        let renewed = doc! { "$set": { "expiresAt": bson_time(until) } };
        self.update_all(&self.leases, mine.clone(), renewed).await?;
        let held = self
            .find_all(&self.leases, mine, FindOptions::default())
            .await?;
        let mut held: Vec<Shard> = held
            .iter()
            .filter_map(Lease::from_document)
            .map(|lease| lease.shard)
            .collect();
        held.sort_unstable();
        // The live others, counted here (polodb's `$ne` misses documents),
        // and `me`.
        let live = doc! { "expiresAt": { "$gt": bson_time(now) } };
        let live = self
            .find_all(&self.replicas, live, FindOptions::default())
            .await?;
        let others = live
            .iter()
            .filter(|replica| replica.get_str("_id").is_ok_and(|name| name != me))
            .count();
        Ok(Renewal {
            held,
            replicas: others + 1,
        })
    }

    async fn acquire(
        &self,
        me: &str,
        max: usize,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Shard>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let options = FindOptions::builder().sort(doc! { "_id": 1 }).build();
        let candidates = self
            .find_all(&self.leases, doc! { "$or": free_at(now) }, options)
            .await?;
        let mut candidates: Vec<Shard> = candidates
            .iter()
            .filter_map(Lease::from_document)
            .map(|lease| lease.shard)
            .collect();
        candidates.sort_unstable();
        // Each one taken only if it is still free: another replica may have
        // taken it since it was read. As many tried at once as are still
        // wanted (one round trip, not one per lease), then the next ones
        // for those lost. One taken before an error is found by the next
        // renewal.
        let mut candidates = candidates.into_iter();
        let mut taken = Vec::new();
        while taken.len() < max {
            let wave: Vec<Shard> = candidates.by_ref().take(max - taken.len()).collect();
            if wave.is_empty() {
                break;
            }
            let tries = wave.iter().map(|&shard| self.take(shard, me, until, now));
            let outcomes = futures::future::join_all(tries).await;
            for (shard, outcome) in wave.into_iter().zip(outcomes) {
                if outcome? {
                    taken.push(shard);
                }
            }
        }
        taken.sort_unstable();
        Ok(taken)
    }

    async fn release(&self, me: &str, shards: &[Shard]) -> Result<(), StoreError> {
        if shards.is_empty() {
            return Ok(());
        }
        let ids: Vec<i32> = shards.iter().copied().map(shard_id).collect();
        let filter = doc! { "_id": { "$in": ids }, "owner": me };
        self.update_all(&self.leases, filter, doc! { "$set": free_lease() })
            .await
    }

    /// The leases first, which the others wait for; a failure before the
    /// membership ends leaves it to expire.
    async fn leave(&self, me: &str) -> Result<(), StoreError> {
        let filter = doc! { "owner": me };
        self.update_all(&self.leases, filter, doc! { "$set": free_lease() })
            .await?;
        self.bounded(self.replicas.delete_one(doc! { "_id": me }).into_future())
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_reads_back_from_its_document_and_other_documents_are_not_leases() {
        let until = DateTime::from_timestamp_millis(5_000).unwrap();
        let held = doc! { "_id": 3, "owner": "a", "expiresAt": bson_time(until) };
        let lease = Lease::from_document(&held).unwrap();
        assert_eq!((lease.shard, lease.owner.as_deref()), (3, Some("a")));
        assert!(lease.is_held(until - TimeDelta::milliseconds(1)));
        assert!(!lease.is_held(until), "expired at its expiry");
        let mut free = doc! { "_id": 7_i64 };
        free.extend(free_lease());
        let lease = Lease::from_document(&free).unwrap();
        assert_eq!((lease.shard, lease.owner.as_deref()), (7, None));
        assert!(!lease.is_held(DateTime::UNIX_EPOCH));
        for other in [doc! { "_id": "count" }, doc! { "_id": -1 }, doc! {}] {
            assert!(Lease::from_document(&other).is_none(), "{other}");
        }
    }
}
