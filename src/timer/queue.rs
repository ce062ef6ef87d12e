//! The timer's set of armed jobs, packed for memory (about 43 bytes a job).
//!
//! Each armed job is stored once, in a slot of a dense slab (24 B). Two
//! indexes refer to slots by number:
//! - a binary min-heap by due time (12 B an entry, which holds the due time).
//!   Each slot records its position in the heap, so any job can be removed
//!   or moved in O(log n);
//! - a hash table from job id to slot (4 B and one control byte an entry).
//!
//! The obvious layout, a `BTreeMap` by (due, id) beside a `HashMap` by id,
//! keeps each id and due time twice and pays for half-empty B-tree nodes:
//! 87 B a job, measured (BENCHMARKS.md). Memory per pending job is one of the
//! figures a scheduler is judged by, hence the hand-written structure.
//!
//! A removed slot is filled with the last one, so the slab stays dense and
//! can be shrunk after a burst ([`ArmedJobs::shrink_if_sparse`]).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::domain::JobId;

/// One armed job (24 bytes: the 12-byte id and the heap position share 16).
/// Its due time is in its heap entry.
struct Slot {
    id: JobId,
    /// Where this job's entry is in `ArmedJobs::heap`.
    heap_pos: u32,
    fire_token: i64,
}

/// A heap entry: the due time lives here, so that sifting compares without
/// touching the slab. Packed to 12 bytes (an `i64` at 4-byte alignment costs
/// nothing on the targets we build for); fields are only ever copied.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct HeapEntry {
    due_ms: i64,
    slot: u32,
}

// The sizes the module doc promises.
const _: () = assert!(size_of::<Slot>() == 24 && size_of::<HeapEntry>() == 12);

/// An armed job taken off the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Armed {
    /// The job.
    pub id: JobId,
    /// When it was due, in Unix ms.
    pub due_ms: i64,
    /// The fire token it was armed with.
    pub fire_token: i64,
}

/// Armed jobs, ordered by due time and found by id. Not thread-safe: the
/// timer keeps it behind its mutex.
#[derive(Default)]
pub(super) struct ArmedJobs {
    slots: Vec<Slot>,
    heap: Vec<HeapEntry>,
    by_id: HashTable<u32>,
    /// Ids are made by the service, so a fast non-keyed hash is safe here.
    hasher: foldhash::fast::RandomState,
}

/// Slot numbers are `u32`; more than four billion armed jobs would not fit
/// in memory anyway.
fn slot_number(index: usize) -> u32 {
    u32::try_from(index).unwrap_or_else(|_| panic!("more than u32::MAX armed jobs"))
}

impl ArmedJobs {
    /// How many jobs are armed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether `id` is armed.
    pub fn contains(&self, id: &JobId) -> bool {
        self.find(id).is_some()
    }

