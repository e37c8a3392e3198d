//! Batched reporting into `MemStats`.
//!
//! An atomic add costs about as much as a whole allocation, so the free-list
//! allocator counts under its lock (one plain add per operation) and reports
//! every [`BATCH`] allocations or frees (and whenever it takes or gives back a pool, sweeps, is asked to
//! flush, or is dropped). A snapshot lags by fewer than `BATCH` allocations
//! and `BATCH` frees.

use rtmem_base::{MemStats, SpaceType};

/// Operations counted before the counts are reported.
pub(crate) const BATCH: usize = 256;

/// Where the object count starts in a [`Tally`]: below are bytes.
const OBJECT_SHIFT: u32 = 44;

/// The largest block a tally may count: `BATCH` of them stay below
/// `2^OBJECT_SHIFT` bytes, so bytes never carry into the object count.
pub(crate) const MAX_COUNTED_BLOCK: usize = 1 << (OBJECT_SHIFT - BATCH.trailing_zeros());

/// Objects and bytes in one word (objects from `OBJECT_SHIFT` up), so that
/// counting an operation is a single add.
#[derive(Clone, Copy, Default)]
struct Tally(u64);

impl Tally {
    /// Counts one object of `bytes`; true when `BATCH` objects are counted.
    #[inline(always)]
    fn add(&mut self, bytes: usize) -> bool {
        debug_assert!(bytes < MAX_COUNTED_BLOCK);
        self.0 += (1 << OBJECT_SHIFT) + bytes as u64;
        self.0 >= (BATCH as u64) << OBJECT_SHIFT
    }

    fn objects(self) -> usize {
        (self.0 >> OBJECT_SHIFT) as usize
    }

    fn bytes(self) -> usize {
        (self.0 & ((1 << OBJECT_SHIFT) - 1)) as usize
    }
}

/// Allocations and frees not yet reported.
#[derive(Default)]
pub(crate) struct PendingStats {
    alloc: Tally,
    free: Tally,
}

impl PendingStats {
    /// Counts one allocation of `bytes`; true when a batch of allocations is full.
    #[inline(always)]
    pub(crate) fn alloc(&mut self, bytes: usize) -> bool {
        self.alloc.add(bytes)
    }

    /// Counts one free of `bytes`; true when a batch of frees is full.
    #[inline(always)]
    pub(crate) fn free(&mut self, bytes: usize) -> bool {
        self.free.add(bytes)
    }

    /// Reports everything counted so far.
    #[cold]
    #[inline(never)]
    pub(crate) fn flush(&mut self, stats: &MemStats, space: SpaceType) {
        if self.alloc.objects() > 0 {
            stats.record_alloc(space, self.alloc.bytes(), self.alloc.objects());
        }
        if self.free.objects() > 0 {
            stats.record_free(space, self.free.bytes(), self.free.objects());
        }
        *self = PendingStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fill_and_flush() {
        let stats = MemStats::new();
        let mut p = PendingStats::default();
        for i in 1..BATCH {
            assert!(!p.alloc(10), "batch full after {i}");
        }
        assert!(!p.free(4), "frees fill their own batch");
        let space = SpaceType::NonMoving;
        assert_eq!(
            stats.space(space).bytes_allocated,
            0,
            "nothing reported yet"
        );
        assert!(p.alloc(10));
        p.flush(&stats, space);
        let s = stats.space(space);
        assert_eq!(
            (s.bytes_allocated, s.objects_allocated),
            (10 * BATCH as u64, BATCH as u64)
        );
        assert_eq!((s.bytes_freed, s.objects_freed), (4, 1));
        for _ in 1..BATCH {
            assert!(!p.free(4), "flushing emptied the batch");
        }
        assert!(p.free(4));
        p.flush(&stats, space);
        let s = stats.space(space);
        assert_eq!(
            (s.bytes_freed, s.objects_freed),
            (4 + 4 * BATCH as u64, 1 + BATCH as u64)
        );
    }

    #[test]
    fn a_full_batch_of_the_largest_blocks_does_not_carry_into_the_count() {
        let mut t = Tally::default();
        for _ in 1..BATCH {
            assert!(!t.add(MAX_COUNTED_BLOCK - 1));
        }
        assert!(t.add(MAX_COUNTED_BLOCK - 1));
        assert_eq!(t.objects(), BATCH);
        assert_eq!(t.bytes(), BATCH * (MAX_COUNTED_BLOCK - 1));
    }
}
