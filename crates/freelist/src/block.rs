//! The boundary-tag format of blocks, and of the pools that hold them.
//!
//! A pool of the free-list allocator is laid out like this (offsets for any
//! pool size; `P` is the pool size):
//!
//! ```text
//! 0                 24                                        P-8      P
//! | pool links and  | block | block | ... | block             | end tag |
//! | live-block count|                                         | (size 0)|
//! ```
//!
//! Every block starts with an 8-byte header at an address that is 8 modulo 16,
//! so every payload (header + 8) is 16-aligned, and every block size is a
//! multiple of 16. The header holds the block size and three flags:
//!
//! - [`ALLOCATED`]: the block is occupied: live, or parked in a quick list;
//! - [`QUICK`]: the (occupied) block is parked in a quick list (see
//!   `quick.rs`): free for its user, for `walk`, `sweep` and the statistics,
//!   but neither listed nor coalesced, so its neighbours treat it as live;
//! - [`PREV_FREE`]: the block just before this one is free, so the word just
//!   before this header is that block's footer (its size).
//!
//! A free block also holds, after its header, the two links of its free list
//! and, in its last word, a footer repeating its size. A live block has no
//! footer: its whole size but the header is usable, which keeps the overhead
//! of a live block at one word ([`HEADER`]).
//!
//! Invariant: no two free blocks are adjacent (freeing coalesces), so a free
//! block's own `PREV_FREE` flag is always clear. ("Free" in this module means
//! free in the boundary-tag sense: not occupied, footer written, listed.)
//!
//! Headers are read and written as relaxed atomics: a live block's header may
//! have its `PREV_FREE` flag changed (under the allocator's lock) while another
//! thread reads its size without the lock (`usable_size`). Links and footers
//! are only touched under the lock and are plain memory.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes of the header in front of every payload.
pub(crate) const HEADER: usize = 8;
/// Block sizes are multiples of this, and payloads are aligned to it.
pub(crate) const GRANULE: usize = 16;
/// The smallest block: header, two free-list links and a footer.
pub(crate) const MIN_BLOCK: usize = 32;
/// Header flag: the block is occupied (live or parked in a quick list).
const ALLOCATED: usize = 1;
/// Header flag: the block before this one is free (and ends in a footer).
const PREV_FREE: usize = 2;
/// Header flag: the occupied block is parked in a quick list, not live.
const QUICK: usize = 4;
/// The header bits that are flags rather than size.
const FLAGS: usize = GRANULE - 1;

/// Offset of the first block's header inside a pool (after the pool links,
/// which fill the room up to the first 16-aligned payload exactly).
pub(crate) const FIRST_BLOCK: usize = 24;
/// Bytes a pool spends on anything but blocks: its links, padding and end tag.
pub(crate) const POOL_OVERHEAD: usize = FIRST_BLOCK + HEADER;

/// The block size that serves a request of `size` bytes.
#[inline(always)]
pub(crate) const fn block_size_for(size: usize) -> usize {
    // `Layout` sizes are at most `isize::MAX`, so this cannot overflow.
    let bs = (size + HEADER + GRANULE - 1) & !(GRANULE - 1);
    if bs < MIN_BLOCK { MIN_BLOCK } else { bs }
}

/// A header word: a block's size and flags, read once and used many times
/// (header loads are atomic, so the compiler would not merge repeated ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tags(usize);

impl Tags {
    /// The size of the block in bytes, header included (0 for the end tag).
    #[inline(always)]
    pub(crate) fn size(self) -> usize {
        self.0 & !FLAGS
    }

    /// Whether the block is occupied, live or parked in a quick list (the
    /// end tag counts as occupied): whether it is *not* a free block that
    /// its neighbours may merge with.
    #[inline(always)]
    pub(crate) fn is_allocated(self) -> bool {
        self.0 & ALLOCATED != 0
    }

    /// Whether the block is live: occupied and not parked in a quick list.
    #[inline(always)]
    pub(crate) fn is_live(self) -> bool {
        self.0 & (ALLOCATED | QUICK) == ALLOCATED
    }

    /// The same tags with the `QUICK` flag set or cleared.
    #[inline(always)]
    pub(crate) fn with_quick(self, quick: bool) -> Tags {
        Tags(if quick {
            self.0 | QUICK
        } else {
            self.0 & !QUICK
        })
    }

    /// Whether the block just before this one is free.
    #[inline(always)]
    pub(crate) fn prev_is_free(self) -> bool {
        self.0 & PREV_FREE != 0
    }

    /// The same tags with the `PREV_FREE` flag set or cleared.
    #[inline(always)]
    pub(crate) fn with_prev_free(self, prev_free: bool) -> Tags {
        Tags(if prev_free {
            self.0 | PREV_FREE
        } else {
            self.0 & !PREV_FREE
        })
    }
}

/// A block, named by the address of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block(NonNull<u8>);

