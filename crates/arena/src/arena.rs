//! The arena: bump allocation through a chain of pools, freed all at once or
//! back to a mark.

use std::alloc::Layout;
use std::cell::Cell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rtmem_base::{AllocError, PoolManager, SpaceType, align_up};

use crate::chunk::{self, Chunk, HEADER_SIZE};
use crate::mark::{MARK_ROOM, MarkRecord};

/// The largest alignment the inlined fast path serves. Larger alignments (up
/// to the pool size) take the slow path, which keeps "alignment larger than a
/// pool is an error" exact: no page is smaller than this.
const FAST_ALIGN_MAX: usize = 4096;

/// The top (and end) of an arena that holds no chunk: aligned to every power
/// of two an allocation can ask for, outside every pool, and equal to the end
/// so that only zero-size requests succeed without a chunk.
const NO_CHUNK: usize = 1 << (usize::BITS - 1);

static NEXT_ARENA_ID: AtomicU64 = AtomicU64::new(1);

/// A single-threaded arena: bump allocation through a chain of pools of one
/// space (by default [`SpaceType::CompilerInternal`]), freed wholesale.
///
/// - **Allocation** ([`alloc`](Self::alloc) and the typed helpers) moves a
///   pointer forward: a compare and an add, inlined. When the current pool is
///   full a new one is taken from the [`PoolManager`] (the cold path).
/// - **Freeing** is wholesale: [`release`](Self::release) rolls back to a
///   [`mark`](Self::mark), [`reset`](Self::reset) frees everything, and
///   dropping the arena gives every pool back. None of them runs destructors.
/// - **Collections**: `&Arena` implements the `allocator_api2`
///   [`Allocator`](allocator_api2::alloc::Allocator) trait, so `Vec`, `Box`
///   and `hashbrown::HashMap` can live in the arena. Their `deallocate` is
///   free except for the most recent allocation, which is reclaimed, and the
///   most recent allocation grows and shrinks in place.
///
/// # Chunks
/// The pools an arena holds ("chunks") are chained through a header at the
/// start of each, so the arena never calls the global allocator. The first
/// chunk is one pool; each new chunk is twice as large as the previous one up
/// to [`MAX_CHUNK_BYTES`](Self::MAX_CHUNK_BYTES), or exactly as large as a
/// request that does not fit that (a dedicated multi-slot pool). Doubling
/// keeps the number of chunks logarithmic, and [`reset`](Self::reset) keeps
/// the largest one, so an arena reused for jobs of similar size stops
/// touching the pool manager after the first few.
///
/// # Accounting
/// The arena knows its allocated bytes exactly (the sizes requested) without
/// counting them one by one: they are the bytes its chunks use up to the top,
/// less the alignment padding and mark records in between, and padding is
/// rare enough to be counted where it happens. It reports them to the pool
/// manager's [`MemStats`](rtmem_base::MemStats) when it takes a new chunk,
/// releases, resets, is dropped, or [`flush_stats`](Self::flush_stats) is
/// called. It does **not** count objects: a per-allocation counter is a store
/// on the fast path, which measured 30% slower than `bumpalo` for 16-byte
/// objects, so `MemStats` shows bytes but no objects for the arena's space.
/// A block given back with `deallocate` that is not the most recent
/// allocation stays counted until the release or reset that actually frees
/// its memory.
///
/// # Threads
/// An arena is `Send` but not `Sync`: it can move to another thread, but only
/// one thread allocates from it at a time.
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<rtmem_arena::Arena>();
/// ```
pub struct Arena {
    /// The next free byte of the current chunk (or [`NO_CHUNK`]).
    pub(crate) top: Cell<usize>,
    /// The fast path's limit: every allocation ends at or below it. Usually
    /// the current chunk's [`Chunk::alloc_end`]; the end of a mark record when
    /// one was written past that.
    pub(crate) end: Cell<usize>,
    /// Bytes of the chunks' used parts that belong to no allocation: alignment
    /// padding and mark records.
    pub(crate) waste: Cell<usize>,
    /// The bytes used in every chunk but the current one.
    pub(crate) older_used: Cell<usize>,
    /// The top right after the latest mark was taken, released to, or the
    /// arena reset. While the top is still there, [`mark`](Self::mark) hands
    /// out that mark again instead of writing a new record.
    pub(crate) mark_top: Cell<usize>,
    /// The record of the newest live mark; records link to older ones.
    pub(crate) latest_mark: Cell<Option<NonNull<MarkRecord>>>,
    /// The id the next mark record gets (never reused within an arena).
    pub(crate) next_mark_id: Cell<u64>,
    /// The newest chunk: the one allocation bumps through.
    pub(crate) chunk: Cell<Option<Chunk>>,
    chunk_count: Cell<usize>,
    /// `allocated_bytes()` as last reported to the statistics.
    reported_bytes: Cell<usize>,
    /// Bytes freed since the statistics were last flushed.
    freed_bytes: Cell<usize>,
    /// A process-unique id, stored in every mark to recognize foreign marks.
    pub(crate) id: u64,
    space: SpaceType,
    pools: Arc<PoolManager>,
}

