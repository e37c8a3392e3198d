//! Quick lists: deferred coalescing of small blocks.
//!
//! Coalescing a freed block reads the header of the block after it and,
//! when a neighbour is free, unlinks that neighbour from its list and links
//! the merged block into another: several cache lines scattered over the
//! heap, most of them misses once the heap outgrows the L1 cache. Programs
//! mostly free and allocate the same few small sizes, so the block freed now
//! is most often what a later allocation of its size wants back, and merging
//! it only to split it again is wasted work. glibc's tcache and fastbins, and
//! the "quick lists" of Doug Lea's and Weinstock's allocators, rest on the
//! same observation.
//!
//! So a freed block of at most [`QUICK_LIMIT`] bytes is *parked*: pushed on
//! the LIFO list of its exact size, linked through its first payload word
//! (next to its header, so usually in the cache line the free already
//! loaded), and its header gets the `QUICK` flag (see `block.rs`); nothing
//! else is touched. Its neighbours see a parked block as occupied (it has no
//! footer and is never merged with), while `walk`, `sweep`, the statistics
//! and the debug checks see it as free. An allocation of its size pops it:
//! one cache line, usually still warm from the free.
//!
//! One exception keeps fragmentation where eager coalescing has it: a block
//! whose predecessor is free (the `PREV_FREE` flag of its own header says so,
//! at no cost) is coalesced at once. Parking it would stop that free block
//! from ever growing, and free blocks that only shrink end up too small for
//! anything: parking every small block made the benchmarks' churn workload
//! (10,000 live objects of 16 to 256 bytes) need a seventh pool after 14,000
//! steps, where eager coalescing, and parking with this exception, need it
//! after 800,000 to 1,000,000. Checking the successor as well would cost the
//! very cache line that parking saves.
//!
//! Parked blocks are memory no other size can use, so each list holds at most
//! [`QUICK_DEPTH`] blocks (at most about one default pool's worth in all),
//! and the allocator *flushes* them (frees every parked block for real,
//! coalescing) whenever the free lists cannot serve a request, before it
//! takes a new pool, before a sweep, on `trim`, and when a pool's last live
//! block is freed (so that the pool can merge back into one block and be
//! given back). Each parked block is flushed at most once, so flushing costs
//! at most the coalescing that parking saved.

use crate::block::{Block, GRANULE, MIN_BLOCK};

/// The largest block parked on free (its payload is 8 bytes less): covers
/// the sizes of most objects and runtime records.
pub(crate) const QUICK_LIMIT: usize = 512;
/// The most blocks parked per size. A list that is empty or full sends an
/// operation down the slow path; under a random mix of sizes a list's length
/// wanders like a random walk, so that happens about once in `QUICK_DEPTH`
/// operations (glibc's tcache keeps 7).
pub(crate) const QUICK_DEPTH: u32 = 32;
/// One list per block size up to `QUICK_LIMIT` (the first few unused).
const CLASSES: usize = QUICK_LIMIT / GRANULE + 1;

/// The heads of the quick lists and their lengths.
pub(crate) struct QuickLists {
    heads: [Option<Block>; CLASSES],
    lens: [u32; CLASSES],
}

impl QuickLists {
    /// Empty lists.
    pub(crate) fn new() -> QuickLists {
        QuickLists {
            heads: [None; CLASSES],
            lens: [0; CLASSES],
        }
    }

    /// Parks `block`, of `size` bytes, unless it is too large or its list is
    /// full; says whether it did. Does not touch the header.
    ///
    /// # Safety
    /// `block` must be a block of a live pool that its owner gave up, of
    /// `size` bytes (a multiple of 16, at least `MIN_BLOCK`), under the lock.
    #[inline(always)]
    pub(crate) unsafe fn push(&mut self, block: Block, size: usize) -> bool {
        debug_assert!(size >= MIN_BLOCK && size.is_multiple_of(GRANULE));
        let class = size / GRANULE;
        if size > QUICK_LIMIT || self.lens[class] == QUICK_DEPTH {
            return false;
        }
        // SAFETY: forwarded to the caller; a block of `MIN_BLOCK` bytes has
        // room for its link after the header.
        unsafe { block.set_next_free(self.heads[class]) };
        self.heads[class] = Some(block);
        self.lens[class] += 1;
        true
    }

