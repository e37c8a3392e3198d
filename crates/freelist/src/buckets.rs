//! Segregated free lists: one list per size class and a bitmap of the
//! non-empty ones, so finding a block is O(1) in the common case.
//!
//! - Blocks smaller than [`SMALL_LIMIT`] have one *exact* class per size
//!   (sizes are multiples of 16): any block of the class fits exactly.
//! - Larger blocks have eight classes per power of two (TLSF's second level),
//!   so the sizes in one class differ by less than 12.5%. A request looks for
//!   the best fit among the first [`BEST_FIT_SCAN`] blocks of its own class.
//! - Otherwise the first non-empty larger class (found with the bitmap) gives
//!   a block that certainly fits; the caller splits off the rest.
//!
//! Lists are doubly linked through the free blocks themselves (LIFO), so
//! removing a block that is being coalesced is O(1). A head's previous link
//! is stale rather than null (see `set_head`).

use crate::block::{Block, GRANULE};

/// Blocks below this size have exact size classes.
pub(crate) const SMALL_LIMIT: usize = 1024;
const SMALL_CLASSES: usize = SMALL_LIMIT / GRANULE;
const SMALL_SHIFT: u32 = SMALL_LIMIT.trailing_zeros();
/// log2 of the classes per power of two above `SMALL_LIMIT`.
const SUB_BITS: u32 = 3;
const CLASSES: usize = SMALL_CLASSES + (((usize::BITS - SMALL_SHIFT) as usize) << SUB_BITS);
const WORDS: usize = CLASSES.div_ceil(64);
/// How many blocks of its own class a large request looks at for a best fit.
pub(crate) const BEST_FIT_SCAN: usize = 32;