// SAFETY: an arena owns its chunks and mark records outright; nothing outside
// it points into them except borrows of the arena itself, which cannot
// outlive a move. It holds no thread-local state, and the pool manager is
// `Send + Sync`. (It is not `Sync`: its cells are unsynchronized.)
unsafe impl Send for Arena {}

impl Arena {
    /// The growth cap: a new chunk is at most this large (or one pool, if a
    /// pool is larger) unless a single request needs more.
    pub const MAX_CHUNK_BYTES: usize = 64 << 20;

    /// An empty arena in the [`SpaceType::CompilerInternal`] space. It takes
    /// no pool until the first allocation.
    pub fn new(pools: Arc<PoolManager>) -> Arena {
        Arena::with_space(pools, SpaceType::CompilerInternal)
    }

    /// An empty arena whose pools belong to `space`.
    pub fn with_space(pools: Arc<PoolManager>, space: SpaceType) -> Arena {
        Arena {
            top: Cell::new(NO_CHUNK),
            end: Cell::new(NO_CHUNK),
            waste: Cell::new(0),
            older_used: Cell::new(0),
            mark_top: Cell::new(NO_CHUNK),
            latest_mark: Cell::new(None),
            next_mark_id: Cell::new(1),
            chunk: Cell::new(None),
            chunk_count: Cell::new(0),
            reported_bytes: Cell::new(0),
            freed_bytes: Cell::new(0),
            id: NEXT_ARENA_ID.fetch_add(1, Relaxed),
            space,
            pools,
        }
    }