    /// Pops a parked block of exactly `size` bytes (at most `QUICK_LIMIT`), if any.
    ///
    /// # Safety
    /// Every parked block must lie in a live pool; under the lock.
    #[inline(always)]
    pub(crate) unsafe fn pop(&mut self, size: usize) -> Option<Block> {
        debug_assert!(size <= QUICK_LIMIT);
        let class = size / GRANULE;
        let head = self.heads[class]?;
        // SAFETY: a parked block holds its link after the header.
        self.heads[class] = unsafe { head.next_free() };
        self.lens[class] -= 1;
        Some(head)
    }

    /// Empties the lists and returns their blocks (for flushing). Each
    /// block's link is read before the block is returned, so the caller may
    /// reuse a block's memory as soon as it has it.
    ///
    /// # Safety
    /// Every parked block must lie in a live pool and stay untouched by
    /// others until returned; under the lock.
    pub(crate) unsafe fn take_all(&mut self) -> impl Iterator<Item = Block> + use<> {
        let QuickLists { heads, .. } = std::mem::replace(self, QuickLists::new());
        heads.into_iter().flat_map(|head| {
            let mut next = head;
            std::iter::from_fn(move || {
                let block = next?;
                // SAFETY: a parked block holds its link after the header;
                // the caller keeps it untouched until it is returned, below.
                next = unsafe { block.next_free() };
                Some(block)
            })
        })
    }

    /// The number of parked blocks.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.lens.iter().map(|&len| len as usize).sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::ptr::NonNull;

    use super::*;
    use crate::block::HEADER;

    #[repr(align(16))]
    struct Arena([u8; 4096]);

    fn block_at(arena: &mut Arena, offset: usize) -> Block {
        let base = NonNull::new(arena.0.as_mut_ptr()).unwrap();
        // SAFETY: the offsets used below stay inside the arena.
        Block::at(unsafe { base.add(offset + HEADER) })
    }

    #[test]
    fn lists_are_lifo_per_exact_size_and_bounded() {
        let mut arena = Arena([0; 4096]);
        let mut quick = QuickLists::new();
        let [a, b, c] = [0, 64, 128].map(|o| block_at(&mut arena, o));
        // SAFETY: the blocks lie in the arena, which outlives `quick`.
        unsafe {
            assert!(quick.push(a, 48));
            assert!(quick.push(b, 48));
            assert!(quick.push(c, 64));
            assert!(!quick.push(c, QUICK_LIMIT + GRANULE), "too large to park");
            assert_eq!(quick.len(), 3);
            assert_eq!(quick.pop(32), None, "no block of exactly 32 bytes");
            assert_eq!(quick.pop(48), Some(b), "last in, first out");
            assert_eq!(quick.pop(48), Some(a));
            assert_eq!(quick.pop(48), None);
            let more: Vec<Block> = (0..QUICK_DEPTH as usize - 1)
                .map(|i| block_at(&mut arena, 192 + 64 * i))
                .collect();
            for &m in &more {
                assert!(quick.push(m, 64));
            }
            assert!(!quick.push(b, 64), "a full list parks no more");
            assert!(quick.push(b, 80), "other sizes have lists of their own");
            assert_eq!(quick.pop(64), more.last().copied());
            assert!(quick.push(a, 32));
            let mut taken: Vec<Block> = Vec::new();
            for block in quick.take_all() {
                // Flushing overwrites the link of a block as soon as it has it.
                block.set_next_free(None);
                taken.push(block);
            }
            let mut expected = vec![a];
            expected.extend(more[..more.len() - 1].iter().rev());
            expected.extend([c, b]);
            assert_eq!(taken, expected, "every list, each in LIFO order");
            assert_eq!((quick.len(), quick.pop(64), quick.pop(32)), (0, None, None));
        }
    }
}
