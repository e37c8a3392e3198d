//! `BumpAllocator`: a single-threaded, growing bump allocator over pools.

use std::alloc::Layout;
use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rtmem_base::{AllocError, Pool, PoolManager, SpaceType, align_up};

use crate::{GRANULE, granule_round, prefetch_ahead};

/// A single-threaded bump allocator that grows pool by pool and frees
/// everything at once: scratch memory that dies together (a compilation, a
/// request, a phase of the runtime).
///
/// Like `bumpalo::Bump`, but its memory comes from the [`PoolManager`] under a
/// [`SpaceType`], so it is limited and accounted with the rest of the runtime,
/// and it never calls the global allocator: its pools are chained through a
/// 32-byte header at the start of each.
///
/// - **Fast path** ([`alloc`](Self::alloc)): a compare and an add, inlined,
///   for alignments up to 8.
/// - **Sizes** are rounded up to [`GRANULE`] (8) bytes, so the bump pointer
///   stays 8-aligned and alignments up to 8 cost nothing. Larger alignments
///   (up to the pool size) skip a gap, on a path out of line.
/// - **Zero-size layouts** get a dangling pointer whose address is the
///   alignment: non-null, aligned, never to be read or written. They use no
///   memory and are not counted.
/// - **Growth**: each new pool is twice the size of the current one (whole
///   pool slots), so that after a [`reset`](Self::reset), which keeps the
///   largest pool, a recurring workload soon fits in one pool and touches no
///   fresh memory. If the space's limit (or the reservation) refuses the
///   doubled size, the allocator falls back to the smallest pool that holds
///   the request.
/// - **Large requests** (more than the next pool would hold) get a pool sized
///   for them; whichever of it and the current pool has more room left stays
///   current.
/// - **Statistics** are counted in plain fields and reported to the pool
///   manager's [`MemStats`](rtmem_base::MemStats) when a pool is added, on
///   [`reset`](Self::reset) and on drop; bytes are the rounded sizes. The
///   fast path counts only objects: bytes are derived from the bump pointer
///   (minus the alignment gaps, counted only for alignments above 8).
///
/// ```
/// use std::alloc::Layout;
/// use std::sync::Arc;
/// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
/// use rtmem_bump::BumpAllocator;
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
/// let p = bump.alloc(Layout::new::<[u64; 4]>()).unwrap();
/// // SAFETY: `p` is 32 fresh bytes, valid until `reset` or drop.
/// unsafe { p.cast::<[u64; 4]>().write([1, 2, 3, 4]) };
/// assert!(bump.contains(p.as_ptr() as usize));
/// assert_eq!(bump.allocated_bytes(), 32);
/// bump.reset();
/// assert_eq!(pools.stats().space(SpaceType::CompilerInternal).live_bytes(), 0);
/// ```
pub struct BumpAllocator {
    /// The next free byte of the current pool (null before the first pool).
    top: *mut u8,
    /// The end of the current pool (null before the first pool).
    end: *mut u8,
    /// Objects allocated since the last reset.
    objects: usize,
    /// Alignment gaps skipped since the last reset.
    gaps: usize,
    /// Where the current pool's allocations start (after its header).
    base: *mut u8,
    /// Bytes (gaps included) allocated since the last reset outside the
    /// current pool: in the pools that were current before it, and in
    /// dedicated pools linked behind it.
    retired: usize,
    /// The bytes and objects already reported to `MemStats`.
    recorded_bytes: usize,
    recorded_objects: usize,
    /// The header of the current pool: the head of the chain.
    current: Option<NonNull<ChunkHeader>>,
    pools: Arc<PoolManager>,
    space: SpaceType,
}

// SAFETY: the allocator owns its pools exclusively; nothing in it is tied to
// the thread that created it. (It is not `Sync`: `alloc` takes `&mut self`.)
unsafe impl Send for BumpAllocator {}

/// Written at the start of every pool the allocator holds.
#[repr(C)]
struct ChunkHeader {
    /// The next pool in the chain (older, or a dedicated pool linked in).
    prev: Option<NonNull<ChunkHeader>>,
    pool: Pool,
}

/// Bytes at the start of each pool taken by its header.
const HEADER: usize = align_up(size_of::<ChunkHeader>(), GRANULE);

