//! The free-list allocator: pools cut into boundary-tagged blocks, segregated
//! free lists, coalescing with both neighbours on free, and quick lists that
//! defer the coalescing of small blocks.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::{AllocError, PoolManager, SpaceType, align_up};

use crate::Swept;
use crate::block::{
    Block, FIRST_BLOCK, GRANULE, HEADER, MIN_BLOCK, POOL_OVERHEAD, PoolLinks, Tags, block_size_for,
};
use crate::buckets::FreeLists;
use crate::lock::Lock;
use crate::owned::OwnedPools;
use crate::quick::{QUICK_LIMIT, QuickLists};
use crate::stats::{MAX_COUNTED_BLOCK, PendingStats};

/// A non-moving allocator of individually freed blocks of any size up to
/// about a pool, for tenured and non-moving objects and medium-sized runtime
/// data.
///
/// - **Blocks** carry an 8-byte header ([`HEADER_BYTES`](Self::HEADER_BYTES))
///   with boundary tags; payloads are 16-aligned ([`ALIGN`](Self::ALIGN)),
///   larger alignments (up to what fits a pool) are served by splitting off a
///   free block in front.
/// - **Free** of a small block (a block of up to 512 bytes, so requests up
///   to 504) *parks* it on the quick list of its exact size, from which the
///   next allocation of that size pops it, without touching its neighbours
///   (deferred coalescing, like glibc's tcache; see `quick.rs`): on the
///   benchmarks' churn workload this takes a free and allocation pair from
///   about 1.0x to about 0.6x the time of glibc's `malloc`. Any other free
///   (a large block, a full quick list, or a block right after a free one)
///   coalesces with the free neighbours on both sides, so no two free blocks
///   are ever adjacent. Quick lists hold at most 32 blocks per size and are
///   flushed (their blocks freed for real) when the free lists cannot serve
///   a request, before a new pool is taken, on [`sweep`](Self::sweep) and
///   [`trim`](Self::trim), and when a pool's last live block is freed.
///   Parked blocks are free for every observer: [`walk`](Self::walk) and
///   `sweep` skip them, `MemStats` counts them freed, and freeing one again
///   is a double free.
/// - **Size classes**: exact classes below 1 KiB (O(1) pop), eight classes
///   per power of two above, a bitmap to find the next non-empty class.
/// - **Pools** (one `PoolManager` pool slot each) are taken on demand; a pool
///   that becomes entirely free is given back, except that one such empty
///   pool is kept to avoid taking and giving back a pool on every
///   allocation at a boundary ([`trim`](Self::trim) gives it back too).
/// - **Too large**: a request that does not fit a pool (see
///   [`max_size`](Self::max_size)) is an [`AllocError::BadLayout`] naming its
///   size; route such requests to the [`LargeObjectAllocator`](crate::large::LargeObjectAllocator).
/// - **Zero-sized** requests get the smallest block (24 usable bytes), so
///   every pointer is unique and can be freed.
/// - **Statistics**: live objects are counted in `MemStats` by their usable
///   size ([`usable_size`](Self::usable_size)), allocations and frees alike,
///   batched (see [`flush_stats`](Self::flush_stats)); the ownership bitmap
///   and the free-list table are reported as metadata.
/// - **Threads**: one lock around the heap, taken with a single atomic swap,
///   or with plain loads and stores while the process has a single thread
///   (see `lock.rs`); `contains` and `usable_size` take no lock.
///
/// ```
/// use std::alloc::Layout;
/// use std::sync::Arc;
/// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
/// use rtmem_freelist::FreeListAllocator;
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let heap = FreeListAllocator::new(pools.clone(), SpaceType::NonMoving);
/// let a = heap.alloc(Layout::from_size_align(100, 8).unwrap()).unwrap();
/// let b = heap.alloc(Layout::from_size_align(4000, 4096).unwrap()).unwrap();
/// assert_eq!(b.as_ptr() as usize % 4096, 0);
/// assert!(heap.contains(a.as_ptr() as usize));
/// // SAFETY: `a` came from `heap.alloc` and is live.
/// unsafe { heap.free(a) };
/// let swept = heap.sweep(|_, _| false); // everything left is dead
/// assert_eq!(swept.objects, 1);
/// heap.flush_stats();
/// assert_eq!(pools.stats().space(SpaceType::NonMoving).live_bytes(), 0);
/// ```
pub struct FreeListAllocator {
    pools: Arc<PoolManager>,
    space: SpaceType,
    owned: OwnedPools,
    /// The size of the single free block of an empty pool.
    whole: usize,
    /// The pool size minus one: pools are aligned to their size.
    pool_mask: usize,
    heap: Lock<Heap>,
}

/// Everything that changes, under the lock.
struct Heap {
    lists: FreeLists,
    /// Freed small blocks, parked uncoalesced.
    quick: QuickLists,
    /// The pools, linked through their first bytes.
    first_pool: Option<NonNull<PoolLinks>>,
    pool_count: usize,
    /// Whether one entirely free pool is kept (its whole block is in the lists).
    kept_empty: bool,
    pending: PendingStats,
}

// SAFETY: the pointers in `Heap` point into pools owned by the allocator; they
// carry no thread affinity and are only used under the allocator's lock.
unsafe impl Send for Heap {}

impl FreeListAllocator {
    /// Bytes of overhead of every live block: one header word.
    pub const HEADER_BYTES: usize = HEADER;

    /// Every payload is aligned to at least this many bytes.
    pub const ALIGN: usize = GRANULE;

    /// A free-list allocator taking its pools from `pools` for `space`. Takes
    /// no pool until the first allocation.
    ///
    /// # Panics
    /// If the `PoolManager`'s pool size exceeds 64 GiB (the batched
    /// statistics count at most that per block).
    pub fn new(pools: Arc<PoolManager>, space: SpaceType) -> FreeListAllocator {
        assert!(
            pools.pool_size() <= MAX_COUNTED_BLOCK,
            "free-list pools of {} bytes are larger than the 64 GiB supported",
            pools.pool_size()
        );
        let owned = OwnedPools::new(&pools);
        pools
            .stats()
            .record_metadata(space, Self::metadata_bytes(&owned));
        FreeListAllocator {
            whole: pools.pool_size() - POOL_OVERHEAD,
            pool_mask: pools.pool_size() - 1,
            pools,
            space,
            owned,
            heap: Lock::new(Heap {
                lists: FreeLists::new(),
                quick: QuickLists::new(),
                first_pool: None,
                pool_count: 0,
                kept_empty: false,
                pending: PendingStats::default(),
            }),
        }
    }

