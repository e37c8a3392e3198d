//! The large-object allocator: every object gets a pool of its own.
//!
//! Layout of a large object's pool (one or more contiguous pool slots):
//!
//! ```text
//! start                      start + offset                      start + pool size
//! | header (links, offset,   | object (page-aligned, or aligned to |
//! |   pool size), padding    |   layout.align() if that is larger) |
//! ```
//!
//! `offset` is the larger of the page size and the requested alignment, so the
//! object is aligned (pools are aligned to the pool size) and the header never
//! shares a page with it. The headers of live objects form an intrusive
//! doubly-linked list (walking and sweeping need no side table and no call to
//! the global allocator); which pools are ours is a lock-free bitmap, so
//! `contains`, `usable_size` and the checks in `free` are O(1).
//!
//! Freed pools wait in a small cache (most recent first, reused only for a
//! request of the same number of slots) so that a loop allocating and freeing
//! one big buffer does not go to the `PoolManager` (and the kernel) each time.

use std::alloc::Layout;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use rtmem_base::Mutex;
use rtmem_base::{AllocError, Pool, PoolManager, SpaceType, page_size};

use crate::Swept;
use crate::owned::OwnedPools;

/// Pools kept for reuse unless [`LargeObjectAllocator::with_cache`] says otherwise.
pub const DEFAULT_CACHE_POOLS: usize = 4;

/// An allocator that gives each object a pool of its own, for objects too
/// large for the [`FreeListAllocator`](crate::FreeListAllocator) (the
/// humongous space of a runtime).
///
/// - Objects are page-aligned (or aligned to `layout.align()` up to the pool
///   size); the usable size is the pool's size minus the header page (or the
///   alignment), so `MemStats` counts whole pools less that.
/// - A zero-sized request gets the smallest large object (one pool slot);
///   an alignment above the pool size is an [`AllocError::BadLayout`]; a
///   request larger than the reservation is the `PoolManager`'s
///   [`AllocError::OutOfMemory`] (or `LimitExceeded`), naming the space.
/// - Up to [`with_cache`](Self::with_cache) freed pools stay committed and
///   owned by the space for reuse (not counted as live);
///   [`trim`](Self::trim) gives them back.
/// - `free` checks its argument in every build (it is cheap next to a pool
///   operation): a double free or a foreign or interior pointer panics with
///   the address and the space in the message.
///
/// ```
/// use std::alloc::Layout;
/// use std::sync::Arc;
/// use rtmem_base::{PoolManager, PoolManagerConfig, SpaceType};
/// use rtmem_freelist::large::LargeObjectAllocator;
///
/// let pools = Arc::new(PoolManager::new(PoolManagerConfig::default()).unwrap());
/// let large = LargeObjectAllocator::new(pools.clone(), SpaceType::Humongous).with_cache(2);
/// let big = large.alloc(Layout::from_size_align(1 << 20, 8).unwrap()).unwrap();
/// // SAFETY: `big` came from `large.alloc` and is live.
/// assert!(unsafe { large.usable_size(big) } >= 1 << 20);
/// // SAFETY: as above.
/// unsafe { large.free(big) };
/// let again = large.alloc(Layout::from_size_align(1 << 20, 8).unwrap()).unwrap();
/// assert_eq!(again, big, "the cached pool came back");
/// ```
pub struct LargeObjectAllocator {
    pools: Arc<PoolManager>,
    space: SpaceType,
    owned: OwnedPools,
    state: Mutex<State>,
}

/// What changes, under the lock.
struct State {
    /// Headers of the live objects.
    live: Option<NonNull<Header>>,
    /// Freed pools kept for reuse, oldest first.
    cache: Vec<Pool>,
    cache_cap: usize,
}

// SAFETY: the header pointers point into pools owned by the allocator; they
// carry no thread affinity and are only used under the allocator's lock.
unsafe impl Send for State {}

/// The header at the start of a large object's pool.
#[repr(C)]
struct Header {
    next: Option<NonNull<Header>>,
    prev: Option<NonNull<Header>>,
    /// Offset of the object from the pool start (and from this header).
    offset: usize,
    /// The pool's size in bytes.
    pool_bytes: usize,
}