    /// When the earliest armed job is due, in Unix ms.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.heap.first().map(|entry| entry.due_ms)
    }

    /// Arms `id`, or moves it if it is armed already. Returns whether it is
    /// now the earliest job.
    pub fn arm(&mut self, id: JobId, due_ms: i64, fire_token: i64) -> bool {
        let slot = match self.find(&id) {
            Some(slot) => {
                let armed = &mut self.slots[slot as usize];
                armed.fire_token = fire_token;
                let pos = armed.heap_pos as usize;
                self.heap[pos].due_ms = due_ms;
                self.resift(pos);
                slot
            }
            None => {
                let slot = slot_number(self.slots.len());
                let pos = self.heap.len();
                self.slots.push(Slot {
                    id,
                    heap_pos: slot_number(pos),
                    fire_token,
                });
                self.heap.push(HeapEntry { due_ms, slot });
                self.sift_up(pos);
                let Self {
                    slots,
                    by_id,
                    hasher,
                    ..
                } = self;
                by_id.insert_unique(hasher.hash_one(id), slot, |&s| {
                    hasher.hash_one(slots[s as usize].id)
                });
                slot
            }
        };
        let earliest = self.heap[0].slot;
        earliest == slot
    }

    /// Disarms `id`; returns whether it was armed.
    pub fn remove(&mut self, id: &JobId) -> bool {
        match self.find(id) {
            Some(slot) => {
                self.take(slot);
                true
            }
            None => false,
        }
    }

    /// Disarms every job `keep` refuses; returns how many. O(n), plus
    /// O(log n) for each job disarmed.
    pub fn retain(&mut self, mut keep: impl FnMut(&JobId) -> bool) -> usize {
        let dropped: Vec<JobId> = self
            .slots
            .iter()
            .map(|slot| slot.id)
            .filter(|id| !keep(id))
            .collect();
        for id in &dropped {
            self.remove(id);
        }
        dropped.len()
    }

    /// Takes the earliest job off the queue.
    pub fn pop_first(&mut self) -> Option<Armed> {
        let slot = self.heap.first()?.slot;
        Some(self.take(slot))
    }

    /// Gives memory back after a burst: once fewer than a quarter of the
    /// allocated entries are in use, shrinks to twice the jobs armed. O(n),
    /// so the timer calls it only while idle.
    pub fn shrink_if_sparse(&mut self) {
        let len = self.len();
        if len.saturating_mul(4) >= self.slots.capacity().max(1024) {
            return;
        }
        let target = len * 2;
        self.slots.shrink_to(target);
        self.heap.shrink_to(target);
        let Self {
            slots,
            by_id,
            hasher,
            ..
        } = self;
        by_id.shrink_to(target, |&s| hasher.hash_one(slots[s as usize].id));
    }

    fn find(&self, id: &JobId) -> Option<u32> {
        self.by_id
            .find(self.hasher.hash_one(id), |&s| {
                self.slots[s as usize].id == *id
            })
            .copied()
    }

    /// Removes the job in `slot` from both indexes and the slab.
    fn take(&mut self, slot: u32) -> Armed {
        let Slot {
            id,
            heap_pos,
            fire_token,
        } = self.slots[slot as usize];
        let due_ms = self.heap[heap_pos as usize].due_ms;
        if let Ok(entry) = self
            .by_id
            .find_entry(self.hasher.hash_one(id), |&s| s == slot)
        {
            entry.remove();
        }
        self.remove_heap_entry(heap_pos as usize);
        self.free_slot(slot);
        Armed {
            id,
            due_ms,
            fire_token,
        }
    }

    /// Fills `slot` with the last slot, repointing that job's two indexes.
    fn free_slot(&mut self, slot: u32) {
        let last = slot_number(self.slots.len() - 1);
        self.slots.swap_remove(slot as usize);
        if slot == last {
            return;
        }
        let moved = &self.slots[slot as usize];
        self.heap[moved.heap_pos as usize].slot = slot;
        if let Some(entry) = self
            .by_id
            .find_mut(self.hasher.hash_one(moved.id), |&s| s == last)
        {
            *entry = slot;
        }
    }

    fn remove_heap_entry(&mut self, pos: usize) {
        let Some(last) = self.heap.pop() else {
            return;
        };
        if pos < self.heap.len() {
            self.place(pos, last);
            self.resift(pos);
        }
    }

    /// Writes `entry` at `pos` and tells its slot where it is.
    fn place(&mut self, pos: usize, entry: HeapEntry) {
        self.heap[pos] = entry;
        let slot = entry.slot;
        self.slots[slot as usize].heap_pos = slot_number(pos);
    }

    /// Restores the heap order after the entry at `pos` changed.
    fn resift(&mut self, pos: usize) {
        let pos = self.sift_up(pos);
        self.sift_down(pos);
    }

    /// Moves the entry at `pos` up past later parents; returns where it ends.
    fn sift_up(&mut self, mut pos: usize) -> usize {
        let entry = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[parent].due_ms <= entry.due_ms {
                break;
            }
            self.place(pos, self.heap[parent]);
            pos = parent;
        }
        self.place(pos, entry);
        pos
    }

    /// Moves the entry at `pos` down past earlier children.
    fn sift_down(&mut self, mut pos: usize) {
        let entry = self.heap[pos];
        let len = self.heap.len();
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].due_ms < self.heap[left].due_ms {
                right
            } else {
                left
            };
            if self.heap[child].due_ms >= entry.due_ms {
                break;
            }
            self.place(pos, self.heap[child]);
            pos = child;
        }
        self.place(pos, entry);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    impl ArmedJobs {
        /// Checks every link between the slab, the heap and the id table.
        fn assert_consistent(&self) {
            assert_eq!(self.heap.len(), self.slots.len());
            assert_eq!(self.by_id.len(), self.slots.len());
            for (pos, &entry) in self.heap.iter().enumerate() {
                let (slot, due_ms) = (entry.slot, entry.due_ms);
                assert_eq!(
                    self.slots[slot as usize].heap_pos as usize, pos,
                    "heap position"
                );
                if pos > 0 {
                    let parent_due_ms = self.heap[(pos - 1) / 2].due_ms;
                    assert!(parent_due_ms <= due_ms, "heap order");
                }
            }
            for (index, slot) in self.slots.iter().enumerate() {
                assert_eq!(self.find(&slot.id), Some(slot_number(index)), "id index");
            }
        }
    }

    #[test]
    fn pops_in_due_order_and_moves_rearmed_jobs() {
        let mut jobs = ArmedJobs::default();
        let (a, b, c) = (JobId::new(), JobId::new(), JobId::new());
        assert!(jobs.arm(a, 30, 1));
        assert!(!jobs.arm(b, 40, 2));
        assert!(jobs.arm(c, 10, 3));
        assert!(jobs.arm(b, 5, 4), "moving b ahead makes it the earliest");
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs.next_due_ms(), Some(5));
        let popped: Vec<(JobId, i64, i64)> = std::iter::from_fn(|| jobs.pop_first())
            .map(|armed| (armed.id, armed.due_ms, armed.fire_token))
            .collect();
        assert_eq!(popped, vec![(b, 5, 4), (c, 10, 3), (a, 30, 1)]);
        assert_eq!(jobs.len(), 0);
        assert!(!jobs.contains(&a));
    }

    /// Random arms, moves, removals and pops against a plain map as the model,
    /// checking the internal links after every step.
    #[test]
    fn matches_a_plain_map_under_random_operations() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut jobs = ArmedJobs::default();
        let mut model: HashMap<JobId, (i64, i64)> = HashMap::new();
        let mut known: Vec<JobId> = Vec::new();
        for step in 0..20_000_i64 {
            match rng.random_range(0..10) {
                0..=4 => {
                    let id = if known.is_empty() || rng.random_bool(0.7) {
                        let id = JobId::new();
                        known.push(id);
                        id
                    } else {
                        known[rng.random_range(0..known.len())]
                    };
                    let due = rng.random_range(0..500);
                    jobs.arm(id, due, step);
                    model.insert(id, (due, step));
                }
                5..=6 if !known.is_empty() => {
                    let id = known[rng.random_range(0..known.len())];
                    assert_eq!(jobs.remove(&id), model.remove(&id).is_some());
                }
                7..=8 => {
                    let earliest = model.values().map(|&(due, _)| due).min();
                    assert_eq!(jobs.next_due_ms(), earliest);
                    if let Some(armed) = jobs.pop_first() {
                        assert_eq!(Some(armed.due_ms), earliest);
                        let expected = model.remove(&armed.id);
                        assert_eq!(expected, Some((armed.due_ms, armed.fire_token)));
                    }
                }
                _ => jobs.shrink_if_sparse(),
            }
            assert_eq!(jobs.len(), model.len());
            if step % 97 == 0 {
                jobs.assert_consistent();
            }
        }
        jobs.assert_consistent();
    }

    #[test]
    fn shrinks_after_a_burst_and_keeps_what_is_left() {
        let mut jobs = ArmedJobs::default();
        let ids: Vec<JobId> = (0..10_000).map(|_| JobId::new()).collect();
        for (due, id) in ids.iter().enumerate() {
            jobs.arm(*id, i64::try_from(due).expect("small"), 0);
        }
        for _ in 0..9_900 {
            jobs.pop_first();
        }
        jobs.shrink_if_sparse();
        assert!(jobs.slots.capacity() < 1_000, "{}", jobs.slots.capacity());
        jobs.assert_consistent();
        assert!(ids[9_900..].iter().all(|id| jobs.contains(id)));
        assert_eq!(jobs.next_due_ms(), Some(9_900));
    }
}