/// The size class of a block of `size` bytes (a multiple of 16).
#[inline(always)]
fn class_of(size: usize) -> usize {
    if size < SMALL_LIMIT {
        size / GRANULE
    } else {
        let log = usize::BITS - 1 - size.leading_zeros();
        let sub = (size >> (log - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        SMALL_CLASSES + (((log - SMALL_SHIFT) as usize) << SUB_BITS) + sub
    }
}

/// The heads of the free lists and the bitmap of non-empty lists.
pub(crate) struct FreeLists {
    heads: [Option<Block>; CLASSES],
    nonempty: [u64; WORDS],
}

impl FreeLists {
    /// Empty lists.
    pub(crate) fn new() -> FreeLists {
        FreeLists {
            heads: [None; CLASSES],
            nonempty: [0; WORDS],
        }
    }

    /// Adds a free block of `size` bytes to the list of its class.
    ///
    /// # Safety
    /// `block` must be a free block of `size` bytes of a live pool, in no
    /// list, under the lock.
    #[inline(always)]
    pub(crate) unsafe fn insert(&mut self, block: Block, size: usize) {
        // SAFETY: forwarded to the caller; `head` is a free block in a list.
        unsafe {
            let class = class_of(size);
            let head = self.heads[class];
            block.set_next_free(head);
            match head {
                Some(head) => head.set_prev_free_link(Some(block)),
                None => self.nonempty[class / 64] |= 1 << (class % 64),
            }
            self.heads[class] = Some(block);
        }
    }

    /// Takes `block`, a free block of `size` bytes, out of its list.
    ///
    /// # Safety
    /// `block` must be a free block of `size` bytes in one of these lists,
    /// under the lock.
    #[inline(always)]
    pub(crate) unsafe fn remove(&mut self, block: Block, size: usize) {
        // SAFETY: forwarded to the caller; its neighbours are in the same list.
        unsafe {
            let class = class_of(size);
            let next = block.next_free();
            if self.heads[class] == Some(block) {
                self.set_head(class, next);
                return;
            }
            // Not the head, so its previous link is valid (only a head's is stale).
            let prev = block
                .prev_free()
                .expect("a block after the head has a predecessor");
            prev.set_next_free(next);
            if let Some(next) = next {
                next.set_prev_free_link(Some(prev));
            }
        }
    }

    /// Takes out a free block of at least `size` bytes (a multiple of 16), if any.
    ///
    /// # Safety
    /// Every block in the lists must be a free block of a live pool; under the lock.
    #[inline(always)]
    pub(crate) unsafe fn take(&mut self, size: usize) -> Option<Block> {
        let class = class_of(size);
        if let Some(head) = self.heads[class] {
            if size < SMALL_LIMIT {
                // SAFETY: `head` heads its list; an exact class always fits.
                self.set_head(class, unsafe { head.next_free() });
                return Some(head);
            }
            // SAFETY: forwarded to the caller.
            if let Some((block, block_size)) = unsafe { self.best_fit(head, size) } {
                // SAFETY: `block` is in a list.
                unsafe { self.remove(block, block_size) };
                return Some(block);
            }
        }
        let class = self.first_nonempty_after(class)?;
        let head = self.heads[class].expect("the bitmap marks this class non-empty");
        // SAFETY: `head` heads its list; every class above `size`'s fits it.
        self.set_head(class, unsafe { head.next_free() });
        Some(head)
    }

    /// Takes out a free block of exactly `size` bytes, if any (a full scan of
    /// its class: for rare callers only).
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    pub(crate) unsafe fn take_exact(&mut self, size: usize) -> Option<Block> {
        let mut cur = self.heads[class_of(size)];
        while let Some(block) = cur {
            // SAFETY: blocks in the lists are free blocks with valid links.
            unsafe {
                if block.size() == size {
                    self.remove(block, size);
                    return Some(block);
                }
                cur = block.next_free();
            }
        }
        None
    }

    /// The number of listed blocks (a full walk: for the allocator's tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.heads
            .iter()
            // SAFETY: listed blocks are free blocks with valid links.
            .map(|&head| std::iter::successors(head, |b| unsafe { b.next_free() }).count())
            .sum()
    }

    /// The smallest block of at least `size` bytes among the first
    /// `BEST_FIT_SCAN` of the list starting at `head`, and its size.
    ///
    /// # Safety
    /// `head` must head one of these lists, whose blocks are free blocks of
    /// live pools; under the lock.
    #[inline(never)]
    unsafe fn best_fit(&self, head: Block, size: usize) -> Option<(Block, usize)> {
        let mut best: Option<(Block, usize)> = None;
        let mut cur = Some(head);
        for _ in 0..BEST_FIT_SCAN {
            let Some(block) = cur else { break };
            // SAFETY: blocks in the lists are free blocks with valid links.
            let (bs, next) = unsafe { (block.size(), block.next_free()) };
            if bs == size {
                return Some((block, bs));
            }
            if bs > size && best.is_none_or(|(_, b)| bs < b) {
                best = Some((block, bs));
            }
            cur = next;
        }
        best
    }

    /// Makes `next` the head of `class`'s list (after its old head left).
    /// The new head's previous link is left stale: a head is recognised by
    /// comparing with `heads`, which saves a write to another cache line.
    #[inline(always)]
    fn set_head(&mut self, class: usize, next: Option<Block>) {
        self.heads[class] = next;
        if next.is_none() {
            self.nonempty[class / 64] &= !(1 << (class % 64));
        }
    }

    /// The first non-empty class above `class`.
    #[inline(always)]
    fn first_nonempty_after(&self, class: usize) -> Option<usize> {
        let start = class + 1;
        let mut word = start / 64;
        if word >= WORDS {
            return None;
        }
        let mut bits = self.nonempty[word] & (!0u64 << (start % 64));
        loop {
            if bits != 0 {
                return Some(word * 64 + bits.trailing_zeros() as usize);
            }
            word += 1;
            if word == WORDS {
                return None;
            }
            bits = self.nonempty[word];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ptr::NonNull;

    use super::*;
    use crate::block::HEADER;

    #[test]
    fn classes_are_monotonic_exact_when_small_and_bounded() {
        let mut last = 0;
        for size in (32..1 << 22).step_by(GRANULE) {
            let class = class_of(size);
            assert!(class >= last, "class of {size} went down");
            last = class;
            if size < SMALL_LIMIT {
                assert_eq!(class, size / GRANULE);
            }
        }
        assert!(class_of(usize::MAX & !(GRANULE - 1)) < CLASSES);
        // Eight classes per power of two above the small limit.
        assert_eq!(class_of(2048) - class_of(1024), 8);
    }

    /// A 16-aligned buffer in which to lay out free blocks by hand.
    #[repr(align(16))]
    struct Arena([u8; 16384]);

    fn free_block(arena: &mut Arena, offset: usize, size: usize) -> Block {
        let base = NonNull::new(arena.0.as_mut_ptr()).unwrap();
        // SAFETY: the block lies inside the arena.
        unsafe {
            let block = Block::at(base.add(offset + HEADER));
            block.set_free(size);
            block
        }
    }

    #[test]
    fn take_prefers_exact_then_best_fit_then_larger_classes() {
        let mut arena = Arena([0; 16384]);
        let mut lists = FreeLists::new();
        let small = free_block(&mut arena, 0, 64);
        let a = free_block(&mut arena, 64, 1280);
        let b = free_block(&mut arena, 64 + 1280, 1392);
        let c = free_block(&mut arena, 64 + 1280 + 1392, 1312);
        let huge = free_block(&mut arena, 8192, 4096);
        assert_eq!(class_of(1280), class_of(1392));
        assert_eq!(class_of(1280), class_of(1312));
        // SAFETY: all blocks are free blocks inside the arena.
        unsafe {
            for block in [small, huge, c, a, b] {
                lists.insert(block, block.size());
            }
            // The class of 1280..1408 now lists b (1392), a (1280), c (1312).
            assert_eq!(lists.take(64), Some(small), "exact class");
            assert_eq!(
                lists.take(1296),
                Some(c),
                "best fit within the class, not its head"
            );
            assert_eq!(
                lists.take(48),
                Some(b),
                "no small block left: head of the next non-empty class"
            );
            assert_eq!(lists.take(1280), Some(a), "exact fit in a large class");
            assert_eq!(
                lists.take(1296),
                Some(huge),
                "own class empty: the next non-empty class"
            );
            assert_eq!(lists.take(32), None);
            assert_eq!(lists.nonempty, [0; WORDS]);
        }
    }

    #[test]
    fn remove_from_the_middle_keeps_the_list_linked() {
        let mut arena = Arena([0; 16384]);
        let mut lists = FreeLists::new();
        let blocks: Vec<Block> = (0..3)
            .map(|i| free_block(&mut arena, i * 128, 96))
            .collect();
        // SAFETY: all blocks are free blocks inside the arena.
        unsafe {
            for &b in &blocks {
                lists.insert(b, b.size());
            }
            lists.remove(blocks[1], 96);
            assert_eq!(lists.take(96), Some(blocks[2]));
            assert_eq!(lists.take(96), Some(blocks[0]));
            assert_eq!(lists.take(96), None);
            let odd = free_block(&mut arena, 1024, 1296);
            lists.insert(blocks[0], 96);
            lists.insert(blocks[2], 96);
            lists.insert(odd, 1296);
            assert_eq!(lists.take_exact(96), Some(blocks[2]));
            assert_eq!(
                lists.take_exact(1280),
                None,
                "same class, but no block of exactly that size"
            );
            assert_eq!(lists.take_exact(1296), Some(odd));
            assert_eq!(lists.take(32), Some(blocks[0]));
            assert_eq!(lists.nonempty, [0; WORDS]);
        }
    }
}