impl Header {
    /// The object of the pool headed by `this`, and its usable size.
    ///
    /// # Safety
    /// `this` must head the pool of a live object of ours (its `offset` and
    /// `pool_bytes` are written once, before the object is handed out).
    unsafe fn object(this: NonNull<Header>) -> (NonNull<u8>, usize) {
        // SAFETY: forwarded to the caller; the object lies `offset` bytes
        // into its pool.
        unsafe {
            let h = this.as_ref();
            (this.cast::<u8>().add(h.offset), h.pool_bytes - h.offset)
        }
    }
}

impl LargeObjectAllocator {
    /// A large-object allocator taking its pools from `pools` for `space`
    /// (typically [`SpaceType::Humongous`]), caching up to
    /// [`DEFAULT_CACHE_POOLS`] freed pools.
    pub fn new(pools: Arc<PoolManager>, space: SpaceType) -> LargeObjectAllocator {
        let owned = OwnedPools::new(&pools);
        pools.stats().record_metadata(space, owned.metadata_bytes());
        LargeObjectAllocator {
            pools,
            space,
            owned,
            state: Mutex::new(State {
                live: None,
                cache: Vec::with_capacity(DEFAULT_CACHE_POOLS),
                cache_cap: DEFAULT_CACHE_POOLS,
            }),
        }
    }

    /// Keeps up to `pools` recently freed pools for reuse (0 disables the cache).
    pub fn with_cache(mut self, pools: usize) -> Self {
        let state = self.state.get_mut();
        state.cache_cap = pools;
        state.cache.reserve(pools);
        self
    }

    /// The space this allocator's pools belong to.
    pub fn space(&self) -> SpaceType {
        self.space
    }

    /// Allocates a pool of its own for `layout`, aligned to the page size
    /// (or to `layout.align()` if larger).
    ///
    /// Errors: [`AllocError::BadLayout`] if the alignment exceeds the pool
    /// size; [`AllocError::LimitExceeded`] or [`AllocError::OutOfMemory`]
    /// from the `PoolManager`, naming the space.
    pub fn alloc(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let pool_size = self.pools.pool_size();
        let offset = layout.align().max(page_size());
        if offset > pool_size {
            return Err(AllocError::bad_layout(
                layout.size(),
                layout.align(),
                "alignment larger than a pool of the large-object allocator",
            ));
        }
        // `Layout` sizes are at most `isize::MAX`: neither sum overflows.
        let bytes = offset + layout.size();
        let slots_bytes = bytes.div_ceil(pool_size) * pool_size;
        let mut state = self.state.lock();
        let pool = match state.cache.iter().rposition(|p| p.size() == slots_bytes) {
            Some(i) => state.cache.remove(i),
            None => self.pools.alloc_pool(self.space, bytes)?,
        };
        let header = pool.start().cast::<Header>();
        // SAFETY: the pool is committed and ours alone; the header fits in the
        // first page, before the object; the old list head is a live header.
        unsafe {
            header.write(Header {
                next: state.live,
                prev: None,
                offset,
                pool_bytes: pool.size(),
            });
            if let Some(mut head) = state.live {
                head.as_mut().prev = Some(header);
            }
        }
        state.live = Some(header);
        self.owned.insert(&pool);
        // SAFETY: the header was just written.
        let (object, usable) = unsafe { Header::object(header) };
        self.pools.stats().record_alloc(self.space, usable, 1);
        tracing::trace!(space = %self.space, start = pool.start_addr(), size = pool.size(), "large object allocated");
        Ok(object)
    }

    /// Frees the object at `ptr`: its pool goes to the cache (or back to the
    /// `PoolManager` if the cache is full or disabled).
    ///
    /// # Safety
    /// `ptr` must have come from this allocator's [`alloc`](Self::alloc) and
    /// be live. A double free or a foreign or interior pointer panics (in
    /// every build) with a message naming the address and the space.
    pub unsafe fn free(&self, ptr: NonNull<u8>) {
        let addr = ptr.as_ptr() as usize;
        let mut state = self.state.lock();
        let header = self
            .owned
            .pool_of(&self.pools, self.space, addr)
            .map(|pool| pool.start().cast::<Header>())
            // SAFETY: the pool holds a live object of ours (its ownership bit
            // is set, and changes only under the lock we hold).
            .filter(|&h| unsafe { Header::object(h) }.0 == ptr);
        match header {
            // SAFETY: `header` heads a live object of ours; the lock is held.
            Some(header) => unsafe { self.retire(&mut state, header) },
            None if state.cache.iter().any(|p| p.contains(addr)) => {
                panic!(
                    "double free of {addr:#x} in the large-object allocator of the {} space",
                    self.space
                )
            }
            None => panic!(
                "free of {addr:#x}: not a live object of the large-object allocator of the {} space \
                 (a foreign or interior pointer, or a double free)",
                self.space
            ),
        }
    }