impl Block {
    /// The block whose payload starts at `payload`.
    ///
    /// # Safety
    /// `payload` must be the payload of a block (so the header lies just before it).
    #[inline(always)]
    pub(crate) unsafe fn from_payload(payload: NonNull<u8>) -> Block {
        // SAFETY: the caller promises a header lies `HEADER` bytes before.
        Block(unsafe { payload.sub(HEADER) })
    }

    /// The block whose header is at `at`.
    #[inline(always)]
    pub(crate) fn at(at: NonNull<u8>) -> Block {
        Block(at)
    }

    /// The address of the header.
    #[inline(always)]
    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The first byte handed to the user.
    #[inline(always)]
    pub(crate) fn payload(self) -> NonNull<u8> {
        // SAFETY: every block is at least `MIN_BLOCK` bytes, so the payload
        // lies inside it (and inside its pool).
        unsafe { self.0.add(HEADER) }
    }

    /// The links at the start of the pool holding this block.
    ///
    /// # Safety
    /// `self` must be a block (or the end tag) of a pool whose size is a
    /// power of two, `offset_mask + 1`, and which is aligned to its size.
    #[inline(always)]
    pub(crate) unsafe fn pool_links(self, offset_mask: usize) -> NonNull<PoolLinks> {
        // SAFETY: the block lies `addr % pool_size` bytes into its pool.
        unsafe { self.0.byte_sub(self.addr() & offset_mask).cast() }
    }

    /// The block `bytes` after this one.
    ///
    /// # Safety
    /// The result must lie inside the same pool.
    #[inline(always)]
    pub(crate) unsafe fn offset(self, bytes: usize) -> Block {
        // SAFETY: the caller keeps the result inside the pool.
        Block(unsafe { self.0.add(bytes) })
    }

    /// The header as an atomic.
    ///
    /// # Safety
    /// `self` must be a block (or the end tag) of a live pool.
    #[inline(always)]
    unsafe fn header_word(&self) -> &AtomicUsize {
        // SAFETY: the caller promises `self` is a block of a live pool; its
        // header is 8-aligned (8 modulo 16) and only ever accessed atomically
        // while other threads may look at it.
        unsafe { self.0.cast::<AtomicUsize>().as_ref() }
    }

    /// The header: size and flags.
    ///
    /// # Safety
    /// `self` must be a block (or the end tag) of a live pool.
    #[inline(always)]
    pub(crate) unsafe fn tags(self) -> Tags {
        // SAFETY: forwarded to the caller.
        Tags(unsafe { self.header_word() }.load(Relaxed))
    }

    /// Overwrites the header.
    ///
    /// # Safety
    /// `self` must be a block (or the end tag) of a live pool, owned by the
    /// caller under the lock.
    #[inline(always)]
    pub(crate) unsafe fn set_tags(self, tags: Tags) {
        // SAFETY: forwarded to the caller.
        unsafe { self.header_word() }.store(tags.0, Relaxed)
    }

    /// The size of the block in bytes, header included (0 for the end tag).
    ///
    /// # Safety
    /// `self` must be a block (or the end tag) of a live pool.
    #[inline(always)]
    pub(crate) unsafe fn size(self) -> usize {
        // SAFETY: forwarded to the caller.
        unsafe { self.tags() }.size()
    }