    fn metadata_bytes(owned: &OwnedPools) -> usize {
        owned.metadata_bytes() + size_of::<Heap>()
    }

    /// The space this allocator's pools belong to.
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// The largest size served for alignments up to [`ALIGN`](Self::ALIGN):
    /// a pool's size minus 40 bytes. A larger alignment `a` needs `a + 16`
    /// bytes more room than its size.
    pub fn max_size(&self) -> usize {
        self.whole - HEADER
    }

    /// Allocates a block for `layout`; its usable size may be larger.
    ///
    /// Errors: [`AllocError::BadLayout`] if the request does not fit a pool;
    /// the `PoolManager`'s [`AllocError::LimitExceeded`] or
    /// [`AllocError::OutOfMemory`] (naming the space) if a new pool is needed
    /// and cannot be had.
    #[inline(always)]
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let size = block_size_for(layout.size());
        if layout.align() > GRANULE || size > self.whole {
            return self.alloc_unusual(layout);
        }
        let mut heap = self.heap.lock();
        if size <= QUICK_LIMIT {
            // SAFETY: the lock is held; parked blocks lie in our pools.
            if let Some(block) = unsafe { heap.quick.pop(size) } {
                // SAFETY: a parked block of `size` bytes, no longer listed.
                return Ok(unsafe { self.unpark(&mut heap, block, size) });
            }
        }
        // SAFETY: the lock is held; the lists hold free blocks of our pools.
        let (block, tags) = match unsafe { self.take(&mut heap, size) } {
            Some(taken) => taken,
            None => self.flush_or_grow_and_take(&mut heap, size)?,
        };
        // SAFETY: `block` is a free block of at least `size` bytes, in no list.
        Ok(unsafe { self.use_block(&mut heap, block, tags, size) })
    }

    /// Frees the block at `ptr`: parks it on its quick list if it is small
    /// and the list has room, and otherwise coalesces it with its free
    /// neighbours.
    ///
    /// # Safety
    /// `ptr` must have come from this allocator's [`alloc`](Self::alloc) and
    /// be live. In debug builds a double free or a foreign or interior
    /// pointer panics with a message naming the address and the allocator's
    /// space (found by walking the block's pool).
    #[inline(always)]
    pub unsafe fn free(&self, ptr: NonNull<u8>) {
        let mut heap = self.heap.lock();
        if cfg!(debug_assertions) {
            self.check_live(ptr);
        }
        // SAFETY: the caller promises `ptr` is a live block of ours, so its
        // pool is live and counts it; the lock is held.
        unsafe {
            let block = Block::from_payload(ptr);
            let tags = block.tags();
            let size = tags.size();
            self.count_free(&mut heap, size - HEADER);
            let live = &mut (*block.pool_links(self.pool_mask).as_ptr()).live;
            *live -= 1;
            if *live == 0 {
                self.free_last_in_pool(&mut heap, block);
            } else if tags.prev_is_free() || !heap.quick.push(block, size) {
                // A free block just before would grow by merging (and
                // merging with it costs no search): coalesce now.
                self.free_block(&mut heap, block, tags);
            } else {
                block.set_tags(tags.with_quick(true));
            }
        }
    }

    /// The usable size of the live block at `ptr` (at least what was asked for).
    ///
    /// # Safety
    /// `ptr` must have come from this allocator's [`alloc`](Self::alloc) and be live.
    #[inline]
    pub unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        // SAFETY: the caller promises a live block, whose header holds its
        // size; headers are read atomically (only its flags may change).
        unsafe {
            let block = Block::from_payload(ptr);
            debug_assert!(block.is_live(), "usable_size of the free block at {ptr:p}");
            block.size() - HEADER
        }
    }

    /// Calls `f(payload, usable_size)` for every live block, pool by pool in
    /// address order (blocks parked in quick lists are free, and skipped).
    ///
    /// `f` runs under the allocator's lock: it must not call back into this
    /// allocator (debug builds panic if it does; release builds deadlock).
    pub fn walk(&self, mut f: impl FnMut(NonNull<u8>, usize)) {
        let heap = self.heap.lock();
        let mut pool = heap.first_pool;
        while let Some(links) = pool {
            // SAFETY: `links` heads a pool of ours; the lock keeps it alive and
            // its block structure intact.
            unsafe {
                for block in blocks_of(links).filter(|b| b.is_live()) {
                    f(block.payload(), block.size() - HEADER);
                }
                pool = links.as_ref().next;
            }
        }
    }

    /// Frees every live block for which `is_live(payload, usable_size)` says
    /// false, in one pass over each pool, coalescing as it goes; gives back
    /// pools that become entirely free (keeping one, as for `free`). Flushes
    /// the quick lists first, so that dead blocks merge with the parked ones.
    ///
    /// `is_live` runs under the allocator's lock: it must not call back into
    /// this allocator. If it panics, the heap stays consistent (the blocks
    /// already judged dead are freed).
    pub fn sweep(&self, mut is_live: impl FnMut(NonNull<u8>, usize) -> bool) -> Swept {
        let mut heap = self.heap.lock();
        // SAFETY: the lock is held.
        unsafe { self.flush_quick(&mut heap) };
        let mut swept = Swept::default();
        let mut pool = heap.first_pool;
        while let Some(links) = pool {
            // SAFETY: `links` heads a pool of ours and the lock is held. The
            // next pool is read before this one may be given back. No block is
            // parked (the lists were just flushed). After each free the walk
            // resumes after the coalesced block, whose end is the start of the
            // next block not yet looked at.
            unsafe {
                pool = links.as_ref().next;
                let mut block = first_block(links);
                loop {
                    let tags = block.tags();
                    let size = tags.size();
                    if size == 0 {
                        break;
                    }
                    if !tags.is_live() || is_live(block.payload(), size - HEADER) {
                        block = block.offset(size);
                        continue;
                    }
                    swept.bytes += size - HEADER;
                    swept.objects += 1;
                    self.count_free(&mut heap, size - HEADER);
                    (*links.as_ptr()).live -= 1;
                    match self.free_block(&mut heap, block, tags) {
                        Some(merged) => block = merged.next(),
                        None => break,
                    }
                }
            }
        }
        heap.pending.flush(self.pools.stats(), self.space);
        tracing::debug!(space = %self.space, bytes = swept.bytes, objects = swept.objects, "free-list sweep");
        swept
    }

    /// Whether `addr` lies in one of this allocator's pools (in a live block,
    /// a free block or pool metadata). Lock-free.
    #[inline]
    pub fn contains(&self, addr: usize) -> bool {
        self.owned.pool_of(&self.pools, self.space, addr).is_some()
    }

    /// The number of pools held, the kept empty pool included.
    pub fn pool_count(&self) -> usize {
        self.heap.lock().pool_count
    }

    /// Flushes the quick lists, then gives the kept empty pool, if any, back
    /// to the `PoolManager`.
    pub fn trim(&self) {
        let mut heap = self.heap.lock();
        // SAFETY: the lock is held.
        unsafe { self.flush_quick(&mut heap) };
        if heap.kept_empty {
            // SAFETY: the lock is held; the kept pool's whole block is in the lists.
            unsafe {
                let block = heap
                    .lists
                    .take_exact(self.whole)
                    .expect("the kept empty pool is listed");
                heap.kept_empty = false;
                self.release_pool(&mut heap, block);
            }
        }
    }

    /// Reports the allocations and frees counted but not yet reported to
    /// `MemStats` (they are reported every few hundred operations anyway).
    pub fn flush_stats(&self) {
        self.heap
            .lock()
            .pending
            .flush(self.pools.stats(), self.space);
    }

    /// Takes a free block of at least `size` bytes out of the lists.
    ///
    /// # Safety
    /// The lock must be held (`heap` comes from it).
    #[inline(always)]
    unsafe fn take(&self, heap: &mut Heap, size: usize) -> Option<(Block, Tags)> {
        // SAFETY: the lists hold free blocks of our live pools.
        let (block, tags) = unsafe {
            let block = heap.lists.take(size)?;
            (block, block.tags())
        };
        if tags.size() == self.whole {
            heap.kept_empty = false;
        }
        Some((block, tags))
    }

    /// When the lists have no block of `size` bytes: flushes the quick lists
    /// and looks again, and failing that, takes a new pool and then a block
    /// from it.
    #[cold]
    #[inline(never)]
    fn flush_or_grow_and_take(
        &self,
        heap: &mut Heap,
        size: usize,
    ) -> Result<(Block, Tags), AllocError> {
        // SAFETY: the lock is held (`heap` comes from it).
        unsafe {
            if self.flush_quick(heap)
                && let Some(taken) = self.take(heap, size)
            {
                return Ok(taken);
            }
        }
        heap.pending.flush(self.pools.stats(), self.space);
        let pool = self.pools.alloc_pool(self.space, self.pools.pool_size())?;
        // SAFETY: the pool is committed and ours; it is laid out as in
        // `block.rs`: links first, one free block, the end tag in the last word.
        unsafe {
            let links = pool.start().cast::<PoolLinks>();
            links.write(PoolLinks {
                next: heap.first_pool,
                prev: None,
                live: 0,
            });
            if let Some(mut first) = heap.first_pool {
                first.as_mut().prev = Some(links);
            }
            heap.first_pool = Some(links);
            let block = first_block(links);
            block.set_free(self.whole);
            block.offset(self.whole).set_end_tag(true);
            heap.lists.insert(block, self.whole);
        }
        heap.kept_empty = true;
        heap.pool_count += 1;
        self.owned.insert(&pool);
        tracing::trace!(space = %self.space, start = pool.start_addr(), pools = heap.pool_count, "free-list pool taken");
        // SAFETY: the lock is held; the new pool's block fits any `size <= whole`.
        Ok(unsafe { self.take(heap, size) }.expect("a new pool fits every servable request"))
    }

    /// Requests with an alignment above 16, and requests too large to serve.
    #[cold]
    #[inline(never)]
    fn alloc_unusual(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let size = block_size_for(layout.size());
        let align = layout.align();
        // Room for the block and a free block in front that aligns it: the
        // gap is at most `align + 16` (see `align_block`).
        let need = if align > GRANULE {
            size.checked_add(align + GRANULE)
        } else {
            Some(size)
        };
        let Some(need) = need.filter(|&n| n <= self.whole) else {
            return Err(AllocError::bad_layout(
                layout.size(),
                align,
                "larger than a free-list pool can hold (use the large-object allocator)",
            ));
        };
        let mut heap = self.heap.lock();
        // SAFETY: the lock is held.
        let (block, tags) = match unsafe { self.take(&mut heap, need) } {
            Some(taken) => taken,
            None => self.flush_or_grow_and_take(&mut heap, need)?,
        };
        // SAFETY: `block` is a free block of at least `need` bytes, in no list.
        unsafe {
            let (block, tags) = self.align_block(&mut heap, block, tags, align);
            Ok(self.use_block(&mut heap, block, tags, size))
        }
    }

    /// Splits a free block off the front of `block` (whose header is `tags`)
    /// so that the rest's payload is `align`-aligned, and returns the rest
    /// (free, in no list) and its header.
    ///
    /// # Safety
    /// `block` must be a free block in no list, of at least `size + align + 16`
    /// bytes for the size it will serve; the lock must be held.
    unsafe fn align_block(
        &self,
        heap: &mut Heap,
        block: Block,
        tags: Tags,
        align: usize,
    ) -> (Block, Tags) {
        let payload = block.payload().as_ptr() as usize;
        let mut gap = align_up(payload, align) - payload;
        if gap != 0 && gap < MIN_BLOCK {
            // Too small to be a free block of its own: move on one alignment.
            gap += align;
        }
        if gap == 0 {
            return (block, tags);
        }
        // SAFETY: the gap (at most `align + 16`) and the rest lie inside
        // `block`; the gap's previous block is live (free blocks never touch),
        // and the rest follows a free block.
        unsafe {
            let have = tags.size();
            block.set_free(gap);
            heap.lists.insert(block, gap);
            let rest = block.offset(gap);
            rest.set_free(have - gap);
            rest.set_prev_free(true);
            (rest, rest.tags())
        }
    }

    /// Marks `block` (whose header is `tags`) live for a request of `size`
    /// bytes, splitting off and listing the rest if it can stand as a free
    /// block.
    ///
    /// # Safety
    /// `block` must be a free block in no list of at least `size` bytes
    /// (a multiple of 16); the lock must be held.
    #[inline(always)]
    unsafe fn use_block(
        &self,
        heap: &mut Heap,
        block: Block,
        tags: Tags,
        size: usize,
    ) -> NonNull<u8> {
        let have = tags.size();
        // SAFETY: forwarded to the caller. A split-off rest is followed by the
        // block that followed `block`, whose `PREV_FREE` flag is already set.
        let used = unsafe {
            if have - size >= MIN_BLOCK {
                let rest = block.offset(size);
                rest.set_free(have - size);
                heap.lists.insert(rest, have - size);
                size
            } else {
                block.offset(have).set_prev_free(false);
                have
            }
        };
        // SAFETY: as above.
        unsafe {
            block.set_allocated(used, tags.prev_is_free());
            self.count_alloc(heap, block, used)
        }
    }

    /// Hands out the block `block` of `size` bytes, just popped off its quick
    /// list.
    ///
    /// # Safety
    /// `block` must be a block of ours that was parked, of `size` bytes; the
    /// lock must be held.
    #[inline(always)]
    unsafe fn unpark(&self, heap: &mut Heap, block: Block, size: usize) -> NonNull<u8> {
        // SAFETY: forwarded to the caller. Its `PREV_FREE` flag may have
        // changed while it was parked: only its `QUICK` flag is cleared.
        unsafe {
            block.set_tags(block.tags().with_quick(false));
            self.count_alloc(heap, block, size)
        }
    }

    /// Counts the block `block` of `used` bytes, just made live, in its
    /// pool's live count and in the statistics; returns its payload.
    ///
    /// # Safety
    /// `block` must be a block of ours; the lock must be held.
    #[inline(always)]
    unsafe fn count_alloc(&self, heap: &mut Heap, block: Block, used: usize) -> NonNull<u8> {
        // SAFETY: forwarded to the caller; pool links are only touched under the lock.
        unsafe { (*block.pool_links(self.pool_mask).as_ptr()).live += 1 };
        if heap.pending.alloc(used - HEADER) {
            heap.pending.flush(self.pools.stats(), self.space);
        }
        block.payload()
    }

    #[inline(always)]
    fn count_free(&self, heap: &mut Heap, usable: usize) {
        if heap.pending.free(usable) {
            heap.pending.flush(self.pools.stats(), self.space);
        }
    }

    /// Frees `block` (whose header is `tags`), coalescing with its free
    /// neighbours, and returns the resulting free block, or `None` if its
    /// pool became empty and was given back.
    ///
    /// # Safety
    /// `block` must be an occupied block of ours (live, or parked and taken
    /// off its quick list), already uncounted; the lock must be held.
    #[inline(always)]
    unsafe fn free_block(&self, heap: &mut Heap, block: Block, tags: Tags) -> Option<Block> {
        // SAFETY: forwarded to the caller; neighbours found through the
        // boundary tags are blocks of the same pool.
        unsafe {
            let mut start = block;
            let mut size = tags.size();
            if tags.prev_is_free() {
                start = block.prev();
                let prev_size = start.size();
                heap.lists.remove(start, prev_size);
                size += prev_size;
            }
            let next = block.offset(tags.size());
            let next_tags = next.tags();
            if !next_tags.is_allocated() {
                heap.lists.remove(next, next_tags.size());
                size += next_tags.size();
            }
            if size == self.whole {
                if heap.kept_empty {
                    self.release_pool(heap, start);
                    return None;
                }
                heap.kept_empty = true;
            }
            start.set_free(size);
            start.offset(size).set_prev_free(true);
            heap.lists.insert(start, size);
            Some(start)
        }
    }

    /// Frees `block`, the last live block of its pool, for real: flushes the
    /// quick lists first, so that the pool can merge back into one block.
    ///
    /// # Safety
    /// As for [`free_block`](Self::free_block).
    #[cold]
    #[inline(never)]
    unsafe fn free_last_in_pool(&self, heap: &mut Heap, block: Block) {
        // SAFETY: forwarded to the caller. The header is read after the
        // flush, which may have freed (and set the flag of) its neighbour.
        unsafe {
            self.flush_quick(heap);
            self.free_block(heap, block, block.tags());
        }
    }

    /// Frees every parked block for real, coalescing; says whether there was any.
    ///
    /// # Safety
    /// The lock must be held (`heap` comes from it).
    #[cold]
    #[inline(never)]
    unsafe fn flush_quick(&self, heap: &mut Heap) -> bool {
        let mut any = false;
        // SAFETY: parked blocks are occupied blocks of our pools, already
        // counted freed; each is off its list (its link read) when freed.
        unsafe {
            for block in heap.quick.take_all() {
                self.free_block(heap, block, block.tags());
                any = true;
            }
        }
        any
    }

    /// Gives back the pool whose whole free block (in no list) is `block`.
    ///
    /// # Safety
    /// `block` must be the first block of one of our pools, spanning all of
    /// it and in no list; the lock must be held.
    #[cold]
    #[inline(never)]
    unsafe fn release_pool(&self, heap: &mut Heap, block: Block) {
        heap.pending.flush(self.pools.stats(), self.space);
        // SAFETY: the pool's links are at its start, `FIRST_BLOCK` bytes before
        // its first block; its neighbours in the list are pools of ours.
        let start = unsafe {
            let links = NonNull::new_unchecked((block.addr() - FIRST_BLOCK) as *mut PoolLinks);
            let PoolLinks { next, prev, live } = links.read();
            debug_assert_eq!(live, 0, "an empty pool counts no live block");
            match prev {
                Some(mut prev) => prev.as_mut().next = next,
                None => heap.first_pool = next,
            }
            if let Some(mut next) = next {
                next.as_mut().prev = prev;
            }
            links.as_ptr() as usize
        };
        let pool = self.pools.pool_of(start).expect("a pool of ours is live");
        self.owned.remove(&pool);
        heap.pool_count -= 1;
        self.pools.free_pool(pool);
        tracing::trace!(space = %self.space, start, pools = heap.pool_count, "free-list pool given back");
    }

    /// Panics unless `ptr` is the payload of a live block of ours (debug
    /// builds; the lock must be held).
    fn check_live(&self, ptr: NonNull<u8>) {
        let addr = ptr.as_ptr() as usize;
        let space = self.space;
        let Some(pool) = self.owned.pool_of(&self.pools, space, addr) else {
            panic!(
                "free of {addr:#x}: a foreign pointer, not in any pool of the free-list allocator of the {space} space"
            );
        };
        let target = addr.wrapping_sub(HEADER);
        // SAFETY: the pool is ours and the lock is held, so its blocks tile it.
        let found = unsafe {
            blocks_of(pool.start().cast())
                .find(|b| target < b.addr() + b.size())
                .filter(|b| b.addr() <= target)
                .map(|b| (b.addr() == target, b.is_live()))
        };
        match found {
            Some((true, true)) => {}
            Some((_, false)) => {
                panic!(
                    "double free of {addr:#x} in the free-list allocator of the {space} space: it lies in free memory"
                )
            }
            _ => panic!(
                "free of {addr:#x}: not the start of a live block of the free-list allocator of the {space} space \
                 (an interior or foreign pointer, or a double free of reused memory)"
            ),
        }
    }
}