    /// The usable size of the live object at `ptr`: from `ptr` to the end of its pool.
    ///
    /// # Safety
    /// `ptr` must have come from this allocator's [`alloc`](Self::alloc) and be live.
    pub unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        self.live_pool(ptr.as_ptr() as usize).end_addr() - ptr.as_ptr() as usize
    }

    /// Calls `f(object, usable_size)` for every live object, most recent first.
    ///
    /// `f` runs under the allocator's lock: it must not call back into this
    /// allocator (it would deadlock).
    pub fn walk(&self, mut f: impl FnMut(NonNull<u8>, usize)) {
        let state = self.state.lock();
        let mut cur = state.live;
        while let Some(header) = cur {
            // SAFETY: `header` is a live header; the lock keeps the list intact.
            let (object, usable) = unsafe {
                cur = header.as_ref().next;
                Header::object(header)
            };
            f(object, usable);
        }
    }

    /// Frees every live object for which `is_live(object, usable_size)` says
    /// false, in one pass; their pools go to the cache or back to the
    /// `PoolManager`. `is_live` runs under the lock (no re-entry).
    pub fn sweep(&self, mut is_live: impl FnMut(NonNull<u8>, usize) -> bool) -> Swept {
        let mut state = self.state.lock();
        let mut swept = Swept::default();
        let mut cur = state.live;
        while let Some(header) = cur {
            // SAFETY: `header` is a live header and the lock is held; the next
            // one is read before this one may be retired.
            unsafe {
                cur = header.as_ref().next;
                let (object, usable) = Header::object(header);
                if !is_live(object, usable) {
                    swept.bytes += usable;
                    swept.objects += 1;
                    self.retire(&mut state, header);
                }
            }
        }
        swept
    }

    /// Whether `addr` lies in the pool of a live object of this allocator
    /// (header included). Lock-free.
    pub fn contains(&self, addr: usize) -> bool {
        self.owned.pool_of(&self.pools, self.space, addr).is_some()
    }

    /// The number of live objects (each holds one pool).
    pub fn pool_count(&self) -> usize {
        let state = self.state.lock();
        // SAFETY: the list holds live headers; the lock keeps it intact.
        std::iter::successors(state.live, |h| unsafe { h.as_ref().next }).count()
    }

    /// The number of freed pools waiting in the cache.
    pub fn cached_pools(&self) -> usize {
        self.state.lock().cache.len()
    }

    /// Gives every cached pool back to the `PoolManager`.
    pub fn trim(&self) {
        let mut state = self.state.lock();
        for pool in state.cache.drain(..) {
            self.pools.free_pool(pool);
        }
    }

    /// The pool of the live object at (or whose header is at) `addr`.
    fn live_pool(&self, addr: usize) -> Pool {
        self.pools
            .pool_of(addr)
            .expect("a live large object lies in a live pool")
    }

    /// Unlinks a live object, reports it freed, and caches or frees its pool.
    ///
    /// # Safety
    /// `header` must head a live object of ours; the lock must be held.
    unsafe fn retire(&self, state: &mut State, header: NonNull<Header>) {
        // SAFETY: forwarded to the caller; list neighbours are live headers.
        let usable = unsafe {
            let Header { next, prev, .. } = header.read();
            match prev {
                Some(mut prev) => prev.as_mut().next = next,
                None => state.live = next,
            }
            if let Some(mut next) = next {
                next.as_mut().prev = prev;
            }
            Header::object(header).1
        };
        let pool = self.live_pool(header.as_ptr() as usize);
        self.owned.remove(&pool);
        self.pools.stats().record_free(self.space, usable, 1);
        if state.cache_cap == 0 {
            self.pools.free_pool(pool);
            return;
        }
        if state.cache.len() == state.cache_cap {
            let oldest = state.cache.remove(0);
            self.pools.free_pool(oldest);
        }
        state.cache.push(pool);
    }
}