    /// Allocates `layout.size()` bytes aligned to `layout.align()`.
    ///
    /// The memory is uninitialized and stays valid until the arena is
    /// released past it, reset or dropped (all of which need `&mut self` or
    /// ownership, so no borrow of the arena survives them).
    ///
    /// A zero-size layout always succeeds and takes no memory: the pointer is
    /// non-null and aligned, inside (or at the end of) the current chunk, or a
    /// dangling address before the arena holds a chunk. It is valid for
    /// zero-byte accesses only.
    ///
    /// # Errors
    /// - [`AllocError::BadLayout`] (naming size and alignment) if the alignment
    ///   is larger than the pool size;
    /// - [`AllocError::LimitExceeded`] (naming the space) if the space's limit
    ///   does not allow another pool;
    /// - [`AllocError::OutOfMemory`] if the pool manager's reservation is
    ///   exhausted or the request is larger than it.
    #[inline(always)]
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if layout.align() <= FAST_ALIGN_MAX
            && let Some(ptr) = self.bump(layout.size(), layout.align())
        {
            return Ok(ptr);
        }
        self.alloc_slow(layout)
    }

    /// Moves `value` into the arena and returns a reference to it.
    ///
    /// **The value is never dropped**: releasing, resetting or dropping the
    /// arena frees its memory without running `T`'s destructor (leaking
    /// whatever the value owns). Store plain data, or values whose drop does
    /// not matter (such as collections that themselves live in the arena).
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[inline]
    #[allow(clippy::mut_from_ref)] // Every call returns fresh, disjoint memory.
    pub fn alloc_value<T>(&self, value: T) -> Result<&mut T, AllocError> {
        let ptr = self.alloc(Layout::new::<T>())?.cast::<T>();
        // SAFETY: `ptr` is fresh memory for one `T`, aligned and disjoint from
        // every other allocation, valid for as long as `&self` (see `alloc`).
        unsafe {
            ptr.as_ptr().write(value);
            Ok(&mut *ptr.as_ptr())
        }
    }

    /// Copies `src` into the arena.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[inline]
    #[allow(clippy::mut_from_ref)] // Every call returns fresh, disjoint memory.
    pub fn alloc_slice_copy<T: Copy>(&self, src: &[T]) -> Result<&mut [T], AllocError> {
        let ptr = self.alloc(Layout::for_value(src))?.cast::<T>();
        // SAFETY: `ptr` is fresh, aligned memory for `src.len()` values of `T`
        // (the layout of `src` itself), disjoint from `src`; `T: Copy`.
        unsafe {
            ptr.as_ptr()
                .copy_from_nonoverlapping(src.as_ptr(), src.len());
            Ok(std::slice::from_raw_parts_mut(ptr.as_ptr(), src.len()))
        }
    }

    /// Copies `s` into the arena.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc).
    #[inline]
    #[allow(clippy::mut_from_ref)] // Every call returns fresh, disjoint memory.
    pub fn alloc_str(&self, s: &str) -> Result<&mut str, AllocError> {
        let bytes = self.alloc_slice_copy(s.as_bytes())?;
        // SAFETY: the bytes were copied from a `str`, so they are UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked_mut(bytes) })
    }

    /// Frees everything allocated in the arena and gives back every chunk but
    /// one: the largest no larger than [`MAX_CHUNK_BYTES`](Self::MAX_CHUNK_BYTES),
    /// kept for reuse. Every mark becomes stale. O(number of chunks).
    pub fn reset(&mut self) {
        let before = self.allocated_bytes();
        let cap = self.chunk_cap();
        let keep = chunk::chain(self.chunk.get())
            .filter(|c| c.pool().size() <= cap)
            .max_by_key(|c| c.pool().size());
        self.give_back_chunks(keep);
        if let Some(kept) = keep {
            kept.set_prev(None);
            self.chunk.set(Some(kept));
            self.chunk_count.set(1);
        }
        self.latest_mark.set(None);
        self.older_used.set(0);
        self.waste.set(0);
        self.restart_at(keep, keep.map_or(NO_CHUNK, Chunk::data_start));
        self.rolled_back(before);
        tracing::trace!(arena = self.id, kept = keep.is_some(), "arena reset");
    }

    /// Bytes requested by the allocations not yet freed (alignment padding
    /// and the arena's own headers and mark records are not counted).
    pub fn allocated_bytes(&self) -> usize {
        let current = self
            .chunk
            .get()
            .map_or(0, |c| self.top.get() - c.data_start());
        self.older_used.get() + current - self.waste.get()
    }

    /// The number of chunks (pools) the arena holds.
    pub fn arena_count(&self) -> usize {
        self.chunk_count.get()
    }

    /// Whether `addr` lies in the used part of one of the arena's chunks
    /// (memory handed out, or the arena's mark records). O(number of chunks).
    pub fn contains(&self, addr: usize) -> bool {
        chunk::chain(self.chunk.get()).any(|c| (c.data_start()..self.used_end(c)).contains(&addr))
    }

    /// Calls `f(start, len)` for the used part of each chunk, newest first.
    ///
    /// An arena keeps no per-object headers, so it cannot tell its objects
    /// apart: the blocks it walks are whole used ranges (including alignment
    /// padding and mark records), e.g. for a conservative scan of arena data
    /// for heap references.
    pub fn walk(&self, mut f: impl FnMut(NonNull<u8>, usize)) {
        for c in chunk::chain(self.chunk.get()) {
            let (start, end) = (c.data_start(), self.used_end(c));
            if end > start {
                f(
                    NonNull::new(start as *mut u8).expect("chunks are never at address 0"),
                    end - start,
                );
            }
        }
    }

    /// The space the arena's pools belong to.
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// The pool manager the arena takes its pools from.
    pub fn pools(&self) -> &Arc<PoolManager> {
        &self.pools
    }

    /// A process-unique number identifying this arena (named in the panic
    /// messages of [`release`](Self::release)).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Reports the bytes allocated and freed since the last report to the pool
    /// manager's [`MemStats`](rtmem_base::MemStats) (bytes only: see
    /// [Accounting](Self#accounting)). The arena does this on its own whenever
    /// it takes a chunk, releases, resets or is dropped.
    pub fn flush_stats(&self) {
        let live = self.allocated_bytes();
        let freed = self.freed_bytes.take();
        // live = reported + allocated - freed, so this never underflows.
        let allocated = live + freed - self.reported_bytes.replace(live);
        let stats = self.pools.stats();
        if allocated != 0 {
            stats.record_alloc(self.space, allocated, 0);
        }
        if freed != 0 {
            stats.record_free(self.space, freed, 0);
        }
    }

    /// Carves `size` bytes aligned to `align` from the current chunk, if they
    /// fit. `align` is at most the pool size.
    #[inline(always)]
    pub(crate) fn bump(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let top = self.top.get();
        let pad = top.wrapping_neg() & (align - 1);
        // `pad < align <= pool size` and `size <= isize::MAX` (a `Layout`
        // guarantees it), so the sum cannot overflow; `top <= end` always.
        if pad + size > self.end.get() - top {
            return None;
        }
        if pad != 0 {
            self.waste.set(self.waste.get() + pad);
        }
        let start = top + pad;
        let new_top = start + size;
        self.top.set(new_top);
        // Prefetch once per cache line crossed, not per (small) object.
        if (top ^ new_top) >= 64 {
            rtmem_base::prefetch_ahead(new_top as *const u8);
        }
        // SAFETY: `start >= top`, and `top` is an address inside a chunk or
        // `NO_CHUNK`, neither of which is 0.
        Some(unsafe { NonNull::new_unchecked(start as *mut u8) })
    }

    /// Records that `bytes` of allocations were freed in place.
    pub(crate) fn note_freed(&self, bytes: usize) {
        self.freed_bytes.set(self.freed_bytes.get() + bytes);
    }

    /// Records what a release, reset or drop freed, given the allocated bytes
    /// before it, and reports to the statistics.
    pub(crate) fn rolled_back(&self, before: usize) {
        self.note_freed(before - self.allocated_bytes());
        self.flush_stats();
    }

    /// Makes `chunk` current with its top at `top`, which becomes the position
    /// of the latest mark (after a release or reset).
    pub(crate) fn restart_at(&self, chunk: Option<Chunk>, top: usize) {
        self.top.set(top);
        self.end
            .set(chunk.map_or(NO_CHUNK, |c| c.alloc_end().max(top)));
        self.mark_top.set(top);
    }

    /// Gives back the newer chunks until `target` is the current one.
    pub(crate) fn pop_chunks_to(&self, target: Chunk) {
        while let Some(current) = self.chunk.get()
            && current != target
        {
            self.chunk.set(current.prev());
            self.free_chunk(current);
        }
        debug_assert_eq!(
            self.chunk.get(),
            Some(target),
            "a mark's chunk is in the chain"
        );
    }

    /// The slow path: a layout the fast path does not serve, or a full chunk.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let (size, align) = (layout.size(), layout.align());
        if align > self.pools.pool_size() {
            return Err(AllocError::bad_layout(
                size,
                align,
                "the alignment is larger than the arena's pool size",
            ));
        }
        // Alignments above `FAST_ALIGN_MAX` skipped the bump in the fast path.
        if let Some(ptr) = self.bump(size, align) {
            return Ok(ptr);
        }
        // The pool is aligned to the pool size, so to at least `align`.
        let needed = align_up(HEADER_SIZE, align)
            .checked_add(size)
            .and_then(|n| n.checked_add(MARK_ROOM))
            .ok_or(AllocError::OutOfMemory {
                space: self.space,
                requested: size,
                reserved: self.pools.reserved_bytes(),
            })?;
        self.push_chunk(needed)?;
        Ok(self
            .bump(size, align)
            .expect("a new chunk holds the request it was sized for"))
    }

    /// Takes a chunk of at least `needed` bytes and makes it current.
    fn push_chunk(&self, needed: usize) -> Result<(), AllocError> {
        let grown = self
            .chunk
            .get()
            .map_or(0, |c| c.pool().size().saturating_mul(2))
            .clamp(self.pools.pool_size(), self.chunk_cap());
        let pool = if grown > needed {
            // Prefer the doubled size, but a smaller pool that still fits the
            // request beats failing against a space limit.
            match self.pools.alloc_pool(self.space, grown) {
                Ok(pool) => pool,
                Err(_) => self.pools.alloc_pool(self.space, needed)?,
            }
        } else {
            self.pools.alloc_pool(self.space, needed)?
        };
        let previous = self.chunk.get();
        if let Some(previous) = previous {
            previous.set_used_end(self.top.get());
            self.older_used
                .set(self.older_used.get() + (self.top.get() - previous.data_start()));
        }
        // SAFETY: the pool was just handed to this arena, nothing else uses
        // it, and it holds at least `needed > HEADER_SIZE + MARK_ROOM` bytes.
        let chunk = unsafe { Chunk::init(pool, previous) };
        self.chunk.set(Some(chunk));
        self.chunk_count.set(self.chunk_count.get() + 1);
        self.top.set(chunk.data_start());
        self.end.set(chunk.alloc_end());
        self.flush_stats();
        tracing::trace!(
            arena = self.id,
            space = %self.space,
            start = pool.start_addr(),
            size = pool.size(),
            chunks = self.chunk_count.get(),
            "arena took a chunk"
        );
        Ok(())
    }

    /// Gives back every chunk except `keep`, leaving `keep` (or nothing) as
    /// the chain; the caller relinks `keep` and resets the top.
    fn give_back_chunks(&self, keep: Option<Chunk>) {
        let mut next = self.chunk.take();
        while let Some(current) = next {
            next = current.prev();
            if Some(current) != keep {
                self.free_chunk(current);
            }
        }
    }

    /// Gives one chunk's pool back to the pool manager. The chunk must already
    /// be unlinked.
    fn free_chunk(&self, chunk: Chunk) {
        self.pools.free_pool(chunk.pool());
        self.chunk_count.set(self.chunk_count.get() - 1);
    }

    fn chunk_cap(&self) -> usize {
        Self::MAX_CHUNK_BYTES.max(self.pools.pool_size())
    }

    fn used_end(&self, chunk: Chunk) -> usize {
        if self.chunk.get() == Some(chunk) {
            self.top.get()
        } else {
            chunk.used_end()
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let before = self.allocated_bytes();
        self.give_back_chunks(None);
        self.older_used.set(0);
        self.waste.set(0);
        self.rolled_back(before);
    }
}