/// The first block of the pool whose links are at `links`.
///
/// # Safety
/// `links` must be the start of a pool of ours.
#[inline(always)]
unsafe fn first_block(links: NonNull<PoolLinks>) -> Block {
    // SAFETY: the first block lies `FIRST_BLOCK` bytes into the pool.
    Block::at(unsafe { links.cast::<u8>().add(FIRST_BLOCK) })
}

/// The blocks of the pool whose links are at `links`, in address order.
///
/// # Safety
/// `links` must be the start of a pool of ours, and its blocks must not
/// change while the iterator is used (hold the lock).
unsafe fn blocks_of(links: NonNull<PoolLinks>) -> impl Iterator<Item = Block> {
    // SAFETY: forwarded to the caller.
    let mut block = unsafe { first_block(links) };
    std::iter::from_fn(move || {
        // SAFETY: blocks tile the pool up to the end tag (size 0).
        let size = unsafe { block.size() };
        (size != 0).then(|| {
            let this = block;
            // SAFETY: as above: the next block or the end tag.
            block = unsafe { block.offset(size) };
            this
        })
    })
}

impl Drop for FreeListAllocator {
    /// Gives every pool back; blocks still live are freed with them (and
    /// reported freed in `MemStats`).
    fn drop(&mut self) {
        let (pools, space) = (&self.pools, self.space);
        let heap = self.heap.get_mut();
        heap.pending.flush(pools.stats(), space);
        let (mut bytes, mut objects) = (0, 0);
        let mut next = heap.first_pool;
        while let Some(links) = next {
            // SAFETY: `links` heads a pool of ours, which `&mut self` keeps
            // unchanged; the next pool is read before this one is given back.
            unsafe {
                for block in blocks_of(links).filter(|b| b.is_live()) {
                    bytes += block.size() - HEADER;
                    objects += 1;
                }
                next = links.as_ref().next;
            }
            pools.free_pool(
                pools
                    .pool_of(links.as_ptr() as usize)
                    .expect("a pool of ours is live"),
            );
        }
        if objects > 0 {
            pools.stats().record_free(space, bytes, objects);
        }
        pools
            .stats()
            .release_metadata(space, Self::metadata_bytes(&self.owned));
    }
}

