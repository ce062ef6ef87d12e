//! Shards: how replicas share the jobs. Every job falls into one of a fixed
//! number of shards ([`ShardCount`], `SCHEDULER_SHARDS`, the same on every
//! replica of a deployment), and each replica arms and claims the jobs of
//! the shards it owns ([`Shards`]); who owns which is decided by leases in
//! the store (see `crate::service::ownership`).
//!
//! A job's shard is its id's 24-bit counter modulo the count. Job ids are
//! ObjectIds, whose last three bytes count up by one for each id a process
//! makes (from a random start), so consecutive jobs fall into consecutive
//! shards and every shard gets the same share whatever the pattern of
//! creation. It is also a value a store can compute from the stored id
//! (PostgreSQL filters on it in SQL), which a general-purpose hash of the
//! twelve bytes would not be.

use fixedbitset::FixedBitSet;

use super::JobId;

/// The most shards a deployment may have.
pub const MAX_SHARDS: u16 = 1024;

/// A shard's number, below the deployment's [`ShardCount`].
pub type Shard = u16;

/// How many shards the jobs fall into: fixed for a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCount(u16);

impl ShardCount {
    /// `count` shards, if it is between 1 and [`MAX_SHARDS`].
    pub fn new(count: u16) -> Option<ShardCount> {
        (1..=MAX_SHARDS)
            .contains(&count)
            .then_some(ShardCount(count))
    }

    /// The number of shards.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The shard job `id` falls into.
    pub fn of(self, id: &JobId) -> Shard {
        let [.., a, b, c] = id.bytes();
        let counter = u32::from_be_bytes([0, a, b, c]);
        // Below `self.0`, which is a u16.
        (counter % u32::from(self.0)) as Shard
    }
}

/// A set of shards: those a replica owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    count: ShardCount,
    owned: FixedBitSet,
}

impl Shards {
    /// No shard of `count`.
    pub fn none(count: ShardCount) -> Shards {
        Shards {
            count,
            owned: FixedBitSet::with_capacity(usize::from(count.get())),
        }
    }

    /// Every shard of `count` (a replica alone: the embedded store).
    pub fn all(count: ShardCount) -> Shards {
        let mut all = Shards::none(count);
        all.owned.insert_range(..);
        all
    }

    /// The shards listed of `count` (numbers beyond it are left out).
    pub fn of(count: ShardCount, shards: impl IntoIterator<Item = Shard>) -> Shards {
        let mut set = Shards::none(count);
        for shard in shards {
            if shard < count.get() {
                set.owned.insert(usize::from(shard));
            }
        }
        set
    }

    /// The shard count this set is of.
    pub fn count(&self) -> ShardCount {
        self.count
    }

    /// Whether job `id` falls into one of these shards.
    pub fn holds(&self, id: &JobId) -> bool {
        self.contains(self.count.of(id))
    }

    /// Whether `shard` is one of these.
    pub fn contains(&self, shard: Shard) -> bool {
        self.owned.contains(usize::from(shard))
    }

    /// How many shards are in the set.
    pub fn len(&self) -> usize {
        self.owned.count_ones(..)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.owned.is_clear()
    }

    /// Whether the set has every shard.
    pub fn is_all(&self) -> bool {
        self.owned.is_full()
    }

    /// The shards, in order.
    pub fn iter(&self) -> impl Iterator<Item = Shard> + '_ {
        // Each below the count, a u16.
        self.owned.ones().map(|shard| shard as Shard)
    }

    /// The shards of this set that `other` lacks.
    pub fn without(&self, other: &Shards) -> Shards {
        let mut left = self.clone();
        left.owned.difference_with(&other.owned);
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(n: u16) -> ShardCount {
        ShardCount::new(n).unwrap()
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(ShardCount::new(0), None);
        assert_eq!(ShardCount::new(MAX_SHARDS + 1), None);
        assert_eq!(ShardCount::new(MAX_SHARDS).map(ShardCount::get), Some(1024));
    }

    #[test]
    fn a_shard_is_the_ids_counter_modulo_the_count() {
        let id = JobId::from_bytes([0, 0, 0, 0, 9, 9, 9, 9, 9, 0x01, 0x00, 0x05]);
        assert_eq!(count(64).of(&id), 5, "65,541 % 64");
        assert_eq!(count(1000).of(&id), 541, "65,541 % 1000");
        assert_eq!(count(1).of(&id), 0);
    }

    #[test]
    fn consecutive_ids_spread_evenly() {
        let n = count(7);
        let mut per_shard = [0usize; 7];
        for counter in 1_000u32..8_000 {
            let [_, a, b, c] = counter.to_be_bytes();
            let id = JobId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 9, a, b, c]);
            per_shard[usize::from(n.of(&id))] += 1;
        }
        assert_eq!(per_shard, [1_000; 7]);
    }

    #[test]
    fn sets_hold_the_jobs_of_their_shards() {
        let n = count(4);
        let some = Shards::of(n, [1, 3, 9]);
        assert_eq!(some.iter().collect::<Vec<_>>(), [1, 3], "9 is not a shard");
        assert_eq!(
            (some.len(), some.is_all(), some.is_empty()),
            (2, false, false)
        );
        assert!(Shards::all(n).is_all() && Shards::none(n).is_empty());
        assert_eq!(Shards::all(n).without(&some), Shards::of(n, [0, 2]));
        let id = JobId::from_bytes([0; 12]);
        assert!(!some.holds(&id) && Shards::of(n, [0]).holds(&id));
    }
}