impl Drop for LargeObjectAllocator {
    /// Gives every pool back, cached or live; live objects are freed with
    /// them (and reported freed in `MemStats`).
    fn drop(&mut self) {
        self.trim();
        let mut cur = self.state.get_mut().live.take();
        while let Some(header) = cur {
            // SAFETY: `header` heads a live object of ours and `&mut self` is
            // exclusive; the header is read before its pool goes.
            let usable = unsafe {
                cur = header.as_ref().next;
                Header::object(header).1
            };
            self.pools.stats().record_free(self.space, usable, 1);
            self.pools
                .free_pool(self.live_pool(header.as_ptr() as usize));
        }
        self.pools
            .stats()
            .release_metadata(self.space, self.owned.metadata_bytes());
    }
}

impl fmt::Debug for LargeObjectAllocator {
    /// Takes no lock, so it may be used inside `walk` and `sweep` callbacks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargeObjectAllocator")
            .field("space", &self.space)
            .field("pool_size", &self.pools.pool_size())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rtmem_base::PoolManagerConfig;

    use super::*;
    use crate::test_support::{addr, layout, panic_message};

    fn pools() -> Arc<PoolManager> {
        crate::test_support::pools(256 << 20)
    }

    const SPACE: SpaceType = SpaceType::Humongous;

    #[test]
    fn an_alloc_free_loop_reuses_the_cached_pool_without_the_pool_manager() {
        let pools = pools();
        let large = LargeObjectAllocator::new(pools.clone(), SPACE);
        let l = layout(3 << 20, 8);
        let first = large.alloc(l).unwrap();
        // SAFETY: live, freed once.
        unsafe { large.free(first) };
        let (used, committed) = (pools.used(SPACE), pools.stats().space(SPACE).committed);
        assert_eq!(
            used,
            (3 << 20) + pools.pool_size(),
            "3 MiB and a header page take 13 pool slots"
        );
        for _ in 0..10 {
            let p = large.alloc(l).unwrap();
            assert_eq!(p, first, "the same pool comes back");
            assert_eq!(large.cached_pools(), 0);
            // SAFETY: live, freed once.
            unsafe { large.free(p) };
            assert_eq!(large.cached_pools(), 1);
            assert_eq!(
                pools.used(SPACE),
                used,
                "the PoolManager's counters do not move"
            );
            assert_eq!(pools.stats().space(SPACE).committed, committed);
        }
        let s = pools.stats().space(SPACE);
        assert_eq!(
            (s.live_bytes(), s.live_objects()),
            (0, 0),
            "cached pools are not live"
        );
        assert_eq!(s.objects_allocated, 11);
        large.trim();
        assert_eq!(pools.used(SPACE), 0);
    }

    #[test]
    fn the_cache_keeps_the_most_recent_pools_up_to_its_size() {
        let pools = pools();
        let large = LargeObjectAllocator::new(pools.clone(), SPACE).with_cache(2);
        let objects: Vec<_> = (1..=3)
            .map(|i| large.alloc(layout(i << 20, 8)).unwrap())
            .collect();
        for &p in &objects {
            // SAFETY: live, freed once.
            unsafe { large.free(p) };
        }
        assert_eq!(large.cached_pools(), 2);
        assert_eq!(
            pools.used(SPACE),
            (2 << 20) + (3 << 20) + 2 * pools.pool_size(),
            "the 1 MiB pool went back"
        );
        // A request of another slot count does not take a cached pool.
        let other = large.alloc(layout(5 << 20, 8)).unwrap();
        assert!(objects.iter().all(|&p| p != other));
        assert_eq!(large.cached_pools(), 2);
        let uncached = LargeObjectAllocator::new(pools.clone(), SPACE).with_cache(0);
        let p = uncached.alloc(layout(1 << 20, 8)).unwrap();
        let used = pools.used(SPACE);
        // SAFETY: live, freed once.
        unsafe { uncached.free(p) };
        assert_eq!(
            pools.used(SPACE),
            used - (1 << 20) - pools.pool_size(),
            "no cache: straight back"
        );
    }

    #[test]
    fn objects_are_page_aligned_or_aligned_as_asked() {
        let pools = pools();
        let large = LargeObjectAllocator::new(pools.clone(), SPACE);
        for (size, align) in [
            (300 << 10, 8),
            (1, 4096),
            (0, 1),
            (100, 64 << 10),
            (1 << 20, 256 << 10),
        ] {
            let p = large.alloc(layout(size, align)).unwrap();
            assert_eq!(
                addr(p) % align.max(page_size()),
                0,
                "size {size} align {align}"
            );
            // SAFETY: live; writing its whole usable size is allowed.
            unsafe {
                let usable = large.usable_size(p);
                assert!(usable >= size);
                p.as_ptr().write_bytes(0xAB, usable);
                large.free(p);
            }
        }
        let e = large.alloc(layout(8, 512 << 10)).unwrap_err();
        assert!(
            matches!(e, AllocError::BadLayout { size: 8, align, .. } if align == 512 << 10),
            "{e}"
        );
    }