impl fmt::Debug for FreeListAllocator {
    /// Takes no lock, so it may be used inside `walk` and `sweep` callbacks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreeListAllocator")
            .field("space", &self.space)
            .field("pool_size", &self.pools.pool_size())
            .finish_non_exhaustive()
    }
}

// Not under loom: the lock is then loom's, usable only inside a loom model.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use rtmem_base::PoolManagerConfig;

    use super::*;
    use crate::quick::QUICK_DEPTH;
    #[cfg(debug_assertions)]
    use crate::test_support::panic_message;
    use crate::test_support::{addr, layout};

    fn pools() -> Arc<PoolManager> {
        crate::test_support::pools(64 << 20)
    }

    const SPACE: SpaceType = SpaceType::NonMoving;

    /// Checks the heap's invariants: blocks tile every pool, no two free
    /// blocks touch, every `PREV_FREE` flag and footer is right, the free
    /// blocks are exactly those in the lists, the parked ones exactly those in
    /// the quick lists, and every pool counts its live blocks.
    fn check_heap(heap: &FreeListAllocator) {
        let h = heap.heap.lock();
        let (mut free_blocks, mut parked_blocks) = (0, 0);
        let mut pool = h.first_pool;
        while let Some(links) = pool {
            // SAFETY: the lock is held; pools of ours.
            unsafe {
                let mut prev_free = false;
                let mut live_blocks = 0;
                let mut block = first_block(links);
                let end = links
                    .cast::<u8>()
                    .add(heap.pools.pool_size() - HEADER)
                    .as_ptr() as usize;
                while block.addr() != end {
                    let tags = block.tags();
                    let size = tags.size();
                    assert!(
                        size >= MIN_BLOCK && size.is_multiple_of(GRANULE),
                        "block size {size}"
                    );
                    let free = !tags.is_allocated();
                    let at = block.addr();
                    assert!(!(free && prev_free), "two free blocks touch at {at:#x}");
                    assert_eq!(tags.prev_is_free(), prev_free, "PREV_FREE of {at:#x}");
                    if free {
                        assert_eq!(block.next().prev(), block, "the footer of {at:#x}");
                    }
                    free_blocks += free as usize;
                    live_blocks += tags.is_live() as usize;
                    parked_blocks += (!free && !tags.is_live()) as usize;
                    prev_free = free;
                    block = block.next();
                }
                let end_tag = block.tags();
                assert!(end_tag.is_allocated() && end_tag.size() == 0, "the end tag");
                assert_eq!(
                    end_tag.prev_is_free(),
                    prev_free,
                    "PREV_FREE of the end tag"
                );
                assert_eq!(links.as_ref().live, live_blocks, "the pool's live count");
                pool = links.as_ref().next;
            }
        }
        assert_eq!(
            free_blocks,
            h.lists.len(),
            "every free block is listed once"
        );
        assert_eq!(
            parked_blocks,
            h.quick.len(),
            "every parked block is quick-listed once"
        );
    }

    #[test]
    fn invariants_hold_through_churn_with_alignment_and_sweeps() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let mut live: Vec<NonNull<u8>> = Vec::new();
        let mut x = 12345u64;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.len() > 300 || (x.is_multiple_of(3) && !live.is_empty()) {
                let p = live.swap_remove((x >> 8) as usize % live.len());
                // SAFETY: live, freed once.
                unsafe { heap.free(p) };
            } else {
                let align = if x.is_multiple_of(7) {
                    1 << ((x >> 20) % 13)
                } else {
                    8
                };
                live.push(
                    heap.alloc(layout((x >> 32) as usize % 2000, align))
                        .unwrap(),
                );
            }
            if step % 1000 == 0 {
                check_heap(&heap);
            }
        }
        check_heap(&heap);
        let keep = |p: NonNull<u8>| (addr(p) / 16).is_multiple_of(2);
        let dead = live.iter().filter(|&&p| !keep(p)).count();
        let swept = heap.sweep(|p, _| keep(p));
        assert_eq!(swept.objects, dead);
        check_heap(&heap);
        live.retain(|&p| keep(p));
        for p in live {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) };
        }
        check_heap(&heap);
        assert_eq!(heap.pool_count(), 1);
    }

    #[test]
    fn free_coalesces_with_both_neighbours() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        // Too large to be parked: freed for real at once.
        let [a, b, c, guard] = [(); 4].map(|_| heap.alloc(layout(600, 8)).unwrap());
        // SAFETY: all four are live blocks of `heap`.
        let span =
            unsafe { heap.usable_size(a) + heap.usable_size(b) + heap.usable_size(c) } + 2 * HEADER;
        const { assert!(608 > QUICK_LIMIT) };
        assert_eq!(addr(b), addr(a) + 608, "consecutive blocks of a fresh pool");
        // SAFETY: each is live and freed once.
        unsafe {
            heap.free(a);
            heap.free(c);
            heap.free(b); // merges with a (before) and c (after)
        }
        let abc = heap.alloc(layout(span, 8)).unwrap();
        assert_eq!(abc, a, "one free block of a+b+c spans at a's address");
        // SAFETY: live blocks.
        assert_eq!(unsafe { heap.usable_size(abc) }, span);
        // SAFETY: live blocks, freed once.
        unsafe {
            heap.free(guard);
            heap.free(abc);
        }
        assert_eq!(heap.pool_count(), 1);
        let whole = heap.alloc(layout(heap.max_size(), 8)).unwrap();
        assert_eq!(
            addr(whole),
            addr(a),
            "everything merged back into the whole pool"
        );
        // SAFETY: live, freed once.
        unsafe { heap.free(whole) };
    }

    #[test]
    fn small_frees_are_parked_reused_by_their_size_and_flushed_by_trim() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let [a, b, c, guard] = [(); 4].map(|_| heap.alloc(layout(100, 8)).unwrap());
        assert_eq!(addr(b), addr(a) + 112, "consecutive blocks of a fresh pool");
        // SAFETY: live, freed once.
        unsafe { heap.free(b) };
        check_heap(&heap);
        assert_eq!(heap.heap.lock().quick.len(), 1, "b is parked");
        let d = heap.alloc(layout(200, 8)).unwrap();
        assert_ne!(d, b, "a parked block serves its own size only");
        let b2 = heap.alloc(layout(90, 8)).unwrap();
        assert_eq!(
            b2, b,
            "the parked block serves the next request of its size"
        );
        // SAFETY: live, freed once.
        unsafe {
            assert_eq!(heap.usable_size(b2), 104);
            heap.free(a);
            heap.free(b2);
            heap.free(c);
        }
        check_heap(&heap);
        assert_eq!(heap.heap.lock().quick.len(), 3, "a, b and c are parked");
        let span = 3 * 112 - HEADER;
        let abc = heap.alloc(layout(span, 8)).unwrap();
        assert_ne!(abc, a, "parked blocks are not merged");
        // SAFETY: live, freed once.
        unsafe { heap.free(abc) };
        heap.trim();
        check_heap(&heap);
        assert_eq!(heap.heap.lock().quick.len(), 0, "trim flushes");
        let abc = heap.alloc(layout(span, 8)).unwrap();
        assert_eq!(abc, a, "flushing merged a, b and c");
        // SAFETY: live, freed once.
        unsafe {
            heap.free(abc);
            heap.free(d);
            heap.free(guard);
        }
        check_heap(&heap);
    }

    #[test]
    fn quick_lists_are_bounded() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let blocks: Vec<_> = (0..2 * QUICK_DEPTH)
            .map(|_| heap.alloc(layout(40, 8)).unwrap())
            .collect();
        for &p in &blocks[1..] {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) };
        }
        check_heap(&heap);
        assert_eq!(heap.heap.lock().quick.len(), QUICK_DEPTH as usize);
        // SAFETY: live, freed once.
        unsafe { heap.free(blocks[0]) };
        assert_eq!(
            heap.heap.lock().quick.len(),
            0,
            "the pool's last live block flushed them"
        );
        check_heap(&heap);
        heap.alloc(layout(heap.max_size(), 8))
            .expect("the pool merged back into one block");
        assert_eq!(heap.pool_count(), 1);
    }

    #[test]
    fn parked_blocks_are_flushed_before_a_new_pool_is_taken() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        // Fill the pool with 512-byte blocks (the largest parked).
        let mut blocks = Vec::new();
        while blocks.len() < heap.whole / 512 {
            blocks.push(heap.alloc(layout(504, 8)).unwrap());
        }
        assert_eq!(heap.pool_count(), 1);
        // SAFETY: live, freed once.
        unsafe {
            heap.free(blocks[10]);
            heap.free(blocks[11]);
        }
        assert_eq!(heap.heap.lock().quick.len(), 2);
        let p = heap.alloc(layout(1024 - HEADER, 8)).unwrap();
        assert_eq!(p, blocks[10], "the two parked blocks merged to serve it");
        assert_eq!(heap.pool_count(), 1, "without a new pool");
        check_heap(&heap);
    }

    #[test]
    fn walk_sweep_and_stats_treat_parked_blocks_as_free() {
        let pools = pools();
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        let blocks: Vec<_> = (0..100)
            .map(|i| heap.alloc(layout(16 + i % 50, 8)).unwrap())
            .collect();
        let (freed, kept): (Vec<_>, Vec<_>) = blocks
            .iter()
            .partition(|&&p| (addr(p) / 16).is_multiple_of(3));
        for &p in &freed {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) };
        }
        assert!(heap.heap.lock().quick.len() > 0, "some blocks are parked");
        let mut walked = Vec::new();
        heap.walk(|p, _| walked.push(p));
        assert_eq!(walked, kept, "walk skips parked blocks");
        heap.flush_stats();
        assert_eq!(
            pools.stats().space(SPACE).live_objects(),
            kept.len() as u64,
            "parked blocks count as freed"
        );
        let mut judged = Vec::new();
        let swept = heap.sweep(|p, _| {
            judged.push(p);
            false
        });
        assert_eq!(judged, kept, "sweep judges only live blocks");
        assert_eq!(swept.objects, kept.len());
        assert_eq!(heap.heap.lock().quick.len(), 0, "sweep flushes");
        check_heap(&heap);
        heap.flush_stats();
        assert_eq!(pools.stats().space(SPACE).live_bytes(), 0);
        heap.alloc(layout(heap.max_size(), 8))
            .expect("everything merged back");
        assert_eq!(heap.pool_count(), 1);
    }

    #[test]
    fn freed_blocks_are_reused_and_split() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let big = heap.alloc(layout(1000, 8)).unwrap();
        let _guard = heap.alloc(layout(8, 8)).unwrap();
        // SAFETY: live, freed once.
        unsafe { heap.free(big) };
        let small = heap.alloc(layout(100, 8)).unwrap();
        let rest = heap.alloc(layout(800, 8)).unwrap();
        assert_eq!(small, big, "the freed block is split, its front reused");
        assert_eq!(addr(rest), addr(big) + 112, "and its rest too");
    }

    #[test]
    fn alignments_up_to_4096_are_honoured_and_the_gaps_coalesce() {
        let pools = pools();
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        let mut blocks = Vec::new();
        for (i, align) in [1, 2, 8, 16, 32, 64, 256, 1024, 4096, 4096, 64, 2048]
            .into_iter()
            .enumerate()
        {
            let size = 24 + 40 * i;
            let p = heap.alloc(layout(size, align)).unwrap();
            assert_eq!(
                addr(p) % align.max(FreeListAllocator::ALIGN),
                0,
                "align {align}"
            );
            // SAFETY: the block is live and at least `size` bytes.
            unsafe {
                assert!(heap.usable_size(p) >= size);
                p.as_ptr().write_bytes(i as u8, size);
            }
            blocks.push((p, size, i as u8));
        }
        for &(p, size, byte) in &blocks {
            // SAFETY: live blocks written above.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), size) };
            assert!(
                bytes.iter().all(|&b| b == byte),
                "contents of block {byte} preserved"
            );
        }
        for (p, _, _) in blocks {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) };
        }
        assert_eq!(heap.pool_count(), 1);
        heap.alloc(layout(heap.max_size(), 16))
            .expect("the alignment gaps merged back");
        assert_eq!(heap.pool_count(), 1);
    }

    #[test]
    fn zero_sized_requests_get_distinct_smallest_blocks() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let a = heap.alloc(layout(0, 1)).unwrap();
        let b = heap.alloc(layout(0, 1)).unwrap();
        assert_ne!(a, b);
        // SAFETY: live blocks, freed once.
        unsafe {
            assert_eq!(heap.usable_size(a), MIN_BLOCK - HEADER);
            heap.free(a);
            heap.free(b);
        }
    }

    #[test]
    fn too_large_requests_are_bad_layouts_naming_the_size() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let max = heap.max_size();
        assert_eq!(max, (256 << 10) - 40);
        let p = heap
            .alloc(layout(max, 8))
            .expect("the largest request fits");
        // SAFETY: live, freed once.
        unsafe { heap.free(p) };
        for l in [
            layout(max + 1, 8),
            layout(isize::MAX as usize - 4095, 4096),
            layout(8, 256 << 10),
        ] {
            let e = heap.alloc(l).unwrap_err();
            assert!(
                matches!(e, AllocError::BadLayout { size, align, .. } if size == l.size() && align == l.align()),
                "{e}"
            );
            assert!(e.to_string().contains(&format!("size {}", l.size())), "{e}");
        }
    }

    #[test]
    fn a_zero_limit_is_an_error_naming_the_space() {
        let pools =
            Arc::new(PoolManager::new(PoolManagerConfig::default().with_limit(SPACE, 0)).unwrap());
        let heap = FreeListAllocator::new(pools, SPACE);
        let e = heap.alloc(layout(64, 8)).unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::LimitExceeded {
                    space: SPACE,
                    limit: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("non-moving space is full"), "{e}");
    }

    #[test]
    fn one_empty_pool_is_kept_and_trim_gives_it_back() {
        let pools = pools();
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        let pool = pools.pool_size();
        // Two pools' worth of blocks.
        let blocks: Vec<_> = (0..2 * pool / 4096)
            .map(|_| heap.alloc(layout(4000, 8)).unwrap())
            .collect();
        assert!(heap.pool_count() >= 2);
        for p in blocks {
            // SAFETY: live, freed once.
            unsafe { heap.free(p) };
        }
        assert_eq!(heap.pool_count(), 1, "empty pools go back, but one is kept");
        assert_eq!(pools.used(SPACE), pool);
        // Allocating and freeing at the boundary does not take and give back pools.
        for _ in 0..3 {
            let p = heap.alloc(layout(64, 8)).unwrap();
            // SAFETY: live, freed once.
            unsafe { heap.free(p) };
            assert_eq!(heap.pool_count(), 1);
        }
        heap.trim();
        assert_eq!(heap.pool_count(), 0);
        assert_eq!(pools.used(SPACE), 0);
        heap.alloc(layout(64, 8))
            .expect("a new pool after trimming");
    }

    #[test]
    fn sweep_frees_the_dead_and_walk_sees_the_living() {
        let pools = pools();
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        let blocks: Vec<_> = (0..1000)
            .map(|i| heap.alloc(layout(8 + i % 300, 8)).unwrap())
            .collect();
        let dead = |p: NonNull<u8>| blocks.iter().position(|&b| b == p).unwrap() % 3 == 0;
        let expected_bytes: usize = blocks
            .iter()
            .filter(|&&p| dead(p))
            // SAFETY: live blocks.
            .map(|&p| unsafe { heap.usable_size(p) })
            .sum();
        let swept = heap.sweep(|p, _| !dead(p));
        assert_eq!(
            swept,
            Swept {
                bytes: expected_bytes,
                objects: 334
            }
        );
        let mut walked = Vec::new();
        heap.walk(|p, size| {
            // SAFETY: walk reports live blocks.
            assert_eq!(size, unsafe { heap.usable_size(p) });
            walked.push(p);
        });
        let living: Vec<_> = blocks.iter().copied().filter(|&p| !dead(p)).collect();
        assert_eq!(
            walked, living,
            "walk visits exactly the live blocks, in address order"
        );
        heap.flush_stats();
        let s = pools.stats().space(SPACE);
        assert_eq!(s.live_objects(), 666);
        assert_eq!(s.objects_freed, 334);
        // Everything dead: all but one pool goes back.
        let swept = heap.sweep(|_, _| false);
        assert_eq!(swept.objects, 666);
        assert_eq!(heap.pool_count(), 1);
        assert_eq!(pools.stats().space(SPACE).live_bytes(), 0);
    }

    #[test]
    fn a_panicking_sweep_leaves_a_consistent_heap() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let blocks: Vec<_> = (0..10)
            .map(|_| heap.alloc(layout(50, 8)).unwrap())
            .collect();
        let mut seen = 0;
        let r = catch_unwind(AssertUnwindSafe(|| {
            heap.sweep(|_, _| {
                seen += 1;
                assert!(seen < 5, "collector bug");
                false
            })
        }));
        assert!(r.is_err());
        let mut live = 0;
        heap.walk(|_, _| live += 1);
        assert_eq!(live, 6, "the four judged dead were freed");
        for p in &blocks[4..] {
            // SAFETY: still live, freed once.
            unsafe { heap.free(*p) };
        }
        heap.alloc(layout(heap.max_size(), 8))
            .expect("all memory merged back");
    }

    #[test]
    fn contains_names_only_our_pools() {
        let pools = pools();
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        let sibling = FreeListAllocator::new(pools.clone(), SPACE);
        let p = heap.alloc(layout(64, 8)).unwrap();
        let q = sibling.alloc(layout(64, 8)).unwrap();
        assert!(heap.contains(addr(p)) && heap.contains(addr(p) + 63));
        assert!(
            !heap.contains(addr(q)),
            "a sibling allocator of the same space"
        );
        assert!(!heap.contains(0));
        let on_stack = 0u64;
        assert!(!heap.contains(&on_stack as *const u64 as usize));
    }

    #[test]
    fn stats_count_usable_bytes_and_metadata() {
        let pools = pools();
        let before = pools.stats().space(SPACE).metadata;
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        assert!(pools.stats().space(SPACE).metadata > before);
        let p = heap.alloc(layout(100, 8)).unwrap();
        heap.flush_stats();
        let s = pools.stats().space(SPACE);
        // SAFETY: live.
        assert_eq!(s.live_bytes(), unsafe { heap.usable_size(p) } as u64);
        assert_eq!(s.live_bytes(), 104);
        drop(heap);
        let s = pools.stats().space(SPACE);
        assert_eq!(
            (s.live_bytes(), s.live_objects(), s.metadata),
            (0, 0, before),
            "drop frees and reports"
        );
        assert_eq!(pools.used(SPACE), 0, "drop gives every pool back");
    }

    /// The block is parked by its first free, so this is a double free of a
    /// parked block.
    #[cfg(debug_assertions)]
    #[test]
    fn double_free_panics_naming_the_address_and_space() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let p = heap.alloc(layout(64, 8)).unwrap();
        let _q = heap.alloc(layout(64, 8)).unwrap();
        // SAFETY: live, freed once here; the second free is the bug under test.
        unsafe { heap.free(p) };
        // SAFETY: none: the double free is the bug under test (it panics first).
        let msg = panic_message(|| unsafe { heap.free(p) });
        assert!(
            msg.contains(&format!("double free of {:#x}", addr(p))),
            "{msg}"
        );
        assert!(msg.contains("non-moving space"), "{msg}");
        // The lock was released by the panic: the heap still works.
        heap.alloc(layout(64, 8)).unwrap();
    }

    #[cfg(debug_assertions)]
    #[test]
    fn foreign_and_interior_pointers_panic_naming_the_address_and_space() {
        let pools = pools();
        let heap = FreeListAllocator::new(pools.clone(), SPACE);
        let sibling = FreeListAllocator::new(pools, SPACE);
        let p = heap.alloc(layout(64, 8)).unwrap();
        let q = sibling.alloc(layout(64, 8)).unwrap();
        let mut local = [0u64; 4];
        let on_stack = NonNull::from(&mut local).cast::<u8>();
        for foreign in [q, on_stack] {
            // SAFETY: none; the bad pointer is the bug under test.
            let msg = panic_message(|| unsafe { heap.free(foreign) });
            assert!(
                msg.contains(&format!("free of {:#x}: a foreign pointer", addr(foreign))),
                "{msg}"
            );
            assert!(msg.contains("non-moving space"), "{msg}");
        }
        // SAFETY: as above.
        let interior = unsafe { p.add(16) };
        // SAFETY: as above.
        let msg = panic_message(|| unsafe { heap.free(interior) });
        assert!(
            msg.contains(&format!(
                "{:#x}: not the start of a live block",
                addr(interior)
            )),
            "{msg}"
        );
        assert!(msg.contains("non-moving space"), "{msg}");
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "double free of 0x")]
    fn double_free_is_a_should_panic_in_debug_builds() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        let p = heap.alloc(layout(200, 8)).unwrap();
        // SAFETY: the second free is the bug under test.
        unsafe {
            heap.free(p);
            heap.free(p);
        }
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "taken again by the thread holding it")]
    fn a_walk_callback_calling_back_panics_in_debug_builds() {
        let heap = FreeListAllocator::new(pools(), SPACE);
        heap.alloc(layout(8, 8)).unwrap();
        heap.walk(|_, _| {
            let _ = heap.alloc(layout(8, 8));
        });
    }
}