impl BumpAllocator {
    /// An empty allocator for `space`: it takes no pool until the first allocation.
    pub fn new(pools: Arc<PoolManager>, space: SpaceType) -> BumpAllocator {
        BumpAllocator {
            top: ptr::null_mut(),
            end: ptr::null_mut(),
            objects: 0,
            gaps: 0,
            base: ptr::null_mut(),
            retired: 0,
            recorded_bytes: 0,
            recorded_objects: 0,
            current: None,
            pools,
            space,
        }
    }

    /// Allocates memory for `layout`, valid until [`reset`](Self::reset) or drop.
    /// The contents are unspecified (pools may be reused dirty).
    ///
    /// Errors: [`AllocError::BadLayout`] (naming size and alignment) if the
    /// alignment is larger than the pool size; otherwise the pool manager's
    /// [`AllocError::LimitExceeded`] or [`AllocError::OutOfMemory`] when a new
    /// pool is needed and cannot be had.
    #[inline(always)]
    pub fn alloc(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let size = granule_round(layout.size());
        // `top` stays 8-aligned, so alignments up to 8 need no padding. A zero
        // size wraps to `usize::MAX` and leaves the fast path, as do larger
        // alignments.
        if layout.align() <= GRANULE && size.wrapping_sub(1) < self.end.addr() - self.top.addr() {
            // SAFETY: `size` is a nonzero multiple of the granule and fits
            // between `top` and `end`, so there is a current pool.
            return Ok(unsafe { self.bump(0, size) });
        }
        self.alloc_aligned(layout)
    }

    /// Frees everything allocated. The largest pool is kept (empty) for reuse;
    /// the others are given back. Every allocation is recorded as freed.
    pub fn reset(&mut self) {
        self.release_stats();
        let Some(keep) = self.chunks().max_by_key(Pool::size) else {
            return;
        };
        for pool in self.chunks() {
            if pool != keep {
                self.pools.free_pool(pool);
            }
        }
        let header = keep.start().cast::<ChunkHeader>();
        // SAFETY: `keep` is one of our pools and starts with its header.
        unsafe { (*header.as_ptr()).prev = None };
        self.current = Some(header);
        self.base = keep.start().as_ptr().wrapping_add(HEADER);
        self.top = self.base;
        self.end = keep.start().as_ptr().wrapping_add(keep.size());
    }

    /// The bytes allocated since the last reset: the sum of the sizes, each
    /// rounded up to [`GRANULE`] (alignment gaps not included).
    pub fn allocated_bytes(&self) -> usize {
        self.retired + (self.top.addr() - self.base.addr()) - self.gaps
    }

    /// Whether `addr` lies in the usable part of one of the allocator's pools
    /// (allocated or not). O(number of pools).
    pub fn contains(&self, addr: usize) -> bool {
        self.chunks()
            .any(|pool| addr >= pool.start_addr() + HEADER && addr < pool.end_addr())
    }

    /// The space the allocator takes its pools from.
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// Takes `pad` bytes of alignment gap and then `size` bytes from the
    /// current pool, returning the object.
    ///
    /// # Safety
    /// There must be a current pool with `pad + size <= end - top`, `size > 0`.
    #[inline(always)]
    unsafe fn bump(&mut self, pad: usize, size: usize) -> NonNull<u8> {
        let object = self.top.wrapping_add(pad);
        self.top = object.wrapping_add(size);
        self.objects += 1;
        self.gaps += pad;
        prefetch_ahead(self.top);
        // SAFETY: the caller guarantees a pool, whose addresses are not null.
        unsafe { NonNull::new_unchecked(object) }
    }

    /// Alignments above the granule, zero sizes, and requests that do not fit:
    /// out of line, but not cold, so that over-aligned types stay cheap.
    #[inline(never)]
    fn alloc_aligned(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if layout.align() > self.pools.pool_size() {
            return Err(AllocError::bad_layout(
                layout.size(),
                layout.align(),
                "bump allocator: alignment larger than the pool size",
            ));
        }
        let pad = self.top.addr().wrapping_neg() & (layout.align() - 1);
        let size = granule_round(layout.size());
        // `pad < align` and `size <= isize::MAX - (align - 1) + 7` (a `Layout`
        // invariant): the sum cannot overflow.
        if layout.size() != 0 && pad + size <= self.end.addr() - self.top.addr() {
            // SAFETY: at least one byte fits, so there is a current pool.
            return Ok(unsafe { self.bump(pad, size) });
        }
        self.alloc_slow(layout)
    }