impl fmt::Debug for Arena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arena")
            .field("id", &self.id)
            .field("space", &self.space)
            .field("chunks", &self.chunk_count.get())
            .field("allocated_bytes", &self.allocated_bytes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmem_base::PoolManagerConfig;

    const POOL: usize = 64 << 10;

    fn pools() -> Arc<PoolManager> {
        Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(POOL)
                    .with_reserve(1 << 30),
            )
            .unwrap(),
        )
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn a_new_arena_takes_no_pool_until_the_first_allocation() {
        let pm = pools();
        let arena = Arena::new(pm.clone());
        assert_eq!(arena.space(), SpaceType::CompilerInternal);
        assert_eq!(arena.arena_count(), 0);
        assert_eq!(pm.used(SpaceType::CompilerInternal), 0);
        let p = arena.alloc(layout(24, 8)).unwrap();
        assert_eq!(arena.arena_count(), 1);
        assert_eq!(pm.used(SpaceType::CompilerInternal), POOL);
        assert_eq!(
            pm.space_of(p.as_ptr() as usize),
            Some(SpaceType::CompilerInternal)
        );
        assert!(arena.contains(p.as_ptr() as usize + 23));
        assert!(!arena.contains(p.as_ptr() as usize + 24), "past the top");
        assert_eq!(arena.allocated_bytes(), 24);
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_keep_their_contents() {
        let arena = Arena::new(pools());
        let mut blocks = Vec::new();
        for i in 0..2000usize {
            let (size, align) = (1 + i * 7 % 300, 1 << (i % 8));
            let p = arena.alloc(layout(size, align)).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: `size` fresh bytes.
            unsafe { p.as_ptr().write_bytes(i as u8, size) };
            blocks.push((p.as_ptr() as usize, size, i as u8));
        }
        assert!(
            arena.arena_count() > 1,
            "2000 blocks overflow one 64 KiB pool"
        );
        blocks.sort_unstable();
        for w in blocks.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {w:?}");
        }
        for &(addr, size, byte) in &blocks {
            // SAFETY: live blocks of the arena.
            let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, size) };
            assert!(bytes.iter().all(|&b| b == byte));
        }
        let total: usize = blocks.iter().map(|b| b.1).sum();
        assert_eq!(arena.allocated_bytes(), total);
    }

    #[test]
    fn typed_helpers_copy_and_move() {
        let arena = Arena::new(pools());
        let v = arena.alloc_value([1u64, 2, 3]).unwrap();
        v[1] = 20;
        let s = arena.alloc_slice_copy(&[1u16, 2, 3, 4]).unwrap();
        s[0] = 10;
        let text = arena.alloc_str("hello, arena").unwrap();
        text.make_ascii_uppercase();
        assert_eq!(*v, [1, 20, 3]);
        assert_eq!(s, &[10, 2, 3, 4]);
        assert_eq!(text, "HELLO, ARENA");
        assert_eq!(arena.alloc_slice_copy::<u8>(&[]).unwrap().len(), 0);
        assert_eq!(arena.allocated_bytes(), 24 + 8 + 12);
    }

    #[test]
    fn chunks_double_and_big_requests_get_their_own_pool() {
        let pm = pools();
        let arena = Arena::new(pm.clone());
        let mut sizes = Vec::new();
        for _ in 0..5 {
            // Fill the current chunk, then one more byte takes a new one.
            while arena.bump(1024, 8).is_some() {}
            arena.alloc(layout(1024, 8)).unwrap();
            sizes.push(arena.chunk.get().unwrap().pool().size());
        }
        assert_eq!(sizes, [POOL, 2 * POOL, 4 * POOL, 8 * POOL, 16 * POOL]);
        let big = 100 * POOL;
        let p = arena.alloc(layout(big, 64)).unwrap();
        let pool = pm.pool_of(p.as_ptr() as usize).unwrap();
        assert!(
            pool.size() >= big && pool.size() < big + 2 * POOL,
            "{}",
            pool.size()
        );
        // SAFETY: `big` fresh bytes.
        unsafe { p.as_ptr().add(big - 1).write(1) };
        assert_eq!(arena.arena_count(), 6);
    }

    #[test]
    fn reset_keeps_the_largest_chunk_and_reuses_it() {
        let pm = pools();
        let mut arena = Arena::new(pm.clone());
        for _ in 0..1000 {
            arena.alloc(layout(1000, 8)).unwrap();
        }
        let chunks = arena.arena_count();
        assert!(chunks >= 4, "{chunks}");
        let largest = chunk::chain(arena.chunk.get())
            .map(|c| c.pool().size())
            .max()
            .unwrap();
        arena.reset();
        assert_eq!(arena.arena_count(), 1);
        assert_eq!(arena.allocated_bytes(), 0);
        assert_eq!(pm.used(SpaceType::CompilerInternal), largest);
        let kept = arena.chunk.get().unwrap();
        assert_eq!(kept.pool().size(), largest);
        let first = arena.alloc(layout(8, 8)).unwrap();
        assert_eq!(
            first.as_ptr() as usize,
            kept.data_start(),
            "memory is reused from the start"
        );
        arena.reset();
        // The kept chunk (1 MiB, half of everything taken) holds a whole round.
        for _ in 0..1000 {
            arena.alloc(layout(1000, 8)).unwrap();
        }
        assert_eq!(arena.arena_count(), 1);
        arena.reset();
        assert_eq!(arena.chunk.get(), Some(kept));
        assert_eq!(pm.used(SpaceType::CompilerInternal), largest);
    }

    #[test]
    fn reset_gives_back_oversized_chunks() {
        let pm = pools();
        let mut arena = Arena::new(pm.clone());
        arena.alloc(layout(Arena::MAX_CHUNK_BYTES + 1, 8)).unwrap();
        assert_eq!(arena.arena_count(), 1);
        arena.reset();
        assert_eq!(
            arena.arena_count(),
            0,
            "a chunk above the growth cap is not kept"
        );
        assert_eq!(pm.used(SpaceType::CompilerInternal), 0);
        arena.alloc(layout(8, 8)).unwrap();
        assert_eq!(arena.arena_count(), 1);
    }

    #[test]
    fn statistics_are_flushed_on_chunks_reset_and_drop() {
        let pm = pools();
        let space = SpaceType::RuntimeInternal;
        let mut arena = Arena::with_space(pm.clone(), space);
        arena.alloc(layout(100, 8)).unwrap();
        arena.alloc(layout(0, 8)).unwrap();
        // Padding (to 64) and a mark record are not allocated bytes.
        arena.alloc(layout(3, 64)).unwrap();
        arena.mark();
        arena.alloc(layout(1, 1)).unwrap();
        assert_eq!(arena.allocated_bytes(), 104);
        // The first chunk was taken before anything was counted.
        assert_eq!(pm.stats().space(space).bytes_allocated, 0);
        arena.flush_stats();
        let s = pm.stats().space(space);
        assert_eq!(
            (s.bytes_allocated, s.objects_allocated),
            (104, 0),
            "bytes, no objects"
        );
        arena.alloc(layout(50, 8)).unwrap();
        arena.reset();
        let s = pm.stats().space(space);
        assert_eq!((s.bytes_allocated, s.bytes_freed), (154, 154));
        arena.alloc(layout(10, 1)).unwrap();
        drop(arena);
        let s = pm.stats().space(space);
        assert_eq!((s.live_bytes(), s.bytes_allocated), (0, 164));
        assert_eq!(s.committed, 0, "every pool was given back");
        assert_eq!(pm.used(space), 0);
    }

    #[test]
    fn walk_reports_the_used_part_of_each_chunk() {
        let arena = Arena::new(pools());
        let mut walked = Vec::new();
        arena.walk(|p, len| walked.push((p, len)));
        assert!(walked.is_empty());
        let a = arena.alloc(layout(4000, 8)).unwrap();
        while arena.bump(8, 8).is_some() {}
        let b = arena.alloc(layout(64, 8)).unwrap();
        arena.walk(|p, len| walked.push((p, len)));
        assert_eq!(walked.len(), 2);
        assert_eq!((walked[0].0, walked[0].1), (b, 64), "newest first");
        assert_eq!(walked[1].0, a);
        assert_eq!(
            walked[1].1,
            POOL - HEADER_SIZE - MARK_ROOM,
            "the first chunk is full"
        );
    }

    #[test]
    fn zero_size_layouts_succeed_without_memory() {
        let arena = Arena::new(pools());
        let p = arena.alloc(layout(0, POOL)).unwrap();
        assert_eq!(p.as_ptr() as usize % POOL, 0);
        assert_eq!(arena.arena_count(), 0, "no pool for a zero-size request");
        assert!(!arena.contains(p.as_ptr() as usize));
        let q = arena.alloc_value(()).unwrap();
        assert_eq!(*q, ());
        arena.alloc(layout(1, 1)).unwrap();
        let z = arena.alloc(layout(0, 8)).unwrap();
        assert_eq!(z.as_ptr() as usize % 8, 0);
        assert_eq!(arena.allocated_bytes(), 1);
    }

    #[test]
    fn bad_layouts_are_typed_errors() {
        let arena = Arena::new(pools());
        let e = arena.alloc(layout(16, 2 * POOL)).unwrap_err();
        assert_eq!(
            e,
            AllocError::BadLayout {
                size: 16,
                align: 2 * POOL,
                reason: "the alignment is larger than the arena's pool size"
            }
        );
        assert!(e.to_string().contains("size 16, align 131072"), "{e}");
        // Zero-size too: the answer does not depend on where the top is.
        assert!(matches!(
            arena.alloc(layout(0, 2 * POOL)),
            Err(AllocError::BadLayout { .. })
        ));
        // An alignment of exactly one pool is served.
        let p = arena.alloc(layout(8, POOL)).unwrap();
        assert_eq!(p.as_ptr() as usize % POOL, 0);
        // Larger than the whole reservation: out of memory, nothing taken.
        let before = arena.arena_count();
        let e = arena
            .alloc(layout(isize::MAX as usize - 4096, 8))
            .unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::OutOfMemory {
                    space: SpaceType::CompilerInternal,
                    ..
                }
            ),
            "{e}"
        );
        let e = arena.alloc(layout(2 << 30, 8)).unwrap_err();
        assert!(matches!(e, AllocError::OutOfMemory { .. }), "{e}");
        assert_eq!(arena.arena_count(), before);
        arena
            .alloc(layout(8, 8))
            .expect("still usable after failures");
    }

    #[test]
    fn a_space_limit_of_zero_names_the_space() {
        let pm = Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_reserve(1 << 30)
                    .with_limit(SpaceType::CompilerInternal, 0),
            )
            .unwrap(),
        );
        let arena = Arena::new(pm);
        let e = arena.alloc(layout(8, 8)).unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::LimitExceeded {
                    space: SpaceType::CompilerInternal,
                    limit: 0,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("compiler-internal space is full"),
            "{e}"
        );
        assert!(arena.alloc(layout(0, 8)).is_ok(), "zero-size needs no pool");
    }

    #[test]
    fn growth_falls_back_to_the_smallest_pool_under_a_limit() {
        let pm = Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(POOL)
                    .with_reserve(1 << 30)
                    .with_limit(SpaceType::CompilerInternal, 3 * POOL),
            )
            .unwrap(),
        );
        let arena = Arena::new(pm.clone());
        let mut n = 0;
        while arena.alloc(layout(1000, 8)).is_ok() {
            n += 1;
        }
        // One pool, then a doubled two-pool chunk: three pools, the limit.
        assert_eq!(arena.arena_count(), 2);
        assert_eq!(pm.used(SpaceType::CompilerInternal), 3 * POOL);
        assert!(n > 150, "{n}");
    }

    #[test]
    fn an_arena_is_send() {
        fn send<T: Send>(_: &T) {}
        let arena = Arena::new(pools());
        send(&arena);
        let arena = std::thread::spawn(move || {
            arena.alloc(layout(8, 8)).unwrap();
            arena
        })
        .join()
        .unwrap();
        assert_eq!(arena.allocated_bytes(), 8);
    }
}