    /// Whether the block is live (not free, not parked in a quick list).
    ///
    /// # Safety
    /// `self` must be a block of a live pool.
    #[inline(always)]
    pub(crate) unsafe fn is_live(self) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { self.tags() }.is_live()
    }

    /// The block just after this one (the end tag after the last block).
    ///
    /// # Safety
    /// `self` must be a block of a live pool (not the end tag).
    #[inline(always)]
    pub(crate) unsafe fn next(self) -> Block {
        // SAFETY: blocks tile the pool up to the end tag.
        unsafe { self.offset(self.size()) }
    }

    /// The free block just before this one, found through its footer.
    ///
    /// # Safety
    /// `self` must be a block of a live pool whose `PREV_FREE` flag is set.
    #[inline(always)]
    pub(crate) unsafe fn prev(self) -> Block {
        // SAFETY: the previous block is free, so the word before our header
        // is its footer, and it starts that many bytes before us.
        unsafe {
            let size = self.0.sub(HEADER).cast::<usize>().read();
            Block(self.0.sub(size))
        }
    }

    /// Marks the block live with the given size and `PREV_FREE` flag.
    ///
    /// # Safety
    /// `self` must be a block of a live pool, owned by the caller under the lock.
    #[inline(always)]
    pub(crate) unsafe fn set_allocated(self, size: usize, prev_free: bool) {
        // SAFETY: forwarded to the caller.
        unsafe { self.set_tags(Tags(size | ALLOCATED).with_prev_free(prev_free)) }
    }

    /// Writes a free block of `size` bytes here: header (previous block live)
    /// and footer. Does not touch the next block's `PREV_FREE` flag.
    ///
    /// # Safety
    /// `[self, self + size)` must lie in a live pool and belong to the caller.
    #[inline(always)]
    pub(crate) unsafe fn set_free(self, size: usize) {
        // SAFETY: forwarded to the caller; the footer is the block's last word.
        unsafe {
            self.set_tags(Tags(size));
            self.0.add(size - HEADER).cast::<usize>().write(size);
        }
    }

    /// Writes the end tag of a pool: a live block of size 0.
    ///
    /// # Safety
    /// `self` must be the last word of a pool owned by the caller.
    pub(crate) unsafe fn set_end_tag(self, prev_free: bool) {
        // SAFETY: forwarded to the caller.
        unsafe { self.set_allocated(0, prev_free) }
    }

    /// Sets or clears the `PREV_FREE` flag.
    ///
    /// # Safety
    /// `self` must be a block (or the end tag) of a live pool, under the lock.
    #[inline(always)]
    pub(crate) unsafe fn set_prev_free(self, prev_free: bool) {
        // SAFETY: forwarded to the caller.
        unsafe { self.set_tags(self.tags().with_prev_free(prev_free)) }
    }

    #[inline(always)]
    fn link_slot(self, which: usize) -> *mut Option<Block> {
        // The links lie right after the header, inside every free block.
        self.0.as_ptr().wrapping_add(HEADER + which * HEADER).cast()
    }

    /// The next block in this block's free list.
    ///
    /// # Safety
    /// `self` must be a free block (its links initialised), under the lock.
    #[inline(always)]
    pub(crate) unsafe fn next_free(self) -> Option<Block> {
        // SAFETY: free blocks hold their links after the header.
        unsafe { self.link_slot(0).read() }
    }

    /// The previous block in this block's free list.
    ///
    /// # Safety
    /// As for [`next_free`](Self::next_free).
    #[inline(always)]
    pub(crate) unsafe fn prev_free(self) -> Option<Block> {
        // SAFETY: as for `next_free`.
        unsafe { self.link_slot(1).read() }
    }

    /// Sets the next free-list link.
    ///
    /// # Safety
    /// `self` must be a free block (at least `MIN_BLOCK` bytes), under the lock.
    #[inline(always)]
    pub(crate) unsafe fn set_next_free(self, next: Option<Block>) {
        // SAFETY: as for `next_free`.
        unsafe { self.link_slot(0).write(next) }
    }

    /// Sets the previous free-list link.
    ///
    /// # Safety
    /// As for [`set_next_free`](Self::set_next_free).
    #[inline(always)]
    pub(crate) unsafe fn set_prev_free_link(self, prev: Option<Block>) {
        // SAFETY: as for `next_free`.
        unsafe { self.link_slot(1).write(prev) }
    }
}

/// The links at the start of every pool: the allocator's pools form a
/// doubly-linked list through them. Each also counts its pool's live blocks
/// (parked ones excluded), so that the allocator knows when a pool may have
/// become empty although quick lists still hold some of its blocks.
#[repr(C)]
pub(crate) struct PoolLinks {
    pub(crate) next: Option<NonNull<PoolLinks>>,
    pub(crate) prev: Option<NonNull<PoolLinks>>,
    pub(crate) live: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_round_to_granules_with_a_minimum() {
        assert_eq!(block_size_for(0), MIN_BLOCK);
        assert_eq!(block_size_for(24), MIN_BLOCK);
        assert_eq!(block_size_for(25), 48);
        assert_eq!(block_size_for(256), 272);
        assert_eq!(FIRST_BLOCK % GRANULE, HEADER, "payloads must be 16-aligned");
        assert!(size_of::<PoolLinks>() <= FIRST_BLOCK);
    }

    #[test]
    fn headers_footers_and_links_round_trip() {
        #[repr(align(16))]
        struct Buf([u8; 256]);
        let mut buf = Buf([0; 256]);
        let base = NonNull::new(buf.0.as_mut_ptr()).unwrap();
        // SAFETY: every block below lies inside `buf`, which we own.
        unsafe {
            let a = Block::at(base.add(8));
            let b = a.offset(64);
            a.set_free(64);
            b.set_allocated(96, false);
            b.set_prev_free(true);
            assert!(!a.is_live() && !a.tags().is_allocated() && a.size() == 64);
            assert!(b.is_live() && b.tags().prev_is_free() && b.size() == 96);
            assert_eq!(b.prev(), a);
            assert_eq!(a.next(), b);
            a.set_next_free(Some(b));
            a.set_prev_free_link(None);
            assert_eq!(a.next_free(), Some(b));
            assert_eq!(a.prev_free(), None);
            b.set_allocated(112, true);
            assert!(b.tags().prev_is_free() && b.size() == 112);
            b.set_prev_free(false);
            assert_eq!(b.tags(), Tags(112 | ALLOCATED));
            b.set_tags(b.tags().with_quick(true));
            let parked = b.tags();
            assert!(!parked.is_live() && parked.is_allocated() && parked.size() == 112);
            b.set_prev_free(true);
            assert_eq!(
                b.tags().with_quick(false),
                Tags(112 | ALLOCATED).with_prev_free(true),
                "parking keeps the size and the neighbour's flag"
            );
            assert_eq!(Block::from_payload(b.payload()), b);
            assert_eq!(b.payload().as_ptr() as usize % GRANULE, 0);
        }
    }
}