    #[test]
    fn huge_requests_and_limits_are_errors_naming_the_space() {
        let large = LargeObjectAllocator::new(pools(), SPACE);
        let e = large
            .alloc(layout(isize::MAX as usize - 4095, 4096))
            .unwrap_err();
        assert!(
            matches!(e, AllocError::OutOfMemory { space: SPACE, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("humongous space"), "{e}");
        let limited =
            Arc::new(PoolManager::new(PoolManagerConfig::default().with_limit(SPACE, 0)).unwrap());
        let large = LargeObjectAllocator::new(limited, SPACE);
        let e = large.alloc(layout(1 << 20, 8)).unwrap_err();
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
    }

    #[test]
    fn walk_sweep_and_contains() {
        let pools = pools();
        let large = LargeObjectAllocator::new(pools.clone(), SPACE).with_cache(0);
        let objects: Vec<_> = (1..=5)
            .map(|i| large.alloc(layout(i * (300 << 10), 8)).unwrap())
            .collect();
        assert_eq!(large.pool_count(), 5);
        assert!(large.contains(addr(objects[2]) + 1000));
        assert!(
            large.contains(addr(objects[2]) - 8),
            "the header is in the object's pool"
        );
        let dead = |p: NonNull<u8>| objects.iter().position(|&o| o == p).unwrap() % 2 == 0;
        // SAFETY: live objects.
        let dead_bytes: usize = objects
            .iter()
            .filter(|&&p| dead(p))
            .map(|&p| unsafe { large.usable_size(p) })
            .sum();
        let swept = large.sweep(|p, _| !dead(p));
        assert_eq!(
            swept,
            Swept {
                bytes: dead_bytes,
                objects: 3
            }
        );
        let mut walked = Vec::new();
        large.walk(|p, size| {
            // SAFETY: live.
            assert_eq!(size, unsafe { large.usable_size(p) });
            walked.push(p);
        });
        walked.sort();
        assert_eq!(walked, vec![objects[1], objects[3]]);
        assert!(
            !large.contains(addr(objects[0])),
            "a swept object's pool is gone"
        );
        let s = pools.stats().space(SPACE);
        assert_eq!(s.live_objects(), 2);
        drop(large);
        let s = pools.stats().space(SPACE);
        assert_eq!((s.live_bytes(), s.live_objects(), s.metadata), (0, 0, 0));
        assert_eq!(pools.used(SPACE), 0, "drop gives every pool back");
    }

    #[test]
    fn double_free_and_foreign_pointers_panic_naming_the_address_and_space() {
        let pools = pools();
        let large = LargeObjectAllocator::new(pools.clone(), SPACE);
        let p = large.alloc(layout(1 << 20, 8)).unwrap();
        // SAFETY: live, freed once; the second free is the bug under test.
        unsafe { large.free(p) };
        // SAFETY: none: the double free is the bug under test (it panics first).
        let msg = panic_message(|| unsafe { large.free(p) });
        assert!(
            msg.contains(&format!("double free of {:#x}", addr(p))) && msg.contains("humongous"),
            "{msg}"
        );
        let q = large.alloc(layout(2 << 20, 8)).unwrap();
        let sibling = LargeObjectAllocator::new(pools, SPACE);
        let r = sibling.alloc(layout(1 << 20, 8)).unwrap();
        // SAFETY: 64 bytes into a live object of 2 MiB.
        let interior = unsafe { q.add(64) };
        for bad in [interior, r, NonNull::<u64>::dangling().cast()] {
            // SAFETY: none: interior and foreign pointers are the bugs under test (they panic first).
            let msg = panic_message(|| unsafe { large.free(bad) });
            assert!(
                msg.contains(&format!("free of {:#x}: not a live object", addr(bad))),
                "{msg}"
            );
            assert!(msg.contains("humongous space"), "{msg}");
        }
        // The lock was released: the allocator still works.
        // SAFETY: live, freed once.
        unsafe { large.free(q) };
    }
}