    /// The new-pool path (and zero sizes): takes a pool twice the current one
    /// (or sized for the request) and makes whichever pool has more room left
    /// the current one. The layout's alignment is at most the pool size.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if layout.size() == 0 {
            let align = NonZeroUsize::new(layout.align()).expect("alignments are nonzero");
            return Ok(NonNull::without_provenance(align));
        }
        let size = granule_round(layout.size());
        // Pools are aligned to the pool size, hence to `layout.align()`.
        let offset = align_up(HEADER, layout.align());
        let pool = self.take_pool(offset.saturating_add(size))?;
        let start = pool.start().as_ptr();
        let header = pool.start().cast::<ChunkHeader>();
        let object = start.wrapping_add(offset);
        let new_top = object.wrapping_add(size);
        let new_end = start.wrapping_add(pool.size());
        self.objects += 1;
        let room_left = self.end.addr() - self.top.addr();
        match self.current {
            Some(current) if room_left >= new_end.addr() - new_top.addr() => {
                // SAFETY: both headers lie at the start of pools we hold; the
                // new one is written before it is linked behind the current one.
                unsafe {
                    header.write(ChunkHeader {
                        prev: (*current.as_ptr()).prev,
                        pool,
                    });
                    (*current.as_ptr()).prev = Some(header);
                }
                self.retired += size;
            }
            _ => {
                // SAFETY: the pool is ours and at least `HEADER` bytes long.
                unsafe {
                    header.write(ChunkHeader {
                        prev: self.current,
                        pool,
                    })
                };
                self.current = Some(header);
                self.retired += self.top.addr() - self.base.addr();
                self.base = start.wrapping_add(HEADER);
                self.gaps += offset - HEADER;
                self.top = new_top;
                self.end = new_end;
            }
        }
        self.flush_stats();
        tracing::trace!(space = %self.space, size = pool.size(), "bump allocator took a pool");
        // SAFETY: `object` is inside the pool just allocated, hence not null.
        Ok(unsafe { NonNull::new_unchecked(object) })
    }

    /// Takes a pool of at least `min_bytes`: twice the current pool if that is
    /// larger and the pool manager grants it, else just `min_bytes`.
    fn take_pool(&self, min_bytes: usize) -> Result<Pool, AllocError> {
        let current = self.chunks().next().map_or(0, |pool| pool.size());
        let grown = current.saturating_mul(2);
        if grown > min_bytes
            && let Ok(pool) = self.pools.alloc_pool(self.space, grown)
        {
            return Ok(pool);
        }
        self.pools.alloc_pool(self.space, min_bytes)
    }

    /// Reports the allocations not yet in `MemStats`.
    fn flush_stats(&mut self) {
        let bytes = self.allocated_bytes();
        self.pools.stats().record_alloc(
            self.space,
            bytes - self.recorded_bytes,
            self.objects - self.recorded_objects,
        );
        self.recorded_bytes = bytes;
        self.recorded_objects = self.objects;
    }

    /// Reports every allocation since the last reset as freed and zeroes the counts.
    fn release_stats(&mut self) {
        self.flush_stats();
        self.pools
            .stats()
            .record_free(self.space, self.recorded_bytes, self.objects);
        self.objects = 0;
        self.gaps = 0;
        self.retired = 0;
        self.base = self.top;
        self.recorded_bytes = 0;
        self.recorded_objects = 0;
    }

    /// The pools in the chain, current first. Each pool's header is read
    /// before the pool is yielded, so the caller may free it.
    fn chunks(&self) -> Chunks<'_> {
        Chunks {
            next: self.current,
            _allocator: PhantomData,
        }
    }
}

impl Drop for BumpAllocator {
    fn drop(&mut self) {
        self.release_stats();
        for pool in self.chunks() {
            self.pools.free_pool(pool);
        }
    }
}

impl fmt::Debug for BumpAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BumpAllocator")
            .field("space", &self.space)
            .field("allocated_bytes", &self.allocated_bytes())
            .field("objects", &self.objects)
            .field("pools", &self.chunks().count())
            .finish_non_exhaustive()
    }
}

/// Iterator over the pools of a [`BumpAllocator`].
struct Chunks<'a> {
    next: Option<NonNull<ChunkHeader>>,
    _allocator: PhantomData<&'a BumpAllocator>,
}

impl Iterator for Chunks<'_> {
    type Item = Pool;

    fn next(&mut self) -> Option<Pool> {
        let header = self.next?;
        // SAFETY: every header in the chain sits at the start of a pool the
        // allocator holds, written when the pool was taken; it is read here
        // before the caller can free the pool.
        let ChunkHeader { prev, pool } = unsafe { header.read() };
        self.next = prev;
        Some(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtmem_base::PoolManagerConfig;

    const POOL: usize = 64 << 10;

    fn manager(limit: usize) -> Arc<PoolManager> {
        Arc::new(
            PoolManager::new(
                PoolManagerConfig::default()
                    .with_pool_size(POOL)
                    .with_reserve(64 << 20)
                    .with_limit(SpaceType::CompilerInternal, limit),
            )
            .unwrap(),
        )
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn bumps_within_a_pool_and_rounds_to_granules() {
        let pools = manager(usize::MAX);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        assert_eq!(
            pools.used(SpaceType::CompilerInternal),
            0,
            "no pool until the first alloc"
        );
        let a = bump.alloc(layout(3, 1)).unwrap();
        let b = bump.alloc(layout(16, 8)).unwrap();
        let c = bump.alloc(layout(8, 64)).unwrap();
        assert_eq!(
            a.as_ptr().addr() % POOL,
            HEADER,
            "the first object follows the header"
        );
        assert_eq!(b.as_ptr().addr(), a.as_ptr().addr() + 8);
        assert_eq!(c.as_ptr().addr() % 64, 0);
        assert_eq!(bump.allocated_bytes(), 8 + 16 + 8);
        assert!(bump.contains(c.as_ptr().addr()));
        assert!(
            !bump.contains(a.as_ptr().addr() - HEADER),
            "the header is not allocatable"
        );
        assert_eq!(pools.used(SpaceType::CompilerInternal), POOL);
        let s = pools.stats().space(SpaceType::CompilerInternal);
        assert_eq!(
            s.objects_allocated, 1,
            "counts are batched until a pool is added"
        );
    }

    #[test]
    fn zero_size_layouts_are_dangling_aligned_and_free() {
        let pools = manager(0);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        let z = bump.alloc(layout(0, 16)).unwrap();
        assert_eq!(z.as_ptr().addr(), 16);
        assert_eq!(bump.allocated_bytes(), 0);
        assert_eq!(
            pools.used(SpaceType::CompilerInternal),
            0,
            "even with a limit of 0"
        );
    }

    #[test]
    fn pools_double_and_stats_are_flushed_when_one_is_added() {
        let pools = manager(usize::MAX);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        let first = (POOL - HEADER) / 256;
        let second = (2 * POOL - HEADER) / 256;
        let mut ptrs = Vec::new();
        for i in 0..first + second + 1 {
            let p = bump.alloc(layout(256, 8)).unwrap();
            // SAFETY: 256 fresh bytes.
            unsafe { p.cast::<usize>().write(i) };
            ptrs.push(p);
        }
        assert_eq!(pools.used(SpaceType::CompilerInternal), (1 + 2 + 4) * POOL);
        for (i, p) in ptrs.iter().enumerate() {
            // SAFETY: written above, not freed.
            assert_eq!(unsafe { p.cast::<usize>().read() }, i);
            assert!(bump.contains(p.as_ptr().addr()));
        }
        let s = pools.stats().space(SpaceType::CompilerInternal);
        assert_eq!(
            s.objects_allocated as usize,
            first + second + 1,
            "flushed when pool 3 came"
        );
        bump.alloc(layout(8, 8)).unwrap();
        drop(bump);
        let s = pools.stats().space(SpaceType::CompilerInternal);
        assert_eq!(s.objects_allocated as usize, first + second + 2);
        assert_eq!(s.bytes_allocated as usize, (first + second + 1) * 256 + 8);
        assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
        assert_eq!(
            pools.used(SpaceType::CompilerInternal),
            0,
            "drop gives every pool back"
        );
    }

    #[test]
    fn growth_falls_back_to_a_small_pool_at_the_limit() {
        let pools = manager(4 * POOL);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        let mut count = 0;
        let e = loop {
            match bump.alloc(layout(4096, 8)) {
                Ok(_) => count += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(
            pools.used(SpaceType::CompilerInternal),
            4 * POOL,
            "pools of 1, 2, then 1 slot"
        );
        assert_eq!(count, 15 + 31 + 15);
        assert!(
            e.to_string().contains("compiler-internal space is full"),
            "{e}"
        );
    }

    #[test]
    fn large_requests_get_a_dedicated_pool_behind_the_current_one() {
        let pools = manager(usize::MAX);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        let small = bump.alloc(layout(64, 8)).unwrap();
        let big = bump.alloc(layout(3 * POOL, 4096)).unwrap();
        assert_eq!(big.as_ptr().addr() % 4096, 0);
        assert_eq!(pools.used(SpaceType::CompilerInternal), POOL + 4 * POOL);
        let next = bump.alloc(layout(64, 8)).unwrap();
        assert_eq!(
            next.as_ptr().addr(),
            small.as_ptr().addr() + 64,
            "the first pool stays current"
        );
        // SAFETY: the big block is 3 pools long and ours.
        unsafe { big.as_ptr().add(3 * POOL - 1).write(1) };
        assert!(bump.contains(big.as_ptr().addr() + 3 * POOL - 1));
        assert_eq!(bump.allocated_bytes(), 64 + 3 * POOL + 64);
    }

    #[test]
    fn alignment_up_to_the_pool_size_works() {
        let pools = manager(usize::MAX);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        let p = bump.alloc(layout(8, POOL)).unwrap();
        assert_eq!(p.as_ptr().addr() % POOL, 0);
        assert!(bump.contains(p.as_ptr().addr()));
    }

    #[test]
    fn reset_keeps_the_largest_pool_and_frees_the_rest() {
        let pools = manager(usize::MAX);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        for _ in 0..200 {
            bump.alloc(layout(1024, 8)).unwrap();
        }
        assert_eq!(pools.used(SpaceType::CompilerInternal), (1 + 2 + 4) * POOL);
        let big = bump.alloc(layout(5 * POOL, 8)).unwrap();
        assert_eq!(
            pools.used(SpaceType::CompilerInternal),
            (1 + 2 + 4 + 8) * POOL
        );
        bump.reset();
        assert_eq!(
            pools.used(SpaceType::CompilerInternal),
            8 * POOL,
            "only the largest stays"
        );
        assert_eq!(bump.allocated_bytes(), 0);
        let s = pools.stats().space(SpaceType::CompilerInternal);
        assert_eq!((s.live_bytes(), s.live_objects()), (0, 0));
        assert_eq!(s.objects_freed, 201);
        let again = bump.alloc(layout(8, 8)).unwrap();
        assert_eq!(
            again.as_ptr().addr(),
            big.as_ptr().addr(),
            "the kept pool is reused"
        );
        bump.reset();
        bump.reset();
        assert_eq!(pools.used(SpaceType::CompilerInternal), 8 * POOL);
        // A workload that fits in the kept pool takes no new pool after a reset.
        for _ in 0..2 {
            for _ in 0..(8 * POOL - HEADER) / 64 {
                bump.alloc(layout(64, 8)).unwrap();
            }
            assert_eq!(pools.used(SpaceType::CompilerInternal), 8 * POOL);
            bump.reset();
        }
    }

    #[test]
    fn bad_layouts_and_limits() {
        let pools = manager(usize::MAX);
        let mut bump = BumpAllocator::new(pools.clone(), SpaceType::CompilerInternal);
        let e = bump.alloc(layout(8, 2 * POOL)).unwrap_err();
        assert_eq!(
            e,
            AllocError::BadLayout {
                size: 8,
                align: 2 * POOL,
                reason: "bump allocator: alignment larger than the pool size"
            }
        );
        assert!(
            e.to_string().contains(&format!("align {}", 2 * POOL)),
            "{e}"
        );
        let huge = layout(isize::MAX as usize - 7, 8);
        let e = bump.alloc(huge).unwrap_err();
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
        let e = bump.alloc(layout(128 << 20, 8)).unwrap_err();
        assert!(
            matches!(e, AllocError::OutOfMemory { .. }),
            "more than the reservation: {e}"
        );
        assert_eq!(bump.allocated_bytes(), 0, "failed requests are not counted");

        let mut starved = BumpAllocator::new(manager(0), SpaceType::CompilerInternal);
        let e = starved.alloc(layout(8, 8)).unwrap_err();
        assert!(
            matches!(e, AllocError::LimitExceeded { limit: 0, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains("compiler-internal space is full"),
            "{e}"
        );
        assert!(!starved.contains(0));
    }
}
